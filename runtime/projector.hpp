#pragma once
// Projectors: keep a projection's view tables in PostgreSQL up to date from
// the JetStream events stream, exactly once.
//
// A projector is an actor with its own thread (its I/O blocks): its mailbox
// is a durable pull consumer (runtime/subscription.hpp) delivering the
// events in the publisher's order. Each batch runs in one transaction that
// locks the projection's checkpoint, applies the net row changes and moves
// the checkpoint, so a redelivered batch finds the checkpoint past it and
// changes nothing. Each message names the event published before it; when
// that is beyond the checkpoint, something is missing from the stream (a
// publisher round that will be re-sent later), and the projector reads the
// gap from the event store - the log in PostgreSQL is the truth, JetStream
// the fast path. So the view always equals a fold of the log's prefix up to
// its checkpoint, which is what a rebuild produces.
//
// A poison event (its handler throws, or PostgreSQL rejects its row with a
// data error) is retried with backoff, then parked as a dead letter in the
// same transaction that moves the checkpoint past it. Infrastructure errors
// (database down) are retried for as long as it takes, with the reason in
// the status: never a silent stall, never a skipped event.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "persistence/event_store.hpp"
#include "runtime/projection.hpp"
#include "runtime/subscription.hpp"

namespace spdlog {
class logger;
}

namespace troupe {

struct projector_options {
  std::string postgres_url;
  /// Consumer settings; `durable` is derived from the projection's name.
  subscription_options subscription;
  std::string consumer_prefix = "troupe-view-";
  int max_attempts = 5;  // tries of a poison event before it is parked
  std::chrono::milliseconds retry_backoff{200};
  std::chrono::milliseconds max_backoff{5000};
  std::shared_ptr<spdlog::logger> log;
  /// Called after each committed batch with the events it applied (metrics,
  /// benchmarks). Runs on the projector's thread.
  std::function<void(const std::vector<recorded_event>&)> on_commit;
  /// Test hook: called with the batch's events after the view changes are
  /// written, before the commit; returning true ends the projector there as
  /// a crash would (transaction rolled back, nothing acknowledged).
  std::function<bool(const std::vector<recorded_event>&)> crash_before_commit;
  /// projector_group only: every member's part of a batch, views and
  /// checkpoints, in one transaction (one commit per batch instead of one
  /// per member). Any error hands the batch to the members one by one.
  bool shared_transaction = true;
};

struct projection_status {
  std::string name;
  bool running = false;
  bool standby = false;             // following another node's active projector
  std::int64_t position = 0;        // committed checkpoint
  std::int64_t events_applied = 0;  // events folded into the view (all types)
  std::int64_t batches = 0;
  std::int64_t duplicates = 0;  // redelivered events skipped
  std::int64_t gap_filled = 0;  // events read from the store to fill gaps
  std::int64_t dead_letters = 0;
  std::int64_t consumer_lag = 0;  // messages waiting in the consumer
  std::int64_t pending_acks = 0;
  double lag_seconds = 0;  // age of the newest applied event when committed
  std::string stalled;     // why it is retrying, empty when healthy
};

class projector {
 public:
  projector(projection_definition definition, std::shared_ptr<event_store> store,
            projector_options options);
  ~projector();
  projector(const projector&) = delete;
  projector& operator=(const projector&) = delete;

  /// Creates the view tables if missing and starts consuming. Throws
  /// std::runtime_error when PostgreSQL or NATS cannot be reached.
  void start();
  /// Standby, for a node that does not hold the projection's cluster lease:
  /// nothing is consumed; the position follows the checkpoint the active
  /// node commits (read every `interval`), so wait_until() and status()
  /// still tell how far the shared view is. start() ends it.
  void follow(std::chrono::milliseconds interval = std::chrono::milliseconds{20});
  void stop();

  projection_status status() const;
  const projection_definition& definition() const;

  /// Blocks until the view has applied everything up to `position`, or
  /// `timeout` passed; true when reached (read-your-writes).
  bool wait_until(global_position position, std::chrono::milliseconds timeout) const;

  /// "projection:<name>": the checkpoint (and dead-letter consumer) name.
  static std::string checkpoint_name(std::string_view projection);

 private:
  friend class projector_group;
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Projectors fed by one durable consumer instead of one each: a batch is
/// fetched and decoded once, and every member folds its part against its
/// own checkpoint, all in one transaction (shared_transaction) - so every
/// view stays exactly once and equal to a rebuild, exactly as when it
/// consumes alone. After an error (a row PostgreSQL refuses, a lost
/// connection) or for a member far behind, the batch goes to each member in
/// a transaction of its own, which isolates and parks the bad event. Every consumer reads every
/// event (the position chain needs them), so five projectors cost five deliveries per event, five
/// connections and ten threads; grouped they cost one. A member behind the
/// group's consumer (one added later) fills the gap from the event store,
/// as after any gap. The price: members advance together, so one that
/// retries (its database refuses) holds the others back.
///
/// For a single node. In a cluster each projection is a singleton of its
/// own (start/follow per projector), and members are not started or
/// stopped one by one while grouped.
class projector_group {
 public:
  /// `options`: the subscription settings, consumer prefix and log; the
  /// members keep their own for everything else.
  projector_group(std::vector<projector*> members, projector_options options);
  ~projector_group();
  projector_group(const projector_group&) = delete;
  projector_group& operator=(const projector_group&) = delete;

  /// Prepares every member (tables, checkpoint), then consumes. Throws
  /// std::runtime_error when PostgreSQL or NATS cannot be reached.
  void start();
  void stop();

  /// The shared durable consumer's name: "<prefix>shared-feed".
  static std::string consumer_name(std::string_view consumer_prefix);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// ---- rebuilds -------------------------------------------------------------------

struct rebuild_progress {
  std::int64_t events_done = 0;  // events read from the log this run
  std::int64_t position = 0;     // where the rebuild is
  std::int64_t head = 0;         // the log's last position when measured
  double events_per_second = 0;
  double eta_seconds = 0;
  bool resumed = false;  // continued an interrupted rebuild
};

struct rebuild_options {
  std::string postgres_url;
  std::size_t batch_size = 5000;
  std::shared_ptr<spdlog::logger> log;
  /// Called after every committed batch.
  std::function<void(const rebuild_progress&)> progress;
  /// Test hook, called after each committed batch: true stops the rebuild
  /// there, as an interruption would (the shadow tables stay).
  std::function<bool(const rebuild_progress&)> interrupt;
};

struct rebuild_report {
  bool swapped = false;  // false when interrupted
  bool resumed = false;
  std::int64_t events = 0;    // read this run
  std::int64_t position = 0;  // the live checkpoint after the swap
};

/// Replays the log into shadow tables (schema `troupe_rebuild_<name>`),
/// resuming an interrupted rebuild of the same version, then swaps them for
/// the live tables in one transaction; queries keep reading the old tables
/// until then. A live projector keeps running meanwhile and continues from
/// the swapped-in checkpoint. Throws std::runtime_error on failure.
rebuild_report rebuild_projection(const projection_definition& definition, event_store& store,
                                  const rebuild_options& options);

/// Applies a parked event of this projection again (after a fix), marking
/// the dead letter replayed; throws with the reason when it fails again.
void replay_dead_letter(const projection_definition& definition, const std::string& postgres_url,
                        std::int64_t dead_letter_id);

}  // namespace troupe
