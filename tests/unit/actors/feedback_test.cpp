#include "actors/feedback.hpp"

#include <gtest/gtest.h>

#include "runtime/testing/decider_spec.hpp"

namespace bookstore {
namespace {

using troupe::testing::decider_spec;

constexpr std::int64_t created_at = 1'700'000'000'000;
const create_feedback create{"f1", "b1", 4, "Gripping.", created_at};
const feedback_created created{"f1", "b1", 4, "Gripping.", created_at};

create_feedback with_rating(int rating) {
  auto c = create;
  c.rating = rating;
  return c;
}

create_feedback with_comment(std::string comment) {
  auto c = create;
  c.comment = std::move(comment);
  return c;
}

TEST(Feedback, CreateRecordsTheFeedback) {
  decider_spec<feedback> spec;
  spec.given({}).when(create).then({created});
  EXPECT_EQ(spec.current_state().status, lifecycle::active);
  EXPECT_EQ(spec.current_state().book_id, "b1");
}

TEST(Feedback, CreateAcceptsZeroAndFiveStars) {
  auto zero = created;
  zero.rating = 0;
  decider_spec<feedback>().given({}).when(with_rating(0)).then({zero});
  auto five = created;
  five.rating = 5;
  decider_spec<feedback>().given({}).when(with_rating(5)).then({five});
}

TEST(Feedback, CreateRejectsARatingAboveFive) {
  decider_spec<feedback>().given({}).when(with_rating(6)).then_rejected("invalid_rating");
}

TEST(Feedback, CreateRejectsANegativeRating) {
  decider_spec<feedback>().given({}).when(with_rating(-1)).then_rejected("invalid_rating");
}

TEST(Feedback, CreateAcceptsAThousandCharacterComment) {
  // 1000 characters, 2000 bytes: the limit is on what the reader sees.
  std::string comment;
  for (int i = 0; i < 1000; ++i) comment += "\xC3\xA9";  // é
  auto e = created;
  e.comment = comment;
  decider_spec<feedback>().given({}).when(with_comment(comment)).then({e});
}

TEST(Feedback, CreateRejectsALongerComment) {
  decider_spec<feedback>()
      .given({})
      .when(with_comment(std::string(1001, 'x')))
      .then_rejected("comment_too_long");
}

TEST(Feedback, CreateRejectsABlankBookId) {
  auto c = create;
  c.book_id = "";
  decider_spec<feedback>().given({}).when(c).then_rejected("id_required");
}

TEST(Feedback, CreateRejectsABlankFeedbackId) {
  auto c = create;
  c.feedback_id = "";
  decider_spec<feedback>().given({}).when(c).then_rejected("id_required");
}

TEST(Feedback, CreateRejectsExistingFeedback) {
  decider_spec<feedback>().given({created}).when(create).then_rejected("already_exists");
}

TEST(Feedback, CreateRejectsDeletedFeedback) {
  decider_spec<feedback>()
      .given({created, feedback_deleted{"f1", "b1"}})
      .when(create)
      .then_rejected("feedback_deleted");
}

TEST(Feedback, DeleteNamesTheBook) {
  decider_spec<feedback> spec;
  spec.given({created}).when(delete_feedback{"f1"}).then({feedback_deleted{"f1", "b1"}});
  EXPECT_EQ(spec.current_state().status, lifecycle::deleted);
}

TEST(Feedback, DeleteRejectsMissingFeedback) {
  decider_spec<feedback>().given({}).when(delete_feedback{"f1"}).then_rejected("not_found");
}

TEST(Feedback, DeleteTwiceIsRejected) {
  decider_spec<feedback>()
      .given({created, feedback_deleted{"f1", "b1"}})
      .when(delete_feedback{"f1"})
      .then_rejected("feedback_deleted");
}

}  // namespace
}  // namespace bookstore
