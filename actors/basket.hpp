#pragma once
// The basket aggregate (stream `basket-<buyer_id>`): one shopping basket per
// buyer, holding book ids and quantities only (prices are looked up when the
// order is placed). Pure decider; hosted by the runtime's aggregate actor.

#include <boost/describe.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "actors/common.hpp"
#include "runtime/decider.hpp"

namespace bookstore {

struct basket_item {
  std::string book_id;
  std::int64_t quantity = 0;
  bool operator==(const basket_item&) const = default;
};
BOOST_DESCRIBE_STRUCT(basket_item, (), (book_id, quantity))

// ---- commands ---------------------------------------------------------------

/// Creates the buyer's basket, or replaces all of its items.
struct save_basket {
  std::string buyer_id;
  std::vector<basket_item> items;
  bool operator==(const save_basket&) const = default;
};
BOOST_DESCRIBE_STRUCT(save_basket, (), (buyer_id, items))

/// Sets one book's quantity: adds the book if absent, removes it at 0.
struct update_basket_item {
  std::string buyer_id;
  std::string book_id;
  std::int64_t quantity = 0;
  bool operator==(const update_basket_item&) const = default;
};
BOOST_DESCRIBE_STRUCT(update_basket_item, (), (buyer_id, book_id, quantity))

/// Empties and discards the basket (checkout, or the buyer gave up).
struct delete_basket {
  std::string buyer_id;
  bool operator==(const delete_basket&) const = default;
};
BOOST_DESCRIBE_STRUCT(delete_basket, (), (buyer_id))

// ---- events -----------------------------------------------------------------

struct basket_saved {
  static constexpr std::string_view event_type = "basket_saved";
  static constexpr int schema_version = 1;
  std::string buyer_id;
  std::vector<basket_item> items;
  bool operator==(const basket_saved&) const = default;
};
BOOST_DESCRIBE_STRUCT(basket_saved, (), (buyer_id, items))

struct basket_item_updated {
  static constexpr std::string_view event_type = "basket_item_updated";
  static constexpr int schema_version = 1;
  std::string buyer_id;
  std::string book_id;
  std::int64_t quantity = 0;
  bool operator==(const basket_item_updated&) const = default;
};
BOOST_DESCRIBE_STRUCT(basket_item_updated, (), (buyer_id, book_id, quantity))

struct basket_item_removed {
  static constexpr std::string_view event_type = "basket_item_removed";
  static constexpr int schema_version = 1;
  std::string buyer_id;
  std::string book_id;
  bool operator==(const basket_item_removed&) const = default;
};
BOOST_DESCRIBE_STRUCT(basket_item_removed, (), (buyer_id, book_id))

struct basket_deleted {
  static constexpr std::string_view event_type = "basket_deleted";
  static constexpr int schema_version = 1;
  std::string buyer_id;
  bool operator==(const basket_deleted&) const = default;
};
BOOST_DESCRIBE_STRUCT(basket_deleted, (), (buyer_id))

// ---- state ------------------------------------------------------------------

struct basket_state {
  std::string buyer_id;
  /// False before the first save and after a delete; a deleted basket can be
  /// saved again (the buyer's next visit).
  bool exists = false;
  /// In the order the buyer added them, so views list them the same way.
  std::vector<basket_item> items;
  bool operator==(const basket_state&) const = default;
};
BOOST_DESCRIBE_STRUCT(basket_state, (), (buyer_id, exists, items))

// ---- decider ----------------------------------------------------------------

struct basket {
  static constexpr std::string_view category = "basket";
  using state = basket_state;
  using command = std::variant<save_basket, update_basket_item, delete_basket>;
  using event =
      std::variant<basket_saved, basket_item_updated, basket_item_removed, basket_deleted>;

  static state initial() { return {}; }
  static troupe::decision<event> decide(const command& c, const state& s);
  static state evolve(state s, const event& e);
};
static_assert(troupe::decider<basket>);

}  // namespace bookstore
