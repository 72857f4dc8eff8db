#pragma once
// The event store contract, as a GoogleTest suite any implementation runs:
//   INSTANTIATE_TEST_SUITE_P(Memory, EventStoreContract,
//                            ::testing::Values(store_factory{...}));

#include <gtest/gtest.h>

#include <cctype>

#include <mutex>

#include <map>

#include <condition_variable>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <thread>

#include "persistence/sync.hpp"

namespace troupe::contract {

struct store_factory {
  std::string name;
  std::function<std::shared_ptr<event_store>()> make;
};
inline std::string factory_name(const ::testing::TestParamInfo<store_factory>& info) {
  return info.param.name;
}

class EventStoreContract : public ::testing::TestWithParam<store_factory> {
 protected:
  void SetUp() override {
    store_ = GetParam().make();
    run_ = std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  }

  /// A stream id unique to this run, so the suite can run against a
  /// database that outlives it.
  std::string s(std::string_view name) const { return "thing-" + std::string(name) + "-" + run_; }

  static std::string event_id() {
    // A fresh canonical UUID (version 4 layout) per event.
    static std::atomic<std::uint64_t> counter{0};
    auto n = counter.fetch_add(1) + 1;
    auto t =
        static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
    char text[40];
    std::snprintf(text, sizeof text, "%08x-%04x-4%03x-8%03x-%012llx",
                  static_cast<unsigned>(t >> 32), static_cast<unsigned>((t >> 16) & 0xffff),
                  static_cast<unsigned>(t & 0xfff), static_cast<unsigned>(n & 0xfff),
                  static_cast<unsigned long long>(n & 0xffffffffffffULL));
    return text;
  }

  static append_request request(std::string stream, expected_version expected, int events,
                                std::string command_id = "cmd") {
    append_request r;
    r.stream_id = std::move(stream);
    r.expected = expected;
    r.metadata.command_id = std::move(command_id);
    r.metadata.correlation_id = "corr";
    r.recorded_at = clock_type::now();
    for (int i = 0; i < events; ++i)
      r.events.push_back(
          new_event{event_id(), "thing_happened", 1, "{\"n\":" + std::to_string(i) + "}"});
    return r;
  }

  std::shared_ptr<event_store> store_;
  std::string run_;
};

TEST_P(EventStoreContract, AppendAssignsConsecutiveVersionsAndPositions) {
  auto a = sync::append(*store_, request(s("a"), expected_version::no_stream(), 2));
  ASSERT_EQ(a.error, store_errc::ok) << a.message;
  EXPECT_EQ(a.first_version, stream_version{1});
  EXPECT_EQ(a.last_version, stream_version{2});
  auto b = sync::append(*store_, request(s("b"), expected_version::any(), 1));
  ASSERT_EQ(b.error, store_errc::ok);
  EXPECT_EQ(b.last_position.value, a.last_position.value + 1);
  auto read = sync::read_stream(*store_, s("a"));
  ASSERT_EQ(read.events.size(), 2u);
  EXPECT_EQ(read.events[0].version, stream_version{1});
  EXPECT_EQ(read.events[1].version, stream_version{2});
  EXPECT_EQ(read.events[1].data, "{\"n\":1}");
  EXPECT_EQ(read.events[1].metadata.command_id, "cmd");
  EXPECT_EQ(read.events[1].metadata.correlation_id, "corr");
  EXPECT_LT(read.events[0].position, read.events[1].position);
}

TEST_P(EventStoreContract, MetadataComesBackWholeFromBothReads) {
  auto r = request(s("meta"), expected_version::no_stream(), 1, "cmd-meta");
  r.metadata.causation_id = "cause \"quoted\" \u00e9";
  r.metadata.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  r.metadata.node_id = "node-7";
  auto appended = sync::append(*store_, std::move(r));
  ASSERT_EQ(appended.error, store_errc::ok) << appended.message;
  auto by_stream = sync::read_stream(*store_, s("meta"));
  auto by_position = sync::read_all(*store_, global_position{appended.last_position.value - 1}, 1);
  for (const auto* read : {&by_stream, &by_position}) {
    ASSERT_EQ(read->events.size(), 1u);
    const auto& m = read->events[0].metadata;
    EXPECT_EQ(m.command_id, "cmd-meta");
    EXPECT_EQ(m.correlation_id, "corr");
    EXPECT_EQ(m.causation_id, "cause \"quoted\" \u00e9");
    EXPECT_EQ(m.traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    EXPECT_EQ(m.node_id, "node-7");
  }
}

TEST_P(EventStoreContract, EveryFieldComesBackAsWritten) {
  // Escapes, tabs, newlines and carriage returns (JSON whitespace) in the
  // data; an upper-case event id (stored canonical); a schema version; the
  // time to the microsecond, before and after 2000 (PostgreSQL's epoch).
  for (auto when : {std::chrono::microseconds{1'764'000'000'123'456},
                    std::chrono::microseconds{946'684'799'999'999}}) {
    auto stream = s("fields-" + std::to_string(when.count()));
    auto r = request(stream, expected_version::no_stream(), 2);
    r.events[0].data =
        "{\"path\":\"C:\\\\dir\\\\f\\tile\",\n\t\"crlf\":\"a\\r\\nb\" ,\r\n\"q\":\"\\\"\"}";
    r.events[0].type = "thing_renamed";
    r.events[1].schema_version = 3;
    auto id = r.events[1].event_id;
    for (auto& c : r.events[1].event_id) c = static_cast<char>(std::toupper(c));
    r.recorded_at = clock_type::time_point{when};
    auto written = r.events;
    auto appended = sync::append(*store_, std::move(r));
    ASSERT_EQ(appended.error, store_errc::ok) << appended.message;
    auto read = sync::read_stream(*store_, stream);
    ASSERT_EQ(read.events.size(), 2u);
    for (std::size_t i = 0; i < 2; ++i) {
      const auto& e = read.events[i];
      EXPECT_EQ(e.stream_id, stream);
      EXPECT_EQ(e.version, stream_version{static_cast<std::int64_t>(i) + 1});
      EXPECT_EQ(e.position.value, appended.last_position.value - 1 + static_cast<std::int64_t>(i));
      EXPECT_EQ(e.type, written[i].type);
      EXPECT_EQ(e.schema_version, written[i].schema_version);
      EXPECT_EQ(e.data, written[i].data);
      EXPECT_EQ(e.recorded_at, clock_type::time_point{when});
    }
    EXPECT_EQ(read.events[0].event_id, written[0].event_id);
    EXPECT_EQ(read.events[1].event_id, id);
  }
}

TEST_P(EventStoreContract, WrongExpectedVersionWritesNothing) {
  ASSERT_EQ(sync::append(*store_, request(s("c"), expected_version::no_stream(), 1)).error,
            store_errc::ok);
  auto again = sync::append(*store_, request(s("c"), expected_version::no_stream(), 1));
  EXPECT_EQ(again.error, store_errc::version_conflict);
  EXPECT_EQ(again.actual_version, stream_version{1});
  auto stale =
      sync::append(*store_, request(s("c"), expected_version::exact(stream_version{5}), 1));
  EXPECT_EQ(stale.error, store_errc::version_conflict);
  EXPECT_EQ(sync::read_stream(*store_, s("c")).events.size(), 1u);
  auto right =
      sync::append(*store_, request(s("c"), expected_version::exact(stream_version{1}), 1));
  EXPECT_EQ(right.error, store_errc::ok);
  EXPECT_EQ(right.last_version, stream_version{2});
}

TEST_P(EventStoreContract, InvalidStreamIdIsRejectedBeforeStorage) {
  auto r = sync::append(*store_, request("Not A Stream", expected_version::any(), 1));
  EXPECT_EQ(r.error, store_errc::invalid_input);
  EXPECT_FALSE(r.message.empty());
}

TEST_P(EventStoreContract, ReadStreamFromVersionAndInPages) {
  ASSERT_EQ(sync::append(*store_, request(s("d"), expected_version::any(), 5)).error,
            store_errc::ok);
  auto tail = sync::read_stream(*store_, s("d"), stream_version{3}, 2);
  ASSERT_EQ(tail.events.size(), 2u);
  EXPECT_EQ(tail.events[0].version, stream_version{3});
  EXPECT_EQ(tail.events[1].version, stream_version{4});
  EXPECT_TRUE(sync::read_stream(*store_, s("none")).events.empty());
}

TEST_P(EventStoreContract, ReadAllReturnsTheGlobalOrder) {
  auto first = sync::append(*store_, request(s("e"), expected_version::any(), 2));
  ASSERT_EQ(first.error, store_errc::ok);
  auto start = global_position{sync::read_stream(*store_, s("e")).events.at(0).position.value - 1};
  ASSERT_EQ(sync::append(*store_, request(s("f"), expected_version::any(), 1)).error,
            store_errc::ok);
  auto all = sync::read_all(*store_, start);
  ASSERT_EQ(all.events.size(), 3u);
  EXPECT_EQ(all.events[0].stream_id, s("e"));
  EXPECT_EQ(all.events[1].stream_id, s("e"));
  EXPECT_LT(all.events[0].position, all.events[1].position);
  EXPECT_EQ(all.events[2].stream_id, s("f"));
  auto page = sync::read_all(*store_, all.events[0].position, 1);
  ASSERT_EQ(page.events.size(), 1u);
  EXPECT_EQ(page.events[0].position, all.events[1].position);
}

TEST_P(EventStoreContract, ConcurrentWritersToOneStreamNeverDoubleAVersion) {
  constexpr int writers = 4, attempts = 200;
  std::atomic<int> accepted{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w)
    threads.emplace_back([&] {
      for (int i = 0; i < attempts; ++i) {
        auto current = sync::read_stream(*store_, s("g")).events.size();
        auto r = sync::append(
            *store_, request(s("g"), expected_version::exact(stream_version{(int64_t)current}), 1));
        if (r.error == store_errc::ok) ++accepted;
      }
    });
  for (auto& t : threads) t.join();
  auto events = sync::read_stream(*store_, s("g")).events;
  ASSERT_EQ(events.size(), static_cast<std::size_t>(accepted.load()));
  for (std::size_t i = 0; i < events.size(); ++i)
    EXPECT_EQ(events[i].version, stream_version{static_cast<std::int64_t>(i + 1)});
}

TEST_P(EventStoreContract, MalformedAppendsAreRejectedBeforeStorage) {
  auto bad_json = request(s("i"), expected_version::any(), 1);
  bad_json.events[0].data = "{\"n\":";
  auto r = sync::append(*store_, bad_json);
  EXPECT_EQ(r.error, store_errc::invalid_input);
  EXPECT_NE(r.message.find("JSON"), std::string::npos) << r.message;
  auto bad_id = request(s("i"), expected_version::any(), 1);
  bad_id.events[0].event_id = "not-a-uuid";
  EXPECT_EQ(sync::append(*store_, bad_id).error, store_errc::invalid_input);
  auto twice = request(s("i"), expected_version::any(), 2);
  twice.events[1].event_id = twice.events[0].event_id;
  EXPECT_EQ(sync::append(*store_, twice).error, store_errc::invalid_input);
  auto bad_type = request(s("i"), expected_version::any(), 1);
  bad_type.events[0].type = "bad\xff\xfe";
  EXPECT_EQ(sync::append(*store_, bad_type).error, store_errc::invalid_input);
  auto empty = request(s("i"), expected_version::any(), 0);
  EXPECT_EQ(sync::append(*store_, empty).error, store_errc::invalid_input);
  EXPECT_TRUE(sync::read_stream(*store_, s("i")).events.empty());
}

TEST_P(EventStoreContract, CheckpointsStartAtZeroAndNeverMoveBack) {
  auto name = "reader-" + run_;
  auto fresh = sync::load_checkpoint(*store_, name);
  ASSERT_EQ(fresh.first, store_errc::ok);
  EXPECT_EQ(fresh.second, global_position{0});
  ASSERT_EQ(sync::save_checkpoint(*store_, name, global_position{42}), store_errc::ok);
  ASSERT_EQ(sync::save_checkpoint(*store_, name, global_position{7}), store_errc::ok);
  EXPECT_EQ(sync::load_checkpoint(*store_, name).second, global_position{42});
  ASSERT_EQ(sync::save_checkpoint(*store_, name, global_position{43}), store_errc::ok);
  EXPECT_EQ(sync::load_checkpoint(*store_, name).second, global_position{43});
}

TEST_P(EventStoreContract, SnapshotsKeepTheNewest) {
  EXPECT_FALSE(sync::load_snapshot(*store_, s("h")).snapshot.has_value());
  ASSERT_EQ(sync::save_snapshot(*store_, {s("h"), stream_version{10}, 1, "{\"a\":10}"}),
            store_errc::ok);
  ASSERT_EQ(sync::save_snapshot(*store_, {s("h"), stream_version{4}, 1, "{\"a\":4}"}),
            store_errc::ok);
  auto snapshot = sync::load_snapshot(*store_, s("h")).snapshot;
  ASSERT_TRUE(snapshot.has_value());
  EXPECT_EQ(snapshot->version, stream_version{10});
  EXPECT_EQ(snapshot->state, "{\"a\":10}");
}

// Heads are what activations read: the newest snapshot and a page of the
// events after it. Many are asked for at once, as a burst of activations
// does (PostgreSQL serves them together); each gets its own stream's.
TEST_P(EventStoreContract, StreamHeadsAreTheSnapshotAndThePageAfterIt) {
  ASSERT_EQ(sync::append(*store_, request(s("plain"), expected_version::any(), 5)).error,
            store_errc::ok);
  ASSERT_EQ(sync::append(*store_, request(s("snap"), expected_version::any(), 4)).error,
            store_errc::ok);
  ASSERT_EQ(sync::save_snapshot(*store_, {s("snap"), stream_version{2}, 1, "{\"a\":2}"}),
            store_errc::ok);
  constexpr int many = 40;
  for (int i = 0; i < many; ++i)
    ASSERT_EQ(sync::append(*store_,
                           request(s("m" + std::to_string(i)), expected_version::any(), 1 + i % 3))
                  .error,
              store_errc::ok);

  std::mutex mutex;
  std::condition_variable arrived;
  std::map<std::string, stream_head_result> heads;
  std::vector<std::pair<std::string, std::size_t>> asks{
      {s("plain"), 3}, {s("snap"), 10}, {s("none"), 10}};
  for (int i = 0; i < many; ++i) asks.emplace_back(s("m" + std::to_string(i)), 10);
  for (const auto& [stream, page] : asks)
    store_->load_stream_head(stream, page, [&, stream = stream](stream_head_result r) {
      std::lock_guard lock{mutex};
      heads[stream] = std::move(r);
      arrived.notify_all();
    });
  std::unique_lock lock{mutex};
  ASSERT_TRUE(arrived.wait_for(lock, std::chrono::seconds{30},
                               [&] { return heads.size() == asks.size(); }));

  const auto& plain = heads[s("plain")];
  EXPECT_EQ(plain.snapshot.error, store_errc::ok);
  EXPECT_FALSE(plain.snapshot.snapshot.has_value());
  ASSERT_EQ(plain.tail.events.size(), 3u);  // the page, not the stream
  EXPECT_EQ(plain.tail.events[0].version, stream_version{1});
  EXPECT_EQ(plain.tail.events[2].version, stream_version{3});

  const auto& snap = heads[s("snap")];
  ASSERT_TRUE(snap.snapshot.snapshot.has_value());
  EXPECT_EQ(snap.snapshot.snapshot->version, stream_version{2});
  EXPECT_EQ(snap.snapshot.snapshot->state, "{\"a\":2}");
  ASSERT_EQ(snap.tail.events.size(), 2u);
  EXPECT_EQ(snap.tail.events[0].version, stream_version{3});
  EXPECT_EQ(snap.tail.events[1].version, stream_version{4});

  const auto& none = heads[s("none")];
  EXPECT_FALSE(none.snapshot.snapshot.has_value());
  EXPECT_TRUE(none.tail.events.empty());

  for (int i = 0; i < many; ++i) {
    auto stream = s("m" + std::to_string(i));
    const auto& h = heads[stream];
    ASSERT_EQ(h.tail.events.size(), static_cast<std::size_t>(1 + i % 3)) << stream;
    for (const auto& e : h.tail.events) EXPECT_EQ(e.stream_id, stream);
  }
}

}  // namespace troupe::contract
