// journal_append: events/s and append latency of the PostgreSQL event store
// (group commit, default durability: fsync on, synchronous_commit on) with
// 1, 16, 256 and 1024 concurrent streams appending one event per command,
// beside the raw limit measured in the same run: server-built batched
// inserts (500 rows per transaction) and COPY into a table of the same shape.
// Then p99 latency in an open loop at half the peak rate, corrected for
// coordinated omission (latency counts from the intended send time).
//
// Goals (issue 3): >= 60% of the batched-insert limit at 256 streams; p99 <=
// 20 ms at half the peak rate.
//
// Needs TROUPE_POSTGRES_URL (scripts/bench sets it).
// Arguments: [seconds per phase] [rounds] [writers] [batch max] [linger us].
// For diagnosis: TROUPE_JOURNAL_CLOSED_ONLY=<streams> or
// TROUPE_JOURNAL_OPEN_ONLY=<appends/s> runs that phase alone;
// TROUPE_JOURNAL_WINDOWS=1 prints the open loop's 50 ms windows with
// appends over 20 ms (a checkpoint shows as a run of them).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <pqxx/pqxx>
#include <thread>

#include "bench/result.hpp"
#include "persistence/postgres_event_store.hpp"
#include "runtime/logging.hpp"
#include "runtime/uuid.hpp"

namespace {

using steady = std::chrono::steady_clock;
using troupe::bench::median;

std::string server_url() {
  const char* u = std::getenv("TROUPE_POSTGRES_URL");
  if (u == nullptr) {
    std::fprintf(stderr, "journal_append: TROUPE_POSTGRES_URL is not set (use scripts/bench)\n");
    std::exit(2);
  }
  return u;
}

constexpr const char* bench_database = "troupe_bench_journal";

/// A database of its own, created empty for each run, so figures do not
/// depend on what earlier runs or tests left in the shared one.
std::string url() {
  auto u = server_url();
  auto query = u.find('?');
  auto slash = u.rfind('/', query);
  return u.substr(0, slash + 1) + bench_database +
         (query == std::string::npos ? "" : u.substr(query));
}

void recreate_database() {
  pqxx::connection admin(server_url());
  pqxx::nontransaction tx(admin);
  tx.exec(std::string("DROP DATABASE IF EXISTS ") + bench_database);
  tx.exec(std::string("CREATE DATABASE ") + bench_database);
}

/// Before a measured phase: checkpoint, so the pages the previous phase
/// dirtied (the limit's random-UUID index is spread over its whole table)
/// are not written back in the middle of the next phase's measurement; a
/// checkpoint there made the half-peak p99 20-80 ms instead of ~10.
/// Checkpoints that a phase's own writes cause still count.
void settle() {
  pqxx::connection conn(url());
  pqxx::nontransaction(conn).exec("CHECKPOINT");
}

double percentile(std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  auto index = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1));
  return sorted[index];
}

struct load_result {
  double events_per_second = 0;
  double p50_ms = 0;
  double p99_ms = 0;
};

std::string run_id() {
  return std::to_string(steady::now().time_since_epoch().count() % 1000000000);
}

troupe::append_request make_append(const std::string& stream, std::int64_t version) {
  troupe::append_request r;
  r.stream_id = stream;
  r.expected = troupe::expected_version::exact(troupe::stream_version{version});
  r.recorded_at = troupe::clock_type::now();
  r.metadata.command_id = troupe::new_uuid();
  r.metadata.correlation_id = r.metadata.command_id;
  r.metadata.node_id = "bench";
  r.events.push_back(
      troupe::new_event{troupe::new_uuid(), "stock_added", 1, R"({"book_id":"b","quantity":1})"});
  return r;
}

/// Closed loop: each of `streams` streams appends its next event as soon as
/// the previous one is acknowledged, for `seconds` after a warm-up. As in a
/// node, where an acknowledgement is a message to an actor that issues the
/// next command, acknowledgements only hand the stream to a client thread
/// (this one), which issues the next append; the store's writer threads do
/// not run client work.
load_result closed_loop(troupe::postgres_event_store& store, int streams, double seconds) {
  struct state {
    std::mutex mutex;
    std::condition_variable ready_changed;
    std::vector<int> ready;  // streams whose last append was acknowledged
    std::vector<double> latencies_ms;
    std::int64_t counted = 0;
    bool measuring = false;
  } st;
  auto prefix = "bench-" + run_id() + "-" + std::to_string(streams) + "-";
  std::vector<std::int64_t> versions(static_cast<std::size_t>(streams), 0);
  int outstanding = 0;  // client thread only

  auto issue = [&](int s) {
    auto started = steady::now();
    store.append(make_append(prefix + std::to_string(s), versions[static_cast<std::size_t>(s)]),
                 [&, s, started](troupe::append_result r) {
                   if (r.error != troupe::store_errc::ok) {
                     std::fprintf(stderr, "append failed: %s\n", r.message.c_str());
                     std::exit(1);
                   }
                   auto ms =
                       std::chrono::duration<double, std::milli>(steady::now() - started).count();
                   std::lock_guard lock{st.mutex};
                   versions[static_cast<std::size_t>(s)] = r.last_version.value;
                   if (st.measuring) {
                     st.latencies_ms.push_back(ms);
                     ++st.counted;
                   }
                   st.ready.push_back(s);
                   st.ready_changed.notify_one();
                 });
    ++outstanding;
  };
  for (int s = 0; s < streams; ++s) issue(s);
  auto warm_until = steady::now() + std::chrono::milliseconds{500};
  auto stop_at = warm_until + std::chrono::duration_cast<steady::duration>(
                                  std::chrono::duration<double>(seconds));
  bool warm = false;
  std::vector<int> batch;
  auto measured_from = warm_until;
  while (true) {
    {
      std::unique_lock lock{st.mutex};
      st.ready_changed.wait_until(lock, std::min(warm ? stop_at : warm_until, stop_at),
                                  [&] { return !st.ready.empty(); });
      auto now = steady::now();
      if (!warm && now >= warm_until) {
        warm = true;
        st.measuring = true;
        measured_from = now;
      }
      if (now >= stop_at) {
        st.measuring = false;
        break;
      }
      batch.swap(st.ready);
    }
    outstanding -= static_cast<int>(batch.size());
    for (int s : batch) issue(s);
    batch.clear();
  }
  auto elapsed = std::chrono::duration<double>(steady::now() - measured_from).count();
  // Let the appends in flight finish before the next level starts.
  {
    std::unique_lock lock{st.mutex};
    st.ready_changed.wait(lock, [&] { return static_cast<int>(st.ready.size()) == outstanding; });
  }
  std::sort(st.latencies_ms.begin(), st.latencies_ms.end());
  return {static_cast<double>(st.counted) / elapsed, percentile(st.latencies_ms, 0.50),
          percentile(st.latencies_ms, 0.99)};
}

/// Open loop at `rate` appends/s over `streams` streams: sends are scheduled
/// on a fixed timetable; latency runs from the scheduled time, so a stall
/// shows in every request it delays (no coordinated omission).
load_result open_loop(troupe::postgres_event_store& store, int streams, double rate,
                      double seconds) {
  std::mutex mutex;
  std::vector<std::pair<double, double>> due_and_latency_ms;  // since start
  std::atomic<std::int64_t> outstanding{0};
  std::vector<std::int64_t> versions(static_cast<std::size_t>(streams), 0);
  std::vector<std::atomic<bool>> busy(static_cast<std::size_t>(streams));
  std::vector<std::deque<steady::time_point>> backlog(static_cast<std::size_t>(streams));
  std::mutex backlog_mutex;
  auto prefix = "open-" + run_id() + "-";
  auto total = static_cast<std::int64_t>(rate * seconds);
  auto interval = std::chrono::duration<double>(1.0 / rate);
  auto start = steady::now() + std::chrono::milliseconds{50};

  // A stream appends one event at a time (as an aggregate does); sends due
  // while it is busy wait in its backlog and are charged from their due time.
  std::function<void(int, steady::time_point)> send = [&](int s, steady::time_point due) {
    auto& version = versions[static_cast<std::size_t>(s)];
    store.append(make_append(prefix + std::to_string(s), version),
                 [&, s, due](troupe::append_result r) {
                   if (r.error != troupe::store_errc::ok) {
                     std::fprintf(stderr, "append failed: %s\n", r.message.c_str());
                     std::exit(1);
                   }
                   versions[static_cast<std::size_t>(s)] = r.last_version.value;
                   {
                     std::lock_guard lock{mutex};
                     due_and_latency_ms.emplace_back(
                         std::chrono::duration<double, std::milli>(due - start).count(),
                         std::chrono::duration<double, std::milli>(steady::now() - due).count());
                   }
                   outstanding.fetch_sub(1);
                   std::optional<steady::time_point> queued;
                   {
                     std::lock_guard lock{backlog_mutex};
                     auto& q = backlog[static_cast<std::size_t>(s)];
                     if (q.empty()) {
                       busy[static_cast<std::size_t>(s)] = false;
                     } else {
                       queued = q.front();
                       q.pop_front();
                     }
                   }
                   if (queued) send(s, *queued);
                 });
  };
  for (std::int64_t i = 0; i < total; ++i) {
    auto due =
        start + std::chrono::duration_cast<steady::duration>(interval * static_cast<double>(i));
    std::this_thread::sleep_until(due);
    int s = static_cast<int>(i % streams);
    outstanding.fetch_add(1);
    bool send_now = false;
    {
      std::lock_guard lock{backlog_mutex};
      if (!busy[static_cast<std::size_t>(s)]) {
        busy[static_cast<std::size_t>(s)] = true;
        send_now = true;
      } else {
        backlog[static_cast<std::size_t>(s)].push_back(due);
      }
    }
    if (send_now) send(s, due);
  }
  while (outstanding.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds{5});
  if (std::getenv("TROUPE_JOURNAL_WINDOWS")) {
    std::map<int, std::pair<int, double>> windows;  // 50 ms window -> (over 20 ms, max)
    for (auto [d, ms] : due_and_latency_ms) {
      auto& w = windows[static_cast<int>(d / 50)];
      if (ms > 20) ++w.first;
      w.second = std::max(w.second, ms);
    }
    for (auto& [w, v] : windows)
      if (v.first > 0)
        std::printf("  window %5d ms: %5d over 20 ms, max %.1f ms\n", w * 50, v.first, v.second);
  }
  std::vector<double> latencies_ms;
  latencies_ms.reserve(due_and_latency_ms.size());
  for (auto [due_ms, ms] : due_and_latency_ms) latencies_ms.push_back(ms);
  std::sort(latencies_ms.begin(), latencies_ms.end());
  return {static_cast<double>(total) / seconds, percentile(latencies_ms, 0.50),
          percentile(latencies_ms, 0.99)};
}

// Same columns, constraints and indexes; positions from an identity column
// (one sequence step per row, as the store's own rows take).
const char* const raw_table_ddl =
    "DROP TABLE IF EXISTS bench_raw_events; "
    "CREATE TABLE bench_raw_events (LIKE troupe_events INCLUDING DEFAULTS "
    "INCLUDING CONSTRAINTS INCLUDING INDEXES); "
    "ALTER TABLE bench_raw_events ALTER global_position ADD GENERATED ALWAYS AS IDENTITY";

/// The limit: rows built by the server (generate_series), `per_tx` per
/// transaction, on `connections` connections in parallel, for `seconds`.
double batched_insert_limit(int connections, int per_tx, double seconds) {
  std::atomic<std::int64_t> rows{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  auto prefix = "raw-" + run_id() + "-";
  for (int c = 0; c < connections; ++c)
    threads.emplace_back([&, c] {
      pqxx::connection conn(url());
      std::int64_t batch = 0;
      while (!stop) {
        pqxx::work tx(conn);
        auto stream_base = prefix + std::to_string(c) + "-" + std::to_string(batch++) + "-";
        tx.exec(
            "INSERT INTO bench_raw_events (stream_id, stream_version, event_id, event_type, "
            "schema_version, data, metadata, recorded_at) SELECT " +
            tx.quote(stream_base) +
            " || g, 1, gen_random_uuid(), 'stock_added', 1, "
            "'{\"book_id\":\"b\",\"quantity\":1}'::json, "
            "'{\"command_id\":\"x\",\"node_id\":\"bench\"}'::json, now() "
            "FROM generate_series(1, " +
            std::to_string(per_tx) + ") g");
        tx.commit();
        rows += per_tx;
      }
    });
  std::this_thread::sleep_for(std::chrono::milliseconds{300});
  auto before = rows.load();
  auto started = steady::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  auto counted = rows.load() - before;
  auto elapsed = std::chrono::duration<double>(steady::now() - started).count();
  stop = true;
  for (auto& t : threads) t.join();
  return static_cast<double>(counted) / elapsed;
}

/// COPY from the client, 10,000 rows per transaction, one connection.
double copy_rate(double seconds) {
  pqxx::connection conn(url());
  std::int64_t rows = 0;
  auto prefix = "copy-" + run_id() + "-";
  auto started = steady::now();
  std::int64_t batch = 0;
  while (std::chrono::duration<double>(steady::now() - started).count() < seconds) {
    pqxx::work tx(conn);
    pqxx::stream_to copy(
        tx, "bench_raw_events",
        std::vector<std::string>{"stream_id", "stream_version", "event_id", "event_type",
                                 "schema_version", "data", "metadata", "recorded_at"});
    for (int i = 0; i < 10000; ++i)
      copy << std::make_tuple(prefix + std::to_string(batch) + "-" + std::to_string(i), 1,
                              troupe::new_uuid(), std::string("stock_added"), 1,
                              std::string(R"({"book_id":"b","quantity":1})"),
                              std::string(R"({"command_id":"x","node_id":"bench"})"),
                              std::string("2026-01-01 00:00:00+00"));
    copy.complete();
    tx.commit();
    rows += 10000;
    ++batch;
  }
  return static_cast<double>(rows) / std::chrono::duration<double>(steady::now() - started).count();
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = argc > 1 ? std::atof(argv[1]) : 4.0;
  int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  troupe::setup_logging("warn", "text");
  recreate_database();
  troupe::postgres_store_options options;
  options.url = url();
  if (argc > 3) options.writer_connections = static_cast<std::size_t>(std::atoi(argv[3]));
  if (argc > 4) options.batch_max_commands = static_cast<std::size_t>(std::atoi(argv[4]));
  if (argc > 5) options.batch_linger = std::chrono::microseconds{std::atoi(argv[5])};
  options.log = troupe::logger("store");
  troupe::postgres_event_store store(options);
  {
    pqxx::connection conn(url());
    pqxx::nontransaction(conn).exec(raw_table_ddl);
  }

  if (auto* rate = std::getenv("TROUPE_JOURNAL_OPEN_ONLY")) {
    for (int r = 0; r < rounds; ++r) {
      auto half = open_loop(store, 1024, std::atof(rate), seconds);
      std::printf("open loop at %s/s: p50 %.2f ms, p99 %.2f ms\n", rate, half.p50_ms, half.p99_ms);
    }
    store.stop();
    return 0;
  }
  if (auto* streams = std::getenv("TROUPE_JOURNAL_CLOSED_ONLY")) {
    for (int r = 0; r < rounds; ++r) {
      auto result = closed_loop(store, std::atoi(streams), seconds);
      std::printf("closed loop over %s streams: %.0f events/s, p50 %.2f ms, p99 %.2f ms\n", streams,
                  result.events_per_second, result.p50_ms, result.p99_ms);
    }
    store.stop();
    return 0;
  }
  const int levels[] = {1, 16, 256, 1024};
  std::map<int, std::vector<double>> rate, p50, p99;
  std::vector<double> limit, limit4, half_rate, half_p50, half_p99;
  for (int r = 0; r < rounds; ++r) {
    limit.push_back(batched_insert_limit(2, 500, seconds / 2));
    limit4.push_back(batched_insert_limit(4, 500, seconds / 2));
    settle();
    for (int n : levels) {
      auto before = store.stats();
      auto result = closed_loop(store, n, seconds);
      auto after = store.stats();
      auto batches = std::max<std::int64_t>(1, after.batches - before.batches);
      std::printf(
          "         %4d streams: %.0f commands/batch; per batch: build %.2f ms, execute %.2f ms, "
          "commit %.2f ms, deliver %.2f ms\n",
          n, static_cast<double>(after.batched_commands - before.batched_commands) / batches,
          (after.build_us - before.build_us) / 1000.0 / batches,
          (after.execute_us - before.execute_us) / 1000.0 / batches,
          (after.commit_us - before.commit_us) / 1000.0 / batches,
          (after.deliver_us - before.deliver_us) / 1000.0 / batches);
      rate[n].push_back(result.events_per_second);
      p50[n].push_back(result.p50_ms);
      p99[n].push_back(result.p99_ms);
      std::printf("round %d: %4d streams: %8.0f events/s  p50 %6.2f ms  p99 %6.2f ms\n", r + 1, n,
                  result.events_per_second, result.p50_ms, result.p99_ms);
    }
    std::printf("round %d: batched insert limit %0.f rows/s (2 connections), %.0f (4)\n", r + 1,
                limit.back(), limit4.back());
    // Open loop at half of this round's best closed-loop rate, every round,
    // so the p99 reported is a median over rounds rather than one sample.
    double round_peak = 0;
    for (int n : levels) round_peak = std::max(round_peak, rate[n].back());
    settle();
    auto half = open_loop(store, 1024, round_peak / 2, seconds);
    half_rate.push_back(round_peak / 2);
    half_p50.push_back(half.p50_ms);
    half_p99.push_back(half.p99_ms);
    std::printf("round %d: open loop at %.0f/s over 1024 streams: p50 %.2f ms, p99 %.2f ms\n",
                r + 1, round_peak / 2, half.p50_ms, half.p99_ms);
    std::fflush(stdout);
  }
  auto copy = copy_rate(seconds / 2);
  auto insert_limit = std::max(median(limit), median(limit4));
  std::printf("\nmedians of %d rounds of %.1f s (writers %zu, batch <= %zu commands):\n", rounds,
              seconds, options.writer_connections, options.batch_max_commands);
  for (int n : levels)
    std::printf("  %4d streams: %8.0f events/s  p50 %6.2f ms  p99 %6.2f ms  (%.1f%% of limit)\n", n,
                median(rate[n]), median(p50[n]), median(p99[n]),
                100 * median(rate[n]) / insert_limit);
  std::printf("  limit: batched server-built insert %.0f rows/s; COPY %.0f rows/s\n", insert_limit,
              copy);

  std::printf(
      "  open loop at half the peak (median %.0f/s, 1024 streams): p50 %.2f ms, p99 %.2f ms\n",
      median(half_rate), median(half_p50), median(half_p99));

  for (int n : levels)
    if (n != 256)
      troupe::bench::print_result("journal_append_" + std::to_string(n), median(rate[n]),
                                  "events/s", insert_limit);
  troupe::bench::print_result("journal_append", median(rate[256]), "events/s", insert_limit);
  troupe::bench::print_result("journal_copy_limit", copy, "rows/s");
  troupe::bench::print_result("journal_append_p99_half_peak", median(half_p99), "ms", 20);
  store.stop();
  {
    pqxx::connection admin(server_url());
    pqxx::nontransaction(admin).exec(std::string("DROP DATABASE ") + bench_database);
  }
  return 0;
}
