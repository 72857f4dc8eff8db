// Every transition of the bookstore's sagas, with the virtual clock.

#include "actors/sagas.hpp"

#include <gtest/gtest.h>

#include "actors/bookstore.hpp"
#include "runtime/command_codec.hpp"
#include "runtime/testing/saga_spec.hpp"

namespace bookstore {
namespace {

using troupe::testing::saga_spec;
using namespace std::chrono_literals;
using steps = std::vector<std::string>;

const std::vector<order_item> two_books{{"b1", 2, 1000}, {"b2", 1, 500}};
// Placed from the buyer's basket (the checkout); see the item-list test.
const order_placed placed{"o1", "u1", two_books, 2500, 1'700'000'000'000, true};

template <class D>
typename D::command as(typename D::command c) {
  return c;
}

/// An order fulfilment that got as far as `upto` along the happy path.
saga_spec<order_fulfilment> fulfilment(std::string_view upto) {
  saga_spec<order_fulfilment> spec;
  spec.when(placed);
  if (upto == "reserving") return spec;
  spec.accept("reserve:b1").accept("reserve:b2").accept("authorise").accept("clear-basket");
  if (upto == "completing") return spec;
  spec.accept("complete");
  return spec;  // settling
}

TEST(OrderFulfilment, PlacingReservesAuthorisesAndClearsTheBasketAtOnce) {
  auto spec = fulfilment("reserving");
  EXPECT_EQ(spec.sent_steps(), (steps{"reserve:b1", "reserve:b2", "authorise", "clear-basket"}));
  EXPECT_EQ(*spec.sent_command<basket>("clear-basket"), as<basket>(delete_basket{"u1"}));
  EXPECT_EQ(*spec.sent_command<book>("reserve:b1"), as<book>(reserve_stock{"b1", "o1", 2}));
  EXPECT_EQ(*spec.sent_command<book>("reserve:b2"), as<book>(reserve_stock{"b2", "o1", 1}));
  EXPECT_EQ(spec.sent_step("reserve:b1")->stream_id, "book-b1");
  EXPECT_EQ(*spec.sent_command<finance_account>("authorise"),
            as<finance_account>(authorise_payment{"u1", "o1", 2500}));
  EXPECT_EQ(spec.sent_step("authorise")->stream_id, "finance-u1");
  EXPECT_EQ(spec.status(), "reserving");
}

TEST(OrderFulfilment, AnOrderPlacedFromAnItemListLeavesTheBuyersBasketAlone) {
  auto from_items = placed;
  from_items.from_basket = false;
  saga_spec<order_fulfilment> spec;
  spec.when(from_items);
  EXPECT_EQ(spec.sent_steps(), (steps{"reserve:b1", "reserve:b2", "authorise"}));
  spec.accept("reserve:b1").accept("reserve:b2").accept("authorise");
  EXPECT_EQ(spec.status(), "completing") << "it waits for no basket";
  spec.accept("complete");
  EXPECT_EQ(spec.status(), "settling");
}

TEST(OrderPlaced, AVersion1EventIsUpcastAsPlacedFromTheBasket) {
  // What v1 sagas did with every order: clear the buyer's basket.
  boost::json::object v1{{"order_id", "o1"},
                         {"buyer_id", "u1"},
                         {"items", boost::json::array{}},
                         {"total", 0},
                         {"placed_at", 1}};
  order_placed::upcast(1, v1);
  EXPECT_EQ(v1.at("from_basket"), true);
}

TEST(OrderFulfilment, CompletesOnceStockPaymentAndBasketAreAnswered) {
  saga_spec<order_fulfilment> spec;
  spec.when(placed).accept("reserve:b1").accept("authorise").accept("clear-basket");
  EXPECT_TRUE(spec.sent().empty()) << "b2 is not reserved yet";
  spec.accept("reserve:b2");
  EXPECT_EQ(spec.sent_steps(), steps{"complete"});
  EXPECT_EQ(*spec.sent_command<order>("complete"), as<order>(complete_order{"o1", spec.now_ms()}));
  EXPECT_EQ(spec.status(), "completing");
}

TEST(OrderFulfilment, WaitsForThePaymentAfterTheLastReservation) {
  saga_spec<order_fulfilment> spec;
  spec.when(placed).accept("reserve:b1").accept("reserve:b2").accept("clear-basket");
  EXPECT_TRUE(spec.sent().empty()) << "the payment is not authorised yet";
  spec.accept("authorise");
  EXPECT_EQ(spec.sent_steps(), steps{"complete"});
}

TEST(OrderFulfilment, TheOrderIsNotCompletedBeforeItsBasketIsCleared) {
  // A buyer who sees the order completed and starts a new basket must not
  // have it deleted by this order's late clearing.
  saga_spec<order_fulfilment> spec;
  spec.when(placed).accept("reserve:b1").accept("reserve:b2").accept("authorise");
  EXPECT_TRUE(spec.sent().empty()) << "the basket's clearing is still in flight";
  EXPECT_EQ(spec.status(), "reserving");
  spec.accept("clear-basket");
  EXPECT_EQ(spec.sent_steps(), steps{"complete"});
}

TEST(OrderFulfilment, AMissingBasketDoesNotStopTheOrder) {
  saga_spec<order_fulfilment> spec;
  spec.when(placed).accept("reserve:b1").accept("reserve:b2").accept("authorise");
  spec.reject("clear-basket", "not_found");
  EXPECT_EQ(spec.sent_steps(), steps{"complete"});
}

TEST(OrderFulfilment, SettlesStockAndPaymentThenEndsCompleted) {
  auto spec = fulfilment("settling");
  EXPECT_EQ(spec.sent_steps(), (steps{"commit:b1", "commit:b2", "capture"}));
  EXPECT_EQ(*spec.sent_command<book>("commit:b2"), as<book>(commit_stock{"b2", "o1"}));
  EXPECT_EQ(*spec.sent_command<finance_account>("capture"),
            as<finance_account>(capture_payment{"u1", "o1"}));
  spec.accept("commit:b1").accept("capture");
  EXPECT_FALSE(spec.finished());
  spec.accept("commit:b2");
  EXPECT_TRUE(spec.finished());
  EXPECT_EQ(spec.status(), "completed");
}

TEST(OrderFulfilment, OutOfStockReleasesWhatWasReservedVoidsThePaymentAndCancels) {
  saga_spec<order_fulfilment> spec;
  spec.when(placed).accept("reserve:b1").accept("authorise");
  spec.reject("reserve:b2", "insufficient_stock", "only 0");
  EXPECT_EQ(spec.sent_steps(), (steps{"release:b1", "void"}));
  EXPECT_EQ(*spec.sent_command<book>("release:b1"), as<book>(release_stock{"b1", "o1"}));
  EXPECT_EQ(*spec.sent_command<finance_account>("void"),
            as<finance_account>(void_payment{"u1", "o1"}));
  EXPECT_EQ(spec.status(), "compensating");
  spec.accept("release:b1");
  EXPECT_TRUE(spec.sent().empty()) << "the void is in flight";
  spec.accept("void");
  EXPECT_TRUE(spec.sent().empty()) << "the basket's clearing is in flight";
  spec.accept("clear-basket");
  ASSERT_EQ(spec.sent_steps(), steps{"cancel"});
  const auto* cancel = spec.sent_command<order>("cancel");
  const auto& reason = std::get<cancel_order>(*cancel).reason;
  EXPECT_NE(reason.find("book b2"), std::string::npos) << reason;
  EXPECT_NE(reason.find("insufficient_stock"), std::string::npos) << reason;
  spec.accept("cancel");
  EXPECT_TRUE(spec.finished());
  EXPECT_EQ(spec.status(), "cancelled");
}

TEST(OrderFulfilment, AReservationOrPaymentLandingAfterTheDecisionToCompensateIsUndoneToo) {
  saga_spec<order_fulfilment> spec;
  spec.when(placed).reject("reserve:b1", "not_found");
  EXPECT_TRUE(spec.sent().empty()) << "b2 and the payment are still in flight";
  spec.accept("reserve:b2");
  EXPECT_EQ(spec.sent_steps(), steps{"release:b2"});
  spec.accept("authorise");
  EXPECT_EQ(spec.sent_steps(), steps{"void"});
  spec.accept("release:b2").accept("void");
  EXPECT_TRUE(spec.sent().empty());
  spec.accept("clear-basket");
  EXPECT_EQ(spec.sent_steps(), steps{"cancel"});
}

TEST(OrderFulfilment, ARefusedPaymentReleasesTheStockWithoutVoiding) {
  saga_spec<order_fulfilment> spec;
  spec.when(placed).accept("reserve:b1").accept("reserve:b2").accept("clear-basket");
  spec.reject("authorise", "credit_limit_exceeded", "limit 1000");
  EXPECT_EQ(spec.sent_steps(), (steps{"release:b1", "release:b2"}));
  spec.accept("release:b1").accept("release:b2");
  const auto& reason = std::get<cancel_order>(*spec.sent_command<order>("cancel")).reason;
  EXPECT_NE(reason.find("payment: credit_limit_exceeded"), std::string::npos) << reason;
}

TEST(OrderFulfilment, APaymentThatNeverAnswersIsVoidedAndDeadLettered) {
  saga_spec<order_fulfilment> spec;
  spec.when(placed).accept("reserve:b1").accept("reserve:b2").accept("clear-basket");
  spec.advance(30s).advance(200ms);  // attempt 2
  EXPECT_EQ(spec.sent_step("authorise")->attempt, 2);
  spec.advance(30s).advance(400ms);  // attempt 3
  EXPECT_EQ(spec.sent_step("authorise")->attempt, 3);
  spec.advance(30s);  // gave up
  EXPECT_EQ(spec.sent_steps(), (steps{"release:b1", "release:b2", "void"}));
  EXPECT_EQ(*spec.sent_command<finance_account>("void"),
            as<finance_account>(void_payment{"u1", "o1"}));
  ASSERT_EQ(spec.dead_letters().size(), 1u);
  EXPECT_EQ(spec.dead_letters()[0].step, "authorise");
  spec.accept("release:b1").accept("release:b2").accept("void");
  EXPECT_EQ(spec.sent_steps(), steps{"cancel"});
}

TEST(OrderFulfilment, AReservationGivenUpIsReleasedInCaseItLanded) {
  saga_spec<order_fulfilment> spec(
      {.step_timeout_ms = 1000, .max_attempts = 2, .retry_backoff_ms = 10});
  spec.when(placed).accept("reserve:b1").accept("authorise").fail("reserve:b2").advance(10ms);
  EXPECT_EQ(spec.sent_step("reserve:b2")->attempt, 2);
  EXPECT_EQ(spec.sent_step("reserve:b2")->command_id, "orderfulfilment/o1/reserve:b2/2");
  spec.fail("reserve:b2");
  EXPECT_EQ(spec.sent_steps(), (steps{"release:b1", "release:b2", "void"}));
  EXPECT_EQ(spec.dead_letters().size(), 1u);
}

TEST(OrderFulfilment, AnOrderThatRefusesCompletionWasCancelledElsewhere) {
  auto spec = fulfilment("completing");
  spec.reject("complete", "invalid_status", "the order is cancelled");
  EXPECT_EQ(spec.sent_steps(), (steps{"release:b1", "release:b2", "void"}));
  spec.accept("release:b1").accept("release:b2").accept("void");
  EXPECT_TRUE(spec.sent().empty()) << "the order is cancelled already";
  EXPECT_TRUE(spec.finished());
  EXPECT_EQ(spec.status(), "cancelled");
}

TEST(OrderFulfilment, CompletionGivenUpIsSettledByCancellingFirst) {
  saga_spec<order_fulfilment> spec(
      {.step_timeout_ms = 1000, .max_attempts = 1, .retry_backoff_ms = 10});
  spec.when(placed).accept("reserve:b1").accept("reserve:b2").accept("authorise");
  spec.accept("clear-basket").advance(1s);
  EXPECT_EQ(spec.sent_steps(), steps{"cancel-unconfirmed"});
  EXPECT_EQ(spec.status(), "verifying");

  auto cancelled = spec;  // the cancel went through: the order was not complete
  cancelled.accept("cancel-unconfirmed");
  EXPECT_EQ(cancelled.sent_steps(), (steps{"release:b1", "release:b2", "void"}));
  cancelled.accept("release:b1").accept("release:b2").accept("void");
  EXPECT_TRUE(cancelled.finished());
  EXPECT_EQ(cancelled.status(), "cancelled");

  auto completed = spec;  // refused: the completion had landed
  completed.reject("cancel-unconfirmed", "invalid_status", "the order is completed");
  EXPECT_EQ(completed.sent_steps(), (steps{"commit:b1", "commit:b2", "capture"}));

  auto unknown = spec;  // the cancel got no answer either: an operator decides
  unknown.advance(1s);
  EXPECT_TRUE(unknown.finished());
  EXPECT_EQ(unknown.status(), "failed");
}

TEST(OrderFulfilment, ACancelGivenUpEndsFailedNotCancelled) {
  saga_spec<order_fulfilment> spec(
      {.step_timeout_ms = 1000, .max_attempts = 1, .retry_backoff_ms = 10});
  spec.when(placed).accept("reserve:b1").reject("authorise", "credit_limit_exceeded");
  spec.accept("release:b1").reject("reserve:b2", "insufficient_stock").accept("clear-basket");
  ASSERT_EQ(spec.sent_steps(), steps{"cancel"});
  spec.fail("cancel");
  EXPECT_TRUE(spec.finished());
  EXPECT_EQ(spec.status(), "failed") << "the order was never cancelled";
  ASSERT_EQ(spec.dead_letters().size(), 1u);
  EXPECT_EQ(spec.dead_letters()[0].step, "cancel");
}

TEST(OrderFulfilment, CancelledByTheBuyerMidwayUndoesWithoutCancellingAgain) {
  auto spec = fulfilment("completing");
  spec.when(order_cancelled{"o1", "u1", "changed my mind", 5});
  EXPECT_EQ(spec.sent_steps(), (steps{"release:b1", "release:b2", "void"}));
  spec.reject("complete", "invalid_status");
  spec.accept("release:b1").accept("release:b2").accept("void");
  EXPECT_TRUE(spec.finished());
  EXPECT_EQ(spec.status(), "cancelled");
  EXPECT_NE(spec.state().cancel_reason.find("changed my mind"), std::string::npos);
}

TEST(OrderFulfilment, OurOwnCancellationEventChangesNothing) {
  saga_spec<order_fulfilment> spec;
  spec.when(placed).reject("reserve:b1", "not_found").reject("reserve:b2", "not_found");
  spec.reject("authorise", "credit_limit_exceeded").reject("clear-basket", "not_found");
  EXPECT_EQ(spec.sent_steps(), steps{"cancel"});
  spec.when(order_cancelled{"o1", "u1", "book b1: not_found", 5});
  EXPECT_TRUE(spec.sent().empty());
  EXPECT_EQ(spec.status(), "cancelling");
  spec.accept("cancel");
  EXPECT_EQ(spec.status(), "cancelled");
}

TEST(OrderFulfilment, ATerminalSagaIgnoresLaterEvents) {
  auto spec = fulfilment("settling");
  spec.accept("commit:b1").accept("commit:b2").accept("capture");
  ASSERT_TRUE(spec.finished());
  spec.when(order_cancelled{"o1", "u1", "too late", 9}).when(placed);
  EXPECT_TRUE(spec.sent().empty());
  EXPECT_EQ(spec.status(), "completed");
}

TEST(OrderFulfilment, AStepWithoutAnAnswerIsSentAgainAfterItsTimeout) {
  saga_spec<order_fulfilment> spec;
  spec.when(placed).advance(29s);
  EXPECT_TRUE(spec.sent().empty());
  spec.advance(1s).advance(200ms);
  EXPECT_EQ(spec.sent_steps(), (steps{"authorise", "clear-basket", "reserve:b1", "reserve:b2"}));
  EXPECT_EQ(spec.sent_step("reserve:b1")->attempt, 2);
  spec.accept("reserve:b1").accept("reserve:b2").accept("authorise").accept("clear-basket");
  EXPECT_EQ(spec.sent_steps(), steps{"complete"});
}

// ---- rating -------------------------------------------------------------------

const feedback_created created{"f1", "b1", 4, "good", 1};

TEST(RatingSaga, AddsTheRatingToTheBook) {
  saga_spec<rating_saga> spec;
  spec.when(created);
  EXPECT_EQ(*spec.sent_command<book>("add-rating"), as<book>(add_rating{"b1", "f1", 4}));
  spec.accept("add-rating");
  EXPECT_EQ(spec.status(), "rated");
  EXPECT_FALSE(spec.finished()) << "it waits for the feedback's deletion";
}

TEST(RatingSaga, DeletingTheFeedbackRemovesTheRating) {
  saga_spec<rating_saga> spec;
  spec.when(created).accept("add-rating").when(feedback_deleted{"f1", "b1"});
  EXPECT_EQ(*spec.sent_command<book>("remove-rating"), as<book>(remove_rating{"b1", "f1"}));
  spec.accept("remove-rating");
  EXPECT_TRUE(spec.finished());
  EXPECT_EQ(spec.status(), "removed");
}

TEST(RatingSaga, AMissingBookDeletesTheFeedback) {
  saga_spec<rating_saga> spec;
  spec.when(created).reject("add-rating", "not_found", "no such book");
  EXPECT_EQ(*spec.sent_command<feedback>("delete-feedback"), as<feedback>(delete_feedback{"f1"}));
  EXPECT_EQ(spec.status(), "compensating");
  spec.when(feedback_deleted{"f1", "b1"});  // our own deletion's event
  EXPECT_TRUE(spec.sent().empty());
  spec.accept("delete-feedback");
  EXPECT_TRUE(spec.finished());
  EXPECT_EQ(spec.status(), "rejected");
}

TEST(RatingSaga, AFeedbackDeletedWhileItsRatingIsAddedHasItRemovedAfter) {
  saga_spec<rating_saga> spec;
  spec.when(created).when(feedback_deleted{"f1", "b1"});
  EXPECT_TRUE(spec.sent().empty());
  spec.accept("add-rating");
  EXPECT_EQ(spec.sent_steps(), steps{"remove-rating"});
}

TEST(RatingSaga, ABookThatNeverAnswersEndsTheSagaWithADeadLetter) {
  saga_spec<rating_saga> spec({.step_timeout_ms = 100, .max_attempts = 2, .retry_backoff_ms = 10});
  spec.when(created).advance(100ms).advance(10ms).advance(100ms);
  EXPECT_TRUE(spec.finished());
  EXPECT_EQ(spec.status(), "failed");
  ASSERT_EQ(spec.dead_letters().size(), 1u);
  EXPECT_EQ(spec.dead_letters()[0].step, "add-rating");
}

TEST(RatingSaga, IgnoresADeletionBeforeItStarted) {
  saga_spec<rating_saga> spec;
  spec.when(feedback_deleted{"f1", "b1"});
  EXPECT_FALSE(spec.machine().started());
  EXPECT_TRUE(spec.sent().empty());
}

}  // namespace
}  // namespace bookstore

namespace bookstore {
namespace {

// A saga dead letter keeps its command as type and JSON; replay decodes it.
TEST(SagaDeadLetters, TheStoredCommandDecodesBackToTheSameCommand) {
  saga_spec<order_fulfilment> spec;
  spec.when(placed);
  const auto* sent = spec.sent_step("reserve:b1");
  ASSERT_NE(sent, nullptr);
  EXPECT_EQ(sent->command_type, "book#4") << "reserve_stock is book::command's fifth alternative";
  auto decoded =
      troupe::decode_command<bookstore_aggregates>(sent->command_type, sent->command_json);
  ASSERT_TRUE(decoded) << decoded.error();
  ASSERT_NE(decoded->get<book::command>(), nullptr);
  EXPECT_EQ(*decoded->get<book::command>(), *sent->payload.get<book::command>());
  EXPECT_FALSE(troupe::decode_command<bookstore_aggregates>("nope#0", "{}"));
  EXPECT_FALSE(troupe::decode_command<bookstore_aggregates>("book#99", "{}"));
  EXPECT_FALSE(troupe::decode_command<bookstore_aggregates>("book#4", "{\"book_id\": 1}"));
  EXPECT_FALSE(troupe::decode_command<bookstore_aggregates>("book", "{}"));
}

}  // namespace
}  // namespace bookstore
