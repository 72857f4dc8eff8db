#include "runtime/node.hpp"

#include <unistd.h>

#include <future>
#include <shared_mutex>
#include <stdexcept>
#include <thread>

#include "runtime/commit_watch.hpp"
#include "runtime/logging.hpp"
#include "runtime/src/protocol.hpp"
#include "runtime/src/scheduler.hpp"
#include "runtime/uuid.hpp"

namespace troupe {

namespace detail {

void completion_token::complete(command_result result) {
  if (completed_.exchange(true, std::memory_order_acq_rel)) return;
  if (counters_ != nullptr) counters_->in_flight.fetch_sub(1, std::memory_order_relaxed);
  try {
    done_(std::move(result));
  } catch (const std::exception& e) {
    // A throwing completion is the caller's bug; it must not take down the
    // actor (and with it every other command it holds).
    spdlog::error("a command completion threw: {}", e.what());
  }
}

completion_token::~completion_token() {
  if (!completed_.load(std::memory_order_acquire))
    complete(make_failure(command_status::unavailable, "command_dropped",
                          "the command was dropped before it was answered (its aggregate "
                          "stopped or the node is shutting down); retry"));
}

command_result make_failure(command_status status, std::string code, std::string message) {
  command_result r;
  r.status = status;
  r.reason = rejection{std::move(code), std::move(message)};
  return r;
}

}  // namespace detail

namespace {

std::string default_node_id() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "node");
  return std::string(host) + "-" + std::to_string(getpid());
}

}  // namespace

struct node::impl {
  config cfg;
  detail::hosting_context context;
  std::unique_ptr<caf::actor_system_config> system_config;
  std::unique_ptr<caf::actor_system> system;
  caf::actor region;
  std::int64_t max_in_flight = 0;
  std::chrono::milliseconds shutdown_timeout{30000};
  bool started = false;
  // Submitters hold `lifecycle` shared while they hand a command to the
  // region; stop() takes it exclusively to flip `accepting`, so no submit
  // can race the region's shutdown.
  std::shared_mutex lifecycle;
  bool accepting = false;
  bool stopped = false;
  // Copied under `lifecycle` and called outside it: set_router may
  // replace it while a call is running.
  std::shared_ptr<const command_router> router;
  std::unique_ptr<commit_watch> commits;

  /// Checks a command may enter (running, under the in-flight bound, not
  /// empty), fills its ids; on refusal answers `done` and returns false.
  bool admit(command_envelope& command, command_completion& done);
};

node::node(const config& cfg, std::shared_ptr<event_store> store) : impl_(new impl) {
  auto& im = *impl_;
  im.cfg = cfg;
  im.context.store = std::move(store);
  im.context.node_id = cfg.string("node.id").empty() ? default_node_id() : cfg.string("node.id");
  im.context.max_pending_commands =
      static_cast<std::size_t>(cfg.integer("aggregate.max_pending_commands"));
  im.context.idempotency_window =
      static_cast<std::size_t>(cfg.integer("aggregate.idempotency_window"));
  im.context.max_live = static_cast<std::size_t>(cfg.integer("aggregate.max_live"));
  im.context.idle_timeout = std::chrono::milliseconds{cfg.integer("aggregate.idle_timeout_ms")};
  im.context.log = logger("node");
  im.max_in_flight = cfg.integer("node.max_in_flight_commands");
  im.shutdown_timeout = std::chrono::milliseconds{cfg.integer("node.shutdown_timeout_ms")};
  im.commits = std::make_unique<commit_watch>(
      static_cast<std::size_t>(cfg.integer("node.max_commit_waiters")));
  im.context.commits = im.commits.get();
}

node::~node() { stop(); }

void node::add_aggregate_type(aggregate_type type) {
  auto& im = *impl_;
  if (im.started) throw std::logic_error("register aggregate types before node::start()");
  if (auto problem = validate_stream_id(type.category + "-x"))
    throw std::invalid_argument("aggregate category '" + type.category +
                                "' is not valid: " + *problem);
  if (im.context.types.contains(type.category))
    throw std::invalid_argument("aggregate category '" + type.category + "' is registered twice");
  auto category = type.category;
  im.context.types.emplace(category, detail::hosted_type{std::move(type), 0});
}

void node::start() {
  auto& im = *impl_;
  if (im.started) return;
  // Per-type settings must name a registered category: a typo would
  // otherwise silently fall back to the default.
  for (const auto& key : im.cfg.keys_with_prefix("aggregate.types.")) {
    auto rest = std::string_view(key).substr(std::string_view("aggregate.types.").size());
    auto category = std::string(rest.substr(0, rest.find('.')));
    if (!im.context.types.contains(category))
      throw std::runtime_error("configuration key '" + key + "' names aggregate category '" +
                               category + "', which is not registered");
  }
  for (auto& [category, hosted] : im.context.types) {
    hosted.snapshot_every = hosted.type.snapshot_every.value_or(
        im.cfg.find_integer("aggregate.types." + category + ".snapshot_every")
            .value_or(im.cfg.integer("aggregate.snapshot_every")));
  }

  im.system_config = std::make_unique<caf::actor_system_config>();
  auto threads = im.cfg.integer("runtime.threads");
  if (threads == 0) threads = std::max<std::int64_t>(1, std::thread::hardware_concurrency());
  // CAF defaults to 4 threads whatever the core count; more threads than
  // cores only adds stealing overhead.
  im.system_config->set("scheduler.max-threads", static_cast<std::size_t>(threads));
  // An idle CAF worker spins briefly, then by default sleeps 50 us and
  // polls again 500 times before it waits to be woken. Each of those sleeps
  // is a context switch, costly in a VM, and between bursts of work (any
  // load short of saturation) they add up: checkout at 100 orders/s took
  // 1.42 cores with them and 1.13 without, and place-complete peaked 16 %
  // higher without them (medians of 10 interleaved runs, benchmarks.md).
  im.system_config->set("work-stealing.moderate-poll-attempts",
                        static_cast<std::size_t>(im.cfg.integer("runtime.idle_poll_sleeps")));
  detail::use_troupe_scheduler(*im.system_config);
  im.system = std::make_unique<caf::actor_system>(*im.system_config);
  im.region = detail::spawn_region(*im.system, &im.context);
  {
    std::unique_lock lock{im.lifecycle};
    im.started = true;
    im.accepting = true;
  }
  im.context.log->info("node {} started: {} aggregate types, {} scheduler threads",
                       im.context.node_id, im.context.types.size(), threads);
}

bool node::impl::admit(command_envelope& command, command_completion& done) {
  if (!accepting) {
    done(detail::make_failure(command_status::unavailable, not_applied::node_not_running,
                              "the node is not running"));
    return false;
  }
  auto in_flight_now = context.counters.in_flight.fetch_add(1, std::memory_order_relaxed);
  if (in_flight_now >= max_in_flight) {
    context.counters.in_flight.fetch_sub(1, std::memory_order_relaxed);
    context.counters.shed.fetch_add(1, std::memory_order_relaxed);
    done(detail::make_failure(command_status::overloaded, "node_overloaded",
                              "too many commands in flight on this node; retry later"));
    return false;
  }
  if (command.payload.empty()) {
    detail::completion_token(std::move(done), &context.counters)
        .complete(
            detail::make_failure(command_status::invalid, "empty_command", "the command is empty"));
    return false;
  }
  if (command.command_id.empty()) command.command_id = new_uuid();
  if (command.correlation_id.empty()) command.correlation_id = command.command_id;
  return true;
}

void node::submit(command_envelope command, command_completion done) {
  auto& im = *impl_;
  std::shared_lock lock{im.lifecycle};
  if (!im.admit(command, done)) return;
  auto token = std::make_shared<detail::completion_token>(std::move(done), &im.context.counters);
  if (auto router = im.router) {
    lock.unlock();  // the router may forward, retry or call submit_here
    (*router)(std::move(command), [token](command_result r) { token->complete(std::move(r)); });
    return;
  }
  caf::anon_send(im.region, detail::routed_command{std::move(command), std::move(token)});
}

void node::submit_here(command_envelope command, command_completion done, bool counted) {
  auto& im = *impl_;
  std::shared_lock lock{im.lifecycle};
  if (counted) {
    if (!im.accepting) {
      done(detail::make_failure(command_status::unavailable, not_applied::node_not_running,
                                "the node is not running"));
      return;
    }
    caf::anon_send(im.region, detail::routed_command{std::move(command),
                                                     std::make_shared<detail::completion_token>(
                                                         std::move(done), nullptr)});
    return;
  }
  if (!im.admit(command, done)) return;
  caf::anon_send(im.region, detail::routed_command{std::move(command),
                                                   std::make_shared<detail::completion_token>(
                                                       std::move(done), &im.context.counters)});
}

void node::enable_sharding(int shard_count) {
  auto& im = *impl_;
  if (im.started) throw std::logic_error("enable sharding before node::start()");
  if (shard_count < 1) throw std::invalid_argument("shard count must be at least 1");
  im.context.shard_count = shard_count;
  im.context.shard_open =
      std::make_unique<std::atomic<bool>[]>(static_cast<std::size_t>(shard_count));
  for (int s = 0; s < shard_count; ++s) im.context.shard_open[s].store(false);
}

const aggregate_type* node::find_aggregate_type(std::string_view category) const {
  auto it = impl_->context.types.find(std::string(category));
  return it == impl_->context.types.end() ? nullptr : &it->second.type;
}

int node::shard_count() const { return impl_->context.shard_count; }

void node::open_shard(int shard) {
  auto& im = *impl_;
  if (shard < 0 || shard >= im.context.shard_count) throw std::out_of_range("no such shard");
  im.context.shard_open[shard].store(true, std::memory_order_release);
}

void node::close_shard(int shard, std::function<void()> released) {
  auto& im = *impl_;
  if (shard < 0 || shard >= im.context.shard_count) throw std::out_of_range("no such shard");
  im.context.shard_open[shard].store(false, std::memory_order_release);
  std::shared_lock lock{im.lifecycle};
  if (!im.started || im.stopped) {
    lock.unlock();
    released();
    return;
  }
  caf::anon_send(im.region, detail::release_shard{shard, std::move(released)});
}

void node::set_router(command_router router) {
  auto& im = *impl_;
  auto shared = router ? std::make_shared<const command_router>(std::move(router)) : nullptr;
  std::unique_lock lock{im.lifecycle};
  im.router = std::move(shared);
}

command_result node::submit_and_wait(command_envelope command) {
  std::promise<command_result> promise;
  auto future = promise.get_future();
  submit(std::move(command), [&promise](command_result r) { promise.set_value(std::move(r)); });
  return future.get();
}

node_stats node::stats() const {
  const auto& c = impl_->context.counters;
  auto get = [](const std::atomic<std::int64_t>& a) { return a.load(std::memory_order_relaxed); };
  node_stats s;
  s.in_flight_commands = get(c.in_flight);
  s.live_aggregates = get(c.live_aggregates);
  s.activations = get(c.activations);
  s.passivations = get(c.passivations);
  s.commands_accepted = get(c.accepted);
  s.commands_duplicate = get(c.duplicate);
  s.commands_rejected = get(c.rejected);
  s.commands_conflicted = get(c.conflicted);
  s.commands_shed = get(c.shed);
  s.commands_failed = get(c.failed);
  s.events_appended = get(c.events_appended);
  s.snapshots_written = get(c.snapshots_written);
  s.queued_commands = get(c.queued);
  s.region_mailbox = get(c.region_mailbox);
  s.commit_waiters = static_cast<std::int64_t>(impl_->commits->waiting());
  s.commit_waits_refused = impl_->commits->refused();
  return s;
}

void node::read_live(std::string stream_id, live_read_done done) {
  auto& im = *impl_;
  std::shared_lock lock{im.lifecycle};
  if (!im.accepting) return done(std::nullopt);
  caf::anon_send(im.region,
                 detail::live_read{std::move(stream_id),
                                   std::make_shared<detail::live_read_token>(std::move(done))});
}

commit_watch& node::commits() { return *impl_->commits; }

bool node::serves_stream(std::string_view stream_id) const {
  return detail::serves_stream(impl_->context, stream_id);
}

const std::string& node::id() const { return impl_->context.node_id; }

event_store& node::store() { return *impl_->context.store; }

void node::stop() {
  auto& im = *impl_;
  {
    std::unique_lock lock{im.lifecycle};
    if (!im.started || im.stopped) return;
    im.stopped = true;
    im.accepting = false;
  }
  {
    // Commands already queued finish; a store that does not answer within
    // the bound must not hang shutdown (their senders get `unavailable`
    // when the actor system drops them).
    caf::scoped_actor waiter{*im.system};
    waiter->request(im.region, im.shutdown_timeout, detail::region_drain{})
        .receive([](bool) {},
                 [&](caf::error& e) {
                   im.context.log->error("region drain did not finish: {}", caf::to_string(e));
                 });
    caf::anon_send_exit(im.region, caf::exit_reason::user_shutdown);
  }
  im.region = nullptr;
  im.system.reset();  // waits for every actor to finish
  // Snapshot writes still in the store hold a pointer to our counters.
  for (int i = 0; i < 1000 && im.context.pending_snapshots.load() > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  if (auto left = im.context.pending_snapshots.load(); left > 0)
    im.context.log->warn("{} snapshot writes still pending at shutdown", left);
  im.commits->stop();  // waiters get `stopped` and answer what they have
  im.context.log->info("node {} stopped", im.context.node_id);
}

}  // namespace troupe
