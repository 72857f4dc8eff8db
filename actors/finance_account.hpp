#pragma once
// The finance account aggregate (stream `finance-<buyer_id>`): a buyer's
// credit line, against which each order's payment is authorised, then
// captured when the order completes or voided when it is cancelled. The
// payment id is the order id. Pure decider; hosted by the runtime's aggregate
// actor.

#include <boost/describe.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "actors/common.hpp"
#include "runtime/decider.hpp"

namespace bookstore {

enum class payment_status { authorised, captured, voided };
BOOST_DESCRIBE_ENUM(payment_status, authorised, captured, voided)

struct payment {
  std::int64_t amount = 0;  // cents
  payment_status status = payment_status::authorised;
  bool operator==(const payment&) const = default;
};
BOOST_DESCRIBE_STRUCT(payment, (), (amount, status))

// ---- commands ---------------------------------------------------------------

struct open_account {
  std::string buyer_id;
  std::int64_t credit_limit = 0;  // cents
  bool operator==(const open_account&) const = default;
};
BOOST_DESCRIBE_STRUCT(open_account, (), (buyer_id, credit_limit))

struct change_credit_limit {
  std::string buyer_id;
  std::int64_t credit_limit = 0;
  bool operator==(const change_credit_limit&) const = default;
};
BOOST_DESCRIBE_STRUCT(change_credit_limit, (), (buyer_id, credit_limit))

struct authorise_payment {
  std::string buyer_id;
  std::string payment_id;  // the order id
  std::int64_t amount = 0;
  bool operator==(const authorise_payment&) const = default;
};
BOOST_DESCRIBE_STRUCT(authorise_payment, (), (buyer_id, payment_id, amount))

struct void_payment {
  std::string buyer_id;
  std::string payment_id;
  bool operator==(const void_payment&) const = default;
};
BOOST_DESCRIBE_STRUCT(void_payment, (), (buyer_id, payment_id))

struct capture_payment {
  std::string buyer_id;
  std::string payment_id;
  bool operator==(const capture_payment&) const = default;
};
BOOST_DESCRIBE_STRUCT(capture_payment, (), (buyer_id, payment_id))

// ---- events -----------------------------------------------------------------

struct account_opened {
  static constexpr std::string_view event_type = "account_opened";
  static constexpr int schema_version = 1;
  std::string buyer_id;
  std::int64_t credit_limit = 0;
  bool operator==(const account_opened&) const = default;
};
BOOST_DESCRIBE_STRUCT(account_opened, (), (buyer_id, credit_limit))

struct credit_limit_changed {
  static constexpr std::string_view event_type = "credit_limit_changed";
  static constexpr int schema_version = 1;
  std::string buyer_id;
  std::int64_t credit_limit = 0;
  bool operator==(const credit_limit_changed&) const = default;
};
BOOST_DESCRIBE_STRUCT(credit_limit_changed, (), (buyer_id, credit_limit))

struct payment_authorised {
  static constexpr std::string_view event_type = "payment_authorised";
  static constexpr int schema_version = 1;
  std::string buyer_id;
  std::string payment_id;
  std::int64_t amount = 0;
  bool operator==(const payment_authorised&) const = default;
};
BOOST_DESCRIBE_STRUCT(payment_authorised, (), (buyer_id, payment_id, amount))

/// Carries the amount so projections of available credit need no lookup.
struct payment_voided {
  static constexpr std::string_view event_type = "payment_voided";
  static constexpr int schema_version = 1;
  std::string buyer_id;
  std::string payment_id;
  std::int64_t amount = 0;
  bool operator==(const payment_voided&) const = default;
};
BOOST_DESCRIBE_STRUCT(payment_voided, (), (buyer_id, payment_id, amount))

struct payment_captured {
  static constexpr std::string_view event_type = "payment_captured";
  static constexpr int schema_version = 1;
  std::string buyer_id;
  std::string payment_id;
  std::int64_t amount = 0;
  bool operator==(const payment_captured&) const = default;
};
BOOST_DESCRIBE_STRUCT(payment_captured, (), (buyer_id, payment_id, amount))

// ---- state ------------------------------------------------------------------

struct finance_account_state {
  std::string buyer_id;
  bool opened = false;
  std::int64_t credit_limit = 0;
  /// Open (authorised) payments, and the last `settled_payments_kept`
  /// settled (captured or voided) ones, so that a late or repeated command
  /// about a payment is recognised instead of re-applied. Older settled
  /// payments are forgotten: an account lives as long as its buyer, and
  /// keeping every payment made its state and snapshots grow with every
  /// order.
  std::map<std::string, payment> payments;
  /// The settled payments still in `payments`, oldest first.
  std::vector<std::string> settled_order;
  /// Credit in use: authorised plus captured amounts. Capturing moves money
  /// from "held" to "charged" but the buyer still owes it, so it keeps
  /// counting against the limit; only a void gives credit back.
  std::int64_t authorised_total = 0;
  std::int64_t captured_total = 0;
  bool operator==(const finance_account_state&) const = default;
};
BOOST_DESCRIBE_STRUCT(finance_account_state, (),
                      (buyer_id, opened, credit_limit, payments, settled_order, authorised_total,
                       captured_total))

// ---- decider ----------------------------------------------------------------

struct finance_account {
  static constexpr std::string_view category = "finance";
  /// 2: settled payments beyond `settled_payments_kept` are forgotten
  /// (version 1 snapshots kept them all; they are ignored and the stream
  /// replayed).
  static constexpr int state_schema_version = 2;
  /// How many settled payments an account remembers. A command about a
  /// payment settled longer ago than that many settlements of the same
  /// account is treated as about an unknown payment: a capture is rejected
  /// `payment_not_found`, a void does nothing, an authorisation holds
  /// credit again. The fulfilment saga's attempts at a step end within
  /// minutes (sagas.max_attempts, 3, each given sagas.step_timeout_ms, 30 s
  /// by default); a buyer settles nowhere near 256 orders in that time.
  static constexpr std::size_t settled_payments_kept = 256;
  using state = finance_account_state;
  using command = std::variant<open_account, change_credit_limit, authorise_payment, void_payment,
                               capture_payment>;
  using event = std::variant<account_opened, credit_limit_changed, payment_authorised,
                             payment_voided, payment_captured>;

  static state initial() { return {}; }
  static troupe::decision<event> decide(const command& c, const state& s);
  static state evolve(state s, const event& e);
};
static_assert(troupe::decider<finance_account>);

}  // namespace bookstore
