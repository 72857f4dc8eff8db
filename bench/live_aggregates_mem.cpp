// live_aggregates_mem: the memory a node needs to keep 1 million order
// aggregates live (each an actor holding its state), beside the goal of
// 3 GiB for this machine. In process, on a store that keeps no events (as
// with PostgreSQL, where they are not in the node's memory): every stream
// is new, so each append lands at version 1 and each activation reads
// nothing. The figure is the resident size of the whole process.
//
//   RESULT live_aggregates_mem value=<MiB for 1M> unit=MiB limit=3072 ...
//
// Also prints the bytes per live aggregate (resident growth / aggregates).

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <semaphore>
#include <string>

#include "actors/bookstore.hpp"
#include "bench/result.hpp"
#include "runtime/logging.hpp"
#include "runtime/node.hpp"

namespace {

/// Accepts every append of a new stream and forgets it: the benchmark
/// measures the runtime's memory, not a store's.
class forgetting_store : public troupe::event_store {
 public:
  void append(troupe::append_request request, append_callback done) override {
    troupe::append_result r;
    auto n = static_cast<std::int64_t>(request.events.size());
    r.first_version = troupe::stream_version{1};
    r.last_version = troupe::stream_version{n};
    r.last_position = troupe::global_position{position_.fetch_add(n) + n};
    done(std::move(r));
  }
  void read_stream(std::string, troupe::stream_version, std::size_t, read_callback done) override {
    done({});
  }
  void read_all(troupe::global_position, std::size_t, read_callback done) override { done({}); }
  void load_snapshot(std::string, snapshot_callback done) override { done({}); }
  void save_snapshot(troupe::snapshot_record, done_callback done) override {
    done(troupe::store_errc::ok, {});
  }
  void load_checkpoint(std::string, checkpoint_callback done) override {
    done(troupe::store_errc::ok, {}, troupe::global_position{0});
  }
  void save_checkpoint(std::string, troupe::global_position, done_callback done) override {
    done(troupe::store_errc::ok, {});
  }

 private:
  std::atomic<std::int64_t> position_{0};
};

/// Resident set size in bytes (from /proc/self/statm).
double resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return static_cast<double>(pages_resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

}  // namespace

int main(int argc, char** argv) {
  const std::int64_t aggregates = argc > 1 ? std::atoll(argv[1]) : 1'000'000;
  constexpr std::int64_t in_flight = 2'000;
  troupe::setup_logging("warn", "text");
  auto cfg = troupe::config::defaults();
  // Keep every aggregate live: no idle passivation, room for all of them.
  (void)cfg.set("aggregate.max_live", std::to_string(aggregates + 1000));
  (void)cfg.set("aggregate.idle_timeout_ms", "3600000");
  troupe::node node{cfg, std::make_shared<forgetting_store>()};
  node.register_aggregates<bookstore::bookstore_aggregates>();
  node.start();
  auto before = resident_bytes();
  auto started = std::chrono::steady_clock::now();

  std::atomic<std::int64_t> outstanding{0}, failed{0}, done{0};
  std::binary_semaphore finished{0};
  for (std::int64_t i = 0; i < aggregates; ++i) {
    auto current = outstanding.fetch_add(1) + 1;
    while (current > in_flight) {
      outstanding.wait(current);
      current = outstanding.load();
    }
    auto id = "m" + std::to_string(i);
    node.submit(troupe::node::make_envelope<bookstore::order>(
                    id, bookstore::place_order{id,
                                               "buyer-" + std::to_string(i % 1000),
                                               {bookstore::order_item{"book-1", 1, 1250}},
                                               1'700'000'000'000}),
                [&](troupe::command_result r) {
                  if (!r.ok()) failed.fetch_add(1);
                  outstanding.fetch_sub(1);
                  outstanding.notify_one();
                  if (done.fetch_add(1) + 1 == aggregates) finished.release();
                });
  }
  finished.acquire();
  auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  auto after = resident_bytes();
  auto live = node.stats().live_aggregates;
  if (failed.load() != 0) {
    std::fprintf(stderr, "live_aggregates_mem: %lld commands failed\n",
                 static_cast<long long>(failed.load()));
    return 1;
  }
  std::printf(
      "%lld orders placed in %.1f s (%.0f/s); %lld aggregates live; resident %.0f MiB "
      "(%.0f MiB before); %.0f bytes per live aggregate\n",
      static_cast<long long>(aggregates), seconds, static_cast<double>(aggregates) / seconds,
      static_cast<long long>(live), after / 1048576, before / 1048576,
      (after - before) / static_cast<double>(aggregates));
  troupe::bench::print_result("live_aggregates_mem",
                              after / 1048576 * (1'000'000.0 / static_cast<double>(aggregates)),
                              "MiB", 3072);
  // Stopping passivates every live actor; printed because it once took
  // minutes (see the shard region's deferred stops).
  auto stop_started = std::chrono::steady_clock::now();
  node.stop();
  std::printf(
      "node stopped in %.1f s\n",
      std::chrono::duration<double>(std::chrono::steady_clock::now() - stop_started).count());
  return 0;
}
