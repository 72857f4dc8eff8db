// projection_apply: events/s of a projector (fetch from JetStream, decode,
// fold, write the view rows and the checkpoint in one transaction per
// batch, acknowledge) beside the raw limit measured in the same run: the
// same rows upserted into PostgreSQL in batches of the same size, one
// set-based INSERT ... ON CONFLICT per transaction, values prepared in
// memory beforehand, into a table of the same shape and indexes. Goal (issue 4): >= 50% of the raw
// figure.
//
// Then the view lag under a steady load: events appended at a fixed rate
// (10k/s by default) through store -> publisher -> JetStream -> projector,
// lag = view commit time - event recorded time, per event.
//
// Usage: projection_apply [events] [rounds] [lag_seconds] [lag_rate]
// Needs TROUPE_POSTGRES_URL and TROUPE_NATS_URL (scripts/bench sets them).

#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <pqxx/pqxx>
#include <thread>

#include "actors/bookstore.hpp"
#include "actors/projections.hpp"
#include "bench/bench_env.hpp"
#include "bench/result.hpp"
#include "persistence/postgres/migrations.hpp"
#include "persistence/postgres/view_store.hpp"
#include "persistence/postgres_event_store.hpp"
#include "persistence/sync.hpp"
#include "runtime/logging.hpp"
#include "runtime/projector.hpp"
#include "runtime/publisher.hpp"
#include "runtime/uuid.hpp"

namespace {

using troupe::bench::env;

using steady = std::chrono::steady_clock;
constexpr const char* bench_database = "troupe_bench_projection";
constexpr const char* stream_name = "BENCH_PROJECTION";
constexpr std::size_t batch = 1000;

std::string bench_url() { return troupe::bench::database_url(bench_database); }

void recreate_database() { troupe::bench::recreate_database(bench_database); }

bookstore::order_placed order_number(std::int64_t i) {
  return {"bench-" + std::to_string(i),
          "buyer-" + std::to_string(i % 1000),
          {{"book-" + std::to_string(i % 500), 1 + i % 3, 1999}, {"book-7", 1, 500}},
          (1 + i % 3) * 1999 + 500,
          1'700'000'000'000 + i};
}

/// Appends order_placed events from `first`, at most `rate` per second
/// (0: as fast as the store takes them); returns when `count` are in.
void append_orders(troupe::event_store& store, std::int64_t first, std::int64_t count,
                   double rate) {
  std::atomic<int> pending{0};
  auto started = steady::now();
  for (std::int64_t i = first; i < first + count; ++i) {
    if (rate > 0) {
      auto due = started + std::chrono::duration_cast<steady::duration>(
                               std::chrono::duration<double>((i - first) / rate));
      std::this_thread::sleep_until(due);
    }
    auto encoded =
        troupe::variant_codec<std::variant<bookstore::order_placed>>::encode(order_number(i));
    troupe::append_request r;
    r.stream_id = "order-bench-" + std::to_string(i);
    r.expected = troupe::expected_version::exact(troupe::stream_version{0});
    r.recorded_at = troupe::clock_type::now();
    r.metadata.command_id = troupe::new_uuid();
    r.events.push_back({troupe::new_uuid(), std::string(encoded.type), encoded.schema_version,
                        std::move(encoded.data)});
    while (pending.load() > 4000) std::this_thread::yield();
    ++pending;
    store.append(std::move(r), [&](troupe::append_result res) {
      if (res.error != troupe::store_errc::ok) {
        std::fprintf(stderr, "append failed: %s\n", res.message.c_str());
        std::exit(1);
      }
      --pending;
    });
  }
  while (pending.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds{1});
}

troupe::projector_options projector_settings(const std::string& consumer_prefix) {
  troupe::projector_options o;
  o.postgres_url = bench_url();
  o.subscription.nats_url = env("TROUPE_NATS_URL");
  o.subscription.stream = stream_name;
  o.subscription.max_in_flight = 2 * batch;  // one batch fetched ahead
  o.consumer_prefix = consumer_prefix;
  o.log = troupe::logger("projector");
  return o;
}

/// Drops the view, its checkpoint and registration: the next projector
/// starts from an empty view.
void reset_view(const troupe::projection_definition& def) {
  troupe::postgres::view_store vs(bench_url());
  for (const auto& t : def.tables)
    vs.exec("DROP TABLE IF EXISTS troupe_views." + t.name + " CASCADE");
  vs.exec("DELETE FROM troupe_checkpoints WHERE name LIKE 'projection:%'");
  vs.exec("DELETE FROM troupe_projections");
}

double projector_rate(std::int64_t last_position, int round) {
  auto def = bookstore::order_summary_projection();
  reset_view(def);
  auto store = std::make_shared<troupe::postgres_event_store>(
      troupe::postgres_store_options{.url = bench_url(), .log = troupe::logger("store")});
  auto prefix = "bench-round" + std::to_string(round) + "-";
  troupe::projector p(def, store, projector_settings(prefix));
  auto started = steady::now();
  p.start();
  if (!p.wait_until(troupe::global_position{last_position}, std::chrono::minutes{10})) {
    std::fprintf(stderr, "projector did not finish: %s\n", p.status().stalled.c_str());
    std::exit(1);
  }
  auto seconds = std::chrono::duration<double>(steady::now() - started).count();
  auto applied = p.status().events_applied;
  p.stop();
  troupe::subscription::delete_consumer(env("TROUPE_NATS_URL"), stream_name, prefix + def.name);
  return static_cast<double>(applied) / seconds;
}

/// The raw limit: the same rows, batch upserts of prepared arrays.
double raw_rate(std::int64_t count) {
  pqxx::connection c(bench_url());
  pqxx::nontransaction(c).exec(
      "DROP TABLE IF EXISTS bench_raw_orders; CREATE TABLE bench_raw_orders (order_id text "
      "PRIMARY KEY, buyer_id text, status text, total bigint, item_count bigint, placed_at "
      "bigint, closed_at bigint, cancel_reason text); CREATE INDEX ON bench_raw_orders (buyer_id)");
  std::vector<std::array<std::string, 5>> batches;
  for (std::int64_t from = 0; from < count; from += batch) {
    std::array<std::string, 5> arrays{"{", "{", "{", "{", "{"};
    for (std::int64_t i = from; i < std::min<std::int64_t>(count, from + batch); ++i) {
      auto o = order_number(i);
      std::int64_t items = 0;
      for (const auto& item : o.items) items += item.quantity;
      const std::string values[5] = {o.order_id, o.buyer_id, std::to_string(o.total),
                                     std::to_string(items), std::to_string(o.placed_at)};
      for (int k = 0; k < 5; ++k) {
        if (arrays[k].size() > 1) arrays[k] += ',';
        arrays[k] += '"' + values[k] + '"';
      }
    }
    for (auto& a : arrays) a += '}';
    batches.push_back(std::move(arrays));
  }
  auto started = steady::now();
  for (const auto& a : batches) {
    pqxx::work tx(c);
    tx.exec_params(
        "INSERT INTO bench_raw_orders AS t (order_id, buyer_id, status, total, item_count, "
        "placed_at) SELECT u.o, u.b, 'placed', u.t, u.n, u.p FROM unnest($1::text[], $2::text[], "
        "$3::bigint[], $4::bigint[], $5::bigint[]) AS u(o, b, t, n, p) ON CONFLICT (order_id) DO "
        "UPDATE SET buyer_id = EXCLUDED.buyer_id, status = EXCLUDED.status, total = "
        "EXCLUDED.total, item_count = EXCLUDED.item_count, placed_at = EXCLUDED.placed_at",
        a[0], a[1], a[2], a[3], a[4]);
    tx.commit();
  }
  auto seconds = std::chrono::duration<double>(steady::now() - started).count();
  return static_cast<double>(count) / seconds;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto at = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  return v[at];
}

}  // namespace

int main(int argc, char** argv) {
  std::int64_t count = argc > 1 ? std::atoll(argv[1]) : 100'000;
  int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  int lag_seconds = argc > 3 ? std::atoi(argv[3]) : 15;
  double lag_rate = argc > 4 ? std::atof(argv[4]) : 10'000;
  if (count < 1000 || rounds < 1 || lag_seconds < 3 || lag_rate <= 0) {
    std::fprintf(stderr,
                 "usage: projection_apply [events>=1000] [rounds>=1] [lag_seconds>=3] "
                 "[lag_rate>0]\n");
    return 2;
  }
  troupe::setup_logging("warn", "text");
  recreate_database();
  troupe::postgres::migrate(bench_url());
  auto store = std::make_shared<troupe::postgres_event_store>(
      troupe::postgres_store_options{.url = bench_url(), .log = troupe::logger("store")});
  append_orders(*store, 0, count, 0);

  troupe::publisher_options po;
  po.nats_url = env("TROUPE_NATS_URL");
  po.stream_name = stream_name;
  po.subject_prefix = "benchprojection.events";
  po.log = troupe::logger("publisher");
  auto publisher = std::make_unique<troupe::event_publisher>(store, po);
  publisher->start();
  auto head = troupe::sync::read_all(*store, troupe::global_position{0}, SIZE_MAX);
  auto last_position = head.events.back().position.value;
  while (publisher->stats().checkpoint < last_position)
    std::this_thread::sleep_for(std::chrono::milliseconds{5});

  std::vector<double> ours, raw;
  for (int r = 0; r < rounds; ++r) {
    raw.push_back(raw_rate(count));
    ours.push_back(projector_rate(last_position, r));
    std::printf("round %d: projector %.0f events/s, raw batched upserts %.0f rows/s (%.1f%%)\n",
                r + 1, ours.back(), raw.back(), 100 * ours.back() / raw.back());
    std::fflush(stdout);
  }

  // View lag under a steady rate: a projector that has caught up, then
  // `lag_rate` events/s for `lag_seconds`; the first two seconds are warm-up.
  auto def = bookstore::order_summary_projection();
  reset_view(def);
  std::mutex mutex;
  std::vector<double> lags_ms;
  std::atomic<bool> measuring{false};
  auto o = projector_settings("bench-lag-");
  o.on_commit = [&](const std::vector<troupe::recorded_event>& applied) {
    if (!measuring) return;
    auto now = troupe::clock_type::now();
    std::lock_guard lock(mutex);
    for (const auto& e : applied)
      lags_ms.push_back(std::chrono::duration<double, std::milli>(now - e.recorded_at).count());
  };
  troupe::projector lagging(def, store, o);
  lagging.start();
  lagging.wait_until(troupe::global_position{last_position}, std::chrono::minutes{10});
  auto warmup = static_cast<std::int64_t>(2 * lag_rate);
  append_orders(*store, count, warmup, lag_rate);
  measuring = true;
  append_orders(*store, count + warmup, static_cast<std::int64_t>((lag_seconds - 2) * lag_rate),
                lag_rate);
  auto final_head =
      troupe::sync::read_all(*store, troupe::global_position{last_position}, SIZE_MAX);
  lagging.wait_until(final_head.events.back().position, std::chrono::minutes{2});
  lagging.stop();
  troupe::subscription::delete_consumer(env("TROUPE_NATS_URL"), stream_name,
                                        "bench-lag-" + def.name);
  publisher->stop();

  std::printf(
      "median of %d rounds of %lld order_placed events (batch %zu); lag at %.0f events/s "
      "for %d s: %zu events, p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
      rounds, static_cast<long long>(count), batch, lag_rate, lag_seconds - 2, lags_ms.size(),
      percentile(lags_ms, 0.5), percentile(lags_ms, 0.99), percentile(lags_ms, 1.0));
  troupe::bench::print_result("postgres_batched_upsert_limit", troupe::bench::median(raw),
                              "rows/s");
  troupe::bench::print_result("projection_apply", troupe::bench::median(ours), "events/s",
                              troupe::bench::median(raw));
  troupe::bench::print_result("view_lag_p99", percentile(lags_ms, 0.99), "ms");
  store->stop();
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  natsConnection_ConnectTo(&nc, env("TROUPE_NATS_URL").c_str());
  natsConnection_JetStream(&js, nc, nullptr);
  js_DeleteStream(js, stream_name, nullptr, nullptr);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  troupe::bench::drop_database(bench_database);
  return 0;
}
