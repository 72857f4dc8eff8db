#pragma once
// The event publisher: reads the global order from the event store (gap-safe)
// and publishes every committed event to a JetStream stream, subject
// `troupe.events.<category>.<type>`, with `Nats-Msg-Id` = event id and
// CloudEvents headers. Publishes are asynchronous with a bounded number
// unconfirmed; its checkpoint (in the store) advances only after every event
// up to it is confirmed stored, so after a crash at any point it resumes
// from the checkpoint and JetStream drops the re-sent duplicates (inside the
// stream's duplicate window). A round is confirmed either by an
// acknowledgement of each publish or, once the stream's sequence is known,
// by the acknowledgement of its last publish alone (see
// `confirm_by_sequence`).
//
// Runs on its own thread (nats.c calls block). One active publisher per
// database: the cluster part will guard start() with a lease.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "persistence/event_store.hpp"

namespace spdlog {
class logger;
}

namespace troupe {

class wakeup_signal;

struct publisher_options {
  std::string nats_url;
  std::string stream_name = "TROUPE_EVENTS";
  std::string subject_prefix = "troupe.events";  // subjects: <prefix>.<category>.<type>
  int replicas = 1;
  std::chrono::seconds duplicate_window{120};
  std::size_t batch_size = 500;     // events read and published per round
  std::int64_t max_pending = 2000;  // unacknowledged publishes at most
  std::chrono::milliseconds poll_interval{20};
  /// A round that published something is followed by the next read no
  /// sooner than this after it began (unless it read a full batch: then the
  /// publisher is behind and reads on at once). Under load a woken publisher
  /// would otherwise read a handful of events per commit; this gathers them
  /// into rounds. 0: read again at once.
  std::chrono::milliseconds min_round_interval{0};
  /// The checkpoint is saved at most this often (and at stop): a round's
  /// acknowledgement moves it in memory only. A crash re-sends what came
  /// after the saved one; JetStream drops it by Nats-Msg-Id inside the
  /// duplicate window. 0: saved after every round.
  std::chrono::milliseconds checkpoint_interval{0};
  /// When set, a round that found nothing waits for this signal (the node's
  /// commits: commit_watch::signal()) instead of sleeping out the poll
  /// interval, which stays the longest wait: commits on other nodes of a
  /// cluster, or by other processes, are still found by polling.
  std::shared_ptr<wakeup_signal> new_events;
  /// A round's publishes go without a reply but its last, whose
  /// acknowledgement confirms the whole round when it carries the stream
  /// sequence expected: the stream then grew by exactly the round's
  /// messages, all new (the publisher is the stream's only writer; another
  /// writer, a lost message or a duplicate shows as a different sequence).
  /// Any other answer sends the round again from the checkpoint with each
  /// publish acknowledged, as after an error, until an acknowledged new
  /// message tells the sequence again. Spares JetStream an acknowledgement
  /// per message (nats-server ~30 % less CPU per publish). false: every
  /// publish is acknowledged.
  bool confirm_by_sequence = true;
  std::chrono::milliseconds ack_timeout{10000};
  std::chrono::milliseconds retry_backoff{500};
  std::string source = "troupe";  // ce-source
  std::string checkpoint_name = "publisher";
  /// Stream categories kept out of JetStream: the runtime's own streams
  /// (saga inputs). `troupe-previous-position` then names the previous
  /// published event, so consumers see no gap where these were.
  std::set<std::string> internal_categories;
  std::shared_ptr<spdlog::logger> log;
  /// Test hook: called after a batch is acknowledged, before its checkpoint
  /// is saved; returning true ends the publisher there, as a crash would.
  std::function<bool()> crash_before_checkpoint;
  /// Test hook: returning true drops this publish without a word, as a
  /// connection that fails mid-round may (asked once per publish).
  std::function<bool(const recorded_event&)> lose_publish;
};

struct publisher_stats {
  std::int64_t published = 0;            // confirmed publishes (duplicates included)
  std::int64_t duplicates = 0;           // acknowledged as duplicates by JetStream
  std::int64_t rounds_by_sequence = 0;   // rounds confirmed by their last publish's sequence
  std::int64_t sequence_mismatches = 0;  // ... whose sequence was not the one expected
  std::int64_t failed_rounds = 0;        // rounds retried after an error
  std::int64_t checkpoint = 0;           // last saved position
  std::int64_t rounds = 0;               // reads that found events to publish
  std::int64_t checkpoint_saves = 0;
};

class event_publisher {
 public:
  event_publisher(std::shared_ptr<event_store> store, publisher_options options);
  ~event_publisher();
  event_publisher(const event_publisher&) = delete;
  event_publisher& operator=(const event_publisher&) = delete;

  /// Connects, creates or updates the stream, starts the thread. Throws
  /// std::runtime_error when NATS cannot be reached or the stream set up.
  void start();
  /// Finishes the round in progress and stops. Idempotent.
  void stop();
  /// True until stop() or a simulated crash ended the thread.
  bool running() const;

  publisher_stats stats() const;
  /// True while connected to NATS (readiness).
  bool connected() const;

  /// `<prefix>.<category>.<type>`, with characters NATS does not allow in a
  /// subject token replaced by '_'.
  static std::string subject_of(std::string_view prefix, const recorded_event& event);
  /// The subjects of every event of one stream category: "<prefix>.<category>.>".
  static std::string category_subjects(std::string_view prefix, std::string_view category);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe
