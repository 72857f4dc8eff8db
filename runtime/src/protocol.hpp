#pragma once
// The aggregate hosting protocol: every message the node, the shard region
// and aggregate actors exchange, declared once. Messages stay inside one
// process (nodes talk over NATS, not CAF), hence CAF_ALLOW_UNSAFE_MESSAGE_TYPE.

#include <caf/all.hpp>

#include <atomic>
#include <memory>
#include <string>
#include <unordered_map>

#include "persistence/event_store.hpp"
#include "runtime/aggregate_host.hpp"
#include "runtime/command.hpp"
#include "runtime/commit_watch.hpp"
#include "runtime/node.hpp"
#include "runtime/shard_map.hpp"

namespace spdlog {
class logger;
}

namespace troupe::detail {

/// Live counters shared by the node, the region and every aggregate actor.
struct node_counters {
  std::atomic<std::int64_t> in_flight{0};
  std::atomic<std::int64_t> live_aggregates{0};
  std::atomic<std::int64_t> activations{0};
  std::atomic<std::int64_t> passivations{0};
  std::atomic<std::int64_t> accepted{0};
  std::atomic<std::int64_t> duplicate{0};
  std::atomic<std::int64_t> rejected{0};
  std::atomic<std::int64_t> conflicted{0};
  std::atomic<std::int64_t> shed{0};
  std::atomic<std::int64_t> failed{0};
  std::atomic<std::int64_t> events_appended{0};
  std::atomic<std::int64_t> snapshots_written{0};
  std::atomic<std::int64_t> queued{0};
  std::atomic<std::int64_t> region_mailbox{0};
};

/// A registered aggregate type with its effective settings.
struct hosted_type {
  aggregate_type type;
  std::int64_t snapshot_every = 0;
};

/// Read-only after start: what every aggregate actor needs.
struct hosting_context {
  std::shared_ptr<event_store> store;
  std::string node_id;
  std::unordered_map<std::string, hosted_type> types;
  std::size_t max_pending_commands = 1000;
  std::size_t idempotency_window = 32;
  std::size_t max_live = 200000;
  std::chrono::milliseconds idle_timeout{120000};
  /// Clustered nodes: the shard count and which shards this node serves now
  /// (set by the cluster); 0 = not clustered, every stream is served here.
  int shard_count = 0;
  std::unique_ptr<std::atomic<bool>[]> shard_open;
  std::size_t recovery_page = 512;
  node_counters counters;
  /// Snapshot writes whose store callback has not run yet; the node waits
  /// for them before this context goes away.
  std::atomic<std::int64_t> pending_snapshots{0};
  std::shared_ptr<spdlog::logger> log;
  /// Told of every commit, for long polls (node-owned; never null once started).
  commit_watch* commits = nullptr;
};

/// Whether this node serves the stream's shard now (always, unclustered).
inline bool serves_stream(const hosting_context& context, std::string_view stream_id) {
  return context.shard_count == 0 ||
         context.shard_open[shard_of(stream_id, context.shard_count)].load(
             std::memory_order_acquire);
}

/// The sender's completion for one command, shared by every copy of the
/// message that carries it. It runs exactly once: when the command is
/// answered, or, if every copy is dropped unanswered (an actor died, the
/// system shut down), with `unavailable` when the last copy goes, so no
/// sender ever waits forever. Either way it frees the node's in-flight slot.
class completion_token {
 public:
  completion_token(command_completion done, node_counters* counters)
      : done_(std::move(done)), counters_(counters) {}
  ~completion_token();
  completion_token(const completion_token&) = delete;
  completion_token& operator=(const completion_token&) = delete;

  void complete(command_result result);

 private:
  std::atomic<bool> completed_{false};
  command_completion done_;
  node_counters* counters_;
};

/// A command on its way to its aggregate.
struct routed_command {
  command_envelope envelope;
  std::shared_ptr<completion_token> token;

  void complete(command_result result) {
    if (token) token->complete(std::move(result));
  }
};

/// A read of a live aggregate's state. Its `done` runs exactly once: with
/// the state, or with nullopt when no live actor answers (also when the
/// message is dropped: the last copy's destructor answers).
class live_read_token {
 public:
  explicit live_read_token(live_read_done done) : done_(std::move(done)) {}
  ~live_read_token() {
    if (done_) done_(std::nullopt);
  }
  live_read_token(const live_read_token&) = delete;
  live_read_token& operator=(const live_read_token&) = delete;
  void answer(std::optional<live_state> state) {
    auto done = std::move(done_);
    done_ = nullptr;
    if (done) done(std::move(state));
  }

 private:
  live_read_done done_;
};
struct live_read {
  std::string stream_id;
  std::shared_ptr<live_read_token> token;
};

/// Result helpers.
command_result make_failure(command_status status, std::string code, std::string message);

// Store callbacks, re-entering the aggregate actor.
struct append_completed {
  append_result result;
};
struct snapshot_loaded {
  snapshot_result result;
  /// The events after the snapshot, when they were read with it.
  std::optional<read_result> tail;
};
struct events_loaded {
  read_result result;
};

// Region <-> aggregate.
struct passivate_request {
  /// The shard is moving: answer queued (untried) commands `shard_moved`
  /// so they go to the new owner now, instead of running them here first.
  bool bounce_queued = false;
};
struct aggregate_stopped {
  std::string stream_id;
  std::uint64_t generation;
};
struct aggregate_release {};
struct region_tick {};
struct region_drain {};
/// Passivate every actor of a shard this node stopped serving; `done` runs
/// (on the region's thread) when none is left.
struct release_shard {
  int shard;
  std::function<void()> done;
};

}  // namespace troupe::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::detail::routed_command)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::detail::live_read)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::detail::append_completed)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::detail::snapshot_loaded)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::detail::events_loaded)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::detail::passivate_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::detail::aggregate_stopped)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::detail::aggregate_release)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::detail::region_tick)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::detail::region_drain)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::detail::release_shard)

namespace troupe::detail {

/// Spawns the actor hosting one stream; it recovers, then serves commands.
/// With `assume_new` it starts at version 0 without reading, and checks
/// that assumption with the store before any answer depends on it.
caf::actor spawn_aggregate(caf::local_actor* parent, hosting_context* context,
                           const hosted_type* type, std::string stream_id, std::uint64_t generation,
                           bool assume_new = false);

/// Spawns the node's shard region.
caf::actor spawn_region(caf::actor_system& system, hosting_context* context);

}  // namespace troupe::detail
