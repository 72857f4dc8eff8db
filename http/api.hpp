#pragma once
// The bookstore's HTTP API (JSON under /api/v1): routes, problem+json
// errors, idempotent commands, read-your-writes queries, auth, metrics and
// the OpenAPI document generated from the route table.
//
// Commands go to the node asynchronously and are answered when their events
// are durable (from the runtime thread that learns it); queries run on a
// small pool of PostgreSQL connections. io threads never block.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "http/router.hpp"
#include "http/server.hpp"
#include "persistence/event_store.hpp"

namespace troupe {
class node;
class projector;
}  // namespace troupe

namespace troupe::http {

struct auth_options {
  /// off: no checks (every caller is an admin); dev: HS256 with `secret`
  /// and POST /api/v1/dev/tokens issues tokens; hs256 / rs256: verify only.
  std::string mode = "off";
  std::string secret;          // HS256 key (dev, hs256)
  std::string public_key_pem;  // RS256 public key (rs256)
  std::string issuer;          // required `iss` when not empty
  std::string audience;        // required `aud` when not empty
  std::string admin_role = "admin";
};

struct api_options {
  std::string postgres_url;
  int query_threads = 2;
  std::size_t max_queued_queries = 2000;
  /// Commands accepted from HTTP and not yet answered; beyond it: 503.
  std::int64_t max_in_flight_commands = 5000;
  /// Longest a query waits for its view to reach a client's position.
  std::chrono::milliseconds consistency_wait{5000};
  /// How long an order placement may quote a book's price from cache.
  std::chrono::milliseconds price_cache{5000};
  /// How long a public catalog query's answer is reused (0 = never).
  std::chrono::milliseconds query_cache{250};
  /// How long x-request-id outcomes are kept in PostgreSQL.
  std::chrono::seconds request_id_retention{24 * 3600};
  /// x-request-id outcomes remembered in memory (all are stored in PG).
  std::size_t idempotency_cache = 100'000;
  auth_options auth;
};

/// What the API needs from the node's other parts.
struct api_parts {
  node* commands = nullptr;
  std::shared_ptr<event_store> store;
  std::vector<projector*> projectors;
  /// Readiness of the event bus (publisher connected); empty = not used.
  std::function<bool()> bus_ready;
  /// The cluster's status as JSON; empty = not clustered.
  std::function<std::string()> cluster_status;
  /// Extra Prometheus text appended to /metrics (runtime counters).
  std::function<std::string()> runtime_metrics;
};

struct api_stats {
  std::int64_t commands_in_flight = 0;
  std::int64_t commands_shed = 0;
  std::int64_t idempotent_replays = 0;
  std::int64_t queries_shed = 0;
};

class bookstore_api {
 public:
  bookstore_api(api_parts parts, api_options options);
  ~bookstore_api();
  bookstore_api(const bookstore_api&) = delete;
  bookstore_api& operator=(const bookstore_api&) = delete;

  /// The server's request handler.
  void handle(request&& r, responder reply);
  /// Every route served, with its documentation.
  const std::vector<route>& routes() const;
  /// The OpenAPI 3.0 document, generated from routes().
  std::string openapi() const;
  /// A bearer token for `subject` (dev mode only; empty otherwise).
  std::string issue_dev_token(const std::string& subject, bool admin) const;

  api_stats stats() const;
  /// Finishes queued queries and stops the query pool.
  void stop();

  struct impl;  // http/api_impl.hpp, for the route files

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe::http
