// Operations routes: health, readiness, metrics, the OpenAPI document, the
// event catalog, a stream's history, projections (status, rebuild) and dead
// letters (list, replay), and dev-mode tokens.

#include <pqxx/pqxx>
#include <thread>

#include "actors/bookstore.hpp"
#include "actors/event_catalog.hpp"
#include "actors/projections.hpp"
#include "http/api_impl.hpp"
#include "persistence/postgres/view_store.hpp"
#include "runtime/command_codec.hpp"
#include "runtime/logging.hpp"
#include "runtime/node.hpp"
#include "runtime/projector.hpp"

namespace troupe::http {

namespace json = boost::json;

namespace {

json::object event_json(const recorded_event& e) {
  boost::system::error_code ec;
  auto data = json::parse(e.data, ec);
  return json::object{{"position", e.position.value},
                      {"stream_version", e.version.value},
                      {"event_id", e.event_id},
                      {"type", e.type},
                      {"schema_version", e.schema_version},
                      {"data", ec ? json::value(e.data) : data},
                      {"command_id", e.metadata.command_id},
                      {"correlation_id", e.metadata.correlation_id},
                      {"causation_id", e.metadata.causation_id}};
}

json::object dead_letter_json(const postgres::dead_letter& d) {
  auto o = event_json(d.event);
  o["stream_id"] = d.event.stream_id;
  return json::object{
      {"id", d.id},
      {"consumer", d.consumer},
      {"error", d.error},
      {"attempts", d.attempts},
      {"parked_at", d.parked_at},
      {"replayed_at", d.replayed_at.empty() ? json::value(nullptr) : json::value(d.replayed_at)},
      {"event", std::move(o)}};
}

}  // namespace

void bookstore_api::impl::add_operations_routes() {
  routes.add(
      route{"GET", "/healthz", access::open,
            route_doc{"Liveness: the process answers", "operations", {}, {}, "Health", {200}},
            [](call_ptr c) {
              c->reply(json_response(200, json::object{{"status", "ok"}}));
            }});
  routes.add(
      route{"GET", "/readyz", access::open,
            route_doc{"Readiness: the event store and the event bus are reachable",
                      "operations",
                      {},
                      {},
                      "Health",
                      {200, 503}},
            [this](call_ptr c) {
              bool bus = !parts.bus_ready || parts.bus_ready();
              bool queued = queries.submit(
                  [c, bus](pqxx::connection_base& conn) {
                    pqxx::read_transaction tx(conn);
                    tx.exec1("SELECT 1");
                    tx.commit();
                    json::object body{{"status", bus ? "ready" : "not ready"},
                                      {"store", "ok"},
                                      {"bus", bus ? "ok" : "unreachable"}};
                    c->reply(json_response(bus ? 200 : 503, body));
                  },
                  [c, bus](const std::string&) {
                    c->reply(json_response(503, json::object{{"status", "not ready"},
                                                             {"store", "unreachable"},
                                                             {"bus", bus ? "ok" : "unreachable"}}));
                  });
              if (!queued)
                c->reply(problem(503, "overloaded", "too many requests are waiting; retry later"));
            }});
  routes.add(route{"GET", "/metrics", access::open,
                   route_doc{"Prometheus metrics (text exposition format)",
                             "operations",
                             {},
                             {},
                             {},
                             {200},
                             "text/plain"},
                   [this](call_ptr c) {
                     response r;
                     r.content_type = "text/plain; version=0.0.4";
                     r.body = metrics.text();
                     if (parts.runtime_metrics) r.body += parts.runtime_metrics();
                     c->reply(std::move(r));
                   }});
  auto openapi_route = [this](call_ptr c) {
    response r;
    r.body = openapi_text;
    c->reply(std::move(r));
  };
  routes.add(route{"GET", "/openapi.json", access::open,
                   route_doc{"This API's OpenAPI 3.0 document", "operations", {}, {}, {}, {200}},
                   openapi_route});
  routes.add(route{"GET", "/api/v1/event-catalog", access::open,
                   route_doc{"Every event type: schema version, producer, consumers",
                             "operations",
                             {},
                             {},
                             "EventCatalog",
                             {200}},
                   [](call_ptr c) {
                     response r;
                     r.body = bookstore::event_catalog_json();
                     c->reply(std::move(r));
                   }});
  routes.add(route{
      "GET", "/api/v1/streams/{stream_id}/events", access::admin,
      route_doc{"A stream's event history (audit)",
                "operations",
                {{"from_version", "query", "integer", "first stream version (default 1)"},
                 {"limit", "query", "integer", "at most this many events, 1-1000 (default 100)"}},
                {},
                "EventPage",
                {200, 400, 401, 403, 404, 503}},
      [this](call_ptr c) {
        auto stream = c->param("stream_id");
        if (auto bad = validate_stream_id(stream))
          return c->reply(problem(400, "invalid-stream-id", *bad));
        std::optional<std::int64_t> from, limit;
        if (!int_param(c, "from_version", from) || !int_param(c, "limit", limit)) return;
        if (from.value_or(1) < 1 || limit.value_or(100) < 1 || limit.value_or(100) > 1000)
          return c->reply(problem(400, "invalid-parameter",
                                  "from_version must be 1 or more and limit 1 to 1000"));
        parts.store->read_stream(
            stream, stream_version{from.value_or(1)}, static_cast<std::size_t>(limit.value_or(100)),
            [c, stream](read_result r) {
              if (r.error != store_errc::ok)
                return c->reply(problem(503, "store-unavailable", "the stream could not be read"));
              json::array events;
              for (const auto& e : r.events) events.push_back(event_json(e));
              c->reply(json_response(
                  200, json::object{{"stream_id", stream}, {"events", std::move(events)}}));
            });
      }});
  routes.add(route{"GET", "/api/v1/projections", access::admin,
                   route_doc{"Each projection's position, lag and health",
                             "operations",
                             {},
                             {},
                             "ProjectionList",
                             {200, 401, 403}},
                   [this](call_ptr c) {
                     json::array list;
                     std::string rebuilding_now;
                     if (rebuilding) {
                       std::lock_guard lock{cache_mutex};
                       rebuilding_now = rebuilding_name;
                     }
                     for (auto* p : parts.projectors) {
                       auto s = p->status();
                       list.push_back(json::object{{"name", s.name},
                                                   {"running", s.running},
                                                   {"standby", s.standby},
                                                   {"position", s.position},
                                                   {"events_applied", s.events_applied},
                                                   {"dead_letters", s.dead_letters},
                                                   {"consumer_lag", s.consumer_lag},
                                                   {"lag_seconds", s.lag_seconds},
                                                   {"stalled", s.stalled},
                                                   {"rebuilding", rebuilding_now == s.name}});
                     }
                     c->reply(json_response(200, json::object{{"projections", std::move(list)}}));
                   }});
  routes.add(route{"GET", "/api/v1/cluster", access::admin,
                   route_doc{"The cluster as this node sees it: nodes, shard owners and lease "
                             "ages, who runs the publisher, each projection and each saga",
                             "operations",
                             {},
                             {},
                             "ClusterStatus",
                             {200, 401, 403, 404}},
                   [this](call_ptr c) {
                     if (!parts.cluster_status)
                       return c->reply(problem(404, "not-clustered",
                                               "this node runs alone (cluster.enabled is false)"));
                     response r;
                     r.body = parts.cluster_status();
                     c->reply(std::move(r));
                   }});
  routes.add(route{
      "POST", "/api/v1/projections/{name}/rebuild", access::admin,
      route_doc{"Rebuild a projection in the background (shadow tables, then swap); one at a time",
                "operations",
                {},
                {},
                "RebuildAccepted",
                {202, 401, 403, 404, 409}},
      [this](call_ptr c) {
        auto name = c->param("name");
        std::optional<projection_definition> def;
        for (auto& d : bookstore::bookstore_projections())
          if (d.name == name) def = std::move(d);
        if (!def) return c->reply(problem(404, "not-found", "no projection '" + name + "'"));
        bool expected = false;
        if (!rebuilding.compare_exchange_strong(expected, true))
          return c->reply(problem(409, "rebuild-running", "a rebuild is already running"));
        {
          std::lock_guard lock{cache_mutex};
          rebuilding_name = name;
        }
        if (rebuild_thread.joinable()) rebuild_thread.join();
        rebuild_thread = std::thread([this, def = std::move(*def)] {
          try {
            rebuild_options o;
            o.postgres_url = options.postgres_url;
            o.log = logger("rebuild");
            auto report = rebuild_projection(def, *parts.store, o);
            logger("http")->info("rebuild of {} done: {} events, swapped at {}", def.name,
                                 report.events, report.position);
          } catch (const std::exception& e) {
            logger("http")->error("rebuild of {} failed: {}", def.name, e.what());
          }
          rebuilding = false;
        });
        auto res = json_response(202, json::object{{"projection", name}, {"status", "rebuilding"}});
        res.headers.push_back({"location", "/api/v1/projections"});
        c->reply(std::move(res));
      }});
  routes.add(route{
      "GET", "/api/v1/dead-letters", access::admin,
      route_doc{
          "Events consumers could not process, oldest first",
          "operations",
          {{"consumer", "query", "string", "only this consumer's (projection:NAME, saga:NAME)"},
           {"limit", "query", "integer", "at most this many, 1-1000 (default 100)"}},
          {},
          "DeadLetterList",
          {200, 400, 401, 403, 503}},
      [this](call_ptr c) {
        std::optional<std::int64_t> limit;
        if (!int_param(c, "limit", limit)) return;
        if (limit.value_or(100) < 1 || limit.value_or(100) > 1000)
          return c->reply(problem(400, "invalid-parameter", "limit must be 1 to 1000"));
        auto consumer = c->req.query_param("consumer").value_or("");
        auto url = options.postgres_url;
        bool queued = queries.submit(
            [c, url, consumer, limit](pqxx::connection_base&) {
              postgres::view_store vs(url);
              json::array list;
              for (const auto& d :
                   vs.dead_letters(consumer, static_cast<std::size_t>(limit.value_or(100))))
                list.push_back(dead_letter_json(d));
              c->reply(json_response(200, json::object{{"dead_letters", std::move(list)}}));
            },
            [c](const std::string&) {
              c->reply(problem(503, "store-unavailable", "dead letters could not be read"));
            });
        if (!queued) c->reply(problem(503, "overloaded", "too many requests are waiting"));
      }});
  routes.add(route{
      "POST", "/api/v1/dead-letters/{id}/replay", access::admin,
      route_doc{"Apply a dead letter again (a projection's event, or a saga's given-up command)",
                "operations",
                {},
                {},
                "ReplayResult",
                {200, 400, 401, 403, 404, 409, 422, 503}},
      [this](call_ptr c) {
        std::int64_t id = 0;
        auto text = c->param("id");
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
        if (ec != std::errc{} || end != text.data() + text.size() || id < 1)
          return c->reply(
              problem(400, "invalid-parameter", "the dead letter id is a positive integer"));
        auto url = options.postgres_url;
        bool queued = queries.submit(
            [this, c, url, id](pqxx::connection_base&) {
              postgres::view_store vs(url);
              auto letter = vs.dead_letter_by_id(id);
              if (!letter)
                return c->reply(problem(404, "not-found", "no dead letter " + std::to_string(id)));
              if (!letter->replayed_at.empty())
                return c->reply(problem(409, "already-replayed",
                                        "dead letter " + std::to_string(id) + " was replayed at " +
                                            letter->replayed_at));
              if (letter->consumer.starts_with("projection:")) {
                auto name = letter->consumer.substr(11);
                for (const auto& def : bookstore::bookstore_projections())
                  if (def.name == name) {
                    try {
                      replay_dead_letter(def, url, id);
                    } catch (const std::exception& e) {
                      return c->reply(problem(422, "replay-failed", e.what()));
                    }
                    return c->reply(json_response(
                        200, json::object{
                                 {"id", id}, {"replayed", true}, {"consumer", letter->consumer}}));
                  }
                return c->reply(problem(422, "unknown-consumer", "projection not in this build"));
              }
              if (!letter->consumer.starts_with("saga:"))
                return c->reply(problem(422, "unknown-consumer",
                                        letter->consumer + " cannot be replayed by this build"));
              auto payload = decode_command<bookstore::bookstore_aggregates>(letter->event.type,
                                                                             letter->event.data);
              if (!payload) return c->reply(problem(422, "replay-failed", payload.error()));
              command_envelope env;
              env.stream_id = letter->event.stream_id;
              env.payload = std::move(*payload);
              env.command_id = letter->event.event_id + "/replay";
              env.correlation_id = letter->event.metadata.correlation_id;
              auto consumer = letter->consumer;
              parts.commands->submit(std::move(env), [this, c, id, consumer,
                                                      url](command_result r) {
                if (!r.ok())
                  return c->reply(
                      problem(422, "replay-failed",
                              std::string(to_string(r.status)) + ": " + r.reason.message));
                // Marking is blocking I/O: back to the pool.
                bool marked = queries.submit(
                    [c, id, consumer, url](pqxx::connection_base&) {
                      postgres::view_store vs(url);
                      vs.mark_replayed(id);
                      c->reply(json_response(
                          200,
                          json::object{{"id", id}, {"replayed", true}, {"consumer", consumer}}));
                    },
                    [c](const std::string& reason) {
                      c->reply(
                          problem(503, "store-unavailable", "replayed, but not marked: " + reason));
                    });
                if (!marked)
                  c->reply(problem(503, "overloaded", "replayed, but not marked; retry"));
              });
            },
            [c](const std::string& reason) {
              c->reply(problem(503, "store-unavailable", reason));
            });
        if (!queued) c->reply(problem(503, "overloaded", "too many requests are waiting"));
      }});
  if (auth.issues_tokens())
    routes.add(route{"POST", "/api/v1/dev/tokens", access::open,
                     route_doc{"Development mode only: issue a bearer token for a subject",
                               "operations",
                               {},
                               "TokenInput",
                               "Token",
                               {201, 400, 415}},
                     [this](call_ptr c) {
                       auto body = body_object(c);
                       if (!body) return;
                       const auto* sub = body->if_contains("sub");
                       if (sub == nullptr || !sub->is_string() || sub->as_string().empty())
                         return c->reply(problem(400, "invalid-field", "the token needs a subject",
                                                 {{"sub", "is required (a non-empty string)"}}));
                       bool admin = false;
                       if (const auto* a = body->if_contains("admin")) {
                         if (!a->is_bool())
                           return c->reply(problem(400, "invalid-field", "admin must be a boolean",
                                                   {{"admin", "must be true or false"}}));
                         admin = a->as_bool();
                       }
                       auto token = auth.issue(std::string(sub->as_string()), admin, 24 * 3600);
                       c->reply(json_response(201, json::object{{"token", token},
                                                                {"token_type", "Bearer"},
                                                                {"expires_in", 24 * 3600}}));
                     }});
}

}  // namespace troupe::http
