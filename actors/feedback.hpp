#pragma once
// The feedback aggregate (stream `feedback-<feedback_id>`): one buyer's
// rating and comment on one book. The book's average is kept by the book
// aggregate (add_rating/remove_rating), fed from these events by a saga.
// Pure decider; hosted by the runtime's aggregate actor.

#include <boost/describe.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "actors/common.hpp"
#include "runtime/decider.hpp"

namespace bookstore {

/// In characters (code points), as a user would count them.
inline constexpr std::size_t max_comment_length = 1000;

// ---- commands ---------------------------------------------------------------

struct create_feedback {
  std::string feedback_id;
  std::string book_id;
  int rating = 0;
  std::string comment;
  std::int64_t created_at = 0;  // ms since epoch
  bool operator==(const create_feedback&) const = default;
};
BOOST_DESCRIBE_STRUCT(create_feedback, (), (feedback_id, book_id, rating, comment, created_at))

struct delete_feedback {
  std::string feedback_id;
  bool operator==(const delete_feedback&) const = default;
};
BOOST_DESCRIBE_STRUCT(delete_feedback, (), (feedback_id))

// ---- events -----------------------------------------------------------------

struct feedback_created {
  static constexpr std::string_view event_type = "feedback_created";
  static constexpr int schema_version = 1;
  std::string feedback_id;
  std::string book_id;
  int rating = 0;
  std::string comment;
  std::int64_t created_at = 0;
  bool operator==(const feedback_created&) const = default;
};
BOOST_DESCRIBE_STRUCT(feedback_created, (), (feedback_id, book_id, rating, comment, created_at))

/// Names the book so the saga that removes the rating needs no lookup.
struct feedback_deleted {
  static constexpr std::string_view event_type = "feedback_deleted";
  static constexpr int schema_version = 1;
  std::string feedback_id;
  std::string book_id;
  bool operator==(const feedback_deleted&) const = default;
};
BOOST_DESCRIBE_STRUCT(feedback_deleted, (), (feedback_id, book_id))

// ---- state ------------------------------------------------------------------

struct feedback_state {
  std::string feedback_id;
  lifecycle status = lifecycle::absent;
  std::string book_id;
  int rating = 0;
  bool operator==(const feedback_state&) const = default;
};
BOOST_DESCRIBE_STRUCT(feedback_state, (), (feedback_id, status, book_id, rating))

// ---- decider ----------------------------------------------------------------

struct feedback {
  static constexpr std::string_view category = "feedback";
  using state = feedback_state;
  using command = std::variant<create_feedback, delete_feedback>;
  using event = std::variant<feedback_created, feedback_deleted>;

  static state initial() { return {}; }
  static troupe::decision<event> decide(const command& c, const state& s);
  static state evolve(state s, const event& e);
};
static_assert(troupe::decider<feedback>);

}  // namespace bookstore
