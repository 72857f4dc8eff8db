#include "actors/publisher.hpp"

#include <gtest/gtest.h>

#include "runtime/testing/decider_spec.hpp"

namespace bookstore {
namespace {

using troupe::testing::decider_spec;

const publisher_created created{"p1", "Chilton Books"};

TEST(Publisher, CreateRecordsThePublisher) {
  decider_spec<publisher> spec;
  spec.given({}).when(create_publisher{"p1", "Chilton Books"}).then({created});
  EXPECT_EQ(spec.current_state().status, lifecycle::active);
  EXPECT_EQ(spec.current_state().name, "Chilton Books");
}

TEST(Publisher, CreateRejectsABlankName) {
  decider_spec<publisher>()
      .given({})
      .when(create_publisher{"p1", "  "})
      .then_rejected("name_required");
}

TEST(Publisher, CreateRejectsABlankId) {
  decider_spec<publisher>()
      .given({})
      .when(create_publisher{"", "Chilton Books"})
      .then_rejected("id_required");
}

TEST(Publisher, CreateRejectsAnExistingPublisher) {
  decider_spec<publisher>()
      .given({created})
      .when(create_publisher{"p1", "Chilton Books"})
      .then_rejected("already_exists");
}

TEST(Publisher, CreateRejectsADeletedPublisher) {
  decider_spec<publisher>()
      .given({created, publisher_deleted{"p1"}})
      .when(create_publisher{"p1", "Chilton Books"})
      .then_rejected("publisher_deleted");
}

TEST(Publisher, UpdateRenamesThePublisher) {
  decider_spec<publisher> spec;
  spec.given({created})
      .when(update_publisher{"p1", "Ace Books"})
      .then({publisher_updated{"p1", "Ace Books"}});
  EXPECT_EQ(spec.current_state().name, "Ace Books");
}

TEST(Publisher, UpdateToTheSameNameRecordsNothing) {
  decider_spec<publisher>()
      .given({created})
      .when(update_publisher{"p1", "Chilton Books"})
      .then_nothing();
}

TEST(Publisher, UpdateRejectsABlankName) {
  decider_spec<publisher>()
      .given({created})
      .when(update_publisher{"p1", ""})
      .then_rejected("name_required");
}

TEST(Publisher, UpdateRejectsAnUnknownPublisher) {
  decider_spec<publisher>()
      .given({})
      .when(update_publisher{"p1", "Ace Books"})
      .then_rejected("not_found");
}

TEST(Publisher, UpdateRejectsADeletedPublisher) {
  decider_spec<publisher>()
      .given({created, publisher_deleted{"p1"}})
      .when(update_publisher{"p1", "Ace Books"})
      .then_rejected("publisher_deleted");
}

TEST(Publisher, DeleteMarksThePublisherDeleted) {
  decider_spec<publisher> spec;
  spec.given({created}).when(delete_publisher{"p1"}).then({publisher_deleted{"p1"}});
  EXPECT_EQ(spec.current_state().status, lifecycle::deleted);
}

TEST(Publisher, DeleteTwiceIsRejected) {
  decider_spec<publisher>()
      .given({created, publisher_deleted{"p1"}})
      .when(delete_publisher{"p1"})
      .then_rejected("publisher_deleted");
}

TEST(Publisher, DeleteRejectsAnUnknownPublisher) {
  decider_spec<publisher>().given({}).when(delete_publisher{"p1"}).then_rejected("not_found");
}

}  // namespace
}  // namespace bookstore
