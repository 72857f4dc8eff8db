#include "actors/order.hpp"

#include <gtest/gtest.h>

#include <limits>

#include "runtime/testing/decider_spec.hpp"

namespace bookstore {
namespace {

using troupe::testing::decider_spec;

constexpr std::int64_t placed_at = 1'700'000'000'000;
const std::vector<order_item> items{{"b1", 2, 1999}, {"b2", 1, 500}};
const place_order place{"o1", "u1", items, placed_at};
constexpr std::int64_t total = 2 * 1999 + 500;
const order_placed placed{"o1", "u1", items, total, placed_at};

// ---- place ------------------------------------------------------------------

TEST(Order, PlaceRecordsTheOrderWithItsTotal) {
  decider_spec<order> spec;
  spec.given({}).when(place).then({placed});
  EXPECT_EQ(spec.current_state().status, order_status::placed);
  EXPECT_EQ(spec.current_state().total, 4498);
}

TEST(Order, PlaceAcceptsFreeItems) {
  decider_spec<order>()
      .given({})
      .when(place_order{"o1", "u1", {{"b1", 3, 0}}, placed_at})
      .then({order_placed{"o1", "u1", {{"b1", 3, 0}}, 0, placed_at}});
}

TEST(Order, PlaceRejectsAnOrderPlacedBefore) {
  decider_spec<order>().given({placed}).when(place).then_rejected("already_exists");
}

TEST(Order, PlaceRejectsAnOrderWithoutItems) {
  decider_spec<order>()
      .given({})
      .when(place_order{"o1", "u1", {}, placed_at})
      .then_rejected("items_required");
}

TEST(Order, PlaceRejectsAZeroQuantity) {
  decider_spec<order>()
      .given({})
      .when(place_order{"o1", "u1", {{"b1", 0, 100}}, placed_at})
      .then_rejected("invalid_quantity");
}

TEST(Order, PlaceRejectsANegativePrice) {
  decider_spec<order>()
      .given({})
      .when(place_order{"o1", "u1", {{"b1", 1, -100}}, placed_at})
      .then_rejected("invalid_price");
}

TEST(Order, PlaceRejectsTheSameBookTwice) {
  decider_spec<order>()
      .given({})
      .when(place_order{"o1", "u1", {{"b1", 1, 100}, {"b1", 2, 100}}, placed_at})
      .then_rejected("duplicate_item");
}

TEST(Order, PlaceRejectsATotalTooLargeToRepresent) {
  decider_spec<order>()
      .given({})
      .when(place_order{
          "o1", "u1", {{"b1", 2, std::numeric_limits<std::int64_t>::max() / 2 + 1}}, placed_at})
      .then_rejected("invalid_amount");
}

TEST(Order, PlaceRejectsABlankBuyerId) {
  decider_spec<order>()
      .given({})
      .when(place_order{"o1", "", items, placed_at})
      .then_rejected("id_required");
}

TEST(Order, PlaceRejectsABlankOrderId) {
  decider_spec<order>()
      .given({})
      .when(place_order{"", "u1", items, placed_at})
      .then_rejected("id_required");
}

TEST(Order, PlaceRejectsABlankBookId) {
  decider_spec<order>()
      .given({})
      .when(place_order{"o1", "u1", {{"", 1, 100}}, placed_at})
      .then_rejected("id_required");
}

// ---- complete ---------------------------------------------------------------

TEST(Order, CompleteFinishesAPlacedOrder) {
  decider_spec<order> spec;
  spec.given({placed})
      .when(complete_order{"o1", placed_at + 1000})
      .then({order_completed{"o1", "u1", items, total, placed_at + 1000}});
  EXPECT_EQ(spec.current_state().status, order_status::completed);
}

TEST(Order, CompleteRejectsAnOrderNeverPlaced) {
  decider_spec<order>().given({}).when(complete_order{"o1", placed_at}).then_rejected("not_found");
}

TEST(Order, CompleteRejectsACompletedOrder) {
  decider_spec<order>()
      .given({placed, order_completed{"o1", "u1", items, total, placed_at}})
      .when(complete_order{"o1", placed_at})
      .then_rejected("invalid_status");
}

TEST(Order, CompleteRejectsACancelledOrder) {
  decider_spec<order>()
      .given({placed, order_cancelled{"o1", "u1", "out of stock", placed_at}})
      .when(complete_order{"o1", placed_at})
      .then_rejected("invalid_status");
}

// ---- cancel -----------------------------------------------------------------

TEST(Order, CancelRecordsTheReason) {
  decider_spec<order> spec;
  spec.given({placed})
      .when(cancel_order{"o1", "payment declined", placed_at + 5})
      .then({order_cancelled{"o1", "u1", "payment declined", placed_at + 5}});
  EXPECT_EQ(spec.current_state().status, order_status::cancelled);
}

TEST(Order, CancelRejectsABlankReason) {
  decider_spec<order>()
      .given({placed})
      .when(cancel_order{"o1", " ", placed_at})
      .then_rejected("reason_required");
}

TEST(Order, CancelRejectsAnOrderNeverPlaced) {
  decider_spec<order>()
      .given({})
      .when(cancel_order{"o1", "changed my mind", placed_at})
      .then_rejected("not_found");
}

TEST(Order, CancelRejectsACompletedOrder) {
  decider_spec<order>()
      .given({placed, order_completed{"o1", "u1", items, total, placed_at}})
      .when(cancel_order{"o1", "changed my mind", placed_at})
      .then_rejected("invalid_status");
}

TEST(Order, CancelRejectsACancelledOrder) {
  decider_spec<order>()
      .given({placed, order_cancelled{"o1", "u1", "out of stock", placed_at}})
      .when(cancel_order{"o1", "again", placed_at})
      .then_rejected("invalid_status");
}

}  // namespace
}  // namespace bookstore
