#include "actors/finance_account.hpp"

#include <gtest/gtest.h>

#include <limits>

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

}  // namespace
}  // namespace bookstore
