// read_state: an aggregate's current state folded from the store without
// its actor, from a snapshot and the events after it, or from the whole
// stream when the snapshot cannot be used or the tail is longer than one
// page.

#include "runtime/state_reader.hpp"

#include <gtest/gtest.h>

#include <future>

#include "counter.hpp"
#include "persistence/memory_event_store.hpp"
#include "persistence/sync.hpp"
#include "runtime/uuid.hpp"

namespace troupe {
namespace {

using counter_domain::counter;

void append_increments(event_store& store, const std::string& stream, int count, int by = 1) {
  for (int i = 0; i < count; ++i) {
    append_request r;
    r.stream_id = stream;
    r.metadata.command_id = "c" + std::to_string(i);
    r.recorded_at = clock_type::now();
    r.events.push_back(
        new_event{new_uuid(), "counter_incremented", 2, "{\"by\":" + std::to_string(by) + "}"});
    ASSERT_EQ(sync::append(store, std::move(r)).error, store_errc::ok);
  }
}

state_read read(const std::shared_ptr<event_store>& store, const std::string& stream) {
  std::promise<state_read> answer;
  read_state(store, make_aggregate_type<counter>(), stream,
             [&](state_read r) { answer.set_value(std::move(r)); });
  return answer.get_future().get();
}

std::int64_t value_of(const state_read& r) { return r.state.at("value").to_number<std::int64_t>(); }

TEST(StateReader, AStreamWithoutSnapshotIsFoldedWhole) {
  auto store = std::make_shared<memory_event_store>();
  append_increments(*store, "counter-a", 5, 2);
  auto r = read(store, "counter-a");
  ASSERT_EQ(r.error, store_errc::ok) << r.message;
  EXPECT_EQ(r.version, stream_version{5});
  EXPECT_EQ(value_of(r), 10);
}

TEST(StateReader, ASnapshotIsTheStartAndOnlyTheTailIsFolded) {
  auto store = std::make_shared<memory_event_store>();
  append_increments(*store, "counter-b", 6, 1);
  // The snapshot claims more than the events say: the reader must start
  // from it (value 100 at version 4) and fold only versions 5 and 6.
  ASSERT_EQ(sync::save_snapshot(*store, {"counter-b", stream_version{4}, 1,
                                         R"({"state":{"value":100,"changes":4}})"}),
            store_errc::ok);
  auto r = read(store, "counter-b");
  ASSERT_EQ(r.error, store_errc::ok) << r.message;
  EXPECT_EQ(r.version, stream_version{6});
  EXPECT_EQ(value_of(r), 102);
}

TEST(StateReader, ASnapshotOfAnotherSchemaMeansReadingTheWholeStream) {
  auto store = std::make_shared<memory_event_store>();
  append_increments(*store, "counter-c", 6, 1);
  ASSERT_EQ(sync::save_snapshot(*store, {"counter-c", stream_version{4}, 99,
                                         R"({"state":{"value":100,"changes":4}})"}),
            store_errc::ok);
  auto r = read(store, "counter-c");
  ASSERT_EQ(r.error, store_errc::ok) << r.message;
  EXPECT_EQ(r.version, stream_version{6});
  EXPECT_EQ(value_of(r), 6);
}

TEST(StateReader, ATailLongerThanOnePageIsReadToTheEnd) {
  auto store = std::make_shared<memory_event_store>();
  append_increments(*store, "counter-d", 2500, 1);
  auto r = read(store, "counter-d");
  ASSERT_EQ(r.error, store_errc::ok) << r.message;
  EXPECT_EQ(r.version, stream_version{2500});
  EXPECT_EQ(value_of(r), 2500);
}

TEST(StateReader, AnEmptyStreamIsVersionZero) {
  auto store = std::make_shared<memory_event_store>();
  auto r = read(store, "counter-none");
  ASSERT_EQ(r.error, store_errc::ok) << r.message;
  EXPECT_EQ(r.version, stream_version{0});
}

}  // namespace
}  // namespace troupe
