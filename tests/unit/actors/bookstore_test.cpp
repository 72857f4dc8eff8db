#include "actors/bookstore.hpp"

#include "runtime/aggregate_host.hpp"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <tuple>
#include <variant>

namespace bookstore {
namespace {

template <class Variant>
struct event_types;
template <class... Es>
struct event_types<std::variant<Es...>> {
  static void add_to(std::multimap<std::string, std::string>& out, std::string_view owner) {
    (out.emplace(std::string(Es::event_type), std::string(owner)), ...);
  }
};

// The runtime finds an event's type by name alone (codec, NATS subjects,
// event catalog), so two aggregates sharing a name would corrupt replays.
TEST(Bookstore, EventTypeNamesAreUniqueAcrossAggregates) {
  std::multimap<std::string, std::string> owners;
  std::apply(
      [&](auto... d) {
        (event_types<typename decltype(d)::event>::add_to(owners, decltype(d)::category), ...);
      },
      bookstore_aggregates{});
  for (const auto& [type, owner] : owners)
    EXPECT_EQ(owners.count(type), 1u) << "event type '" << type << "' is declared more than once";
}

TEST(Bookstore, CategoriesAreUniqueAcrossAggregates) {
  std::set<std::string_view> categories;
  std::apply([&](auto... d) { (categories.insert(decltype(d)::category), ...); },
             bookstore_aggregates{});
  EXPECT_EQ(categories.size(), std::tuple_size_v<bookstore_aggregates>);
}

// Commands travel between cluster nodes as (alternative index, JSON): every
// bookstore command must survive the trip unchanged, and garbage must be
// refused with a reason rather than become a default-valued command.
TEST(Bookstore, EveryCommandCanTravelBetweenNodes) {
  auto type = troupe::make_aggregate_type<order>();
  ASSERT_TRUE(type.encode_command);
  order::command placed =
      place_order{"o-1", "buyer-1", {order_item{"b-1", 2, 1500}, order_item{"b-2", 1, 900}}, 1234};
  auto encoded = type.encode_command(troupe::command_payload::of<order::command>(placed));
  ASSERT_TRUE(encoded);
  EXPECT_EQ(encoded->first, placed.index());
  auto decoded = type.decode_command(encoded->first, encoded->second);
  ASSERT_TRUE(decoded) << decoded.error();
  const auto* back = decoded->get<order::command>();
  ASSERT_NE(back, nullptr);
  EXPECT_EQ(troupe::to_json_text(std::get<place_order>(*back)),
            troupe::to_json_text(std::get<place_order>(placed)));

  EXPECT_FALSE(type.decode_command(encoded->first, "{not json"));
  EXPECT_FALSE(type.decode_command(99, encoded->second));
  // A book's command is not an order's.
  auto book_type = troupe::make_aggregate_type<book>();
  EXPECT_FALSE(book_type.encode_command(troupe::command_payload::of<order::command>(placed)));
  auto every_type_encodes = [](auto... d) {
    return (static_cast<bool>(troupe::make_aggregate_type<decltype(d)>().encode_command) && ...);
  };
  EXPECT_TRUE(std::apply(every_type_encodes, bookstore_aggregates{}));
}

}  // namespace
}  // namespace bookstore