// rehydrate_10k: how long a cold aggregate with a 10,000-event stream takes
// to come alive on the PostgreSQL store (first command answered), with and
// without a snapshot. Goal (issue 3): <= 20 ms with a snapshot.
//
// The measured command is one the decider rejects, so no append is timed:
// only load snapshot + read the tail + decode + evolve + decide.

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "actors/bookstore.hpp"
#include "bench/result.hpp"
#include "persistence/postgres_event_store.hpp"
#include "persistence/sync.hpp"
#include "runtime/codec.hpp"
#include "runtime/logging.hpp"
#include "runtime/node.hpp"
#include "runtime/uuid.hpp"

namespace {

using steady = std::chrono::steady_clock;
constexpr int events_in_stream = 10'000;

std::shared_ptr<troupe::postgres_event_store> make_store() {
  const char* url = std::getenv("TROUPE_POSTGRES_URL");
  if (url == nullptr) {
    std::fprintf(stderr, "rehydrate_10k: TROUPE_POSTGRES_URL is not set (use scripts/bench)\n");
    std::exit(2);
  }
  troupe::postgres_store_options o;
  o.url = url;
  o.log = troupe::logger("store");
  return std::make_shared<troupe::postgres_event_store>(std::move(o));
}

/// Writes book_created + 9,999 stock_added events straight into the store.
void seed(troupe::event_store& store, const std::string& book_id) {
  using codec = troupe::variant_codec<bookstore::book::event>;
  std::int64_t version = 0;
  auto append = [&](std::vector<bookstore::book::event> events) {
    troupe::append_request r;
    r.stream_id = "book-" + book_id;
    r.expected = troupe::expected_version::exact(troupe::stream_version{version});
    r.recorded_at = troupe::clock_type::now();
    r.metadata.command_id = troupe::new_uuid();
    for (const auto& e : events) {
      auto enc = codec::encode(e);
      r.events.push_back(
          {troupe::new_uuid(), std::string(enc.type), enc.schema_version, std::move(enc.data)});
    }
    auto result = troupe::sync::append(store, std::move(r));
    if (result.error != troupe::store_errc::ok) {
      std::fprintf(stderr, "seeding failed: %s\n", result.message.c_str());
      std::exit(1);
    }
    version = result.last_version.value;
  };
  append({bookstore::book_created{.book_id = book_id,
                                  .name = "Rehydrated",
                                  .description = "",
                                  .price = 1000,
                                  .discount_price = std::nullopt,
                                  .category_id = "c",
                                  .publisher_id = "p",
                                  .author_ids = {"a"},
                                  .initial_stock = 0}});
  while (version < events_in_stream) {
    std::vector<bookstore::book::event> batch;
    for (int i = 0; i < 200 && version + static_cast<std::int64_t>(batch.size()) < events_in_stream;
         ++i)
      batch.push_back(bookstore::stock_added{book_id, 1});
    append(std::move(batch));
  }
}

/// Milliseconds from submitting a command to a cold aggregate until its
/// answer, on a fresh node (no live actors).
double cold_command_ms(std::shared_ptr<troupe::event_store> store, const std::string& book_id,
                       std::int64_t snapshot_every, bool accepted_command) {
  auto cfg = troupe::config::defaults();
  (void)cfg.set("aggregate.snapshot_every", std::to_string(snapshot_every));
  troupe::node n(cfg, std::move(store));
  n.register_aggregates<bookstore::bookstore_aggregates>();
  n.start();
  auto started = steady::now();
  // add_stock with quantity 0 is rejected: nothing is appended or timed
  // besides rehydration; quantity 1 is accepted (used to write a snapshot).
  auto r =
      n.execute<bookstore::book>(book_id, bookstore::add_stock{book_id, accepted_command ? 1 : 0});
  auto ms = std::chrono::duration<double, std::milli>(steady::now() - started).count();
  auto expected =
      accepted_command ? troupe::command_status::accepted : troupe::command_status::rejected;
  if (r.status != expected) {
    std::fprintf(stderr, "unexpected outcome: %s %s\n", std::string(to_string(r.status)).c_str(),
                 r.reason.message.c_str());
    std::exit(1);
  }
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = argc > 1 ? std::atoi(argv[1]) : 7;
  troupe::setup_logging("warn", "text");
  auto store = make_store();
  auto run = std::to_string(steady::now().time_since_epoch().count() % 1000000000);
  auto plain = "rehydrate-plain-" + run;
  auto snapshotted = "rehydrate-snap-" + run;
  seed(*store, plain);
  seed(*store, snapshotted);
  // One accepted command on a node that snapshots every 10,000 events
  // writes the snapshot (at version 10,001) off the command path.
  cold_command_ms(store, snapshotted, events_in_stream, true);
  for (int wait = 0; wait < 100; ++wait) {
    auto s = troupe::sync::load_snapshot(*store, "book-" + snapshotted).snapshot;
    if (s && s->version.value > events_in_stream) break;
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }

  std::vector<double> without, with;
  for (int r = 0; r < rounds; ++r) {
    without.push_back(cold_command_ms(store, plain, 0, false));
    with.push_back(cold_command_ms(store, snapshotted, 0, false));
    std::printf("round %d: without snapshot %.2f ms, with snapshot %.2f ms\n", r + 1,
                without.back(), with.back());
  }
  std::printf("median of %d cold starts of a %d-event book stream\n", rounds, events_in_stream);
  troupe::bench::print_result("rehydrate_10k_no_snapshot", troupe::bench::median(without), "ms");
  troupe::bench::print_result("rehydrate_10k", troupe::bench::median(with), "ms", 20);
  store->stop();
  return 0;
}
