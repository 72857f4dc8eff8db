#include "actors/finance_account.hpp"

#include <optional>

namespace bookstore {
namespace {

using decision = troupe::decision<finance_account::event>;
using troupe::reject;
using events = std::vector<finance_account::event>;

std::optional<troupe::rejection> check_opened(const finance_account_state& s) {
  if (!s.opened) return troupe::rejection{"account_not_found", "the buyer has no account"};
  return std::nullopt;
}

decision handle(const open_account& c, const finance_account_state& s) {
  if (s.opened) return reject("already_exists", "the buyer already has an account");
  if (is_blank(c.buyer_id)) return reject("id_required", "an account needs a buyer id");
  if (c.credit_limit < 0) return reject("invalid_amount", "a credit limit cannot be negative");
  return events{account_opened{c.buyer_id, c.credit_limit}};
}

decision handle(const change_credit_limit& c, const finance_account_state& s) {
  if (auto r = check_opened(s)) return std::unexpected(*r);
  if (c.credit_limit < 0) return reject("invalid_amount", "a credit limit cannot be negative");
  // Lowering the limit below the credit in use is allowed: it only stops new
  // authorisations, it does not undo the ones already given.
  if (c.credit_limit == s.credit_limit) return events{};
  return events{credit_limit_changed{s.buyer_id, c.credit_limit}};
}

decision handle(const authorise_payment& c, const finance_account_state& s) {
  if (auto r = check_opened(s)) return std::unexpected(*r);
  if (is_blank(c.payment_id)) return reject("id_required", "a payment needs an id");
  if (c.amount <= 0) return reject("invalid_amount", "a payment must be positive");
  if (auto it = s.payments.find(c.payment_id); it != s.payments.end()) {
    // Authorising again after a void would hold credit for a cancelled order.
    if (it->second.status == payment_status::voided)
      return reject("invalid_status", "the payment '" + c.payment_id + "' was voided");
    return events{};
  }
  // Written as a subtraction so a huge amount cannot overflow the sum.
  if (c.amount > s.credit_limit - s.authorised_total)
    return reject("credit_limit_exceeded", "the payment of " + std::to_string(c.amount) +
                                               " cents exceeds the " +
                                               std::to_string(s.credit_limit - s.authorised_total) +
                                               " cents of credit left");
  return events{payment_authorised{s.buyer_id, c.payment_id, c.amount}};
}

decision handle(const void_payment& c, const finance_account_state& s) {
  if (auto r = check_opened(s)) return std::unexpected(*r);
  auto it = s.payments.find(c.payment_id);
  if (it == s.payments.end() || it->second.status == payment_status::voided) return events{};
  if (it->second.status == payment_status::captured)
    return reject("invalid_status", "the payment '" + c.payment_id + "' was already captured");
  return events{payment_voided{s.buyer_id, c.payment_id, it->second.amount}};
}

decision handle(const capture_payment& c, const finance_account_state& s) {
  if (auto r = check_opened(s)) return std::unexpected(*r);
  auto it = s.payments.find(c.payment_id);
  if (it == s.payments.end())
    return reject("payment_not_found", "no payment '" + c.payment_id + "' was authorised");
  if (it->second.status == payment_status::captured) return events{};
  if (it->second.status == payment_status::voided)
    return reject("invalid_status", "the payment '" + c.payment_id + "' was voided");
  return events{payment_captured{s.buyer_id, c.payment_id, it->second.amount}};
}

/// Marks a known payment settled and forgets the oldest settled one beyond
/// what the account keeps. Only decide() makes these events, and only for a
/// payment it found open.
void settle(finance_account_state& s, const std::string& payment_id, payment_status status) {
  auto it = s.payments.find(payment_id);
  if (it == s.payments.end()) return;
  it->second.status = status;
  s.settled_order.push_back(payment_id);
  if (s.settled_order.size() > finance_account::settled_payments_kept) {
    s.payments.erase(s.settled_order.front());
    s.settled_order.erase(s.settled_order.begin());
  }
}

}  // namespace

troupe::decision<finance_account::event> finance_account::decide(const command& c, const state& s) {
  return std::visit([&](const auto& cmd) { return handle(cmd, s); }, c);
}

finance_account::state finance_account::evolve(state s, const event& e) {
  std::visit(overloaded{
                 [&](const account_opened& e) {
                   s.buyer_id = e.buyer_id;
                   s.opened = true;
                   s.credit_limit = e.credit_limit;
                 },
                 [&](const credit_limit_changed& e) { s.credit_limit = e.credit_limit; },
                 [&](const payment_authorised& e) {
                   s.payments[e.payment_id] = payment{e.amount, payment_status::authorised};
                   s.authorised_total += e.amount;
                 },
                 [&](const payment_voided& e) {
                   settle(s, e.payment_id, payment_status::voided);
                   s.authorised_total -= e.amount;
                 },
                 [&](const payment_captured& e) {
                   settle(s, e.payment_id, payment_status::captured);
                   s.captured_total += e.amount;
                 },
             },
             e);
  return s;
}

}  // namespace bookstore
