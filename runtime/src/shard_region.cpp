// The shard region: one per node. Routes each command to the actor of its
// stream, activating it on demand; keeps at most `max_live` actors by
// passivating the least recently used, and passivates actors idle longer than
// the idle timeout. Commands for a stream whose actor is stopping are held
// here (bounded) and handed to its next incarnation, so a stream never has two
// live actors on one node.

#include <spdlog/spdlog.h>

#include <deque>
#include <list>

#include "runtime/shard_map.hpp"
#include "runtime/src/protocol.hpp"

namespace troupe::detail {

namespace {

using steady = std::chrono::steady_clock;

struct region_entry {
  caf::actor actor;
  std::uint64_t generation = 0;
  bool stopping = false;
  bool told_to_stop = false;         // its passivate_request is sent
  std::vector<routed_command> held;  // arrived while the actor was stopping
  std::list<const std::string*>::iterator lru;
  steady::time_point last_used;
};

struct region_state {
  hosting_context* context = nullptr;
  std::unordered_map<std::string, region_entry> entries;
  std::list<const std::string*> lru;  // active entries, most recently used first
  std::size_t active = 0;
  std::uint64_t next_generation = 1;
  std::chrono::milliseconds tick_interval{1000};
  bool draining = false;
  std::vector<caf::typed_response_promise<bool>> drain_waiters;
  /// Passivations decided but not yet sent, and how many sent ones are
  /// unfinished. Sending 100k requests at once queued 100k actors on one
  /// CAF worker, whose queue the other worker steals from in O(length)
  /// (CAF 0.17's double_ended_queue::take_tail): a node's stop took ~50 s
  /// with 200k live aggregates instead of well under one.
  struct deferred_stop {
    std::string stream_id;
    std::uint64_t generation = 0;
    bool bounce_queued = false;
  };
  std::deque<deferred_stop> stops_to_send;
  std::size_t stops_in_flight = 0;
  /// Shards being released: done callbacks waiting for their last actor.
  std::unordered_map<int, std::vector<std::function<void()>>> shard_waiters;

  static inline const char* name = "shard_region";
};

using region_actor = caf::stateful_actor<region_state>;

constexpr std::size_t max_stops_in_flight = 256;

void send_stop(region_actor* self, region_entry& entry, bool bounce_queued) {
  entry.told_to_stop = true;
  ++self->state.stops_in_flight;
  self->send(entry.actor, passivate_request{bounce_queued});
}

/// From here on the entry counts as stopping (its commands are held for the
/// next incarnation); the request itself goes out when few are in flight.
void begin_passivation(region_actor* self, region_entry& entry, bool bounce_queued = false) {
  auto& st = self->state;
  const std::string* stream_id = *entry.lru;  // the map's key
  entry.stopping = true;
  st.lru.erase(entry.lru);
  --st.active;
  if (st.stops_in_flight < max_stops_in_flight)
    send_stop(self, entry, bounce_queued);
  else
    st.stops_to_send.push_back({*stream_id, entry.generation, bounce_queued});
}

/// Sends deferred passivations while there is room (skipping entries that
/// went away or were activated again meanwhile).
void send_deferred_stops(region_actor* self) {
  auto& st = self->state;
  while (st.stops_in_flight < max_stops_in_flight && !st.stops_to_send.empty()) {
    auto next = std::move(st.stops_to_send.front());
    st.stops_to_send.pop_front();
    auto it = st.entries.find(next.stream_id);
    if (it == st.entries.end() || it->second.generation != next.generation ||
        !it->second.stopping || it->second.told_to_stop)
      continue;
    send_stop(self, it->second, next.bounce_queued);
  }
}

void make_room(region_actor* self) {
  auto& st = self->state;
  while (st.active >= st.context->max_live && !st.lru.empty())
    begin_passivation(self, st.entries.find(*st.lru.back())->second);
}

void activate(region_actor* self, const std::string& stream_id, region_entry& entry,
              const hosted_type* type, bool assume_new = false) {
  auto& st = self->state;
  make_room(self);
  entry.generation = st.next_generation++;
  entry.stopping = false;
  entry.told_to_stop = false;
  entry.actor = spawn_aggregate(self, st.context, type, stream_id, entry.generation, assume_new);
  self->monitor(entry.actor);
  st.lru.push_front(&stream_id);
  entry.lru = st.lru.begin();
  entry.last_used = steady::now();
  ++st.active;
}

const hosted_type* type_of(const hosting_context& context, std::string_view stream_id) {
  auto it = context.types.find(std::string(stream_category(stream_id)));
  return it == context.types.end() ? nullptr : &it->second;
}

command_result shard_moved(const std::string& stream_id) {
  return make_failure(command_status::unavailable, not_applied::shard_moved,
                      "this node no longer serves the shard of " + stream_id);
}

void finish_shard_release_if_done(region_actor* self, int shard) {
  auto& st = self->state;
  auto it = st.shard_waiters.find(shard);
  if (it == st.shard_waiters.end()) return;
  for (const auto& [stream_id, entry] : st.entries)
    if (shard_of(stream_id, st.context->shard_count) == shard) return;
  auto waiters = std::move(it->second);
  st.shard_waiters.erase(it);
  for (auto& done : waiters) done();
}

void finish_drain_if_done(region_actor* self) {
  auto& st = self->state;
  if (!st.draining || !st.entries.empty()) return;
  for (auto& waiter : st.drain_waiters) waiter.deliver(true);
  st.drain_waiters.clear();
}

/// The actor of `stream_id` is gone (stopped or crashed): start its next
/// incarnation for held commands, or forget the stream.
void on_actor_gone_impl(region_actor* self,
                        std::unordered_map<std::string, region_entry>::iterator it);

void on_actor_gone(region_actor* self, std::unordered_map<std::string, region_entry>::iterator it) {
  on_actor_gone_impl(self, it);
  send_deferred_stops(self);
}

void on_actor_gone_impl(region_actor* self,
                        std::unordered_map<std::string, region_entry>::iterator it) {
  auto& st = self->state;
  auto& entry = it->second;
  if (entry.told_to_stop) {
    entry.told_to_stop = false;
    --st.stops_in_flight;
  }
  if (!entry.stopping) {
    st.lru.erase(entry.lru);
    --st.active;
  }
  st.context->counters.passivations.fetch_add(1, std::memory_order_relaxed);
  auto forget = [&] {
    auto shard = st.context->shard_count > 0 ? shard_of(it->first, st.context->shard_count) : -1;
    st.entries.erase(it);
    finish_drain_if_done(self);
    if (shard >= 0) finish_shard_release_if_done(self, shard);
  };
  if (entry.held.empty()) {
    forget();
    return;
  }
  auto held = std::move(entry.held);
  entry.held.clear();
  if (st.draining || !serves_stream(*st.context, it->first)) {
    // Not tried: shard_moved tells the cluster's router to send them on.
    for (auto& c : held)
      c.complete(st.draining ? make_failure(command_status::unavailable, not_applied::node_stopping,
                                            "node is stopping")
                             : shard_moved(it->first));
    forget();
    return;
  }
  activate(self, it->first, entry, type_of(*st.context, it->first));
  for (auto& c : held) self->send(entry.actor, std::move(c));
}

caf::behavior region_behavior(region_actor* self, hosting_context* context) {
  auto& st = self->state;
  st.context = context;
  st.tick_interval = std::clamp(context->idle_timeout / 4, std::chrono::milliseconds{20},
                                std::chrono::milliseconds{5000});
  self->delayed_send(self, st.tick_interval, region_tick{});
  // An aggregate that dies without the stop handshake (a crash) shows up
  // here; released ones were demonitored first.
  self->set_down_handler([self](caf::down_msg& down) {
    auto& st = self->state;
    for (auto it = st.entries.begin(); it != st.entries.end(); ++it) {
      if (it->second.actor.address() == down.source) {
        st.context->log->error("aggregate actor of {} died: {}", it->first,
                               caf::to_string(down.reason));
        // It never announced its stop, so it is still counted as live.
        st.context->counters.live_aggregates.fetch_sub(1, std::memory_order_relaxed);
        on_actor_gone(self, it);
        return;
      }
    }
  });
  // Shutdown: take every aggregate down with the region; the commands they
  // hold are answered (unavailable) by their completion tokens.
  self->set_exit_handler([self](caf::exit_msg& exit) {
    for (auto& [stream_id, entry] : self->state.entries) self->send_exit(entry.actor, exit.reason);
    self->quit(exit.reason);
  });

  return {
      [self](routed_command& command) {
        auto& st = self->state;
        if (st.draining) {
          command.complete(make_failure(command_status::unavailable, not_applied::node_stopping,
                                        "node is stopping"));
          return;
        }
        const auto& stream_id = command.envelope.stream_id;
        if (!serves_stream(*st.context, stream_id)) {
          command.complete(shard_moved(stream_id));
          return;
        }
        if (auto it = st.entries.find(stream_id); it != st.entries.end()) {
          auto& entry = it->second;
          if (entry.stopping) {
            if (entry.held.size() >= st.context->max_pending_commands) {
              st.context->counters.shed.fetch_add(1, std::memory_order_relaxed);
              command.complete(make_failure(command_status::overloaded, "aggregate_overloaded",
                                            "too many commands waiting for " + stream_id));
            } else {
              entry.held.push_back(std::move(command));
            }
            return;
          }
          st.lru.splice(st.lru.begin(), st.lru, entry.lru);
          entry.last_used = steady::now();
          self->send(entry.actor, std::move(command));
          return;
        }
        if (auto problem = validate_stream_id(stream_id)) {
          st.context->counters.failed.fetch_add(1, std::memory_order_relaxed);
          command.complete(make_failure(command_status::invalid, "invalid_stream_id", *problem));
          return;
        }
        const auto* type = type_of(*st.context, stream_id);
        if (type == nullptr) {
          st.context->counters.failed.fetch_add(1, std::memory_order_relaxed);
          command.complete(make_failure(command_status::invalid, "unknown_category",
                                        "no aggregate type is registered for category '" +
                                            std::string(stream_category(stream_id)) + "'"));
          return;
        }
        auto [it, inserted] = st.entries.try_emplace(stream_id);
        activate(self, it->first, it->second, type, command.envelope.creates_stream);
        self->send(it->second.actor, std::move(command));
      },
      [self](live_read& read) {
        // Only a live, serving actor answers; reads never activate one.
        auto& st = self->state;
        if (st.draining || !serves_stream(*st.context, read.stream_id))
          return read.token->answer({});
        auto it = st.entries.find(read.stream_id);
        if (it == st.entries.end() || it->second.stopping) return read.token->answer({});
        self->send(it->second.actor, std::move(read));
      },
      [self](aggregate_stopped& m) {
        auto& st = self->state;
        auto it = st.entries.find(m.stream_id);
        if (it == st.entries.end() || it->second.generation != m.generation) return;
        self->demonitor(it->second.actor);
        self->send(it->second.actor, aggregate_release{});
        on_actor_gone(self, it);
      },
      [self](region_tick) {
        auto& st = self->state;
        auto idle_since = steady::now() - st.context->idle_timeout;
        while (!st.lru.empty()) {
          auto& entry = st.entries.find(*st.lru.back())->second;
          if (entry.last_used > idle_since) break;
          begin_passivation(self, entry);
        }
        st.context->counters.region_mailbox.store(static_cast<std::int64_t>(self->mailbox().size()),
                                                  std::memory_order_relaxed);
        self->delayed_send(self, st.tick_interval, region_tick{});
      },
      [self](release_shard& m) {
        auto& st = self->state;
        st.shard_waiters[m.shard].push_back(std::move(m.done));
        std::vector<region_entry*> to_stop;
        for (auto& [stream_id, entry] : st.entries)
          if (!entry.stopping && shard_of(stream_id, st.context->shard_count) == m.shard)
            to_stop.push_back(&entry);
        for (auto* entry : to_stop) begin_passivation(self, *entry, true);
        finish_shard_release_if_done(self, m.shard);
      },
      [self](region_drain) -> caf::result<bool> {
        auto& st = self->state;
        st.draining = true;
        while (!st.lru.empty()) begin_passivation(self, st.entries.find(*st.lru.back())->second);
        if (st.entries.empty()) return true;
        st.drain_waiters.push_back(self->make_response_promise<bool>());
        return st.drain_waiters.back();
      },
  };
}

}  // namespace

caf::actor spawn_region(caf::actor_system& system, hosting_context* context) {
  return system.spawn(region_behavior, context);
}

}  // namespace troupe::detail
