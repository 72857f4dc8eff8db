#include "actors/basket.hpp"

#include <gtest/gtest.h>

#include "runtime/testing/decider_spec.hpp"

namespace bookstore {
namespace {

using troupe::testing::decider_spec;

const std::vector<basket_item> two_books{{"b1", 1}, {"b2", 2}};
const basket_saved saved{"u1", two_books};

// ---- save -------------------------------------------------------------------

TEST(Basket, SaveCreatesTheBasket) {
  decider_spec<basket> spec;
  spec.given({}).when(save_basket{"u1", two_books}).then({saved});
  EXPECT_TRUE(spec.current_state().exists);
  EXPECT_EQ(spec.current_state().items, two_books);
}

TEST(Basket, SaveReplacesAllItems) {
  decider_spec<basket> spec;
  spec.given({saved}).when(save_basket{"u1", {{"b3", 4}}}).then({basket_saved{"u1", {{"b3", 4}}}});
  EXPECT_EQ(spec.current_state().items, (std::vector<basket_item>{{"b3", 4}}));
}

TEST(Basket, SaveWithTheSameItemsRecordsNothing) {
  decider_spec<basket>().given({saved}).when(save_basket{"u1", two_books}).then_nothing();
}

TEST(Basket, SaveAfterDeleteStartsANewBasket) {
  decider_spec<basket>()
      .given({saved, basket_deleted{"u1"}})
      .when(save_basket{"u1", two_books})
      .then({saved});
}

TEST(Basket, SaveRejectsAnEmptyBasket) {
  decider_spec<basket>().given({}).when(save_basket{"u1", {}}).then_rejected("items_required");
}

TEST(Basket, SaveRejectsAZeroQuantity) {
  decider_spec<basket>()
      .given({})
      .when(save_basket{"u1", {{"b1", 1}, {"b2", 0}}})
      .then_rejected("invalid_quantity");
}

TEST(Basket, SaveRejectsANegativeQuantity) {
  decider_spec<basket>()
      .given({})
      .when(save_basket{"u1", {{"b1", -1}}})
      .then_rejected("invalid_quantity");
}

TEST(Basket, SaveRejectsTheSameBookTwice) {
  decider_spec<basket>()
      .given({})
      .when(save_basket{"u1", {{"b1", 1}, {"b1", 2}}})
      .then_rejected("duplicate_item");
}

TEST(Basket, SaveRejectsABlankBuyerId) {
  decider_spec<basket>().given({}).when(save_basket{"", two_books}).then_rejected("id_required");
}

TEST(Basket, SaveRejectsABlankBookId) {
  decider_spec<basket>().given({}).when(save_basket{"u1", {{" ", 1}}}).then_rejected("id_required");
}

// ---- update one item --------------------------------------------------------

TEST(Basket, UpdateItemChangesItsQuantity) {
  decider_spec<basket> spec;
  spec.given({saved})
      .when(update_basket_item{"u1", "b2", 5})
      .then({basket_item_updated{"u1", "b2", 5}});
  EXPECT_EQ(spec.current_state().items, (std::vector<basket_item>{{"b1", 1}, {"b2", 5}}));
}

TEST(Basket, UpdateItemAddsABookNotYetInTheBasket) {
  decider_spec<basket> spec;
  spec.given({saved})
      .when(update_basket_item{"u1", "b3", 1})
      .then({basket_item_updated{"u1", "b3", 1}});
  EXPECT_EQ(spec.current_state().items,
            (std::vector<basket_item>{{"b1", 1}, {"b2", 2}, {"b3", 1}}));
}

TEST(Basket, UpdateItemToTheSameQuantityRecordsNothing) {
  decider_spec<basket>().given({saved}).when(update_basket_item{"u1", "b2", 2}).then_nothing();
}

TEST(Basket, UpdateItemToZeroRemovesIt) {
  decider_spec<basket> spec;
  spec.given({saved})
      .when(update_basket_item{"u1", "b1", 0})
      .then({basket_item_removed{"u1", "b1"}});
  EXPECT_EQ(spec.current_state().items, (std::vector<basket_item>{{"b2", 2}}));
}

TEST(Basket, UpdateItemToZeroForABookNotInTheBasketRecordsNothing) {
  decider_spec<basket>().given({saved}).when(update_basket_item{"u1", "b9", 0}).then_nothing();
}

TEST(Basket, UpdateItemRejectsANegativeQuantity) {
  decider_spec<basket>()
      .given({saved})
      .when(update_basket_item{"u1", "b1", -1})
      .then_rejected("invalid_quantity");
}

TEST(Basket, UpdateItemRejectsABlankBookId) {
  decider_spec<basket>()
      .given({saved})
      .when(update_basket_item{"u1", "", 1})
      .then_rejected("id_required");
}

TEST(Basket, UpdateItemRejectsWhenThereIsNoBasket) {
  decider_spec<basket>()
      .given({})
      .when(update_basket_item{"u1", "b1", 1})
      .then_rejected("not_found");
}

// ---- delete -----------------------------------------------------------------

TEST(Basket, DeleteClearsTheBasket) {
  decider_spec<basket> spec;
  spec.given({saved}).when(delete_basket{"u1"}).then({basket_deleted{"u1"}});
  EXPECT_FALSE(spec.current_state().exists);
  EXPECT_TRUE(spec.current_state().items.empty());
}

TEST(Basket, DeleteRejectsWhenThereIsNoBasket) {
  decider_spec<basket>().given({}).when(delete_basket{"u1"}).then_rejected("not_found");
}

TEST(Basket, DeleteTwiceIsRejected) {
  decider_spec<basket>()
      .given({saved, basket_deleted{"u1"}})
      .when(delete_basket{"u1"})
      .then_rejected("not_found");
}

}  // namespace
}  // namespace bookstore
