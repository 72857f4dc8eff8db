#include "actors/author.hpp"

#include <gtest/gtest.h>

#include "runtime/testing/decider_spec.hpp"

namespace bookstore {
namespace {

using troupe::testing::decider_spec;

const author_created created{"a1", "Frank Herbert"};

TEST(Author, CreateRecordsTheAuthor) {
  decider_spec<author> spec;
  spec.given({}).when(create_author{"a1", "Frank Herbert"}).then({created});
  EXPECT_EQ(spec.current_state().status, lifecycle::active);
  EXPECT_EQ(spec.current_state().name, "Frank Herbert");
}

TEST(Author, CreateRejectsABlankName) {
  decider_spec<author>().given({}).when(create_author{"a1", "  "}).then_rejected("name_required");
}

TEST(Author, CreateRejectsABlankId) {
  decider_spec<author>()
      .given({})
      .when(create_author{"", "Frank Herbert"})
      .then_rejected("id_required");
}

TEST(Author, CreateRejectsAnExistingAuthor) {
  decider_spec<author>()
      .given({created})
      .when(create_author{"a1", "Frank Herbert"})
      .then_rejected("already_exists");
}

TEST(Author, CreateRejectsADeletedAuthor) {
  decider_spec<author>()
      .given({created, author_deleted{"a1"}})
      .when(create_author{"a1", "Frank Herbert"})
      .then_rejected("author_deleted");
}

TEST(Author, UpdateRenamesTheAuthor) {
  decider_spec<author> spec;
  spec.given({created})
      .when(update_author{"a1", "F. Herbert"})
      .then({author_updated{"a1", "F. Herbert"}});
  EXPECT_EQ(spec.current_state().name, "F. Herbert");
}

TEST(Author, UpdateToTheSameNameRecordsNothing) {
  decider_spec<author>().given({created}).when(update_author{"a1", "Frank Herbert"}).then_nothing();
}

TEST(Author, UpdateRejectsABlankName) {
  decider_spec<author>()
      .given({created})
      .when(update_author{"a1", ""})
      .then_rejected("name_required");
}

TEST(Author, UpdateRejectsAnUnknownAuthor) {
  decider_spec<author>()
      .given({})
      .when(update_author{"a1", "F. Herbert"})
      .then_rejected("not_found");
}

TEST(Author, UpdateRejectsADeletedAuthor) {
  decider_spec<author>()
      .given({created, author_deleted{"a1"}})
      .when(update_author{"a1", "F. Herbert"})
      .then_rejected("author_deleted");
}

TEST(Author, DeleteMarksTheAuthorDeleted) {
  decider_spec<author> spec;
  spec.given({created}).when(delete_author{"a1"}).then({author_deleted{"a1"}});
  EXPECT_EQ(spec.current_state().status, lifecycle::deleted);
}

TEST(Author, DeleteTwiceIsRejected) {
  decider_spec<author>()
      .given({created, author_deleted{"a1"}})
      .when(delete_author{"a1"})
      .then_rejected("author_deleted");
}

TEST(Author, DeleteRejectsAnUnknownAuthor) {
  decider_spec<author>().given({}).when(delete_author{"a1"}).then_rejected("not_found");
}

}  // namespace
}  // namespace bookstore
