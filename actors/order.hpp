#pragma once
// The order aggregate (stream `order-<order_id>`): an order's lines, total
// and status. Prices arrive on the command (looked up at the API edge), so
// the order records what the buyer was charged even if the book's price
// changes later. Pure decider; hosted by the runtime's aggregate actor.

#include <boost/describe.hpp>
#include <boost/json.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "actors/common.hpp"
#include "runtime/decider.hpp"

namespace bookstore {

struct order_item {
  std::string book_id;
  std::int64_t quantity = 0;
  std::int64_t unit_price = 0;  // cents
  bool operator==(const order_item&) const = default;
};
BOOST_DESCRIBE_STRUCT(order_item, (), (book_id, quantity, unit_price))

/// `placed` is BookWorm's "New": the only status an order can leave.
enum class order_status { none, placed, completed, cancelled };
BOOST_DESCRIBE_ENUM(order_status, none, placed, completed, cancelled)

// ---- commands ---------------------------------------------------------------

struct place_order {
  std::string order_id;
  std::string buyer_id;
  std::vector<order_item> items;
  std::int64_t placed_at = 0;  // ms since epoch
  /// The items are the buyer's basket, which the fulfilment then clears.
  bool from_basket = false;
  bool operator==(const place_order&) const = default;
};
BOOST_DESCRIBE_STRUCT(place_order, (), (order_id, buyer_id, items, placed_at, from_basket))

struct complete_order {
  std::string order_id;
  std::int64_t completed_at = 0;
  bool operator==(const complete_order&) const = default;
};
BOOST_DESCRIBE_STRUCT(complete_order, (), (order_id, completed_at))

struct cancel_order {
  std::string order_id;
  std::string reason;
  std::int64_t cancelled_at = 0;
  bool operator==(const cancel_order&) const = default;
};
BOOST_DESCRIBE_STRUCT(cancel_order, (), (order_id, reason, cancelled_at))

// ---- events -----------------------------------------------------------------

/// Carries the total so no reader ever recomputes (and disagrees on) it.
struct order_placed {
  static constexpr std::string_view event_type = "order_placed";
  /// v1 did not say where the items came from (its saga always cleared the
  /// basket: upcast as from_basket); v2 does.
  static constexpr int schema_version = 2;
  static void upcast(int from_version, boost::json::object& data);
  std::string order_id;
  std::string buyer_id;
  std::vector<order_item> items;
  std::int64_t total = 0;  // cents
  std::int64_t placed_at = 0;
  bool from_basket = false;  // the buyer's basket became this order: the saga clears it
  bool operator==(const order_placed&) const = default;
};
BOOST_DESCRIBE_STRUCT(order_placed, (), (order_id, buyer_id, items, total, placed_at, from_basket))

/// Carries the buyer, items and total so views (orders by buyer, sales by
/// book) are folded from this event alone.
struct order_completed {
  static constexpr std::string_view event_type = "order_completed";
  static constexpr int schema_version = 1;
  std::string order_id;
  std::string buyer_id;
  std::vector<order_item> items;
  std::int64_t total = 0;
  std::int64_t completed_at = 0;
  bool operator==(const order_completed&) const = default;
};
BOOST_DESCRIBE_STRUCT(order_completed, (), (order_id, buyer_id, items, total, completed_at))

struct order_cancelled {
  static constexpr std::string_view event_type = "order_cancelled";
  static constexpr int schema_version = 1;
  std::string order_id;
  std::string buyer_id;
  std::string reason;
  std::int64_t cancelled_at = 0;
  bool operator==(const order_cancelled&) const = default;
};
BOOST_DESCRIBE_STRUCT(order_cancelled, (), (order_id, buyer_id, reason, cancelled_at))

// ---- state ------------------------------------------------------------------

struct order_state {
  std::string order_id;
  std::string buyer_id;
  order_status status = order_status::none;
  std::vector<order_item> items;
  std::int64_t total = 0;
  bool operator==(const order_state&) const = default;
};
BOOST_DESCRIBE_STRUCT(order_state, (), (order_id, buyer_id, status, items, total))

// ---- decider ----------------------------------------------------------------

struct order {
  static constexpr std::string_view category = "order";
  using state = order_state;
  using command = std::variant<place_order, complete_order, cancel_order>;
  using event = std::variant<order_placed, order_completed, order_cancelled>;

  static state initial() { return {}; }
  static troupe::decision<event> decide(const command& c, const state& s);
  static state evolve(state s, const event& e);
};
static_assert(troupe::decider<order>);

}  // namespace bookstore
