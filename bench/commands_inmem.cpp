// commands_inmem: commands/s through aggregate actors (decide, encode, append
// to the in-memory store, evolve, reply) across 10k streams, beside the limit
// it is judged against: raw CAF request/response between actors, on the same
// machine in the same run. Goal (DESIGN.md): >= 40% of the raw figure.
//
// Both sides keep the same number of requests in flight over 10k target
// actors, after the targets are warm (spawned / activated). Rounds alternate
// between the two so machine noise hits both; medians are reported.

#include <caf/all.hpp>

#include <chrono>
#include <cstdio>
#include <semaphore>
#include <thread>

#include "actors/bookstore.hpp"
#include "bench/result.hpp"
#include "persistence/memory_event_store.hpp"
#include "runtime/logging.hpp"
#include "runtime/node.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
constexpr int streams = 10'000;
constexpr int in_flight = 1'000;

struct ping {
  std::int64_t n;
};
struct pong {
  std::int64_t n;
};

}  // namespace

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ping)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pong)

namespace {

/// Raw CAF: a driver actor keeps `in_flight` requests going to 10k echo
/// actors until `total` replies arrived.
double raw_caf_round(caf::actor_system& system, const std::vector<caf::actor>& targets,
                     std::int64_t total) {
  std::binary_semaphore finished{0};
  auto started = clock_type::now();
  system.spawn([&](caf::event_based_actor* self) {
    auto sent = std::make_shared<std::int64_t>(0);
    auto received = std::make_shared<std::int64_t>(0);
    auto send_one = std::make_shared<std::function<void()>>();
    *send_one = [=, &targets, &finished] {
      auto i = (*sent)++;
      self->request(targets[static_cast<std::size_t>(i % streams)], caf::infinite, ping{i})
          .then([=, &finished](pong) {
            if (++*received == total) {
              finished.release();
              self->quit();
            } else if (*sent < total) {
              (*send_one)();
            }
          });
    };
    for (int i = 0; i < in_flight; ++i) (*send_one)();
  });
  finished.acquire();
  return static_cast<double>(total) /
         std::chrono::duration<double>(clock_type::now() - started).count();
}

/// Troupe: a client thread keeps up to `in_flight` commands going to 10k
/// book aggregates until `total` completed. It refills in batches (sleeps
/// until a quarter of the window is free), as load generators do, so the
/// figure measures the runtime rather than thread wake-ups.
double troupe_round(troupe::node& node, std::int64_t total, std::int64_t round) {
  constexpr std::int64_t low_mark = in_flight * 3 / 4;
  std::atomic<std::int64_t> outstanding{0};
  std::atomic<std::int64_t> failed{0};
  std::atomic<std::int64_t> done{0};
  std::binary_semaphore finished{0};
  auto started = clock_type::now();
  for (std::int64_t i = 0; i < total; ++i) {
    auto current = outstanding.fetch_add(1, std::memory_order_acq_rel) + 1;
    while (current > in_flight) {
      outstanding.wait(current, std::memory_order_acquire);
      current = outstanding.load(std::memory_order_acquire);
    }
    auto id = "b" + std::to_string(i % streams);
    node.submit(troupe::node::make_envelope<bookstore::book>(
                    id, bookstore::add_stock{id, 1 + (i + round) % 5}),
                [&](troupe::command_result r) {
                  if (!r.ok()) failed.fetch_add(1, std::memory_order_relaxed);
                  if (outstanding.fetch_sub(1, std::memory_order_acq_rel) - 1 == low_mark)
                    outstanding.notify_one();
                  if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == total) finished.release();
                });
  }
  finished.acquire();
  auto rate = static_cast<double>(total) /
              std::chrono::duration<double>(clock_type::now() - started).count();
  if (failed.load() != 0) {
    std::fprintf(stderr, "commands_inmem: %lld commands failed\n",
                 static_cast<long long>(failed.load()));
    std::exit(1);
  }
  return rate;
}

}  // namespace

int main(int argc, char** argv) {
  std::int64_t per_round = argc > 1 ? std::atoll(argv[1]) : 300'000;
  int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  troupe::setup_logging("warn", "text");
  auto threads = std::max(1u, std::thread::hardware_concurrency());

  // Raw CAF side: same scheduler settings as a node.
  caf::actor_system_config caf_config;
  caf_config.set("scheduler.max-threads", static_cast<std::size_t>(threads));
  caf::actor_system system{caf_config};
  std::vector<caf::actor> echoes;
  for (int i = 0; i < streams; ++i)
    echoes.push_back(system.spawn([](caf::event_based_actor*) -> caf::behavior {
      return {[](ping p) { return pong{p.n}; }};
    }));

  // Troupe side: a node with the bookstore on the in-memory store.
  auto cfg = troupe::config::defaults();
  (void)cfg.set("aggregate.snapshot_every", "100");
  troupe::node node{cfg, std::make_shared<troupe::memory_event_store>()};
  node.register_aggregates<bookstore::bookstore_aggregates>();
  node.start();
  for (int i = 0; i < streams; ++i) {  // activate every stream
    auto id = "b" + std::to_string(i);
    auto r =
        node.execute<bookstore::book>(id, bookstore::create_book{.book_id = id,
                                                                 .name = "Book " + id,
                                                                 .description = "",
                                                                 .price = 1000,
                                                                 .discount_price = std::nullopt,
                                                                 .category_id = "c",
                                                                 .publisher_id = "p",
                                                                 .author_ids = {"a"},
                                                                 .initial_stock = 0});
    if (!r.ok()) {
      std::fprintf(stderr, "seeding failed: %s\n", r.reason.message.c_str());
      return 1;
    }
  }
  raw_caf_round(system, echoes, per_round / 4);  // warm-up, both sides
  troupe_round(node, per_round / 4, 0);

  std::vector<double> raw, ours;
  for (int r = 0; r < rounds; ++r) {
    raw.push_back(raw_caf_round(system, echoes, per_round));
    ours.push_back(troupe_round(node, per_round, r + 1));
    std::printf("round %d: raw CAF request/response %.0f/s, troupe commands %.0f/s (%.1f%%)\n",
                r + 1, raw.back(), ours.back(), 100 * ours.back() / raw.back());
  }
  auto raw_median = troupe::bench::median(raw);
  auto ours_median = troupe::bench::median(ours);
  std::printf("median of %d rounds, %lld requests each, %d streams, %d in flight, %u threads\n",
              rounds, static_cast<long long>(per_round), streams, in_flight, threads);
  troupe::bench::print_result("caf_request_response", raw_median, "requests/s");
  troupe::bench::print_result("commands_inmem", ours_median, "commands/s", raw_median);
  node.stop();
  for (auto& e : echoes) caf::anon_send_exit(e, caf::exit_reason::user_shutdown);
  return 0;
}
