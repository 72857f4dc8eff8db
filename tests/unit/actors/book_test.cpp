#include "actors/book.hpp"

#include <gtest/gtest.h>

#include <limits>

#include "runtime/codec.hpp"
#include "runtime/testing/decider_spec.hpp"

namespace bookstore {
namespace {

using troupe::testing::decider_spec;

create_book create_dune() {
  return {.book_id = "b1",
          .name = "Dune",
          .description = "Desert planet",
          .price = 1999,
          .discount_price = 1499,
          .category_id = "c1",
          .publisher_id = "p1",
          .author_ids = {"a1", "a2"},
          .initial_stock = 10};
}

book_created dune_created(std::int64_t stock = 10) {
  return {.book_id = "b1",
          .name = "Dune",
          .description = "Desert planet",
          .price = 1999,
          .discount_price = 1499,
          .category_id = "c1",
          .publisher_id = "p1",
          .author_ids = {"a1", "a2"},
          .initial_stock = stock};
}

update_book update_dune() {
  return {.book_id = "b1",
          .name = "Dune (2nd ed.)",
          .description = "Desert planet, revised",
          .price = 2499,
          .discount_price = std::nullopt,
          .category_id = "c2",
          .publisher_id = "p2",
          .author_ids = {"a1"}};
}

// ---- create -----------------------------------------------------------------

TEST(Book, CreateRecordsTheBookWithItsInitialStock) {
  decider_spec<book> spec;
  spec.given({}).when(create_dune()).then({dune_created()});
  EXPECT_EQ(spec.current_state().status, lifecycle::active);
  EXPECT_EQ(spec.current_state().on_hand, 10);
  EXPECT_EQ(spec.current_state().available(), 10);
}

TEST(Book, CreateWithoutDiscountOrStockIsAccepted) {
  auto c = create_dune();
  c.discount_price = std::nullopt;
  c.initial_stock = 0;
  auto e = dune_created(0);
  e.discount_price = std::nullopt;
  decider_spec<book>().given({}).when(c).then({e});
}

TEST(Book, CreateAcceptsADiscountEqualToThePrice) {
  auto c = create_dune();
  c.discount_price = c.price;
  auto e = dune_created();
  e.discount_price = e.price;
  decider_spec<book>().given({}).when(c).then({e});
}

TEST(Book, CreateAcceptsAFreeBook) {
  auto c = create_dune();
  c.price = 0;
  c.discount_price = 0;
  auto e = dune_created();
  e.price = 0;
  e.discount_price = 0;
  decider_spec<book>().given({}).when(c).then({e});
}

TEST(Book, CreateRejectsABlankName) {
  auto c = create_dune();
  c.name = " \t ";
  decider_spec<book>().given({}).when(c).then_rejected("name_required");
}

TEST(Book, CreateRejectsABlankId) {
  auto c = create_dune();
  c.book_id = "";
  decider_spec<book>().given({}).when(c).then_rejected("id_required");
}

TEST(Book, CreateRejectsANegativePrice) {
  auto c = create_dune();
  c.price = -1;
  c.discount_price = std::nullopt;
  decider_spec<book>().given({}).when(c).then_rejected("invalid_price");
}

TEST(Book, CreateRejectsANegativeDiscount) {
  auto c = create_dune();
  c.discount_price = -1;
  decider_spec<book>().given({}).when(c).then_rejected("invalid_price");
}

TEST(Book, CreateRejectsADiscountAboveThePrice) {
  auto c = create_dune();
  c.discount_price = c.price + 1;
  decider_spec<book>().given({}).when(c).then_rejected("discount_above_price");
}

TEST(Book, CreateRejectsNegativeInitialStock) {
  auto c = create_dune();
  c.initial_stock = -1;
  decider_spec<book>().given({}).when(c).then_rejected("invalid_quantity");
}

TEST(Book, CreateRejectsAnExistingBook) {
  decider_spec<book>().given({dune_created()}).when(create_dune()).then_rejected("already_exists");
}

TEST(Book, CreateRejectsADeletedBook) {
  decider_spec<book>()
      .given({dune_created(), book_deleted{"b1"}})
      .when(create_dune())
      .then_rejected("book_deleted");
}

// ---- update -----------------------------------------------------------------

TEST(Book, UpdateReplacesTheDetailsButNotTheStock) {
  decider_spec<book> spec;
  spec.given({dune_created()})
      .when(update_dune())
      .then({book_updated{"b1",
                          "Dune (2nd ed.)",
                          "Desert planet, revised",
                          2499,
                          std::nullopt,
                          "c2",
                          "p2",
                          {"a1"}}});
  EXPECT_EQ(spec.current_state().name, "Dune (2nd ed.)");
  EXPECT_EQ(spec.current_state().author_ids, std::vector<std::string>{"a1"});
  EXPECT_EQ(spec.current_state().on_hand, 10);
}

TEST(Book, UpdateWithUnchangedDetailsRecordsNothing) {
  auto c = create_dune();
  decider_spec<book>()
      .given({dune_created()})
      .when(update_book{c.book_id, c.name, c.description, c.price, c.discount_price, c.category_id,
                        c.publisher_id, c.author_ids})
      .then_nothing();
}

TEST(Book, UpdateRejectsABlankName) {
  auto c = update_dune();
  c.name = "";
  decider_spec<book>().given({dune_created()}).when(c).then_rejected("name_required");
}

TEST(Book, UpdateRejectsANegativePrice) {
  auto c = update_dune();
  c.price = -5;
  decider_spec<book>().given({dune_created()}).when(c).then_rejected("invalid_price");
}

TEST(Book, UpdateRejectsADiscountAboveThePrice) {
  auto c = update_dune();
  c.discount_price = 3000;
  decider_spec<book>().given({dune_created()}).when(c).then_rejected("discount_above_price");
}

TEST(Book, UpdateRejectsAnUnknownBook) {
  decider_spec<book>().given({}).when(update_dune()).then_rejected("not_found");
}

TEST(Book, UpdateRejectsADeletedBook) {
  decider_spec<book>()
      .given({dune_created(), book_deleted{"b1"}})
      .when(update_dune())
      .then_rejected("book_deleted");
}

// ---- delete -----------------------------------------------------------------

TEST(Book, DeleteMarksTheBookDeleted) {
  decider_spec<book> spec;
  spec.given({dune_created()}).when(delete_book{"b1"}).then({book_deleted{"b1"}});
  EXPECT_EQ(spec.current_state().status, lifecycle::deleted);
}

TEST(Book, DeleteTwiceIsRejected) {
  decider_spec<book>()
      .given({dune_created(), book_deleted{"b1"}})
      .when(delete_book{"b1"})
      .then_rejected("book_deleted");
}

TEST(Book, DeleteRejectsAnUnknownBook) {
  decider_spec<book>().given({}).when(delete_book{"b1"}).then_rejected("not_found");
}

// ---- add stock --------------------------------------------------------------

TEST(Book, AddStockIncreasesWhatIsOnHand) {
  decider_spec<book> spec;
  spec.given({dune_created()}).when(add_stock{"b1", 5}).then({stock_added{"b1", 5}});
  EXPECT_EQ(spec.current_state().on_hand, 15);
}

TEST(Book, AddStockRejectsZero) {
  decider_spec<book>()
      .given({dune_created()})
      .when(add_stock{"b1", 0})
      .then_rejected("invalid_quantity");
}

TEST(Book, AddStockRejectsANegativeQuantity) {
  decider_spec<book>()
      .given({dune_created()})
      .when(add_stock{"b1", -3})
      .then_rejected("invalid_quantity");
}

TEST(Book, AddStockRejectsAQuantityThatWouldOverflow) {
  decider_spec<book>()
      .given({dune_created()})
      .when(add_stock{"b1", std::numeric_limits<std::int64_t>::max()})
      .then_rejected("invalid_quantity");
}

TEST(Book, AddStockRejectsAnUnknownBook) {
  decider_spec<book>().given({}).when(add_stock{"b1", 1}).then_rejected("not_found");
}

TEST(Book, AddStockRejectsADeletedBook) {
  decider_spec<book>()
      .given({dune_created(), book_deleted{"b1"}})
      .when(add_stock{"b1", 1})
      .then_rejected("book_deleted");
}

// ---- reserve stock ----------------------------------------------------------

TEST(Book, ReserveStockHoldsCopiesForTheOrder) {
  decider_spec<book> spec;
  spec.given({dune_created()})
      .when(reserve_stock{"b1", "o1", 3})
      .then({stock_reserved{"b1", "o1", 3}});
  EXPECT_EQ(spec.current_state().on_hand, 10);
  EXPECT_EQ(spec.current_state().reserved, 3);
  EXPECT_EQ(spec.current_state().available(), 7);
}

TEST(Book, ReserveStockAcceptsExactlyWhatIsAvailable) {
  decider_spec<book>()
      .given({dune_created(), stock_reserved{"b1", "o1", 4}})
      .when(reserve_stock{"b1", "o2", 6})
      .then({stock_reserved{"b1", "o2", 6}});
}

TEST(Book, ReserveStockRejectsMoreThanIsAvailable) {
  // 10 on hand, 4 held by another order: 6 are left, not 7.
  decider_spec<book>()
      .given({dune_created(), stock_reserved{"b1", "o1", 4}})
      .when(reserve_stock{"b1", "o2", 7})
      .then_rejected("insufficient_stock");
}

TEST(Book, ReserveStockRejectsWhenNoneIsLeft) {
  decider_spec<book>()
      .given({dune_created(2), stock_reserved{"b1", "o1", 2}, stock_committed{"b1", "o1", 2}})
      .when(reserve_stock{"b1", "o2", 1})
      .then_rejected("insufficient_stock");
}

TEST(Book, ReserveStockForTheSameOrderAgainRecordsNothing) {
  decider_spec<book>()
      .given({dune_created(), stock_reserved{"b1", "o1", 3}})
      .when(reserve_stock{"b1", "o1", 3})
      .then_nothing();
}

TEST(Book, ReserveStockRejectsZero) {
  decider_spec<book>()
      .given({dune_created()})
      .when(reserve_stock{"b1", "o1", 0})
      .then_rejected("invalid_quantity");
}

TEST(Book, ReserveStockRejectsABlankOrderId) {
  decider_spec<book>()
      .given({dune_created()})
      .when(reserve_stock{"b1", " ", 1})
      .then_rejected("id_required");
}

TEST(Book, ReserveStockRejectsAnUnknownBook) {
  decider_spec<book>().given({}).when(reserve_stock{"b1", "o1", 1}).then_rejected("not_found");
}

TEST(Book, ReserveStockRejectsADeletedBook) {
  decider_spec<book>()
      .given({dune_created(), book_deleted{"b1"}})
      .when(reserve_stock{"b1", "o1", 1})
      .then_rejected("book_deleted");
}

// ---- release stock ----------------------------------------------------------

TEST(Book, ReleaseStockReturnsTheOrdersCopies) {
  decider_spec<book> spec;
  spec.given({dune_created(), stock_reserved{"b1", "o1", 3}})
      .when(release_stock{"b1", "o1"})
      .then({stock_released{"b1", "o1", 3}});
  EXPECT_EQ(spec.current_state().reserved, 0);
  EXPECT_EQ(spec.current_state().available(), 10);
  EXPECT_TRUE(spec.current_state().reservations.empty());
}

TEST(Book, ReleaseStockForAnUnknownOrderRecordsNothing) {
  decider_spec<book>()
      .given({dune_created(), stock_reserved{"b1", "o1", 3}})
      .when(release_stock{"b1", "o2"})
      .then_nothing();
}

TEST(Book, ReleaseStockTwiceRecordsNothingTheSecondTime) {
  decider_spec<book>()
      .given({dune_created(), stock_reserved{"b1", "o1", 3}, stock_released{"b1", "o1", 3}})
      .when(release_stock{"b1", "o1"})
      .then_nothing();
}

TEST(Book, ReleaseStockWorksAfterTheBookIsDeleted) {
  decider_spec<book>()
      .given({dune_created(), stock_reserved{"b1", "o1", 3}, book_deleted{"b1"}})
      .when(release_stock{"b1", "o1"})
      .then({stock_released{"b1", "o1", 3}});
}

TEST(Book, ReleaseStockRejectsAnUnknownBook) {
  decider_spec<book>().given({}).when(release_stock{"b1", "o1"}).then_rejected("not_found");
}

// ---- commit stock -----------------------------------------------------------

TEST(Book, CommitStockTakesTheCopiesOffTheShelf) {
  decider_spec<book> spec;
  spec.given({dune_created(), stock_reserved{"b1", "o1", 3}})
      .when(commit_stock{"b1", "o1"})
      .then({stock_committed{"b1", "o1", 3}});
  EXPECT_EQ(spec.current_state().on_hand, 7);
  EXPECT_EQ(spec.current_state().reserved, 0);
  EXPECT_EQ(spec.current_state().available(), 7);
}

TEST(Book, CommitStockForAnUnknownOrderRecordsNothing) {
  decider_spec<book>().given({dune_created()}).when(commit_stock{"b1", "o1"}).then_nothing();
}

TEST(Book, CommitStockTwiceRecordsNothingTheSecondTime) {
  decider_spec<book>()
      .given({dune_created(), stock_reserved{"b1", "o1", 3}, stock_committed{"b1", "o1", 3}})
      .when(commit_stock{"b1", "o1"})
      .then_nothing();
}

TEST(Book, CommitStockWorksAfterTheBookIsDeleted) {
  decider_spec<book>()
      .given({dune_created(), stock_reserved{"b1", "o1", 3}, book_deleted{"b1"}})
      .when(commit_stock{"b1", "o1"})
      .then({stock_committed{"b1", "o1", 3}});
}

TEST(Book, CommitStockRejectsAnUnknownBook) {
  decider_spec<book>().given({}).when(commit_stock{"b1", "o1"}).then_rejected("not_found");
}

TEST(Book, CommittingEverythingLeavesZeroNotLess) {
  decider_spec<book> spec;
  spec.given({dune_created(5), stock_reserved{"b1", "o1", 2}, stock_reserved{"b1", "o2", 3},
              stock_committed{"b1", "o1", 2}})
      .when(commit_stock{"b1", "o2"})
      .then({stock_committed{"b1", "o2", 3}});
  EXPECT_EQ(spec.current_state().on_hand, 0);
  EXPECT_EQ(spec.current_state().reserved, 0);
}

// ---- ratings ----------------------------------------------------------------

TEST(Book, AddRatingToAnUnratedBookMakesItTheAverage) {
  decider_spec<book> spec;
  spec.given({dune_created()})
      .when(add_rating{"b1", "f1", 4})
      .then({rating_added{"b1", "f1", 4, 4.0, 1}});
  EXPECT_EQ(spec.current_state().average_rating, 4.0);
}

TEST(Book, AddRatingUpdatesTheAverage) {
  // (4·1 + 5) / 2 = 4.5
  decider_spec<book>()
      .given({dune_created(), rating_added{"b1", "f1", 4, 4.0, 1}})
      .when(add_rating{"b1", "f2", 5})
      .then({rating_added{"b1", "f2", 5, 4.5, 2}});
}

TEST(Book, AddRatingAcceptsZeroStars) {
  decider_spec<book>()
      .given({dune_created(), rating_added{"b1", "f1", 5, 5.0, 1}})
      .when(add_rating{"b1", "f2", 0})
      .then({rating_added{"b1", "f2", 0, 2.5, 2}});
}

TEST(Book, AddRatingForTheSameFeedbackAgainRecordsNothing) {
  decider_spec<book>()
      .given({dune_created(), rating_added{"b1", "f1", 4, 4.0, 1}})
      .when(add_rating{"b1", "f1", 4})
      .then_nothing();
}

TEST(Book, AddRatingRejectsMoreThanFiveStars) {
  decider_spec<book>()
      .given({dune_created()})
      .when(add_rating{"b1", "f1", 6})
      .then_rejected("invalid_rating");
}

TEST(Book, AddRatingRejectsANegativeRating) {
  decider_spec<book>()
      .given({dune_created()})
      .when(add_rating{"b1", "f1", -1})
      .then_rejected("invalid_rating");
}

TEST(Book, AddRatingRejectsABlankFeedbackId) {
  decider_spec<book>()
      .given({dune_created()})
      .when(add_rating{"b1", "", 3})
      .then_rejected("id_required");
}

TEST(Book, AddRatingRejectsAnUnknownBook) {
  decider_spec<book>().given({}).when(add_rating{"b1", "f1", 3}).then_rejected("not_found");
}

TEST(Book, AddRatingRejectsADeletedBook) {
  decider_spec<book>()
      .given({dune_created(), book_deleted{"b1"}})
      .when(add_rating{"b1", "f1", 3})
      .then_rejected("book_deleted");
}

TEST(Book, RemoveRatingUpdatesTheAverage) {
  // (4.5·2 − 5) / 1 = 4
  decider_spec<book> spec;
  spec.given({dune_created(), rating_added{"b1", "f1", 4, 4.0, 1},
              rating_added{"b1", "f2", 5, 4.5, 2}})
      .when(remove_rating{"b1", "f2"})
      .then({rating_removed{"b1", "f2", 5, 4.0, 1}});
  EXPECT_EQ(spec.current_state().average_rating, 4.0);
  EXPECT_EQ(spec.current_state().ratings.size(), 1u);
}

TEST(Book, RemovingTheLastRatingResetsTheAverageToZero) {
  decider_spec<book> spec;
  spec.given({dune_created(), rating_added{"b1", "f1", 4, 4.0, 1}})
      .when(remove_rating{"b1", "f1"})
      .then({rating_removed{"b1", "f1", 4, 0.0, 0}});
  EXPECT_EQ(spec.current_state().average_rating, 0.0);
}

TEST(Book, RemoveRatingForUnknownFeedbackRecordsNothing) {
  decider_spec<book>()
      .given({dune_created(), rating_added{"b1", "f1", 4, 4.0, 1}})
      .when(remove_rating{"b1", "f9"})
      .then_nothing();
}

TEST(Book, RemoveRatingRejectsAnUnknownBook) {
  decider_spec<book>().given({}).when(remove_rating{"b1", "f1"}).then_rejected("not_found");
}

TEST(Book, RemoveRatingRejectsADeletedBook) {
  decider_spec<book>()
      .given({dune_created(), rating_added{"b1", "f1", 4, 4.0, 1}, book_deleted{"b1"}})
      .when(remove_rating{"b1", "f1"})
      .then_rejected("book_deleted");
}

TEST(Book, AverageStaysExactOverManyRatings) {
  // Thirds do not add up exactly in binary; the kept ratings make the
  // average after removals match a fresh computation anyway.
  decider_spec<book> spec;
  spec.given({dune_created()});
  for (int i = 0; i < 30; ++i) {
    auto d =
        book::decide(add_rating{"b1", "f" + std::to_string(i), i % 3 + 1}, spec.current_state());
    ASSERT_TRUE(d.has_value());
    spec.given(*d);
  }
  for (int i = 0; i < 29; ++i) {
    auto d = book::decide(remove_rating{"b1", "f" + std::to_string(i)}, spec.current_state());
    ASSERT_TRUE(d.has_value());
    spec.given(*d);
  }
  // Only f29 is left, rated 29 % 3 + 1 = 3.
  EXPECT_EQ(spec.current_state().average_rating, 3.0);
}

// ---- schema versions --------------------------------------------------------

TEST(Book, BookCreatedIsWrittenAsVersionTwo) {
  auto enc = troupe::variant_codec<book::event>::encode(dune_created());
  EXPECT_EQ(enc.type, "book_created");
  EXPECT_EQ(enc.schema_version, 2);
}

TEST(Book, VersionOneBookCreatedIsUpcastToAnAuthorList) {
  const std::string_view v1 = R"({"book_id":"b1","name":"Dune","description":"Desert planet",
      "price":1999,"discount_price":1499,"category_id":"c1","publisher_id":"p1",
      "author_id":"a1","initial_stock":10})";
  auto decoded = troupe::variant_codec<book::event>::decode("book_created", 1, v1);
  ASSERT_TRUE(decoded.has_value()) << decoded.error();
  auto expected = dune_created();
  expected.author_ids = {"a1"};
  EXPECT_EQ(*decoded, book::event{expected});
}

TEST(Book, VersionOneBookCreatedWithoutAnAuthorGetsAnEmptyList) {
  const std::string_view v1 = R"({"book_id":"b1","name":"Dune","description":"Desert planet",
      "price":1999,"discount_price":null,"category_id":"c1","publisher_id":"p1",
      "author_id":"","initial_stock":0})";
  auto decoded = troupe::variant_codec<book::event>::decode("book_created", 1, v1);
  ASSERT_TRUE(decoded.has_value()) << decoded.error();
  const auto& e = std::get<book_created>(*decoded);
  EXPECT_TRUE(e.author_ids.empty());
  EXPECT_EQ(e.discount_price, std::nullopt);
}

}  // namespace
}  // namespace bookstore
