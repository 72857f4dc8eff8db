// Projectors, subscriptions and rebuilds against real PostgreSQL and
// nats-server. Each test gets a database and a JetStream stream of its own:
// the events flow store -> publisher -> JetStream -> projector -> views.

#include "runtime/projector.hpp"

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "actors/bookstore.hpp"
#include "actors/projections.hpp"
#include "persistence/postgres/migrations.hpp"
#include "persistence/postgres/pg_connection.hpp"
#include "persistence/postgres/view_store.hpp"
#include "persistence/postgres_event_store.hpp"
#include "persistence/sync.hpp"
#include "pg_env.hpp"
#include "runtime/publisher.hpp"
#include "runtime/subscription.hpp"
#include "runtime/uuid.hpp"
#include "tests/support/test_support.hpp"
#include "troupe_process.hpp"

namespace troupe {
namespace {

using namespace bookstore;
using test_support::unique;

template <class Predicate>
bool eventually(Predicate done, std::chrono::seconds timeout = std::chrono::seconds{30}) {
  return test_support::eventually(done, timeout);
}

/// A database, a JetStream stream and consumer names of the test's own.
class ProjectionTest : public ::testing::Test {
 protected:
  std::string run = unique("p");
  integration::scoped_database db{"troupe_test_" + run};
  std::string url = db.url;
  std::string stream = "TROUPE_TEST_" + run;
  std::string prefix = "troupetest" + run + ".events";
  std::shared_ptr<postgres_event_store> store;
  std::unique_ptr<event_publisher> publisher;

  void SetUp() override {
    postgres::migrate(url);
    postgres_store_options o;
    o.url = url;
    store = std::make_shared<postgres_event_store>(std::move(o));
  }

  void TearDown() override {
    publisher.reset();
    store.reset();
    integration::delete_jetstream_stream(stream);
  }

  void start_publisher() {
    publisher_options o;
    o.nats_url = integration::required_env("TROUPE_NATS_URL");
    o.stream_name = stream;
    o.subject_prefix = prefix;
    o.poll_interval = std::chrono::milliseconds{5};
    o.retry_backoff = std::chrono::milliseconds{100};
    publisher = std::make_unique<event_publisher>(store, o);
    publisher->start();
  }

  projector_options projector_settings() {
    projector_options o;
    o.postgres_url = url;
    o.subscription.nats_url = integration::required_env("TROUPE_NATS_URL");
    o.subscription.stream = stream;
    o.subscription.max_in_flight = 200;
    o.subscription.fetch_wait = std::chrono::milliseconds{50};
    o.subscription.ack_wait = std::chrono::milliseconds{1500};
    o.consumer_prefix = "view-" + run + "-";
    o.retry_backoff = std::chrono::milliseconds{10};
    return o;
  }

  template <class E>
  append_result append(const std::string& stream_id, std::int64_t expected_version, const E& e) {
    auto encoded = variant_codec<std::variant<E>>::encode(e);
    return append_raw(stream_id, expected_version, std::string(encoded.type),
                      encoded.schema_version, std::move(encoded.data));
  }

  append_result append_raw(const std::string& stream_id, std::int64_t expected_version,
                           std::string type, int schema_version, std::string data) {
    append_request r;
    r.stream_id = stream_id;
    r.expected = expected_version::exact(stream_version{expected_version});
    r.recorded_at = clock_type::now();
    r.metadata.command_id = new_uuid();
    r.events.push_back(new_event{new_uuid(), std::move(type), schema_version, std::move(data)});
    auto result = sync::append(*store, std::move(r));
    EXPECT_EQ(result.error, store_errc::ok) << result.message;
    return result;
  }

  /// A small bookstore history: a catalog, orders placed, completed and
  /// cancelled, stock moving. Returns the last position.
  global_position seed_history(int orders) {
    append("author-a1", 0, author_created{"a1", "Ursula K. Le Guin"});
    append("bookcategory-c1", 0, category_created{"c1", "Fantasy"});
    append("publisher-p1", 0, publisher_created{"p1", "Parnassus"});
    append("book-b1", 0,
           book_created{"b1", "Earthsea", "wizards", 1500, std::nullopt, "c1", "p1", {"a1"}, 1000});
    append("book-b2", 0,
           book_created{"b2", "Dispossessed", "", 1800, 1600, "c1", "p1", {"a1"}, 500});
    std::int64_t book_version = 1;
    global_position last;
    for (int i = 0; i < orders; ++i) {
      auto id = "o" + std::to_string(i);
      auto buyer = "u" + std::to_string(i % 7);
      std::vector<order_item> items{{"b1", 1 + i % 3, 1500}, {"b2", 1, 1800}};
      std::int64_t total = (1 + i % 3) * 1500 + 1800;
      append("order-" + id, 0, order_placed{id, buyer, items, total, 1000 + i});
      append("book-b1", book_version++, stock_reserved{"b1", id, 1 + i % 3});
      if (i % 4 == 3) {
        append("order-" + id, 1, order_cancelled{id, buyer, "changed mind", 2000 + i});
        last = append("book-b1", book_version++, stock_released{"b1", id, 1 + i % 3}).last_position;
      } else {
        append("order-" + id, 1, order_completed{id, buyer, items, total, 2000 + i});
        last =
            append("book-b1", book_version++, stock_committed{"b1", id, 1 + i % 3}).last_position;
      }
    }
    return last;
  }

  std::map<std::string, std::vector<std::string>> dump(const projection_definition& def) {
    postgres::view_store vs(url);
    std::map<std::string, std::vector<std::string>> out;
    for (const auto& t : def.tables) out[t.name] = vs.dump(t);
    return out;
  }

  std::int64_t count(const std::string& sql) {
    postgres::view_store vs(url);
    return vs.scalar(sql);
  }

  /// Each projector's live view equals a rebuild of it from the log.
  void expect_equal_to_rebuilds(std::initializer_list<projector*> projectors) {
    for (auto* p : projectors) {
      auto live = dump(p->definition());
      rebuild_options r;
      r.postgres_url = url;
      ASSERT_TRUE(rebuild_projection(p->definition(), *store, r).swapped);
      EXPECT_EQ(dump(p->definition()), live) << p->definition().name << " differs from a rebuild";
    }
  }

  /// `o` with a crash before the third commit it would make.
  static projector_options crashing_at_third_commit(projector_options o) {
    auto commits = std::make_shared<std::atomic<int>>(0);
    o.crash_before_commit = [commits](const std::vector<recorded_event>&) {
      return ++*commits == 3;
    };
    return o;
  }
};

TEST_F(ProjectionTest, LiveViewsFollowTheLogAndEqualARebuild) {
  auto last = seed_history(60);
  start_publisher();
  std::vector<std::unique_ptr<projector>> projectors;
  for (auto& def : bookstore_projections()) {
    projectors.push_back(std::make_unique<projector>(std::move(def), store, projector_settings()));
    projectors.back()->start();
  }
  for (auto& p : projectors)
    ASSERT_TRUE(p->wait_until(last, std::chrono::seconds{30}))
        << p->definition().name << " stopped at " << p->status().position << ": "
        << p->status().stalled;

  EXPECT_EQ(count("SELECT count(*) FROM troupe_views.order_summary WHERE status = 'completed'"),
            45);
  EXPECT_EQ(count("SELECT count(*) FROM troupe_views.order_summary WHERE status = 'cancelled'"),
            15);
  EXPECT_EQ(count("SELECT count(*) FROM troupe_views.orders_by_buyer WHERE buyer_id = 'u0'"), 9);
  // b1: 1000 initial; completed orders took 1..3 each, cancelled gave back.
  std::int64_t sold = 0;
  for (int i = 0; i < 60; ++i)
    if (i % 4 != 3) sold += 1 + i % 3;
  EXPECT_EQ(count("SELECT stock FROM troupe_views.book_catalog WHERE book_id = 'b1'"), 1000 - sold);
  EXPECT_EQ(count("SELECT sold FROM troupe_views.book_catalog WHERE book_id = 'b1'"), sold);
  EXPECT_EQ(count("SELECT reserved FROM troupe_views.book_catalog WHERE book_id = 'b1'"), 0);
  EXPECT_EQ(count("SELECT units FROM troupe_views.sales_by_book WHERE book_id = 'b1'"), sold);
  EXPECT_EQ(count("SELECT count(*) FROM troupe_views.book_catalog_view WHERE "
                  "author_names = '[\"Ursula K. Le Guin\"]'::jsonb AND category_name = 'Fantasy'"),
            2);

  // Read-your-writes: a query waits for its position, or says it timed out.
  auto next = append("order-late", 0, order_placed{"late", "u1", {{"b1", 1, 1500}}, 1500, 9});
  EXPECT_TRUE(projectors[0]->wait_until(next.last_position, std::chrono::seconds{30}));
  EXPECT_EQ(count("SELECT count(*) FROM troupe_views.order_summary WHERE order_id = 'late'"), 1);
  EXPECT_FALSE(projectors[0]->wait_until(global_position{next.last_position.value + 1000},
                                         std::chrono::milliseconds{200}));
  for (auto& p : projectors)
    ASSERT_TRUE(p->wait_until(next.last_position, std::chrono::seconds{30}));

  for (auto& p : projectors) {
    auto before = dump(p->definition());
    p->stop();
    rebuild_options o;
    o.postgres_url = url;
    o.batch_size = 50;
    auto report = rebuild_projection(p->definition(), *store, o);
    EXPECT_TRUE(report.swapped);
    EXPECT_EQ(report.position, next.last_position.value);
    EXPECT_EQ(dump(p->definition()), before) << p->definition().name << " differs from a rebuild";
  }
  EXPECT_EQ(count("SELECT count(*) FROM troupe_views.book_catalog_view"), 2)
      << "the SQL view must be back over the swapped tables";
}

// A batch's statements go to PostgreSQL as one string with the arrays as
// quoted literals: every character a projection may write must come back
// as written, and a refused row must undo the whole batch.
TEST_F(ProjectionTest, AViewBatchWritesAwkwardTextExactlyAndFailsAsAWhole) {
  // pairs first: its statements run before awkward's in a batch.
  std::vector<view::table> tables{view::table{"pairs", {{"a"}, {"b"}, {"note"}}, 2},
                                  view::table{"awkward",
                                              {{"id"},
                                               {"label"},
                                               {"doc", view::column_type::jsonb},
                                               {"n", view::column_type::bigint}}}};
  const std::vector<std::string> labels{
      "it's", "back\\slash", "\"quoted\"", "{braces}",  "a,b",      "NULL",
      "",     "ünï ☃",       "tab\there",  "new\nline", "$1::text", "'; DROP TABLE x; --"};
  postgres::view_store vs(url);
  vs.exec(vs.ddl(tables, {}, postgres::view_store::live_schema));
  vs.exec("BEGIN");
  view::view_changes changes(tables);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    auto id = "k" + std::to_string(i) + labels[i];
    changes.upsert(1, {id}, {{"label", labels[i]}, {"doc", R"({"s": "x'y\\z"})"}});
    changes.increment(1, {id}, {{"n", static_cast<std::int64_t>(i)}});
    changes.upsert(0, {labels[i], "b" + labels[i]}, {{"note", labels[i]}});
  }
  vs.write(changes);
  vs.exec("COMMIT");

  std::vector<std::string> expected;
  for (std::size_t i = 0; i < labels.size(); ++i)
    expected.push_back("k" + std::to_string(i) + labels[i] + "|" + labels[i] +
                       R"(|{"s": "x'y\\z"}|)" + std::to_string(i));
  std::sort(expected.begin(), expected.end());
  auto rows = vs.dump(tables[1]);
  std::sort(rows.begin(), rows.end());
  EXPECT_EQ(rows, expected);
  EXPECT_EQ(vs.dump(tables[0]).size(), labels.size());
  EXPECT_EQ(count("SELECT count(*) FROM troupe_views.pairs WHERE a = note AND b = 'b' || a"),
            static_cast<std::int64_t>(labels.size()));

  // A deletion and an upsert, then a row PostgreSQL refuses (bad JSON), in
  // one batch: nothing of it stays.
  vs.exec("BEGIN");
  view::view_changes bad(tables);
  bad.remove(0, {labels[0], "b" + labels[0]});
  bad.upsert(0, {"fresh", "row"}, {{"note", "x"}});
  bad.upsert(1, {"broken"}, {{"doc", "{not json"}});
  EXPECT_THROW(vs.write(bad), postgres::pg_error);
  vs.rollback();
  EXPECT_EQ(vs.dump(tables[0]).size(), labels.size());
  EXPECT_EQ(count("SELECT count(*) FROM troupe_views.pairs WHERE a = 'fresh'"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM troupe_views.awkward WHERE id = 'broken'"), 0);
}

TEST_F(ProjectionTest, AViewTableKeepsItsFillfactorAndABadOneIsRefused) {
  postgres::view_store vs(url);
  std::vector<view::table> tables{view::table{"roomy", {{"id"}, {"status"}}, 1, {}, 70},
                                  view::table{"packed", {{"id"}, {"status"}}}};
  vs.exec(vs.ddl(tables, {}, postgres::view_store::live_schema));
  auto options = [&](const std::string& table) {
    return count(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'troupe_views' AND c.relname = '" +
        table + "' AND 'fillfactor=70' = ANY(c.reloptions)");
  };
  EXPECT_EQ(options("roomy"), 1);
  EXPECT_EQ(options("packed"), 0);
  // A table created before its definition asked for room gets it too.
  tables[1].fillfactor = 70;
  vs.exec(vs.ddl(tables, {}, postgres::view_store::live_schema));
  EXPECT_EQ(options("packed"), 1);
  tables[0].fillfactor = 5;
  try {
    vs.ddl(tables, {}, postgres::view_store::live_schema);
    ADD_FAILURE() << "a fillfactor of 5 was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'roomy': fillfactor 5 is outside 10..100"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(ProjectionTest, AGapInTheStreamIsFilledFromTheLogAndLateDuplicatesAreSkipped) {
  auto def = order_summary_projection();
  std::vector<append_result> placed;
  for (int i = 0; i < 5; ++i) {
    auto id = "g" + std::to_string(i);
    placed.push_back(append("order-" + id, 0, order_placed{id, "u", {{"b", 1, 100}}, 100, i}));
  }
  // Publish by hand: events 0, 1, 4 first (4 names 3 as its predecessor),
  // then the late 2 and 3, as a failed publisher round would.
  auto events = sync::read_all(*store, global_position{0}, 100).events;
  ASSERT_EQ(events.size(), 5u);
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&nc, integration::required_env("TROUPE_NATS_URL").c_str()),
            NATS_OK);
  ASSERT_EQ(natsConnection_JetStream(&js, nc, nullptr), NATS_OK);
  jsStreamConfig config;
  jsStreamConfig_Init(&config);
  auto wildcard = prefix + ".>";
  const char* subjects[] = {wildcard.c_str()};
  config.Name = stream.c_str();
  config.Subjects = subjects;
  config.SubjectsLen = 1;
  ASSERT_EQ(js_AddStream(nullptr, js, &config, nullptr, nullptr), NATS_OK);
  auto publish = [&](std::size_t i) {
    natsMsg* msg = nullptr;
    const auto& e = events[i];
    auto subject = event_publisher::subject_of(prefix, e);
    ASSERT_EQ(natsMsg_Create(&msg, subject.c_str(), nullptr, e.data.data(),
                             static_cast<int>(e.data.size())),
              NATS_OK);
    natsMsgHeader_Set(msg, "ce-id", e.event_id.c_str());
    natsMsgHeader_Set(msg, "ce-subject", e.stream_id.c_str());
    natsMsgHeader_Set(msg, "ce-type", e.type.c_str());
    natsMsgHeader_Set(msg, "troupe-position", std::to_string(e.position.value).c_str());
    natsMsgHeader_Set(msg, "troupe-stream-version", std::to_string(e.version.value).c_str());
    natsMsgHeader_Set(msg, "troupe-schema-version", "1");
    auto previous = i == 0 ? 0 : events[i - 1].position.value;
    natsMsgHeader_Set(msg, "troupe-previous-position", std::to_string(previous).c_str());
    ASSERT_EQ(js_PublishMsg(nullptr, js, msg, nullptr, nullptr), NATS_OK);
    natsMsg_Destroy(msg);
  };
  for (auto i : {0, 1, 4, 2, 3}) publish(static_cast<std::size_t>(i));
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);

  projector p(def, store, projector_settings());
  p.start();
  ASSERT_TRUE(p.wait_until(events.back().position, std::chrono::seconds{30})) << p.status().stalled;
  EXPECT_TRUE(eventually([&] { return p.status().duplicates == 2; })) << p.status().duplicates;
  EXPECT_EQ(p.status().gap_filled, 2);
  EXPECT_EQ(count("SELECT count(*) FROM troupe_views.order_summary"), 5);
}

TEST_F(ProjectionTest, APoisonEventIsParkedAfterItsRetriesAndTheRestApplies) {
  auto def = order_summary_projection();
  append("order-ok1", 0, order_placed{"ok1", "u", {{"b", 1, 100}}, 100, 1});
  auto bad = append_raw("order-bad", 0, "order_placed", 1, R"({"order_id": 42})");
  auto last = append("order-ok2", 0, order_placed{"ok2", "u", {{"b", 1, 100}}, 100, 2});
  start_publisher();
  auto o = projector_settings();
  o.max_attempts = 3;
  projector p(def, store, o);
  p.start();
  ASSERT_TRUE(p.wait_until(last.last_position, std::chrono::seconds{30})) << p.status().stalled;
  EXPECT_EQ(p.status().dead_letters, 1);
  EXPECT_EQ(count("SELECT count(*) FROM troupe_views.order_summary"), 2);

  postgres::view_store vs(url);
  auto letters = vs.dead_letters(projector::checkpoint_name("order_summary"));
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].event.position, bad.last_position);
  EXPECT_EQ(letters[0].event.data, R"({"order_id": 42})");
  EXPECT_EQ(letters[0].attempts, 3);
  EXPECT_NE(letters[0].error.find("order_placed"), std::string::npos) << letters[0].error;
  // Still poison: a replay says why and leaves it parked.
  EXPECT_THROW(replay_dead_letter(def, url, letters[0].id), std::runtime_error);
  EXPECT_TRUE(vs.dead_letter_by_id(letters[0].id)->replayed_at.empty());
  EXPECT_THROW(replay_dead_letter(sales_by_book_projection(), url, letters[0].id),
               std::runtime_error);
}

TEST_F(ProjectionTest, GroupedProjectorsParkAPoisonEventEachInTheirSharedTransaction) {
  append("order-ok1", 0, order_placed{"ok1", "u", {{"b", 1, 100}}, 100, 1});
  auto bad = append_raw("order-bad", 0, "order_placed", 1, R"({"order_id": 42})");
  auto last = append("order-ok2", 0, order_placed{"ok2", "u", {{"b", 1, 100}}, 100, 2});
  start_publisher();
  auto o = projector_settings();
  o.max_attempts = 2;
  projector orders(order_summary_projection(), store, o);
  projector by_buyer(orders_by_buyer_projection(), store, o);
  projector sales(sales_by_book_projection(), store, o);  // has no use for order_placed
  projector_group group({&orders, &by_buyer, &sales}, o);
  group.start();
  for (auto* p : {&orders, &by_buyer, &sales})
    ASSERT_TRUE(p->wait_until(last.last_position, std::chrono::seconds{30}))
        << p->definition().name << ": " << p->status().stalled;
  group.stop();
  EXPECT_EQ(count("SELECT count(*) FROM troupe_views.order_summary"), 2);
  postgres::view_store vs(url);
  EXPECT_EQ(sales.status().dead_letters, 0);
  for (auto* p : {&orders, &by_buyer}) {
    EXPECT_EQ(p->status().dead_letters, 1) << p->definition().name;
    auto letters = vs.dead_letters(projector::checkpoint_name(p->definition().name));
    ASSERT_EQ(letters.size(), 1u) << p->definition().name;
    EXPECT_EQ(letters[0].event.position, bad.last_position);
    EXPECT_EQ(letters[0].attempts, 2);
  }
}

TEST_F(ProjectionTest, AProjectorKilledMidBatchResumesAndEqualsARebuild) {
  auto last = seed_history(40);
  start_publisher();
  auto def = book_catalog_projection();
  auto o = projector_settings();
  o.subscription.max_in_flight = 25;
  std::atomic<int> batches{0};
  o.crash_before_commit = [&](const std::vector<recorded_event>&) { return ++batches == 3; };
  auto first = std::make_unique<projector>(def, store, o);
  first->start();
  ASSERT_TRUE(eventually([&] { return !first->status().running; }));
  auto crashed_at = first->status().position;
  EXPECT_LT(crashed_at, last.value);
  first.reset();

  auto second = std::make_unique<projector>(def, store, projector_settings());
  second->start();
  ASSERT_TRUE(second->wait_until(last, std::chrono::seconds{30})) << second->status().stalled;
  auto live = dump(def);
  second->stop();
  rebuild_options r;
  r.postgres_url = url;
  ASSERT_TRUE(rebuild_projection(def, *store, r).swapped);
  EXPECT_EQ(dump(def), live);
}

TEST_F(ProjectionTest, ProjectorsSharingAConsumerStayExactlyOnceThroughACrashAndALateMember) {
  auto last = seed_history(40);
  start_publisher();
  auto o = projector_settings();
  o.subscription.max_in_flight = 25;
  // The second member dies before committing the third batch, after the
  // first member committed it: redelivered, the first must skip it.
  auto crashing = crashing_at_third_commit(o);
  {
    projector books(book_catalog_projection(), store, o);
    projector orders(order_summary_projection(), store, crashing);
    // Member by member (the path every error falls back to): the crash
    // can fall between two members' commits.
    auto separate = o;
    separate.shared_transaction = false;
    projector_group group({&books, &orders}, separate);
    group.start();
    ASSERT_TRUE(eventually([&] { return !orders.status().running; }));
    // The shared subscription ends a moment after the crash is flagged.
    EXPECT_TRUE(eventually([&] { return !books.status().running; }))
        << "the members share one subscription";
    EXPECT_LT(orders.status().position, books.status().position);
    group.stop();
  }

  // Restarted from the same consumer, with a third member that joins late:
  // its checkpoint is behind the consumer, so it fills from the log - in
  // chunks of at most 2 x max_in_flight events (20 here) per transaction.
  o.subscription.max_in_flight = 10;
  projector books(book_catalog_projection(), store, o);
  projector orders(order_summary_projection(), store, o);
  projector sales(sales_by_book_projection(), store, o);
  projector_group group({&books, &orders, &sales}, o);
  group.start();
  for (auto* p : {&books, &orders, &sales}) {
    ASSERT_TRUE(p->wait_until(last, std::chrono::seconds{30}))
        << p->definition().name << ": " << p->status().stalled;
    EXPECT_TRUE(p->status().running);
  }
  // The batch the crash lost comes back after its ack wait, or (usually)
  // later batches come first and the member that missed it reads it from
  // the log; either way the member that has it never applies it twice
  // (the rebuild comparison below).
  EXPECT_GT(orders.status().gap_filled + books.status().duplicates, 0)
      << "the lost batch was neither read from the log nor redelivered";
  EXPECT_GT(sales.status().gap_filled, 20) << "the late member read what it missed";
  EXPECT_GT(sales.status().batches, books.status().batches)
      << "its long gap took more than one transaction";
  group.stop();
  expect_equal_to_rebuilds({&books, &orders, &sales});
}

TEST_F(ProjectionTest, GroupedProjectorsCommitEachBatchTogetherSoACrashTakesItFromAll) {
  auto last = seed_history(40);
  start_publisher();
  auto o = projector_settings();
  o.subscription.max_in_flight = 25;
  auto crashing = crashing_at_third_commit(o);
  {
    projector books(book_catalog_projection(), store, o);
    projector orders(order_summary_projection(), store, crashing);
    projector_group group({&books, &orders}, o);
    group.start();
    ASSERT_TRUE(eventually([&] { return !orders.status().running; }));
    group.stop();
    EXPECT_GE(books.status().batches, 2);
    EXPECT_LT(books.status().position, last.value);
    // One transaction per batch: the crash before its commit took the
    // third batch from both members, not only from the one that crashed.
    EXPECT_EQ(books.status().position, orders.status().position);
  }
  projector books(book_catalog_projection(), store, o);
  projector orders(order_summary_projection(), store, o);
  projector_group group({&books, &orders}, o);
  group.start();
  for (auto* p : {&books, &orders})
    ASSERT_TRUE(p->wait_until(last, std::chrono::seconds{30}))
        << p->definition().name << ": " << p->status().stalled;
  group.stop();
  expect_equal_to_rebuilds({&books, &orders});
}

TEST_F(ProjectionTest, AnInterruptedRebuildResumesWhileTheOldViewKeepsServing) {
  auto last = seed_history(30);
  auto def = order_summary_projection();
  start_publisher();
  projector p(def, store, projector_settings());
  p.start();
  ASSERT_TRUE(p.wait_until(last, std::chrono::seconds{30}));
  auto live = dump(def);

  rebuild_options o;
  o.postgres_url = url;
  o.batch_size = 20;
  std::vector<rebuild_progress> seen;
  o.progress = [&](const rebuild_progress& progress) { seen.push_back(progress); };
  o.interrupt = [](const rebuild_progress&) { return true; };
  auto first = rebuild_projection(def, *store, o);
  EXPECT_FALSE(first.swapped);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].events_done, 20);
  EXPECT_GT(seen[0].head, seen[0].position);
  EXPECT_EQ(dump(def), live) << "the live view serves unchanged during a rebuild";
  EXPECT_EQ(count("SELECT count(*) FROM troupe_rebuild_order_summary.order_summary"), 4)
      << "the first 20 events are 5 of the catalog and 15 of orders, 4 events per order";

  // The live projector goes on meanwhile; the resumed rebuild catches up
  // and swaps.
  auto more = append("order-extra", 0, order_placed{"extra", "u9", {{"b1", 1, 1500}}, 1500, 7});
  ASSERT_TRUE(p.wait_until(more.last_position, std::chrono::seconds{30}));
  o.interrupt = nullptr;
  seen.clear();
  auto second = rebuild_projection(def, *store, o);
  EXPECT_TRUE(second.resumed);
  EXPECT_TRUE(second.swapped);
  EXPECT_EQ(second.events, count("SELECT count(*) FROM troupe_events") - 20)
      << "the resumed rebuild reads only what the first run had not";
  EXPECT_FALSE(seen.empty());
  auto after = dump(def);
  EXPECT_EQ(after.at("order_summary").size(), live.at("order_summary").size() + 1);

  // The projector continues on the swapped tables.
  auto later = append("order-later", 0, order_placed{"later", "u9", {{"b1", 1, 1500}}, 1500, 8});
  ASSERT_TRUE(p.wait_until(later.last_position, std::chrono::seconds{30})) << p.status().stalled;
  EXPECT_EQ(count("SELECT count(*) FROM troupe_views.order_summary WHERE order_id = 'later'"), 1);
}

TEST_F(ProjectionTest, ANodeKilledWhileProjectingCatchesUpAfterRestartAndEqualsARebuild) {
  auto last = seed_history(600);
  std::vector<std::string> sets{
      "postgres.url=" + url, "nats.url=" + integration::required_env("TROUPE_NATS_URL"),
      "publisher.stream=" + stream, "publisher.subject_prefix=" + prefix,
      "projections.consumer_prefix=node-" + run + "-", "projections.batch_size=10",
      // No sagas: they would append events after the seeded ones,
      // and the views must be compared with a rebuild at the same
      // position.
      "sagas.enabled=false", "log.level=warn"};
  auto lowest_view = [&] {
    return count(
        "SELECT coalesce(min(position), 0) FROM troupe_checkpoints WHERE name LIKE "
        "'projection:%' AND name NOT LIKE '%:rebuild%'");
  };
  auto views_started = [&] {
    return count(
        "SELECT count(*) FROM troupe_checkpoints WHERE name LIKE 'projection:%' AND "
        "position > 0");
  };
  pid_t node = integration::start_serve(sets);
  ASSERT_GT(node, 0);
  ASSERT_TRUE(eventually([&] { return views_started() >= 1; }));
  ASSERT_EQ(kill(node, SIGKILL), 0);
  int status = 0;
  waitpid(node, &status, 0);
  auto at_kill = lowest_view();
  EXPECT_LT(at_kill, last.value) << "every view was done before the kill; the test proved little";

  node = integration::start_serve(sets);
  ASSERT_GT(node, 0);
  EXPECT_TRUE(eventually([&] {
    return views_started() == static_cast<std::int64_t>(bookstore_projections().size()) &&
           lowest_view() >= last.value;
  })) << "views at "
      << lowest_view() << " of " << last.value;
  kill(node, SIGTERM);
  waitpid(node, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;

  for (const auto& def : bookstore_projections()) {
    auto live = dump(def);
    rebuild_options o;
    o.postgres_url = url;
    ASSERT_TRUE(rebuild_projection(def, *store, o).swapped);
    EXPECT_EQ(dump(def), live) << def.name << " differs from a rebuild after the kill";
  }
}

TEST_F(ProjectionTest, ANatsServerRestartWhileProjectingLosesNothing) {
  start_publisher();
  projector p(order_summary_projection(), store, projector_settings());
  p.start();
  std::atomic<bool> writing{true};
  std::atomic<int> written{0};
  global_position last;
  std::thread writer([&] {
    for (int i = 0; writing || i < 50; ++i) {
      auto id = "n" + std::to_string(i);
      last = append("order-" + id, 0, order_placed{id, "u", {{"b", 1, 100}}, 100, i}).last_position;
      ++written;
      std::this_thread::sleep_for(std::chrono::milliseconds{2});
    }
  });
  ASSERT_TRUE(eventually([&] { return p.status().position > 0; }));
  ASSERT_TRUE(integration::services("stop nats"));
  std::this_thread::sleep_for(std::chrono::milliseconds{300});
  ASSERT_TRUE(integration::services("start nats"));
  std::this_thread::sleep_for(std::chrono::milliseconds{300});
  writing = false;
  writer.join();
  EXPECT_TRUE(p.wait_until(last, std::chrono::seconds{60}))
      << "at " << p.status().position << " of " << last.value << ": " << p.status().stalled;
  EXPECT_EQ(count("SELECT count(*) FROM troupe_views.order_summary"), written.load());
}

TEST_F(ProjectionTest, ASubscriptionRetriesWithBackoffThenParksAndNeverLoops) {
  std::vector<append_result> appended;
  for (int i = 0; i < 6; ++i)
    appended.push_back(append("order-s" + std::to_string(i), 0,
                              order_placed{"s" + std::to_string(i), "u", {{"b", 1, 100}}, 100, i}));
  start_publisher();
  auto poison = appended[2].last_position;
  subscription_options o;
  o.nats_url = integration::required_env("TROUPE_NATS_URL");
  o.stream = stream;
  o.durable = "sub-" + run;
  o.max_attempts = 3;
  o.backoff_base = std::chrono::milliseconds{50};
  o.fetch_wait = std::chrono::milliseconds{50};
  std::mutex mutex;
  std::map<std::int64_t, int> attempts;  // position -> deliveries seen
  std::vector<std::pair<std::int64_t, std::string>> parked;
  subscription sub(
      o,
      [&](std::span<const delivery> batch, std::span<verdict> verdicts) {
        std::lock_guard lock(mutex);
        for (std::size_t i = 0; i < batch.size(); ++i) {
          ++attempts[batch[i].event.position.value];
          if (batch[i].event.position == poison) verdicts[i] = verdict::retry("cannot handle");
        }
      },
      [&](const delivery& d, const std::string& error) {
        std::lock_guard lock(mutex);
        parked.emplace_back(d.event.position.value, error);
        return true;
      });
  sub.start();
  ASSERT_TRUE(eventually([&] { return sub.stats().parked == 1; })) << sub.stats().retried;
  // Give a looping subscription the chance to show itself.
  std::this_thread::sleep_for(std::chrono::milliseconds{500});
  std::lock_guard lock(mutex);
  EXPECT_EQ(attempts[poison.value], 3);
  ASSERT_EQ(parked.size(), 1u);
  EXPECT_EQ(parked[0].first, poison.value);
  EXPECT_NE(parked[0].second.find("cannot handle"), std::string::npos);
  for (const auto& a : appended)
    if (a.last_position != poison) {
      EXPECT_EQ(attempts[a.last_position.value], 1);
    }
  EXPECT_EQ(sub.stats().retried, 2);
  EXPECT_EQ(sub.stats().acked, 6);
}

}  // namespace
}  // namespace troupe
