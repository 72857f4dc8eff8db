// The generic aggregate actor: one per live stream. It recovers (snapshot +
// tail), then runs the loop decide -> append with expected version -> evolve
// -> reply, strictly one command at a time: while an append is in flight,
// later commands wait in a bounded queue. Runs on CAF scheduler threads; all
// store I/O is asynchronous and re-enters through messages.

#include <spdlog/spdlog.h>

#include <deque>

#include "runtime/src/protocol.hpp"
#include "runtime/uuid.hpp"

namespace troupe::detail {

namespace {

/// The outcome of one applied command, kept so a retry with the same command
/// id gets the same answer instead of applying twice.
struct applied_command {
  std::string command_id;
  std::size_t id_hash = 0;  // compared first: most lookups miss
  stream_version first_version;
  stream_version last_version;
  global_position position;
  std::int64_t event_count = 0;
};

enum class phase : std::uint8_t { recovering, ready, appending };

/// A FIFO that allocates nothing while empty and little while short. A
/// std::deque allocates ~600 bytes up front; two per actor were a quarter
/// of a live aggregate's memory (live_aggregates_mem).
template <class T>
class small_fifo {
 public:
  bool empty() const { return head_ == items_.size(); }
  std::size_t size() const { return items_.size() - head_; }
  T& front() { return items_[head_]; }
  T& back() { return items_.back(); }
  void push_back(T value) { items_.push_back(std::move(value)); }
  void push_front(T value) {
    if (head_ > 0)
      items_[--head_] = std::move(value);
    else
      items_.insert(items_.begin(), std::move(value));
  }
  void pop_front() {
    items_[head_] = T{};  // release what it holds now, not at the next compaction
    if (++head_ == items_.size()) {
      clear();
    } else if (head_ >= 16 && head_ * 2 >= items_.size()) {
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }
  void clear() {
    items_.clear();
    head_ = 0;
  }
  auto begin() { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
  auto end() { return items_.end(); }
  auto begin() const { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
  auto end() const { return items_.end(); }
  auto rbegin() const { return items_.rbegin(); }
  auto rend() const { return items_.rend() - static_cast<std::ptrdiff_t>(head_); }

 private:
  std::vector<T> items_;
  std::size_t head_ = 0;
};

struct aggregate_state {
  hosting_context* context = nullptr;
  const hosted_type* type = nullptr;
  std::string stream_id;
  std::uint64_t generation = 0;
  caf::actor region;
  std::unique_ptr<aggregate_instance> instance;

  phase current = phase::recovering;
  stream_version version;
  std::int64_t events_since_snapshot = 0;
  bool passivate_requested = false;
  bool stopped = false;
  /// Started at version 0 without reading (the first command expected to
  /// create the stream): no answer may rely on that until the store agreed.
  bool assumed_new = false;

  small_fifo<routed_command> queue;  // commands waiting their turn
  routed_command in_flight;          // the command whose append is pending
  small_fifo<applied_command> recent;

  static inline const char* name = "aggregate";
};

using aggregate_actor = caf::stateful_actor<aggregate_state>;

void remember(aggregate_state& st, applied_command applied) {
  if (st.context->idempotency_window == 0) return;
  // Events of one command arrive one by one during recovery: extend, not add.
  if (!st.recent.empty() && st.recent.back().command_id == applied.command_id &&
      st.recent.back().last_version.next() == applied.first_version) {
    auto& last = st.recent.back();
    last.last_version = applied.last_version;
    last.position = applied.position;
    last.event_count += applied.event_count;
    return;
  }
  applied.id_hash = std::hash<std::string>{}(applied.command_id);
  st.recent.push_back(std::move(applied));
  while (st.recent.size() > st.context->idempotency_window) st.recent.pop_front();
}

const applied_command* find_applied(const aggregate_state& st, const std::string& command_id) {
  if (st.recent.empty()) return nullptr;
  auto hash = std::hash<std::string>{}(command_id);
  for (auto it = st.recent.rbegin(); it != st.recent.rend(); ++it)
    if (it->id_hash == hash && it->command_id == command_id) return &*it;
  return nullptr;
}

/// Tells the region this actor takes no more commands. It quits only when the
/// region answers with aggregate_release: commands the region forwarded
/// before it learnt of the stop are still in the mailbox and must each get an
/// answer, and nothing follows the release. Queued commands must have been
/// completed before.
void stop_actor(aggregate_actor* self) {
  auto& st = self->state;
  if (st.stopped) return;
  st.stopped = true;
  st.context->counters.live_aggregates.fetch_sub(1, std::memory_order_relaxed);
  self->send(st.region, aggregate_stopped{st.stream_id, st.generation});
}

/// Fails everything waiting and stops: used when the stream cannot be
/// recovered (store down, undecodable event). The next command re-activates.
void fail_and_stop(aggregate_actor* self, command_status status, const std::string& code,
                   const std::string& message) {
  auto& st = self->state;
  // An unreachable store is logged by the store itself, once per attempt;
  // every aggregate repeating it would flood the log during an outage.
  if (status == command_status::unavailable || status == command_status::overloaded)
    st.context->log->debug("aggregate {} stopped: {}", st.stream_id, message);
  else
    st.context->log->error("aggregate {} stopped: {}", st.stream_id, message);
  while (!st.queue.empty()) {
    st.context->counters.queued.fetch_sub(1, std::memory_order_relaxed);
    st.queue.front().complete(make_failure(status, code, message));
    st.queue.pop_front();
  }
  stop_actor(self);
}

command_status status_of_read_failure(store_errc e) {
  return e == store_errc::overloaded ? command_status::overloaded : command_status::unavailable;
}

void write_snapshot(aggregate_actor* self) {
  auto& st = self->state;
  boost::json::array recent;
  for (const auto& a : st.recent)
    recent.push_back(boost::json::array{boost::json::string(a.command_id), a.first_version.value,
                                        a.last_version.value, a.position.value, a.event_count});
  st.events_since_snapshot = 0;
  boost::json::object doc;
  try {
    doc["state"] = st.instance->save_state();
  } catch (const std::exception& e) {
    st.context->log->error("state of {} cannot be saved for a snapshot: {}", st.stream_id,
                           e.what());
    return;
  }
  doc["recent"] = std::move(recent);
  snapshot_record snapshot{st.stream_id, st.version, st.type->type.state_schema_version,
                           boost::json::serialize(doc)};
  // Off the command path: nobody waits for it; a lost snapshot only means a
  // longer replay next time.
  auto* context = st.context;
  context->pending_snapshots.fetch_add(1, std::memory_order_relaxed);
  context->store->save_snapshot(std::move(snapshot), [context](store_errc e, std::string m) {
    if (e == store_errc::ok)
      context->counters.snapshots_written.fetch_add(1, std::memory_order_relaxed);
    else
      context->log->warn("snapshot not written: {}", m);
    context->pending_snapshots.fetch_sub(1, std::memory_order_release);
  });
}

/// Restores state and remembered command ids from a snapshot. Returns false
/// when the snapshot cannot be used (the stream is then replayed in full).
bool restore_snapshot_or_throw(aggregate_state& st, const snapshot_record& snapshot);

bool restore_snapshot(aggregate_state& st, const snapshot_record& snapshot) {
  try {
    return restore_snapshot_or_throw(st, snapshot);
  } catch (const std::exception& e) {
    // A malformed snapshot is only a lost shortcut: replay the stream.
    st.context->log->warn("snapshot of {} ignored: {}", st.stream_id, e.what());
    st.instance = st.type->type.make_instance();
    st.recent.clear();
    st.version = stream_version{0};
    return false;
  }
}

bool restore_snapshot_or_throw(aggregate_state& st, const snapshot_record& snapshot) {
  if (snapshot.schema_version != st.type->type.state_schema_version) return false;
  boost::system::error_code ec;
  auto doc = boost::json::parse(snapshot.state, ec);
  if (ec || !doc.is_object()) return false;
  const auto* state = doc.as_object().if_contains("state");
  const auto* recent = doc.as_object().if_contains("recent");
  if (state == nullptr || recent == nullptr || !recent->is_array()) return false;
  if (auto problem = st.instance->load_state(*state)) {
    st.context->log->warn("snapshot of {} ignored: {}", st.stream_id, *problem);
    st.instance = st.type->type.make_instance();
    return false;
  }
  st.recent.clear();
  for (const auto& item : recent->as_array()) {
    const auto& a = item.as_array();
    std::string id(a.at(0).as_string());
    auto hash = std::hash<std::string>{}(id);
    st.recent.push_back(applied_command{std::move(id), hash, stream_version{a.at(1).as_int64()},
                                        stream_version{a.at(2).as_int64()},
                                        global_position{a.at(3).as_int64()}, a.at(4).as_int64()});
  }
  st.version = snapshot.version;
  return true;
}

void request_tail(aggregate_actor* self) {
  auto& st = self->state;
  auto handle = caf::actor_cast<caf::actor>(self);
  st.context->store->read_stream(
      st.stream_id, st.version.next(), st.context->recovery_page,
      [handle](read_result r) { caf::anon_send(handle, events_loaded{std::move(r)}); });
}

void process_queue(aggregate_actor* self);

/// An actor that assumed its stream was new met a command whose answer
/// would rest on that assumption (a rejection, a no-op, a version check) or
/// an append that conflicted: read the stream, then run the command again.
void recover_and_retry(aggregate_actor* self, routed_command command) {
  auto& st = self->state;
  st.assumed_new = false;
  st.queue.push_front(std::move(command));
  st.context->counters.queued.fetch_add(1, std::memory_order_relaxed);
  st.current = phase::recovering;
  request_tail(self);
}

/// Runs one command up to its append; completes it at once when it needs no
/// write (duplicate, conflict, rejection, no events).
void run_command(aggregate_actor* self, routed_command command) {
  auto& st = self->state;
  auto& counters = st.context->counters;
  const auto& env = command.envelope;

  if (const auto* applied = find_applied(st, env.command_id)) {
    command_result r;
    r.status = command_status::duplicate;
    r.first_version = applied->first_version;
    r.version = applied->last_version;
    r.position = applied->position;
    r.event_count = static_cast<std::size_t>(applied->event_count);
    counters.duplicate.fetch_add(1, std::memory_order_relaxed);
    command.complete(std::move(r));
    return;
  }
  if (!env.expected.matches(st.version)) {
    if (st.assumed_new) return recover_and_retry(self, std::move(command));
    counters.conflicted.fetch_add(1, std::memory_order_relaxed);
    auto r = make_failure(command_status::conflict, "version_conflict",
                          "stream " + st.stream_id + " is at version " +
                              std::to_string(st.version.value) + ", expected " +
                              env.expected.to_string());
    r.version = st.version;
    command.complete(std::move(r));
    return;
  }

  std::expected<std::vector<new_event>, rejection> decided;
  try {
    decided = st.instance->decide(env.payload);
  } catch (const std::exception& e) {
    // A throwing decider is a bug in domain code; the command fails, the
    // aggregate lives on with its state untouched.
    st.instance->discard();
    if (st.assumed_new) return recover_and_retry(self, std::move(command));
    counters.failed.fetch_add(1, std::memory_order_relaxed);
    st.context->log->error("decider of {} threw: {}", st.stream_id, e.what());
    command.complete(make_failure(command_status::invalid, "decider_failed", e.what()));
    return;
  }
  if (!decided) {
    if (st.assumed_new) return recover_and_retry(self, std::move(command));
    counters.rejected.fetch_add(1, std::memory_order_relaxed);
    command_result r;
    r.status = command_status::rejected;
    r.reason = std::move(decided.error());
    r.version = st.version;
    command.complete(std::move(r));
    return;
  }
  if (decided->empty()) {
    if (st.assumed_new) return recover_and_retry(self, std::move(command));
    counters.accepted.fetch_add(1, std::memory_order_relaxed);
    command_result r;
    r.version = st.version;
    r.first_version = st.version;
    command.complete(std::move(r));
    return;
  }

  append_request request;
  request.stream_id = st.stream_id;
  request.expected = expected_version::exact(st.version);
  request.events = std::move(*decided);
  for (auto& e : request.events) e.event_id = new_uuid();
  request.metadata.command_id = env.command_id;
  request.metadata.correlation_id = env.correlation_id;
  request.metadata.causation_id = env.causation_id;
  request.metadata.traceparent = env.traceparent;
  request.metadata.node_id = st.context->node_id;
  request.recorded_at = clock_type::now();

  st.current = phase::appending;
  st.in_flight = std::move(command);
  auto handle = caf::actor_cast<caf::actor>(self);
  st.context->store->append(std::move(request), [handle](append_result r) {
    caf::anon_send(handle, append_completed{std::move(r)});
  });
}

void process_queue(aggregate_actor* self) {
  auto& st = self->state;
  while (st.current == phase::ready && !st.queue.empty()) {
    auto next = std::move(st.queue.front());
    st.queue.pop_front();
    st.context->counters.queued.fetch_sub(1, std::memory_order_relaxed);
    run_command(self, std::move(next));
  }
  if (st.current == phase::ready && st.queue.empty() && st.passivate_requested) stop_actor(self);
}

void on_append_completed(aggregate_actor* self, append_result& r) {
  auto& st = self->state;
  auto& counters = st.context->counters;
  auto command = std::move(st.in_flight);
  st.in_flight = routed_command{};
  switch (r.error) {
    case store_errc::ok: {
      st.assumed_new = false;  // the store took it at version 1: it was new
      auto count = r.last_version.value - r.first_version.value + 1;
      bool evolved = true;
      try {
        st.instance->commit();
      } catch (const std::exception& e) {
        // The events are durable but the state could not take them (a bug
        // in evolve): rebuild it from the store before the next command.
        st.context->log->error("evolve of {} threw after an append: {}", st.stream_id, e.what());
        evolved = false;
      }
      st.version = r.last_version;
      remember(st, {command.envelope.command_id, 0, r.first_version, r.last_version,
                    r.last_position, count});
      counters.accepted.fetch_add(1, std::memory_order_relaxed);
      counters.events_appended.fetch_add(count, std::memory_order_relaxed);
      command_result result;
      result.first_version = r.first_version;
      result.version = r.last_version;
      result.position = r.last_position;
      result.event_count = static_cast<std::size_t>(count);
      command.complete(std::move(result));
      if (st.context->commits != nullptr)
        st.context->commits->committed(st.stream_id, r.last_version.value);
      if (!evolved) {
        st.instance = st.type->type.make_instance();
        st.version = stream_version{0};
        st.recent.clear();
        st.events_since_snapshot = 0;
        st.current = phase::recovering;
        request_tail(self);
        return;
      }
      st.events_since_snapshot += count;
      if (st.type->snapshot_every > 0 && st.events_since_snapshot >= st.type->snapshot_every)
        write_snapshot(self);
      st.current = phase::ready;
      process_queue(self);
      return;
    }
    case store_errc::overloaded:
      // Not attempted: the state is still true; shed this command only.
      st.instance->discard();
      counters.shed.fetch_add(1, std::memory_order_relaxed);
      command.complete(make_failure(command_status::overloaded, "store_overloaded", r.message));
      st.current = phase::ready;
      process_queue(self);
      return;
    case store_errc::invalid_input:
      st.instance->discard();
      counters.failed.fetch_add(1, std::memory_order_relaxed);
      command.complete(make_failure(command_status::invalid, "invalid_input", r.message));
      st.current = phase::ready;
      process_queue(self);
      return;
    case store_errc::version_conflict:
      // Another writer got there first (a briefly doubled owner): our state
      // is stale. Catch up from the store before the next command.
      st.instance->discard();
      if (st.assumed_new) {
        // The stream was not new after all: nothing was written, so the
        // command runs again on the real state.
        recover_and_retry(self, std::move(command));
        return;
      }
      counters.conflicted.fetch_add(1, std::memory_order_relaxed);
      command.complete(make_failure(command_status::conflict, "version_conflict", r.message));
      break;
    case store_errc::unavailable:
      // The write's outcome is unknown: never continue from assumed state;
      // re-read the stream (a retry with the same command id is then safe).
      st.instance->discard();
      st.assumed_new = false;
      counters.failed.fetch_add(1, std::memory_order_relaxed);
      command.complete(make_failure(command_status::unavailable, "store_unavailable", r.message));
      break;
  }
  st.current = phase::recovering;
  request_tail(self);
}

void on_events_loaded(aggregate_actor* self, read_result& r) {
  auto& st = self->state;
  if (r.error != store_errc::ok) {
    fail_and_stop(self, status_of_read_failure(r.error), "store_unavailable",
                  "cannot read stream " + st.stream_id + ": " + r.message);
    return;
  }
  for (const auto& e : r.events) {
    if (e.version != st.version.next()) {
      fail_and_stop(self, command_status::unavailable, "stream_gap",
                    "stream " + st.stream_id + " jumps from version " +
                        std::to_string(st.version.value) + " to " +
                        std::to_string(e.version.value));
      return;
    }
    std::optional<std::string> problem;
    try {
      problem = st.instance->apply(e);
    } catch (const std::exception& ex) {
      problem = ex.what();
    }
    if (problem) {
      fail_and_stop(self, command_status::unavailable, "undecodable_event",
                    "stream " + st.stream_id + " version " + std::to_string(e.version.value) +
                        ": " + *problem);
      return;
    }
    st.version = e.version;
    ++st.events_since_snapshot;
    remember(st, {e.metadata.command_id, 0, e.version, e.version, e.position, 1});
  }
  if (r.events.size() >= st.context->recovery_page) {
    request_tail(self);
    return;
  }
  st.current = phase::ready;
  process_queue(self);
}

caf::behavior aggregate_behavior(aggregate_actor* self, hosting_context* context,
                                 const hosted_type* type, std::string stream_id,
                                 std::uint64_t generation, caf::actor region, bool assume_new) {
  auto& st = self->state;
  st.context = context;
  st.type = type;
  st.stream_id = std::move(stream_id);
  st.generation = generation;
  st.region = std::move(region);
  st.instance = type->type.make_instance();
  context->counters.live_aggregates.fetch_add(1, std::memory_order_relaxed);
  context->counters.activations.fetch_add(1, std::memory_order_relaxed);

  auto handle = caf::actor_cast<caf::actor>(self);
  if (assume_new) {
    st.assumed_new = true;
    st.current = phase::ready;
  } else {
    // Snapshot and first page of events in one request: the store serves
    // many activations per round trip.
    context->store->load_stream_head(
        st.stream_id, context->recovery_page, [handle](stream_head_result r) {
          caf::anon_send(handle, snapshot_loaded{std::move(r.snapshot), std::move(r.tail)});
        });
  }

  return {
      [self](routed_command& command) {
        auto& st = self->state;
        if (st.stopped) {
          command.complete(make_failure(command_status::unavailable, "aggregate_stopped",
                                        "aggregate " + st.stream_id + " is stopping; retry"));
          return;
        }
        if (st.current == phase::ready && st.queue.empty()) {
          run_command(self, std::move(command));
          return;
        }
        if (st.queue.size() >= st.context->max_pending_commands) {
          st.context->counters.shed.fetch_add(1, std::memory_order_relaxed);
          command.complete(make_failure(command_status::overloaded, "aggregate_overloaded",
                                        "too many commands queued at " + st.stream_id));
          return;
        }
        st.context->counters.queued.fetch_add(1, std::memory_order_relaxed);
        st.queue.push_back(std::move(command));
      },
      [self](live_read& read) {
        // The committed state (pending events live apart until commit());
        // unknown while recovering, or while a new stream is only assumed.
        auto& st = self->state;
        if (st.stopped || st.current == phase::recovering ||
            (st.assumed_new && st.version.value == 0))
          return read.token->answer({});
        try {
          read.token->answer(live_state{st.instance->save_state(), st.version});
        } catch (const std::exception& e) {
          // A state that cannot be shown must not end the actor: the store
          // answers the read instead.
          st.context->log->error("state of {} cannot be read live: {}", st.stream_id, e.what());
          read.token->answer({});
        }
      },
      [self](append_completed& m) { on_append_completed(self, m.result); },
      [self](snapshot_loaded& m) {
        auto& st = self->state;
        if (m.result.error != store_errc::ok) {
          fail_and_stop(self, status_of_read_failure(m.result.error), "store_unavailable",
                        "cannot load snapshot of " + st.stream_id + ": " + m.result.message);
          return;
        }
        bool restored = m.result.snapshot && restore_snapshot(st, *m.result.snapshot);
        // The tail read with the snapshot starts after the snapshot's
        // version: usable only when the snapshot was (or there was none).
        if (m.tail && (restored || !m.result.snapshot)) {
          on_events_loaded(self, *m.tail);
          return;
        }
        request_tail(self);
      },
      [self](events_loaded& m) { on_events_loaded(self, m.result); },
      [self](passivate_request& request) {
        auto& st = self->state;
        st.passivate_requested = true;
        if (request.bounce_queued) {
          for (auto& queued : st.queue) {
            st.context->counters.queued.fetch_sub(1, std::memory_order_relaxed);
            queued.complete(make_failure(
                command_status::unavailable, not_applied::shard_moved,
                "the shard of " + st.stream_id + " is moving to another node; not applied here"));
          }
          st.queue.clear();
        }
        if (st.current == phase::ready && st.queue.empty()) stop_actor(self);
      },
      [self](aggregate_release) { self->quit(); },
  };
}

}  // namespace

caf::actor spawn_aggregate(caf::local_actor* parent, hosting_context* context,
                           const hosted_type* type, std::string stream_id, std::uint64_t generation,
                           bool assume_new) {
  // Not linked: a CAF link puts one entry per child in the region's own
  // attachable list, and unlinking scans it, which is quadratic with 100k
  // activations. The region monitors instead and kills its actors itself.
  return parent->spawn<caf::lazy_init>(aggregate_behavior, context, type, std::move(stream_id),
                                       generation, caf::actor_cast<caf::actor>(parent), assume_new);
}

}  // namespace troupe::detail
