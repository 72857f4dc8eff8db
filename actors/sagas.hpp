#pragma once
// The bookstore's workflows, as pure saga definitions (runtime/saga.hpp).
//
// order_fulfilment (BookWorm's order state machine, made real), one
// instance per order:
//
//   order_placed -> reserving      reserve stock of every book, authorise the
//                                  total on the finance account and delete the
//                                  buyer's basket (best effort), all at once
//                -> completing     complete the order
//                -> settling       commit the reserved stock, capture payment
//                -> completed
//   Three round trips of steps in all. (Until 2026-11-27 the basket and the
//   payment were two more, one after the other, and the basket was cleared
//   only once the stock was reserved: `clearing_basket` and `authorising`
//   are statuses only registry rows written then show.)
//   a reservation or the payment rejected (out of stock, unknown book, over
//   the credit limit) or given up after retries
//                -> compensating   release what was reserved, void the payment
//                -> cancelling     cancel the order with the reason
//                -> cancelled
//   the order cancelled by someone else meanwhile: compensate, then cancelled
//   completing given up (the order may or may not be complete): cancel it
//   first; accepted -> compensate; refused because it completed -> settle
//
// rating, one instance per feedback:
//
//   feedback_created -> rating (add the rating to the book) -> rated
//   book missing (add rejected) -> compensating (delete the feedback) -> rejected
//   feedback_deleted while rated -> removing (remove the rating) -> removed

#include <string>
#include <variant>
#include <vector>

#include "actors/feedback.hpp"
#include "actors/order.hpp"
#include "runtime/saga.hpp"

namespace bookstore {

enum class fulfilment_status {
  none,
  reserving,
  clearing_basket,  // no longer entered: see above
  authorising,      // no longer entered: see above
  completing,
  verifying,  // completing was given up: cancelling first tells which way it went
  settling,
  compensating,
  cancelling,
  completed,
  cancelled,
  failed  // the order's cancel, or its check, was given up: the dead letter says what to replay
};
BOOST_DESCRIBE_ENUM(fulfilment_status, none, reserving, clearing_basket, authorising, completing,
                    verifying, settling, compensating, cancelling, completed, cancelled, failed)

struct order_fulfilment_state {
  std::string order_id;
  std::string buyer_id;
  std::vector<order_item> items;
  std::int64_t total = 0;
  fulfilment_status status = fulfilment_status::none;
  std::vector<std::string> waiting;   // steps sent and not yet answered
  std::vector<std::string> reserved;  // books whose stock is (or may be) reserved
  bool payment_authorised = false;    // or may be: voided when compensating
  bool order_cancelled = false;       // the order is cancelled: no cancel command needed
  std::string cancel_reason;
  bool operator==(const order_fulfilment_state&) const = default;
};
BOOST_DESCRIBE_STRUCT(order_fulfilment_state, (),
                      (order_id, buyer_id, items, total, status, waiting, reserved,
                       payment_authorised, order_cancelled, cancel_reason))

struct order_fulfilment {
  static constexpr std::string_view name = "orderfulfilment";
  static constexpr std::string_view source_category = "order";  // its events' stream category
  using state = order_fulfilment_state;
  using event = std::variant<order_placed, order_cancelled>;

  static std::string correlate(const event& e);
  static bool starts(const event& e) { return std::holds_alternative<order_placed>(e); }
  static void on_event(state& s, const event& e, troupe::saga_context& ctx);
  static void on_step(state& s, const troupe::step_result& r, troupe::saga_context& ctx);
  static std::string_view status(const state& s);
};

enum class rating_status { none, rating, rated, compensating, removing, rejected, removed, failed };
BOOST_DESCRIBE_ENUM(rating_status, none, rating, rated, compensating, removing, rejected, removed,
                    failed)

struct rating_state {
  std::string feedback_id;
  std::string book_id;
  int rating = 0;
  rating_status status = rating_status::none;
  bool deleted_meanwhile = false;  // feedback_deleted arrived while the rating was being added
  bool operator==(const rating_state&) const = default;
};
BOOST_DESCRIBE_STRUCT(rating_state, (), (feedback_id, book_id, rating, status, deleted_meanwhile))

struct rating_saga {
  static constexpr std::string_view name = "rating";
  static constexpr std::string_view source_category = "feedback";
  using state = rating_state;
  using event = std::variant<feedback_created, feedback_deleted>;

  static std::string correlate(const event& e);
  static bool starts(const event& e) { return std::holds_alternative<feedback_created>(e); }
  static void on_event(state& s, const event& e, troupe::saga_context& ctx);
  static void on_step(state& s, const troupe::step_result& r, troupe::saga_context& ctx);
  static std::string_view status(const state& s);
};

}  // namespace bookstore
