// Saga hosts against real PostgreSQL and nats-server: events flow store ->
// publisher -> JetStream -> saga host -> commands to the node's aggregates.

#include "runtime/saga_host.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "actors/bookstore.hpp"
#include "actors/sagas.hpp"
#include "persistence/postgres/migrations.hpp"
#include "persistence/postgres/view_store.hpp"
#include "persistence/postgres_event_store.hpp"
#include "persistence/sync.hpp"
#include "pg_env.hpp"
#include "runtime/config.hpp"
#include "runtime/publisher.hpp"
#include "tests/support/test_support.hpp"
#include "troupe_process.hpp"

namespace troupe {
namespace {

using namespace bookstore;
using test_support::unique;

template <class Predicate>
bool eventually(Predicate done, std::chrono::seconds timeout = std::chrono::seconds{60}) {
  return test_support::eventually(done, timeout);
}

class SagaTest : public ::testing::Test {
 protected:
  std::string run = unique("s");
  integration::scoped_database db{"troupe_test_" + run};
  std::string stream = "TROUPE_TEST_" + run;
  std::shared_ptr<postgres_event_store> store;
  std::unique_ptr<node> n;
  std::unique_ptr<event_publisher> publisher;

  void SetUp() override {
    postgres::migrate(db.url);
    postgres_store_options o;
    o.url = db.url;
    store = std::make_shared<postgres_event_store>(std::move(o));
    start_node();
    publisher_options po;
    po.nats_url = integration::required_env("TROUPE_NATS_URL");
    po.stream_name = stream;
    po.subject_prefix = "troupetest" + run + ".events";
    po.poll_interval = std::chrono::milliseconds{5};
    publisher = std::make_unique<event_publisher>(store, po);
    publisher->start();
  }

  void TearDown() override {
    publisher.reset();
    n.reset();
    store.reset();
    integration::delete_jetstream_stream(stream);
  }

  void start_node() {
    n = std::make_unique<node>(config::defaults(), store);
    n->register_aggregates<bookstore_aggregates>();
    n->start();
  }

  saga_host_options host_options(saga_settings settings = {}) {
    saga_host_options o;
    o.postgres_url = db.url;
    o.subscription.nats_url = integration::required_env("TROUPE_NATS_URL");
    o.subscription.stream = stream;
    o.subscription.max_in_flight = 500;
    o.subscription.fetch_wait = std::chrono::milliseconds{50};
    o.consumer_prefix = "saga-" + run + "-";
    o.subject_prefix = "troupetest" + run + ".events";  // consume the saga's category only
    o.settings = settings;
    return o;
  }

  void create_book(const std::string& id, std::int64_t stock) {
    auto r = n->execute<book>(
        id,
        bookstore::create_book{id, "Book " + id, "", 1000, std::nullopt, "c", "p", {"a"}, stock});
    ASSERT_TRUE(r.ok()) << r.reason.message;
  }

  void open_account(const std::string& buyer, std::int64_t limit) {
    auto r = n->execute<finance_account>(buyer, bookstore::open_account{buyer, limit});
    ASSERT_TRUE(r.ok()) << r.reason.message;
  }

  /// The stream's events folded into counts by type.
  std::map<std::string, std::int64_t> count_types(const std::string& stream_id) {
    std::map<std::string, std::int64_t> out;
    for (const auto& e : sync::read_stream(*store, stream_id).events) ++out[e.type];
    return out;
  }

  std::string last_type(const std::string& stream_id) {
    auto events = sync::read_stream(*store, stream_id).events;
    return events.empty() ? "" : events.back().type;
  }

  /// An order of one copy each of b1, b2 and b3: five parallel steps in the
  /// fulfilment's first round (three reservations, the payment, the basket).
  /// Placed from the buyer's basket, saved first (its clearing then
  /// accepted, as the other steps), unless `with_basket` is false (the
  /// basket gone by then: its clearing refused).
  void place_three_book_order(const std::string& order_id, const std::string& buyer,
                              bool with_basket = true) {
    if (with_basket) {
      auto saved = n->execute<basket>(buyer, save_basket{buyer, {{"b1", 1}, {"b2", 1}, {"b3", 1}}});
      ASSERT_TRUE(saved.ok()) << saved.reason.message;
    }
    auto placed =
        n->execute<order>(order_id, place_order{order_id,
                                                buyer,
                                                {{"b1", 1, 500}, {"b2", 1, 500}, {"b3", 1, 500}},
                                                1,
                                                /*from_basket=*/true});
    ASSERT_TRUE(placed.ok()) << placed.reason.message;
  }

  /// The three-book order completed, and every effect of its fulfilment
  /// happened exactly once.
  void expect_fulfilled_once(const std::string& order_id) {
    EXPECT_EQ(count_types("order-" + order_id)["order_completed"], 1);
    for (auto id : {"book-b1", "book-b2", "book-b3"}) {
      auto types = count_types(id);
      EXPECT_EQ(types["stock_reserved"], 1) << id;
      EXPECT_EQ(types["stock_committed"], 1) << id;
    }
    EXPECT_EQ(count_types("finance-u1")["payment_authorised"], 1);
    EXPECT_EQ(count_types("finance-u1")["payment_captured"], 1);
    EXPECT_EQ(count_types("basket-u1")["basket_deleted"], 1);
  }
};

/// Passes everything to the store underneath, except appends to a stream
/// expecting a version set by hold(): those wait until release() (or for
/// ever, when never released); and appends of an event type set by
/// refuse(), answered as invalid input.
class holding_store : public event_store {
 public:
  explicit holding_store(std::shared_ptr<event_store> inner) : inner_(std::move(inner)) {}

  void hold(const std::string& stream_id, std::int64_t expected) {
    std::lock_guard lock(mutex_);
    holds_.insert({stream_id, expected});
  }
  void release(const std::string& stream_id, std::int64_t expected) {
    std::vector<held_append> go;
    {
      std::lock_guard lock(mutex_);
      holds_.erase({stream_id, expected});
      for (auto it = held_.begin(); it != held_.end();) {
        if (it->request.stream_id == stream_id &&
            it->request.expected.version().value == expected) {
          go.push_back(std::move(*it));
          it = held_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& h : go) inner_->append(std::move(h.request), std::move(h.done));
  }
  bool holding(const std::string& stream_id, std::int64_t expected) const {
    std::lock_guard lock(mutex_);
    return std::any_of(held_.begin(), held_.end(), [&](const held_append& h) {
      return h.request.stream_id == stream_id && h.request.expected.version().value == expected;
    });
  }

  void refuse(std::string event_type) {
    std::lock_guard lock(mutex_);
    refused_type_ = std::move(event_type);
  }

  void append(append_request request, append_callback done) override {
    {
      std::lock_guard lock(mutex_);
      if (!refused_type_.empty() &&
          std::any_of(request.events.begin(), request.events.end(),
                      [&](const new_event& e) { return e.type == refused_type_; })) {
        append_result refused;
        refused.error = store_errc::invalid_input;
        refused.message = refused_type_ + " refused by the test";
        done(std::move(refused));
        return;
      }
      if (request.expected.which() == expected_version::kind::exact &&
          holds_.contains({request.stream_id, request.expected.version().value})) {
        held_.push_back({std::move(request), std::move(done)});
        return;
      }
    }
    inner_->append(std::move(request), std::move(done));
  }
  void read_stream(std::string stream_id, stream_version from, std::size_t max_count,
                   read_callback done) override {
    inner_->read_stream(std::move(stream_id), from, max_count, std::move(done));
  }
  void read_all(global_position after, std::size_t max_count, read_callback done) override {
    inner_->read_all(after, max_count, std::move(done));
  }
  void load_snapshot(std::string stream_id, snapshot_callback done) override {
    inner_->load_snapshot(std::move(stream_id), std::move(done));
  }
  void save_snapshot(snapshot_record snapshot, done_callback done) override {
    inner_->save_snapshot(std::move(snapshot), std::move(done));
  }
  void load_checkpoint(std::string name, checkpoint_callback done) override {
    inner_->load_checkpoint(std::move(name), std::move(done));
  }
  void save_checkpoint(std::string name, global_position position, done_callback done) override {
    inner_->save_checkpoint(std::move(name), position, std::move(done));
  }

 private:
  struct held_append {
    append_request request;
    append_callback done;
  };
  std::shared_ptr<event_store> inner_;
  mutable std::mutex mutex_;
  std::set<std::pair<std::string, std::int64_t>> holds_;
  std::vector<held_append> held_;
  std::string refused_type_;
};

/// Order-fulfilment sagas that reached an end (completed or cancelled).
std::int64_t finished_fulfilments(postgres::saga_registry& registry) {
  std::int64_t done = 0;
  for (const auto& [status, count] : registry.by_status(order_fulfilment::name))
    if (status == "completed" || status == "cancelled") done += count;
  return done;
}

TEST_F(SagaTest, AThousandOrdersForScarceStockNeverOversell) {
  constexpr int orders = 1000;
  constexpr std::int64_t scarce = 100;
  create_book("scarce", scarce);
  create_book("plenty", 100000);
  for (int b = 0; b < 50; ++b) open_account("u" + std::to_string(b), 1'000'000'000);
  saga_host<order_fulfilment> host(*n, store, host_options());
  host.start();

  std::atomic<int> placed{0};
  for (int i = 0; i < orders; ++i) {
    auto id = "o" + std::to_string(i);
    n->submit(node::make_envelope<order>(id, place_order{id,
                                                         "u" + std::to_string(i % 50),
                                                         {{"scarce", 1, 1000}, {"plenty", 2, 1000}},
                                                         i}),
              [&](command_result r) {
                if (r.ok()) ++placed;
              });
  }
  ASSERT_TRUE(eventually([&] { return placed.load() == orders; }));
  ASSERT_TRUE(
      eventually([&] { return host.stats().finished == orders; }, std::chrono::seconds{240}))
      << "finished " << host.stats().finished << " of " << orders;

  int completed = 0, cancelled = 0;
  for (int i = 0; i < orders; ++i) {
    auto last = last_type("order-o" + std::to_string(i));
    completed += last == "order_completed";
    cancelled += last == "order_cancelled";
  }
  EXPECT_EQ(completed + cancelled, orders);
  EXPECT_EQ(completed, scarce) << "every unit of the scarce book sells, and no more";
  auto scarce_events = count_types("book-scarce");
  EXPECT_EQ(scarce_events["stock_committed"], scarce);
  EXPECT_EQ(scarce_events["stock_reserved"] - scarce_events["stock_released"] -
                scarce_events["stock_committed"],
            0)
      << "reserved stock equals stock consumed by completed orders";
  auto plenty_events = count_types("book-plenty");
  EXPECT_EQ(plenty_events["stock_committed"], scarce);
  EXPECT_EQ(plenty_events["stock_reserved"],
            plenty_events["stock_released"] + plenty_events["stock_committed"]);
  auto stats = host.stats();
  EXPECT_EQ(stats.dead_letters, 0);
  EXPECT_EQ(stats.started, orders);
  EXPECT_TRUE(eventually([&] { return host.stats().live_instances == 0; }))
      << host.stats().live_instances << " finished instances still in memory";
  host.stop();
}

// A saga split into partitions (as a cluster runs it): each host reads the
// saga's events through its own consumer and runs only its partition's
// instances, so every saga runs exactly once and both partitions do work.
TEST_F(SagaTest, PartitionedHostsRunEachInstanceExactlyOnce) {
  create_book("b1", 100000);
  for (int b = 0; b < 10; ++b) open_account("u" + std::to_string(b), 1'000'000'000);
  std::vector<std::unique_ptr<saga_host<order_fulfilment>>> hosts;
  for (int p = 0; p < 2; ++p) {
    auto o = host_options();
    o.partition = p;
    o.partitions = 2;
    hosts.push_back(std::make_unique<saga_host<order_fulfilment>>(*n, store, o));
    hosts.back()->start();
  }
  constexpr int orders = 200;
  for (int i = 0; i < orders; ++i) {
    auto id = "p" + std::to_string(i);
    n->submit(node::make_envelope<order>(
                  id, place_order{id, "u" + std::to_string(i % 10), {{"b1", 1, 500}}, i}),
              [](command_result) {});
  }
  auto finished = [&] { return hosts[0]->stats().finished + hosts[1]->stats().finished; };
  ASSERT_TRUE(eventually([&] { return finished() == orders; }, std::chrono::seconds{120}))
      << finished() << " of " << orders << " sagas finished";
  EXPECT_GT(hosts[0]->stats().started, 0);
  EXPECT_GT(hosts[1]->stats().started, 0);
  EXPECT_EQ(hosts[0]->stats().started + hosts[1]->stats().started, orders);
  for (int i = 0; i < orders; ++i)
    EXPECT_EQ(last_type("order-p" + std::to_string(i)), "order_completed") << i;
  EXPECT_EQ(count_types("book-b1")["stock_reserved"], orders);
  for (auto& h : hosts) h->stop();
}

TEST_F(SagaTest, AStoppedHostResumesItsSagasExactlyOnce) {
  create_book("b1", 1000);
  for (int b = 0; b < 10; ++b) open_account("u" + std::to_string(b), 1'000'000'000);
  constexpr int orders = 200;
  auto first = std::make_unique<saga_host<order_fulfilment>>(*n, store, host_options());
  first->start();
  for (int i = 0; i < orders; ++i) {
    auto id = "r" + std::to_string(i);
    n->submit(node::make_envelope<order>(
                  id, place_order{id, "u" + std::to_string(i % 10), {{"b1", 1, 500}}, i}),
              [](command_result) {});
  }
  ASSERT_TRUE(eventually([&] { return first->stats().finished >= 20; }));
  first.reset();  // mid-fulfilment: instances open, steps in flight
  auto second = std::make_unique<saga_host<order_fulfilment>>(*n, store, host_options());
  second->start();
  EXPECT_GT(second->stats().recovered, 0);
  postgres::saga_registry registry(db.url);
  auto finished = [&] { return finished_fulfilments(registry); };
  ASSERT_TRUE(eventually([&] { return finished() == orders; }, std::chrono::seconds{120}))
      << finished() << " of " << orders << " sagas finished";
  for (int i = 0; i < orders; ++i)
    EXPECT_EQ(last_type("order-r" + std::to_string(i)), "order_completed") << i;
  // Each order reserved and paid once, however often its steps were sent.
  auto b1 = count_types("book-b1");
  EXPECT_EQ(b1["stock_reserved"], orders);
  EXPECT_EQ(b1["stock_committed"], orders);
  for (int b = 0; b < 10; ++b) {
    auto account = count_types("finance-u" + std::to_string(b));
    EXPECT_EQ(account["payment_authorised"], orders / 10);
    EXPECT_EQ(account["payment_captured"], orders / 10);
  }
}

TEST_F(SagaTest, AFencedHostActsNoMoreAndItsSuccessorFinishesEverySagaOnce) {
  // A cluster node that lost its partition's lease fences its host at once;
  // the host is stopped later (stop may block on the fault that cost the
  // lease) while the next owner already runs the same instances.
  create_book("b1", 1000);
  for (int b = 0; b < 10; ++b) open_account("u" + std::to_string(b), 1'000'000'000);
  constexpr int orders = 200;
  auto o = host_options();
  o.subscription.ack_wait = std::chrono::milliseconds{3000};  // what the fenced host held
  auto first = std::make_unique<saga_host<order_fulfilment>>(*n, store, o);
  first->start();
  for (int i = 0; i < orders; ++i) {
    auto id = "f" + std::to_string(i);
    n->submit(node::make_envelope<order>(
                  id, place_order{id, "u" + std::to_string(i % 10), {{"b1", 1, 500}}, i}),
              [](command_result) {});
  }
  ASSERT_TRUE(eventually([&] { return first->stats().finished >= 20; }));
  first->fence();
  std::this_thread::sleep_for(std::chrono::milliseconds{300});  // what it was dispatching
  auto fenced = first->stats();
  ASSERT_LT(fenced.finished, orders) << "nothing left to prove the fence on";
  saga_host<order_fulfilment> second(*n, store, o);
  second.start();
  postgres::saga_registry registry(db.url);
  auto finished = [&] { return finished_fulfilments(registry); };
  ASSERT_TRUE(eventually([&] { return finished() == orders; }, std::chrono::seconds{120}))
      << finished() << " of " << orders << " sagas finished";
  auto after = first->stats();
  EXPECT_EQ(after.commands_sent, fenced.commands_sent) << "the fenced host sent commands";
  EXPECT_EQ(after.inputs, fenced.inputs) << "the fenced host applied inputs";
  EXPECT_EQ(after.registry_rows, fenced.registry_rows) << "the fenced host wrote the registry";
  first->stop();
  for (int i = 0; i < orders; ++i)
    EXPECT_EQ(last_type("order-f" + std::to_string(i)), "order_completed") << i;
  auto b1 = count_types("book-b1");
  EXPECT_EQ(b1["stock_reserved"], orders);
  EXPECT_EQ(b1["stock_committed"], orders);
}

TEST_F(SagaTest, ARegistryRowNeverGoesBackToAnEarlierVersion) {
  // A host that lost its lease may flush late, after the next owner wrote
  // a later state: a finished saga must not look open again.
  postgres::saga_registry registry(db.url);
  const std::string saga(order_fulfilment::name);
  registry.save(saga, {{"late", "completed", true, std::nullopt, 1, 9}}, {});
  registry.save(saga, {{"late", "reserving", false, 123, 1, 5}}, {});
  EXPECT_TRUE(registry.open_instances(saga).empty());
  EXPECT_EQ(finished_fulfilments(registry), 1);
  // The same or a later version does replace it.
  registry.save(saga, {{"late", "reserving", false, 123, 1, 9}}, {});
  EXPECT_EQ(registry.open_instances(saga), std::vector<std::string>{"late"});
  registry.save(saga, {{"late", "cancelled", true, std::nullopt, 1, 12}}, {});
  EXPECT_TRUE(registry.open_instances(saga).empty());
}

TEST_F(SagaTest, FinishedInstancesLeaveNoWakeUpsBehind) {
  create_book("b1", 1000);
  open_account("u1", 1'000'000'000);
  constexpr int orders = 30;
  saga_settings settings;
  settings.step_timeout_ms = 60000;  // far beyond the waits below
  saga_host<order_fulfilment> host(*n, store, host_options(settings));
  host.start();
  for (int i = 0; i < orders; ++i) {
    auto id = "w" + std::to_string(i);
    ASSERT_TRUE(n->execute<order>(id, place_order{id, "u1", {{"b1", 1, 500}}, i}).ok());
  }
  ASSERT_TRUE(eventually([&] { return host.stats().finished == orders; }));
  // Each of the three rounds of steps set a timeout; answered, it must not
  // linger until it falls due (a host kept every one for its 30 s, some
  // 160,000 at checkout's peak). One wake-up per instance with something
  // pending, none once all are finished.
  EXPECT_TRUE(eventually([&] { return host.stats().timers == 0; }, std::chrono::seconds{5}))
      << host.stats().timers << " wake-ups left";
  EXPECT_EQ(host.stats().timeouts_fired, 0);
}

TEST_F(SagaTest, StartingEventsSeenAgainByANewConsumerChangeNothing) {
  create_book("b1", 1000);
  open_account("u1", 1'000'000'000);
  constexpr int orders = 40;
  {
    saga_host<order_fulfilment> first(*n, store, host_options());
    first.start();
    for (int i = 0; i < orders; ++i) {
      auto id = "s" + std::to_string(i);
      ASSERT_TRUE(n->execute<order>(id, place_order{id, "u1", {{"b1", 1, 500}}, i}).ok());
    }
    ASSERT_TRUE(eventually([&] { return first.stats().finished == orders; }));
    EXPECT_EQ(first.stats().wrong_new_guesses, 0) << "every instance was new";
    // Its consumer takes the order category only (placed, completed), not
    // the book's and account's events its steps caused.
    ASSERT_TRUE(eventually([&] { return first.stats().deliveries >= 2 * orders; }));
    EXPECT_EQ(first.stats().deliveries, 2 * orders);
    // Registry rows: when each instance appeared (a step pending) and when
    // it finished (one row if both fell in one flush); its steps in between
    // change nothing recovery reads.
    EXPECT_GE(first.stats().registry_rows, orders);
    EXPECT_LE(first.stats().registry_rows, 2 * orders);
  }
  auto saga_events = [&] {
    std::int64_t total = 0;
    for (int i = 0; i < orders; ++i)
      total += static_cast<std::int64_t>(
          sync::read_stream(*store, saga_host<order_fulfilment>::stream_of("s" + std::to_string(i)))
              .events.size());
    return total;
  };
  auto before = saga_events();
  // A second consumer reads the whole event stream again: every order's
  // start looks new to it, is found finished by its store check, and goes.
  auto o = host_options();
  o.consumer_prefix += "again-";
  saga_host<order_fulfilment> second(*n, store, o);
  second.start();
  ASSERT_TRUE(eventually([&] { return second.stats().wrong_new_guesses >= orders; }))
      << second.stats().wrong_new_guesses;
  EXPECT_EQ(second.stats().started, 0);
  EXPECT_EQ(second.stats().commands_sent, 0);
  EXPECT_EQ(saga_events(), before);
  auto b1 = count_types("book-b1");
  EXPECT_EQ(b1["stock_reserved"], orders);
  EXPECT_EQ(count_types("finance-u1")["payment_captured"], orders);
}

TEST_F(SagaTest, ATimeoutThatFellDueWhileTheNodeWasDownFiresOnceOnRecovery) {
  create_book("b1", 10);
  open_account("u1", 1'000'000);
  auto placed = n->execute<order>("late", place_order{"late", "u1", {{"b1", 1, 500}}, 1});
  ASSERT_TRUE(placed.ok());
  // What a host that crashed right after storing the order's event left:
  // the input, its reservation step sent a minute ago, never answered.
  auto event = sync::read_stream(*store, "order-late").events.at(0);
  auto minute_ago = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count() -
                    60000;
  boost::json::object input{{"at", minute_ago},   {"event_id", event.event_id},
                            {"type", event.type}, {"schema_version", event.schema_version},
                            {"data", event.data}, {"position", event.position.value}};
  append_request r;
  r.stream_id = "orderfulfilment-late";
  r.expected = expected_version::no_stream();
  r.recorded_at = clock_type::now();
  r.events.push_back({new_uuid(), "saga_event_received", 1, boost::json::serialize(input)});
  ASSERT_EQ(sync::append(*store, std::move(r)).error, store_errc::ok);
  postgres::saga_registry registry(db.url);
  registry.save(order_fulfilment::name,
                {{"late", "reserving", false, minute_ago + 30000, minute_ago}}, {});

  saga_host<order_fulfilment> host(*n, store, host_options());
  host.start();
  ASSERT_TRUE(eventually([&] { return host.stats().finished == 1; }))
      << "recovered " << host.stats().recovered;
  EXPECT_EQ(host.stats().recovered, 1);
  EXPECT_EQ(host.stats().timeouts_fired, 1);
  EXPECT_EQ(last_type("order-late"), "order_completed");
  auto inputs = count_types("orderfulfilment-late");
  EXPECT_EQ(inputs["saga_clock_ticked"], 1) << "the overdue timeout fires once";
  EXPECT_EQ(count_types("book-b1")["stock_reserved"], 1);
}

TEST_F(SagaTest, AnswersThatChangeNothingOutsideAreStoredWithTheNextThatDoes) {
  for (auto id : {"b1", "b2", "b3"}) create_book(id, 10);
  open_account("u1", 1'000'000);
  const std::string saga_stream = "orderfulfilment-deferred";
  auto holding = std::make_shared<holding_store>(store);
  // After the order's event (version 1): the record of the first round's
  // answers, and the one of the second round's (version 2), which waits
  // for ever: the host is stopped there, as if the node died.
  holding->hold(saga_stream, 1);
  holding->hold(saga_stream, 2);
  auto first = std::make_unique<saga_host<order_fulfilment>>(*n, holding, host_options());
  first->start();
  place_three_book_order("deferred", "u1");
  ASSERT_TRUE(eventually([&] { return holding->holding(saga_stream, 1); }));
  EXPECT_EQ(first->stats().deferred, 4) << "four of the five parallel answers sent nothing";
  holding->release(saga_stream, 1);
  ASSERT_TRUE(eventually([&] { return holding->holding(saga_stream, 2); }));
  first->stop();
  first.reset();

  auto records = sync::read_stream(*store, saga_stream).events;
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].type, "saga_event_received");
  ASSERT_EQ(records[1].type, "saga_inputs_received");
  auto batch = boost::json::parse(records[1].data).as_object().at("inputs").as_array();
  ASSERT_EQ(batch.size(), 5u);
  for (const auto& in : batch)
    EXPECT_EQ(in.as_object().at("kind").as_string(), "saga_step_answered");

  // A new host replays both records: the complete step in flight goes out
  // again (1), then settling (3 commits, 1 capture). Had it missed the
  // combined record, it would re-send the first round too.
  saga_host<order_fulfilment> second(*n, store, host_options());
  second.start();
  ASSERT_TRUE(eventually([&] { return second.stats().finished == 1; }));
  EXPECT_EQ(second.stats().recovered, 1);
  EXPECT_EQ(second.stats().commands_sent, 5);
  expect_fulfilled_once("deferred");
  second.stop();
}

TEST_F(SagaTest, DeferredAnswersLostInACrashAreAskedForAgainAndApplyOnce) {
  for (auto id : {"b1", "b2", "b3"}) create_book(id, 10);
  open_account("u1", 1'000'000);
  const std::string saga_stream = "orderfulfilment-lost";
  auto holding = std::make_shared<holding_store>(store);
  holding->hold(saga_stream, 1);  // the first round's record never lands
  auto first = std::make_unique<saga_host<order_fulfilment>>(*n, holding, host_options());
  first->start();
  place_three_book_order("lost", "u1");
  ASSERT_TRUE(eventually([&] { return holding->holding(saga_stream, 1); }));
  first->stop();
  first.reset();
  ASSERT_EQ(sync::read_stream(*store, saga_stream).events.size(), 1u) << "only the order's event";

  // The five steps are in flight again: their commands go out with the
  // same ids, and the aggregates answer without acting twice.
  saga_host<order_fulfilment> second(*n, store, host_options());
  second.start();
  ASSERT_TRUE(eventually([&] { return second.stats().finished == 1; }));
  EXPECT_EQ(second.stats().commands_sent, 10);
  expect_fulfilled_once("lost");
  second.stop();
}

TEST_F(SagaTest, InputsQueuedDuringAnAppendAreStoredAsOneRecord) {
  // Every step of the first round is refused (no stock, no account, no
  // basket), and refusals are never deferred: the first one's record
  // waits, the other four queue behind it.
  for (auto id : {"b1", "b2", "b3"}) create_book(id, 0);
  const std::string saga_stream = "orderfulfilment-queued";
  auto holding = std::make_shared<holding_store>(store);
  holding->hold(saga_stream, 1);
  saga_host<order_fulfilment> host(*n, holding, host_options());
  host.start();
  place_three_book_order("queued", "nobody", false);
  ASSERT_TRUE(eventually([&] {
    return holding->holding(saga_stream, 1) && host.stats().inputs_queued == 5;
  })) << host.stats().inputs_queued
      << " inputs queued";
  holding->release(saga_stream, 1);
  ASSERT_TRUE(eventually([&] { return host.stats().finished == 1; }));
  EXPECT_EQ(last_type("order-queued"), "order_cancelled");
  auto records = sync::read_stream(*store, saga_stream).events;
  ASSERT_GE(records.size(), 3u);
  EXPECT_EQ(records[1].type, "saga_step_answered");
  ASSERT_EQ(records[2].type, "saga_inputs_received");
  EXPECT_EQ(boost::json::parse(records[2].data).as_object().at("inputs").as_array().size(), 4u);
  host.stop();
}

TEST_F(SagaTest, InputsWhoseCombinedRecordTheStoreRefusesAreStoredOneByOne) {
  for (auto id : {"b1", "b2", "b3"}) create_book(id, 10);
  open_account("u1", 1'000'000);
  const std::string saga_stream = "orderfulfilment-single";
  auto holding = std::make_shared<holding_store>(store);
  holding->refuse("saga_inputs_received");
  saga_host<order_fulfilment> host(*n, holding, host_options());
  host.start();
  place_three_book_order("single", "u1");
  ASSERT_TRUE(eventually([&] { return host.stats().finished == 1; }));
  EXPECT_EQ(host.stats().dead_letters, 0);
  auto inputs = count_types(saga_stream);
  EXPECT_EQ(inputs["saga_inputs_received"], 0);
  EXPECT_EQ(inputs["saga_step_answered"], 10)
      << "3 reservations, the authorisation, clear-basket, complete, 3 commits, the capture";
  expect_fulfilled_once("single");
  host.stop();
}

TEST_F(SagaTest, ARatingWaitsOutOfMemoryForItsFeedbacksDeletion) {
  create_book("b1", 1);
  saga_host<rating_saga> host(*n, store, host_options());
  host.start();
  ASSERT_TRUE(n->execute<feedback>("f1", create_feedback{"f1", "b1", 5, "great", 1}).ok());
  ASSERT_TRUE(n->execute<feedback>("f2", create_feedback{"f2", "gone", 3, "?", 2}).ok());
  ASSERT_TRUE(eventually([&] { return count_types("book-b1")["rating_added"] == 1; }));
  // f2's book does not exist: the saga deletes the feedback.
  ASSERT_TRUE(eventually([&] { return count_types("feedback-f2")["feedback_deleted"] == 1; }));
  EXPECT_TRUE(eventually([&] { return host.stats().live_instances == 0; }))
      << "a rated rating waits for a later event out of memory; live "
      << host.stats().live_instances << ", first status "
      << (host.stats().live_by_status.empty() ? "-" : host.stats().live_by_status.begin()->first);
  EXPECT_EQ(host.stats().finished, 1);  // f2's

  ASSERT_TRUE(n->execute<feedback>("f1", delete_feedback{"f1"}).ok());
  EXPECT_TRUE(eventually([&] { return count_types("book-b1")["rating_removed"] == 1; }));
  EXPECT_TRUE(eventually([&] { return host.stats().finished == 2; }));
  EXPECT_EQ(host.stats().dead_letters, 0);
}

TEST_F(SagaTest, AnInputTheStoreRefusesIsDeadLetteredInsteadOfBlockingTheSaga) {
  // A store that takes only small events: every saga input (the order's
  // event wrapped with its metadata) is too large for it.
  postgres_store_options small;
  small.url = db.url;
  small.max_event_bytes = 200;
  auto refusing = std::make_shared<postgres_event_store>(small);
  saga_host<order_fulfilment> host(*n, refusing, host_options());
  host.start();
  for (auto id : {"big1", "big2"})
    ASSERT_TRUE(n->execute<order>(id, place_order{id, "u1", {{"b1", 1, 500}}, 1}).ok());
  EXPECT_TRUE(eventually([&] { return host.stats().dead_letters == 2; }))
      << host.stats().dead_letters << " dead letters";
  postgres::view_store vs(db.url);
  EXPECT_TRUE(eventually([&] { return vs.dead_letters("saga:orderfulfilment").size() == 2; }));
  auto letters = vs.dead_letters("saga:orderfulfilment");
  ASSERT_EQ(letters.size(), 2u);
  EXPECT_NE(letters[0].error.find("input not stored"), std::string::npos) << letters[0].error;
  EXPECT_EQ(letters[0].event.type, "order_placed");
  host.stop();
  refusing->stop();
}

TEST(SagaProcess, ANodeKilledMidFulfilmentFinishesEverySagaOnceAfterRestart) {
  auto run = unique("k");
  integration::scoped_database db("troupe_test_" + run);
  auto stream = "TROUPE_TEST_" + run;
  std::vector<std::string> sets{
      "postgres.url=" + db.url,     "nats.url=" + integration::required_env("TROUPE_NATS_URL"),
      "publisher.stream=" + stream, "publisher.subject_prefix=troupetest" + run + ".events",
      "projections.enabled=false",  "sagas.consumer_prefix=k-" + run + "-",
      "sagas.ack_wait_ms=1000",     "log.level=warn"};
  postgres::migrate(db.url);
  postgres::saga_registry registry(db.url);
  auto finished = [&] { return finished_fulfilments(registry); };
  pid_t node = integration::start_serve(sets, {"--demo-orders", "2000"});
  ASSERT_GT(node, 0);
  ASSERT_TRUE(eventually([&] { return finished() >= 50; })) << finished();
  ASSERT_EQ(kill(node, SIGKILL), 0);
  int status = 0;
  waitpid(node, &status, 0);
  auto at_kill = finished();

  postgres_store_options so;
  so.url = db.url;
  auto store = std::make_shared<postgres_event_store>(so);
  // Orders placed before the kill: each must end with its saga finished.
  std::set<std::string> placed;
  global_position after{0};
  std::map<std::string, std::int64_t> reservations, authorisations;  // "book/order", order
  auto scan = [&] {
    placed.clear();
    reservations.clear();
    authorisations.clear();
    after = global_position{0};
    for (;;) {
      auto page = sync::read_all(*store, after, 10000);
      if (page.events.empty()) break;
      for (const auto& e : page.events) {
        after = e.position;
        if (e.type == "order_placed") placed.insert(e.stream_id);
        if (e.type == "stock_reserved")
          ++reservations[e.stream_id + "/" +
                         boost::json::parse(e.data).at("order_id").as_string().c_str()];
        if (e.type == "payment_authorised")
          ++authorisations[boost::json::parse(e.data).at("payment_id").as_string().c_str()];
      }
    }
  };
  scan();
  EXPECT_LT(at_kill, static_cast<std::int64_t>(placed.size()))
      << "every saga had finished before the kill; the test proved little";

  node = integration::start_serve(sets);
  ASSERT_GT(node, 0);
  EXPECT_TRUE(eventually([&] { return finished() == static_cast<std::int64_t>(placed.size()); },
                         std::chrono::seconds{120}))
      << finished() << " of " << placed.size() << " sagas finished after the restart";
  kill(node, SIGTERM);
  waitpid(node, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  scan();
  for (const auto& [key, count] : reservations) EXPECT_EQ(count, 1) << "reserved twice: " << key;
  for (const auto& [order_id, count] : authorisations)
    EXPECT_EQ(count, 1) << "paid twice: " << order_id;
  EXPECT_EQ(registry.open_instances(order_fulfilment::name).size(), 0u);
  store->stop();
  integration::delete_jetstream_stream(stream);
}

TEST(SagaProcess, TheDemoEndsWithEverySagaFinishedAndEveryViewCaughtUp) {
  // What `scripts/run` shows a new user: sagas, projections and the API on.
  // The log ends with saga inputs, which never reach JetStream; the views
  // must still count as caught up.
  auto run = unique("m");
  integration::scoped_database db("troupe_test_" + run);
  auto stream = "TROUPE_TEST_" + run;
  auto [code, out] = integration::run_troupe(
      "serve --set http.port=0 --set postgres.url=" + db.url +
      " --set nats.url=" + integration::required_env("TROUPE_NATS_URL") +
      " --set publisher.stream=" + stream + " --set publisher.subject_prefix=troupetest" + run +
      ".events --set projections.consumer_prefix=m-" + run + "- --set sagas.consumer_prefix=m-" +
      run + "- --demo-orders 300 --exit-after-demo");
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("300 of 300 orders fulfilled"), std::string::npos) << out;
  EXPECT_NE(out.find("all 5 views reached position"), std::string::npos) << out;
  integration::delete_jetstream_stream(stream);
}

TEST(SagaDeadLetterReplay, SendsTheStepsCommandAgainOnceFromTheCommandLine) {
  integration::scoped_database db("troupe_test_" + unique("d"));
  postgres::migrate(db.url);
  postgres_store_options so;
  so.url = db.url;
  auto store = std::make_shared<postgres_event_store>(so);
  auto created = variant_codec<book::event>::encode(
      book_created{"b1", "Dune", "", 1000, std::nullopt, "c", "p", {"a"}, 3});
  append_request r;
  r.stream_id = "book-b1";
  r.expected = expected_version::no_stream();
  r.recorded_at = clock_type::now();
  r.events.push_back({new_uuid(), std::string(created.type), created.schema_version, created.data});
  ASSERT_EQ(sync::append(*store, std::move(r)).error, store_errc::ok);
  // A step given up: add 5 to the stock of b1.
  postgres::dead_letter letter;
  letter.consumer = "saga:orderfulfilment";
  letter.event.event_id = "orderfulfilment/o9/restock/3";
  letter.event.stream_id = "book-b1";
  letter.event.type = "book#3";
  letter.event.data = R"({"book_id":"b1","quantity":5})";
  letter.error = "timeout: no answer";
  letter.attempts = 3;
  postgres::view_store vs(db.url);
  vs.exec("BEGIN");
  vs.park(letter);
  vs.exec("COMMIT");
  auto id = vs.dead_letters("saga:orderfulfilment").at(0).id;

  auto set = " --set postgres.url=" + db.url + " --set log.level=warn";
  auto [code, out] = integration::run_troupe("dead-letters replay " + std::to_string(id) + set);
  EXPECT_EQ(code, 0) << out;
  auto events = sync::read_stream(*store, "book-b1").events;
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].type, "stock_added");
  EXPECT_FALSE(vs.dead_letter_by_id(id)->replayed_at.empty());
  auto [again, again_out] =
      integration::run_troupe("dead-letters replay " + std::to_string(id) + set);
  EXPECT_EQ(again, 1) << again_out;
  EXPECT_NE(again_out.find("was replayed"), std::string::npos) << again_out;
  EXPECT_EQ(sync::read_stream(*store, "book-b1").events.size(), 2u);
  auto [listed, list_out] =
      integration::run_troupe("dead-letters list --consumer saga:orderfulfilment" + set);
  EXPECT_EQ(listed, 0);
  EXPECT_NE(list_out.find("book-b1"), std::string::npos) << list_out;
  store->stop();
}

}  // namespace
}  // namespace troupe
