// `troupe serve`: one node with the bookstore's aggregates, the publisher,
// the projectors, the sagas and the HTTP API. It can run a demo workload at
// start-up. SIGTERM stops it gracefully: the HTTP server stops accepting and
// answers what is in flight, then the sagas, the node (its queued commands
// and the journal), the publisher and the projectors stop in that order.

#include <signal.h>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>

#include "actors/bookstore.hpp"
#include "actors/projections.hpp"
#include "actors/sagas.hpp"
#include "http/api.hpp"
#include "http/server.hpp"
#include "persistence/postgres/view_store.hpp"
#include "runtime/cluster.hpp"
#include "runtime/commit_watch.hpp"
#include "runtime/logging.hpp"
#include "runtime/node.hpp"
#include "runtime/projector.hpp"
#include "runtime/publisher.hpp"
#include "runtime/saga_host.hpp"
#include "runtime/store_factory.hpp"
#include "runtime/uuid.hpp"
#include "tools/troupe/commands.hpp"

namespace troupe::cli {

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// Counts completions of asynchronously submitted commands.
struct demo_tally {
  std::mutex mutex;
  std::condition_variable changed;
  std::int64_t done = 0, ok = 0, failed = 0;
  std::string first_failure;

  command_completion slot() {
    return [this](command_result r) {
      std::lock_guard lock{mutex};
      ++done;
      if (r.ok()) {
        ++ok;
      } else if (++failed == 1) {
        first_failure =
            std::string(to_string(r.status)) + ": " + r.reason.code + " " + r.reason.message;
      }
      changed.notify_all();
    };
  }
  void wait_until_done_at_least(std::int64_t n) {
    std::unique_lock lock{mutex};
    changed.wait(lock, [&] { return done >= n; });
  }
};

/// The demo's catalog: `books` books (created once), each given `stock` more
/// units now, so a repeated demo on the same database has enough.
bool seed_demo_books(node& n, int books, std::int64_t stock, spdlog::logger& log) {
  using namespace bookstore;
  for (int b = 0; b < books; ++b) {
    auto id = "demo-" + std::to_string(b);
    auto r = n.execute<book>(id, create_book{.book_id = id,
                                             .name = "Demo book " + std::to_string(b),
                                             .description = "seeded by --demo-orders",
                                             .price = 1000 + 100 * b,
                                             .discount_price = std::nullopt,
                                             .category_id = "demo",
                                             .publisher_id = "demo",
                                             .author_ids = {"demo"},
                                             .initial_stock = 0});
    auto stocked = n.execute<book>(id, add_stock{id, stock});
    if ((!r.ok() && r.status != command_status::rejected) || !stocked.ok()) {
      log.error("seeding book {} failed: {}", id, r.reason.message + stocked.reason.message);
      return false;
    }
  }
  return true;
}

/// Seeds a small catalog and runs `orders` orders through the same steps the
/// fulfilment saga will take: reserve stock, place, complete, commit stock.
bool run_demo(node& n, std::int64_t orders, spdlog::logger& log) {
  using namespace bookstore;
  constexpr int books = 20;
  if (!seed_demo_books(n, books, orders * 2 + 10, log)) return false;
  log.info("demo: seeded {} books; placing {} orders", books, orders);

  auto started = std::chrono::steady_clock::now();
  demo_tally tally;
  constexpr std::int64_t window = 1000;  // orders in flight at once
  std::int64_t submitted = 0;
  auto base = now_ms();
  for (std::int64_t i = 0; i < orders; ++i) {
    if (i >= window) tally.wait_until_done_at_least((i - window + 1) * 4);
    auto order_id = "demo-" + std::to_string(base) + "-" + std::to_string(i);
    auto book_id = "demo-" + std::to_string(i % books);
    std::int64_t price = 1000 + 100 * (i % books);
    // Each order's steps are independent streams; the saga (a later part)
    // will sequence them. Here they run concurrently to show throughput.
    n.submit(node::make_envelope<book>(book_id, reserve_stock{book_id, order_id, 1}), tally.slot());
    n.submit(node::make_envelope<order>(order_id, place_order{order_id,
                                                              "buyer-" + std::to_string(i % 100),
                                                              {order_item{book_id, 1, price}},
                                                              now_ms()}),
             tally.slot());
    n.submit(node::make_envelope<order>(order_id, complete_order{order_id, now_ms()}),
             tally.slot());
    n.submit(node::make_envelope<book>(book_id, commit_stock{book_id, order_id}), tally.slot());
    submitted += 4;
  }
  tally.wait_until_done_at_least(submitted);
  auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  log.info("demo: {} commands in {:.2f} s ({:.0f} commands/s), {} ok, {} failed{}", submitted,
           seconds, submitted / std::max(seconds, 1e-9), tally.ok, tally.failed,
           tally.failed ? " — first failure: " + tally.first_failure : std::string());
  return tally.failed == 0;
}

/// With sagas running, the demo only places orders: the order-fulfilment
/// saga reserves stock, takes payment and completes (or cancels) each one.
/// Buyers get accounts with room for every order; returns false unless every
/// saga ended completed.
bool run_saga_demo(node& n, saga_host<bookstore::order_fulfilment>& fulfilment, std::int64_t orders,
                   spdlog::logger& log) {
  using namespace bookstore;
  constexpr int books = 20;
  constexpr int buyers = 100;
  auto base = now_ms();
  if (!seed_demo_books(n, books, orders + 10, log)) return false;
  for (int b = 0; b < buyers; ++b) {
    auto id = "demo-buyer-" + std::to_string(b);
    auto r = n.execute<finance_account>(id, open_account{id, 4'000'000'000'000});
    auto raised = n.execute<finance_account>(id, change_credit_limit{id, 4'000'000'000'000});
    if ((!r.ok() && r.status != command_status::rejected) || !raised.ok()) {
      log.error("opening account {} failed: {}", id, r.reason.message + raised.reason.message);
      return false;
    }
  }
  auto finished_before = fulfilment.stats().finished;
  log.info("demo: seeded {} books and {} buyers; placing {} orders for the saga", books, buyers,
           orders);
  auto started = std::chrono::steady_clock::now();
  demo_tally tally;
  constexpr std::int64_t window = 2000;  // orders being placed at once
  for (std::int64_t i = 0; i < orders; ++i) {
    if (i >= window) tally.wait_until_done_at_least(i - window + 1);
    auto order_id = "demo-" + std::to_string(base) + "-" + std::to_string(i);
    auto book_id = "demo-" + std::to_string(i % books);
    std::int64_t price = 1000 + 100 * (i % books);
    n.submit(
        node::make_envelope<order>(order_id, place_order{order_id,
                                                         "demo-buyer-" + std::to_string(i % buyers),
                                                         {order_item{book_id, 1, price}},
                                                         now_ms()}),
        tally.slot());
  }
  tally.wait_until_done_at_least(orders);
  auto placed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  log.info("demo: {} orders placed in {:.2f} s; waiting for their sagas", orders, placed_s);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{120 + orders / 100};
  while (fulfilment.stats().finished - finished_before < orders &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  auto s = fulfilment.stats();
  auto done = s.finished - finished_before;
  log.info(
      "demo: {} of {} orders fulfilled by the saga in {:.2f} s ({:.0f} orders/s), saga p50 {:.0f} "
      "ms p99 {:.0f} ms, {} dead letters",
      done, orders, seconds, done / std::max(seconds, 1e-9), s.completion_p50_ms,
      s.completion_p99_ms, s.dead_letters);
  return done == orders && tally.failed == 0;
}

/// Waits until every view has caught up with the log and says how long
/// that took: the demo's check that events flow store -> JetStream -> views.
bool report_view_lag(const config& cfg, const std::vector<std::unique_ptr<projector>>& projectors,
                     const std::set<std::string>& internal_categories, spdlog::logger& log) {
  std::int64_t head = 0;
  try {
    postgres::view_store vs(cfg.string("postgres.url"));
    // The last event views can see: saga inputs stay out of JetStream, so a
    // log ending with one must not look like a view that fell behind.
    std::string sql = "SELECT coalesce(max(global_position), 0) FROM troupe_events WHERE true";
    for (const auto& category : internal_categories)
      sql += " AND stream_id NOT LIKE '" + category + "-%'";  // saga names: [a-z_]
    head = vs.scalar(sql);
  } catch (const std::exception& e) {
    log.error("demo: cannot read the log's head: {}", e.what());
    return false;
  }
  auto started = std::chrono::steady_clock::now();
  bool all = true;
  auto deadline = started + std::chrono::seconds{60};  // for all views together
  for (const auto& p : projectors) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (!p->wait_until(global_position{head}, std::max(left, std::chrono::milliseconds{0}))) {
      auto s = p->status();
      log.error("demo: view {} is at {} of {} after 60 s{}", s.name, s.position, head,
                s.stalled.empty() ? "" : ": " + s.stalled);
      all = false;
    }
  }
  auto waited =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  if (all)
    log.info("demo: all {} views reached position {} {:.0f} ms after the last command",
             projectors.size(), head, waited);
  return all;
}

/// The runtime's counters in Prometheus text format, for /metrics.
std::string runtime_metrics(const node& n, const event_publisher* publisher,
                            const std::vector<std::unique_ptr<projector>>& projectors,
                            const std::optional<saga_host_stats>& fulfilment,
                            const std::optional<saga_host_stats>& rating) {
  std::string out;
  auto metric = [&out](std::string_view name, std::string_view type, std::string_view help) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
  };
  auto sample = [&out](std::string_view name, std::string_view labels, double value) {
    out += name;
    if (!labels.empty()) {
      out += '{';
      out += labels;
      out += '}';
    }
    out += ' ';
    out += fmt::format("{}", value);
    out += '\n';
  };
  // A family of one sample without labels.
  auto single = [&](std::string_view name, std::string_view type, std::string_view help,
                    double value) {
    metric(name, type, help);
    sample(name, "", value);
  };
  auto s = n.stats();
  metric("troupe_commands_total", "counter", "commands by outcome");
  sample("troupe_commands_total", "outcome=\"accepted\"", s.commands_accepted);
  sample("troupe_commands_total", "outcome=\"duplicate\"", s.commands_duplicate);
  sample("troupe_commands_total", "outcome=\"rejected\"", s.commands_rejected);
  sample("troupe_commands_total", "outcome=\"conflict\"", s.commands_conflicted);
  sample("troupe_commands_total", "outcome=\"overloaded\"", s.commands_shed);
  sample("troupe_commands_total", "outcome=\"failed\"", s.commands_failed);
  single("troupe_commands_in_flight", "gauge", "commands submitted and not yet answered",
         s.in_flight_commands);
  single("troupe_events_appended_total", "counter", "events written to the store",
         s.events_appended);
  single("troupe_live_aggregates", "gauge", "aggregate actors in memory", s.live_aggregates);
  single("troupe_aggregate_activations_total", "counter", "aggregates brought into memory",
         s.activations);
  single("troupe_snapshots_written_total", "counter", "aggregate snapshots written",
         s.snapshots_written);
  single("troupe_long_polls_waiting", "gauge", "reads waiting for a stream to pass a version",
         s.commit_waiters);
  single("troupe_long_polls_refused_total", "counter",
         "long polls answered at once because node.max_commit_waiters were waiting",
         s.commit_waits_refused);
  if (publisher != nullptr) {
    auto p = publisher->stats();
    single("troupe_publisher_published_total", "counter", "events confirmed stored by JetStream",
           p.published);
    single("troupe_publisher_checkpoint", "gauge", "last global position published for good",
           p.checkpoint);
    single("troupe_publisher_rounds_total", "counter", "publisher reads that found events",
           p.rounds);
    single("troupe_publisher_checkpoint_saves_total", "counter",
           "publisher checkpoint saves (publisher.checkpoint_interval_ms apart at most)",
           p.checkpoint_saves);
    single("troupe_publisher_rounds_by_sequence_total", "counter",
           "publisher rounds confirmed by their last publish's stream sequence",
           p.rounds_by_sequence);
    single("troupe_publisher_sequence_mismatches_total", "counter",
           "publisher rounds whose last publish got another sequence (sent again)",
           p.sequence_mismatches);
    single("troupe_publisher_failed_rounds_total", "counter",
           "publisher rounds sent again after an error, a timeout or a sequence mismatch",
           p.failed_rounds);
  }
  if (!projectors.empty()) {
    metric("troupe_projection_position", "gauge", "global position each view has folded");
    for (const auto& p : projectors) {
      auto st = p->status();
      sample("troupe_projection_position", "projection=\"" + st.name + "\"", st.position);
    }
    metric("troupe_projection_lag_seconds", "gauge", "age of the newest event a view folded");
    for (const auto& p : projectors) {
      auto st = p->status();
      sample("troupe_projection_lag_seconds", "projection=\"" + st.name + "\"", st.lag_seconds);
    }
    metric("troupe_projection_dead_letters_total", "counter", "events a view parked");
    for (const auto& p : projectors) {
      auto st = p->status();
      sample("troupe_projection_dead_letters_total", "projection=\"" + st.name + "\"",
             st.dead_letters);
    }
  }
  // One family at a time, every saga's sample under it (Prometheus's text
  // format keeps a family's samples together after its HELP and TYPE).
  struct saga_family {
    std::string_view name, type, help;
    double (*value)(const saga_host_stats&);
  };
  static const saga_family saga_families[] = {
      {"troupe_saga_started_total", "counter", "saga instances started",
       [](const saga_host_stats& st) { return double(st.started); }},
      {"troupe_saga_finished_total", "counter", "saga instances finished",
       [](const saga_host_stats& st) { return double(st.finished); }},
      {"troupe_saga_live_instances", "gauge", "saga instances in memory",
       [](const saga_host_stats& st) { return double(st.live_instances); }},
      {"troupe_saga_dead_letters_total", "counter", "saga steps given up",
       [](const saga_host_stats& st) { return double(st.dead_letters); }},
      {"troupe_saga_wrong_new_guesses_total", "counter",
       "starting events assumed new whose instance existed (one read each)",
       [](const saga_host_stats& st) { return double(st.wrong_new_guesses); }},
      {"troupe_saga_input_records_total", "counter",
       "records of saga inputs stored (one append each, of one input or more)",
       [](const saga_host_stats& st) { return double(st.input_records); }},
      {"troupe_saga_deferred_answers_total", "counter",
       "step answers stored in a later input's record",
       [](const saga_host_stats& st) { return double(st.deferred); }},
      {"troupe_saga_inputs_queued", "gauge", "saga inputs waiting in instances' inboxes",
       [](const saga_host_stats& st) { return double(st.inputs_queued); }},
      {"troupe_saga_timers", "gauge",
       "saga wake-ups waiting (one per instance with a step or timer pending)",
       [](const saga_host_stats& st) { return double(st.timers); }},
      {"troupe_saga_completion_p99_ms", "gauge", "p99 saga duration, recent instances",
       [](const saga_host_stats& st) { return st.completion_p99_ms; }},
  };
  std::vector<std::pair<std::string, const saga_host_stats*>> sagas;
  if (fulfilment)
    sagas.emplace_back("saga=\"" + std::string(bookstore::order_fulfilment::name) + "\"",
                       &*fulfilment);
  if (rating)
    sagas.emplace_back("saga=\"" + std::string(bookstore::rating_saga::name) + "\"", &*rating);
  if (!sagas.empty()) {
    for (const auto& family : saga_families) {
      metric(family.name, family.type, family.help);
      for (const auto& [labels, st] : sagas) sample(family.name, labels, family.value(*st));
    }
  }
  return out;
}

void log_stats(const node& n, spdlog::logger& log) {
  auto s = n.stats();
  log.info(
      "stats: live aggregates {}, activations {}, passivations {}, commands accepted {} "
      "rejected {} conflicted {} shed {} failed {}, events {}, snapshots {}, queued {}",
      s.live_aggregates, s.activations, s.passivations, s.commands_accepted, s.commands_rejected,
      s.commands_conflicted, s.commands_shed, s.commands_failed, s.events_appended,
      s.snapshots_written, s.queued_commands);
}

/// A component that may come and go while the node runs (a cluster
/// singleton): readers see it whole or not at all.
template <class T>
class component_slot {
 public:
  void put(std::unique_ptr<T> value) {
    std::lock_guard lock{mutex_};
    value_ = std::move(value);
  }
  std::unique_ptr<T> take() {
    std::lock_guard lock{mutex_};
    return std::move(value_);
  }
  /// f(T* or nullptr), under the slot's lock: keep it short.
  template <class F>
  auto with(F&& f) const {
    std::lock_guard lock{mutex_};
    return f(value_.get());
  }

 private:
  mutable std::mutex mutex_;
  std::unique_ptr<T> value_;
};

/// A saga's hosts, one slot per partition (one partition on a single node).
template <class S>
class saga_partitions_of {
 public:
  explicit saga_partitions_of(int partitions) {
    for (int p = 0; p < partitions; ++p)
      slots_.push_back(std::make_unique<component_slot<saga_host<S>>>());
  }
  component_slot<saga_host<S>>& operator[](int p) { return *slots_[static_cast<std::size_t>(p)]; }
  /// The stats of the partitions running here, summed; nullopt when none.
  std::optional<saga_host_stats> stats() const {
    std::optional<saga_host_stats> sum;
    for (const auto& slot : slots_) {
      auto s = slot->with([](saga_host<S>* h) {
        return h ? std::optional<saga_host_stats>(h->stats()) : std::nullopt;
      });
      if (!s) continue;
      if (!sum) sum.emplace();
      *sum += *s;
    }
    return sum;
  }
  void stop_all() {
    for (auto& slot : slots_)
      if (auto h = slot->take()) h->stop();
  }

 private:
  std::vector<std::unique_ptr<component_slot<saga_host<S>>>> slots_;
};

cluster_options cluster_settings(const config& cfg, const std::string& node_id) {
  cluster_options o;
  o.nats_url = cfg.string("nats.url");
  o.name = cfg.string("cluster.name");
  o.node_id = node_id;
  o.shards = static_cast<int>(cfg.integer("cluster.shards"));
  o.lease_ttl = std::chrono::milliseconds{cfg.integer("cluster.lease_ttl_ms")};
  o.heartbeat = std::chrono::milliseconds{cfg.integer("cluster.heartbeat_ms")};
  o.forward_timeout = std::chrono::milliseconds{cfg.integer("cluster.forward_timeout_ms")};
  o.forward_attempt_timeout =
      std::chrono::milliseconds{cfg.integer("cluster.forward_attempt_timeout_ms")};
  o.max_forwarded = static_cast<std::size_t>(cfg.integer("cluster.max_forwarded"));
  o.replicas = static_cast<int>(cfg.integer("cluster.replicas"));
  o.shutdown_timeout = std::chrono::milliseconds{cfg.integer("node.shutdown_timeout_ms")};
  o.http_url = cfg.string("cluster.advertise_http");
  o.log = logger("cluster");
  return o;
}

std::string cluster_metrics(const cluster& c) {
  auto st = c.status();
  int owned = 0;
  for (const auto& s : st.shards) owned += s.owner == st.self;
  int singletons = 0;
  for (const auto& s : st.singletons) singletons += s.owner == st.self;
  const auto& f = st.forwarding;
  return fmt::format(
      "# HELP troupe_cluster_members nodes in the cluster, as this node sees it\n"
      "# TYPE troupe_cluster_members gauge\ntroupe_cluster_members {}\n"
      "# HELP troupe_cluster_shards_owned shards this node serves\n"
      "# TYPE troupe_cluster_shards_owned gauge\ntroupe_cluster_shards_owned {}\n"
      "# HELP troupe_cluster_singletons_held singleton leases (publisher, projections, sagas) "
      "held here\n"
      "# TYPE troupe_cluster_singletons_held gauge\ntroupe_cluster_singletons_held {}\n"
      "# HELP troupe_cluster_commands_forwarded_total commands sent to their shard's owner\n"
      "# TYPE troupe_cluster_commands_forwarded_total counter\n"
      "troupe_cluster_commands_forwarded_total {}\n"
      "# HELP troupe_cluster_commands_received_total commands peers forwarded here\n"
      "# TYPE troupe_cluster_commands_received_total counter\n"
      "troupe_cluster_commands_received_total {}\n"
      "# HELP troupe_cluster_forward_retries_total forwarding attempts repeated\n"
      "# TYPE troupe_cluster_forward_retries_total counter\n"
      "troupe_cluster_forward_retries_total {}\n"
      "# HELP troupe_cluster_leases_lost_total leases another node took from this one\n"
      "# TYPE troupe_cluster_leases_lost_total counter\ntroupe_cluster_leases_lost_total {}\n",
      st.members.size(), owned, singletons, f.forwarded, f.received, f.retries, f.leases_lost);
}

}  // namespace

int serve(const config& cfg, const serve_options& options) {
  setup_logging(cfg.string("log.level"), cfg.string("log.format"));
  auto log = logger("serve");

  // Block the stop signals before any thread starts, so only sigwait sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::shared_ptr<event_store> store;
  try {
    store = make_event_store(cfg);
  } catch (const std::exception& e) {
    log->error("cannot open the event store: {}", e.what());
    return 2;
  }
  if (cfg.string("store.kind") == "postgres")
    log->info("event store: PostgreSQL at {}", redact_url(cfg.string("postgres.url")));
  else
    log->warn("event store: in memory; events are lost when the node stops");
  const bool clustered = cfg.boolean("cluster.enabled");
  if (clustered && cfg.string("store.kind") != "postgres") {
    log->error("cluster.enabled needs store.kind=postgres: the nodes share one event store");
    return 2;
  }
  if (clustered && options.demo_orders > 0) {
    log->error("--demo-orders runs on a single node; start it without cluster.enabled");
    return 2;
  }
  node n(cfg, store);
  n.register_aggregates<bookstore::bookstore_aggregates>();
  try {
    if (clustered) n.enable_sharding(static_cast<int>(cfg.integer("cluster.shards")));
    n.start();
  } catch (const std::exception& e) {
    log->error("cannot start: {}", e.what());
    return 2;
  }

  // Saga inputs are the saga hosts' own write-ahead log, not events for
  // other consumers: the publisher leaves them out.
  std::set<std::string> internal_categories;
  if (cfg.boolean("sagas.enabled"))
    internal_categories = {std::string(bookstore::order_fulfilment::name),
                           std::string(bookstore::rating_saga::name)};

  // The publisher: one per node for now (the cluster part adds a lease so
  // exactly one runs per database).
  // The publisher, projectors and sagas: started here on a single node; in a
  // cluster each has one active instance, on the node holding its lease.
  component_slot<event_publisher> publisher;
  const bool publishing =
      cfg.boolean("publisher.enabled") && cfg.string("store.kind") == "postgres";
  auto make_publisher = [&] {
    publisher_options o;
    o.nats_url = cfg.string("nats.url");
    o.stream_name = cfg.string("publisher.stream");
    o.subject_prefix = cfg.string("publisher.subject_prefix");
    o.checkpoint_name = cfg.string("publisher.checkpoint");
    o.replicas = static_cast<int>(cfg.integer("publisher.replicas"));
    o.duplicate_window = std::chrono::seconds{cfg.integer("publisher.duplicate_window_s")};
    o.batch_size = static_cast<std::size_t>(cfg.integer("publisher.batch_size"));
    o.max_pending = cfg.integer("publisher.max_pending");
    o.confirm_by_sequence = cfg.boolean("publisher.confirm_by_sequence");
    o.poll_interval = std::chrono::milliseconds{cfg.integer("publisher.poll_interval_ms")};
    o.min_round_interval =
        std::chrono::milliseconds{cfg.integer("publisher.min_round_interval_ms")};
    o.checkpoint_interval =
        std::chrono::milliseconds{cfg.integer("publisher.checkpoint_interval_ms")};
    // This node's commits wake it between rounds; other nodes' are polled.
    if (cfg.boolean("publisher.wake_on_commit")) o.new_events = n.commits().signal();
    o.source = "troupe/" + n.id();
    o.internal_categories = internal_categories;
    o.log = logger("publisher");
    auto p = std::make_unique<event_publisher>(store, std::move(o));
    p->start();
    return p;
  };

  std::vector<std::unique_ptr<projector>> projectors;
  std::unique_ptr<projector_group> projector_feed;  // single node: one consumer for all
  if (publishing && cfg.boolean("projections.enabled")) {
    auto only = split_list(cfg.string("projections.only"));
    auto all = bookstore::bookstore_projections();
    for (const auto& name : only)
      if (std::none_of(all.begin(), all.end(), [&](const auto& d) { return d.name == name; })) {
        log->error("projections.only names '{}', which is not a projection", name);
        return 2;
      }
    for (auto& def : all)
      if (only.empty() || std::find(only.begin(), only.end(), def.name) != only.end())
        projectors.push_back(
            std::make_unique<projector>(std::move(def), store, projector_settings(cfg)));
  }

  // One host per saga type on a single node; in a cluster one per partition
  // of each saga's instances, each partition a singleton.
  const int saga_partitions =
      clustered ? static_cast<int>(cfg.integer("cluster.saga_partitions")) : 1;
  saga_partitions_of<bookstore::order_fulfilment> fulfilment(saga_partitions);
  saga_partitions_of<bookstore::rating_saga> rating(saga_partitions);
  const bool saga_hosting = publishing && cfg.boolean("sagas.enabled");
  saga_host_options saga_options;
  saga_options.postgres_url = cfg.string("postgres.url");
  saga_options.subscription.nats_url = cfg.string("nats.url");
  saga_options.subscription.stream = cfg.string("publisher.stream");
  saga_options.subscription.max_in_flight =
      static_cast<std::size_t>(cfg.integer("sagas.batch_size"));
  saga_options.subscription.ack_wait = std::chrono::milliseconds{cfg.integer("sagas.ack_wait_ms")};
  saga_options.consumer_prefix = cfg.string("sagas.consumer_prefix");
  saga_options.subject_prefix = cfg.string("publisher.subject_prefix");
  saga_options.settings.step_timeout_ms = cfg.integer("sagas.step_timeout_ms");
  saga_options.settings.max_attempts = static_cast<int>(cfg.integer("sagas.max_attempts"));
  saga_options.settings.retry_backoff_ms = cfg.integer("sagas.retry_backoff_ms");
  saga_options.log = logger("saga");
  auto make_saga = [&]<class S>(std::type_identity<S>, int partition) {
    auto o = saga_options;
    o.partition = partition;
    o.partitions = saga_partitions;
    auto host = std::make_unique<saga_host<S>>(n, store, o);
    host->start();
    return host;
  };

  std::unique_ptr<cluster> cluster_member;
  if (clustered) {
    cluster_member = std::make_unique<cluster>(n, cluster_settings(cfg, n.id()));
    // A singleton's start builds a fresh instance (they do not restart in
    // place); its stop takes it out of the slot before stopping it, so
    // readers (metrics, the API) never see one half stopped.
    if (publishing)
      cluster_member->add_singleton(
          "publisher", [&] { publisher.put(make_publisher()); },
          [&] {
            if (auto p = publisher.take()) p->stop();
          });
    for (auto& p : projectors) {
      p->follow();
      cluster_member->add_singleton(
          "projection." + p->definition().name, [p = p.get()] { p->start(); },
          [p = p.get()] { p->follow(); });
    }
    if (saga_hosting) {
      auto add_partitions = [&]<class S>(saga_partitions_of<S>& parts) {
        for (int p = 0; p < saga_partitions; ++p)
          cluster_member->add_singleton(
              "saga." + std::string(S::name) + "." + std::to_string(p),
              [&make_saga, &parts, p] { parts[p].put(make_saga(std::type_identity<S>{}, p)); },
              [&parts, p] {
                if (auto h = parts[p].take()) h->stop();
              },
              [&parts, p] {
                parts[p].with([](saga_host<S>* h) {
                  if (h) h->fence();
                });
              });
      };
      add_partitions(fulfilment);
      add_partitions(rating);
    }
    try {
      cluster_member->start();
    } catch (const std::exception& e) {
      log->error("cannot join the cluster: {}", e.what());
      return 2;
    }
  } else {
    try {
      if (publishing) {
        publisher.put(make_publisher());
        log->info("publishing events to JetStream stream {} at {}", cfg.string("publisher.stream"),
                  cfg.string("nats.url"));
      }
      if (projectors.size() > 1 && cfg.boolean("projections.shared_consumer")) {
        std::vector<projector*> members;
        for (auto& p : projectors) members.push_back(p.get());
        projector_feed = std::make_unique<projector_group>(members, projector_settings(cfg));
        projector_feed->start();
      } else {
        for (auto& p : projectors) p->start();
      }
      if (!projectors.empty()) log->info("{} projectors running", projectors.size());
      if (saga_hosting) {
        fulfilment[0].put(make_saga(std::type_identity<bookstore::order_fulfilment>{}, 0));
        rating[0].put(make_saga(std::type_identity<bookstore::rating_saga>{}, 0));
        auto recovered = fulfilment.stats()->recovered + rating.stats()->recovered;
        log->info("sagas running (order fulfilment, rating); {} open instances resumed", recovered);
      }
    } catch (const std::exception& e) {
      log->error("cannot start: {}", e.what());
      return 2;
    }
  }
  // The HTTP API.
  std::unique_ptr<http::bookstore_api> api;
  std::unique_ptr<http::server> server;
  if (cfg.boolean("http.enabled")) {
    http::api_options ao;
    ao.postgres_url = cfg.string("postgres.url");
    ao.query_threads = static_cast<int>(cfg.integer("http.query_threads"));
    ao.max_queued_queries = static_cast<std::size_t>(cfg.integer("http.max_queued_queries"));
    ao.max_in_flight_commands = cfg.integer("http.max_in_flight_commands");
    ao.consistency_wait = std::chrono::milliseconds{cfg.integer("http.consistency_wait_ms")};
    ao.price_cache = std::chrono::milliseconds{cfg.integer("http.price_cache_ms")};
    ao.query_cache = std::chrono::milliseconds{cfg.integer("http.query_cache_ms")};
    ao.request_id_retention = std::chrono::hours{cfg.integer("http.request_id_retention_hours")};
    ao.auth.mode = cfg.string("http.auth.mode");
    ao.auth.secret = cfg.string("http.auth.secret");
    ao.auth.issuer = cfg.string("http.auth.issuer");
    ao.auth.audience = cfg.string("http.auth.audience");
    ao.auth.admin_role = cfg.string("http.auth.admin_role");
    if (clustered && ao.auth.mode == "dev" && ao.auth.secret.empty()) {
      log->error(
          "http.auth.mode=dev in a cluster needs http.auth.secret set to the same value on every "
          "node (a token issued by one node must be accepted by the others)");
      return 2;
    }
    if (ao.auth.mode == "dev" && ao.auth.secret.empty()) {
      // Tokens of this run only: a restart makes them invalid.
      ao.auth.secret = new_uuid() + new_uuid();
    }
    if (auto key_file = cfg.string("http.auth.public_key_file"); !key_file.empty()) {
      std::ifstream in(key_file);
      if (!in) {
        log->error("cannot read http.auth.public_key_file {}", key_file);
        return 2;
      }
      ao.auth.public_key_pem.assign(std::istreambuf_iterator<char>(in), {});
    }
    http::api_parts parts;
    parts.commands = &n;
    parts.store = store;
    for (auto& p : projectors) parts.projectors.push_back(p.get());
    if (cluster_member) {
      // The bus is ready when this node reaches NATS; the publisher may run
      // on another node.
      parts.bus_ready = [c = cluster_member.get()] { return c->connected(); };
      parts.cluster_status = [c = cluster_member.get()] { return c->status().to_json(); };
    } else if (publishing) {
      parts.bus_ready = [&publisher] {
        return publisher.with([](event_publisher* p) { return p != nullptr && p->connected(); });
      };
    }
    parts.runtime_metrics = [&n, &publisher, &projectors, &fulfilment, &rating,
                             c = cluster_member.get()] {
      auto f = fulfilment.stats();
      auto r = rating.stats();
      return publisher.with([&](event_publisher* p) {
        return runtime_metrics(n, p, projectors, f, r) + (c ? cluster_metrics(*c) : "");
      });
    };
    try {
      api = std::make_unique<http::bookstore_api>(std::move(parts), ao);
    } catch (const std::exception& e) {
      log->error("cannot start the HTTP API: {}", e.what());
      return 2;
    }
    http::server_options so;
    so.address = cfg.string("http.address");
    so.port = static_cast<std::uint16_t>(cfg.integer("http.port"));
    so.io_threads = static_cast<int>(cfg.integer("http.io_threads"));
    so.max_body_bytes = static_cast<std::size_t>(cfg.integer("http.max_body_bytes"));
    so.max_header_bytes = static_cast<std::size_t>(cfg.integer("http.max_header_bytes"));
    so.read_timeout = std::chrono::milliseconds{cfg.integer("http.read_timeout_ms")};
    so.idle_timeout = std::chrono::milliseconds{cfg.integer("http.idle_timeout_ms")};
    so.write_timeout = std::chrono::milliseconds{cfg.integer("http.write_timeout_ms")};
    so.request_timeout = std::chrono::milliseconds{cfg.integer("http.request_timeout_ms")};
    so.max_connections = static_cast<std::size_t>(cfg.integer("http.max_connections"));
    server = std::make_unique<http::server>(
        so, [a = api.get()](http::request&& r, http::responder reply) {
          a->handle(std::move(r), std::move(reply));
        });
    try {
      server->start();
    } catch (const std::exception& e) {
      log->error("{}", e.what());
      return 2;
    }
    log->info("HTTP API on http://{}:{}/api/v1 (OpenAPI at /openapi.json, auth {})", so.address,
              server->port(), ao.auth.mode);
    if (cluster_member && cfg.string("cluster.advertise_http").empty())
      cluster_member->advertise_http(fmt::format("http://{}:{}", so.address, server->port()));
    if (ao.auth.mode == "dev")
      log->info(
          "auth dev mode: get a token with curl -s -X POST -H 'content-type: application/json' "
          "-d '{{\"sub\":\"alice\",\"admin\":true}}' http://{}:{}/api/v1/dev/tokens",
          so.address, server->port());
  }

  auto stop_all = [&] {
    // HTTP first: stop accepting and answer what is in flight (commands in
    // flight finish in the node, which is still running). Long polls answer
    // now with what they have instead of holding the shutdown up.
    n.commits().stop();
    if (server) {
      if (!server->shutdown(std::chrono::milliseconds{cfg.integer("http.shutdown_timeout_ms")}))
        log->warn("HTTP requests still in flight at the shutdown deadline were cut off");
    }
    if (api) api->stop();
    // A cluster member hands its shards and singletons over (sagas stop
    // there, before the node); a single node stops its sagas first, as they
    // send commands to the node.
    if (cluster_member) cluster_member->stop();
    auto last = fulfilment.stats();
    fulfilment.stop_all();
    rating.stop_all();
    if (last)
      log->info(
          "order fulfilment: {} started, {} finished, {} inputs, {} timeouts, {} dead letters",
          last->started, last->finished, last->inputs, last->timeouts_fired, last->dead_letters);
    n.stop();
    if (auto p = publisher.take()) {
      p->stop();
      auto s = p->stats();
      log->info("publisher: {} published ({} duplicates dropped), checkpoint {}", s.published,
                s.duplicates, s.checkpoint);
    }
    if (projector_feed) projector_feed->stop();
    for (auto& p : projectors) p->stop();
  };

  bool demo_ok = true;
  if (options.demo_orders > 0) {
    demo_ok = saga_hosting ? fulfilment[0].with([&](auto* f) {
      return run_saga_demo(n, *f, options.demo_orders, *log);
    })
                           : run_demo(n, options.demo_orders, *log);
    if (!projectors.empty())
      demo_ok = report_view_lag(cfg, projectors, internal_categories, *log) && demo_ok;
  }
  log_stats(n, *log);
  if (options.exit_after_demo) {
    stop_all();
    return demo_ok ? 0 : 1;
  }

  log->info("node {} serving; Ctrl-C or SIGTERM stops it", n.id());
  auto last = n.stats().commands_accepted;
  // The publisher's checkpoint at the previous tick, while it runs here: a
  // publisher that stops advancing while commands are accepted says so
  // (once seen in the NATS-failover test, silently, for 50 s).
  std::int64_t last_checkpoint = -1;  // -1: not running here at the last tick
  while (true) {
    timespec wait{10, 0};
    int sig = sigtimedwait(&stop_signals, nullptr, &wait);
    if (sig == SIGINT || sig == SIGTERM) {
      log->info("received {}, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
      break;
    }
    auto now = n.stats().commands_accepted;
    publisher.with([&](event_publisher* p) {
      if (p == nullptr) {
        last_checkpoint = -1;
        return;
      }
      auto s = p->stats();
      if (last_checkpoint == s.checkpoint && now != last)
        log->warn(
            "publisher: checkpoint still at {} after {} s of accepted commands ({} published, {} "
            "rounds retried)",
            s.checkpoint, wait.tv_sec, s.published, s.failed_rounds);
      last_checkpoint = s.checkpoint;
    });
    if (now != last) {
      log_stats(n, *log);
      last = now;
    }
  }
  stop_all();
  for (auto& p : projectors) {
    auto s = p->status();
    log->info("projection {}: at position {}, {} events in {} batches, {} dead letters", s.name,
              s.position, s.events_applied, s.batches, s.dead_letters);
  }
  log_stats(n, *log);
  return 0;
}

}  // namespace troupe::cli
