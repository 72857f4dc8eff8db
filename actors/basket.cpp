#include "actors/basket.hpp"

#include <algorithm>
#include <set>

namespace bookstore {
namespace {

using decision = troupe::decision<basket::event>;
using troupe::reject;
using events = std::vector<basket::event>;

template <class Items>  // const or not
auto find_item(Items& items, std::string_view book_id) {
  return std::find_if(items.begin(), items.end(),
                      [&](const basket_item& i) { return i.book_id == book_id; });
}

decision handle(const save_basket& c, const basket_state& s) {
  if (is_blank(c.buyer_id)) return reject("id_required", "a basket needs a buyer id");
  if (c.items.empty())
    return reject("items_required", "a basket needs at least one item; delete it instead");
  std::set<std::string_view> seen;
  for (const auto& item : c.items) {
    if (is_blank(item.book_id)) return reject("id_required", "every item needs a book id");
    if (item.quantity <= 0)
      return reject("invalid_quantity", "the quantity of '" + item.book_id + "' must be positive");
    // Two lines for one book would make "update this book's quantity"
    // ambiguous; the client should send their sum.
    if (!seen.insert(item.book_id).second)
      return reject("duplicate_item", "the book '" + item.book_id + "' is listed twice");
  }
  if (s.exists && s.items == c.items) return events{};
  return events{basket_saved{c.buyer_id, c.items}};
}

decision handle(const update_basket_item& c, const basket_state& s) {
  if (c.quantity < 0) return reject("invalid_quantity", "a quantity cannot be negative");
  if (!s.exists) return reject("not_found", "the buyer has no basket");
  if (is_blank(c.book_id)) return reject("id_required", "an item needs a book id");
  auto it = find_item(s.items, c.book_id);
  if (c.quantity == 0) {
    if (it == s.items.end()) return events{};
    return events{basket_item_removed{s.buyer_id, c.book_id}};
  }
  if (it != s.items.end() && it->quantity == c.quantity) return events{};
  return events{basket_item_updated{s.buyer_id, c.book_id, c.quantity}};
}

decision handle(const delete_basket&, const basket_state& s) {
  if (!s.exists) return reject("not_found", "the buyer has no basket");
  return events{basket_deleted{s.buyer_id}};
}

}  // namespace

troupe::decision<basket::event> basket::decide(const command& c, const state& s) {
  return std::visit([&](const auto& cmd) { return handle(cmd, s); }, c);
}

basket::state basket::evolve(state s, const event& e) {
  std::visit(overloaded{
                 [&](const basket_saved& e) {
                   s.buyer_id = e.buyer_id;
                   s.exists = true;
                   s.items = e.items;
                 },
                 [&](const basket_item_updated& e) {
                   if (auto it = find_item(s.items, e.book_id); it != s.items.end())
                     it->quantity = e.quantity;
                   else
                     s.items.push_back({e.book_id, e.quantity});
                 },
                 [&](const basket_item_removed& e) {
                   if (auto it = find_item(s.items, e.book_id); it != s.items.end())
                     s.items.erase(it);
                 },
                 [&](const basket_deleted&) {
                   s.exists = false;
                   s.items.clear();
                 },
             },
             e);
  return s;
}

}  // namespace bookstore
