// Pure parts of the HTTP layer, without servers: routing, strict body
// decoding, problem documents and JWT verification.

#include <gtest/gtest.h>
#include <jwt.h>

#include <ctime>
#include <fstream>
#include <sstream>

#include "actors/bookstore.hpp"
#include "http/auth.hpp"
#include "http/json_input.hpp"
#include "http/problem.hpp"
#include "http/router.hpp"

namespace troupe::http {
namespace {

namespace json = boost::json;

request make_request(std::string method, std::string target) {
  request r;
  r.method = std::move(method);
  r.target = std::move(target);
  auto q = r.target.find('?');
  r.path = r.target.substr(0, q);
  if (q != std::string::npos) r.query = r.target.substr(q + 1);
  return r;
}

// ---- router ----------------------------------------------------------------

router sample_router() {
  router r;
  r.add(route{"GET", "/api/v1/books", access::open, {}, {}});
  r.add(route{"POST", "/api/v1/books", access::admin, {}, {}});
  r.add(route{"GET", "/api/v1/books/{book_id}", access::open, {}, {}});
  r.add(route{"PATCH", "/api/v1/baskets/{buyer_id}/items/{book_id}", access::signed_in, {}, {}});
  return r;
}

TEST(Router, MatchesPatternsAndDecodesPathParameters) {
  auto r = sample_router();
  auto found = r.find(make_request("PATCH", "/api/v1/baskets/al%20ice/items/b%2F1?x=1"));
  auto* m = std::get_if<router::match>(&found);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->found->pattern, "/api/v1/baskets/{buyer_id}/items/{book_id}");
  ASSERT_EQ(m->params.size(), 2u);
  EXPECT_EQ(m->params[0], (std::pair<std::string, std::string>{"buyer_id", "al ice"}));
  EXPECT_EQ(m->params[1], (std::pair<std::string, std::string>{"book_id", "b/1"}));
}

TEST(Router, AnswersMissingRoutesAndWrongMethodsWithProblems) {
  auto r = sample_router();
  auto missing = r.find(make_request("GET", "/api/v1/bookz"));
  ASSERT_TRUE(std::holds_alternative<response>(missing));
  EXPECT_EQ(std::get<response>(missing).status, 404);
  EXPECT_EQ(std::get<response>(missing).content_type, "application/problem+json");
  auto empty_segment = r.find(make_request("GET", "/api/v1/books/"));
  ASSERT_TRUE(std::holds_alternative<response>(empty_segment));
  EXPECT_EQ(std::get<response>(empty_segment).status, 404);
  auto wrong = r.find(make_request("DELETE", "/api/v1/books"));
  ASSERT_TRUE(std::holds_alternative<response>(wrong));
  const auto& res = std::get<response>(wrong);
  EXPECT_EQ(res.status, 405);
  ASSERT_EQ(res.headers.size(), 1u);
  EXPECT_EQ(res.headers[0].name, "allow");
  EXPECT_EQ(res.headers[0].value, "GET, POST");
  auto head = r.find(make_request("HEAD", "/api/v1/books/7"));
  ASSERT_TRUE(std::holds_alternative<router::match>(head));
  EXPECT_EQ(std::get<router::match>(head).found->method, "GET");
  auto relative = r.find(make_request("GET", "books"));
  ASSERT_TRUE(std::holds_alternative<response>(relative));
  EXPECT_EQ(std::get<response>(relative).status, 400);
}

TEST(Request, QueryParametersAreDecoded) {
  auto r = make_request("GET", "/x?name=earth+sea&empty&pct=a%26b&bad=%zz");
  EXPECT_EQ(r.query_param("name"), "earth sea");
  EXPECT_EQ(r.query_param("empty"), "");
  EXPECT_EQ(r.query_param("pct"), "a&b");
  EXPECT_EQ(r.query_param("bad"), "%zz");
  EXPECT_FALSE(r.query_param("missing").has_value());
}

// ---- strict JSON decoding ---------------------------------------------------

TEST(JsonInput, NamesEveryBadFieldWithItsPath) {
  auto v = json::parse(
      R"({"order_id":"o","buyer_id":7,"items":[{"book_id":"b","quantity":1,"unit_price":2},
          {"book_id":"c","quantity":"two","unit_price":2,"colour":"red"}],"placed_at":1.5,
          "from_basket":false})");
  auto decoded = decode_json<bookstore::place_order>(v);
  ASSERT_FALSE(decoded);
  std::map<std::string, std::string> errors;
  for (const auto& e : decoded.error()) errors[e.field] = e.message;
  EXPECT_EQ(errors.size(), 4u);
  EXPECT_EQ(errors["buyer_id"], "must be a string, not an integer");
  EXPECT_EQ(errors["items[1].quantity"], "must be an integer, not a string");
  EXPECT_EQ(errors["items[1].colour"], "is not a known field");
  EXPECT_EQ(errors["placed_at"], "must be an integer, not a number");
}

TEST(JsonInput, RequiresNonOptionalFieldsAndTakesNullForOptionalOnes) {
  auto missing = decode_json<bookstore::add_stock>(json::parse(R"({"book_id":"b"})"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().at(0).field, "quantity");
  EXPECT_EQ(missing.error().at(0).message, "is required");
  auto book = decode_json<bookstore::update_book>(json::parse(
      R"({"book_id":"b","name":"n","description":"","price":5,"discount_price":null,
          "category_id":"c","publisher_id":"p","author_ids":[]})"));
  ASSERT_TRUE(book);
  EXPECT_FALSE(book->discount_price.has_value());
  auto range = decode_json<bookstore::add_rating>(
      json::parse(R"({"book_id":"b","feedback_id":"f","rating":4294967296})"));
  ASSERT_FALSE(range);
  EXPECT_EQ(range.error().at(0).message, "is out of range");
  auto not_object = decode_json<bookstore::add_stock>(json::parse("[1]"));
  ASSERT_FALSE(not_object);
  EXPECT_EQ(not_object.error().at(0).field, "(body)");
}

TEST(Problem, IsAnRfc9457DocumentWithEscapedText) {
  auto p = problem(422, "insufficient-stock", "only \"2\" left", {{"items[0]", "too many"}});
  EXPECT_EQ(p.status, 422);
  EXPECT_EQ(p.content_type, "application/problem+json");
  auto v = json::parse(p.body);
  EXPECT_EQ(v.at("type"), "https://troupe.dev/problems/insufficient-stock");
  EXPECT_EQ(v.at("title"), "Unprocessable Content");
  EXPECT_EQ(v.at("status"), 422);
  EXPECT_EQ(v.at("detail"), "only \"2\" left");
  EXPECT_EQ(v.at("errors").at(0).at("field"), "items[0]");
  auto busy = problem(503, "overloaded", "later");
  ASSERT_EQ(busy.headers.size(), 1u);
  EXPECT_EQ(busy.headers[0].name, "retry-after");
}

// ---- JWT ----------------------------------------------------------------------

const std::string secret(40, 's');

std::string read_file(const std::string& name) {
  std::ifstream in(std::string(TROUPE_TEST_DATA) + "/" + name);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// A token signed by hand, to shape what the authenticator must refuse.
std::string sign(jwt_alg_t alg, const std::string& key, const std::string& grants_json) {
  jwt_t* j = nullptr;
  jwt_new(&j);
  jwt_add_grants_json(j, grants_json.c_str());
  jwt_set_alg(j, alg,
              alg == JWT_ALG_NONE ? nullptr : reinterpret_cast<const unsigned char*>(key.data()),
              alg == JWT_ALG_NONE ? 0 : static_cast<int>(key.size()));
  char* text = jwt_encode_str(j);
  std::string out = text ? text : "";
  std::free(text);
  jwt_free(j);
  return out;
}

std::string later() { return std::to_string(std::time(nullptr) + 3600); }

auth_options hs256() {
  auth_options o;
  o.mode = "hs256";
  o.secret = secret;
  return o;
}

TEST(Auth, OffModeLetsEveryoneActAsAdmin) {
  authenticator a(auth_options{});
  auto who = a.identify("");
  ASSERT_TRUE(who);
  EXPECT_TRUE(who->admin);
  EXPECT_TRUE(who->may_act_for("anyone"));
}

TEST(Auth, DevTokensCarryTheSubjectAndTheAdminRole) {
  auth_options o;
  o.mode = "dev";
  o.secret = secret;
  authenticator a(o);
  auto buyer = a.identify("Bearer " + a.issue("alice", false, 60));
  ASSERT_TRUE(buyer) << buyer.error();
  EXPECT_EQ(buyer->subject, "alice");
  EXPECT_FALSE(buyer->admin);
  EXPECT_TRUE(buyer->may_act_for("alice"));
  EXPECT_FALSE(buyer->may_act_for("bob"));
  auto admin = a.identify("Bearer " + a.issue("root", true, 60));
  ASSERT_TRUE(admin);
  EXPECT_TRUE(admin->admin);
  auto anonymous = a.identify("");
  ASSERT_TRUE(anonymous);
  EXPECT_FALSE(anonymous->authenticated);
  EXPECT_FALSE(anonymous->may_act_for("alice"));
}

TEST(Auth, RefusesBadSignaturesExpiryAlgorithmsAndClaims) {
  authenticator a(hs256());
  auto good = sign(JWT_ALG_HS256, secret, R"({"sub":"u","exp":)" + later() + "}");
  EXPECT_TRUE(a.identify("Bearer " + good));
  EXPECT_FALSE(a.identify("Bearer " + sign(JWT_ALG_HS256, std::string(40, 'x'),
                                           R"({"sub":"u","exp":)" + later() + "}")));
  auto expired = a.identify("Bearer " + sign(JWT_ALG_HS256, secret, R"({"sub":"u","exp":1000})"));
  ASSERT_FALSE(expired);
  EXPECT_NE(expired.error().find("expired"), std::string::npos);
  EXPECT_FALSE(a.identify("Bearer " + sign(JWT_ALG_HS256, secret, R"({"sub":"u"})")));
  EXPECT_FALSE(a.identify("Bearer " + sign(JWT_ALG_HS256, secret, R"({"exp":)" + later() + "}")));
  EXPECT_FALSE(
      a.identify("Bearer " +
                 sign(JWT_ALG_NONE, "", R"({"sub":"u","roles":["admin"],"exp":)" + later() + "}")));
  EXPECT_FALSE(a.identify("Basic dXNlcjpwYXNz"));
  EXPECT_FALSE(a.identify("Bearer not.a.token"));

  auto o = hs256();
  o.issuer = "https://id.example";
  o.audience = "troupe";
  authenticator strict(o);
  EXPECT_FALSE(strict.identify("Bearer " + good));
  auto right =
      sign(JWT_ALG_HS256, secret,
           R"({"sub":"u","iss":"https://id.example","aud":"troupe","exp":)" + later() + "}");
  EXPECT_TRUE(strict.identify("Bearer " + right));
}

TEST(Auth, Rs256VerifiesWithThePublicKeyAndRefusesKeyConfusion) {
  auth_options o;
  o.mode = "rs256";
  o.public_key_pem = read_file("test_rs256_public.pem");
  authenticator a(o);
  auto private_key = read_file("test_rs256_private.pem");
  auto token =
      sign(JWT_ALG_RS256, private_key, R"({"sub":"staff","role":"admin","exp":)" + later() + "}");
  auto who = a.identify("Bearer " + token);
  ASSERT_TRUE(who) << who.error();
  EXPECT_TRUE(who->admin);
  // HS256 "signed" with the public key as the secret: the classic attack.
  auto forged = sign(JWT_ALG_HS256, o.public_key_pem,
                     R"({"sub":"staff","role":"admin","exp":)" + later() + "}");
  EXPECT_FALSE(a.identify("Bearer " + forged));
}

TEST(Auth, UnusableConfigurationsAreRefusedAtStart) {
  auth_options short_secret;
  short_secret.mode = "hs256";
  short_secret.secret = "short";
  EXPECT_THROW(authenticator{short_secret}, std::invalid_argument);
  auth_options unknown;
  unknown.mode = "basic";
  EXPECT_THROW(authenticator{unknown}, std::invalid_argument);
  auth_options no_key;
  no_key.mode = "rs256";
  EXPECT_THROW(authenticator{no_key}, std::invalid_argument);
}

}  // namespace
}  // namespace troupe::http
