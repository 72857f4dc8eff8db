// The PostgreSQL event store against the real server: the shared contract,
// group commit with per-command outcomes, gap-safe global reads, migrations,
// bad input, and the node on top of it across restarts.

#include "persistence/postgres_event_store.hpp"

#include <gtest/gtest.h>

#include <pqxx/pqxx>
#include <random>
#include <thread>

#include "../unit/persistence/event_store_contract.hpp"
#include "../unit/runtime/counter.hpp"
#include "persistence/postgres/migrations.hpp"
#include "persistence/sync.hpp"
#include "pg_env.hpp"
#include "runtime/node.hpp"
#include "runtime/uuid.hpp"
#include "tests/support/test_support.hpp"

namespace troupe {
namespace {

using integration::postgres_url;
using test_support::unique;

std::shared_ptr<postgres_event_store> make_store(std::size_t max_event_bytes = 1 << 20) {
  postgres_store_options o;
  o.url = postgres_url();
  o.max_event_bytes = max_event_bytes;
  return std::make_shared<postgres_event_store>(std::move(o));
}

append_request one_event(std::string stream, expected_version expected,
                         std::string data = R"({"n":1})") {
  append_request r;
  r.stream_id = std::move(stream);
  r.expected = expected;
  r.recorded_at = clock_type::now();
  r.metadata.command_id = new_uuid();
  r.events.push_back(new_event{new_uuid(), "thing_happened", 1, std::move(data)});
  return r;
}

}  // namespace

namespace contract {
INSTANTIATE_TEST_SUITE_P(Postgres, EventStoreContract,
                         ::testing::Values(store_factory{"postgres", [] { return make_store(); }}),
                         factory_name);
}  // namespace contract

namespace {

TEST(PostgresStore, ReadersNeverPassATransactionThatCommitsLate) {
  auto store = make_store();
  auto early_stream = unique("thing-early");
  auto late_stream = unique("thing-late");

  // A writer transaction takes its position first and stays open, the way
  // a slow batch does: transaction id first, then the row (the order the
  // store's append function keeps).
  pqxx::connection slow(postgres_url());
  pqxx::work slow_tx(slow);
  slow_tx.exec("SELECT pg_current_xact_id()");
  auto late_position =
      slow_tx
          .exec1(
              "INSERT INTO troupe_events (global_position, stream_id, stream_version, event_id, "
              "event_type, schema_version, data, metadata, recorded_at) VALUES ("
              "nextval('troupe_events_position_seq'), " +
              slow_tx.quote(late_stream) +
              ", 1, gen_random_uuid(), 'thing_happened', 1, '{}', '{}', now()) "
              "RETURNING global_position")[0]
          .as<std::int64_t>();

  // Meanwhile a later append commits with a higher position.
  auto committed = sync::append(*store, one_event(early_stream, expected_version::no_stream()));
  ASSERT_EQ(committed.error, store_errc::ok) << committed.message;
  ASSERT_GT(committed.last_position.value, late_position);
  {
    pqxx::connection observer(postgres_url());
    pqxx::nontransaction check(observer);
    ASSERT_EQ(check
                  .exec1("SELECT count(*) FROM troupe_events WHERE global_position = " +
                         std::to_string(committed.last_position.value))[0]
                  .as<int>(),
              1)
        << "the later event is committed and visible: a reader going by the highest "
           "position seen would move past the open transaction";
  }

  // The reader's poll must stop below the open transaction.
  auto poll = sync::read_all(*store, global_position{late_position - 1}, 1000);
  ASSERT_EQ(poll.error, store_errc::ok) << poll.message;
  for (const auto& e : poll.events) {
    EXPECT_NE(e.position, committed.last_position) << "read past an open transaction";
    EXPECT_NE(e.position.value, late_position);
  }

  slow_tx.commit();
  auto after = sync::read_all(*store, global_position{late_position - 1}, 1000);
  ASSERT_EQ(after.error, store_errc::ok);
  ASSERT_GE(after.events.size(), 2u);
  EXPECT_EQ(after.events[0].position.value, late_position);
  EXPECT_EQ(after.events[0].stream_id, late_stream);
  bool found = false;
  for (std::size_t i = 1; i < after.events.size(); ++i) {
    EXPECT_LT(after.events[i - 1].position, after.events[i].position);
    found = found || after.events[i].position == committed.last_position;
  }
  EXPECT_TRUE(found);
}

TEST(PostgresStore, OneBadCommandNeverFailsItsBatchMates) {
  auto store = make_store();
  auto run = unique("b");
  // An existing stream at version 1, and an event id already stored.
  auto taken = one_event("thing-" + run + "-taken", expected_version::no_stream());
  auto taken_event_id = taken.events[0].event_id;
  ASSERT_EQ(sync::append(*store, taken).error, store_errc::ok);

  constexpr int good = 300;
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<append_result> results(good + 3);
  int done = 0;
  auto collect = [&](int index) {
    return [&, index](append_result r) {
      std::lock_guard lock{mutex};
      results[static_cast<std::size_t>(index)] = std::move(r);
      ++done;
      cv.notify_all();
    };
  };
  auto before = store->stats();
  for (int i = 0; i < good; ++i)
    store->append(
        one_event("thing-" + run + "-" + std::to_string(i), expected_version::no_stream()),
        collect(i));
  // Stale expectation: the stream is at 1.
  store->append(one_event("thing-" + run + "-taken", expected_version::no_stream()), collect(good));
  // Expectation ahead of the stream: must not leave a gap.
  store->append(one_event("thing-" + run + "-taken", expected_version::exact(stream_version{3})),
                collect(good + 1));
  // Duplicate event id.
  auto duplicate = one_event("thing-" + run + "-dup", expected_version::no_stream());
  duplicate.events[0].event_id = taken_event_id;
  store->append(std::move(duplicate), collect(good + 2));
  {
    std::unique_lock lock{mutex};
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds{30}, [&] { return done == good + 3; }));
  }
  for (int i = 0; i < good; ++i)
    ASSERT_EQ(results[static_cast<std::size_t>(i)].error, store_errc::ok)
        << results[static_cast<std::size_t>(i)].message;
  EXPECT_EQ(results[good].error, store_errc::version_conflict);
  EXPECT_EQ(results[good].actual_version, stream_version{1});
  EXPECT_EQ(results[good + 1].error, store_errc::version_conflict);
  EXPECT_EQ(results[good + 2].error, store_errc::invalid_input);
  EXPECT_EQ(sync::read_stream(*store, "thing-" + run + "-taken").events.size(), 1u);
  EXPECT_TRUE(sync::read_stream(*store, "thing-" + run + "-dup").events.empty());
  auto after = store->stats();
  // Group commit: far fewer transactions than commands.
  EXPECT_LT(after.batches - before.batches, good / 2);
}

TEST(PostgresStore, PipelinedAppendsToOneStreamLandInOrder) {
  // A writer that sends a stream's next append before the previous one is
  // acknowledged (expecting the version it will have) must not meet a
  // conflict because two store writers took the two appends at once.
  auto store = make_store();
  auto stream = unique("thing-pipelined");
  constexpr int appends = 200;
  std::mutex mutex;
  std::condition_variable cv;
  int done = 0, ok = 0;
  for (int v = 0; v < appends; ++v)
    store->append(one_event(stream, expected_version::exact(stream_version{v})),
                  [&](append_result r) {
                    std::lock_guard lock{mutex};
                    ok += r.error == store_errc::ok;
                    ++done;
                    cv.notify_all();
                  });
  std::unique_lock lock{mutex};
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds{60}, [&] { return done == appends; }));
  EXPECT_EQ(ok, appends);
  auto events = sync::read_stream(*store, stream).events;
  ASSERT_EQ(events.size(), static_cast<std::size_t>(appends));
  for (int v = 0; v < appends; ++v)
    EXPECT_EQ(events[static_cast<std::size_t>(v)].version, stream_version{v + 1});
}

TEST(PostgresStore, AVersionSeenCommittedSkipsTheCheckYetNoWriterLeavesAGap) {
  // The store skips the database's existence check for a version it saw
  // committed; the unique key and the check still refuse every append that
  // would duplicate a version or leave a gap, from this store or another.
  auto store = make_store();
  auto other = make_store();
  auto stream = unique("thing-known");
  ASSERT_EQ(sync::append(*store, one_event(stream, expected_version::no_stream())).error,
            store_errc::ok);
  auto checks = store->stats().version_checks;
  ASSERT_EQ(
      sync::append(*store, one_event(stream, expected_version::exact(stream_version{1}))).error,
      store_errc::ok);
  EXPECT_EQ(store->stats().version_checks, checks) << "version 1 was committed by this store";

  // Another writer moves the stream on; this store still believes 2.
  ASSERT_EQ(
      sync::append(*other, one_event(stream, expected_version::exact(stream_version{2}))).error,
      store_errc::ok);
  auto behind = sync::append(*store, one_event(stream, expected_version::exact(stream_version{2})));
  EXPECT_EQ(behind.error, store_errc::version_conflict) << behind.message;
  EXPECT_EQ(behind.actual_version, stream_version{3});
  // Ahead of anything committed: checked, refused, no gap.
  auto ahead = sync::append(*store, one_event(stream, expected_version::exact(stream_version{5})));
  EXPECT_EQ(ahead.error, store_errc::version_conflict) << ahead.message;
  // A stream this store never wrote is checked too.
  auto fresh = unique("thing-unknown");
  auto gap = sync::append(*store, one_event(fresh, expected_version::exact(stream_version{1})));
  EXPECT_EQ(gap.error, store_errc::version_conflict) << gap.message;
  EXPECT_TRUE(sync::read_stream(*store, fresh).events.empty());

  auto events = sync::read_stream(*store, stream).events;
  ASSERT_EQ(events.size(), 3u);
  for (std::size_t v = 0; v < events.size(); ++v)
    EXPECT_EQ(events[v].version, stream_version{static_cast<std::int64_t>(v) + 1});
}

TEST(PostgresStore, ARejectedAppendNeverRemovesSomeoneElsesEvent) {
  // A command reusing a stored event id alongside a new one fails whole; the
  // rows it did write are removed by position, never by id, so the event
  // that owns the id stays.
  auto store = make_store();
  auto owner = unique("thing-owner");
  auto first = one_event(owner, expected_version::no_stream());
  auto owned_id = first.events[0].event_id;
  ASSERT_EQ(sync::append(*store, first).error, store_errc::ok);
  auto reuse = one_event(unique("thing-reuser"), expected_version::no_stream());
  reuse.events.push_back(new_event{owned_id, "thing_happened", 1, R"({"n":2})"});
  auto r = sync::append(*store, reuse);
  EXPECT_EQ(r.error, store_errc::invalid_input) << r.message;
  EXPECT_TRUE(sync::read_stream(*store, reuse.stream_id).events.empty());
  auto kept = sync::read_stream(*store, owner).events;
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept[0].event_id, owned_id);
}

TEST(PostgresStore, OversizedAndMalformedEventsNeverReachTheDatabase) {
  auto store = make_store(/*max_event_bytes=*/100);
  auto stream = unique("thing-big");
  auto big =
      one_event(stream, expected_version::any(), "{\"text\":\"" + std::string(200, 'x') + "\"}");
  auto r = sync::append(*store, big);
  EXPECT_EQ(r.error, store_errc::invalid_input);
  EXPECT_NE(r.message.find("over the limit of 100"), std::string::npos) << r.message;
  EXPECT_EQ(sync::append(*store, one_event(stream, expected_version::any(), "[1,2]")).error,
            store_errc::invalid_input);
  EXPECT_EQ(sync::append(*store, one_event("Thing-Bad Id", expected_version::any())).error,
            store_errc::invalid_input);
  EXPECT_EQ(store->stats().batches, 0);
  EXPECT_TRUE(sync::read_stream(*store, stream).events.empty());
}

TEST(PostgresStore, MigrationsAreIdempotentWhenNodesStartTogether) {
  auto database = unique("troupe_migrate_");
  {
    pqxx::connection admin(postgres_url());
    pqxx::nontransaction(admin).exec("CREATE DATABASE " + database);
  }
  auto url = postgres_url();
  auto slash = url.rfind('/');
  auto fresh_url = url.substr(0, slash + 1) + database;
  std::vector<std::thread> nodes;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i)
    nodes.emplace_back([&] {
      try {
        auto report = postgres::migrate(fresh_url);
        if (report.current_version == postgres::latest_schema_version()) ++ok;
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
      }
    });
  for (auto& t : nodes) t.join();
  EXPECT_EQ(ok.load(), 4);
  {
    pqxx::connection c(fresh_url);
    {
      pqxx::nontransaction tx(c);
      EXPECT_EQ(tx.exec1("SELECT count(*) FROM troupe_schema_migrations")[0].as<int>(),
                postgres::latest_schema_version());
    }
    EXPECT_TRUE(postgres::migrate(c).applied.empty());
  }
  pqxx::connection admin(postgres_url());
  pqxx::nontransaction(admin).exec("DROP DATABASE " + database);
}

TEST(PostgresStore, NodeStateAndIdempotencySurviveARestart) {
  using counter_domain::counter;
  using counter_domain::increment;
  auto id = unique("n");
  auto cfg = config::defaults();
  ASSERT_FALSE(cfg.set("aggregate.snapshot_every", "5"));
  command_result first;
  {
    node n(cfg, make_store());
    n.register_aggregate<counter>();
    n.start();
    first = n.execute<counter>(id, increment{2}, {.command_id = "first-" + id});
    ASSERT_EQ(first.status, command_status::accepted) << first.reason.message;
    for (int i = 0; i < 11; ++i) ASSERT_TRUE(n.execute<counter>(id, increment{1}).ok());
  }
  auto store = make_store();
  auto snapshot = sync::load_snapshot(*store, "counter-" + id).snapshot;
  ASSERT_TRUE(snapshot.has_value());
  EXPECT_EQ(snapshot->version, stream_version{10});
  node n(cfg, store);
  n.register_aggregate<counter>();
  n.start();
  auto retry = n.execute<counter>(id, increment{2}, {.command_id = "first-" + id});
  EXPECT_EQ(retry.status, command_status::duplicate);
  EXPECT_EQ(retry.position, first.position);
  auto next = n.execute<counter>(id, increment{1},
                                 {.expected = expected_version::exact(stream_version{12})});
  ASSERT_EQ(next.status, command_status::accepted) << next.reason.message;
  EXPECT_EQ(next.version, stream_version{13});
}

TEST(PostgresStore, RestartingPostgresLosesNoAcknowledgedCommand) {
  using counter_domain::counter;
  using counter_domain::increment;
  auto cfg = config::defaults();
  ASSERT_FALSE(cfg.set("postgres.url", postgres_url()));
  auto run = unique("r");
  node n(cfg, make_store());
  n.register_aggregate<counter>();
  n.start();

  struct acknowledged {
    std::string stream;
    std::string command_id;
    stream_version version;
  };
  std::mutex mutex;
  std::vector<acknowledged> acks;
  std::map<std::string, int> failures;
  std::atomic<bool> stop{false};
  std::atomic<std::int64_t> completed{0}, submitted{0};
  constexpr int clients = 4, streams = 50;
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      std::int64_t i = 0;
      while (!stop) {
        // Closed loop per client: one command at a time, never a hang.
        auto stream = run + "-" + std::to_string((c * 7919 + i++) % streams);
        auto command_id = new_uuid();
        std::promise<command_result> reply;
        auto future = reply.get_future();
        ++submitted;
        n.submit(node::make_envelope<counter>(stream, increment{1}, {.command_id = command_id}),
                 [&reply](command_result r) { reply.set_value(std::move(r)); });
        if (future.wait_for(std::chrono::seconds{30}) != std::future_status::ready) {
          ADD_FAILURE() << "a command hung for 30 s while PostgreSQL restarted";
          stop = true;
          return;
        }
        auto r = future.get();
        ++completed;
        std::lock_guard lock{mutex};
        if (r.status == command_status::accepted)
          acks.push_back({"counter-" + stream, command_id, r.version});
        else
          ++failures[std::string(to_string(r.status)) + "/" + r.reason.code];
      }
    });
  auto acks_now = [&] {
    std::lock_guard lock{mutex};
    return acks.size();
  };
  auto wait_for_acks = [&](std::size_t more) {
    auto target = acks_now() + more;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{60};
    while (acks_now() < target && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds{20});
    return acks_now() >= target;
  };
  ASSERT_TRUE(wait_for_acks(200));
  ASSERT_TRUE(integration::services("stop postgres"));
  std::this_thread::sleep_for(std::chrono::milliseconds{500});
  ASSERT_TRUE(integration::services("start postgres"));
  // The node recovers by itself: commands succeed again.
  EXPECT_TRUE(wait_for_acks(200)) << "no progress after PostgreSQL came back";
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(completed.load(), submitted.load());

  std::map<std::string, int> by_kind;
  {
    std::lock_guard lock{mutex};
    by_kind = failures;
  }
  std::string kinds;
  for (const auto& [kind, count] : by_kind) kinds += kind + "=" + std::to_string(count) + " ";
  RecordProperty("failures_during_restart", kinds);
  for (const auto& [kind, count] : by_kind)
    EXPECT_TRUE(kind.starts_with("unavailable/") || kind.starts_with("conflict/"))
        << "unexpected failure kind " << kind;

  // Every acknowledged command is in the store, at the version it was told.
  auto store = make_store();
  std::map<std::string, std::vector<recorded_event>> by_stream;
  for (int s = 0; s < streams; ++s) {
    auto name = "counter-" + run + "-" + std::to_string(s);
    by_stream[name] = sync::read_stream(*store, name).events;
  }
  for (const auto& ack : acks) {
    const auto& events = by_stream[ack.stream];
    ASSERT_GE(static_cast<std::int64_t>(events.size()), ack.version.value) << ack.stream;
    EXPECT_EQ(events[static_cast<std::size_t>(ack.version.value - 1)].metadata.command_id,
              ack.command_id);
  }
  for (const auto& [name, events] : by_stream)
    for (std::size_t v = 0; v < events.size(); ++v)
      ASSERT_EQ(events[v].version, stream_version{static_cast<std::int64_t>(v + 1)}) << name;
}

}  // namespace
}  // namespace troupe
