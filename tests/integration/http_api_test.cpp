// The HTTP API against a running `troupe serve` (real PostgreSQL and NATS),
// through a real HTTP client: every route's success and error paths,
// idempotency (also across a restart), auth, limits, backpressure and a
// graceful SIGTERM.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "persistence/postgres/migrations.hpp"
#include "tests/integration/http_client.hpp"
#include "tests/integration/pg_env.hpp"
#include "tests/integration/serve_node.hpp"
#include "tests/integration/troupe_process.hpp"
#include "tests/support/test_support.hpp"

namespace troupe {
namespace {

namespace json = boost::json;
using integration::http_client;
using integration::http_reply;
using test_support::eventually;
using test_support::unique;

using integration::free_port;
using integration::serve_node;

std::string body(const json::object& o) { return json::serialize(o); }

class HttpApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    node_ = new serve_node();
    ASSERT_TRUE(node_->start()) << "troupe serve did not become ready";
    admin_token_ = node_->token("root", true);
    ASSERT_FALSE(admin_token_.empty());
  }
  static void TearDownTestSuite() {
    delete node_;
    node_ = nullptr;
  }

  http_client admin() {
    http_client c(node_->port);
    c.token = admin_token_;
    return c;
  }
  http_client buyer(const std::string& id) {
    http_client c(node_->port);
    c.token = node_->token(id, false);
    return c;
  }
  http_client anonymous() { return http_client(node_->port); }

  /// Creates a book with stock and returns its id.
  std::string make_book(http_client& c, std::int64_t price, std::int64_t stock,
                        const std::string& category = "fiction",
                        const std::string& name = "A book") {
    auto id = unique("book");
    auto r = c.post("/api/v1/books", body({{"book_id", id},
                                           {"name", name},
                                           {"price", price},
                                           {"category_id", category},
                                           {"publisher_id", "pub"},
                                           {"author_ids", json::array{"a1"}},
                                           {"initial_stock", stock}}));
    EXPECT_EQ(r.status, 201) << r.body;
    return id;
  }

  static inline serve_node* node_ = nullptr;
  static inline std::string admin_token_;
};

// ---- operations routes -----------------------------------------------------------

TEST_F(HttpApi, HealthReadinessMetricsAndEventCatalogAnswer) {
  auto c = anonymous();
  EXPECT_EQ(c.get("/healthz").status, 200);
  auto ready = c.get("/readyz");
  EXPECT_EQ(ready.status, 200) << ready.body;
  EXPECT_EQ(ready.json().at("store"), "ok");
  EXPECT_EQ(ready.json().at("bus"), "ok");

  auto a = admin();
  auto alone = a.get("/api/v1/cluster");
  EXPECT_EQ(alone.status, 404) << alone.body;
  EXPECT_NE(alone.body.find("not-clustered"), std::string::npos) << alone.body;
  make_book(a, 100, 1);
  auto metrics = c.get("/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.header("content-type").find("text/plain"), std::string::npos);
  EXPECT_NE(metrics.body.find("troupe_http_requests_total{"), std::string::npos);
  EXPECT_NE(metrics.body.find("route=\"/api/v1/books\""), std::string::npos);
  EXPECT_NE(metrics.body.find("troupe_commands_total{outcome=\"accepted\"}"), std::string::npos);
  EXPECT_NE(metrics.body.find("troupe_projection_position{projection=\"book_catalog\"}"),
            std::string::npos);
  EXPECT_NE(metrics.body.find("troupe_saga_inputs_queued{saga=\"orderfulfilment\"}"),
            std::string::npos);
  // Prometheus's text format: each family's samples follow its own HELP and
  // TYPE, all together, and no family is described twice.
  std::set<std::string> families;
  std::string current;
  std::istringstream lines(metrics.body);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("# TYPE ")) {
      current = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_TRUE(families.insert(current).second) << current << " is described twice";
    } else if (!line.empty() && !line.starts_with("#")) {
      auto name = line.substr(0, line.find_first_of("{ "));
      bool in_family = name == current || name == current + "_bucket" || name == current + "_sum" ||
                       name == current + "_count";
      EXPECT_TRUE(in_family) << name << " is a sample under " << current << "'s TYPE";
    }
  }

  auto catalog = c.get("/api/v1/event-catalog");
  ASSERT_EQ(catalog.status, 200);
  bool found = false;
  auto doc1 = catalog.json();
  for (const auto& e : doc1.at("events").as_array()) {
    if (e.at("type") != "order_placed") continue;
    found = true;
    EXPECT_EQ(e.at("producer"), "order");
    EXPECT_EQ(e.at("schema_version"), 2);  // v2 says whether it came from the basket
    auto has = [](const json::value& list, std::string_view name) {
      for (const auto& x : list.as_array())
        if (x.is_string() && x.as_string() == name) return true;
      return false;
    };
    EXPECT_TRUE(has(e.at("projections"), "order_summary"));
    EXPECT_TRUE(has(e.at("sagas"), "orderfulfilment"));
  }
  EXPECT_TRUE(found);
}

TEST_F(HttpApi, UnknownRoutesWrongMethodsAndBadTargetsGetProblems) {
  auto c = admin();
  auto missing = c.get("/api/v1/nothing");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.header("content-type"), "application/problem+json");
  EXPECT_EQ(missing.problem_type(), "not-found");
  auto wrong = c.request("PATCH", "/api/v1/books");
  EXPECT_EQ(wrong.status, 405);
  EXPECT_EQ(wrong.problem_type(), "method-not-allowed");
  EXPECT_NE(wrong.header("allow").find("POST"), std::string::npos);
  EXPECT_NE(wrong.header("allow").find("GET"), std::string::npos);
}

// ---- authentication -----------------------------------------------------------------

TEST_F(HttpApi, CatalogWritesNeedAnAdminAndTokensMustVerify) {
  auto book = body({{"name", "x"}, {"price", 1}, {"category_id", "c"}, {"publisher_id", "p"}});
  auto anon = anonymous();
  auto r = anon.post("/api/v1/books", book);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.problem_type(), "unauthenticated");
  EXPECT_NE(r.header("www-authenticate").find("Bearer"), std::string::npos);

  auto alice = buyer("alice");
  r = alice.post("/api/v1/books", book);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.problem_type(), "forbidden");

  http_client forged(node_->port);
  forged.token = admin_token_.substr(0, admin_token_.size() - 4) + "AAAA";  // bad signature
  r = forged.post("/api/v1/books", book);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.problem_type(), "invalid-token");

  // "alg": "none" with an admin claim must not pass.
  http_client unsigned_token(node_->port);
  unsigned_token.token =
      "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."
      "eyJzdWIiOiJyb290Iiwicm9sZXMiOlsiYWRtaW4iXSwiZXhwIjo0MTAyNDQ0ODAwfQ.";
  r = unsigned_token.post("/api/v1/books", book);
  EXPECT_EQ(r.status, 401) << r.body;

  auto junk = anon.request("POST", "/api/v1/books", book, {{"authorization", "Basic abc"}});
  EXPECT_EQ(junk.status, 401);

  // Reads of the catalog are open.
  EXPECT_EQ(anon.get("/api/v1/books").status, 200);
  // Tokens need a subject.
  auto no_sub = anon.post("/api/v1/dev/tokens", body({{"admin", true}}));
  EXPECT_EQ(no_sub.status, 400);
}

// ---- catalog -------------------------------------------------------------------------

TEST_F(HttpApi, AuthorsCategoriesAndPublishersHaveTheirWholeLifecycle) {
  auto c = admin();
  for (std::string plural : {"authors", "categories", "publishers"}) {
    std::string field = plural == "authors"      ? "author_id"
                        : plural == "categories" ? "category_id"
                                                 : "publisher_id";
    auto base = "/api/v1/" + plural;
    auto name = unique("Name");
    auto created = c.post(base, body({{"name", name}}));
    ASSERT_EQ(created.status, 201) << plural << ": " << created.body;
    std::string id(created.json().at(field).as_string());
    EXPECT_EQ(created.header("location"), base + "/" + id);
    EXPECT_EQ(created.header("etag"), "\"1\"");
    auto position = created.header("x-troupe-position");
    ASSERT_FALSE(position.empty());

    auto got = c.get(base + "/" + id);
    ASSERT_EQ(got.status, 200) << got.body;
    EXPECT_EQ(got.json().at("name").as_string(), name);

    // The list, read-your-writes through the position header.
    auto list = c.request("GET", base + "?name=" + name.substr(0, 6) + "&page_size=100", {},
                          {{"x-troupe-min-position", position}});
    ASSERT_EQ(list.status, 200) << list.body;
    bool listed = false;
    auto doc2 = list.json();
    for (const auto& item : doc2.at("items").as_array())
      listed = listed || item.at(field).as_string() == id;
    EXPECT_TRUE(listed) << list.body;

    auto again = c.post(base, body({{field, id}, {"name", "other"}}));
    EXPECT_EQ(again.status, 409) << again.body;
    EXPECT_EQ(again.problem_type(), "already-exists");
    auto blank = c.post(base, body({{"name", "  "}}));
    EXPECT_EQ(blank.status, 422) << blank.body;
    EXPECT_EQ(blank.problem_type(), "name-required");

    auto stale =
        c.request("PUT", base + "/" + id, body({{"name", "Renamed"}}), {{"if-match", "\"7\""}});
    EXPECT_EQ(stale.status, 412) << stale.body;
    auto renamed =
        c.request("PUT", base + "/" + id, body({{"name", "Renamed"}}), {{"if-match", "\"1\""}});
    EXPECT_EQ(renamed.status, 200) << renamed.body;
    EXPECT_EQ(renamed.header("etag"), "\"2\"");
    EXPECT_EQ(c.get(base + "/" + id).json().at("name"), "Renamed");

    auto removed = c.request("DELETE", base + "/" + id);
    EXPECT_EQ(removed.status, 200) << removed.body;
    EXPECT_EQ(c.get(base + "/" + id).status, 404);
    auto twice = c.request("DELETE", base + "/" + id);
    EXPECT_EQ(twice.status, 409) << twice.body;
    EXPECT_EQ(c.get(base + "/never-made").status, 404);
  }
}

TEST_F(HttpApi, BadBodiesAreRefusedWithTheFieldNamed) {
  auto c = admin();
  auto wrong_type = c.post("/api/v1/authors", "{\"name\":\"x\"}", {{"content-type", "text/plain"}});
  EXPECT_EQ(wrong_type.status, 415);
  EXPECT_EQ(wrong_type.problem_type(), "unsupported-media-type");
  auto malformed = c.post("/api/v1/authors", "{\"name\":");
  EXPECT_EQ(malformed.status, 400);
  EXPECT_EQ(malformed.problem_type(), "malformed-json");
  auto not_object = c.post("/api/v1/authors", "[1,2]");
  EXPECT_EQ(not_object.status, 400);

  auto fields = c.post("/api/v1/books", body({{"name", 5},
                                              {"price", "cheap"},
                                              {"category_id", "c"},
                                              {"publisher_id", "p"},
                                              {"colour", "red"}}));
  ASSERT_EQ(fields.status, 400) << fields.body;
  EXPECT_EQ(fields.problem_type(), "invalid-field");
  std::set<std::string> named;
  auto doc3 = fields.json();
  for (const auto& e : doc3.at("errors").as_array())
    named.insert(std::string(e.at("field").as_string()));
  EXPECT_EQ(named, (std::set<std::string>{"name", "price", "colour"}));

  auto missing = c.post("/api/v1/books", body({{"name", "x"}}));
  EXPECT_EQ(missing.status, 400);
  auto bad_id =
      c.post("/api/v1/authors", body({{"author_id", "no spaces allowed"}, {"name", "x"}}));
  EXPECT_EQ(bad_id.status, 400);
  auto mismatch = c.request("PUT", "/api/v1/authors/a", body({{"author_id", "b"}, {"name", "x"}}));
  EXPECT_EQ(mismatch.status, 400);
  auto bad_if_match =
      c.request("PUT", "/api/v1/authors/a", body({{"name", "x"}}), {{"if-match", "yesterday"}});
  EXPECT_EQ(bad_if_match.status, 400);
  auto bad_page = c.get("/api/v1/books?page=0&page_size=1000");
  EXPECT_EQ(bad_page.status, 400);
  auto bad_price = c.get("/api/v1/books?min_price=cheap");
  EXPECT_EQ(bad_price.status, 400);

  // Nothing half-applied: none of the refused requests wrote an event.
  auto history = c.get("/api/v1/streams/author-a/events");
  ASSERT_EQ(history.status, 200);
  EXPECT_EQ(history.json().at("events").as_array().size(), 0u);
}

TEST_F(HttpApi, BooksAreCreatedSearchedUpdatedStockedAndDeleted) {
  auto c = admin();
  auto category = unique("cat");
  auto cheap = make_book(c, 500, 3, category, "Cheap Thrills");
  auto dear = make_book(c, 5000, 1, category, "Dear Reader");
  auto got = c.get("/api/v1/books/" + cheap);
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.json().at("stock"), 3);
  EXPECT_EQ(got.json().at("price"), 500);

  auto stocked = c.post("/api/v1/books/" + cheap + "/stock", body({{"quantity", 4}}));
  ASSERT_EQ(stocked.status, 200) << stocked.body;
  auto zero = c.post("/api/v1/books/" + cheap + "/stock", body({{"quantity", 0}}));
  EXPECT_EQ(zero.status, 422) << zero.body;
  EXPECT_EQ(c.post("/api/v1/books/nope/stock", body({{"quantity", 1}})).status, 404);
  auto wait = std::vector<std::pair<std::string, std::string>>{
      {"x-troupe-min-position", stocked.header("x-troupe-position")}};

  auto search = [&](const std::string& query) {
    auto r = c.request("GET", "/api/v1/books?category_id=" + category + query, {}, wait);
    EXPECT_EQ(r.status, 200) << r.body;
    std::vector<std::string> ids;
    auto doc4 = r.json();
    for (const auto& b : doc4.at("items").as_array()) ids.emplace_back(b.at("book_id").as_string());
    return ids;
  };
  EXPECT_EQ(search(""), (std::vector<std::string>{cheap, dear}));  // by name
  EXPECT_EQ(search("&name=dear"), (std::vector<std::string>{dear}));
  EXPECT_EQ(search("&max_price=1000"), (std::vector<std::string>{cheap}));
  EXPECT_EQ(search("&min_price=1000"), (std::vector<std::string>{dear}));
  EXPECT_EQ(search("&author_id=a1&publisher_id=pub").size(), 2u);
  EXPECT_TRUE(search("&author_id=nobody").empty());
  EXPECT_EQ(search("&page_size=1&page=2"), (std::vector<std::string>{dear}));
  auto counted =
      c.request("GET", "/api/v1/books?category_id=" + category + "&page_size=1", {}, wait);
  EXPECT_EQ(counted.json().at("total"), 2);
  auto row = c.request("GET", "/api/v1/books?category_id=" + category + "&name=cheap", {}, wait);
  EXPECT_EQ(row.json().at("items").at(0).at("stock"), 7);

  // A cached answer never hides the client's own write: with its position,
  // the list is read again.
  auto before = search("");
  auto third = make_book(c, 900, 1, category, "Zebra");
  auto third_history = c.get("/api/v1/streams/book-" + third + "/events");
  auto third_position = std::to_string(
      third_history.json().at("events").at(0).at("position").to_number<std::int64_t>());
  wait = {{"x-troupe-min-position", third_position}};
  EXPECT_EQ(search("").size(), before.size() + 1);

  auto updated = c.request("PUT", "/api/v1/books/" + dear,
                           body({{"name", "Dear Reader (2nd ed.)"},
                                 {"price", 4000},
                                 {"discount_price", 3500},
                                 {"category_id", category},
                                 {"publisher_id", "pub"}}));
  ASSERT_EQ(updated.status, 200) << updated.body;
  EXPECT_EQ(c.get("/api/v1/books/" + dear).json().at("discount_price"), 3500);
  auto bad_discount = c.request("PUT", "/api/v1/books/" + dear,
                                body({{"name", "x"},
                                      {"price", 100},
                                      {"discount_price", 200},
                                      {"category_id", category},
                                      {"publisher_id", "pub"}}));
  EXPECT_EQ(bad_discount.status, 422);
  EXPECT_EQ(bad_discount.problem_type(), "discount-above-price");

  EXPECT_EQ(c.request("DELETE", "/api/v1/books/" + dear).status, 200);
  EXPECT_EQ(c.get("/api/v1/books/" + dear).status, 404);
  EXPECT_EQ(
      c.request("PUT", "/api/v1/books/" + dear,
                body({{"name", "x"}, {"price", 1}, {"category_id", "c"}, {"publisher_id", "p"}}))
          .status,
      409);
}

// ---- baskets, orders, accounts, feedbacks ---------------------------------------------

TEST_F(HttpApi, ABuyerReachesOnlyTheirOwnBasket) {
  auto a = admin();
  auto book_id = make_book(a, 700, 10);
  auto me = unique("buyer");
  auto mine = buyer(me);
  auto put = mine.request(
      "PUT", "/api/v1/baskets/" + me,
      body({{"items", json::array{json::object{{"book_id", book_id}, {"quantity", 2}}}}}));
  ASSERT_EQ(put.status, 200) << put.body;
  auto got = mine.get("/api/v1/baskets/" + me);
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(got.json().at("items").at(0).at("quantity"), 2);
  auto patched =
      mine.request("PATCH", "/api/v1/baskets/" + me + "/items/" + book_id, body({{"quantity", 5}}));
  EXPECT_EQ(patched.status, 200) << patched.body;
  EXPECT_EQ(mine.get("/api/v1/baskets/" + me).json().at("items").at(0).at("quantity"), 5);
  auto negative = mine.request("PATCH", "/api/v1/baskets/" + me + "/items/" + book_id,
                               body({{"quantity", -1}}));
  EXPECT_EQ(negative.status, 422);

  auto other = buyer(unique("other"));
  EXPECT_EQ(other.get("/api/v1/baskets/" + me).status, 403);
  EXPECT_EQ(other.request("DELETE", "/api/v1/baskets/" + me).status, 403);
  EXPECT_EQ(anonymous().get("/api/v1/baskets/" + me).status, 401);

  EXPECT_EQ(mine.request("DELETE", "/api/v1/baskets/" + me).status, 200);
  EXPECT_EQ(mine.get("/api/v1/baskets/" + me).status, 404);
}

TEST_F(HttpApi, AnOrderFromAnItemListLeavesTheBasketAndOneFromTheBasketClearsIt) {
  auto a = admin();
  auto kept = make_book(a, 700, 10);
  auto ordered = make_book(a, 900, 10);
  auto me = unique("buyer");
  ASSERT_EQ(a.post("/api/v1/accounts", body({{"buyer_id", me}, {"credit_limit", 100000}})).status,
            201);
  auto mine = buyer(me);
  ASSERT_EQ(
      mine.request("PUT", "/api/v1/baskets/" + me,
                   body({{"items", json::array{json::object{{"book_id", kept}, {"quantity", 1}}}}}))
          .status,
      200);
  auto completed = [&](const integration::http_reply& placed) {
    std::string id(placed.json().at("order_id").as_string());
    return eventually(
        [&] { return mine.get("/api/v1/orders/" + id).json().at("status") == "completed"; });
  };
  auto from_items = mine.post(
      "/api/v1/orders",
      body({{"items", json::array{json::object{{"book_id", ordered}, {"quantity", 1}}}}}));
  ASSERT_EQ(from_items.status, 201) << from_items.body;
  ASSERT_TRUE(completed(from_items));
  auto basket = mine.get("/api/v1/baskets/" + me);
  ASSERT_EQ(basket.status, 200) << "the saga of an item-list order deleted the basket";
  EXPECT_EQ(basket.json().at("items").at(0).at("book_id").as_string(), kept);

  auto from_basket = mine.post("/api/v1/orders", body({}));
  ASSERT_EQ(from_basket.status, 201) << from_basket.body;
  ASSERT_TRUE(completed(from_basket));
  EXPECT_EQ(mine.get("/api/v1/baskets/" + me).status, 404) << "the basket became the order";
}

TEST_F(HttpApi, OrdersArePlacedAndTheSagaMovesTheirStatus) {
  auto a = admin();
  auto book_id = make_book(a, 1500, 2);
  auto me = unique("buyer");
  ASSERT_EQ(a.post("/api/v1/accounts", body({{"buyer_id", me}, {"credit_limit", 100000}})).status,
            201);
  auto mine = buyer(me);
  EXPECT_EQ(mine.get("/api/v1/accounts/" + me).json().at("credit_limit"), 100000);
  EXPECT_EQ(buyer("snoop").get("/api/v1/accounts/" + me).status, 403);
  EXPECT_EQ(a.post("/api/v1/accounts", body({{"buyer_id", me}, {"credit_limit", 1}})).status, 409);

  auto placed = mine.post(
      "/api/v1/orders",
      body({{"items", json::array{json::object{{"book_id", book_id}, {"quantity", 2}}}}}));
  ASSERT_EQ(placed.status, 201) << placed.body;
  std::string order_id(placed.json().at("order_id").as_string());
  EXPECT_EQ(placed.json().at("total"), 3000);  // the catalog's price, not the client's
  EXPECT_EQ(placed.json().at("buyer_id").as_string(), me);
  EXPECT_TRUE(eventually([&] {
    return mine.get("/api/v1/orders/" + order_id).json().at("status") == "completed";
  })) << mine.get("/api/v1/orders/" + order_id).body;
  EXPECT_EQ(a.get("/api/v1/books/" + book_id).json().at("stock"), 0);
  EXPECT_EQ(mine.get("/api/v1/accounts/" + me).json().at("authorised_total"), 3000);
  // The saga's records, as /metrics counts them (summed over partitions):
  // its inputs were stored, and the first answer of its last round (commit
  // and capture) was deferred into the next record.
  auto metrics = anonymous().get("/metrics").body;
  auto sample = [&](const std::string& family) {
    auto key = family + "{saga=\"orderfulfilment\"} ";
    auto at = metrics.find(key);
    return at == std::string::npos ? -1.0 : std::stod(metrics.substr(at + key.size()));
  };
  EXPECT_GT(sample("troupe_saga_input_records_total"), 0) << metrics;
  EXPECT_GT(sample("troupe_saga_deferred_answers_total"), 0) << metrics;
  EXPECT_EQ(buyer("snoop").get("/api/v1/orders/" + order_id).status, 403);

  // Out of stock now: the saga cancels the next order.
  auto second = mine.post(
      "/api/v1/orders",
      body({{"items", json::array{json::object{{"book_id", book_id}, {"quantity", 1}}}}}));
  ASSERT_EQ(second.status, 201) << second.body;
  std::string second_id(second.json().at("order_id").as_string());
  EXPECT_TRUE(eventually(
      [&] { return mine.get("/api/v1/orders/" + second_id).json().at("status") == "cancelled"; }));
  auto cancel_done =
      mine.post("/api/v1/orders/" + order_id + "/cancel", body({{"reason", "late"}}));
  EXPECT_EQ(cancel_done.status, 409) << cancel_done.body;

  // The buyer's list, newest first, once the view has the second order's end.
  auto list = mine.request("GET", "/api/v1/orders", {},
                           {{"x-troupe-min-position", second.header("x-troupe-position")}});
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_EQ(list.json().at("total"), 2);
  EXPECT_EQ(buyer("snoop").get("/api/v1/orders?buyer_id=" + me).status, 403);

  // From the basket; an unknown book; nothing to order.
  ASSERT_EQ(a.post("/api/v1/books/" + book_id + "/stock", body({{"quantity", 1}})).status, 200);
  ASSERT_EQ(
      mine.request(
              "PUT", "/api/v1/baskets/" + me,
              body({{"items", json::array{json::object{{"book_id", book_id}, {"quantity", 1}}}}}))
          .status,
      200);
  auto from_basket = mine.post("/api/v1/orders", body({}));
  ASSERT_EQ(from_basket.status, 201) << from_basket.body;
  EXPECT_EQ(from_basket.json().at("total"), 1500);
  auto unknown = mine.post(
      "/api/v1/orders",
      body({{"items", json::array{json::object{{"book_id", "ghost"}, {"quantity", 1}}}}}));
  EXPECT_EQ(unknown.status, 422);
  EXPECT_EQ(unknown.problem_type(), "unknown-book");
  auto empty = mine.post("/api/v1/orders", body({{"items", json::array{}}}));
  EXPECT_EQ(empty.status, 422);
  EXPECT_EQ(mine.post("/api/v1/orders", body({{"buyer_id", "someone-else"}})).status, 403);
  EXPECT_EQ(mine.get("/api/v1/orders/nope").status, 404);
  EXPECT_EQ(mine.post("/api/v1/orders/" + order_id + "/complete", "").status, 403);
}

TEST_F(HttpApi, AGetWaitsForAVersionPastTheOneGivenThenAnswersWhatIs) {
  auto a = admin();
  auto book_id = make_book(a, 700, 1);
  auto first = a.get("/api/v1/books/" + book_id);
  ASSERT_EQ(first.status, 200);
  auto version = first.json().at("version").as_int64();
  auto at = [&](std::int64_t after, int wait_ms) {
    return "/api/v1/books/" + book_id + "?after_version=" + std::to_string(after) +
           "&wait_ms=" + std::to_string(wait_ms);
  };

  // Waiting while a commit comes: answered with the new version, long
  // before the wait would run out.
  auto waiting = std::async(std::launch::async, [&] { return admin().get(at(version, 25000)); });
  EXPECT_EQ(waiting.wait_for(std::chrono::milliseconds{300}), std::future_status::timeout);
  ASSERT_EQ(a.post("/api/v1/books/" + book_id + "/stock", body({{"quantity", 4}})).status, 200);
  ASSERT_EQ(waiting.wait_for(std::chrono::seconds{15}), std::future_status::ready);
  auto moved = waiting.get();
  ASSERT_EQ(moved.status, 200) << moved.body;
  EXPECT_EQ(moved.json().at("version").as_int64(), version + 1);
  EXPECT_EQ(moved.json().at("stock"), 5);

  // Already past: at once. Nothing comes: the wait runs out and the
  // resource is answered as it is.
  EXPECT_EQ(a.get(at(version, 25000)).json().at("version").as_int64(), version + 1);
  auto unchanged = a.get(at(version + 1, 200));
  ASSERT_EQ(unchanged.status, 200) << unchanged.body;
  EXPECT_EQ(unchanged.json().at("version").as_int64(), version + 1);

  // An order's status, moved by the saga while the buyer waits.
  auto me = unique("buyer");
  ASSERT_EQ(a.post("/api/v1/accounts", body({{"buyer_id", me}, {"credit_limit", 100000}})).status,
            201);
  auto mine = buyer(me);
  auto placed = mine.post(
      "/api/v1/orders",
      body({{"items", json::array{json::object{{"book_id", book_id}, {"quantity", 1}}}}}));
  ASSERT_EQ(placed.status, 201) << placed.body;
  auto order = "/api/v1/orders/" + std::string(placed.json().at("order_id").as_string());
  auto seen = placed.json().at("version").as_int64();
  std::string status = "placed";
  for (int asks = 0; asks < 10 && status != "completed"; ++asks) {
    auto r = mine.get(order + "?after_version=" + std::to_string(seen) + "&wait_ms=20000");
    ASSERT_EQ(r.status, 200) << r.body;
    ASSERT_GT(r.json().at("version").as_int64(), seen);  // not a wait that ran out
    seen = r.json().at("version").as_int64();
    status = std::string(r.json().at("status").as_string());
  }
  EXPECT_EQ(status, "completed");

  // Bad waits are refused, naming the parameter.
  for (auto bad : {"?wait_ms=100", "?after_version=1&wait_ms=30001", "?after_version=-1&wait_ms=10",
                   "?after_version=x"}) {
    auto r = a.get("/api/v1/books/" + book_id + bad);
    EXPECT_EQ(r.status, 400) << bad << " " << r.body;
    EXPECT_EQ(r.problem_type(), "invalid-parameter") << bad;
  }
}

TEST_F(HttpApi, AdminsChangeCreditLimitsAndCompleteOrders) {
  auto a = admin();
  auto me = unique("buyer");
  ASSERT_EQ(a.post("/api/v1/accounts", body({{"buyer_id", me}, {"credit_limit", 10}})).status, 201);
  auto mine = buyer(me);
  EXPECT_EQ(mine.request("PATCH", "/api/v1/accounts/" + me, body({{"credit_limit", 1}})).status,
            403);
  auto raised = a.request("PATCH", "/api/v1/accounts/" + me, body({{"credit_limit", 500000}}),
                          {{"if-match", "\"1\""}});
  ASSERT_EQ(raised.status, 200) << raised.body;
  EXPECT_EQ(mine.get("/api/v1/accounts/" + me).json().at("credit_limit"), 500000);
  EXPECT_EQ(a.request("PATCH", "/api/v1/accounts/nobody-" + me, body({{"credit_limit", 5}})).status,
            404);
  EXPECT_EQ(a.request("PATCH", "/api/v1/accounts/" + me, body({{"credit_limit", "lots"}})).status,
            400);
  EXPECT_EQ(a.get("/api/v1/accounts/nobody-" + me).status, 404);

  // An order completed by hand (the saga may race to it: either way it ends
  // completed once, and a second completion is refused).
  auto book_id = make_book(a, 100, 5);
  auto placed = mine.post(
      "/api/v1/orders",
      body({{"items", json::array{json::object{{"book_id", book_id}, {"quantity", 1}}}}}));
  ASSERT_EQ(placed.status, 201);
  std::string id(placed.json().at("order_id").as_string());
  auto completed = a.post("/api/v1/orders/" + id + "/complete", "");
  EXPECT_TRUE(completed.status == 200 || completed.status == 409) << completed.body;
  EXPECT_TRUE(eventually(
      [&] { return mine.get("/api/v1/orders/" + id).json().at("status") == "completed"; }));
  EXPECT_EQ(a.post("/api/v1/orders/" + id + "/complete", "").status, 409);
  EXPECT_EQ(a.post("/api/v1/orders/nope-" + id + "/complete", "").status, 404);
}

TEST_F(HttpApi, AnOrderCanBeCancelledByItsBuyerBeforeTheSagaEndsIt) {
  auto a = admin();
  auto book_id = make_book(a, 100, 5);
  auto me = unique("buyer");
  // No finance account: the saga waits on nothing it can finish quickly?
  // It cancels for a missing account - either way the order ends cancelled.
  auto mine = buyer(me);
  auto placed = mine.post(
      "/api/v1/orders",
      body({{"items", json::array{json::object{{"book_id", book_id}, {"quantity", 1}}}}}));
  ASSERT_EQ(placed.status, 201);
  std::string id(placed.json().at("order_id").as_string());
  auto cancelled = mine.post("/api/v1/orders/" + id + "/cancel", "");
  EXPECT_TRUE(cancelled.status == 200 || cancelled.status == 409) << cancelled.body;
  EXPECT_TRUE(eventually(
      [&] { return mine.get("/api/v1/orders/" + id).json().at("status") == "cancelled"; }));
  EXPECT_TRUE(eventually([&] { return a.get("/api/v1/books/" + book_id).json().at("stock") == 5; }))
      << "the reservation was not released";
}

TEST_F(HttpApi, FeedbacksAreRatedListedAndDeleted) {
  auto a = admin();
  auto category = unique("cat");
  auto book_id = make_book(a, 100, 1, category);
  auto reader = buyer(unique("reader"));
  auto made = reader.post("/api/v1/feedbacks",
                          body({{"book_id", book_id}, {"rating", 4}, {"comment", "good"}}));
  ASSERT_EQ(made.status, 201) << made.body;
  std::string id(made.json().at("feedback_id").as_string());
  std::vector<std::pair<std::string, std::string>> wait{
      {"x-troupe-min-position", made.header("x-troupe-position")}};
  auto got = reader.request("GET", "/api/v1/feedbacks/" + id, {}, wait);
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(got.json().at("comment"), "good");
  auto list = reader.request("GET", "/api/v1/books/" + book_id + "/feedbacks", {}, wait);
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(list.json().at("total"), 1);
  // The rating saga adds it to the book.
  EXPECT_TRUE(eventually([&] {
    auto r = a.get("/api/v1/books?category_id=" + category);
    auto doc5 = r.json();
    for (const auto& b : doc5.at("items").as_array())
      if (b.at("book_id").as_string() == book_id) return b.at("rating_count") == 1;
    return false;
  }));

  EXPECT_EQ(reader.post("/api/v1/feedbacks", body({{"book_id", book_id}, {"rating", 9}})).status,
            422);
  EXPECT_EQ(
      reader
          .post("/api/v1/feedbacks", body({{"book_id", book_id}, {"rating", 1}, {"created_at", 5}}))
          .status,
      400);
  EXPECT_EQ(
      anonymous().post("/api/v1/feedbacks", body({{"book_id", book_id}, {"rating", 1}})).status,
      401);
  EXPECT_EQ(reader.request("DELETE", "/api/v1/feedbacks/" + id).status, 403);
  auto removed = a.request("DELETE", "/api/v1/feedbacks/" + id);
  ASSERT_EQ(removed.status, 200);
  EXPECT_EQ(a.request("GET", "/api/v1/feedbacks/" + id, {},
                      {{"x-troupe-min-position", removed.header("x-troupe-position")}})
                .status,
            404);
}

// ---- idempotency, history, projections, dead letters ---------------------------------

TEST_F(HttpApi, ARepeatedRequestIdReturnsTheFirstOutcome) {
  auto c = admin();
  auto key = unique("req");
  auto first = c.post("/api/v1/authors", body({{"name", "Once"}}), {{"x-request-id", key}});
  ASSERT_EQ(first.status, 201);
  auto repeat = c.post("/api/v1/authors", body({{"name", "Once"}}), {{"x-request-id", key}});
  EXPECT_EQ(repeat.status, 201);
  EXPECT_EQ(repeat.body, first.body);  // same generated id, same version and position
  EXPECT_EQ(repeat.header("x-idempotent-replay"), "true");
  auto reused = c.post("/api/v1/authors", body({{"name", "Other"}}), {{"x-request-id", key}});
  EXPECT_EQ(reused.status, 422);
  EXPECT_EQ(reused.problem_type(), "request-id-reused");

  // A rejection is a first outcome too, even after the world changed.
  auto book_id = unique("book");
  auto stock_key = unique("req");
  auto refused = c.post("/api/v1/books/" + book_id + "/stock", body({{"quantity", 1}}),
                        {{"x-request-id", stock_key}});
  EXPECT_EQ(refused.status, 404);
  make_book(c, 100, 0);
  ASSERT_EQ(c.post("/api/v1/books", body({{"book_id", book_id},
                                          {"name", "n"},
                                          {"price", 1},
                                          {"category_id", "c"},
                                          {"publisher_id", "p"}}))
                .status,
            201);
  auto again = c.post("/api/v1/books/" + book_id + "/stock", body({{"quantity", 1}}),
                      {{"x-request-id", stock_key}});
  EXPECT_EQ(again.status, 404);
  EXPECT_EQ(again.body, refused.body);

  // Concurrent repeats: one author created, every answer the same.
  auto race_key = unique("req");
  std::vector<http_reply> answers(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&, i] {
      auto t = admin();
      answers[static_cast<std::size_t>(i)] =
          t.post("/api/v1/authors", body({{"author_id", race_key}, {"name", "Race"}}),
                 {{"x-request-id", race_key}});
    });
  for (auto& t : threads) t.join();
  for (const auto& r : answers) {
    EXPECT_EQ(r.status, 201) << r.body;
    EXPECT_EQ(r.body, answers[0].body);
  }
  auto history = c.get("/api/v1/streams/author-" + race_key + "/events");
  EXPECT_EQ(history.json().at("events").as_array().size(), 1u);
  EXPECT_EQ(c.post("/api/v1/authors", body({{"name", "x"}}), {{"x-request-id", ""}}).status, 400);
}

TEST_F(HttpApi, RequestIdsArePerCallerAndDeriveTheIdsTheyCreate) {
  auto a = admin();
  auto book_id = make_book(a, 100, 1);
  auto key = unique("req");
  auto alice = buyer(unique("alice"));
  auto bob = buyer(unique("bob"));
  auto feedback = body({{"book_id", book_id}, {"rating", 3}});
  auto from_alice = alice.post("/api/v1/feedbacks", feedback, {{"x-request-id", key}});
  auto from_bob = bob.post("/api/v1/feedbacks", feedback, {{"x-request-id", key}});
  ASSERT_EQ(from_alice.status, 201) << from_alice.body;
  ASSERT_EQ(from_bob.status, 201) << from_bob.body;  // another caller's id, not a reuse
  EXPECT_NE(from_alice.json().at("feedback_id"), from_bob.json().at("feedback_id"));
  EXPECT_TRUE(from_bob.header("x-idempotent-replay").empty());
  // Without a request id every create makes a new resource.
  auto one = alice.post("/api/v1/feedbacks", feedback);
  auto two = alice.post("/api/v1/feedbacks", feedback);
  EXPECT_NE(one.json().at("feedback_id"), two.json().at("feedback_id"));
}

TEST_F(HttpApi, ConcurrentIdenticalQueriesShareOneAnswer) {
  auto a = admin();
  auto category = unique("cat");
  auto made = make_book(a, 100, 1, category);
  auto history = a.get("/api/v1/streams/book-" + made + "/events");
  auto position =
      std::to_string(history.json().at("events").at(0).at("position").to_number<std::int64_t>());
  // Once the view has the book, 24 clients ask the same new query at once.
  ASSERT_EQ(a.request("GET", "/api/v1/books/" + made + "/feedbacks", {},
                      {{"x-troupe-min-position", position}})
                .status,
            200);
  ASSERT_EQ(a.request("GET", "/api/v1/books?category_id=" + category + "&page_size=3", {},
                      {{"x-troupe-min-position", position}})
                .status,
            200);
  auto target = "/api/v1/books?category_id=" + category + "&page_size=5";
  std::vector<http_reply> answers(24);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < answers.size(); ++i)
    threads.emplace_back([&, i] { answers[i] = anonymous().get(target); });
  for (auto& t : threads) t.join();
  for (const auto& r : answers) {
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.body, answers[0].body);
    EXPECT_EQ(r.json().at("total"), 1);
  }
}

TEST_F(HttpApi, UnreachablePositionsAndHugeOrdersAreRefusedAtOnce) {
  auto c = anonymous();
  auto started = std::chrono::steady_clock::now();
  auto far = c.request("GET", "/api/v1/books", {}, {{"x-troupe-min-position", "900000000000"}});
  EXPECT_EQ(far.status, 503);
  EXPECT_EQ(far.problem_type(), "view-behind");
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds{2})
      << "a position nobody reached must not hold a query worker";
  auto me = unique("buyer");
  auto mine = buyer(me);
  json::array lines;
  for (int i = 0; i < 101; ++i)
    lines.push_back(json::object{{"book_id", "b" + std::to_string(i)}, {"quantity", 1}});
  auto huge = mine.post("/api/v1/orders", body({{"items", lines}}));
  EXPECT_EQ(huge.status, 422);
  EXPECT_EQ(huge.problem_type(), "too-many-items");
  auto basket = mine.request("PUT", "/api/v1/baskets/" + me, body({{"items", lines}}));
  EXPECT_EQ(basket.status, 422);
}

TEST_F(HttpApi, StreamHistoryProjectionsAndDeadLettersAreOperable) {
  auto c = admin();
  auto book_id = make_book(c, 100, 1);
  auto history = c.get("/api/v1/streams/book-" + book_id + "/events");
  ASSERT_EQ(history.status, 200);
  ASSERT_EQ(history.json().at("events").as_array().size(), 1u);
  EXPECT_EQ(history.json().at("events").at(0).at("type"), "book_created");
  EXPECT_EQ(history.json().at("events").at(0).at("data").at("price"), 100);
  EXPECT_EQ(c.get("/api/v1/streams/bad%20id/events").status, 400);
  EXPECT_EQ(buyer("x").get("/api/v1/streams/book-" + book_id + "/events").status, 403);

  auto projections = c.get("/api/v1/projections");
  ASSERT_EQ(projections.status, 200);
  EXPECT_EQ(projections.json().at("projections").as_array().size(), 5u);
  EXPECT_EQ(c.post("/api/v1/projections/nope/rebuild", "").status, 404);
  auto rebuild = c.post("/api/v1/projections/sales_by_book/rebuild", "");
  EXPECT_EQ(rebuild.status, 202) << rebuild.body;
  EXPECT_TRUE(eventually(
      [&] {
        auto doc6 = c.get("/api/v1/projections").json();
        for (const auto& p : doc6.at("projections").as_array())
          if (p.at("name") == "sales_by_book") return p.at("rebuilding") == false;
        return false;
      },
      std::chrono::seconds{60}));

  auto letters = c.get("/api/v1/dead-letters?limit=10");
  ASSERT_EQ(letters.status, 200) << letters.body;
  EXPECT_TRUE(letters.json().at("dead_letters").is_array());
  EXPECT_EQ(c.post("/api/v1/dead-letters/999999/replay", "").status, 404);
  EXPECT_EQ(c.post("/api/v1/dead-letters/x/replay", "").status, 400);
  EXPECT_EQ(c.get("/api/v1/dead-letters?limit=0").status, 400);
}

TEST_F(HttpApi, TheOpenApiDocumentListsEveryRouteAndEachListedRouteIsServed) {
  auto c = anonymous();
  auto doc = c.get("/openapi.json");
  ASSERT_EQ(doc.status, 200);
  auto paths = doc.json().at("paths").as_object();
  std::size_t operations = 0;
  for (const auto& [path, item] : paths) {
    for (const auto& [method, op] : item.as_object()) {
      ++operations;
      std::string target(path);
      for (auto open = target.find('{'); open != std::string::npos; open = target.find('{'))
        target.replace(open, target.find('}') - open + 1, "x");
      std::string upper(method);
      for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      // Anonymous and bodiless: many routes refuse, but none may be unknown.
      auto r = c.request(upper, std::string(target));
      EXPECT_NE(r.status, 405) << upper << " " << target;
      EXPECT_FALSE(r.status == 404 && r.body.find("no route for") != std::string::npos)
          << upper << " " << target << " is documented but not served";
      EXPECT_TRUE(op.as_object().contains("responses"));
    }
  }
  EXPECT_GE(operations, 40u);
}

// ---- limits ---------------------------------------------------------------------------------

TEST(HttpLimits, OversizedBodiesBackpressureAndAGracefulStop) {
  serve_node node;
  node.extra_sets = {"http.max_body_bytes=4096", "http.max_in_flight_commands=2",
                     "sagas.enabled=false", "projections.enabled=false"};
  ASSERT_TRUE(node.start());
  http_client c(node.port);
  c.token = node.token("root", true);
  auto big = c.post("/api/v1/authors", body({{"name", std::string(10000, 'x')}}));
  EXPECT_EQ(big.status, 413);
  EXPECT_EQ(big.problem_type(), "payload-too-large");

  // Without sagas an order stays placed: its buyer's cancel is the one that ends it.
  ASSERT_EQ(c.post("/api/v1/books", body({{"book_id", "held"},
                                          {"name", "n"},
                                          {"price", 100},
                                          {"category_id", "c"},
                                          {"publisher_id", "p"}}))
                .status,
            201);
  http_client owner(node.port);
  owner.token = node.token("owner", false);
  http_client stranger(node.port);
  stranger.token = node.token("stranger", false);
  auto placed = owner.post(
      "/api/v1/orders",
      body({{"items", json::array{json::object{{"book_id", "held"}, {"quantity", 1}}}}}));
  ASSERT_EQ(placed.status, 201) << placed.body;
  std::string order_id(placed.json().at("order_id").as_string());
  EXPECT_EQ(stranger.post("/api/v1/orders/" + order_id + "/cancel", "").status, 403);
  auto cancelled =
      owner.post("/api/v1/orders/" + order_id + "/cancel", body({{"reason", "changed my mind"}}));
  EXPECT_EQ(cancelled.status, 200) << cancelled.body;
  EXPECT_EQ(owner.get("/api/v1/orders/" + order_id).json().at("status"), "cancelled");
  EXPECT_EQ(owner.post("/api/v1/orders/" + order_id + "/cancel", "").status, 409);

  // Beyond two commands in flight, 503 with Retry-After; every 201 durable.
  std::atomic<int> created{0}, shed{0}, other{0};
  std::mutex ids_mutex;
  std::vector<std::string> ids;
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t)
    threads.emplace_back([&] {
      http_client w(node.port);
      w.token = c.token;
      for (int i = 0; i < 40; ++i) {
        auto id = unique("a");
        auto r = w.post("/api/v1/authors", body({{"author_id", id}, {"name", "n"}}));
        if (r.status == 201) {
          ++created;
          std::lock_guard lock{ids_mutex};
          ids.push_back(id);
        } else if (r.status == 503 && r.header("retry-after") == "1") {
          ++shed;
        } else {
          ++other;
        }
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_GT(created.load(), 0);
  EXPECT_GT(shed.load(), 0) << "16 clients never exceeded 2 commands in flight";
  EXPECT_EQ(other.load(), 0);

  // SIGTERM while commands flow: the node exits cleanly; every
  // acknowledged command is in the store after a restart.
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t)
    writers.emplace_back([&] {
      http_client w(node.port);
      w.token = c.token;
      while (!stop) {
        auto id = unique("g");
        auto r = w.post("/api/v1/authors", body({{"author_id", id}, {"name", "n"}}));
        if (r.status == 201) {
          std::lock_guard lock{ids_mutex};
          ids.push_back(id);
        }
        if (r.status == 0) return;  // the server is gone
      }
    });
  std::this_thread::sleep_for(std::chrono::milliseconds{500});
  int status = node.stop(SIGTERM);
  stop = true;
  for (auto& t : writers) t.join();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;

  ASSERT_TRUE(node.start());
  http_client after(node.port);
  std::size_t missing = 0;
  for (const auto& id : ids)
    if (after.get("/api/v1/authors/" + id).status != 200) ++missing;
  EXPECT_EQ(missing, 0u) << "of " << ids.size() << " acknowledged authors";
}

TEST(HttpIdempotency, AFirstOutcomeSurvivesARestart) {
  serve_node node;
  node.extra_sets = {"sagas.enabled=false"};
  ASSERT_TRUE(node.start());
  // An outcome past its retention, to be pruned when the next one is stored.
  {
    pqxx::connection conn(node.db.url);
    pqxx::work tx(conn);
    tx.exec0(
        "INSERT INTO troupe_http_requests (request_id, fingerprint, status, content_type, headers,"
        " body, created_at) VALUES ('old', 'f', 201, 'application/json', '[]', '{}', now() - "
        "interval '2 days')");
    tx.commit();
  }
  http_client c(node.port);
  c.token = node.token("root", true);
  auto key = unique("req");
  auto first = c.post("/api/v1/categories", body({{"name", "Kept"}}), {{"x-request-id", key}});
  ASSERT_EQ(first.status, 201);
  {
    pqxx::connection conn(node.db.url);
    pqxx::read_transaction tx(conn);
    EXPECT_EQ(
        tx.exec1("SELECT count(*) FROM troupe_http_requests WHERE request_id = 'old'")[0].as<int>(),
        0)
        << "an outcome past its retention was kept";
    EXPECT_EQ(tx.exec1("SELECT count(*) FROM troupe_http_requests")[0].as<int>(), 1);
  }
  EXPECT_EQ(node.stop(SIGTERM), 0);
  ASSERT_TRUE(node.start());
  http_client again(node.port);
  again.token = node.token("root", true);  // dev secrets change with each start
  auto repeat = again.post("/api/v1/categories", body({{"name", "Kept"}}), {{"x-request-id", key}});
  EXPECT_EQ(repeat.status, 201);
  EXPECT_EQ(repeat.body, first.body);
}

}  // namespace
}  // namespace troupe
