// The bookstore's routes: catalog (books, authors, categories, publishers,
// stock), baskets, orders, feedbacks and finance accounts. Commands go to
// the aggregates; lists come from the views; one resource comes from its
// aggregate's state (with its version as ETag).

#include <pqxx/pqxx>

#include "actors/bookstore.hpp"
#include "http/api_impl.hpp"
#include "runtime/node.hpp"
#include "runtime/uuid.hpp"

namespace troupe::http {

namespace json = boost::json;
using namespace bookstore;

namespace {
// Single-resource GETs take these two: a long poll (see with_state).
const parameter_doc after_version_doc{
    "after_version", "query", "integer",
    "with wait_ms: answer once the resource's version is past this one"};
const parameter_doc wait_ms_doc{
    "wait_ms", "query", "integer",
    "wait up to this long (0-30000 ms) for a version past after_version; then answer what is"};

constexpr std::string_view api = "/api/v1";

std::string path(std::string_view rest) { return std::string(api) + std::string(rest); }

/// Puts the id from the path into the body; a different id in the body is
/// an error, not something to silently override.
bool put_id(const call_ptr& c, json::object& body, std::string_view field, const std::string& id) {
  if (const auto* given = body.if_contains(field);
      given != nullptr && !(given->is_string() && given->as_string() == id)) {
    c->reply(problem(400, "invalid-field", "the body's id differs from the path's",
                     {{std::string(field), "must be absent or equal to the id in the path"}}));
    return false;
  }
  body[field] = id;
  return true;
}

/// The id the client chose (checked later with the stream id rule), or a
/// new one (the same for every retry of one x-request-id).
std::string id_or_new(const bookstore_api::impl& api, const call_ptr& c, json::object& body,
                      std::string_view field) {
  if (const auto* given = body.if_contains(field); given != nullptr && given->is_string())
    return std::string(given->as_string());
  auto id = api.id_for(c, field);
  body[field] = id;
  return id;
}

/// Orders and baskets hold at most this many lines.
constexpr std::size_t max_lines = 100;

bool valid_id(const call_ptr& c, std::string_view category, std::string_view field,
              const std::string& id) {
  if (auto problem_text = validate_stream_id(stream_of(category, id))) {
    c->reply(problem(400, "invalid-field", "invalid id",
                     {{std::string(field), "must be 1-190 letters, digits or _ . : -"}}));
    return false;
  }
  return true;
}

void default_to(json::object& body, std::string_view field, json::value v) {
  if (!body.contains(field)) body[field] = std::move(v);
}

/// The common shape of a command on a resource named by the path: the body
/// (with the path's id put in `field` and absent optional fields defaulted)
/// decoded as `Command` and sent to `<D::category>-<id>`; 200 with `show`
/// of the command.
template <class D, class Command, class Show>
void path_command(bookstore_api::impl& api, const call_ptr& c, std::string_view field,
                  const std::string& id, Show show,
                  std::initializer_list<std::pair<std::string_view, json::value>> defaults = {}) {
  auto body = api.body_object(c);
  if (!body) return;
  if (!put_id(c, *body, field, id) || !valid_id(c, D::category, field, id)) return;
  for (const auto& [name, value] : defaults) default_to(*body, name, value);
  auto command = api.decode<Command>(c, *body);
  if (!command) return;
  json::object shown = show(*command);
  api.run_command(c, node::make_envelope<D>(id, std::move(*command)),
                  command_reply{200, [shown](const command_result&) { return shown; }});
}

bool active(const json::object& s) {
  const auto* status = s.if_contains("status");
  return status != nullptr && status->is_string() && status->as_string() == "active";
}

json::object pick(const json::object& s, std::initializer_list<std::string_view> fields) {
  json::object out;
  for (auto f : fields)
    if (const auto* v = s.if_contains(f)) out[f] = *v;
  return out;
}

/// One page of a view query as {"items": [...], "page", "page_size", "total"}.
response page_of(pqxx::connection_base& conn, const std::string& from_where,
                 const std::string& order, std::int64_t page, std::int64_t size,
                 const std::string& columns = "*") {
  // One statement, one round trip: the page and the total together.
  pqxx::read_transaction tx(conn);
  auto row = tx.exec1("SELECT coalesce((SELECT json_agg(t) FROM (SELECT " + columns + " " +
                      from_where + " ORDER BY " + order + " LIMIT " + std::to_string(size) +
                      " OFFSET " + std::to_string((page - 1) * size) +
                      ") t), '[]'::json)::text, (SELECT count(*) " + from_where + ")");
  tx.commit();
  response r;
  r.body = "{\"items\":" + row[0].as<std::string>() + ",\"page\":" + std::to_string(page) +
           ",\"page_size\":" + std::to_string(size) +
           ",\"total\":" + std::to_string(row[1].as<std::int64_t>()) + "}";
  return r;
}

/// A LIKE pattern matching `text` anywhere, with its wildcards escaped.
std::string contains_pattern(std::string_view text) {
  std::string out = "%";
  for (char ch : text) {
    if (ch == '%' || ch == '_' || ch == '\\') out += '\\';
    out += ch;
  }
  return out + "%";
}

json::object book_resource(const json::object& s) {
  auto out = pick(s, {"book_id", "name", "description", "price", "discount_price", "category_id",
                      "publisher_id", "author_ids", "reserved"});
  auto on_hand = s.at("on_hand").to_number<std::int64_t>();
  auto reserved = s.at("reserved").to_number<std::int64_t>();
  out["stock"] = on_hand - reserved;
  return out;
}

/// What a client sends for an order line or basket item.
struct line_input {
  std::string book_id;
  std::int64_t quantity = 0;
};
BOOST_DESCRIBE_STRUCT(line_input, (), (book_id, quantity))

struct place_order_input {
  std::optional<std::string> order_id;
  std::optional<std::string> buyer_id;
  std::optional<std::vector<line_input>> items;
};
BOOST_DESCRIBE_STRUCT(place_order_input, (), (order_id, buyer_id, items))

json::array lines_json(const std::vector<order_item>& items) {
  json::array a;
  for (const auto& i : items)
    a.push_back(json::object{
        {"book_id", i.book_id}, {"quantity", i.quantity}, {"unit_price", i.unit_price}});
  return a;
}

}  // namespace

// ---- catalog ------------------------------------------------------------------

namespace {

/// Routes for a named catalog entry (author, category, publisher): create,
/// get, list (by name, searchable), rename, delete.
template <class D, class Create, class Update, class Delete>
void add_named_entry_routes(bookstore_api::impl& api, std::string_view plural,
                            std::string_view id_field, std::string_view table,
                            std::string_view schema) {
  const std::string noun(D::category);
  const std::string field(id_field);
  const std::string base = path("/" + std::string(plural));
  const std::string one = base + "/{" + field + "}";
  const std::string tag = "catalog";
  auto& self = api;

  self.routes.add(route{
      "POST", base, access::admin,
      route_doc{"Create a " + noun,
                tag,
                {{"x-request-id", "header", "string", "makes the command idempotent"}},
                std::string(schema) + "Input",
                std::string(schema),
                {201, 400, 401, 403, 409, 413, 415, 422, 503}},
      [&self, noun, field, base](call_ptr c) {
        auto body = self.body_object(c);
        if (!body) return;
        auto id = id_or_new(self, c, *body, field);
        if (!valid_id(c, noun, field, id)) return;
        auto command = self.decode<Create>(c, *body);
        if (!command) return;
        self.run_command(c, node::make_envelope<D>(id, std::move(*command)),
                         command_reply{201,
                                       [id, field, name = command->name](const command_result&) {
                                         return json::object{{field, id}, {"name", name}};
                                       },
                                       base + "/" + id});
      }});
  self.routes.add(route{
      "GET", one, access::open,
      route_doc{"Get a " + noun,
                tag,
                {after_version_doc, wait_ms_doc},
                {},
                std::string(schema),
                {200, 400, 404, 503}},
      [&self, noun, field](call_ptr c) {
        auto id = c->param(field);
        self.get_state(c, noun, id, [field](const json::object& s) -> std::optional<json::object> {
          if (!active(s)) return std::nullopt;
          return json::object{{field, s.at("id")}, {"name", s.at("name")}};
        });
      }});
  self.routes.add(route{
      "GET", base, access::open,
      route_doc{"List " + std::string(plural) + " by name",
                tag,
                {{"name", "query", "string", "only names containing this text (case-insensitive)"},
                 {"page", "query", "integer", "1-based page (default 1)"},
                 {"page_size", "query", "integer", "items per page, 1-100 (default 20)"},
                 {"x-troupe-min-position", "header", "integer",
                  "wait (bounded) until the view has folded this global position"}},
                {},
                std::string(schema) + "Page",
                {200, 400, 503}},
      [&self, table = std::string(table), field](call_ptr c) {
        auto paged = self.paging(c);
        if (!paged) return;
        auto name = c->req.query_param("name");
        self.run_query(
            c, "book_catalog",
            [paged, name, table, field](pqxx::connection_base& conn) {
              std::string where = "FROM troupe_views." + table;
              if (name)
                where +=
                    " WHERE name ILIKE " + conn.quote(contains_pattern(*name)) + " ESCAPE '\\'";
              return page_of(conn, where, "name, " + field, paged->first, paged->second,
                             field + ", name");
            },
            true);
      }});
  self.routes.add(route{
      "PUT", one, access::admin,
      route_doc{"Rename a " + noun,
                tag,
                {{"if-match", "header", "string", "the ETag the change is based on (412 if stale)"},
                 {"x-request-id", "header", "string", "makes the command idempotent"}},
                std::string(schema) + "Input",
                std::string(schema),
                {200, 400, 401, 403, 404, 409, 412, 415, 422, 503}},
      [&self, field](call_ptr c) {
        auto id = c->param(field);
        path_command<D, Update>(self, c, field, id, [&](const Update& u) {
          return json::object{{field, id}, {"name", u.name}};
        });
      }});
  self.routes.add(route{
      "DELETE", one, access::admin,
      route_doc{"Delete a " + noun,
                tag,
                {{"if-match", "header", "string", "the ETag the change is based on (412 if stale)"},
                 {"x-request-id", "header", "string", "makes the command idempotent"}},
                {},
                "CommandResult",
                {200, 401, 403, 404, 409, 412, 503}},
      [&self, noun, field](call_ptr c) {
        auto id = c->param(field);
        if (!valid_id(c, noun, field, id)) return;
        auto command = self.decode<Delete>(c, json::object{{field, id}});
        if (!command) return;
        self.run_command(c, node::make_envelope<D>(id, std::move(*command)),
                         command_reply{200, [id, field](const command_result&) {
                                         return json::object{{field, id}, {"deleted", true}};
                                       }});
      }});
}

}  // namespace

namespace {
const parameter_doc request_id_doc{
    "x-request-id", "header", "string",
    "makes the command idempotent: a repeat returns the first outcome"};
const parameter_doc if_match_doc{
    "if-match", "header", "string",
    "the ETag the change is based on (412 when the resource moved on)"};
const parameter_doc min_position_doc{
    "x-troupe-min-position", "header", "integer",
    "wait (bounded) until the view has folded this global position (read-your-writes)"};
const parameter_doc page_doc{"page", "query", "integer", "1-based page (default 1)"};
const parameter_doc page_size_doc{"page_size", "query", "integer",
                                  "items per page, 1-100 (default 20)"};
}  // namespace

void bookstore_api::impl::add_catalog_routes() {
  add_named_entry_routes<author, create_author, update_author, delete_author>(
      *this, "authors", "author_id", "catalog_authors", "Author");
  add_named_entry_routes<book_category, create_category, update_category, delete_category>(
      *this, "categories", "category_id", "catalog_categories", "Category");
  add_named_entry_routes<publisher, create_publisher, update_publisher, delete_publisher>(
      *this, "publishers", "publisher_id", "catalog_publishers", "Publisher");

  auto books = path("/books");
  auto one_book = path("/books/{book_id}");
  routes.add(route{"POST", books, access::admin,
                   route_doc{"Create a book",
                             "catalog",
                             {request_id_doc},
                             "BookInput",
                             "Book",
                             {201, 400, 401, 403, 409, 413, 415, 422, 503}},
                   [this, books](call_ptr c) {
                     auto body = body_object(c);
                     if (!body) return;
                     auto id = id_or_new(*this, c, *body, "book_id");
                     if (!valid_id(c, "book", "book_id", id)) return;
                     default_to(*body, "description", "");
                     default_to(*body, "author_ids", json::array{});
                     default_to(*body, "initial_stock", 0);
                     auto command = decode<create_book>(c, *body);
                     if (!command) return;
                     auto shown = *command;
                     run_command(c, node::make_envelope<book>(id, std::move(*command)),
                                 command_reply{201,
                                               [shown](const command_result&) {
                                                 auto o = json::value_from(shown).as_object();
                                                 o["stock"] = o["initial_stock"];
                                                 o.erase("initial_stock");
                                                 o["reserved"] = 0;
                                                 return o;
                                               },
                                               books + "/" + id});
                   }});
  routes.add(route{"GET", one_book, access::open,
                   route_doc{"Get a book (stock, price) as its aggregate has it",
                             "catalog",
                             {after_version_doc, wait_ms_doc},
                             {},
                             "Book",
                             {200, 400, 404, 503}},
                   [this](call_ptr c) {
                     get_state(c, "book", c->param("book_id"),
                               [](const json::object& s) -> std::optional<json::object> {
                                 if (!active(s)) return std::nullopt;
                                 return book_resource(s);
                               });
                   }});
  routes.add(route{
      "GET", books, access::open,
      route_doc{"Search the catalog",
                "catalog",
                {{"name", "query", "string", "names containing this text (case-insensitive)"},
                 {"category_id", "query", "string", "only this category"},
                 {"publisher_id", "query", "string", "only this publisher"},
                 {"author_id", "query", "string", "only books by this author"},
                 {"min_price", "query", "integer", "lowest price in cents"},
                 {"max_price", "query", "integer", "highest price in cents"},
                 page_doc,
                 page_size_doc,
                 min_position_doc},
                {},
                "BookPage",
                {200, 400, 503}},
      [this](call_ptr c) {
        auto paged = paging(c);
        if (!paged) return;
        std::optional<std::int64_t> min_price, max_price;
        if (!int_param(c, "min_price", min_price) || !int_param(c, "max_price", max_price)) return;
        auto name = c->req.query_param("name");
        auto category = c->req.query_param("category_id");
        auto publisher_id = c->req.query_param("publisher_id");
        auto author_id = c->req.query_param("author_id");
        run_query(
            c, "book_catalog",
            [=](pqxx::connection_base& conn) {
              std::string where = "FROM troupe_views.book_catalog_view WHERE true";
              if (name)
                where += " AND name ILIKE " + conn.quote(contains_pattern(*name)) + " ESCAPE '\\'";
              if (category) where += " AND category_id = " + conn.quote(*category);
              if (publisher_id) where += " AND publisher_id = " + conn.quote(*publisher_id);
              if (author_id)
                where +=
                    " AND author_ids @> jsonb_build_array(" + conn.quote(*author_id) + "::text)";
              if (min_price)
                where += " AND coalesce(discount_price, price) >= " + std::to_string(*min_price);
              if (max_price)
                where += " AND coalesce(discount_price, price) <= " + std::to_string(*max_price);
              return page_of(conn, where, "name, book_id", paged->first, paged->second);
            },
            true);
      }});
  routes.add(route{"PUT", one_book, access::admin,
                   route_doc{"Replace a book's catalog details (stock and ratings stay)",
                             "catalog",
                             {if_match_doc, request_id_doc},
                             "BookUpdate",
                             "Book",
                             {200, 400, 401, 403, 404, 409, 412, 415, 422, 503}},
                   [this](call_ptr c) {
                     path_command<book, update_book>(
                         *this, c, "book_id", c->param("book_id"),
                         [](const update_book& u) { return json::value_from(u).as_object(); },
                         {{"description", ""}, {"author_ids", json::array{}}});
                   }});
  routes.add(route{"DELETE", one_book, access::admin,
                   route_doc{"Delete a book",
                             "catalog",
                             {if_match_doc, request_id_doc},
                             {},
                             "CommandResult",
                             {200, 401, 403, 404, 409, 412, 503}},
                   [this](call_ptr c) {
                     auto id = c->param("book_id");
                     if (!valid_id(c, "book", "book_id", id)) return;
                     run_command(
                         c, node::make_envelope<book>(id, delete_book{id}),
                         command_reply{200, [id](const command_result&) {
                                         return json::object{{"book_id", id}, {"deleted", true}};
                                       }});
                   }});
  routes.add(route{"POST", path("/books/{book_id}/stock"), access::admin,
                   route_doc{"Add copies to a book's stock",
                             "catalog",
                             {if_match_doc, request_id_doc},
                             "StockInput",
                             "CommandResult",
                             {200, 400, 401, 403, 404, 409, 412, 415, 422, 503}},
                   [this](call_ptr c) {
                     auto id = c->param("book_id");
                     path_command<book, add_stock>(
                         *this, c, "book_id", id, [&](const add_stock& a) {
                           return json::object{{"book_id", id}, {"added", a.quantity}};
                         });
                   }});
}

// ---- baskets, orders, feedbacks, accounts -----------------------------------------

void bookstore_api::impl::add_shopping_routes() {
  auto forbid = [](const call_ptr& c) {
    c->reply(
        problem(403, "forbidden", "a buyer reaches only their own basket, orders and account"));
  };
  auto basket_path = path("/baskets/{buyer_id}");
  routes.add(route{"GET", basket_path, access::signed_in,
                   route_doc{"Get a buyer's basket",
                             "basket",
                             {after_version_doc, wait_ms_doc},
                             {},
                             "Basket",
                             {200, 400, 401, 403, 404, 503}},
                   [this, forbid](call_ptr c) {
                     auto buyer = c->param("buyer_id");
                     if (!c->who.may_act_for(buyer)) return forbid(c);
                     get_state(c, "basket", buyer,
                               [](const json::object& s) -> std::optional<json::object> {
                                 if (!s.at("exists").as_bool()) return std::nullopt;
                                 return pick(s, {"buyer_id", "items"});
                               });
                   }});
  routes.add(route{"PUT", basket_path, access::signed_in,
                   route_doc{"Create or replace a buyer's basket",
                             "basket",
                             {if_match_doc, request_id_doc},
                             "BasketInput",
                             "Basket",
                             {200, 400, 401, 403, 409, 412, 415, 422, 503}},
                   [this, forbid](call_ptr c) {
                     auto buyer = c->param("buyer_id");
                     if (!c->who.may_act_for(buyer)) return forbid(c);
                     auto body = body_object(c);
                     if (!body) return;
                     if (!put_id(c, *body, "buyer_id", buyer) ||
                         !valid_id(c, "basket", "buyer_id", buyer))
                       return;
                     auto command = decode<save_basket>(c, *body);
                     if (!command) return;
                     if (command->items.size() > max_lines)
                       return c->reply(problem(
                           422, "too-many-items",
                           "a basket holds at most " + std::to_string(max_lines) + " lines"));
                     auto shown = *command;
                     run_command(c, node::make_envelope<basket>(buyer, std::move(*command)),
                                 command_reply{200, [shown](const command_result&) {
                                                 return json::value_from(shown).as_object();
                                               }});
                   }});
  routes.add(
      route{"PATCH", path("/baskets/{buyer_id}/items/{book_id}"), access::signed_in,
            route_doc{"Set one item's quantity in a basket (0 removes it)",
                      "basket",
                      {if_match_doc, request_id_doc},
                      "QuantityInput",
                      "CommandResult",
                      {200, 400, 401, 403, 404, 409, 412, 415, 422, 503}},
            [this, forbid](call_ptr c) {
              auto buyer = c->param("buyer_id");
              if (!c->who.may_act_for(buyer)) return forbid(c);
              auto body = body_object(c);
              if (!body) return;
              if (!valid_id(c, "basket", "buyer_id", buyer)) return;
              auto book_id = c->param("book_id");
              if (!put_id(c, *body, "buyer_id", buyer) || !put_id(c, *body, "book_id", book_id))
                return;
              auto command = decode<update_basket_item>(c, *body);
              if (!command) return;
              auto quantity = command->quantity;
              run_command(c, node::make_envelope<basket>(buyer, std::move(*command)),
                          command_reply{200, [buyer, book_id, quantity](const command_result&) {
                                          return json::object{{"buyer_id", buyer},
                                                              {"book_id", book_id},
                                                              {"quantity", quantity}};
                                        }});
            }});
  routes.add(route{"DELETE", basket_path, access::signed_in,
                   route_doc{"Delete a buyer's basket",
                             "basket",
                             {if_match_doc, request_id_doc},
                             {},
                             "CommandResult",
                             {200, 401, 403, 404, 409, 412, 503}},
                   [this, forbid](call_ptr c) {
                     auto buyer = c->param("buyer_id");
                     if (!c->who.may_act_for(buyer)) return forbid(c);
                     if (!valid_id(c, "basket", "buyer_id", buyer)) return;
                     run_command(c, node::make_envelope<basket>(buyer, delete_basket{buyer}),
                                 command_reply{
                                     200, [buyer](const command_result&) {
                                       return json::object{{"buyer_id", buyer}, {"deleted", true}};
                                     }});
                   }});

  // Orders. Placing one quotes each book's price from the catalog (cached
  // for a few seconds), never from the client.
  auto orders = path("/orders");
  routes.add(route{
      "POST", orders, access::signed_in,
      route_doc{"Place an order from an item list, or from the buyer's basket when items are "
                "absent; the fulfilment saga then reserves stock, takes payment and completes "
                "or cancels it",
                "orders",
                {request_id_doc},
                "OrderInput",
                "Order",
                {201, 400, 401, 403, 409, 413, 415, 422, 503}},
      [this, forbid, orders](call_ptr c) {
        auto body = body_object(c);
        if (!body) return;
        auto input = decode<place_order_input>(c, *body);
        if (!input) return;
        std::string buyer = input->buyer_id.value_or(c->who.subject);
        if (buyer.empty())
          return c->reply(problem(400, "invalid-field", "the order needs a buyer",
                                  {{"buyer_id", "is required"}}));
        if (!c->who.may_act_for(buyer)) return forbid(c);
        std::string order_id = input->order_id.value_or(id_for(c, "order_id"));
        if (!valid_id(c, "order", "order_id", order_id) ||
            !valid_id(c, "basket", "buyer_id", buyer))
          return;
        auto place = [this, c, orders, order_id, buyer](std::vector<line_input> lines,
                                                        bool from_basket) {
          if (lines.empty())
            return c->reply(problem(422, "items-required", "the order has no items"));
          if (lines.size() > max_lines)
            return c->reply(
                problem(422, "too-many-items",
                        "an order holds at most " + std::to_string(max_lines) + " lines"));
          // Quote every line's price, then place the order - or, if any
          // quote could not be read, answer 503 once and place nothing.
          struct quoting {
            std::mutex mutex;
            std::vector<order_item> items;
            std::size_t left;
            std::string missing;
            bool failed = false;
          };
          auto q = std::make_shared<quoting>();
          q->left = lines.size();
          for (const auto& l : lines) q->items.push_back(order_item{l.book_id, l.quantity, 0});
          for (std::size_t i = 0; i < lines.size(); ++i) {
            if (validate_stream_id(stream_of("book", lines[i].book_id)))
              return c->reply(
                  problem(400, "invalid-field", "invalid book id",
                          {{"items[" + std::to_string(i) + "].book_id", "is not a valid id"}}));
          }
          for (std::size_t i = 0; i < lines.size(); ++i) {
            quote_price(lines[i].book_id, [this, c, q, i, orders, order_id, buyer,
                                           from_basket](price_quote quote) {
              bool last = false;
              {
                std::lock_guard lock{q->mutex};
                if (quote.failed)
                  q->failed = true;
                else if (quote.cents)
                  q->items[i].unit_price = *quote.cents;
                else if (q->missing.empty())
                  q->missing = q->items[i].book_id;
                last = --q->left == 0;
              }
              if (!last) return;
              if (q->failed)
                return c->reply(
                    problem(503, "store-unavailable", "book prices could not be read; retry"));
              if (!q->missing.empty())
                return c->reply(problem(422, "unknown-book",
                                        "book '" + q->missing + "' is not in the catalog"));
              auto items = q->items;
              run_command(c,
                          // A new order id: its aggregate need not read
                          // a stream that is almost surely empty.
                          node::make_envelope<order>(
                              order_id, place_order{order_id, buyer, items, now_ms(), from_basket},
                              {.creates_stream = true}),
                          command_reply{201,
                                        [order_id, buyer, items](const command_result&) {
                                          std::int64_t total = 0;
                                          for (const auto& i : items)
                                            total += i.quantity * i.unit_price;
                                          return json::object{{"order_id", order_id},
                                                              {"buyer_id", buyer},
                                                              {"status", "placed"},
                                                              {"items", lines_json(items)},
                                                              {"total", total}};
                                        },
                                        orders + "/" + order_id});
            });
          }
        };
        if (input->items) return place(*input->items, false);
        with_state(c, "basket", buyer, [c, place](const json::object* s, stream_version) {
          std::vector<line_input> lines;
          if (s != nullptr && s->at("exists").as_bool())
            for (const auto& item : s->at("items").as_array())
              lines.push_back(line_input{std::string(item.at("book_id").as_string()),
                                         item.at("quantity").to_number<std::int64_t>()});
          if (lines.empty())
            return c->reply(
                problem(422, "basket-empty", "no items given and the buyer's basket is empty"));
          place(std::move(lines), true);
        });
      }});
  routes.add(
      route{"GET", path("/orders/{order_id}"), access::signed_in,
            route_doc{"Get an order and its status as the fulfilment saga moves it (long poll: "
                      "after_version + wait_ms)",
                      "orders",
                      {after_version_doc, wait_ms_doc},
                      {},
                      "Order",
                      {200, 400, 401, 403, 404, 503}},
            [this, forbid](call_ptr c) {
              auto id = c->param("order_id");
              with_state(
                  c, "order", id,
                  [c, id, forbid](const json::object* s, stream_version v) {
                    if (s == nullptr || s->at("status") == "none")
                      return c->reply(problem(404, "not-found", "no such order: '" + id + "'"));
                    if (!c->who.may_act_for(s->at("buyer_id").as_string())) return forbid(c);
                    auto o = pick(*s, {"order_id", "buyer_id", "status", "items", "total"});
                    o["version"] = v.value;
                    auto res = json_response(200, o);
                    res.headers.push_back({"etag", "\"" + std::to_string(v.value) + "\""});
                    c->reply(std::move(res));
                  },
                  true);
            }});
  routes.add(route{
      "GET", orders, access::signed_in,
      route_doc{"List a buyer's orders, newest first (admins may list everyone's)",
                "orders",
                {{"buyer_id", "query", "string", "whose orders (default: the caller)"},
                 page_doc,
                 page_size_doc,
                 min_position_doc},
                {},
                "OrderPage",
                {200, 400, 401, 403, 503}},
      [this, forbid](call_ptr c) {
        auto paged = paging(c);
        if (!paged) return;
        auto buyer = c->req.query_param("buyer_id");
        if (!buyer && !c->who.admin) buyer = c->who.subject;
        if (buyer && !c->who.may_act_for(*buyer)) return forbid(c);
        if (buyer)
          return run_query(c, "orders_by_buyer", [paged, buyer](pqxx::connection_base& conn) {
            return page_of(
                conn, "FROM troupe_views.orders_by_buyer WHERE buyer_id = " + conn.quote(*buyer),
                "placed_at DESC, order_id", paged->first, paged->second);
          });
        run_query(c, "order_summary", [paged](pqxx::connection_base& conn) {
          return page_of(conn, "FROM troupe_views.order_summary", "placed_at DESC, order_id",
                         paged->first, paged->second);
        });
      }});
  routes.add(route{
      "POST", path("/orders/{order_id}/complete"), access::admin,
      route_doc{"Complete an order (normally the fulfilment saga does)",
                "orders",
                {if_match_doc, request_id_doc},
                {},
                "CommandResult",
                {200, 401, 403, 404, 409, 412, 503}},
      [this](call_ptr c) {
        auto id = c->param("order_id");
        if (!valid_id(c, "order", "order_id", id)) return;
        run_command(c, node::make_envelope<order>(id, complete_order{id, now_ms()}),
                    command_reply{200, [id](const command_result&) {
                                    return json::object{{"order_id", id}, {"status", "completed"}};
                                  }});
      }});
  routes.add(route{
      "POST", path("/orders/{order_id}/cancel"), access::signed_in,
      route_doc{"Cancel an order (its buyer or an admin); the saga releases what it held",
                "orders",
                {if_match_doc, request_id_doc},
                "CancelInput",
                "CommandResult",
                {200, 400, 401, 403, 404, 409, 412, 415, 503}},
      [this, forbid](call_ptr c) {
        auto id = c->param("order_id");
        if (!valid_id(c, "order", "order_id", id)) return;
        std::string reason = "cancelled by the buyer";
        if (!c->req.body.empty()) {
          auto body = body_object(c);
          if (!body) return;
          if (const auto* r = body->if_contains("reason")) {
            if (!r->is_string())
              return c->reply(problem(400, "invalid-field", "invalid reason",
                                      {{"reason", "must be a string"}}));
            reason = std::string(r->as_string());
          }
        }
        auto cancel = [this, c, id, reason] {
          run_command(
              c, node::make_envelope<order>(id, cancel_order{id, reason, now_ms()}),
              command_reply{200, [id](const command_result&) {
                              return json::object{{"order_id", id}, {"status", "cancelled"}};
                            }});
        };
        if (c->who.admin) return cancel();
        with_state(c, "order", id, [c, id, cancel, forbid](const json::object* s, stream_version) {
          if (s == nullptr || s->at("status") == "none")
            return c->reply(problem(404, "not-found", "no such order: '" + id + "'"));
          if (!c->who.may_act_for(s->at("buyer_id").as_string())) return forbid(c);
          cancel();
        });
      }});

  // Feedbacks: ratings and comments on books, listed from the feedbacks view.
  routes.add(route{
      "POST", path("/feedbacks"), access::signed_in,
      route_doc{"Rate a book (0-5) with a comment; the rating saga adds it to the book",
                "feedbacks",
                {request_id_doc},
                "FeedbackInput",
                "Feedback",
                {201, 400, 401, 413, 415, 422, 503}},
      [this](call_ptr c) {
        auto body = body_object(c);
        if (!body) return;
        auto id = id_or_new(*this, c, *body, "feedback_id");
        if (!valid_id(c, "feedback", "feedback_id", id)) return;
        default_to(*body, "comment", "");
        if (body->contains("created_at"))
          return c->reply(problem(400, "invalid-field", "created_at is set by the server",
                                  {{"created_at", "is not a known field"}}));
        (*body)["created_at"] = now_ms();
        auto command = decode<create_feedback>(c, *body);
        if (!command) return;
        auto shown = *command;
        run_command(
            c, node::make_envelope<feedback>(id, std::move(*command)),
            command_reply{
                201, [shown](const command_result&) { return json::value_from(shown).as_object(); },
                path("/feedbacks/") + id});
      }});
  routes.add(route{
      "GET", path("/feedbacks/{feedback_id}"), access::open,
      route_doc{
          "Get a feedback", "feedbacks", {min_position_doc}, {}, "Feedback", {200, 400, 404, 503}},
      [this](call_ptr c) {
        auto id = c->param("feedback_id");
        run_query(c, "feedbacks", [id](pqxx::connection_base& conn) {
          pqxx::read_transaction tx(conn);
          auto rows = tx.exec(
              "SELECT row_to_json(f)::text FROM "
              "troupe_views.feedbacks f WHERE feedback_id = " +
              conn.quote(id));
          tx.commit();
          if (rows.empty()) return problem(404, "not-found", "no such feedback: '" + id + "'");
          response r;
          r.body = rows[0][0].as<std::string>();
          return r;
        });
      }});
  routes.add(route{
      "GET", path("/books/{book_id}/feedbacks"), access::open,
      route_doc{"List a book's feedbacks, newest first",
                "feedbacks",
                {page_doc, page_size_doc, min_position_doc},
                {},
                "FeedbackPage",
                {200, 400, 503}},
      [this](call_ptr c) {
        auto paged = paging(c);
        if (!paged) return;
        auto id = c->param("book_id");
        run_query(
            c, "feedbacks",
            [paged, id](pqxx::connection_base& conn) {
              return page_of(conn, "FROM troupe_views.feedbacks WHERE book_id = " + conn.quote(id),
                             "created_at DESC, feedback_id", paged->first, paged->second);
            },
            true);
      }});
  routes.add(route{"DELETE", path("/feedbacks/{feedback_id}"), access::admin,
                   route_doc{"Delete a feedback (its rating leaves the book)",
                             "feedbacks",
                             {if_match_doc, request_id_doc},
                             {},
                             "CommandResult",
                             {200, 401, 403, 404, 409, 412, 503}},
                   [this](call_ptr c) {
                     auto id = c->param("feedback_id");
                     if (!valid_id(c, "feedback", "feedback_id", id)) return;
                     run_command(c, node::make_envelope<feedback>(id, delete_feedback{id}),
                                 command_reply{
                                     200, [id](const command_result&) {
                                       return json::object{{"feedback_id", id}, {"deleted", true}};
                                     }});
                   }});

  // Finance accounts: the credit an order's payment is authorised against.
  routes.add(route{"POST", path("/accounts"), access::admin,
                   route_doc{"Open a buyer's account with a credit limit (cents)",
                             "finance",
                             {request_id_doc},
                             "AccountInput",
                             "Account",
                             {201, 400, 401, 403, 409, 415, 422, 503}},
                   [this](call_ptr c) {
                     auto body = body_object(c);
                     if (!body) return;
                     auto command = decode<open_account>(c, *body);
                     if (!command) return;
                     auto buyer = command->buyer_id;
                     if (!valid_id(c, "finance", "buyer_id", buyer)) return;
                     auto limit = command->credit_limit;
                     run_command(c,
                                 node::make_envelope<finance_account>(buyer, std::move(*command)),
                                 command_reply{201,
                                               [buyer, limit](const command_result&) {
                                                 return json::object{{"buyer_id", buyer},
                                                                     {"credit_limit", limit},
                                                                     {"authorised_total", 0},
                                                                     {"captured_total", 0}};
                                               },
                                               path("/accounts/") + buyer});
                   }});
  routes.add(route{
      "GET", path("/accounts/{buyer_id}"), access::signed_in,
      route_doc{"Get a buyer's account",
                "finance",
                {after_version_doc, wait_ms_doc},
                {},
                "Account",
                {200, 400, 401, 403, 404, 503}},
      [this, forbid](call_ptr c) {
        auto buyer = c->param("buyer_id");
        if (!c->who.may_act_for(buyer)) return forbid(c);
        get_state(
            c, finance_account::category, buyer,
            [](const json::object& s) -> std::optional<json::object> {
              if (!s.at("opened").as_bool()) return std::nullopt;
              return pick(s, {"buyer_id", "credit_limit", "authorised_total", "captured_total"});
            });
      }});
  routes.add(
      route{"PATCH", path("/accounts/{buyer_id}"), access::admin,
            route_doc{"Change a buyer's credit limit",
                      "finance",
                      {if_match_doc, request_id_doc},
                      "CreditLimitInput",
                      "CommandResult",
                      {200, 400, 401, 403, 404, 409, 412, 415, 422, 503}},
            [this](call_ptr c) {
              auto buyer = c->param("buyer_id");
              path_command<finance_account, change_credit_limit>(
                  *this, c, "buyer_id", buyer, [&](const change_credit_limit& l) {
                    return json::object{{"buyer_id", buyer}, {"credit_limit", l.credit_limit}};
                  });
            }});
}

}  // namespace troupe::http
