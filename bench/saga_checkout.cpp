// saga_checkout: orders/s taken from placed to completed through the whole
// order-fulfilment saga on one node (order placed -> published to JetStream
// -> saga host -> reserve stock, clear basket, authorise payment, complete,
// commit stock, capture payment; every saga input written ahead to its own
// stream), with end-to-end latency from placing the order to the saga's
// end. Beside it, in the same run, the limit: the simple command rate of the
// same orders placed and then completed directly (two commands each), at the
// same number of orders in flight.
//
// Usage: saga_checkout [orders] [rounds] [in_flight]
// Needs TROUPE_POSTGRES_URL and TROUPE_NATS_URL (scripts/bench sets them).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <pqxx/pqxx>
#include <thread>
#include <unordered_map>

#include "actors/bookstore.hpp"
#include "actors/sagas.hpp"
#include "bench/bench_env.hpp"
#include "bench/result.hpp"
#include "persistence/postgres/migrations.hpp"
#include "persistence/postgres_event_store.hpp"
#include "runtime/config.hpp"
#include "runtime/logging.hpp"
#include "runtime/publisher.hpp"
#include "runtime/saga_host.hpp"

namespace {

using troupe::bench::env;

using steady = std::chrono::steady_clock;
using namespace bookstore;
constexpr const char* bench_database = "troupe_bench_saga";
constexpr const char* stream_name = "BENCH_SAGA";
constexpr int books = 50;
constexpr int buyers = 200;

std::string bench_url() { return troupe::bench::database_url(bench_database); }

void recreate_database() { troupe::bench::recreate_database(bench_database); }

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// Bounds the orders in flight; counts them done.
struct window {
  std::mutex mutex;
  std::condition_variable changed;
  std::int64_t in_flight = 0, done = 0, failed = 0;
  void enter(std::int64_t limit) {
    std::unique_lock lock(mutex);
    changed.wait(lock, [&] { return in_flight < limit; });
    ++in_flight;
  }
  void leave(bool ok) {
    {
      std::lock_guard lock(mutex);
      --in_flight;
      ++done;
      if (!ok) ++failed;
    }
    changed.notify_all();
  }
  void wait_done(std::int64_t n) {
    std::unique_lock lock(mutex);
    changed.wait(lock, [&] { return done >= n; });
  }
};

order_item item_of(std::int64_t i) {
  auto b = i % books;
  return {"bench-" + std::to_string(b), 1, 1000 + b};
}

/// The limit: place, then complete, each order directly.
double place_complete_rate(troupe::node& n, const std::string& prefix, std::int64_t orders,
                           std::int64_t in_flight) {
  window w;
  auto started = steady::now();
  for (std::int64_t i = 0; i < orders; ++i) {
    w.enter(in_flight);
    auto id = prefix + std::to_string(i);
    n.submit(
        troupe::node::make_envelope<order>(
            id,
            place_order{id, "bench-buyer-" + std::to_string(i % buyers), {item_of(i)}, now_ms()}),
        [&n, &w, id](troupe::command_result r) {
          if (!r.ok()) return w.leave(false);
          n.submit(troupe::node::make_envelope<order>(id, complete_order{id, now_ms()}),
                   [&w](troupe::command_result c) { w.leave(c.ok()); });
        });
  }
  w.wait_done(orders);
  if (w.failed > 0) std::fprintf(stderr, "place+complete: %lld failed\n", (long long)w.failed);
  return static_cast<double>(orders) /
         std::chrono::duration<double>(steady::now() - started).count();
}

struct saga_round {
  double orders_per_s = 0, p50_ms = 0, p99_ms = 0;
  std::int64_t completed = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::int64_t orders = argc > 1 ? std::atoll(argv[1]) : 5000;
  int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  std::int64_t in_flight = argc > 3 ? std::atoll(argv[3]) : 500;
  if (orders < 100 || rounds < 1 || in_flight < 1) {
    std::fprintf(stderr, "usage: saga_checkout [orders>=100] [rounds>=1] [in_flight>=1]\n");
    return 2;
  }
  troupe::setup_logging("warn", "text");
  recreate_database();
  troupe::postgres::migrate(bench_url());
  auto store = std::make_shared<troupe::postgres_event_store>(
      troupe::postgres_store_options{.url = bench_url(), .log = troupe::logger("store")});
  troupe::node n(troupe::config::defaults(), store);
  n.register_aggregates<bookstore_aggregates>();
  n.start();
  for (int b = 0; b < books; ++b) {
    auto id = "bench-" + std::to_string(b);
    n.execute<book>(
        id,
        create_book{
            id, "Bench " + id, "", 1000 + b, std::nullopt, "c", "p", {"a"}, orders * rounds + 10});
  }
  for (int b = 0; b < buyers; ++b) {
    auto id = "bench-buyer-" + std::to_string(b);
    n.execute<finance_account>(id, open_account{id, 4'000'000'000'000});
  }

  troupe::publisher_options po;
  po.nats_url = env("TROUPE_NATS_URL");
  po.stream_name = stream_name;
  po.subject_prefix = "benchsaga.events";
  po.poll_interval = std::chrono::milliseconds{2};
  po.internal_categories = {std::string(order_fulfilment::name)};
  po.log = troupe::logger("publisher");
  auto publisher = std::make_unique<troupe::event_publisher>(store, po);
  publisher->start();

  std::mutex mutex;
  std::unordered_map<std::string, steady::time_point> placed_at;
  std::vector<double> latencies;
  window saga_window;
  std::atomic<std::int64_t> completed{0};
  troupe::saga_host_options ho;
  ho.postgres_url = bench_url();
  ho.subscription.nats_url = env("TROUPE_NATS_URL");
  ho.subscription.stream = stream_name;
  ho.consumer_prefix = "bench-saga-";
  ho.log = troupe::logger("saga");
  ho.on_finished = [&](const std::string& correlation, std::string_view status) {
    if (status == "completed") ++completed;
    {
      std::lock_guard lock(mutex);
      auto it = placed_at.find(correlation);
      if (it == placed_at.end()) return;  // a limit round's order: not ours
      latencies.push_back(
          std::chrono::duration<double, std::milli>(steady::now() - it->second).count());
      placed_at.erase(it);
    }
    saga_window.leave(status == "completed");
  };
  troupe::saga_host<order_fulfilment> host(n, store, ho);
  host.start();

  std::vector<double> ours, limit, p50s, p99s;
  for (int r = 0; r < rounds; ++r) {
    // The limit runs with the publisher stopped, so no saga competes with it;
    // its orders start sagas afterwards (their completions are refused and
    // compensated), which finish before the saga round is measured.
    publisher.reset();
    limit.push_back(place_complete_rate(n, "limit" + std::to_string(r) + "-", orders, in_flight));
    publisher = std::make_unique<troupe::event_publisher>(store, po);
    publisher->start();
    auto settle_until = steady::now() + std::chrono::minutes{5};
    while (host.stats().finished < (r * 2 + 1) * orders && steady::now() < settle_until)
      std::this_thread::sleep_for(std::chrono::milliseconds{20});

    latencies.clear();
    auto started = steady::now();
    for (std::int64_t i = 0; i < orders; ++i) {
      saga_window.enter(in_flight);
      auto id = "saga" + std::to_string(r) + "-" + std::to_string(i);
      {
        std::lock_guard lock(mutex);
        placed_at[id] = steady::now();
      }
      n.submit(
          troupe::node::make_envelope<order>(
              id,
              place_order{id, "bench-buyer-" + std::to_string(i % buyers), {item_of(i)}, now_ms()}),
          [&saga_window](troupe::command_result res) {
            if (!res.ok()) saga_window.leave(false);
          });
    }
    saga_window.wait_done((r + 1) * orders);
    auto seconds = std::chrono::duration<double>(steady::now() - started).count();
    ours.push_back(static_cast<double>(orders) / seconds);
    std::vector<double> lat;
    {
      std::lock_guard lock(mutex);
      lat = latencies;
    }
    std::sort(lat.begin(), lat.end());
    p50s.push_back(lat.empty() ? 0 : lat[lat.size() / 2]);
    p99s.push_back(lat.empty() ? 0 : lat[std::min(lat.size() - 1, lat.size() * 99 / 100)]);
    std::printf(
        "round %d: saga %.0f orders/s (p50 %.0f ms, p99 %.0f ms), place+complete %.0f "
        "orders/s (%.1f%%)\n",
        r + 1, ours.back(), p50s.back(), p99s.back(), limit.back(),
        100 * ours.back() / limit.back());
    std::fflush(stdout);
  }
  auto stats = host.stats();
  std::printf(
      "median of %d rounds of %lld orders, %lld in flight; %lld sagas completed, %lld dead "
      "letters\n",
      rounds, (long long)orders, (long long)in_flight, (long long)completed.load(),
      (long long)stats.dead_letters);
  troupe::bench::print_result("place_complete_limit", troupe::bench::median(limit), "orders/s");
  troupe::bench::print_result("saga_checkout", troupe::bench::median(ours), "orders/s",
                              troupe::bench::median(limit));
  troupe::bench::print_result("saga_checkout_p50", troupe::bench::median(p50s), "ms");
  troupe::bench::print_result("saga_checkout_p99", troupe::bench::median(p99s), "ms");
  host.stop();
  publisher->stop();
  n.stop();
  store->stop();
  troupe::bench::drop_database(bench_database);
  return 0;
}
