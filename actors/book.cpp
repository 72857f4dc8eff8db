#include "actors/book.hpp"

#include <limits>

namespace bookstore {

void book_created::upcast(int from_version, boost::json::object& data) {
  if (from_version == 1) {
    // v1 books had at most one author; an empty id meant "unknown author",
    // which v2 spells as an empty list rather than a list holding "".
    boost::json::array ids;
    if (const auto* id = data.if_contains("author_id");
        id != nullptr && id->is_string() && !id->as_string().empty())
      ids.push_back(*id);
    data.erase("author_id");
    data["author_ids"] = std::move(ids);
  }
}

namespace {

using decision = troupe::decision<book::event>;
using troupe::reject;
using events = std::vector<book::event>;

std::optional<troupe::rejection> check_details(std::string_view name, std::int64_t price,
                                               const std::optional<std::int64_t>& discount) {
  if (is_blank(name)) return troupe::rejection{"name_required", "a book needs a name"};
  if (price < 0) return troupe::rejection{"invalid_price", "the price cannot be negative"};
  if (discount && *discount < 0)
    return troupe::rejection{"invalid_price", "the discount price cannot be negative"};
  if (discount && *discount > price)
    return troupe::rejection{"discount_above_price",
                             "the discount price cannot be higher than the price"};
  return std::nullopt;
}

/// Most commands need a book that exists and is still sold.
std::optional<troupe::rejection> check_active(const book_state& s) {
  if (s.status == lifecycle::absent) return troupe::rejection{"not_found", "no such book"};
  if (s.status == lifecycle::deleted)
    return troupe::rejection{"book_deleted", "the book '" + s.name + "' was deleted"};
  return std::nullopt;
}

double average_of(const std::map<std::string, int>& ratings) {
  if (ratings.empty()) return 0;
  // Summing the kept ratings is what (avg·n ± r)/(n ± 1) computes, without
  // the rounding error that formula accumulates over many updates.
  std::int64_t sum = 0;
  for (const auto& [id, r] : ratings) sum += r;
  return static_cast<double>(sum) / static_cast<double>(ratings.size());
}

decision handle(const create_book& c, const book_state& s) {
  if (s.status == lifecycle::deleted)
    return reject("book_deleted", "the book '" + s.name + "' was deleted");
  if (s.status == lifecycle::active)
    return reject("already_exists", "the book '" + c.book_id + "' already exists");
  if (is_blank(c.book_id)) return reject("id_required", "a book needs an id");
  if (auto r = check_details(c.name, c.price, c.discount_price)) return std::unexpected(*r);
  if (c.initial_stock < 0)
    return reject("invalid_quantity", "the initial stock cannot be negative");
  return events{book_created{c.book_id, c.name, c.description, c.price, c.discount_price,
                             c.category_id, c.publisher_id, c.author_ids, c.initial_stock}};
}

decision handle(const update_book& c, const book_state& s) {
  if (auto r = check_active(s)) return std::unexpected(*r);
  if (auto r = check_details(c.name, c.price, c.discount_price)) return std::unexpected(*r);
  // An unchanged book produces no event, so a resubmitted form is harmless
  // and projections are not woken for nothing.
  if (c.name == s.name && c.description == s.description && c.price == s.price &&
      c.discount_price == s.discount_price && c.category_id == s.category_id &&
      c.publisher_id == s.publisher_id && c.author_ids == s.author_ids)
    return events{};
  return events{book_updated{s.book_id, c.name, c.description, c.price, c.discount_price,
                             c.category_id, c.publisher_id, c.author_ids}};
}

decision handle(const delete_book&, const book_state& s) {
  if (auto r = check_active(s)) return std::unexpected(*r);
  return events{book_deleted{s.book_id}};
}

decision handle(const add_stock& c, const book_state& s) {
  if (auto r = check_active(s)) return std::unexpected(*r);
  if (c.quantity <= 0) return reject("invalid_quantity", "the quantity to add must be positive");
  if (c.quantity > std::numeric_limits<std::int64_t>::max() - s.on_hand)
    return reject("invalid_quantity", "the quantity to add is too large");
  return events{stock_added{s.book_id, c.quantity}};
}

decision handle(const reserve_stock& c, const book_state& s) {
  if (auto r = check_active(s)) return std::unexpected(*r);
  if (is_blank(c.order_id)) return reject("id_required", "a reservation needs an order id");
  if (c.quantity <= 0)
    return reject("invalid_quantity", "the quantity to reserve must be positive");
  // A redelivered reservation for the same order must not take stock twice.
  if (s.reservations.contains(c.order_id)) return events{};
  if (s.available() < c.quantity)
    return reject("insufficient_stock", "only " + std::to_string(s.available()) + " of '" + s.name +
                                            "' available, " + std::to_string(c.quantity) +
                                            " requested");
  return events{stock_reserved{s.book_id, c.order_id, c.quantity}};
}

// Release and commit settle reservations made before a deletion: the order
// that holds them must still be able to finish either way.
decision handle(const release_stock& c, const book_state& s) {
  if (s.status == lifecycle::absent) return reject("not_found", "no such book");
  auto it = s.reservations.find(c.order_id);
  if (it == s.reservations.end()) return events{};
  return events{stock_released{s.book_id, c.order_id, it->second}};
}

decision handle(const commit_stock& c, const book_state& s) {
  if (s.status == lifecycle::absent) return reject("not_found", "no such book");
  auto it = s.reservations.find(c.order_id);
  if (it == s.reservations.end()) return events{};
  return events{stock_committed{s.book_id, c.order_id, it->second}};
}

decision handle(const add_rating& c, const book_state& s) {
  if (auto r = check_active(s)) return std::unexpected(*r);
  if (is_blank(c.feedback_id)) return reject("id_required", "a rating needs a feedback id");
  if (!is_valid_rating(c.rating))
    return reject("invalid_rating", "a rating is a whole number from 0 to 5");
  if (s.ratings.contains(c.feedback_id)) return events{};
  auto after = s.ratings;
  after.emplace(c.feedback_id, c.rating);
  return events{rating_added{s.book_id, c.feedback_id, c.rating, average_of(after),
                             static_cast<std::int64_t>(after.size())}};
}

decision handle(const remove_rating& c, const book_state& s) {
  if (auto r = check_active(s)) return std::unexpected(*r);
  auto it = s.ratings.find(c.feedback_id);
  if (it == s.ratings.end()) return events{};
  auto after = s.ratings;
  after.erase(c.feedback_id);
  return events{rating_removed{s.book_id, c.feedback_id, it->second, average_of(after),
                               static_cast<std::int64_t>(after.size())}};
}

}  // namespace

troupe::decision<book::event> book::decide(const command& c, const state& s) {
  return std::visit([&](const auto& cmd) { return handle(cmd, s); }, c);
}

book::state book::evolve(state s, const event& e) {
  std::visit(overloaded{
                 [&](const book_created& e) {
                   s.book_id = e.book_id;
                   s.status = lifecycle::active;
                   s.name = e.name;
                   s.description = e.description;
                   s.price = e.price;
                   s.discount_price = e.discount_price;
                   s.category_id = e.category_id;
                   s.publisher_id = e.publisher_id;
                   s.author_ids = e.author_ids;
                   s.on_hand = e.initial_stock;
                 },
                 [&](const book_updated& e) {
                   s.name = e.name;
                   s.description = e.description;
                   s.price = e.price;
                   s.discount_price = e.discount_price;
                   s.category_id = e.category_id;
                   s.publisher_id = e.publisher_id;
                   s.author_ids = e.author_ids;
                 },
                 [&](const book_deleted&) { s.status = lifecycle::deleted; },
                 [&](const stock_added& e) { s.on_hand += e.quantity; },
                 [&](const stock_reserved& e) {
                   s.reserved += e.quantity;
                   s.reservations[e.order_id] = e.quantity;
                 },
                 [&](const stock_released& e) {
                   s.reserved -= e.quantity;
                   s.reservations.erase(e.order_id);
                 },
                 [&](const stock_committed& e) {
                   s.on_hand -= e.quantity;
                   s.reserved -= e.quantity;
                   s.reservations.erase(e.order_id);
                 },
                 [&](const rating_added& e) {
                   s.ratings[e.feedback_id] = e.rating;
                   s.average_rating = e.average_rating;
                 },
                 [&](const rating_removed& e) {
                   s.ratings.erase(e.feedback_id);
                   s.average_rating = e.average_rating;
                 },
             },
             e);
  return s;
}

}  // namespace bookstore
