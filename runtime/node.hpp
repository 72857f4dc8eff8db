#pragma once
// The node: the front door of the runtime. It owns the actor system, the
// shard region that hosts aggregate actors, and the event store they use.
// Callers (HTTP, tools, tests, sagas) submit commands here; CAF stays behind
// this header.
//
//   troupe::node n(cfg, std::make_shared<troupe::memory_event_store>());
//   n.register_aggregate<bookstore::book>();
//   n.start();
//   auto r = n.execute<bookstore::book>("42", bookstore::add_stock{...});

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <tuple>

#include "persistence/event_store.hpp"
#include "runtime/aggregate_host.hpp"
#include "runtime/command.hpp"
#include "runtime/config.hpp"

namespace troupe {

class commit_watch;

/// Counters a node keeps; a copy read without stopping anything.
struct node_stats {
  std::int64_t in_flight_commands = 0;
  std::int64_t live_aggregates = 0;
  std::int64_t activations = 0;
  std::int64_t passivations = 0;
  std::int64_t commands_accepted = 0;
  std::int64_t commands_duplicate = 0;
  std::int64_t commands_rejected = 0;
  std::int64_t commands_conflicted = 0;
  std::int64_t commands_shed = 0;    // overloaded
  std::int64_t commands_failed = 0;  // unavailable or invalid
  std::int64_t events_appended = 0;
  std::int64_t snapshots_written = 0;
  std::int64_t queued_commands = 0;  // waiting inside aggregate actors
  std::int64_t region_mailbox = 0;   // sampled at the region's last tick
  std::int64_t commit_waiters = 0;   // long polls waiting (commits())
  std::int64_t commit_waits_refused = 0;
};

/// Extra envelope fields for the typed convenience calls.
struct command_options {
  std::string command_id = {};
  std::string correlation_id = {};
  std::string causation_id = {};
  expected_version expected = expected_version::any();
  /// See command_envelope::creates_stream.
  bool creates_stream = false;
};

/// A live aggregate's committed state (node::read_live).
struct live_state {
  boost::json::value state;  // the decider's state as JSON, as in snapshots
  stream_version version;    // 0 = the stream has no events
};
using live_read_done = std::function<void(std::optional<live_state>)>;

class node {
 public:
  node(const config& cfg, std::shared_ptr<event_store> store);
  ~node();
  node(const node&) = delete;
  node& operator=(const node&) = delete;

  /// Registers an aggregate type; only before start().
  template <decider D>
  void register_aggregate() {
    add_aggregate_type(make_aggregate_type<D>());
  }
  void add_aggregate_type(aggregate_type type);

  /// Registers every decider of a std::tuple<D...> type list.
  template <class Tuple>
  void register_aggregates() {
    [this]<class... Ds>(std::tuple<Ds...>*) {
      (register_aggregate<Ds>(), ...);
    }(static_cast<Tuple*>(nullptr));
  }

  /// Starts the actor system. Fails (std::runtime_error) when configuration
  /// names an aggregate category nobody registered.
  void start();

  /// Sends a command to its aggregate. `done` runs exactly once, on a runtime
  /// thread or inline when the command is shed or malformed; it must not block.
  void submit(command_envelope command, command_completion done);

  /// Submits and blocks the calling (non-actor) thread until the outcome.
  command_result submit_and_wait(command_envelope command);

  /// Typed convenience: sends `command` to stream `<D::category>-<id>`.
  template <decider D>
  command_result execute(std::string_view id, typename D::command command,
                         command_options options = {}) {
    return submit_and_wait(make_envelope<D>(id, std::move(command), std::move(options)));
  }

  template <decider D>
  static command_envelope make_envelope(std::string_view id, typename D::command command,
                                        command_options options = {}) {
    command_envelope env;
    env.stream_id = std::string(D::category) + "-" + std::string(id);
    env.payload = command_payload::of<typename D::command>(std::move(command));
    env.command_id = std::move(options.command_id);
    env.correlation_id = std::move(options.correlation_id);
    env.causation_id = std::move(options.causation_id);
    env.expected = options.expected;
    env.creates_stream = options.creates_stream;
    return env;
  }

  // ---- clustering (runtime/cluster.hpp drives these) ----

  /// Serves only the shards opened by open_shard(), of `shard_count`;
  /// only before start().
  void enable_sharding(int shard_count);
  int shard_count() const;
  /// From now on commands for the shard's streams are handled here.
  void open_shard(int shard);
  /// Stops taking commands for the shard (they are answered `unavailable`
  /// with code "shard_moved", untried), lets its actors finish what they
  /// hold and passivates them; `released` runs once none is left.
  void close_shard(int shard, std::function<void()> released);
  /// Routes every submitted command: called (after the node's own checks and
  /// in-flight accounting) instead of handing it to the local region. The
  /// router calls submit_here() for shards served here.
  using command_router = std::function<void(command_envelope, command_completion)>;
  void set_router(command_router router);
  /// Hands a command to this node's aggregates, bypassing the router. From
  /// the router, pass `counted` (the command is already in flight); a
  /// command from a peer node is counted and bounded here.
  void submit_here(command_envelope command, command_completion done, bool counted = false);

  /// The registration of an aggregate category, or nullptr.
  const aggregate_type* find_aggregate_type(std::string_view category) const;

  /// Reads the committed state of `stream_id` from its aggregate when that
  /// is live on this node (no store read): `done` runs once, on a runtime
  /// thread or inline, with the state, or with nullopt when the aggregate
  /// is not live here (never activated, recovering, passivating, another
  /// node's shard); read the store then. Never activates anything.
  void read_live(std::string stream_id, live_read_done done);

  /// Long polls: told of every commit this node's aggregates make
  /// (runtime/commit_watch.hpp). Bounded by `node.max_commit_waiters`.
  commit_watch& commits();
  /// True when this node runs the commands of `stream_id` (always when not
  /// clustered), so its commits are seen by commits().
  bool serves_stream(std::string_view stream_id) const;

  node_stats stats() const;
  const std::string& id() const;
  event_store& store();

  /// Passivates every aggregate (finishing their queued commands) and stops
  /// the actor system. Idempotent; the destructor calls it.
  void stop();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe
