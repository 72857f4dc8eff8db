// The aggregate runtime against the in-memory store: one-at-a-time command
// handling, idempotency, passivation, the live-actor cap, restart, shedding.

#include "runtime/node.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <thread>

#include <future>
#include "counter.hpp"
#include "persistence/memory_event_store.hpp"
#include "persistence/sync.hpp"
#include "runtime/shard_map.hpp"
#include "tests/support/test_support.hpp"

namespace counter_domain {
namespace {

using troupe::command_result;
using troupe::command_status;
using troupe::stream_version;
using troupe::test_support::eventually;

troupe::config test_config(std::vector<std::string> overrides = {}) {
  auto cfg = troupe::config::defaults();
  for (const auto& o : overrides) {
    auto eq = o.find('=');
    if (auto e = cfg.set(o.substr(0, eq), o.substr(eq + 1))) throw std::runtime_error(*e);
  }
  return cfg;
}

struct running_node {
  explicit running_node(std::shared_ptr<troupe::event_store> store,
                        std::vector<std::string> overrides = {})
      : node(test_config(std::move(overrides)), std::move(store)) {
    node.register_aggregate<counter>();
    node.start();
  }
  command_result run(std::string_view id, counter::command c, troupe::command_options o = {}) {
    return node.execute<counter>(id, std::move(c), std::move(o));
  }
  troupe::node node;
};

/// Waits for asynchronous completions; counts outcomes by status.
class completion_latch {
 public:
  troupe::command_completion slot() {
    return [this](command_result r) {
      std::lock_guard lock{mutex_};
      ++by_status_[static_cast<int>(r.status)];
      ++done_;
      if (r.version.value > max_version_) max_version_ = r.version.value;
      cv_.notify_all();
    };
  }
  bool wait_for(std::int64_t n, std::chrono::seconds timeout = std::chrono::seconds{60}) {
    std::unique_lock lock{mutex_};
    return cv_.wait_for(lock, timeout, [&] { return done_ >= n; });
  }
  std::int64_t count(command_status s) {
    std::lock_guard lock{mutex_};
    return by_status_[static_cast<int>(s)];
  }
  std::int64_t max_version() {
    std::lock_guard lock{mutex_};
    return max_version_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::int64_t done_ = 0;
  std::int64_t by_status_[8] = {};
  std::int64_t max_version_ = 0;
};

std::int64_t resident_kib() {
  std::ifstream statm("/proc/self/statm");
  std::int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

TEST(Node, AcceptedCommandIsDurableBeforeItsReply) {
  auto store = std::make_shared<troupe::memory_event_store>();
  running_node n(store);
  auto r = n.run("a", increment{5});
  ASSERT_EQ(r.status, command_status::accepted) << r.reason.message;
  EXPECT_EQ(r.version, stream_version{1});
  EXPECT_EQ(r.event_count, 1u);
  auto events = troupe::sync::read_stream(*store, "counter-a").events;
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, "counter_incremented");
  EXPECT_EQ(events[0].data, R"({"by":5})");
  EXPECT_EQ(events[0].position, r.position);
  EXPECT_EQ(events[0].event_id.size(), 36u);
  EXPECT_EQ(events[0].metadata.node_id, n.node.id());
  EXPECT_FALSE(events[0].metadata.command_id.empty());
  EXPECT_EQ(events[0].metadata.correlation_id, events[0].metadata.command_id);
}

TEST(Node, RejectionsAreValuesAndWriteNothing) {
  auto store = std::make_shared<troupe::memory_event_store>();
  running_node n(store);
  auto r = n.run("b", increment{1000});
  EXPECT_EQ(r.status, command_status::rejected);
  EXPECT_EQ(r.reason.code, "invalid_step");
  EXPECT_EQ(store->event_count(), 0u);
  auto nothing = n.run("b", reset{});  // accepted, no events
  EXPECT_EQ(nothing.status, command_status::accepted);
  EXPECT_EQ(nothing.event_count, 0u);
}

TEST(Node, ExpectedVersionIsChecked) {
  running_node n(std::make_shared<troupe::memory_event_store>());
  ASSERT_TRUE(n.run("c", increment{1}).ok());
  auto stale = n.run("c", increment{1}, {.expected = troupe::expected_version::no_stream()});
  EXPECT_EQ(stale.status, command_status::conflict);
  EXPECT_EQ(stale.version, stream_version{1});
  auto right =
      n.run("c", increment{1}, {.expected = troupe::expected_version::exact(stream_version{1})});
  EXPECT_EQ(right.status, command_status::accepted);
}

TEST(Node, MalformedCommandsGetAClearAnswer) {
  running_node n(std::make_shared<troupe::memory_event_store>());
  troupe::command_envelope bad_id;
  bad_id.stream_id = "counter-has space";
  bad_id.payload = troupe::command_payload::of(counter::command{increment{1}});
  auto r = n.node.submit_and_wait(bad_id);
  EXPECT_EQ(r.status, command_status::invalid);
  EXPECT_EQ(r.reason.code, "invalid_stream_id");
  auto unknown = bad_id;
  unknown.stream_id = "gizmo-1";
  EXPECT_EQ(n.node.submit_and_wait(unknown).reason.code, "unknown_category");
  auto wrong_type = bad_id;
  wrong_type.stream_id = "counter-1";
  wrong_type.payload = troupe::command_payload::of(std::string("not a command"));
  EXPECT_EQ(n.node.submit_and_wait(wrong_type).reason.code, "wrong_command_type");
  wrong_type.payload = {};
  EXPECT_EQ(n.node.submit_and_wait(wrong_type).reason.code, "empty_command");
}

TEST(Node, TenThousandConcurrentCommandsToOneAggregateLoseNoUpdate) {
  auto store = std::make_shared<troupe::memory_event_store>();
  running_node n(store, {"aggregate.max_pending_commands=20000"});
  constexpr int senders = 8, per_sender = 1250, total = senders * per_sender;
  completion_latch latch;
  std::vector<std::thread> threads;
  for (int s = 0; s < senders; ++s)
    threads.emplace_back([&] {
      for (int i = 0; i < per_sender; ++i)
        n.node.submit(troupe::node::make_envelope<counter>("hot", increment{1}), latch.slot());
    });
  for (auto& t : threads) t.join();
  ASSERT_TRUE(latch.wait_for(total));
  auto accepted = latch.count(command_status::accepted);
  EXPECT_EQ(accepted, total);
  auto events = troupe::sync::read_stream(*store, "counter-hot").events;
  ASSERT_EQ(static_cast<std::int64_t>(events.size()), accepted);
  for (std::size_t i = 0; i < events.size(); ++i)
    ASSERT_EQ(events[i].version, stream_version{static_cast<std::int64_t>(i + 1)});
  EXPECT_EQ(latch.max_version(), total);
}

TEST(Node, FullAggregateQueueShedsInsteadOfGrowing) {
  auto store = std::make_shared<troupe::memory_event_store>();
  running_node n(store, {"aggregate.max_pending_commands=50"});
  constexpr int total = 5000;
  completion_latch latch;
  for (int i = 0; i < total; ++i)
    n.node.submit(troupe::node::make_envelope<counter>("busy", increment{1}), latch.slot());
  ASSERT_TRUE(latch.wait_for(total));
  auto accepted = latch.count(command_status::accepted);
  EXPECT_EQ(accepted + latch.count(command_status::overloaded), total);
  EXPECT_EQ(
      static_cast<std::int64_t>(troupe::sync::read_stream(*store, "counter-busy").events.size()),
      accepted);
}

TEST(Node, RetriedCommandIdReturnsTheFirstOutcome) {
  auto store = std::make_shared<troupe::memory_event_store>();
  running_node n(store);
  auto first = n.run("d", increment{3}, {.command_id = "cmd-1"});
  ASSERT_EQ(first.status, command_status::accepted);
  ASSERT_TRUE(n.run("d", increment{1}).ok());
  auto again = n.run("d", increment{3}, {.command_id = "cmd-1"});
  EXPECT_EQ(again.status, command_status::duplicate);
  EXPECT_EQ(again.version, first.version);
  EXPECT_EQ(again.position, first.position);
  EXPECT_EQ(store->event_count(), 2u);
}

TEST(Node, StateAndIdempotencySurviveARestart) {
  auto store = std::make_shared<troupe::memory_event_store>();
  command_result first;
  {
    running_node n(store, {"aggregate.snapshot_every=3"});
    first = n.run("e", increment{10}, {.command_id = "once"});
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(n.run("e", increment{1}).ok());
  }  // node stopped: actors passivated, system gone
  ASSERT_TRUE(troupe::sync::load_snapshot(*store, "counter-e").snapshot.has_value());
  {
    running_node n(store, {"aggregate.snapshot_every=3"});
    auto retry = n.run("e", increment{10}, {.command_id = "once"});
    EXPECT_EQ(retry.status, command_status::duplicate);
    EXPECT_EQ(retry.version, first.version);
    auto next =
        n.run("e", increment{1}, {.expected = troupe::expected_version::exact(stream_version{5})});
    ASSERT_EQ(next.status, command_status::accepted) << next.reason.message;
    EXPECT_EQ(next.version, stream_version{6});
  }
  {
    // Without snapshots the same holds from the events alone.
    running_node n(store, {"aggregate.snapshot_every=0"});
    EXPECT_EQ(n.run("e", increment{10}, {.command_id = "once"}).status, command_status::duplicate);
  }
  auto events = troupe::sync::read_stream(*store, "counter-e").events;
  ASSERT_EQ(events.size(), 6u);
}

TEST(Node, RehydratedStateDrivesDecisions) {
  auto store = std::make_shared<troupe::memory_event_store>();
  {
    running_node n(store, {"aggregate.snapshot_every=2"});
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(n.run("f", increment{2}).ok());
  }
  running_node n(store, {"aggregate.snapshot_every=2"});
  // reset only emits an event when the rehydrated value is non-zero.
  auto r = n.run("f", reset{});
  EXPECT_EQ(r.event_count, 1u);
  EXPECT_EQ(r.version, stream_version{6});
  EXPECT_EQ(n.run("f", reset{}).event_count, 0u);
}

// A briefly doubled owner (two nodes both hosting one stream, as during a
// shard move): the store's version check rejects the stale writer, whose
// actor re-reads the stream, so its next command decides on the true state
// and no update is lost or duplicated.
TEST(Node, AStaleWriterIsRejectedByTheVersionCheckAndCatchesUp) {
  auto store = std::make_shared<troupe::memory_event_store>();
  running_node a(store), b(store);
  ASSERT_EQ(b.run("shared", increment{1}).version, stream_version{1});  // b's actor: v1
  ASSERT_EQ(a.run("shared", increment{1}).version, stream_version{2});  // a reads v1, writes v2
  auto stale = b.run("shared", increment{1});                           // b still believes v1
  EXPECT_EQ(stale.status, command_status::conflict);
  EXPECT_EQ(stale.reason.code, "version_conflict");
  auto retried = b.run("shared", increment{1});
  EXPECT_EQ(retried.status, command_status::accepted);
  EXPECT_EQ(retried.version, stream_version{3});
  EXPECT_EQ(store->event_count(), 3u) << "the rejected write left nothing behind";
}

TEST(Node, IdleAggregatesArePassivatedAndComeBack) {
  auto store = std::make_shared<troupe::memory_event_store>();
  running_node n(store, {"aggregate.idle_timeout_ms=40"});
  ASSERT_TRUE(n.run("g", increment{1}, {.command_id = "g1"}).ok());
  EXPECT_EQ(n.node.stats().live_aggregates, 1);
  ASSERT_TRUE(eventually([&] { return n.node.stats().live_aggregates == 0; }));
  EXPECT_GE(n.node.stats().passivations, 1);
  EXPECT_EQ(n.run("g", increment{1}, {.command_id = "g1"}).status, command_status::duplicate);
  auto r = n.run("g", increment{1});
  EXPECT_EQ(r.version, stream_version{2});
  EXPECT_EQ(n.node.stats().activations, 2);
}

TEST(Node, ALiveAggregateAnswersReadsAndOnlyALiveOne) {
  auto store = std::make_shared<troupe::memory_event_store>();
  running_node n(store, {"aggregate.idle_timeout_ms=40"});
  auto read = [&](std::string stream_id) {
    std::promise<std::optional<troupe::live_state>> p;
    n.node.read_live(std::move(stream_id), [&p](auto s) { p.set_value(std::move(s)); });
    return p.get_future().get();
  };
  EXPECT_FALSE(read("counter-never")) << "a read must not activate anything";
  EXPECT_EQ(n.node.stats().live_aggregates, 0);
  ASSERT_TRUE(n.run("r", increment{3}).ok());
  ASSERT_TRUE(n.run("r", increment{4}).ok());
  auto live = read("counter-r");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->version, stream_version{2});
  EXPECT_EQ(live->state.at("value"), 7);
  // A rejected command changes nothing that a reader sees.
  ASSERT_EQ(n.run("r", increment{1000}).status, command_status::rejected);
  EXPECT_EQ(read("counter-r")->state.at("value"), 7);
  // Passivated: the store answers, not a stale copy.
  ASSERT_TRUE(eventually([&] { return n.node.stats().live_aggregates == 0; }));
  EXPECT_FALSE(read("counter-r"));
  n.node.stop();
  EXPECT_FALSE(read("counter-r"));
}

TEST(Node, StoreFailureIsRetryableAndStateStaysTrue) {
  auto store = std::make_shared<troupe::memory_event_store>();
  running_node n(store);
  ASSERT_TRUE(n.run("h", increment{1}).ok());
  store->fail_next(1);
  auto failed = n.run("h", increment{1}, {.command_id = "retry-me"});
  EXPECT_EQ(failed.status, command_status::unavailable);
  auto retried = n.run("h", increment{1}, {.command_id = "retry-me"});
  ASSERT_EQ(retried.status, command_status::accepted) << retried.reason.message;
  EXPECT_EQ(retried.version, stream_version{2});
}

/// Holds every append until released (then lets later ones through), to keep
/// commands in flight.
class gated_store final : public troupe::event_store {
 public:
  explicit gated_store(std::shared_ptr<troupe::event_store> inner) : inner_(std::move(inner)) {}
  void append(troupe::append_request r, append_callback done) override {
    {
      std::lock_guard lock{mutex_};
      if (!open_) {
        held_.emplace_back(std::move(r), std::move(done));
        return;
      }
    }
    inner_->append(std::move(r), std::move(done));
  }
  void release_all() {
    std::vector<std::pair<troupe::append_request, append_callback>> held;
    {
      std::lock_guard lock{mutex_};
      held.swap(held_);
      open_ = true;
    }
    for (auto& [r, d] : held) inner_->append(std::move(r), std::move(d));
  }
  std::size_t held() {
    std::lock_guard lock{mutex_};
    return held_.size();
  }
  void read_stream(std::string s, troupe::stream_version f, std::size_t m,
                   read_callback d) override {
    inner_->read_stream(std::move(s), f, m, std::move(d));
  }
  void read_all(troupe::global_position a, std::size_t m, read_callback d) override {
    inner_->read_all(a, m, std::move(d));
  }
  void load_snapshot(std::string s, snapshot_callback d) override {
    inner_->load_snapshot(std::move(s), std::move(d));
  }
  void save_snapshot(troupe::snapshot_record s, done_callback d) override {
    inner_->save_snapshot(std::move(s), std::move(d));
  }
  void load_checkpoint(std::string n, checkpoint_callback d) override {
    inner_->load_checkpoint(std::move(n), std::move(d));
  }
  void save_checkpoint(std::string n, troupe::global_position p, done_callback d) override {
    inner_->save_checkpoint(std::move(n), p, std::move(d));
  }

 private:
  std::shared_ptr<troupe::event_store> inner_;
  std::mutex mutex_;
  std::vector<std::pair<troupe::append_request, append_callback>> held_;
  bool open_ = false;
};

TEST(Node, InFlightCommandsAreBoundedPerNode) {
  auto store = std::make_shared<gated_store>(std::make_shared<troupe::memory_event_store>());
  running_node n(store, {"node.max_in_flight_commands=10"});
  completion_latch latch;
  for (int i = 0; i < 10; ++i)
    n.node.submit(troupe::node::make_envelope<counter>("s" + std::to_string(i), increment{1}),
                  latch.slot());
  ASSERT_TRUE(eventually([&] { return store->held() == 10; }));
  auto shed = n.run("s-extra", increment{1});
  EXPECT_EQ(shed.status, command_status::overloaded);
  EXPECT_EQ(shed.reason.code, "node_overloaded");
  store->release_all();
  ASSERT_TRUE(latch.wait_for(10));
  EXPECT_EQ(latch.count(command_status::accepted), 10);
  EXPECT_EQ(n.node.stats().in_flight_commands, 0);
  EXPECT_TRUE(n.run("s-extra", increment{1}).ok());
}

TEST(Node, CommandsRacingAPassivationAreHeldNotLost) {
  // A cap far below the working set makes nearly every command hit a stream
  // whose actor is being passivated: those commands must wait for the next
  // incarnation, which must see every earlier event.
  auto store = std::make_shared<troupe::memory_event_store>();
  running_node n(store, {"aggregate.max_live=3", "aggregate.snapshot_every=4"});
  constexpr int streams = 20, per_stream = 200, senders = 4;
  completion_latch latch;
  std::vector<std::thread> threads;
  for (int s = 0; s < senders; ++s)
    threads.emplace_back([&, s] {
      for (int i = 0; i < per_stream * streams / senders; ++i)
        n.node.submit(troupe::node::make_envelope<counter>(
                          "churn" + std::to_string((i * 7 + s) % streams), increment{1}),
                      latch.slot());
    });
  for (auto& t : threads) t.join();
  ASSERT_TRUE(latch.wait_for(streams * per_stream));
  auto accepted = latch.count(command_status::accepted);
  EXPECT_EQ(accepted + latch.count(command_status::overloaded), streams * per_stream);
  EXPECT_GT(n.node.stats().passivations, streams);
  std::int64_t stored = 0;
  for (int i = 0; i < streams; ++i) {
    auto events = troupe::sync::read_stream(*store, "counter-churn" + std::to_string(i)).events;
    for (std::size_t v = 0; v < events.size(); ++v)
      ASSERT_EQ(events[v].version, stream_version{static_cast<std::int64_t>(v + 1)});
    stored += static_cast<std::int64_t>(events.size());
  }
  EXPECT_EQ(stored, accepted);
  // An actor counts as live until it has processed its passivation.
  EXPECT_TRUE(eventually([&] { return n.node.stats().live_aggregates <= 3; }))
      << n.node.stats().live_aggregates << " live";
}

TEST(Node, StoppingWithAStuckStoreAnswersEveryCommand) {
  // The store never answers: stop must not hang, and every sender hears
  // back (unavailable) once the shutdown bound has passed.
  auto store = std::make_shared<gated_store>(std::make_shared<troupe::memory_event_store>());
  completion_latch latch;
  {
    running_node n(store, {"node.shutdown_timeout_ms=100"});
    for (int i = 0; i < 20; ++i)
      n.node.submit(
          troupe::node::make_envelope<counter>("stuck" + std::to_string(i % 4), increment{1}),
          latch.slot());
    ASSERT_TRUE(eventually([&] { return store->held() == 4; }));
    n.node.stop();
    EXPECT_EQ(n.node.stats().in_flight_commands, 0);
  }
  ASSERT_TRUE(latch.wait_for(20, std::chrono::seconds{5}));
  EXPECT_EQ(latch.count(command_status::unavailable), 20);
  auto after = troupe::command_result{};
  troupe::node stopped(test_config(), store);
  stopped.register_aggregate<counter>();
  after = stopped.submit_and_wait(troupe::node::make_envelope<counter>("x", increment{1}));
  EXPECT_EQ(after.reason.code, "node_not_running");
}

TEST(Node, AThrowingCompletionDoesNotStopTheAggregate) {
  running_node n(std::make_shared<troupe::memory_event_store>());
  n.node.submit(troupe::node::make_envelope<counter>("t", increment{1}),
                [](command_result) { throw std::runtime_error("caller bug"); });
  auto r = n.run("t", increment{1});
  EXPECT_EQ(r.status, command_status::accepted);
  EXPECT_EQ(r.version, stream_version{2});
}

TEST(Node, HundredThousandAggregatesStayUnderTheLiveCap) {
  constexpr int streams = 100'000;
  constexpr std::int64_t cap = 10'000;
  auto store = std::make_shared<troupe::memory_event_store>();
  running_node n(store,
                 {"aggregate.max_live=" + std::to_string(cap), "aggregate.snapshot_every=0"});
  // Measured over the second half only: by then the node sits at its cap,
  // and the allocator has grown its arenas to the size this load needs
  // (measured from the start, the growth swung between 163 and 246 MiB
  // with the cap and was 306 MiB without it - too close to tell apart, and
  // the old bound of 256 failed once in scripts/test).
  std::int64_t before = 0;
  completion_latch latch;
  constexpr int window = 2'000;  // keep a bounded number in flight, like a real client
  for (int i = 0; i < streams; ++i) {
    if (i >= window) {
      ASSERT_TRUE(latch.wait_for(i - window + 1));
    }
    if (i == streams / 2) {
      ASSERT_TRUE(latch.wait_for(i));
      ASSERT_TRUE(eventually([&] { return n.node.stats().live_aggregates <= cap; }));
      before = resident_kib();
    }
    n.node.submit(troupe::node::make_envelope<counter>("m" + std::to_string(i), increment{1}),
                  latch.slot());
  }
  ASSERT_TRUE(latch.wait_for(streams));
  EXPECT_EQ(latch.count(command_status::accepted), streams);
  // Passivations finish asynchronously, just after the commands that caused them.
  EXPECT_TRUE(eventually([&] {
    auto stats = n.node.stats();
    return stats.live_aggregates <= cap && stats.passivations >= streams - cap;
  })) << "live "
      << n.node.stats().live_aggregates << ", passivated " << n.node.stats().passivations;
  EXPECT_EQ(n.node.stats().activations, streams);
  auto grown_mib = (resident_kib() - before) / 1024;
  // Bound: the in-memory store's 50k more events and streams and the
  // allocator's slack. Measured 2026-11-27: 30-71 MiB with the cap, 153 MiB
  // with every aggregate kept live (max_live above the stream count).
  RecordProperty("resident_growth_mib", static_cast<int>(grown_mib));
  EXPECT_LT(grown_mib, 112) << "resident memory grew by " << grown_mib
                            << " MiB over the second 50k aggregates";
}

// A clustered node serves only the shards it was given: commands for the
// others come back untried (so the cluster's router can send them on), and
// closing a shard passivates its actors before it reports released.
TEST(Node, ShardedNodeServesOnlyOpenShardsAndReleasesClosedOnes) {
  auto store = std::make_shared<troupe::memory_event_store>();
  troupe::node n(test_config(), store);
  n.register_aggregate<counter>();
  n.enable_sharding(4);
  n.start();
  auto stream_in = [](int shard) {
    for (int i = 0;; ++i) {
      auto id = "c" + std::to_string(i);
      if (troupe::shard_of("counter-" + id, 4) == shard) return id;
    }
  };
  auto in0 = stream_in(0), in1 = stream_in(1);
  auto run = [&](const std::string& id) {
    std::promise<command_result> p;
    auto f = p.get_future();
    n.submit_here(troupe::node::make_envelope<counter>(id, increment{1}),
                  [&p](command_result r) { p.set_value(std::move(r)); });
    return f.get();
  };
  auto closed = run(in0);
  EXPECT_EQ(closed.status, command_status::unavailable);
  EXPECT_EQ(closed.reason.code, "shard_moved");
  EXPECT_EQ(store->event_count(), 0u);

  n.open_shard(0);
  n.open_shard(1);
  EXPECT_EQ(run(in0).status, command_status::accepted);
  EXPECT_EQ(run(in1).status, command_status::accepted);
  EXPECT_EQ(n.stats().live_aggregates, 2);

  std::promise<void> released;
  n.close_shard(0, [&] { released.set_value(); });
  ASSERT_EQ(released.get_future().wait_for(std::chrono::seconds{10}), std::future_status::ready);
  EXPECT_TRUE(eventually([&] { return n.stats().live_aggregates == 1; }));
  EXPECT_EQ(run(in0).reason.code, "shard_moved");
  EXPECT_EQ(run(in1).status, command_status::accepted);  // shard 1 untouched
  n.stop();
}

// More actors than the region lets stop at once (256): the idle sweep
// passivates them all in waves, a command in the middle of a wave is held
// and served by a new incarnation, and the node's stop drains the rest.
TEST(Node, ThousandsOfActorsPassivateInWavesWithoutLosingACommand) {
  auto store = std::make_shared<troupe::memory_event_store>();
  running_node n(store, {"aggregate.idle_timeout_ms=100"});
  constexpr int streams = 3000;
  completion_latch latch;
  for (int i = 0; i < streams; ++i)
    n.node.submit(troupe::node::make_envelope<counter>("p" + std::to_string(i), increment{1}),
                  latch.slot());
  ASSERT_TRUE(latch.wait_for(streams));
  // An actor counts itself out as it stops; the region counts the
  // passivation when it hears of that stop, a moment later.
  ASSERT_TRUE(eventually(
      [&] {
        auto s = n.node.stats();
        return s.live_aggregates == 0 && s.passivations >= streams;
      },
      std::chrono::seconds{30}))
      << n.node.stats().live_aggregates << " still live, " << n.node.stats().passivations
      << " passivations";
  // Again, with commands arriving while the wave is under way.
  for (int i = 0; i < streams; ++i)
    n.node.submit(troupe::node::make_envelope<counter>("p" + std::to_string(i), increment{1}),
                  latch.slot());
  ASSERT_TRUE(latch.wait_for(2 * streams));
  std::this_thread::sleep_for(std::chrono::milliseconds{150});
  auto during = n.run("p7", increment{1});
  ASSERT_TRUE(during.ok()) << during.reason.message;
  EXPECT_EQ(during.version, stream_version{3});
  for (int i = 0; i < streams; ++i)
    n.node.submit(troupe::node::make_envelope<counter>("q" + std::to_string(i), increment{1}),
                  latch.slot());
  ASSERT_TRUE(latch.wait_for(3 * streams));
  EXPECT_EQ(latch.count(command_status::accepted), 3 * streams);
  n.node.stop();
  EXPECT_EQ(n.node.stats().live_aggregates, 0);
  EXPECT_EQ(store->event_count(), static_cast<std::size_t>(3 * streams + 1));
}

/// The in-memory store, counting the activation reads a node makes.
class head_counting_store : public troupe::event_store {
 public:
  void append(troupe::append_request r, append_callback done) override {
    inner_.append(std::move(r), std::move(done));
  }
  void read_stream(std::string id, stream_version from, std::size_t max,
                   read_callback done) override {
    inner_.read_stream(std::move(id), from, max, std::move(done));
  }
  void read_all(troupe::global_position after, std::size_t max, read_callback done) override {
    inner_.read_all(after, max, std::move(done));
  }
  void load_snapshot(std::string id, snapshot_callback done) override {
    inner_.load_snapshot(std::move(id), std::move(done));
  }
  void load_stream_head(std::string id, std::size_t max, head_callback done) override {
    ++heads;
    inner_.load_stream_head(std::move(id), max, std::move(done));
  }
  void save_snapshot(troupe::snapshot_record s, done_callback done) override {
    inner_.save_snapshot(std::move(s), std::move(done));
  }
  void load_checkpoint(std::string name, checkpoint_callback done) override {
    inner_.load_checkpoint(std::move(name), std::move(done));
  }
  void save_checkpoint(std::string name, troupe::global_position at, done_callback done) override {
    inner_.save_checkpoint(std::move(name), at, std::move(done));
  }
  std::size_t event_count() const { return inner_.event_count(); }
  std::atomic<int> heads{0};

 private:
  troupe::memory_event_store inner_;
};

// A command hinted to create its stream skips the activation read. Where
// the hint is wrong (the stream exists, written by an earlier node), every
// answer is still the one a read-first actor gives.
TEST(Node, AStreamCreatingCommandSkipsTheReadAndAWrongGuessCostsOnlyARead) {
  auto store = std::make_shared<head_counting_store>();
  {
    running_node earlier(store);
    ASSERT_TRUE(earlier.run("x", increment{5}, {.command_id = "x-1"}).ok());
    ASSERT_TRUE(earlier.run("y", increment{2}).ok());
    ASSERT_TRUE(earlier.run("z", increment{1}).ok());
    ASSERT_TRUE(earlier.run("w", increment{1}).ok());
    earlier.node.stop();
  }
  running_node n(store);
  store->heads = 0;
  const troupe::command_options creates{.creates_stream = true};

  // Right guess: no read at all.
  auto fresh = n.run("new", increment{4}, creates);
  ASSERT_EQ(fresh.status, command_status::accepted) << fresh.reason.message;
  EXPECT_EQ(fresh.version, stream_version{1});
  EXPECT_EQ(store->heads.load(), 0);

  // Wrong guess, append: the conflict is absorbed, the command runs on the
  // real state (version 2, not a conflict).
  auto appended = n.run("x", increment{1}, creates);
  ASSERT_EQ(appended.status, command_status::accepted) << appended.reason.message;
  EXPECT_EQ(appended.version, stream_version{2});

  // Wrong guess, a command already applied: its first outcome.
  auto repeated =
      n.run("y", increment{2}, troupe::command_options{.command_id = "", .creates_stream = true});
  EXPECT_EQ(repeated.status, command_status::accepted);
  EXPECT_EQ(repeated.version, stream_version{2});
  running_node again(store);  // a third node: "x-1" was applied on x by the first
  auto duplicate = again.run("x", increment{5},
                             troupe::command_options{.command_id = "x-1", .creates_stream = true});
  EXPECT_EQ(duplicate.status, command_status::duplicate);
  EXPECT_EQ(duplicate.version, stream_version{1});

  // Wrong guess, no events on the assumed empty state (reset of a zero
  // counter is a no-op) but an event on the real one.
  auto reset_result = n.run("z", counter_domain::reset{}, creates);
  ASSERT_EQ(reset_result.status, command_status::accepted);
  EXPECT_EQ(reset_result.version, stream_version{2});

  // Wrong guess with an expected version only the real state satisfies.
  auto checked =
      n.run("w", increment{1},
            troupe::command_options{.expected = troupe::expected_version::exact(stream_version{1}),
                                    .creates_stream = true});
  ASSERT_EQ(checked.status, command_status::accepted) << checked.reason.message;
  EXPECT_EQ(checked.version, stream_version{2});

  EXPECT_EQ(store->event_count(), 4u + 1 + 1 + 1 + 1 + 1);
  again.node.stop();
  n.node.stop();
}

}  // namespace
}  // namespace counter_domain
