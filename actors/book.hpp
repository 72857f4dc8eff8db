#pragma once
// The book aggregate (stream `book-<book_id>`): catalog details, stock with
// per-order reservations, and ratings per feedback. Pure decider; hosted by
// the runtime's aggregate actor, one instance per book.

#include <boost/describe.hpp>
#include <boost/json.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "actors/common.hpp"
#include "runtime/decider.hpp"

namespace bookstore {

// ---- commands ---------------------------------------------------------------

struct create_book {
  std::string book_id;
  std::string name;
  std::string description;
  std::int64_t price = 0;  // cents
  std::optional<std::int64_t> discount_price;
  std::string category_id;
  std::string publisher_id;
  std::vector<std::string> author_ids;
  std::int64_t initial_stock = 0;
  bool operator==(const create_book&) const = default;
};
BOOST_DESCRIBE_STRUCT(create_book, (),
                      (book_id, name, description, price, discount_price, category_id, publisher_id,
                       author_ids, initial_stock))

/// Replaces the catalog details; stock and ratings are untouched.
struct update_book {
  std::string book_id;
  std::string name;
  std::string description;
  std::int64_t price = 0;
  std::optional<std::int64_t> discount_price;
  std::string category_id;
  std::string publisher_id;
  std::vector<std::string> author_ids;
  bool operator==(const update_book&) const = default;
};
BOOST_DESCRIBE_STRUCT(update_book, (),
                      (book_id, name, description, price, discount_price, category_id, publisher_id,
                       author_ids))

struct delete_book {
  std::string book_id;
  bool operator==(const delete_book&) const = default;
};
BOOST_DESCRIBE_STRUCT(delete_book, (), (book_id))

struct add_stock {
  std::string book_id;
  std::int64_t quantity = 0;
  bool operator==(const add_stock&) const = default;
};
BOOST_DESCRIBE_STRUCT(add_stock, (), (book_id, quantity))

struct reserve_stock {
  std::string book_id;
  std::string order_id;
  std::int64_t quantity = 0;
  bool operator==(const reserve_stock&) const = default;
};
BOOST_DESCRIBE_STRUCT(reserve_stock, (), (book_id, order_id, quantity))

/// The order was cancelled: its reserved copies become available again.
struct release_stock {
  std::string book_id;
  std::string order_id;
  bool operator==(const release_stock&) const = default;
};
BOOST_DESCRIBE_STRUCT(release_stock, (), (book_id, order_id))

/// The order completed: its reserved copies leave the shelf for good.
struct commit_stock {
  std::string book_id;
  std::string order_id;
  bool operator==(const commit_stock&) const = default;
};
BOOST_DESCRIBE_STRUCT(commit_stock, (), (book_id, order_id))

struct add_rating {
  std::string book_id;
  std::string feedback_id;
  int rating = 0;
  bool operator==(const add_rating&) const = default;
};
BOOST_DESCRIBE_STRUCT(add_rating, (), (book_id, feedback_id, rating))

struct remove_rating {
  std::string book_id;
  std::string feedback_id;
  bool operator==(const remove_rating&) const = default;
};
BOOST_DESCRIBE_STRUCT(remove_rating, (), (book_id, feedback_id))

// ---- events -----------------------------------------------------------------

struct book_created {
  static constexpr std::string_view event_type = "book_created";
  /// v1 had a single `author_id` string; v2 allows several authors.
  static constexpr int schema_version = 2;
  static void upcast(int from_version, boost::json::object& data);

  std::string book_id;
  std::string name;
  std::string description;
  std::int64_t price = 0;
  std::optional<std::int64_t> discount_price;
  std::string category_id;
  std::string publisher_id;
  std::vector<std::string> author_ids;
  std::int64_t initial_stock = 0;
  bool operator==(const book_created&) const = default;
};
BOOST_DESCRIBE_STRUCT(book_created, (),
                      (book_id, name, description, price, discount_price, category_id, publisher_id,
                       author_ids, initial_stock))

struct book_updated {
  static constexpr std::string_view event_type = "book_updated";
  static constexpr int schema_version = 1;
  std::string book_id;
  std::string name;
  std::string description;
  std::int64_t price = 0;
  std::optional<std::int64_t> discount_price;
  std::string category_id;
  std::string publisher_id;
  std::vector<std::string> author_ids;
  bool operator==(const book_updated&) const = default;
};
BOOST_DESCRIBE_STRUCT(book_updated, (),
                      (book_id, name, description, price, discount_price, category_id, publisher_id,
                       author_ids))

struct book_deleted {
  static constexpr std::string_view event_type = "book_deleted";
  static constexpr int schema_version = 1;
  std::string book_id;
  bool operator==(const book_deleted&) const = default;
};
BOOST_DESCRIBE_STRUCT(book_deleted, (), (book_id))

struct stock_added {
  static constexpr std::string_view event_type = "stock_added";
  static constexpr int schema_version = 1;
  std::string book_id;
  std::int64_t quantity = 0;
  bool operator==(const stock_added&) const = default;
};
BOOST_DESCRIBE_STRUCT(stock_added, (), (book_id, quantity))

struct stock_reserved {
  static constexpr std::string_view event_type = "stock_reserved";
  static constexpr int schema_version = 1;
  std::string book_id;
  std::string order_id;
  std::int64_t quantity = 0;
  bool operator==(const stock_reserved&) const = default;
};
BOOST_DESCRIBE_STRUCT(stock_reserved, (), (book_id, order_id, quantity))

/// Carries the quantity so projections need not remember reservations.
struct stock_released {
  static constexpr std::string_view event_type = "stock_released";
  static constexpr int schema_version = 1;
  std::string book_id;
  std::string order_id;
  std::int64_t quantity = 0;
  bool operator==(const stock_released&) const = default;
};
BOOST_DESCRIBE_STRUCT(stock_released, (), (book_id, order_id, quantity))

struct stock_committed {
  static constexpr std::string_view event_type = "stock_committed";
  static constexpr int schema_version = 1;
  std::string book_id;
  std::string order_id;
  std::int64_t quantity = 0;
  bool operator==(const stock_committed&) const = default;
};
BOOST_DESCRIBE_STRUCT(stock_committed, (), (book_id, order_id, quantity))

/// Carries the resulting average and count: decide computes them once, and
/// replays and projections take them as recorded instead of redoing
/// floating-point arithmetic that could drift between builds.
struct rating_added {
  static constexpr std::string_view event_type = "rating_added";
  static constexpr int schema_version = 1;
  std::string book_id;
  std::string feedback_id;
  int rating = 0;
  double average_rating = 0;
  std::int64_t rating_count = 0;
  bool operator==(const rating_added&) const = default;
};
BOOST_DESCRIBE_STRUCT(rating_added, (),
                      (book_id, feedback_id, rating, average_rating, rating_count))

struct rating_removed {
  static constexpr std::string_view event_type = "rating_removed";
  static constexpr int schema_version = 1;
  std::string book_id;
  std::string feedback_id;
  int rating = 0;
  double average_rating = 0;
  std::int64_t rating_count = 0;
  bool operator==(const rating_removed&) const = default;
};
BOOST_DESCRIBE_STRUCT(rating_removed, (),
                      (book_id, feedback_id, rating, average_rating, rating_count))

// ---- state ------------------------------------------------------------------

struct book_state {
  std::string book_id;
  lifecycle status = lifecycle::absent;
  std::string name;
  std::string description;
  std::int64_t price = 0;
  std::optional<std::int64_t> discount_price;
  std::string category_id;
  std::string publisher_id;
  std::vector<std::string> author_ids;
  /// Copies in the warehouse, including reserved ones. Invariant:
  /// 0 <= reserved <= on_hand, so available = on_hand - reserved >= 0.
  std::int64_t on_hand = 0;
  std::int64_t reserved = 0;
  /// Open reservations by order id; makes reserve idempotent per order and
  /// lets release/commit know the exact quantity.
  std::map<std::string, std::int64_t> reservations;
  /// Ratings by feedback id; makes add/remove idempotent and exact.
  std::map<std::string, int> ratings;
  double average_rating = 0;
  bool operator==(const book_state&) const = default;

  std::int64_t available() const { return on_hand - reserved; }
};
BOOST_DESCRIBE_STRUCT(book_state, (),
                      (book_id, status, name, description, price, discount_price, category_id,
                       publisher_id, author_ids, on_hand, reserved, reservations, ratings,
                       average_rating))

// ---- decider ----------------------------------------------------------------

struct book {
  static constexpr std::string_view category = "book";
  using state = book_state;
  using command = std::variant<create_book, update_book, delete_book, add_stock, reserve_stock,
                               release_stock, commit_stock, add_rating, remove_rating>;
  using event = std::variant<book_created, book_updated, book_deleted, stock_added, stock_reserved,
                             stock_released, stock_committed, rating_added, rating_removed>;

  static state initial() { return {}; }
  static troupe::decision<event> decide(const command& c, const state& s);
  static state evolve(state s, const event& e);
};
static_assert(troupe::decider<book>);

}  // namespace bookstore
