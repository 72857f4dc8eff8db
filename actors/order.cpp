#include "actors/order.hpp"

#include <set>

namespace bookstore {

void order_placed::upcast(int from_version, boost::json::object& data) {
  // A v1 order's saga cleared the buyer's basket whatever the order came
  // from; replayed, it does the same.
  if (from_version == 1) data["from_basket"] = true;
}

namespace {

using decision = troupe::decision<order::event>;
using troupe::reject;
using events = std::vector<order::event>;

decision handle(const place_order& c, const order_state& s) {
  if (s.status != order_status::none)
    return reject("already_exists", "the order '" + s.order_id + "' was already placed");
  if (is_blank(c.order_id)) return reject("id_required", "an order needs an id");
  if (is_blank(c.buyer_id)) return reject("id_required", "an order needs a buyer id");
  if (c.items.empty()) return reject("items_required", "an order needs at least one item");
  std::set<std::string_view> seen;
  std::int64_t total = 0;
  for (const auto& item : c.items) {
    if (is_blank(item.book_id)) return reject("id_required", "every item needs a book id");
    if (item.quantity <= 0)
      return reject("invalid_quantity", "the quantity of '" + item.book_id + "' must be positive");
    if (item.unit_price < 0)
      return reject("invalid_price", "the price of '" + item.book_id + "' cannot be negative");
    // One line per book keeps stock reservations one per (order, book).
    if (!seen.insert(item.book_id).second)
      return reject("duplicate_item", "the book '" + item.book_id + "' is listed twice");
    std::int64_t line = 0;
    if (__builtin_mul_overflow(item.unit_price, item.quantity, &line) ||
        __builtin_add_overflow(total, line, &total))
      return reject("invalid_amount", "the order total is too large");
  }
  return events{order_placed{c.order_id, c.buyer_id, c.items, total, c.placed_at, c.from_basket}};
}

std::string status_name(order_status s) {
  switch (s) {
    case order_status::none: return "not placed";
    case order_status::placed: return "placed";
    case order_status::completed: return "completed";
    case order_status::cancelled: return "cancelled";
  }
  return "unknown";
}

decision handle(const complete_order& c, const order_state& s) {
  if (s.status == order_status::none) return reject("not_found", "no such order");
  if (s.status != order_status::placed)
    return reject("invalid_status", "the order is " + status_name(s.status) +
                                        ", only a placed order can be completed");
  return events{order_completed{s.order_id, s.buyer_id, s.items, s.total, c.completed_at}};
}

decision handle(const cancel_order& c, const order_state& s) {
  if (s.status == order_status::none) return reject("not_found", "no such order");
  if (s.status != order_status::placed)
    return reject("invalid_status", "the order is " + status_name(s.status) +
                                        ", only a placed order can be cancelled");
  if (is_blank(c.reason)) return reject("reason_required", "say why the order is cancelled");
  return events{order_cancelled{s.order_id, s.buyer_id, c.reason, c.cancelled_at}};
}

}  // namespace

troupe::decision<order::event> order::decide(const command& c, const state& s) {
  return std::visit([&](const auto& cmd) { return handle(cmd, s); }, c);
}

order::state order::evolve(state s, const event& e) {
  std::visit(overloaded{
                 [&](const order_placed& e) {
                   s.order_id = e.order_id;
                   s.buyer_id = e.buyer_id;
                   s.status = order_status::placed;
                   s.items = e.items;
                   s.total = e.total;
                 },
                 [&](const order_completed&) { s.status = order_status::completed; },
                 [&](const order_cancelled&) { s.status = order_status::cancelled; },
             },
             e);
  return s;
}

}  // namespace bookstore
