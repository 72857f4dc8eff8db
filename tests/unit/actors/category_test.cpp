#include "actors/category.hpp"

#include <gtest/gtest.h>

#include "runtime/testing/decider_spec.hpp"

namespace bookstore {
namespace {

using troupe::testing::decider_spec;

const category_created created{"c1", "Science fiction"};

TEST(Category, CreateRecordsTheCategory) {
  decider_spec<book_category> spec;
  spec.given({}).when(create_category{"c1", "Science fiction"}).then({created});
  EXPECT_EQ(spec.current_state().status, lifecycle::active);
  EXPECT_EQ(spec.current_state().name, "Science fiction");
}

TEST(Category, CreateRejectsABlankName) {
  decider_spec<book_category>()
      .given({})
      .when(create_category{"c1", "  "})
      .then_rejected("name_required");
}

TEST(Category, CreateRejectsABlankId) {
  decider_spec<book_category>()
      .given({})
      .when(create_category{"", "Science fiction"})
      .then_rejected("id_required");
}

TEST(Category, CreateRejectsAnExistingCategory) {
  decider_spec<book_category>()
      .given({created})
      .when(create_category{"c1", "Science fiction"})
      .then_rejected("already_exists");
}

TEST(Category, CreateRejectsADeletedCategory) {
  decider_spec<book_category>()
      .given({created, category_deleted{"c1"}})
      .when(create_category{"c1", "Science fiction"})
      .then_rejected("category_deleted");
}

TEST(Category, UpdateRenamesTheCategory) {
  decider_spec<book_category> spec;
  spec.given({created})
      .when(update_category{"c1", "Sci-fi"})
      .then({category_updated{"c1", "Sci-fi"}});
  EXPECT_EQ(spec.current_state().name, "Sci-fi");
}

TEST(Category, UpdateToTheSameNameRecordsNothing) {
  decider_spec<book_category>()
      .given({created})
      .when(update_category{"c1", "Science fiction"})
      .then_nothing();
}

TEST(Category, UpdateRejectsABlankName) {
  decider_spec<book_category>()
      .given({created})
      .when(update_category{"c1", ""})
      .then_rejected("name_required");
}

TEST(Category, UpdateRejectsAnUnknownCategory) {
  decider_spec<book_category>()
      .given({})
      .when(update_category{"c1", "Sci-fi"})
      .then_rejected("not_found");
}

TEST(Category, UpdateRejectsADeletedCategory) {
  decider_spec<book_category>()
      .given({created, category_deleted{"c1"}})
      .when(update_category{"c1", "Sci-fi"})
      .then_rejected("category_deleted");
}

TEST(Category, DeleteMarksTheCategoryDeleted) {
  decider_spec<book_category> spec;
  spec.given({created}).when(delete_category{"c1"}).then({category_deleted{"c1"}});
  EXPECT_EQ(spec.current_state().status, lifecycle::deleted);
}

TEST(Category, DeleteTwiceIsRejected) {
  decider_spec<book_category>()
      .given({created, category_deleted{"c1"}})
      .when(delete_category{"c1"})
      .then_rejected("category_deleted");
}

TEST(Category, DeleteRejectsAnUnknownCategory) {
  decider_spec<book_category>().given({}).when(delete_category{"c1"}).then_rejected("not_found");
}

}  // namespace
}  // namespace bookstore
