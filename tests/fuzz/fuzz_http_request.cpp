// libFuzzer target: the HTTP request path up to a handler - Beast's parser
// with the server's limits, the request as the server builds it, the
// router (the API's real route patterns) and the query and path decoding.

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <variant>

#include "http/router.hpp"

namespace {

troupe::http::router make_router() {
  troupe::http::router r;
  for (const char* pattern :
       {"/api/v1/books", "/api/v1/books/{book_id}", "/api/v1/books/{book_id}/stock",
        "/api/v1/books/{book_id}/feedbacks", "/api/v1/baskets/{buyer_id}",
        "/api/v1/baskets/{buyer_id}/items/{book_id}", "/api/v1/orders", "/api/v1/orders/{order_id}",
        "/api/v1/orders/{order_id}/cancel", "/api/v1/streams/{stream_id}/events",
        "/api/v1/dead-letters/{id}/replay", "/healthz"})
    for (const char* method : {"GET", "POST", "PUT"})
      r.add(troupe::http::route{method, pattern, troupe::http::access::open, {}, {}});
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto router = make_router();
  namespace bhttp = boost::beast::http;
  bhttp::request_parser<bhttp::string_body> parser;
  parser.body_limit(1 << 16);
  parser.header_limit(16 << 10);
  parser.eager(true);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (ec || !parser.is_header_done()) return 0;
  const auto& message = parser.get();
  troupe::http::request r;
  r.method = std::string(message.method_string());
  r.target = std::string(message.target());
  auto q = r.target.find('?');
  r.path = r.target.substr(0, q);
  if (q != std::string::npos) r.query = r.target.substr(q + 1);
  for (const auto& field : message)
    r.headers.push_back({std::string(field.name_string()), std::string(field.value())});
  auto found = router.find(r);
  if (auto* m = std::get_if<troupe::http::router::match>(&found)) {
    if (m->found == nullptr) __builtin_trap();
    for (const auto& [name, value] : m->params)
      if (name.empty()) __builtin_trap();
  } else if (std::get<troupe::http::response>(found).status < 400) {
    __builtin_trap();  // no match must be an error answer
  }
  (void)r.query_param("page");
  (void)r.query_param("name");
  (void)r.header("authorization");
  return 0;
}
