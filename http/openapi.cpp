// The OpenAPI 3.0 document, generated from the route table (paths,
// parameters, statuses, security) plus the schemas below, so every served
// route is documented and nothing undocumented is served.

#include <boost/json.hpp>

#include "http/api_impl.hpp"

namespace troupe::http {

namespace json = boost::json;

namespace {

// Request and response shapes. Money is in cents; ids are strings of
// letters, digits and _ . : - (generated when a create omits them).
constexpr std::string_view schemas_text = R"json({
 "Problem": {"type": "object", "required": ["type", "title", "status"], "properties": {
   "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
   "detail": {"type": "string"},
   "errors": {"type": "array", "items": {"type": "object", "properties": {
     "field": {"type": "string"}, "message": {"type": "string"}}}}}},
 "CommandResult": {"type": "object", "properties": {
   "version": {"type": "integer", "description": "the stream's version after the command (also the ETag)"},
   "position": {"type": "integer", "description": "global position of the command's last event (read-your-writes)"}},
   "additionalProperties": true},
 "AuthorInput": {"type": "object", "required": ["name"], "properties": {
   "author_id": {"type": "string"}, "name": {"type": "string"}}},
 "Author": {"type": "object", "properties": {"author_id": {"type": "string"}, "name": {"type": "string"}, "version": {"type": "integer"}}},
 "AuthorPage": {"$ref": "#/components/schemas/Page"},
 "CategoryInput": {"type": "object", "required": ["name"], "properties": {
   "category_id": {"type": "string"}, "name": {"type": "string"}}},
 "Category": {"type": "object", "properties": {"category_id": {"type": "string"}, "name": {"type": "string"}, "version": {"type": "integer"}}},
 "CategoryPage": {"$ref": "#/components/schemas/Page"},
 "PublisherInput": {"type": "object", "required": ["name"], "properties": {
   "publisher_id": {"type": "string"}, "name": {"type": "string"}}},
 "Publisher": {"type": "object", "properties": {"publisher_id": {"type": "string"}, "name": {"type": "string"}, "version": {"type": "integer"}}},
 "PublisherPage": {"$ref": "#/components/schemas/Page"},
 "Page": {"type": "object", "required": ["items", "page", "page_size", "total"], "properties": {
   "items": {"type": "array", "items": {"type": "object"}}, "page": {"type": "integer"},
   "page_size": {"type": "integer"}, "total": {"type": "integer"}}},
 "BookInput": {"type": "object", "required": ["name", "price", "category_id", "publisher_id"], "properties": {
   "book_id": {"type": "string"}, "name": {"type": "string"}, "description": {"type": "string"},
   "price": {"type": "integer", "description": "cents"}, "discount_price": {"type": "integer", "nullable": true},
   "category_id": {"type": "string"}, "publisher_id": {"type": "string"},
   "author_ids": {"type": "array", "items": {"type": "string"}}, "initial_stock": {"type": "integer"}}},
 "BookUpdate": {"type": "object", "required": ["name", "price", "category_id", "publisher_id"], "properties": {
   "name": {"type": "string"}, "description": {"type": "string"}, "price": {"type": "integer"},
   "discount_price": {"type": "integer", "nullable": true}, "category_id": {"type": "string"},
   "publisher_id": {"type": "string"}, "author_ids": {"type": "array", "items": {"type": "string"}}}},
 "Book": {"type": "object", "properties": {
   "book_id": {"type": "string"}, "name": {"type": "string"}, "description": {"type": "string"},
   "price": {"type": "integer"}, "discount_price": {"type": "integer", "nullable": true},
   "category_id": {"type": "string"}, "publisher_id": {"type": "string"},
   "author_ids": {"type": "array", "items": {"type": "string"}},
   "stock": {"type": "integer", "description": "available copies"}, "reserved": {"type": "integer"},
   "version": {"type": "integer"}}},
 "BookPage": {"$ref": "#/components/schemas/Page"},
 "StockInput": {"type": "object", "required": ["quantity"], "properties": {"quantity": {"type": "integer", "minimum": 1}}},
 "Line": {"type": "object", "required": ["book_id", "quantity"], "properties": {
   "book_id": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}}},
 "BasketInput": {"type": "object", "required": ["items"], "properties": {
   "items": {"type": "array", "items": {"$ref": "#/components/schemas/Line"}}}},
 "Basket": {"type": "object", "properties": {"buyer_id": {"type": "string"},
   "items": {"type": "array", "items": {"$ref": "#/components/schemas/Line"}}, "version": {"type": "integer"}}},
 "QuantityInput": {"type": "object", "required": ["quantity"], "properties": {"quantity": {"type": "integer", "minimum": 0}}},
 "OrderInput": {"type": "object", "properties": {
   "order_id": {"type": "string"}, "buyer_id": {"type": "string", "description": "default: the token's subject"},
   "items": {"type": "array", "items": {"$ref": "#/components/schemas/Line"}, "description": "absent: the buyer's basket"}}},
 "Order": {"type": "object", "properties": {
   "order_id": {"type": "string"}, "buyer_id": {"type": "string"},
   "status": {"type": "string", "enum": ["placed", "completed", "cancelled"]},
   "items": {"type": "array", "items": {"type": "object", "properties": {
     "book_id": {"type": "string"}, "quantity": {"type": "integer"}, "unit_price": {"type": "integer"}}}},
   "total": {"type": "integer"}, "version": {"type": "integer"}}},
 "OrderPage": {"$ref": "#/components/schemas/Page"},
 "CancelInput": {"type": "object", "properties": {"reason": {"type": "string"}}},
 "FeedbackInput": {"type": "object", "required": ["book_id", "rating"], "properties": {
   "feedback_id": {"type": "string"}, "book_id": {"type": "string"},
   "rating": {"type": "integer", "minimum": 0, "maximum": 5}, "comment": {"type": "string", "maxLength": 1000}}},
 "Feedback": {"type": "object", "properties": {
   "feedback_id": {"type": "string"}, "book_id": {"type": "string"}, "rating": {"type": "integer"},
   "comment": {"type": "string"}, "created_at": {"type": "integer"}}},
 "FeedbackPage": {"$ref": "#/components/schemas/Page"},
 "AccountInput": {"type": "object", "required": ["buyer_id", "credit_limit"], "properties": {
   "buyer_id": {"type": "string"}, "credit_limit": {"type": "integer", "description": "cents"}}},
 "CreditLimitInput": {"type": "object", "required": ["credit_limit"], "properties": {"credit_limit": {"type": "integer"}}},
 "Account": {"type": "object", "properties": {
   "buyer_id": {"type": "string"}, "credit_limit": {"type": "integer"},
   "authorised_total": {"type": "integer"}, "captured_total": {"type": "integer"}, "version": {"type": "integer"}}},
 "Health": {"type": "object", "properties": {"status": {"type": "string"}}, "additionalProperties": true},
 "EventCatalog": {"type": "object", "properties": {"events": {"type": "array", "items": {"type": "object", "properties": {
   "type": {"type": "string"}, "schema_version": {"type": "integer"}, "producer": {"type": "string"},
   "projections": {"type": "array", "items": {"type": "string"}},
   "sagas": {"type": "array", "items": {"type": "string"}}}}}}},
 "EventPage": {"type": "object", "properties": {"stream_id": {"type": "string"},
   "events": {"type": "array", "items": {"type": "object"}}}},
 "ProjectionList": {"type": "object", "properties": {"projections": {"type": "array", "items": {"type": "object"}}}},
 "ClusterStatus": {"type": "object", "properties": {"cluster": {"type": "string"}, "self": {"type": "string"}, "connected": {"type": "boolean"}, "shard_count": {"type": "integer"}, "nodes": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}, "http_url": {"type": "string"}, "heartbeat_age_seconds": {"type": "number"}, "shards": {"type": "integer"}}}}, "shards": {"type": "array", "items": {"$ref": "#/components/schemas/Lease"}}, "singletons": {"type": "array", "items": {"$ref": "#/components/schemas/Lease"}}, "forwarding": {"type": "object"}}},
 "Lease": {"type": "object", "properties": {"key": {"type": "string"}, "owner": {"type": "string"}, "age_seconds": {"type": "number"}, "revision": {"type": "integer"}}},
 "RebuildAccepted": {"type": "object", "properties": {"projection": {"type": "string"}, "status": {"type": "string"}}},
 "DeadLetterList": {"type": "object", "properties": {"dead_letters": {"type": "array", "items": {"type": "object"}}}},
 "ReplayResult": {"type": "object", "properties": {"id": {"type": "integer"}, "replayed": {"type": "boolean"}, "consumer": {"type": "string"}}},
 "TokenInput": {"type": "object", "required": ["sub"], "properties": {"sub": {"type": "string"}, "admin": {"type": "boolean"}}},
 "Token": {"type": "object", "properties": {"token": {"type": "string"}, "token_type": {"type": "string"}, "expires_in": {"type": "integer"}}}
})json";

/// OpenAPI's path template is ours already ("/books/{book_id}").
json::array path_parameters(std::string_view pattern) {
  json::array out;
  std::size_t at = 0;
  while ((at = pattern.find('{', at)) != std::string_view::npos) {
    auto end = pattern.find('}', at);
    out.push_back(json::object{{"name", std::string(pattern.substr(at + 1, end - at - 1))},
                               {"in", "path"},
                               {"required", true},
                               {"schema", json::object{{"type", "string"}}}});
    at = end;
  }
  return out;
}

std::string lower(std::string s) {
  for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

std::string operation_id(const route& r) {
  std::string id = lower(r.method);
  bool upper_next = true;
  for (char ch : r.pattern.substr(r.pattern.starts_with("/api/v1") ? 7 : 0)) {
    if (ch == '/' || ch == '{' || ch == '}' || ch == '-' || ch == '_' || ch == '.') {
      upper_next = true;
      continue;
    }
    id += upper_next ? static_cast<char>(std::toupper(static_cast<unsigned char>(ch))) : ch;
    upper_next = false;
  }
  return id;
}

}  // namespace

std::string build_openapi(const std::vector<route>& routes) {
  json::object paths;
  for (const auto& r : routes) {
    json::object op;
    op["operationId"] = operation_id(r);
    op["summary"] = r.doc.summary;
    op["tags"] = json::array{json::string(r.doc.tag)};
    auto parameters = path_parameters(r.pattern);
    for (const auto& p : r.doc.parameters)
      parameters.push_back(json::object{{"name", p.name},
                                        {"in", p.in},
                                        {"required", p.required},
                                        {"description", p.description},
                                        {"schema", json::object{{"type", p.type}}}});
    if (!parameters.empty()) op["parameters"] = std::move(parameters);
    if (!r.doc.request_schema.empty())
      op["requestBody"] = json::object{
          {"required", true},
          {"content",
           json::object{
               {"application/json",
                json::object{{"schema", json::object{{"$ref", "#/components/schemas/" +
                                                                  r.doc.request_schema}}}}}}}};
    json::object responses;
    for (int status : r.doc.statuses) {
      json::object resp{{"description", std::string(status_title(status))}};
      if (status < 300 && !r.doc.response_schema.empty())
        resp["content"] = json::object{
            {r.doc.response_type,
             json::object{{"schema", json::object{{"$ref", "#/components/schemas/" +
                                                               r.doc.response_schema}}}}}};
      else if (status < 300 && r.doc.response_type != "application/json")
        resp["content"] = json::object{
            {r.doc.response_type, json::object{{"schema", json::object{{"type", "string"}}}}}};
      else if (status < 300)
        resp["content"] = json::object{
            {"application/json", json::object{{"schema", json::object{{"type", "object"}}}}}};
      else
        resp["content"] = json::object{
            {"application/problem+json",
             json::object{{"schema", json::object{{"$ref", "#/components/schemas/Problem"}}}}}};
      responses[std::to_string(status)] = std::move(resp);
    }
    op["responses"] = std::move(responses);
    if (r.allowed != access::open)
      op["security"] = json::array{json::object{{"bearer", json::array{}}}};
    auto& item = paths[r.pattern];
    if (!item.is_object()) item = json::object{};
    item.as_object()[lower(r.method)] = std::move(op);
  }
  json::object doc{
      {"openapi", "3.0.3"},
      {"info",
       json::object{{"title", "Troupe bookstore API"},
                    {"version", "1.0.0"},
                    {"description",
                     "Commands answer once their events are durable (ETag = stream version, "
                     "x-troupe-position = global position). Errors are application/problem+json. "
                     "x-request-id makes a command idempotent."}}},
      {"paths", std::move(paths)},
      {"components",
       json::object{
           {"schemas", json::parse(schemas_text)},
           {"securitySchemes", json::object{{"bearer", json::object{{"type", "http"},
                                                                    {"scheme", "bearer"},
                                                                    {"bearerFormat", "JWT"}}}}}}}};
  return json::serialize(doc);
}

}  // namespace troupe::http
