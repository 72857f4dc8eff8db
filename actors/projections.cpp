#include "actors/projections.hpp"

#include <boost/json.hpp>

#include "actors/bookstore.hpp"

namespace bookstore {

using troupe::projection_builder;
using troupe::projection_definition;
using troupe::recorded_event;
using troupe::view::column_type;
using troupe::view::value;
using troupe::view::view_changes;
using text = std::string;

namespace {

constexpr auto t_text = column_type::text;
constexpr auto t_int = column_type::bigint;
constexpr auto t_float = column_type::float8;
constexpr auto t_json = column_type::jsonb;
constexpr std::int64_t zero = 0;

std::int64_t item_count(const std::vector<order_item>& items) {
  std::int64_t n = 0;
  for (const auto& i : items) n += i.quantity;
  return n;
}

value optional_int(const std::optional<std::int64_t>& v) {
  return v ? value{*v} : value{std::monostate{}};
}

std::string json_array(const std::vector<std::string>& ids) {
  boost::json::array a;
  for (const auto& id : ids) a.emplace_back(id);
  return boost::json::serialize(a);
}

/// The catalog columns book_created and book_updated both set.
template <class E>
std::vector<troupe::view::assignment> book_columns(const E& e) {
  return {{"name", e.name},
          {"description", e.description},
          {"price", e.price},
          {"discount_price", optional_int(e.discount_price)},
          {"category_id", e.category_id},
          {"publisher_id", e.publisher_id},
          {"author_ids", json_array(e.author_ids)}};
}

}  // namespace

projection_definition order_summary_projection() {
  projection_builder p("order_summary", 1);
  auto orders = p.table({"order_summary",
                         {{"order_id", t_text},
                          {"buyer_id", t_text},
                          {"status", t_text},
                          {"total", t_int},
                          {"item_count", t_int},
                          {"placed_at", t_int},
                          {"closed_at", t_int},
                          {"cancel_reason", t_text}},
                         1,
                         {{"buyer_id"}},
                         // Every row is updated once after its insert (completed or
                         // cancelled): at 100 only ~40 % of those updates stayed on
                         // the row's page, at 70 ~85 % (docs/benchmarks.md).
                         70});
  p.on<order_placed>([orders](const order_placed& e, const recorded_event&, view_changes& v) {
    v.upsert(orders, {e.order_id},
             {{"buyer_id", e.buyer_id},
              {"status", text("placed")},
              {"total", e.total},
              {"item_count", item_count(e.items)},
              {"placed_at", e.placed_at}});
  });
  p.on<order_completed>([orders](const order_completed& e, const recorded_event&, view_changes& v) {
    v.upsert(orders, {e.order_id}, {{"status", text("completed")}, {"closed_at", e.completed_at}});
  });
  p.on<order_cancelled>([orders](const order_cancelled& e, const recorded_event&, view_changes& v) {
    v.upsert(orders, {e.order_id},
             {{"status", text("cancelled")},
              {"closed_at", e.cancelled_at},
              {"cancel_reason", e.reason}});
  });
  return std::move(p).build();
}

projection_definition orders_by_buyer_projection() {
  projection_builder p("orders_by_buyer", 1);
  auto by_buyer = p.table({"orders_by_buyer",
                           {{"buyer_id", t_text},
                            {"order_id", t_text},
                            {"status", t_text},
                            {"total", t_int},
                            {"item_count", t_int},
                            {"placed_at", t_int}},
                           2,
                           {{"buyer_id", "placed_at"}}});
  p.on<order_placed>([by_buyer](const order_placed& e, const recorded_event&, view_changes& v) {
    v.upsert(by_buyer, {e.buyer_id, e.order_id},
             {{"status", text("placed")},
              {"total", e.total},
              {"item_count", item_count(e.items)},
              {"placed_at", e.placed_at}});
  });
  p.on<order_completed>(
      [by_buyer](const order_completed& e, const recorded_event&, view_changes& v) {
        v.upsert(by_buyer, {e.buyer_id, e.order_id}, {{"status", text("completed")}});
      });
  p.on<order_cancelled>(
      [by_buyer](const order_cancelled& e, const recorded_event&, view_changes& v) {
        v.upsert(by_buyer, {e.buyer_id, e.order_id}, {{"status", text("cancelled")}});
      });
  return std::move(p).build();
}

projection_definition book_catalog_projection() {
  projection_builder p("book_catalog", 1);
  auto books = p.table({"book_catalog",
                        {{"book_id", t_text},
                         {"name", t_text},
                         {"description", t_text},
                         {"price", t_int},
                         {"discount_price", t_int},
                         {"category_id", t_text},
                         {"publisher_id", t_text},
                         {"author_ids", t_json},
                         {"stock", t_int, zero},
                         {"reserved", t_int, zero},
                         {"sold", t_int, zero},
                         {"average_rating", t_float, 0.0},
                         {"rating_count", t_int, zero}},
                        1,
                        {{"category_id"}, {"publisher_id"}, {"name"}}});
  auto authors = p.table({"catalog_authors", {{"author_id", t_text}, {"name", t_text}}});
  auto categories = p.table({"catalog_categories", {{"category_id", t_text}, {"name", t_text}}});
  auto publishers = p.table({"catalog_publishers", {{"publisher_id", t_text}, {"name", t_text}}});

  p.view("book_catalog_view",
         "SELECT b.book_id, b.name, b.description, b.price, b.discount_price, b.category_id, "
         "c.name AS category_name, b.publisher_id, p.name AS publisher_name, b.author_ids, "
         "coalesce((SELECT jsonb_agg(a.name ORDER BY x.n) FROM "
         "jsonb_array_elements_text(b.author_ids) WITH ORDINALITY AS x(id, n) "
         "JOIN {schema}.catalog_authors a ON a.author_id = x.id), '[]'::jsonb) AS author_names, "
         "b.stock, b.reserved, b.sold, b.average_rating, b.rating_count "
         "FROM {schema}.book_catalog b "
         "LEFT JOIN {schema}.catalog_categories c ON c.category_id = b.category_id "
         "LEFT JOIN {schema}.catalog_publishers p ON p.publisher_id = b.publisher_id");

  p.on<book_created>([books](const book_created& e, const recorded_event&, view_changes& v) {
    auto columns = book_columns(e);
    columns.push_back({"stock", e.initial_stock});
    v.upsert(books, {e.book_id}, std::move(columns));
  });
  p.on<book_updated>([books](const book_updated& e, const recorded_event&, view_changes& v) {
    v.upsert(books, {e.book_id}, book_columns(e));
  });
  p.on<book_deleted>([books](const book_deleted& e, const recorded_event&, view_changes& v) {
    v.remove(books, {e.book_id});
  });
  p.on<stock_added>([books](const stock_added& e, const recorded_event&, view_changes& v) {
    v.increment(books, {e.book_id}, {{"stock", e.quantity}});
  });
  p.on<stock_reserved>([books](const stock_reserved& e, const recorded_event&, view_changes& v) {
    v.increment(books, {e.book_id}, {{"stock", -e.quantity}, {"reserved", e.quantity}});
  });
  p.on<stock_released>([books](const stock_released& e, const recorded_event&, view_changes& v) {
    v.increment(books, {e.book_id}, {{"stock", e.quantity}, {"reserved", -e.quantity}});
  });
  p.on<stock_committed>([books](const stock_committed& e, const recorded_event&, view_changes& v) {
    v.increment(books, {e.book_id}, {{"reserved", -e.quantity}, {"sold", e.quantity}});
  });
  p.on<rating_added>([books](const rating_added& e, const recorded_event&, view_changes& v) {
    v.upsert(books, {e.book_id},
             {{"average_rating", e.average_rating}, {"rating_count", e.rating_count}});
  });
  p.on<rating_removed>([books](const rating_removed& e, const recorded_event&, view_changes& v) {
    v.upsert(books, {e.book_id},
             {{"average_rating", e.average_rating}, {"rating_count", e.rating_count}});
  });

  auto named = [&p]<class Created, class Updated, class Deleted>(std::size_t table, auto id_of) {
    auto set_name = [table, id_of](const auto& e, const recorded_event&, view_changes& v) {
      v.upsert(table, {id_of(e)}, {{"name", e.name}});
    };
    p.on<Created>(set_name);
    p.on<Updated>(set_name);
    p.on<Deleted>([table, id_of](const Deleted& e, const recorded_event&, view_changes& v) {
      v.remove(table, {id_of(e)});
    });
  };
  named.operator()<author_created, author_updated, author_deleted>(
      authors, [](const auto& e) { return e.author_id; });
  named.operator()<category_created, category_updated, category_deleted>(
      categories, [](const auto& e) { return e.category_id; });
  named.operator()<publisher_created, publisher_updated, publisher_deleted>(
      publishers, [](const auto& e) { return e.publisher_id; });
  return std::move(p).build();
}

projection_definition feedbacks_projection() {
  projection_builder p("feedbacks", 1);
  auto feedbacks = p.table({"feedbacks",
                            {{"feedback_id", t_text},
                             {"book_id", t_text},
                             {"rating", t_int},
                             {"comment", t_text},
                             {"created_at", t_int}},
                            1,
                            {{"book_id", "created_at"}}});
  p.on<feedback_created>(
      [feedbacks](const feedback_created& e, const recorded_event&, view_changes& v) {
        v.upsert(feedbacks, {e.feedback_id},
                 {{"book_id", e.book_id},
                  {"rating", std::int64_t{e.rating}},
                  {"comment", e.comment},
                  {"created_at", e.created_at}});
      });
  p.on<feedback_deleted>([feedbacks](const feedback_deleted& e, const recorded_event&,
                                     view_changes& v) { v.remove(feedbacks, {e.feedback_id}); });
  return std::move(p).build();
}

projection_definition sales_by_book_projection() {
  projection_builder p("sales_by_book", 1);
  auto sales = p.table({"sales_by_book",
                        {{"book_id", t_text},
                         {"units", t_int, zero},
                         {"revenue", t_int, zero},
                         {"orders", t_int, zero}}});
  p.on<order_completed>([sales](const order_completed& e, const recorded_event&, view_changes& v) {
    for (const auto& item : e.items)
      v.increment(sales, {item.book_id},
                  {{"units", item.quantity},
                   {"revenue", item.quantity * item.unit_price},
                   {"orders", std::int64_t{1}}});
  });
  return std::move(p).build();
}

std::vector<projection_definition> bookstore_projections() {
  std::vector<projection_definition> all;
  all.push_back(order_summary_projection());
  all.push_back(orders_by_buyer_projection());
  all.push_back(book_catalog_projection());
  all.push_back(sales_by_book_projection());
  all.push_back(feedbacks_projection());
  return all;
}

}  // namespace bookstore
