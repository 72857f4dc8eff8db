// The request flow of the HTTP API: routing, authentication, idempotency,
// and the building blocks every route uses (commands, queries, state reads).

#include <pqxx/pqxx>

#include "actors/bookstore.hpp"
#include "http/api_impl.hpp"
#include "runtime/commit_watch.hpp"
#include "runtime/logging.hpp"
#include "runtime/node.hpp"
#include "runtime/projector.hpp"
#include "runtime/state_reader.hpp"
#include "runtime/uuid.hpp"

namespace troupe::http {

namespace json = boost::json;

response json_response(int status, const json::value& body) {
  response r;
  r.status = status;
  r.body = json::serialize(body);
  return r;
}

std::string stream_of(std::string_view category, std::string_view id) {
  std::string s(category);
  s += '-';
  s += id;
  return s;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

namespace {

bool is_command_method(std::string_view m) {
  return m == "POST" || m == "PUT" || m == "PATCH" || m == "DELETE";
}

/// FNV-1a: a stable hash (std::hash is not promised to be) for request
/// fingerprints that outlive the process.
std::string fnv1a_hex(std::string_view text) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char ch : text) {
    h ^= ch;
    h *= 1099511628211ULL;
  }
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return out;
}

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 200) return false;
  return std::all_of(id.begin(), id.end(), [](unsigned char ch) { return ch > 32 && ch < 127; });
}

/// Rejection codes that say the resource is missing or in the wrong state
/// (404/409); every other rejection breaks a domain rule (422).
int status_of_rejection(std::string_view code) {
  if (code == "not_found" || code.ends_with("_not_found")) return 404;
  if (code == "already_exists" || code.ends_with("_deleted") || code == "invalid_status")
    return 409;
  return 422;
}

std::string slug_of(std::string_view code) {
  std::string s(code);
  std::replace(s.begin(), s.end(), '_', '-');
  return s;
}

json::value headers_to_json(const std::vector<header_field>& headers) {
  json::array a;
  for (const auto& h : headers)
    a.push_back(json::array{json::string(h.name), json::string(h.value)});
  return a;
}

std::vector<header_field> headers_from_json(std::string_view text) {
  std::vector<header_field> out;
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_array()) return out;
  for (const auto& item : v.as_array()) {
    const auto* pair = item.if_array();
    if (pair == nullptr || pair->size() != 2 || !(*pair)[0].is_string() || !(*pair)[1].is_string())
      continue;
    out.push_back({std::string((*pair)[0].as_string()), std::string((*pair)[1].as_string())});
  }
  return out;
}

}  // namespace

bookstore_api::impl::impl(api_parts p, api_options o)
    : parts(std::move(p)),
      options(std::move(o)),
      auth(options.auth),
      queries(query_pool_options{options.postgres_url, options.query_threads,
                                 options.max_queued_queries}) {
  [this]<class... Ds>(std::tuple<Ds...>*) {
    (aggregate_types.emplace(std::string(Ds::category),
                             std::make_shared<const aggregate_type>(make_aggregate_type<Ds>())),
     ...);
  }(static_cast<bookstore::bookstore_aggregates*>(nullptr));
  // Projector names never change: look them up once, not per query.
  for (auto* p : parts.projectors) views.emplace(p->status().name, p);
  add_catalog_routes();
  add_shopping_routes();
  add_operations_routes();
  openapi_text = build_openapi(routes.routes());
}

void bookstore_api::impl::handle(request&& r, responder reply) {
  auto started = std::chrono::steady_clock::now();
  auto found = routes.find(r);
  if (auto* answer = std::get_if<response>(&found)) {
    // Any token is a method to Beast; labels must stay a bounded set.
    static constexpr std::string_view known[] = {"GET",   "HEAD",   "POST",   "PUT",
                                                 "PATCH", "DELETE", "OPTIONS"};
    bool standard = std::find(std::begin(known), std::end(known), r.method) != std::end(known);
    metrics.observe("(unmatched)", standard ? std::string_view(r.method) : "OTHER", answer->status,
                    0);
    return reply(std::move(*answer));
  }
  auto& m = std::get<router::match>(found);
  const route& target = *m.found;
  auto c = std::make_shared<call>();
  c->req = std::move(r);
  c->params = std::move(m.params);
  // Every answer is counted under its route pattern (bounded labels).
  c->reply = [this, reply = std::move(reply), pattern = &target.pattern, method = &target.method,
              started](response res) {
    auto seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    metrics.observe(*pattern, *method, res.status, seconds);
    reply(std::move(res));
  };
  try {
    auto who = auth.identify(c->req.header("authorization"));
    if (!who) {
      auto p = problem(401, "invalid-token", who.error());
      p.headers.push_back({"www-authenticate", "Bearer error=\"invalid_token\""});
      return c->reply(std::move(p));
    }
    c->who = std::move(*who);
    if (target.allowed != access::open && !c->who.authenticated) {
      auto p = problem(401, "unauthenticated", "this route needs a bearer token");
      p.headers.push_back({"www-authenticate", "Bearer"});
      return c->reply(std::move(p));
    }
    if (target.allowed == access::admin && !c->who.admin)
      return c->reply(problem(403, "forbidden", "this route needs the admin role"));
    if (is_command_method(c->req.method) && c->req.has_header("x-request-id")) {
      std::string id(c->req.header("x-request-id"));
      if (!valid_request_id(id))
        return c->reply(problem(400, "invalid-request-id",
                                "x-request-id must be 1 to 200 printable ASCII characters"));
      return run_idempotent(target, c, idempotency_key(c));
    }
    target.handle(c);
  } catch (const std::exception& e) {
    logger("http")->error("{} {} failed: {}", c->req.method, c->req.path, e.what());
    c->reply(problem(500, "internal-error", "the request could not be handled"));
  }
}

// ---- idempotency --------------------------------------------------------------

std::optional<stored_outcome> bookstore_api::impl::cached_outcome(const std::string& id) {
  std::lock_guard lock{cache_mutex};
  auto it = outcome_cache.find(id);
  if (it == outcome_cache.end()) return std::nullopt;
  return it->second;
}

void bookstore_api::impl::remember_outcome(const std::string& id, stored_outcome outcome) {
  std::lock_guard lock{cache_mutex};
  auto bytes = outcome.answer.body.size() + id.size();
  if (outcome_cache.emplace(id, std::move(outcome)).second) {
    outcome_order.push_back(id);
    outcome_bytes += bytes;
  }
  // Bounded by count and by bytes; the table in PostgreSQL keeps them all.
  while (!outcome_order.empty() &&
         (outcome_order.size() > options.idempotency_cache || outcome_bytes > 64u << 20)) {
    auto it = outcome_cache.find(outcome_order.front());
    if (it != outcome_cache.end()) {
      outcome_bytes -= it->second.answer.body.size() + it->first.size();
      outcome_cache.erase(it);
    }
    outcome_order.pop_front();
  }
}

void bookstore_api::impl::run_idempotent(const route& target, call_ptr c, std::string id) {
  // The caller is part of the request: another user's id never replays.
  auto fingerprint =
      c->req.method + " " + c->req.path + " " + c->who.subject + " " + fnv1a_hex(c->req.body);
  auto replay = [this, c, fingerprint](const stored_outcome& first) {
    if (first.fingerprint != fingerprint)
      return c->reply(
          problem(422, "request-id-reused", "this x-request-id was used for a different request"));
    ++replays;
    auto answer = first.answer;
    answer.headers.push_back({"x-idempotent-replay", "true"});
    c->reply(std::move(answer));
  };
  if (auto first = cached_outcome(id)) return replay(*first);

  auto run_route = [this, &target, c, id, fingerprint]() {
    // Store what the route answers before sending it, so a repeat - even
    // after a restart - gets the same. Transient failures are not stored:
    // retrying them is the point.
    auto send = c->reply;
    c->reply = [this, id, fingerprint, send](response res) {
      if (res.status >= 500 || res.status == 429 || !res.final_outcome) return send(std::move(res));
      stored_outcome mine{fingerprint, res};
      bool queued = queries.submit(
          [this, id, mine, send](pqxx::connection_base& conn) {
            pqxx::work tx(conn);
            auto inserted = tx.exec_params(
                "INSERT INTO troupe_http_requests (request_id, fingerprint, status, "
                "content_type, headers, body) VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (request_id) DO NOTHING RETURNING 1",
                id, mine.fingerprint, mine.answer.status, mine.answer.content_type,
                json::serialize(headers_to_json(mine.answer.headers)), mine.answer.body);
            stored_outcome winner = mine;
            if (inserted.empty()) {
              // A concurrent repeat stored first: everyone answers with its outcome.
              auto row = tx.exec_params1(
                  "SELECT fingerprint, status, content_type, headers, body FROM "
                  "troupe_http_requests WHERE request_id = $1",
                  id);
              winner.fingerprint = row[0].as<std::string>();
              winner.answer.status = row[1].as<int>();
              winner.answer.content_type = row[2].as<std::string>();
              winner.answer.headers = headers_from_json(row[3].as<std::string>());
              winner.answer.body = row[4].as<std::string>();
            }
            tx.commit();
            remember_outcome(id, winner);
            prune_outcomes(conn);
            if (winner.fingerprint != mine.fingerprint)
              return send(problem(422, "request-id-reused",
                                  "this x-request-id was used for a different request"));
            send(winner.answer);
          },
          [send, res](const std::string& reason) {
            // Not stored: the command's own id still makes a retry a
            // duplicate at the aggregate.
            logger("http")->warn("request outcome not stored: {}", reason);
            send(res);
          });
      if (!queued) send(std::move(res));
    };
    try {
      target.handle(c);
    } catch (const std::exception& e) {
      logger("http")->error("{} {} failed: {}", c->req.method, c->req.path, e.what());
      c->reply(problem(500, "internal-error", "the request could not be handled"));
    }
  };

  bool queued = queries.submit(
      [this, id, replay, run_route](pqxx::connection_base& conn) {
        pqxx::read_transaction tx(conn);
        auto rows = tx.exec_params(
            "SELECT fingerprint, status, content_type, headers, body FROM troupe_http_requests "
            "WHERE request_id = $1",
            id);
        tx.commit();
        if (rows.empty()) return run_route();
        stored_outcome first;
        first.fingerprint = rows[0][0].as<std::string>();
        first.answer.status = rows[0][1].as<int>();
        first.answer.content_type = rows[0][2].as<std::string>();
        first.answer.headers = headers_from_json(rows[0][3].as<std::string>());
        first.answer.body = rows[0][4].as<std::string>();
        remember_outcome(id, first);
        replay(first);
      },
      [c](const std::string&) {
        c->reply(problem(503, "store-unavailable",
                         "the request id could not be checked; retry with the same id"));
      });
  if (!queued) {
    ++queries_shed;
    c->reply(problem(503, "overloaded", "too many requests are waiting; retry later"));
  }
}

// ---- building blocks ------------------------------------------------------------

std::optional<json::object> bookstore_api::impl::body_object(const call_ptr& c) {
  auto type = c->req.header("content-type");
  auto semicolon = type.find(';');
  auto media = type.substr(0, semicolon);
  while (!media.empty() && media.back() == ' ') media.remove_suffix(1);
  std::string lower_media(media);
  for (auto& ch : lower_media) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (lower_media != "application/json") {
    c->reply(problem(415, "unsupported-media-type",
                     "the request body must be application/json" +
                         (type.empty() ? std::string() : ", not " + std::string(type))));
    return std::nullopt;
  }
  boost::system::error_code ec;
  json::parse_options opt;
  opt.max_depth = 32;
  auto v = json::parse(c->req.body, ec, {}, opt);
  if (ec) {
    c->reply(problem(400, "malformed-json", "the request body is not valid JSON: " + ec.message()));
    return std::nullopt;
  }
  if (!v.is_object()) {
    c->reply(problem(400, "malformed-json", "the request body must be a JSON object"));
    return std::nullopt;
  }
  return std::move(v.as_object());
}

void bookstore_api::impl::run_command(const call_ptr& c, command_envelope env, command_reply how) {
  bool conditional = false;
  if (auto if_match = c->req.header("if-match"); !if_match.empty()) {
    std::string_view v = if_match;
    if (v.starts_with("W/")) v.remove_prefix(2);
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    std::int64_t version = -1;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), version);
    if (ec != std::errc{} || end != v.data() + v.size() || version < 0)
      return c->reply(problem(400, "invalid-if-match",
                              "If-Match must be the resource's ETag, a quoted stream version"));
    env.expected = expected_version::exact(stream_version{version});
    conditional = true;
  }
  if (auto key = idempotency_key(c); !key.empty() && env.command_id.empty())
    env.command_id = "http:" + key;
  if (commands_in_flight.fetch_add(1) >= options.max_in_flight_commands) {
    commands_in_flight.fetch_sub(1);
    ++commands_shed;
    return c->reply(problem(503, "overloaded", "too many commands in flight; retry later"));
  }
  parts.commands->submit(
      std::move(env), [this, c, how = std::move(how), conditional](command_result r) {
        commands_in_flight.fetch_sub(1);
        note_position(r.position.value);
        switch (r.status) {
          case command_status::accepted:
          case command_status::duplicate: {
            json::object body = how.body ? how.body(r) : json::object{};
            body["version"] = r.version.value;
            body["position"] = r.position.value;
            auto res = json_response(how.status, body);
            res.headers.push_back({"etag", "\"" + std::to_string(r.version.value) + "\""});
            res.headers.push_back({"x-troupe-position", std::to_string(r.position.value)});
            if (!how.location.empty()) res.headers.push_back({"location", how.location});
            return c->reply(std::move(res));
          }
          case command_status::rejected:
            return c->reply(problem(status_of_rejection(r.reason.code), slug_of(r.reason.code),
                                    r.reason.message));
          case command_status::conflict:
            if (conditional)
              return c->reply(problem(412, "precondition-failed",
                                      "the resource has changed: its version is no longer the one "
                                      "in If-Match"));
            {
              auto p = problem(409, "version-conflict", "the resource changed concurrently; retry");
              p.final_outcome = false;  // a retry may well succeed: never replayed
              return c->reply(std::move(p));
            }
          case command_status::overloaded:
            ++commands_shed;
            return c->reply(problem(503, "overloaded", "the node is overloaded; retry later"));
          case command_status::unavailable:
            return c->reply(problem(503, "store-unavailable",
                                    "the event store is unavailable; retry with the same "
                                    "x-request-id"));
          case command_status::invalid:
            return c->reply(problem(400, "invalid-command", r.reason.message));
        }
      });
}

void bookstore_api::impl::run_query(const call_ptr& c, std::string projection,
                                    std::function<response(pqxx::connection_base&)> query,
                                    bool shareable) {
  std::optional<std::int64_t> min_position;
  std::string_view header = c->req.header("x-troupe-min-position");
  if (!header.empty()) {
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(header.data(), header.data() + header.size(), v);
    if (ec != std::errc{} || end != header.data() + header.size() || v < 0)
      return c->reply(problem(400, "invalid-min-position",
                              "x-troupe-min-position must be a non-negative integer"));
    min_position = v;
  }
  auto found = views.find(projection);
  projector* view = found == views.end() ? nullptr : found->second;
  bool cached = shareable && options.query_cache.count() > 0;
  // A public query answered moments ago is answered again from memory,
  // unless the client needs a later position than that answer had seen.
  // And while one such query runs, the same query from others waits for its
  // answer instead of queueing another (no stampede when an entry expires).
  bool leading = false;
  if (cached) {
    std::lock_guard lock{query_cache_mutex};
    auto it = query_cache.find(c->req.target);
    if (it != query_cache.end() &&
        std::chrono::steady_clock::now() - it->second.at < options.query_cache &&
        min_position.value_or(0) <= it->second.position)
      return c->reply(it->second.answer);
    if (min_position.value_or(0) == 0) {
      auto [waiting, first] = pending_queries.try_emplace(c->req.target);
      if (!first) {
        if (waiting->second.size() < 10'000) {
          waiting->second.push_back(c);
          return;
        }
      } else {
        leading = true;
      }
    }
  }
  // Answers the calls that waited for this one's query.
  auto release = [this, leading, target = c->req.target](const response& answer) {
    if (!leading) return;
    std::vector<call_ptr> waiting;
    {
      std::lock_guard lock{query_cache_mutex};
      auto it = pending_queries.find(target);
      if (it == pending_queries.end()) return;
      waiting = std::move(it->second);
      pending_queries.erase(it);
    }
    for (auto& w : waiting) w->reply(answer);
  };
  // A position beyond anything this node has seen cannot be waited for on a
  // pool thread (it could hold the pool for the whole wait): answer now.
  if (min_position && *min_position > max_position_seen.load() && view != nullptr)
    note_position(view->status().position);
  if (min_position && *min_position > max_position_seen.load())
    return c->reply(problem(
        503, "view-behind",
        "position " + std::to_string(*min_position) + " is beyond what this node has seen; retry"));
  auto wait = options.consistency_wait;
  bool queued = queries.submit(
      [this, c, view, min_position, wait, cached, release,
       query = std::move(query)](pqxx::connection_base& conn) {
        // Read-your-writes: the view must have folded the client's position.
        if (min_position && *min_position > 0 && view != nullptr &&
            !view->wait_until(global_position{*min_position}, wait))
          return c->reply(problem(503, "view-behind",
                                  "the view has not reached position " +
                                      std::to_string(*min_position) + " yet; retry"));
        // What the view had folded before the query: the answer includes at
        // least that much.
        std::int64_t seen = view != nullptr ? view->status().position : 0;
        auto started = std::chrono::steady_clock::now();
        auto answer = query(conn);
        if (cached && answer.status == 200 && answer.body.size() < (1u << 20)) {
          std::lock_guard lock{query_cache_mutex};
          // Entries live a fraction of a second: when full, drop the lot.
          if (query_cache.size() >= 10'000 || query_cache_bytes > (32u << 20)) {
            query_cache.clear();
            query_cache_bytes = 0;
          }
          query_cache_bytes += answer.body.size() + c->req.target.size();
          query_cache[c->req.target] = cached_query{answer, seen, started};
        }
        release(answer);
        c->reply(std::move(answer));
      },
      [c, release](const std::string& reason) {
        logger("http")->warn("query {} failed: {}", c->req.path, reason);
        auto p = problem(503, "store-unavailable", "the query could not run; retry later");
        release(p);
        c->reply(std::move(p));
      });
  if (!queued) {
    ++queries_shed;
    auto p = problem(503, "overloaded", "too many queries are waiting; retry later");
    release(p);
    c->reply(std::move(p));
  }
}

void bookstore_api::impl::with_state(
    const call_ptr& c, std::string_view category, const std::string& id,
    std::function<void(const json::object* state, stream_version)> next, bool may_wait) {
  auto type = aggregate_types.find(category);
  if (type == aggregate_types.end())
    return c->reply(problem(500, "internal-error", "unknown aggregate category"));
  std::optional<std::int64_t> after_version, wait_ms;
  if (may_wait) {
    if (!int_param(c, "after_version", after_version) || !int_param(c, "wait_ms", wait_ms)) return;
    if (after_version && *after_version < 0)
      return c->reply(problem(400, "invalid-parameter", "after_version must be 0 or more",
                              {{"after_version", "must be 0 or more"}}));
    if (wait_ms && (*wait_ms < 0 || *wait_ms > max_wait_ms))
      return c->reply(problem(400, "invalid-parameter",
                              "wait_ms must be 0.." + std::to_string(max_wait_ms),
                              {{"wait_ms", "must be 0.." + std::to_string(max_wait_ms)}}));
    if (wait_ms && *wait_ms > 0 && !after_version)
      return c->reply(problem(400, "invalid-parameter",
                              "wait_ms needs after_version: the version to wait past",
                              {{"after_version", "required with wait_ms"}}));
  }
  auto stream = stream_of(category, id);
  if (validate_stream_id(stream))
    return c->reply(problem(404, "not-found", "no such resource: '" + id + "'"));
  auto answer = [c, next = std::move(next)](state_read r) {
    if (r.error != store_errc::ok)
      return c->reply(
          problem(503, "store-unavailable", "the event store could not be read; retry later"));
    if (r.version.value == 0 || !r.state.is_object()) return next(nullptr, r.version);
    next(&r.state.as_object(), r.version);
  };
  // Commits are seen only where the stream's commands run: elsewhere in a
  // cluster the read is answered at once and the client polls.
  auto* commands = parts.commands;
  const auto& decider = type->second;
  if (!wait_ms || *wait_ms == 0 || commands == nullptr || !commands->serves_stream(stream))
    return read_current(commands, parts.store, decider, std::move(stream), std::move(answer));

  // The long poll: register first, then read, so a commit between the two
  // is not missed. Whichever of "the read shows a newer version" and "the
  // watch woke" comes first answers; the watch's answer reads again.
  struct long_poll {
    std::atomic<bool> answered{false};
    std::uint64_t ticket = 0;
  };
  auto poll = std::make_shared<long_poll>();
  auto reread = [commands, store = parts.store, decider, stream, answer, poll](watch_end) {
    if (poll->answered.exchange(true)) return;
    read_current(commands, store, decider, stream, answer);
  };
  auto deadline = commit_watch::clock::now() + std::chrono::milliseconds{*wait_ms};
  poll->ticket = commands->commits().wait(stream, *after_version, deadline, std::move(reread));
  if (poll->ticket == 0)  // full: answer now, the client polls again
    return read_current(commands, parts.store, decider, std::move(stream), std::move(answer));
  read_current(commands, parts.store, decider, stream,
               [commands, poll, after = *after_version, answer](state_read r) {
                 if (r.error == store_errc::ok && r.version.value <= after) return;  // wait
                 if (poll->answered.exchange(true)) return;
                 commands->commits().cancel(poll->ticket);
                 answer(std::move(r));
               });
}

void bookstore_api::impl::read_current(node* commands, std::shared_ptr<event_store> store,
                                       std::shared_ptr<const aggregate_type> type,
                                       std::string stream, std::function<void(state_read)> answer) {
  if (commands == nullptr)
    return read_state(std::move(store), *type, std::move(stream), std::move(answer));
  auto live = [store = std::move(store), type = std::move(type), stream,
               answer = std::move(answer)](std::optional<live_state> live) mutable {
    if (!live) return read_state(std::move(store), *type, std::move(stream), std::move(answer));
    state_read r;
    r.state = std::move(live->state);
    r.version = live->version;
    answer(std::move(r));
  };
  commands->read_live(std::move(stream), std::move(live));
}

void bookstore_api::impl::get_state(
    const call_ptr& c, std::string_view category, const std::string& id,
    std::function<std::optional<json::object>(const json::object&)> present) {
  with_state(
      c, category, id,
      [c, id, present = std::move(present)](const json::object* state, stream_version v) {
        std::optional<json::object> shown;
        if (state != nullptr) shown = present(*state);
        if (!shown) return c->reply(problem(404, "not-found", "no such resource: '" + id + "'"));
        (*shown)["version"] = v.value;
        auto res = json_response(200, *shown);
        res.headers.push_back({"etag", "\"" + std::to_string(v.value) + "\""});
        c->reply(std::move(res));
      },
      true);
}

std::optional<std::pair<std::int64_t, std::int64_t>> bookstore_api::impl::paging(
    const call_ptr& c) {
  std::optional<std::int64_t> page, size;
  if (!int_param(c, "page", page) || !int_param(c, "page_size", size)) return std::nullopt;
  std::vector<field_error> errs;
  if (page && (*page < 1 || *page > 1'000'000)) errs.push_back({"page", "must be 1 to 1000000"});
  if (size && (*size < 1 || *size > 100)) errs.push_back({"page_size", "must be 1 to 100"});
  if (!errs.empty()) {
    c->reply(problem(400, "invalid-parameter", "invalid paging parameters", errs));
    return std::nullopt;
  }
  return std::pair{page.value_or(1), size.value_or(20)};
}

bool bookstore_api::impl::int_param(const call_ptr& c, std::string_view name,
                                    std::optional<std::int64_t>& out) {
  auto text = c->req.query_param(name);
  if (!text) return true;
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (ec != std::errc{} || end != text->data() + text->size() || text->empty()) {
    c->reply(problem(400, "invalid-parameter",
                     "query parameter '" + std::string(name) + "' must be an integer",
                     {{std::string(name), "must be an integer"}}));
    return false;
  }
  out = v;
  return true;
}

void bookstore_api::impl::quote_price(const std::string& book_id,
                                      std::function<void(price_quote)> next) {
  auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock{cache_mutex};
    auto it = price_cache.find(book_id);
    if (it != price_cache.end() && it->second.expires > now)
      return next(price_quote{it->second.cents, false});
  }
  auto stream = stream_of("book", book_id);
  if (validate_stream_id(stream)) return next(price_quote{std::nullopt, false});
  read_current(parts.commands, parts.store, aggregate_types.at("book"), std::move(stream),
               [this, book_id, next = std::move(next)](state_read r) {
                 if (r.error != store_errc::ok) return next(price_quote{std::nullopt, true});
                 std::optional<std::int64_t> cents;
                 try {
                   if (r.version.value > 0 && r.state.is_object()) {
                     const auto& s = r.state.as_object();
                     if (s.contains("status") && s.at("status") == "active") {
                       cents = s.at("price").to_number<std::int64_t>();
                       if (const auto* d = s.if_contains("discount_price"); d && !d->is_null())
                         cents = d->to_number<std::int64_t>();
                     }
                   }
                 } catch (const std::exception&) {
                   return next(price_quote{std::nullopt, true});
                 }
                 if (cents) {
                   std::lock_guard lock{cache_mutex};
                   if (price_cache.size() > 100'000) price_cache.clear();
                   price_cache[book_id] =
                       price{*cents, std::chrono::steady_clock::now() + options.price_cache};
                 }
                 next(price_quote{cents, false});
               });
}

void bookstore_api::impl::prune_outcomes(pqxx::connection_base& conn) {
  // Outcomes are kept for the retention period, then deleted in small
  // batches (at most one batch a minute), so the table stays bounded
  // without a long delete holding back gap-safe readers.
  auto now = now_ms();
  auto due = next_prune_ms.load();
  if (now < due || !next_prune_ms.compare_exchange_strong(due, now + 60'000)) return;
  pqxx::work tx(conn);
  tx.exec0(
      "DELETE FROM troupe_http_requests WHERE request_id IN (SELECT request_id FROM "
      "troupe_http_requests WHERE created_at < now() - interval '" +
      std::to_string(options.request_id_retention.count()) + " seconds' LIMIT 10000)");
  tx.commit();
}

std::string bookstore_api::impl::idempotency_key(const call_ptr& c) const {
  auto id = c->req.header("x-request-id");
  if (id.empty()) return {};
  return c->who.subject + ":" + std::string(id);
}

std::string bookstore_api::impl::id_for(const call_ptr& c, std::string_view purpose) const {
  auto key = idempotency_key(c);
  if (key.empty()) return new_uuid();
  // The same request id makes the same resource id: a retry of a create
  // reaches the stream the first attempt wrote, where the command id
  // recognises it, instead of creating a second resource.
  auto text = std::string(purpose) + "\n" + key;
  return "r" + fnv1a_hex(text) + fnv1a_hex(text + "\n2");
}

// ---- the public face ------------------------------------------------------------

bookstore_api::bookstore_api(api_parts parts, api_options options)
    : impl_(std::make_unique<impl>(std::move(parts), std::move(options))) {}

bookstore_api::~bookstore_api() { stop(); }

void bookstore_api::handle(request&& r, responder reply) {
  impl_->handle(std::move(r), std::move(reply));
}

const std::vector<route>& bookstore_api::routes() const { return impl_->routes.routes(); }

std::string bookstore_api::issue_dev_token(const std::string& subject, bool admin) const {
  return impl_->auth.issue(subject, admin, 24 * 3600);
}

api_stats bookstore_api::stats() const {
  api_stats s;
  s.commands_in_flight = impl_->commands_in_flight;
  s.commands_shed = impl_->commands_shed;
  s.idempotent_replays = impl_->replays;
  s.queries_shed = impl_->queries_shed;
  return s;
}

void bookstore_api::stop() {
  // The pool first: a queued request could start another rebuild.
  impl_->queries.stop();
  if (impl_->rebuild_thread.joinable()) impl_->rebuild_thread.join();
}

std::string bookstore_api::openapi() const { return impl_->openapi_text; }

}  // namespace troupe::http
