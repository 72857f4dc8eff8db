#include "actors/bookstore.hpp"

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

}  // namespace
}  // namespace bookstore
