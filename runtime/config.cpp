#include "runtime/config.hpp"

#include <boost/json.hpp>
#include <charconv>
#include <fstream>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace troupe {

extern const std::string_view embedded_default_config;  // generated from config/troupe.json

namespace {

enum class value_kind { integer, string, boolean, choice };

struct setting {
  std::string_view key;  // may hold one '*' segment
  value_kind kind;
  std::int64_t min = 0;
  std::int64_t max = INT64_MAX;
  std::vector<std::string_view> choices = {};
  std::string_view help = {};
};

// The schema: every key a node understands. Defaults live in troupe.json.
const std::vector<setting>& schema() {
  static const std::vector<setting> settings = {
      {"node.id", value_kind::string, 0, 0, {}, "node name; empty = <hostname>-<pid>"},
      {"node.max_in_flight_commands",
       value_kind::integer,
       1,
       10'000'000,
       {},
       "commands in flight per node before new ones are shed as overloaded"},
      {"node.shutdown_timeout_ms",
       value_kind::integer,
       1,
       3'600'000,
       {},
       "how long stopping waits for queued commands to finish; the rest get unavailable"},
      {"node.max_commit_waiters",
       value_kind::integer,
       0,
       1'000'000,
       {},
       "long polls (reads waiting for a stream to change) at once; beyond: answered at once"},
      {"runtime.threads", value_kind::integer, 0, 256, {}, "actor scheduler threads; 0 = cores"},
      {"runtime.idle_poll_sleeps",
       value_kind::integer,
       0,
       100000,
       {},
       "times an idle scheduler thread sleeps 50 us and polls again before it waits to be "
       "woken (CAF's default: 500)"},
      {"aggregate.idle_timeout_ms",
       value_kind::integer,
       1,
       INT64_MAX,
       {},
       "an aggregate idle this long is passivated"},
      {"aggregate.max_live",
       value_kind::integer,
       1,
       INT64_MAX,
       {},
       "live aggregate actors per node; the least recently used is passivated beyond it"},
      {"aggregate.max_pending_commands",
       value_kind::integer,
       1,
       10'000'000,
       {},
       "commands queued at one aggregate before new ones are shed"},
      {"aggregate.snapshot_every",
       value_kind::integer,
       0,
       INT64_MAX,
       {},
       "events between snapshots; 0 = never"},
      {"aggregate.idempotency_window",
       value_kind::integer,
       0,
       100'000,
       {},
       "command ids per stream remembered across snapshots for idempotent retries"},
      {"aggregate.types.*.snapshot_every",
       value_kind::integer,
       0,
       INT64_MAX,
       {},
       "events between snapshots for one aggregate category"},
      {"store.kind",
       value_kind::choice,
       0,
       0,
       {"postgres", "memory"},
       "event store: postgres, or memory (nothing survives the process)"},
      {"store.max_event_bytes",
       value_kind::integer,
       1,
       64 << 20,
       {},
       "largest event data accepted; bigger events are rejected before storage"},
      {"postgres.url", value_kind::string, 0, 0, {}, "PostgreSQL connection URL"},
      {"postgres.writer_connections",
       value_kind::integer,
       1,
       64,
       {},
       "group-commit writer connections (one batch transaction each at a time)"},
      {"postgres.reader_connections",
       value_kind::integer,
       1,
       64,
       {},
       "connections for reads and snapshot writes"},
      {"postgres.batch_max_commands",
       value_kind::integer,
       1,
       10000,
       {},
       "commands coalesced into one append transaction at most"},
      {"postgres.batch_linger_us",
       value_kind::integer,
       0,
       100000,
       {},
       "how long a writer waits for a fuller batch; 0 = take what is queued"},
      {"postgres.max_queued_appends",
       value_kind::integer,
       1,
       10'000'000,
       {},
       "appends waiting for a writer before new ones are shed as overloaded"},
      {"postgres.max_queued_reads",
       value_kind::integer,
       1,
       10'000'000,
       {},
       "reads waiting for a reader before new ones are shed as overloaded"},
      {"postgres.reconnect_backoff_ms",
       value_kind::integer,
       1,
       60000,
       {},
       "pause between reconnection attempts"},
      {"nats.url", value_kind::string, 0, 0, {}, "NATS server URL"},
      {"publisher.enabled",
       value_kind::boolean,
       0,
       0,
       {},
       "publish committed events to JetStream (PostgreSQL store only)"},
      {"publisher.stream", value_kind::string, 0, 0, {}, "JetStream stream name"},
      {"publisher.subject_prefix",
       value_kind::string,
       0,
       0,
       {},
       "subjects are <prefix>.<category>.<type>"},
      {"publisher.checkpoint",
       value_kind::string,
       0,
       0,
       {},
       "name of the publisher's checkpoint in the store"},
      {"publisher.replicas", value_kind::integer, 1, 5, {}, "JetStream stream replicas"},
      {"publisher.duplicate_window_s",
       value_kind::integer,
       1,
       86400,
       {},
       "JetStream de-duplication window; re-sent events older than this are stored twice"},
      {"publisher.batch_size",
       value_kind::integer,
       1,
       100000,
       {},
       "events read and published per round"},
      {"publisher.max_pending",
       value_kind::integer,
       1,
       1000000,
       {},
       "unacknowledged asynchronous publishes at most"},
      {"publisher.poll_interval_ms",
       value_kind::integer,
       1,
       60000,
       {},
       "longest pause when there is nothing new to publish"},
      {"publisher.min_round_interval_ms",
       value_kind::integer,
       0,
       1000,
       {},
       "a round that published something is followed by the next read no sooner than this "
       "after it began (gathers a woken publisher's events into rounds under load)"},
      {"publisher.checkpoint_interval_ms",
       value_kind::integer,
       0,
       60000,
       {},
       "the publisher's checkpoint is saved at most this often and at stop (0: every round); "
       "a crash re-sends up to this much, dropped by the duplicate window"},
      {"publisher.confirm_by_sequence",
       value_kind::boolean,
       0,
       0,
       {},
       "a round's last publish alone is acknowledged, and confirms the round when its stream "
       "sequence is the one expected (false: every publish acknowledged)"},
      {"publisher.wake_on_commit",
       value_kind::boolean,
       0,
       0,
       {},
       "this node's commits end the pause at once (other nodes' are found by polling)"},
      {"projections.enabled",
       value_kind::boolean,
       0,
       0,
       {},
       "run the bookstore's projectors (needs the publisher's JetStream stream)"},
      {"projections.only",
       value_kind::string,
       0,
       0,
       {},
       "comma-separated projection names to run (empty: all); the others' views are not "
       "kept current"},
      {"projections.shared_consumer",
       value_kind::boolean,
       0,
       0,
       {},
       "single node: the projectors share one JetStream consumer (<consumer_prefix>shared-feed) "
       "instead of one each"},
      {"projections.consumer_prefix",
       value_kind::string,
       0,
       0,
       {},
       "durable consumer names are <prefix><projection>"},
      {"projections.batch_size",
       value_kind::integer,
       1,
       100000,
       {},
       "events applied per transaction; one more batch is fetched ahead"},
      {"projections.max_attempts",
       value_kind::integer,
       1,
       100,
       {},
       "tries of a poison event before it is parked as a dead letter"},
      {"projections.retry_backoff_ms",
       value_kind::integer,
       1,
       60000,
       {},
       "first retry pause; doubles per attempt"},
      {"projections.ack_wait_ms",
       value_kind::integer,
       100,
       3600000,
       {},
       "JetStream redelivers a batch not acknowledged within this time; after a crash the "
       "restarted projector waits this long for the dead one's batches (duplicates are skipped)"},
      {"cluster.enabled",
       value_kind::boolean,
       0,
       0,
       {},
       "join a cluster: shards over the nodes sharing this NATS and PostgreSQL"},
      {"cluster.name", value_kind::string, 0, 0, {}, "nodes with the same name form one cluster"},
      {"cluster.shards",
       value_kind::integer,
       1,
       4096,
       {},
       "shards streams are hashed to; the same on every node, fixed for a cluster's life"},
      {"cluster.lease_ttl_ms",
       value_kind::integer,
       1000,
       600'000,
       {},
       "a node that stops renewing its leases loses them after this long (crash takeover)"},
      {"cluster.heartbeat_ms",
       value_kind::integer,
       50,
       200'000,
       {},
       "membership and lease renewal interval; at most a third of the lease TTL"},
      {"cluster.forward_timeout_ms",
       value_kind::integer,
       100,
       600'000,
       {},
       "how long a command may look for its shard's owner before it is answered unavailable"},
      {"cluster.forward_attempt_timeout_ms",
       value_kind::integer,
       50,
       600'000,
       {},
       "one forwarded attempt's wait for the owner's answer before it is retried"},
      {"cluster.max_forwarded",
       value_kind::integer,
       1,
       10'000'000,
       {},
       "commands waiting for a peer's answer or a retry before new ones are shed"},
      {"cluster.saga_partitions",
       value_kind::integer,
       1,
       64,
       {},
       "each saga's instances are split into this many partitions, spread over the nodes (each "
       "reads the saga's events; changing it replays history through new consumers)"},
      {"cluster.replicas", value_kind::integer, 1, 5, {}, "JetStream replicas of the KV buckets"},
      {"cluster.advertise_http",
       value_kind::string,
       0,
       0,
       {},
       "this node's HTTP base URL as shown in cluster status; empty = from http.address/port"},
      {"sagas.enabled",
       value_kind::boolean,
       0,
       0,
       {},
       "run the bookstore's sagas (order fulfilment, rating; needs the publisher)"},
      {"sagas.consumer_prefix",
       value_kind::string,
       0,
       0,
       {},
       "durable consumer names are <prefix><saga>"},
      {"sagas.batch_size",
       value_kind::integer,
       1,
       50000,
       {},
       "events a saga host takes from JetStream at once (its unacknowledged messages at most)"},
      {"sagas.step_timeout_ms",
       value_kind::integer,
       100,
       86400000,
       {},
       "a step without an answer in this time counts as failed and is retried"},
      {"sagas.max_attempts",
       value_kind::integer,
       1,
       100,
       {},
       "sends of a failing step before it is given up and dead-lettered"},
      {"sagas.retry_backoff_ms",
       value_kind::integer,
       1,
       600000,
       {},
       "pause before the second send of a failed step; doubles per attempt"},
      {"sagas.ack_wait_ms",
       value_kind::integer,
       100,
       3600000,
       {},
       "JetStream redelivers events not acknowledged within this time (after a crash, the "
       "restarted host waits this long for the dead one's; duplicates are recognised)"},
      {"log.level",
       value_kind::choice,
       0,
       0,
       {"trace", "debug", "info", "warn", "error", "critical", "off"},
       "log level"},
      {"http.enabled", value_kind::boolean, 0, 0, {}, "serve the HTTP API"},
      {"http.address", value_kind::string, 0, 0, {}, "address the HTTP API listens on"},
      {"http.port", value_kind::integer, 0, 65535, {}, "HTTP port; 0 = any free port (logged)"},
      {"http.io_threads", value_kind::integer, 0, 256, {}, "HTTP io threads; 0 = cores"},
      {"http.max_body_bytes",
       value_kind::integer,
       1,
       64 << 20,
       {},
       "largest request body; bigger ones get 413"},
      {"http.max_header_bytes",
       value_kind::integer,
       512,
       1 << 20,
       {},
       "largest request header block; bigger ones get 431"},
      {"http.read_timeout_ms",
       value_kind::integer,
       1,
       3'600'000,
       {},
       "a started request must arrive in full within this time (else 408)"},
      {"http.idle_timeout_ms",
       value_kind::integer,
       1,
       3'600'000,
       {},
       "a keep-alive connection idle this long is closed"},
      {"http.request_timeout_ms",
       value_kind::integer,
       1,
       3'600'000,
       {},
       "a request not answered within this time gets 504 (its outcome unknown)"},
      {"http.write_timeout_ms", value_kind::integer, 1, 3'600'000, {}, "a response write limit"},
      {"http.max_connections",
       value_kind::integer,
       1,
       1'000'000,
       {},
       "open connections; more are answered 503 and closed"},
      {"http.max_in_flight_commands",
       value_kind::integer,
       1,
       10'000'000,
       {},
       "HTTP commands awaiting their outcome; more get 503 with Retry-After"},
      {"http.query_threads",
       value_kind::integer,
       1,
       64,
       {},
       "PostgreSQL connections serving view queries"},
      {"http.max_queued_queries",
       value_kind::integer,
       1,
       1'000'000,
       {},
       "queries waiting for a connection; more get 503"},
      {"http.consistency_wait_ms",
       value_kind::integer,
       0,
       60'000,
       {},
       "longest a query waits for its view to reach x-troupe-min-position"},
      {"http.price_cache_ms",
       value_kind::integer,
       0,
       3'600'000,
       {},
       "how old a book price quoted for an order may be"},
      {"http.query_cache_ms",
       value_kind::integer,
       0,
       60'000,
       {},
       "how long a public catalog query's answer is reused; 0 = never (clients needing their "
       "own writes send x-troupe-min-position)"},
      {"http.request_id_retention_hours",
       value_kind::integer,
       1,
       24 * 365,
       {},
       "how long x-request-id outcomes are kept; a repeat after that runs again (the "
       "aggregate's command-id window may still catch it)"},
      {"http.shutdown_timeout_ms",
       value_kind::integer,
       0,
       3'600'000,
       {},
       "on SIGTERM, how long in-flight requests may take to finish"},
      {"http.auth.mode",
       value_kind::choice,
       0,
       0,
       {"off", "dev", "hs256", "rs256"},
       "off: no checks; dev: HS256 and POST /api/v1/dev/tokens issues tokens; hs256/rs256: verify "
       "tokens from an identity provider"},
      {"http.auth.secret",
       value_kind::string,
       0,
       0,
       {},
       "HS256 secret (>= 32 bytes); dev mode makes a random one when empty"},
      {"http.auth.public_key_file", value_kind::string, 0, 0, {}, "RS256 public key (PEM file)"},
      {"http.auth.issuer", value_kind::string, 0, 0, {}, "required iss claim; empty = any"},
      {"http.auth.audience", value_kind::string, 0, 0, {}, "required aud claim; empty = any"},
      {"http.auth.admin_role", value_kind::string, 0, 0, {}, "role (in roles/role) of admins"},
      {"log.format",
       value_kind::choice,
       0,
       0,
       {"text", "json"},
       "text for people, json for one JSON object per line"},
  };
  return settings;
}

bool key_matches(std::string_view pattern, std::string_view key) {
  while (true) {
    auto pdot = pattern.find('.');
    auto kdot = key.find('.');
    auto pseg = pattern.substr(0, pdot);
    auto kseg = key.substr(0, kdot);
    if (pseg != "*" && pseg != kseg) return false;
    if (kseg.empty()) return false;
    if (pdot == std::string_view::npos || kdot == std::string_view::npos)
      return pdot == std::string_view::npos && kdot == std::string_view::npos;
    pattern.remove_prefix(pdot + 1);
    key.remove_prefix(kdot + 1);
  }
}

const setting* find_setting(std::string_view key) {
  for (const auto& s : schema())
    if (key_matches(s.key, key)) return &s;
  return nullptr;
}

std::string describe_expectation(const setting& s) {
  switch (s.kind) {
    case value_kind::integer: {
      std::string out = "an integer";
      if (s.min != 0 || s.max != INT64_MAX) out += " >= " + std::to_string(s.min);
      if (s.max != INT64_MAX) out += " and <= " + std::to_string(s.max);
      return out;
    }
    case value_kind::string: return "a string";
    case value_kind::boolean: return "true or false";
    case value_kind::choice: {
      std::string out = "one of";
      for (auto c : s.choices) out += " " + std::string(c);
      return out;
    }
  }
  return "?";
}

std::string env_name_of(std::string_view key) {
  std::string out = "TROUPE_";
  for (char c : key) out.push_back(c == '.' ? '_' : static_cast<char>(std::toupper(c)));
  return out;
}

}  // namespace

std::string redact_url(std::string_view url) {
  auto scheme = url.find("://");
  if (scheme == std::string_view::npos) {
    // key=value form: password=secret -> password=***
    auto key = url.find("password=");
    if (key == std::string_view::npos) return std::string(url);
    auto end = url.find(' ', key);
    return std::string(url.substr(0, key)) + "password=***" +
           (end == std::string_view::npos ? std::string() : std::string(url.substr(end)));
  }
  // scheme://user:password@host -> scheme://user:***@host; the password may
  // itself hold '@', so the host starts after the last one before the path.
  auto path = url.find('/', scheme + 3);
  auto authority = url.substr(0, path);
  auto at = authority.rfind('@');
  if (at == std::string_view::npos) return std::string(url);
  auto colon = url.find(':', scheme + 3);
  if (colon == std::string_view::npos || colon > at) return std::string(url);
  return std::string(url.substr(0, colon + 1)) + "***" + std::string(url.substr(at));
}

struct config_loader {
  static std::optional<std::string> put_text(config& cfg, std::string_view key,
                                             std::string_view text, const std::string& origin) {
    const auto* s = find_setting(key);
    if (s == nullptr)
      return "unknown configuration key '" + std::string(key) + "' (" + origin + ")";
    config::value v;
    v.origin = origin;
    auto bad = [&] {
      return "configuration key '" + std::string(key) + "' (" + origin + "): expected " +
             describe_expectation(*s) + ", got '" + std::string(text) + "'";
    };
    switch (s->kind) {
      case value_kind::integer: {
        std::int64_t n = 0;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
        if (ec != std::errc{} || end != text.data() + text.size() || n < s->min || n > s->max)
          return bad();
        v.integer = n;
        v.text = std::to_string(n);
        break;
      }
      case value_kind::boolean:
        if (text == "true" || text == "1")
          v.boolean = true;
        else if (text == "false" || text == "0")
          v.boolean = false;
        else
          return bad();
        v.text = v.boolean ? "true" : "false";
        break;
      case value_kind::choice: {
        bool found = false;
        for (auto c : s->choices) found = found || c == text;
        if (!found) return bad();
        v.text = std::string(text);
        break;
      }
      case value_kind::string: v.text = std::string(text); break;
    }
    cfg.values_.insert_or_assign(std::string(key), std::move(v));
    return std::nullopt;
  }

  static std::optional<std::string> put_json(config& cfg, const std::string& key,
                                             const boost::json::value& value,
                                             const std::string& origin) {
    const auto* s = find_setting(key);
    if (s == nullptr) return "unknown configuration key '" + key + "' (" + origin + ")";
    auto mismatch = [&] {
      return "configuration key '" + key + "' (" + origin + "): expected " +
             describe_expectation(*s) + ", got " + boost::json::serialize(value);
    };
    switch (s->kind) {
      case value_kind::integer:
        if (!value.is_int64() && !value.is_uint64()) return mismatch();
        return put_text(cfg, key, boost::json::serialize(value), origin);
      case value_kind::boolean:
        if (!value.is_bool()) return mismatch();
        return put_text(cfg, key, value.as_bool() ? "true" : "false", origin);
      case value_kind::string:
      case value_kind::choice:
        if (!value.is_string()) return mismatch();
        return put_text(cfg, key, std::string_view(value.as_string()), origin);
    }
    return mismatch();
  }

  static std::optional<std::string> put_object(config& cfg, const boost::json::object& object,
                                               const std::string& prefix,
                                               const std::string& origin) {
    for (const auto& [name, value] : object) {
      std::string key = prefix.empty() ? std::string(name) : prefix + "." + std::string(name);
      if (value.is_object()) {
        // An object where the schema wants a leaf is as wrong as an unknown key.
        if (const auto* s = find_setting(key); s != nullptr)
          return "configuration key '" + key + "' (" + origin + "): expected " +
                 describe_expectation(*s) + ", got an object";
        if (auto e = put_object(cfg, value.as_object(), key, origin)) return e;
      } else if (auto e = put_json(cfg, key, value, origin)) {
        return e;
      }
    }
    return std::nullopt;
  }

  static std::optional<std::string> put_document(config& cfg, std::string_view text,
                                                 const std::string& origin) {
    boost::system::error_code ec;
    auto json = boost::json::parse(text, ec);
    if (ec) return "configuration " + origin + " is not valid JSON: " + ec.message();
    if (!json.is_object()) return "configuration " + origin + " must be a JSON object";
    return put_object(cfg, json.as_object(), "", origin);
  }

  static std::optional<std::string> put_env(config& cfg, std::string_view name,
                                            std::string_view text) {
    if (!name.starts_with("TROUPE_") || name.starts_with("TROUPE_SERVICES_") ||
        name.starts_with("TROUPE_TEST_"))
      return std::nullopt;
    std::string origin = "environment variable " + std::string(name);
    for (const auto& s : schema()) {
      auto star = s.key.find('*');
      if (star == std::string_view::npos) {
        if (env_name_of(s.key) == name) return put_text(cfg, s.key, text, origin);
        continue;
      }
      // Wildcard: TROUPE_AGGREGATE_TYPES_<SEGMENT>_SNAPSHOT_EVERY.
      auto head = env_name_of(s.key.substr(0, star));
      auto tail = env_name_of(s.key.substr(star + 1)).substr(std::string_view("TROUPE_").size());
      if (name.size() > head.size() + tail.size() && name.starts_with(head) &&
          name.ends_with(tail)) {
        std::string segment(name.substr(head.size(), name.size() - head.size() - tail.size()));
        for (auto& c : segment) c = static_cast<char>(std::tolower(c));
        std::string key =
            std::string(s.key.substr(0, star)) + segment + std::string(s.key.substr(star + 1));
        return put_text(cfg, key, text, origin);
      }
    }
    return "unknown configuration variable " + std::string(name) +
           " (TROUPE_* variables name configuration keys; see `troupe config`)";
  }
};

std::expected<config, std::string> config::load(const source& from) {
  config cfg = defaults();
  if (from.file) {
    std::ifstream in(*from.file);
    if (!in) return std::unexpected("cannot read configuration file " + *from.file);
    std::stringstream text;
    text << in.rdbuf();
    if (auto e = config_loader::put_document(cfg, text.str(), "file " + *from.file))
      return std::unexpected(*e);
  }
  for (const auto& [name, text] : from.env)
    if (auto e = config_loader::put_env(cfg, name, text)) return std::unexpected(*e);
  for (const auto& item : from.overrides) {
    auto eq = item.find('=');
    if (eq == std::string::npos) return std::unexpected("--set '" + item + "': expected key=value");
    if (auto e = config_loader::put_text(cfg, item.substr(0, eq), item.substr(eq + 1), "--set"))
      return std::unexpected(*e);
  }
  // After a crash the publisher re-sends what came after its saved
  // checkpoint; only the duplicate window keeps that out of the stream, so
  // the window must be far longer than the gap between saves.
  auto checkpoint_ms = cfg.integer("publisher.checkpoint_interval_ms");
  auto window_s = cfg.integer("publisher.duplicate_window_s");
  if (checkpoint_ms * 2 > window_s * 1000)
    return std::unexpected("publisher.checkpoint_interval_ms (" + std::to_string(checkpoint_ms) +
                           ") must be at most half of publisher.duplicate_window_s (" +
                           std::to_string(window_s) +
                           " s): events re-sent after a crash are dropped only inside the window");
  return cfg;
}

config config::defaults() {
  config cfg;
  if (auto e = config_loader::put_document(cfg, embedded_default_config, "defaults"))
    throw std::logic_error("built-in configuration is broken: " + *e);
  return cfg;
}

std::vector<std::pair<std::string, std::string>> config::process_environment() {
  std::vector<std::pair<std::string, std::string>> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    auto eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    out.emplace_back(entry.substr(0, eq), entry.substr(eq + 1));
  }
  return out;
}

std::optional<std::string> config::set(std::string_view key, std::string_view value) {
  return config_loader::put_text(*this, key, value, "--set");
}

std::int64_t config::integer(std::string_view key) const {
  auto it = values_.find(key);
  if (it == values_.end()) throw std::logic_error("missing configuration key " + std::string(key));
  return it->second.integer;
}

std::optional<std::int64_t> config::find_integer(std::string_view key) const {
  auto it = values_.find(key);
  if (it == values_.end()) return std::nullopt;
  return it->second.integer;
}

const std::string& config::string(std::string_view key) const {
  auto it = values_.find(key);
  if (it == values_.end()) throw std::logic_error("missing configuration key " + std::string(key));
  return it->second.text;
}

bool config::boolean(std::string_view key) const {
  auto it = values_.find(key);
  if (it == values_.end()) throw std::logic_error("missing configuration key " + std::string(key));
  return it->second.boolean;
}

std::vector<std::string> config::keys_with_prefix(std::string_view prefix) const {
  std::vector<std::string> out;
  for (const auto& [key, v] : values_)
    if (key.starts_with(prefix)) out.push_back(key);
  return out;
}

std::string config::describe() const {
  std::ostringstream out;
  for (const auto& [key, v] : values_) {
    out << key << " = "
        << (key.ends_with("url")                         ? redact_url(v.text)
            : key.ends_with("secret") && !v.text.empty() ? std::string("***")
                                                         : v.text)
        << "    # " << v.origin;
    if (const auto* s = find_setting(key); s != nullptr && !s->help.empty()) out << "; " << s->help;
    out << "  [" << env_name_of(key) << "]\n";
  }
  return out.str();
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::string item;
  for (char ch : text + ",") {
    if (ch == ',') {
      if (!item.empty()) out.push_back(std::move(item));
      item.clear();
    } else if (ch != ' ') {
      item.push_back(ch);
    }
  }
  return out;
}

}  // namespace troupe
