#include "actors/finance_account.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

#include "runtime/testing/decider_spec.hpp"

namespace bookstore {
namespace {

using troupe::testing::decider_spec;

const account_opened opened{"u1", 10'000};

// ---- open / limit -----------------------------------------------------------

TEST(FinanceAccount, OpenGivesTheBuyerACreditLine) {
  decider_spec<finance_account> spec;
  spec.given({}).when(open_account{"u1", 10'000}).then({opened});
  EXPECT_TRUE(spec.current_state().opened);
  EXPECT_EQ(spec.current_state().credit_limit, 10'000);
}

TEST(FinanceAccount, OpenAcceptsAZeroLimit) {
  decider_spec<finance_account>()
      .given({})
      .when(open_account{"u1", 0})
      .then({account_opened{"u1", 0}});
}

TEST(FinanceAccount, OpenRejectsANegativeLimit) {
  decider_spec<finance_account>()
      .given({})
      .when(open_account{"u1", -1})
      .then_rejected("invalid_amount");
}

TEST(FinanceAccount, OpenRejectsABlankBuyerId) {
  decider_spec<finance_account>()
      .given({})
      .when(open_account{"", 100})
      .then_rejected("id_required");
}

TEST(FinanceAccount, OpenTwiceIsRejected) {
  decider_spec<finance_account>()
      .given({opened})
      .when(open_account{"u1", 5})
      .then_rejected("already_exists");
}

TEST(FinanceAccount, ChangeLimitRecordsTheNewLimit) {
  decider_spec<finance_account> spec;
  spec.given({opened})
      .when(change_credit_limit{"u1", 20'000})
      .then({credit_limit_changed{"u1", 20'000}});
  EXPECT_EQ(spec.current_state().credit_limit, 20'000);
}

TEST(FinanceAccount, ChangeLimitBelowTheCreditInUseIsAccepted) {
  decider_spec<finance_account>()
      .given({opened, payment_authorised{"u1", "o1", 8'000}})
      .when(change_credit_limit{"u1", 1'000})
      .then({credit_limit_changed{"u1", 1'000}});
}

TEST(FinanceAccount, ChangeLimitToTheSameValueRecordsNothing) {
  decider_spec<finance_account>()
      .given({opened})
      .when(change_credit_limit{"u1", 10'000})
      .then_nothing();
}

TEST(FinanceAccount, ChangeLimitRejectsANegativeLimit) {
  decider_spec<finance_account>()
      .given({opened})
      .when(change_credit_limit{"u1", -1})
      .then_rejected("invalid_amount");
}

TEST(FinanceAccount, ChangeLimitRejectsAnAccountNeverOpened) {
  decider_spec<finance_account>()
      .given({})
      .when(change_credit_limit{"u1", 1})
      .then_rejected("account_not_found");
}

// ---- authorise --------------------------------------------------------------

TEST(FinanceAccount, AuthoriseHoldsCredit) {
  decider_spec<finance_account> spec;
  spec.given({opened})
      .when(authorise_payment{"u1", "o1", 4'000})
      .then({payment_authorised{"u1", "o1", 4'000}});
  EXPECT_EQ(spec.current_state().authorised_total, 4'000);
}

TEST(FinanceAccount, AuthoriseAcceptsExactlyTheCreditLeft) {
  decider_spec<finance_account>()
      .given({opened, payment_authorised{"u1", "o1", 4'000}})
      .when(authorise_payment{"u1", "o2", 6'000})
      .then({payment_authorised{"u1", "o2", 6'000}});
}

TEST(FinanceAccount, AuthoriseRejectsMoreThanTheCreditLeft) {
  decider_spec<finance_account>()
      .given({opened, payment_authorised{"u1", "o1", 4'000}})
      .when(authorise_payment{"u1", "o2", 6'001})
      .then_rejected("credit_limit_exceeded");
}

TEST(FinanceAccount, AuthoriseRejectsAHugeAmountWithoutOverflowing) {
  decider_spec<finance_account>()
      .given({opened, payment_authorised{"u1", "o1", 4'000}})
      .when(authorise_payment{"u1", "o2", std::numeric_limits<std::int64_t>::max()})
      .then_rejected("credit_limit_exceeded");
}

TEST(FinanceAccount, CapturedPaymentsStillCountAgainstTheLimit) {
  decider_spec<finance_account>()
      .given({opened, payment_authorised{"u1", "o1", 8'000}, payment_captured{"u1", "o1", 8'000}})
      .when(authorise_payment{"u1", "o2", 2'001})
      .then_rejected("credit_limit_exceeded");
}

TEST(FinanceAccount, AuthoriseTheSamePaymentAgainRecordsNothing) {
  decider_spec<finance_account>()
      .given({opened, payment_authorised{"u1", "o1", 4'000}})
      .when(authorise_payment{"u1", "o1", 4'000})
      .then_nothing();
}

TEST(FinanceAccount, AuthoriseRejectsAVoidedPayment) {
  decider_spec<finance_account>()
      .given({opened, payment_authorised{"u1", "o1", 4'000}, payment_voided{"u1", "o1", 4'000}})
      .when(authorise_payment{"u1", "o1", 4'000})
      .then_rejected("invalid_status");
}

TEST(FinanceAccount, AuthoriseRejectsAZeroAmount) {
  decider_spec<finance_account>()
      .given({opened})
      .when(authorise_payment{"u1", "o1", 0})
      .then_rejected("invalid_amount");
}

TEST(FinanceAccount, AuthoriseRejectsABlankPaymentId) {
  decider_spec<finance_account>()
      .given({opened})
      .when(authorise_payment{"u1", "", 1})
      .then_rejected("id_required");
}

TEST(FinanceAccount, AuthoriseRejectsAnAccountNeverOpened) {
  decider_spec<finance_account>()
      .given({})
      .when(authorise_payment{"u1", "o1", 1})
      .then_rejected("account_not_found");
}

// ---- void -------------------------------------------------------------------

TEST(FinanceAccount, VoidGivesTheCreditBack) {
  decider_spec<finance_account> spec;
  spec.given({opened, payment_authorised{"u1", "o1", 4'000}})
      .when(void_payment{"u1", "o1"})
      .then({payment_voided{"u1", "o1", 4'000}});
  EXPECT_EQ(spec.current_state().authorised_total, 0);
  EXPECT_EQ(spec.current_state().payments.at("o1").status, payment_status::voided);
}

TEST(FinanceAccount, VoidAnUnknownPaymentRecordsNothing) {
  decider_spec<finance_account>().given({opened}).when(void_payment{"u1", "o1"}).then_nothing();
}

TEST(FinanceAccount, VoidTwiceRecordsNothingTheSecondTime) {
  decider_spec<finance_account>()
      .given({opened, payment_authorised{"u1", "o1", 4'000}, payment_voided{"u1", "o1", 4'000}})
      .when(void_payment{"u1", "o1"})
      .then_nothing();
}

TEST(FinanceAccount, VoidRejectsACapturedPayment) {
  decider_spec<finance_account>()
      .given({opened, payment_authorised{"u1", "o1", 4'000}, payment_captured{"u1", "o1", 4'000}})
      .when(void_payment{"u1", "o1"})
      .then_rejected("invalid_status");
}

TEST(FinanceAccount, VoidRejectsAnAccountNeverOpened) {
  decider_spec<finance_account>()
      .given({})
      .when(void_payment{"u1", "o1"})
      .then_rejected("account_not_found");
}

// ---- capture ----------------------------------------------------------------

TEST(FinanceAccount, CaptureChargesTheAuthorisedAmount) {
  decider_spec<finance_account> spec;
  spec.given({opened, payment_authorised{"u1", "o1", 4'000}})
      .when(capture_payment{"u1", "o1"})
      .then({payment_captured{"u1", "o1", 4'000}});
  EXPECT_EQ(spec.current_state().captured_total, 4'000);
  EXPECT_EQ(spec.current_state().authorised_total, 4'000);
  EXPECT_EQ(spec.current_state().credit_limit, 10'000);
}

TEST(FinanceAccount, CaptureTwiceRecordsNothingTheSecondTime) {
  decider_spec<finance_account>()
      .given({opened, payment_authorised{"u1", "o1", 4'000}, payment_captured{"u1", "o1", 4'000}})
      .when(capture_payment{"u1", "o1"})
      .then_nothing();
}

TEST(FinanceAccount, CaptureRejectsAnUnknownPayment) {
  decider_spec<finance_account>()
      .given({opened})
      .when(capture_payment{"u1", "o1"})
      .then_rejected("payment_not_found");
}

TEST(FinanceAccount, CaptureRejectsAVoidedPayment) {
  decider_spec<finance_account>()
      .given({opened, payment_authorised{"u1", "o1", 4'000}, payment_voided{"u1", "o1", 4'000}})
      .when(capture_payment{"u1", "o1"})
      .then_rejected("invalid_status");
}

TEST(FinanceAccount, CaptureRejectsAnAccountNeverOpened) {
  decider_spec<finance_account>()
      .given({})
      .when(capture_payment{"u1", "o1"})
      .then_rejected("account_not_found");
}

// ---- what an account remembers ----------------------------------------------

/// An account that authorised and then settled `count` payments p0, p1, ...
/// (voiding every third), starting from `first`.
std::vector<finance_account::event> settled_payments(int count, int first = 0) {
  std::vector<finance_account::event> history;
  for (int i = first; i < first + count; ++i) {
    auto id = "p" + std::to_string(i);
    history.push_back(payment_authorised{"u1", id, 10});
    if (i % 3 == 0)
      history.push_back(payment_voided{"u1", id, 10});
    else
      history.push_back(payment_captured{"u1", id, 10});
  }
  return history;
}

TEST(FinanceAccount, SettledPaymentsBeyondWhatItKeepsAreForgottenOldestFirst) {
  const int kept = static_cast<int>(finance_account::settled_payments_kept);
  auto history = settled_payments(kept + 5);
  history.insert(history.begin(), account_opened{"u1", 1'000'000'000});
  decider_spec<finance_account> spec;
  spec.given(history).when(change_credit_limit{"u1", 1'000'000'000}).then_nothing();
  const auto& s = spec.current_state();
  EXPECT_EQ(s.payments.size(), finance_account::settled_payments_kept);
  EXPECT_EQ(s.settled_order.size(), finance_account::settled_payments_kept);
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(s.payments.contains("p" + std::to_string(i))) << i;
  EXPECT_TRUE(s.payments.contains("p5"));
  EXPECT_EQ(s.settled_order.front(), "p5");
  EXPECT_EQ(s.settled_order.back(), "p" + std::to_string(kept + 4));
  // The totals still count every payment, forgotten ones included.
  const int voided = (kept + 5 + 2) / 3;
  EXPECT_EQ(s.captured_total, 10 * (kept + 5 - voided));
  EXPECT_EQ(s.authorised_total, 10 * (kept + 5 - voided));
}

TEST(FinanceAccount, ARecentlySettledPaymentIsStillRecognised) {
  const int kept = static_cast<int>(finance_account::settled_payments_kept);
  auto history = settled_payments(2 * kept);
  history.insert(history.begin(), opened);
  auto newest_captured = "p" + std::to_string(2 * kept - 1);  // not a multiple of 3
  auto newest_voided = "p" + std::to_string(2 * kept - 2);    // a multiple of 3
  decider_spec<finance_account>()
      .given(history)
      .when(capture_payment{"u1", newest_captured})
      .then_nothing();
  decider_spec<finance_account>()
      .given(history)
      .when(authorise_payment{"u1", newest_voided, 10})
      .then_rejected("invalid_status");
  // The oldest, forgotten: a capture no longer finds it.
  decider_spec<finance_account>()
      .given(history)
      .when(capture_payment{"u1", "p1"})
      .then_rejected("payment_not_found");
}

TEST(FinanceAccount, AnOpenPaymentIsNeverForgotten) {
  const int kept = static_cast<int>(finance_account::settled_payments_kept);
  std::vector<finance_account::event> history{account_opened{"u1", 1'000'000'000},
                                              payment_authorised{"u1", "held", 500}};
  auto settled = settled_payments(kept + 50);
  history.insert(history.end(), settled.begin(), settled.end());
  decider_spec<finance_account> spec;
  spec.given(history)
      .when(capture_payment{"u1", "held"})
      .then({payment_captured{"u1", "held", 500}});
  EXPECT_EQ(spec.current_state().payments.size(), finance_account::settled_payments_kept);
  EXPECT_EQ(spec.current_state().settled_order.back(), "held");
}

}  // namespace
}  // namespace bookstore
