#pragma once
// Inside the HTTP API: shared by api.cpp (request flow, commands, queries,
// idempotency) and the route files. Not for use outside http/.

#include <atomic>
#include <boost/json.hpp>
#include <charconv>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include "http/api.hpp"
#include "http/auth.hpp"
#include "http/json_input.hpp"
#include "http/metrics.hpp"
#include "http/problem.hpp"
#include "http/query_pool.hpp"
#include "runtime/aggregate_host.hpp"
#include "runtime/command.hpp"
#include "runtime/state_reader.hpp"

namespace troupe::http {

/// How a command's success is answered.
struct command_reply {
  int status = 200;
  /// The resource to return; "version" and "position" are added.
  std::function<boost::json::object(const command_result&)> body;
  std::string location = {};
};

/// A first outcome remembered for an x-request-id.
struct stored_outcome {
  std::string fingerprint;
  response answer;
};

struct bookstore_api::impl {
  impl(api_parts parts, api_options options);

  api_parts parts;
  api_options options;
  router routes;
  authenticator auth;
  query_pool queries;
  api_metrics metrics;
  // Shared: reads in flight (a long poll's wake, a live read's answer) keep
  // theirs, whatever happens to this API meanwhile.
  std::map<std::string, std::shared_ptr<const aggregate_type>, std::less<>> aggregate_types;
  std::map<std::string, projector*, std::less<>> views;  // by projection name

  std::atomic<std::int64_t> commands_in_flight{0};
  std::atomic<std::int64_t> commands_shed{0};
  std::atomic<std::int64_t> replays{0};
  std::atomic<std::int64_t> queries_shed{0};
  /// The longest a single-resource GET may wait (wait_ms).
  static constexpr std::int64_t max_wait_ms = 30'000;

  // ---- request flow (api.cpp) ----
  void handle(request&& r, responder reply);
  /// Looks the request id up, replays a first outcome or runs the route and
  /// stores what it answers.
  void run_idempotent(const route& target, call_ptr c, std::string request_id);

  // ---- building blocks for routes ----
  /// The body as a JSON object; answers 415/400 and returns nullopt if not.
  std::optional<boost::json::object> body_object(const call_ptr& c);
  /// Decodes a command from `json`; answers 400 naming the fields if not.
  template <class T>
  std::optional<T> decode(const call_ptr& c, const boost::json::value& json) {
    auto v = decode_json<T>(json);
    if (!v) {
      c->reply(problem(400, "invalid-field", "the request body has invalid fields", v.error()));
      return std::nullopt;
    }
    return std::move(*v);
  }
  /// Sends a command (If-Match and x-request-id applied) and answers when its
  /// events are durable, or with the problem it met.
  void run_command(const call_ptr& c, command_envelope env, command_reply how);
  /// Runs a view query on the pool after waiting (bounded) for `projection`
  /// to reach the client's x-troupe-min-position.
  /// `shareable`: the answer depends only on the target (public data), so
  /// it may be served to others for options.query_cache.
  void run_query(const call_ptr& c, std::string projection,
                 std::function<response(pqxx::connection_base&)> query, bool shareable = false);
  /// Answers with an aggregate's current state, shown by `present`
  /// (nullopt = 404), with its version as ETag.
  void get_state(
      const call_ptr& c, std::string_view category, const std::string& id,
      std::function<std::optional<boost::json::object>(const boost::json::object&)> present);
  /// Reads an aggregate's state and passes it on (nullopt state when the
  /// stream is empty); answers 503 itself when the store fails.
  /// With `may_wait`, the caller's `after_version` and `wait_ms` make it a
  /// long poll: the read is answered once the stream passes after_version,
  /// or after wait_ms with what it has then.
  void with_state(const call_ptr& c, std::string_view category, const std::string& id,
                  std::function<void(const boost::json::object* state, stream_version)> next,
                  bool may_wait = false);
  /// An aggregate's committed state: from its actor when it is live on
  /// this node (no store read), else from the store. Static: it may run
  /// after this API is gone (a long poll woken when the node stops).
  static void read_current(node* commands, std::shared_ptr<event_store> store,
                           std::shared_ptr<const aggregate_type> type, std::string stream,
                           std::function<void(state_read)> answer);
  /// Paging parameters (page >= 1, 1 <= page_size <= 100); answers 400 if bad.
  std::optional<std::pair<std::int64_t, std::int64_t>> paging(const call_ptr& c);
  /// An integer query parameter; answers 400 if present and not an integer.
  bool int_param(const call_ptr& c, std::string_view name, std::optional<std::int64_t>& out);

  /// A book's price as orders quote it (discount first), cached briefly;
  /// no price when the book is not in the catalog; `failed` when the store
  /// could not be read. Never replies itself.
  struct price_quote {
    std::optional<std::int64_t> cents;
    bool failed = false;
  };
  void quote_price(const std::string& book_id, std::function<void(price_quote)> next);

  /// Deletes outcomes past their retention (rate-limited; on a pool worker).
  void prune_outcomes(pqxx::connection_base& conn);
  std::atomic<std::int64_t> next_prune_ms{0};

  /// "<subject>:<x-request-id>", or empty without a request id.
  std::string idempotency_key(const call_ptr& c) const;
  /// A new resource id; derived from the request id when there is one, so
  /// a retried create reaches the same resource.
  std::string id_for(const call_ptr& c, std::string_view purpose) const;

  /// The highest global position this node has seen (answers, views).
  std::atomic<std::int64_t> max_position_seen{0};
  void note_position(std::int64_t p) {
    auto seen = max_position_seen.load();
    while (p > seen && !max_position_seen.compare_exchange_weak(seen, p)) {
    }
  }

  // ---- idempotency storage (api.cpp) ----
  std::optional<stored_outcome> cached_outcome(const std::string& id);
  void remember_outcome(const std::string& id, stored_outcome outcome);

  std::mutex cache_mutex;
  std::unordered_map<std::string, stored_outcome> outcome_cache;
  std::deque<std::string> outcome_order;  // eviction order
  std::size_t outcome_bytes = 0;
  struct price {
    std::int64_t cents;
    std::chrono::steady_clock::time_point expires;
  };
  std::unordered_map<std::string, price> price_cache;

  struct cached_query {
    response answer;
    std::int64_t position;  // the view had folded at least this much
    std::chrono::steady_clock::time_point at;
  };
  std::mutex query_cache_mutex;
  std::unordered_map<std::string, cached_query> query_cache;
  std::size_t query_cache_bytes = 0;
  /// Queries running for a target, with the calls waiting for their answer.
  std::unordered_map<std::string, std::vector<call_ptr>> pending_queries;

  std::string openapi_text;  // generated once the routes are in
  std::atomic<bool> rebuilding{false};
  std::string rebuilding_name;  // under cache_mutex
  std::thread rebuild_thread;

  // ---- routes (bookstore_routes.cpp, ops_routes.cpp) ----
  void add_catalog_routes();
  void add_shopping_routes();
  void add_operations_routes();
};

/// The OpenAPI 3.0 document for these routes.
std::string build_openapi(const std::vector<route>& routes);

/// JSON text of a response body with ETag and position headers.
response json_response(int status, const boost::json::value& body);
/// The `<category>-<id>` stream id.
std::string stream_of(std::string_view category, std::string_view id);
/// Milliseconds since the epoch (the API's clock for command timestamps).
std::int64_t now_ms();

}  // namespace troupe::http
