#pragma once
// The HTTP/1.1 server: Boost.Beast underneath, kept out of this header so the
// API code and tests compile without it.
//
// One io thread (and io_context) per core by default; connections are spread
// over them at accept. A request is read in full (bounded header and body),
// handed to the handler, and the connection waits for the handler's single
// `responder` call, which may come from any thread (a runtime thread when a
// command becomes durable). io threads never wait on anything else.
//
//   troupe::http::server s(options, [](request&& r, responder reply) {
//     reply(response{200, "text/plain", "hello"});
//   });
//   s.start();
//   ...
//   s.shutdown(std::chrono::seconds{30});  // stop accepting, finish in-flight

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::http {

struct header_field {
  std::string name;  // lower case
  std::string value;
};

struct request {
  std::string method;  // upper case, as sent
  std::string target;  // as sent: path and query
  std::string path;    // target before '?', not decoded
  std::string query;   // target after '?', not decoded
  std::vector<header_field> headers;
  std::string body;
  bool keep_alive = true;

  /// The first header of that name (give it lower case); empty when absent.
  std::string_view header(std::string_view lower_name) const;
  bool has_header(std::string_view lower_name) const;
  /// The percent-decoded value of a query parameter, if present.
  std::optional<std::string> query_param(std::string_view name) const;
};

struct response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<header_field> headers = {};
  /// False when a retry may well succeed (a concurrent-change conflict):
  /// such answers are not stored as a request id's first outcome.
  bool final_outcome = true;
};

/// Sends the response to one request. Call it exactly once, from any thread;
/// it only queues the write on the connection's io thread.
using responder = std::function<void(response)>;
/// Handles one request; must not block (it runs on an io thread).
using handler = std::function<void(request&&, responder)>;

struct server_options {
  std::string address = "127.0.0.1";
  std::uint16_t port = 8080;  // 0 = any free port (see server::port)
  int io_threads = 0;         // 0 = one per core
  std::size_t max_body_bytes = 1 << 20;
  std::size_t max_header_bytes = 16 << 10;
  /// A request must arrive in full within this time once it has started.
  std::chrono::milliseconds read_timeout{30'000};
  /// A keep-alive connection with no request for this long is closed.
  std::chrono::milliseconds idle_timeout{60'000};
  std::chrono::milliseconds write_timeout{30'000};
  /// A request not answered within this time gets 504 (its outcome unknown).
  std::chrono::milliseconds request_timeout{60'000};
  /// Connections beyond this are answered 503 and closed at once.
  std::size_t max_connections = 10'000;
};

struct server_stats {
  std::int64_t connections_open = 0;
  std::int64_t connections_accepted = 0;
  std::int64_t connections_refused = 0;  // over max_connections
  std::int64_t requests = 0;
  std::int64_t requests_in_flight = 0;  // handed to the handler, not yet written
  std::int64_t malformed_requests = 0;  // unparseable, oversized, timed out mid-request
};

class server {
 public:
  server(server_options options, handler on_request);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Binds and starts the io threads. Throws std::runtime_error when the
  /// address cannot be bound.
  void start();
  /// The bound port (the real one when options.port was 0).
  std::uint16_t port() const;

  /// Graceful stop: closes the listener, answers the requests in flight
  /// (their connections then close), closes idle keep-alive connections, and
  /// joins the io threads. Returns false when requests were still in flight
  /// at the deadline (their connections are closed unanswered). Idempotent.
  bool shutdown(std::chrono::milliseconds timeout);

  server_stats stats() const;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

/// Decodes %XX escapes (and '+' as space when `plus_is_space`). Invalid
/// escapes are kept as they are.
std::string percent_decode(std::string_view text, bool plus_is_space);

}  // namespace troupe::http
