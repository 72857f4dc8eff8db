// The bookstore's views, folded in memory from events: what a query would
// read after the projector applied them.

#include "actors/projections.hpp"

#include <gtest/gtest.h>

#include "actors/bookstore.hpp"

namespace bookstore {
namespace {

using troupe::recorded_event;
using troupe::view::memory_view;
using troupe::view::value;
using troupe::view::view_changes;

template <class E>
recorded_event recorded(const E& e, std::int64_t position) {
  auto encoded = troupe::variant_codec<std::variant<E>>::encode(e);
  recorded_event r;
  r.type = std::string(encoded.type);
  r.schema_version = encoded.schema_version;
  r.data = std::move(encoded.data);
  r.position = troupe::global_position{position};
  return r;
}

/// Applies events in batches of `batch` (the projector's unit), so both the
/// per-event and the folded paths are exercised.
struct view_fixture {
  troupe::projection_definition def;
  memory_view view{def.tables};
  std::int64_t next_position = 1;

  explicit view_fixture(troupe::projection_definition d) : def(std::move(d)), view(def.tables) {}

  template <class... Es>
  void given(const Es&... events) {
    view_changes batch(def.tables);
    (apply_one(recorded(events, next_position++), batch), ...);
    view.apply(batch);
  }
  void apply_one(const recorded_event& e, view_changes& batch) {
    view_changes one(def.tables);
    def.apply(e, one);
    batch.merge(one);
  }
  const value& at(std::string_view table, troupe::view::key k, std::string_view column) const {
    return view.at(def.table_index(table), k, column);
  }
  std::size_t rows(std::string_view table) const {
    return view.rows(def.table_index(table)).size();
  }
};

const std::vector<order_item> items{{"b1", 2, 1999}, {"b2", 1, 500}};
value text(const char* s) { return std::string(s); }
value num(std::int64_t n) { return n; }

TEST(OrderSummary, FollowsTheOrderToCompletion) {
  view_fixture f(order_summary_projection());
  f.given(order_placed{"o1", "u1", items, 4498, 1000});
  EXPECT_EQ(f.at("order_summary", {text("o1")}, "status"), text("placed"));
  EXPECT_EQ(f.at("order_summary", {text("o1")}, "item_count"), num(3));
  EXPECT_EQ(f.at("order_summary", {text("o1")}, "closed_at"), value{});
  f.given(order_completed{"o1", "u1", items, 4498, 2000});
  EXPECT_EQ(f.at("order_summary", {text("o1")}, "status"), text("completed"));
  EXPECT_EQ(f.at("order_summary", {text("o1")}, "total"), num(4498));
  EXPECT_EQ(f.at("order_summary", {text("o1")}, "closed_at"), num(2000));
}

TEST(OrderSummary, CancelledOrderKeepsTheReasonEvenWithinOneBatch) {
  view_fixture f(order_summary_projection());
  f.given(order_placed{"o1", "u1", items, 4498, 1000},
          order_cancelled{"o1", "u1", "out of stock", 1500});
  EXPECT_EQ(f.at("order_summary", {text("o1")}, "status"), text("cancelled"));
  EXPECT_EQ(f.at("order_summary", {text("o1")}, "cancel_reason"), text("out of stock"));
  EXPECT_EQ(f.at("order_summary", {text("o1")}, "buyer_id"), text("u1"));
}

TEST(OrdersByBuyer, ListsEachBuyersOrdersOnly) {
  view_fixture f(orders_by_buyer_projection());
  f.given(order_placed{"o1", "u1", items, 4498, 1000}, order_placed{"o2", "u2", items, 4498, 1001},
          order_placed{"o3", "u1", items, 4498, 1002});
  f.given(order_completed{"o3", "u1", items, 4498, 3000});
  EXPECT_EQ(f.rows("orders_by_buyer"), 3u);
  EXPECT_EQ(f.at("orders_by_buyer", {text("u1"), text("o3")}, "status"), text("completed"));
  EXPECT_EQ(f.at("orders_by_buyer", {text("u1"), text("o1")}, "status"), text("placed"));
  EXPECT_THROW(f.at("orders_by_buyer", {text("u2"), text("o1")}, "status"), std::out_of_range);
}

TEST(BookCatalog, TracksStockThroughReserveReleaseAndCommit) {
  view_fixture f(book_catalog_projection());
  f.given(book_created{"b1", "Dune", "sand", 1999, std::nullopt, "c1", "p1", {"a1", "a2"}, 10});
  f.given(stock_reserved{"b1", "o1", 3}, stock_reserved{"b1", "o2", 2});
  f.given(stock_released{"b1", "o2", 2}, stock_committed{"b1", "o1", 3}, stock_added{"b1", 5});
  EXPECT_EQ(f.at("book_catalog", {text("b1")}, "stock"), num(12));
  EXPECT_EQ(f.at("book_catalog", {text("b1")}, "reserved"), num(0));
  EXPECT_EQ(f.at("book_catalog", {text("b1")}, "sold"), num(3));
  EXPECT_EQ(f.at("book_catalog", {text("b1")}, "author_ids"), text(R"(["a1","a2"])"));
  EXPECT_EQ(f.at("book_catalog", {text("b1")}, "discount_price"), value{});
}

TEST(BookCatalog, KeepsRatingsNamesAndDeletions) {
  view_fixture f(book_catalog_projection());
  f.given(author_created{"a1", "Frank Herbert"}, category_created{"c1", "Science fiction"},
          publisher_created{"p1", "Chilton"},
          book_created{"b1", "Dune", "sand", 1999, 1500, "c1", "p1", {"a1"}, 10},
          rating_added{"b1", "f1", 5, 5.0, 1}, rating_added{"b1", "f2", 4, 4.5, 2});
  EXPECT_EQ(f.at("book_catalog", {text("b1")}, "average_rating"), value(4.5));
  EXPECT_EQ(f.at("book_catalog", {text("b1")}, "rating_count"), num(2));
  EXPECT_EQ(f.at("catalog_authors", {text("a1")}, "name"), text("Frank Herbert"));
  f.given(author_updated{"a1", "F. Herbert"}, rating_removed{"b1", "f2", 4, 5.0, 1});
  EXPECT_EQ(f.at("catalog_authors", {text("a1")}, "name"), text("F. Herbert"));
  EXPECT_EQ(f.at("book_catalog", {text("b1")}, "rating_count"), num(1));
  f.given(book_deleted{"b1"}, category_deleted{"c1"});
  EXPECT_EQ(f.rows("book_catalog"), 0u);
  EXPECT_EQ(f.rows("catalog_categories"), 0u);
  EXPECT_EQ(f.rows("catalog_publishers"), 1u);
}

TEST(SalesByBook, CountsCompletedOrdersOnly) {
  view_fixture f(sales_by_book_projection());
  f.given(order_placed{"o1", "u1", items, 4498, 1000},
          order_completed{"o1", "u1", items, 4498, 2000}, order_cancelled{"o2", "u1", "no", 2500},
          order_completed{"o3", "u2", {{"b1", 1, 1999}}, 1999, 3000});
  EXPECT_EQ(f.at("sales_by_book", {text("b1")}, "units"), num(3));
  EXPECT_EQ(f.at("sales_by_book", {text("b1")}, "revenue"), num(3 * 1999));
  EXPECT_EQ(f.at("sales_by_book", {text("b1")}, "orders"), num(2));
  EXPECT_EQ(f.at("sales_by_book", {text("b2")}, "revenue"), num(500));
}

TEST(Projections, UndecodableEventDataThrowsSoTheProjectorCanParkIt) {
  auto def = order_summary_projection();
  recorded_event bad;
  bad.type = "order_placed";
  bad.schema_version = 1;
  bad.data = R"({"order_id": 42})";
  view_changes changes(def.tables);
  EXPECT_THROW(def.apply(bad, changes), std::runtime_error);
  EXPECT_TRUE(changes.empty());
}

TEST(Projections, EventsWithoutAHandlerChangeNothing) {
  auto def = sales_by_book_projection();
  view_changes changes(def.tables);
  def.apply(recorded(author_created{"a1", "x"}, 1), changes);
  EXPECT_TRUE(changes.empty());
  EXPECT_FALSE(def.handles("author_created"));
  EXPECT_TRUE(def.handles("order_completed"));
}

}  // namespace
}  // namespace bookstore
