#include "persistence/memory_event_store.hpp"

#include "event_store_contract.hpp"

namespace troupe::contract {
namespace {

INSTANTIATE_TEST_SUITE_P(Memory, EventStoreContract,
                         ::testing::Values(store_factory{
                             "memory", [] { return std::make_shared<memory_event_store>(); }}),
                         factory_name);

TEST(MemoryEventStore, InjectedFailuresAreUnavailableThenRecover) {
  memory_event_store store;
  store.fail_next(1);
  append_request r;
  r.stream_id = "thing-x";
  r.events.push_back({"0195f1b2-7c1e-7000-8000-000000000001", "thing_happened", 1, "{}"});
  EXPECT_EQ(sync::append(store, r).error, store_errc::unavailable);
  EXPECT_EQ(sync::append(store, r).error, store_errc::ok);
  EXPECT_EQ(store.event_count(), 1u);
}

}  // namespace
}  // namespace troupe::contract
