#include "persistence/postgres_event_store.hpp"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/json.hpp>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <pqxx/pqxx>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "persistence/postgres/migrations.hpp"
#include "persistence/postgres/pg_connection.hpp"
#include "persistence/validation.hpp"

namespace troupe {

namespace {

std::int64_t to_micros(clock_type::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

clock_type::time_point from_micros(std::int64_t micros) {
  return clock_type::time_point{
      std::chrono::duration_cast<clock_type::duration>(std::chrono::microseconds{micros})};
}

/// Builds a PostgreSQL array literal ('{"a","b"}') for a text parameter:
/// libpqxx 6.4 cannot bind containers, so arrays travel as text and are cast
/// server-side ($1::text[]).
class array_literal {
 public:
  array_literal() { text_.push_back('{'); }
  void quoted(std::string_view value) {
    separator();
    text_.push_back('"');
    for (char c : value) {
      if (c == '"' || c == '\\') text_.push_back('\\');
      text_.push_back(c);
    }
    text_.push_back('"');
  }
  void number(std::int64_t value) {
    separator();
    text_ += std::to_string(value);
  }
  void raw(std::string_view value) {
    separator();
    text_ += value;
  }
  std::string finish() {
    text_.push_back('}');
    return std::move(text_);
  }
  void reserve(std::size_t n) { text_.reserve(n); }

 private:
  void separator() {
    if (text_.size() > 1) text_.push_back(',');
  }
  std::string text_;
};

std::int64_t row_limit(std::size_t max_count) {
  return static_cast<std::int64_t>(std::min<std::size_t>(max_count, INT64_MAX));
}

std::string metadata_json(const event_metadata& m) {
  boost::json::object o;
  o["command_id"] = m.command_id;
  o["correlation_id"] = m.correlation_id;
  o["causation_id"] = m.causation_id;
  o["traceparent"] = m.traceparent;
  o["node_id"] = m.node_id;
  return boost::json::serialize(o);
}

/// Adds libpq settings that bound how long a dead server can hold us: a
/// connect timeout, TCP keepalives and a TCP user timeout (unacknowledged
/// data), unless the URL sets them itself.
std::string with_connect_timeout(const std::string& url) {
  static const std::pair<const char*, const char*> defaults[] = {
      {"connect_timeout", "5"},     {"keepalives", "1"},       {"keepalives_idle", "10"},
      {"keepalives_interval", "3"}, {"keepalives_count", "3"}, {"tcp_user_timeout", "15000"}};
  bool key_value_form = url.find("://") == std::string::npos;
  std::string out = url;
  for (const auto& [key, value] : defaults) {
    if (url.find(key) != std::string::npos) continue;
    if (key_value_form)
      out += std::string(" ") + key + "=" + value;
    else
      out += std::string(out.find('?') == std::string::npos ? "?" : "&") + key + "=" + value;
  }
  return out;
}

/// Current version of each given stream (0 when it has none).
const std::string versions_sql =
    "SELECT s, coalesce((SELECT max(stream_version) FROM troupe_events e "
    "WHERE e.stream_id = s), 0) FROM unnest($1::text[]) AS s";

// Metadata comes back as its JSON text and is parsed here: five `->>`
// extractions re-parse the json value each time and made reading the global
// order about three times slower.
const char* const event_columns =
    "global_position, stream_version, event_id::text, event_type, schema_version, data::text, "
    "metadata::text, (extract(epoch from recorded_at) * 1000000)::bigint, stream_id";

void metadata_from_json(std::string_view text, event_metadata& m) {
  boost::system::error_code ec;
  auto json = boost::json::parse(text, ec);
  if (ec || !json.is_object()) return;
  const auto& object = json.get_object();
  auto field = [&](std::string_view key, std::string& out) {
    if (auto* v = object.if_contains(key); v != nullptr && v->is_string())
      out.assign(v->get_string().data(), v->get_string().size());
  };
  field("command_id", m.command_id);
  field("correlation_id", m.correlation_id);
  field("causation_id", m.causation_id);
  field("traceparent", m.traceparent);
  field("node_id", m.node_id);
}

recorded_event event_from_row(const pqxx::row& row) {
  recorded_event e;
  e.position = global_position{row[0].as<std::int64_t>()};
  e.version = stream_version{row[1].as<std::int64_t>()};
  e.event_id = row[2].as<std::string>();
  e.type = row[3].as<std::string>();
  e.schema_version = row[4].as<int>();
  e.data = row[5].as<std::string>();
  metadata_from_json(std::string_view(row[6].c_str(), row[6].size()), e.metadata);
  e.recorded_at = from_micros(row[7].as<std::int64_t>());
  e.stream_id = row[8].as<std::string>();
  return e;
}

void prepare_statements(pqxx::connection& c) {
  c.prepare("troupe_read_stream", std::string("SELECT ") + event_columns +
                                      " FROM troupe_events WHERE stream_id = $1 AND "
                                      "stream_version >= $2 ORDER BY stream_version LIMIT $3");
  // Gap-safe: only rows of transactions older than every transaction still
  // in flight (see migration 3 for why that is a prefix of the order).
  c.prepare("troupe_read_all",
            std::string("SELECT ") + event_columns +
                " FROM troupe_events WHERE global_position > $1 AND transaction_id < "
                "pg_snapshot_xmin(pg_current_snapshot()) ORDER BY global_position LIMIT $2");
  c.prepare("troupe_load_checkpoint", "SELECT position FROM troupe_checkpoints WHERE name = $1");
  c.prepare(
      "troupe_save_checkpoint",
      "INSERT INTO troupe_checkpoints AS c (name, position, updated_at) VALUES ($1, $2, now()) "
      "ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = now() "
      "WHERE c.position < excluded.position");
  // Stream heads, many streams per round trip (aggregate activations).
  c.prepare("troupe_load_snapshots",
            "SELECT stream_id, stream_version, schema_version, state::text FROM troupe_snapshots "
            "WHERE stream_id = ANY($1::text[])");
  c.prepare("troupe_read_stream_heads",
            std::string("SELECT e.* FROM unnest($1::text[], $2::bigint[]) AS w(sid, after_version) "
                        "CROSS JOIN LATERAL (SELECT ") +
                event_columns +
                " FROM troupe_events WHERE stream_id = w.sid AND stream_version > "
                "w.after_version ORDER BY stream_version LIMIT $3) e");
  c.prepare("troupe_load_snapshot",
            "SELECT stream_version, schema_version, state::text FROM troupe_snapshots "
            "WHERE stream_id = $1");
  c.prepare("troupe_save_snapshot",
            "INSERT INTO troupe_snapshots AS s (stream_id, stream_version, schema_version, "
            "state, written_at) VALUES ($1, $2, $3, $4::json, now()) ON CONFLICT (stream_id) "
            "DO UPDATE SET stream_version = excluded.stream_version, schema_version = "
            "excluded.schema_version, state = excluded.state, written_at = now() "
            "WHERE s.stream_version < excluded.stream_version");
}

std::unique_ptr<pqxx::connection> open_connection(const std::string& url) {
  auto c = std::make_unique<pqxx::connection>(with_connect_timeout(url));
  // Never reconnect silently behind our back: a new session would not hold
  // our prepared statements, and a lost session must be seen as lost.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  c->inhibit_reactivation(true);  // deprecated in 6.4, yet reactivation is still on by default
#pragma GCC diagnostic pop
  prepare_statements(*c);
  return c;
}

/// libpq messages can quote the connection string; keep passwords out of logs.
std::string clean_message(std::string message) {
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  auto pos = message.find("password=");
  if (pos != std::string::npos) message = message.substr(0, pos) + "password=***";
  return message;
}

struct pending_append {
  append_request request;
  event_store::append_callback done;
  append_result result;
  // Formatted by the caller (an actor thread), off the writer's path.
  std::string metadata_text;
  std::int64_t recorded_micros = 0;
};

/// A read (or snapshot write) for the reader pool: `run` does the database
/// work and returns the delivery of its result, which the reader calls
/// outside its error handling so a callback is never invoked twice.
struct read_job {
  std::function<std::function<void()>(pqxx::connection&)> run;
  std::function<void(store_errc, std::string)> fail;
};

struct pending_head {
  std::string stream_id;
  std::size_t max_count = 0;
  event_store::head_callback done;
};

/// At most this many stream heads per query: activations arriving together
/// (a burst of new orders) share one round trip instead of two each.
constexpr std::size_t max_heads_per_query = 256;

/// The highest version this store saw committed, for a bounded set of
/// recent streams. A stream never loses events, so every version up to that
/// one exists, and an append expecting one of them needs no existence check
/// in the database (which cost a fifth of the server's time per batch). The
/// unique key still rejects a writer that fell behind. Direct-mapped: a
/// stream whose slot another took is simply checked again.
class committed_versions {
 public:
  explicit committed_versions(std::size_t slots) : slots_(slots) {}

  bool exists(const std::string& stream, std::int64_t version) const {
    const auto& s = slots_[index(stream)];
    return s.version >= version && s.stream == stream;
  }

  void record(const std::string& stream, std::int64_t version) {
    auto& s = slots_[index(stream)];
    if (s.stream != stream) {
      s.stream.assign(stream);  // reuses the slot's buffer when it fits
      s.version = version;
    } else {
      s.version = std::max(s.version, version);
    }
  }

 private:
  struct slot {
    std::string stream;
    std::int64_t version = 0;
  };
  std::size_t index(const std::string& stream) const {
    return std::hash<std::string>{}(stream) % slots_.size();
  }
  std::vector<slot> slots_;
};

/// 65,536 streams: 2.5 MiB of slots plus the ids longer than 15 bytes
/// (~3 MiB more when full); enough for every aggregate busy at once.
constexpr std::size_t committed_version_slots = 1 << 16;

}  // namespace

struct postgres_event_store::impl {
  postgres_store_options options;
  std::shared_ptr<spdlog::logger> log;

  std::mutex append_mutex;
  std::condition_variable append_ready;
  std::deque<pending_append> appends;

  std::mutex read_mutex;
  std::condition_variable read_ready;
  std::deque<read_job> reads;
  std::deque<pending_head> heads;  // guarded by read_mutex

  bool stopping = false;                              // guarded by both mutexes (set under each)
  int busy_writers = 0;                               // guarded by append_mutex
  std::unordered_set<std::string> streams_in_flight;  // guarded by append_mutex
  std::mutex committed_mutex;
  committed_versions committed{committed_version_slots};  // guarded by committed_mutex
  std::vector<std::thread> threads;

  std::atomic<std::int64_t> batches{0}, batched_commands{0}, appended_events{0}, conflicts{0},
      rejected_inputs{0}, connection_failures{0}, version_checks{0}, build_us{0}, execute_us{0},
      commit_us{0}, deliver_us{0};

  static std::int64_t micros_since(std::chrono::steady_clock::time_point& mark) {
    auto now = std::chrono::steady_clock::now();
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(now - mark).count();
    mark = now;
    return us;
  }

  // -- writers ------------------------------------------------------------

  /// Takes the next batch: at most one command per stream (a later command
  /// of the same stream may depend on the earlier one's rows, which the
  /// batch's single statement would not see), up to the size limit.
  void take_batch(std::vector<pending_append>& batch) {
    std::unordered_set<std::string_view> streams;
    std::deque<pending_append> deferred;
    while (!appends.empty() && batch.size() < options.batch_max_commands) {
      auto& next = appends.front();
      // A stream another writer is appending to waits too: its next append
      // may expect the version that batch is about to commit.
      if (streams.contains(next.request.stream_id) ||
          streams_in_flight.contains(next.request.stream_id)) {
        deferred.push_back(std::move(next));
      } else {
        batch.push_back(std::move(next));
        streams.insert(batch.back().request.stream_id);
      }
      appends.pop_front();
    }
    while (!deferred.empty()) {
      appends.push_front(std::move(deferred.back()));
      deferred.pop_back();
    }
    for (const auto& p : batch) streams_in_flight.insert(p.request.stream_id);
  }

  /// The batch is answered: its streams may be taken by any writer again.
  void release_streams(const std::vector<pending_append>& batch) {
    {
      std::lock_guard lock{append_mutex};
      --busy_writers;
      for (const auto& p : batch) streams_in_flight.erase(p.request.stream_id);
    }
    append_ready.notify_all();
  }

  void fail_all(std::vector<pending_append>& batch, store_errc error, const std::string& message) {
    for (auto& p : batch) {
      p.result = append_result{};
      p.result.error = error;
      p.result.message = message;
    }
  }

  static void deliver(std::vector<pending_append>& batch) {
    for (auto& p : batch) p.done(std::move(p.result));
    batch.clear();
  }

  /// Appends a batch; fills each command's result. Fast path: one COPY of
  /// all rows after reserving their positions, then a check that every
  /// command's expected version exists. A unique-key violation (a stale
  /// writer, a duplicate event id) or a failed check aborts it, and the
  /// batch is redone the careful way, where only the offenders fail.
  /// Throws postgres::pg_error (connection_lost: the outcome is unknown).
  void run_batch(postgres::pg_connection& conn, std::vector<pending_append>& batch) {
    try {
      if (copy_batch(conn, batch)) return;
    } catch (const postgres::pg_error& e) {
      if (e.connection_lost || !e.sqlstate.starts_with("23")) throw;
    }
    careful_batch(conn, batch);
  }

  /// The version each command appends after: its expected version, or for
  /// `any` the stream's current version read in this transaction.
  static std::vector<std::int64_t> base_versions(postgres::pg_connection& conn,
                                                 const std::vector<pending_append>& batch) {
    std::vector<std::int64_t> base(batch.size(), 0);
    array_literal any_streams;
    bool has_any = false;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const auto& expected = batch[i].request.expected;
      if (expected.which() == expected_version::kind::any) {
        any_streams.quoted(batch[i].request.stream_id);
        has_any = true;
      } else {
        base[i] = expected.version().value;
      }
    }
    if (has_any) {
      std::unordered_map<std::string, std::int64_t> current;
      auto rows = conn.exec_params(versions_sql, {any_streams.finish()});
      for (int r = 0; r < rows.size(); ++r)
        current[std::string(rows.text(r, 0))] = rows.integer(r, 1);
      for (std::size_t i = 0; i < batch.size(); ++i)
        if (batch[i].request.expected.which() == expected_version::kind::any)
          base[i] = current[batch[i].request.stream_id];
    }
    return base;
  }

  static std::size_t row_count(const std::vector<pending_append>& batch) {
    std::size_t rows = 0;
    for (const auto& p : batch) rows += p.request.events.size();
    return rows;
  }

  /// Records success for every command whose `inserted` equals its event
  /// count (rows hold consecutive positions from `first_position` in batch
  /// order) and the reason for the others.
  void finish_results(std::vector<pending_append>& batch, const std::vector<std::int64_t>& base,
                      const std::vector<std::int64_t>& inserted,
                      const std::vector<std::int64_t>& last_position,
                      std::unordered_map<std::string, std::int64_t>& actual,
                      const std::unordered_set<std::size_t>& duplicate_ids = {}) {
    std::int64_t events = 0, conflicted = 0, rejected = 0;
    std::lock_guard committed_lock{committed_mutex};
    for (std::size_t i = 0; i < batch.size(); ++i) {
      auto& p = batch[i];
      auto n = static_cast<std::int64_t>(p.request.events.size());
      p.result = append_result{};
      if (inserted[i] == n) {
        p.result.first_version = stream_version{base[i] + 1};
        p.result.last_version = stream_version{base[i] + n};
        p.result.actual_version = p.result.last_version;
        p.result.last_position = global_position{last_position[i]};
        committed.record(p.request.stream_id, base[i] + n);
        events += n;
        continue;
      }
      auto now = actual[p.request.stream_id];
      p.result.actual_version = stream_version{now};
      if (now != base[i]) {
        p.result.error = store_errc::version_conflict;
        p.result.message = "stream " + p.request.stream_id + " is at version " +
                           std::to_string(now) + ", expected " + std::to_string(base[i]);
        ++conflicted;
      } else if (duplicate_ids.contains(i)) {
        p.result.error = store_errc::invalid_input;
        p.result.message = "an event id of this append already exists in the store";
        ++rejected;
      } else {
        // The stream is where the command expected, yet its rows did not go
        // in: another writer's append to it landed meanwhile.
        p.result.error = store_errc::version_conflict;
        p.result.message = "stream " + p.request.stream_id + " changed during the append; retry";
        ++conflicted;
      }
    }
    batches.fetch_add(1, std::memory_order_relaxed);
    batched_commands.fetch_add(static_cast<std::int64_t>(batch.size()), std::memory_order_relaxed);
    appended_events.fetch_add(events, std::memory_order_relaxed);
    conflicts.fetch_add(conflicted, std::memory_order_relaxed);
    rejected_inputs.fetch_add(rejected, std::memory_order_relaxed);
  }

  /// The fast path. Returns false (nothing written) when a command's
  /// expected version is not in the store. Four round trips: BEGIN with the
  /// position reservation, COPY (start; all rows in one buffer; end), the
  /// version check with COMMIT.
  bool copy_batch(postgres::pg_connection& conn, std::vector<pending_append>& batch) {
    auto mark = std::chrono::steady_clock::now();
    auto rows = row_count(batch);
    try {
      auto first_position =
          conn.exec("BEGIN; SELECT troupe_reserve_positions(" + std::to_string(rows) + ")")
              .integer(0, 0);
      auto base = base_versions(conn, batch);
      std::vector<std::int64_t> inserted(batch.size()), last_position(batch.size());
      array_literal guard_streams, guard_versions;
      bool has_guard = false;
      std::vector<bool> known(batch.size(), false);
      {
        std::lock_guard lock{committed_mutex};
        for (std::size_t i = 0; i < batch.size(); ++i)
          known[i] = base[i] > 0 && committed.exists(batch[i].request.stream_id, base[i]);
      }
      std::size_t bytes = 0;
      for (const auto& p : batch)
        for (const auto& e : p.request.events)
          bytes += e.data.size() + p.metadata_text.size() + p.request.stream_id.size() +
                   e.type.size() + 96;
      postgres::binary_copy copy;
      copy.reserve(bytes + 32);
      auto position = first_position;
      for (std::size_t i = 0; i < batch.size(); ++i) {
        const auto& p = batch[i];
        const auto& r = p.request;
        auto version = base[i];
        for (const auto& e : r.events) {
          copy.row(9);
          copy.int8(position++);                // global_position
          copy.text(r.stream_id);               // stream_id
          copy.int8(++version);                 // stream_version
          copy.uuid(e.event_id);                // event_id (validated, normalised)
          copy.text(e.type);                    // event_type
          copy.int4(e.schema_version);          // schema_version
          copy.text(e.data);                    // data (json, validated)
          copy.text(p.metadata_text);           // metadata (json)
          copy.timestamptz(p.recorded_micros);  // recorded_at
        }
        inserted[i] = static_cast<std::int64_t>(r.events.size());
        last_position[i] = position - 1;
        if (base[i] > 0 && !known[i]) {
          guard_streams.quoted(r.stream_id);
          guard_versions.number(base[i]);
          version_checks.fetch_add(1, std::memory_order_relaxed);
          has_guard = true;
        }
      }
      build_us.fetch_add(micros_since(mark), std::memory_order_relaxed);
      conn.copy_in(
          "COPY troupe_events (global_position, stream_id, stream_version, event_id, event_type, "
          "schema_version, data, metadata, recorded_at) FROM STDIN (FORMAT binary)",
          copy.finish());
      execute_us.fetch_add(micros_since(mark), std::memory_order_relaxed);
      // The unique key stops a stream from being written twice at a
      // version; the check stops a write that would leave a gap below it.
      // It raises (TR001) when a version is missing, so COMMIT never runs.
      if (has_guard)
        conn.exec("SELECT troupe_check_versions(" + conn.quote(guard_streams.finish()) +
                  "::text[], " + conn.quote(guard_versions.finish()) + "::bigint[]); COMMIT");
      else
        conn.exec("COMMIT");
      commit_us.fetch_add(micros_since(mark), std::memory_order_relaxed);
      std::unordered_map<std::string, std::int64_t> none;
      finish_results(batch, base, inserted, last_position, none);
      return true;
    } catch (const postgres::pg_error& e) {
      if (e.connection_lost) throw;  // the outcome is unknown
      // pg_advisory_unlock_all: a cancelled reservation must not leave the
      // positions lock held by this session.
      conn.exec("ROLLBACK; SELECT pg_advisory_unlock_all()");
      if (e.sqlstate == "TR001") return false;
      throw;
    }
  }

  /// The careful path: troupe_append_events skips rows that cannot go in;
  /// commands missing rows are then removed whole and explained.
  void careful_batch(postgres::pg_connection& conn, std::vector<pending_append>& batch) {
    conn.exec("BEGIN");
    try {
      careful_batch_in_transaction(conn, batch);
    } catch (const postgres::pg_error& e) {
      if (!e.connection_lost) conn.exec("ROLLBACK; SELECT pg_advisory_unlock_all()");
      throw;
    }
  }

  void careful_batch_in_transaction(postgres::pg_connection& conn,
                                    std::vector<pending_append>& batch) {
    auto base = base_versions(conn, batch);
    array_literal streams, versions, expected, ids, types, schemas, data, metadata, recorded;
    auto total_rows = row_count(batch);
    for (std::size_t i = 0; i < batch.size(); ++i) {
      auto& r = batch[i].request;
      const auto& meta = batch[i].metadata_text;
      auto micros = to_micros(r.recorded_at);
      std::int64_t k = 0;
      for (auto& e : r.events) {
        streams.quoted(r.stream_id);
        versions.number(base[i] + k + 1);
        expected.number(k == 0 ? base[i] : -1);
        ids.raw(e.event_id);
        types.quoted(e.type);
        schemas.number(e.schema_version);
        data.quoted(e.data);
        metadata.quoted(meta);
        recorded.number(micros);
        ++k;
      }
    }
    auto outcome = conn.exec_params(
        "SELECT first_position, inserted FROM troupe_append_events($1::text[], $2::bigint[], "
        "$3::bigint[], $4::uuid[], $5::text[], $6::int[], $7::text[], $8::text[], $9::bigint[])",
        {streams.finish(), versions.finish(), expected.finish(), ids.finish(), types.finish(),
         schemas.finish(), data.finish(), metadata.finish(), recorded.finish()});
    auto first_position = outcome.integer(0, 0);

    // Row k of the batch was given position first_position + k whether or
    // not it went in.
    std::unordered_set<std::int64_t> present;
    {
      // Rows this batch wrote, by the positions it reserved: never by event
      // id, which could name a row written long ago.
      auto rows = conn.exec_params(
          "SELECT global_position FROM troupe_events WHERE global_position BETWEEN $1 AND $2",
          {std::to_string(first_position),
           std::to_string(first_position + static_cast<std::int64_t>(total_rows) - 1)});
      for (int r = 0; r < rows.size(); ++r) present.insert(rows.integer(r, 0));
    }
    std::vector<std::int64_t> inserted(batch.size(), 0), last_position(batch.size(), 0);
    auto position = first_position;
    for (std::size_t i = 0; i < batch.size(); ++i)
      for (std::size_t k = 0; k < batch[i].request.events.size(); ++k, ++position)
        if (present.contains(position)) {
          ++inserted[i];
          last_position[i] = position;
        }

    // Commands with missing rows fail as a whole: remove what they did write
    // (invisible to others until commit) and find out why.
    array_literal partial_positions, failed_streams;
    bool has_partial = false, has_failed = false;
    position = first_position;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      auto n = static_cast<std::int64_t>(batch[i].request.events.size());
      auto command_first = position;
      position += n;
      if (inserted[i] == n) continue;
      has_failed = true;
      failed_streams.quoted(batch[i].request.stream_id);
      for (auto p = command_first; p < position; ++p)
        if (present.contains(p)) {
          partial_positions.number(p);
          has_partial = true;
        }
    }
    std::unordered_map<std::string, std::int64_t> actual;
    if (has_partial)
      conn.exec_params("DELETE FROM troupe_events WHERE global_position = ANY($1::bigint[])",
                       {partial_positions.finish()});
    std::unordered_set<std::size_t> duplicate_ids;
    if (has_failed) {
      auto rows = conn.exec_params(versions_sql, {failed_streams.finish()});
      for (int r = 0; r < rows.size(); ++r)
        actual[std::string(rows.text(r, 0))] = rows.integer(r, 1);
      // Failed commands whose event ids are already stored (by anyone).
      array_literal failed_ids;
      std::unordered_map<std::string, std::size_t> command_of_id;
      for (std::size_t i = 0; i < batch.size(); ++i)
        if (inserted[i] != static_cast<std::int64_t>(batch[i].request.events.size()))
          for (const auto& e : batch[i].request.events) {
            failed_ids.raw(e.event_id);
            command_of_id.emplace(e.event_id, i);
          }
      auto existing = conn.exec_params(
          "SELECT event_id::text FROM troupe_events WHERE event_id = ANY($1::uuid[])",
          {failed_ids.finish()});
      for (int r = 0; r < existing.size(); ++r)
        if (auto it = command_of_id.find(std::string(existing.text(r, 0)));
            it != command_of_id.end())
          duplicate_ids.insert(it->second);
    }
    conn.exec("COMMIT");
    finish_results(batch, base, inserted, last_position, actual, duplicate_ids);
  }

  /// A writer lingering while another is mid-batch waits for this many
  /// queued appends (or its linger time).
  std::size_t linger_target() const {
    return std::max<std::size_t>(1, options.batch_max_commands / 8);
  }

  void writer_loop() {
    std::unique_ptr<postgres::pg_connection> conn;
    std::vector<pending_append> batch;
    batch.reserve(options.batch_max_commands);
    while (true) {
      {
        std::unique_lock lock{append_mutex};
        append_ready.wait(lock, [&] { return stopping || !appends.empty(); });
        if (appends.empty()) return;  // stopping and drained
        // While another writer is mid-batch, a few queued appends are better
        // joined by more than sent alone: every transaction pays its round
        // trips and its commit flush whatever its size. Idle store: no wait.
        auto linger = options.batch_linger;
        if (busy_writers > 0 && appends.size() < linger_target())
          linger = std::max(linger, std::chrono::microseconds{400});
        if (linger.count() > 0 && appends.size() < options.batch_max_commands && !stopping)
          append_ready.wait_for(lock, linger,
                                [&] { return stopping || appends.size() >= linger_target(); });
        take_batch(batch);
        // Work left behind (a full batch, streams in flight): another
        // writer may take it; append() wakes only on the first and the
        // linger_target-th queued append.
        if (!appends.empty()) append_ready.notify_one();
        if (batch.empty()) {
          // Taken by another writer while we lingered, or every queued
          // append waits for a stream in flight: wait for a batch to end.
          append_ready.wait_for(lock, std::chrono::milliseconds{2});
          continue;
        }
        ++busy_writers;
      }
      if (!conn) {
        try {
          conn = std::make_unique<postgres::pg_connection>(with_connect_timeout(options.url));
        } catch (const std::exception& e) {
          connection_failures.fetch_add(1, std::memory_order_relaxed);
          auto message = "PostgreSQL unreachable: " + clean_message(e.what());
          log->warn("event store writer: {}", message);
          // Everything waiting would meet the same fate: answer it now
          // rather than let callers wait out the reconnect attempts.
          release_streams(batch);
          {
            std::lock_guard lock{append_mutex};
            while (!appends.empty()) {
              batch.push_back(std::move(appends.front()));
              appends.pop_front();
            }
          }
          fail_all(batch, store_errc::unavailable, message);
          deliver(batch);
          std::this_thread::sleep_for(options.reconnect_backoff);
          continue;
        }
      }
      try {
        run_batch(*conn, batch);
      } catch (const postgres::pg_error& e) {
        if (e.connection_lost) {
          conn.reset();
          connection_failures.fetch_add(1, std::memory_order_relaxed);
          log->warn("event store writer lost its connection: {}", clean_message(e.what()));
          fail_all(batch, store_errc::unavailable,
                   "connection to PostgreSQL lost during the append; its outcome is unknown");
        } else {
          // A row the database refused (validation should have caught it):
          // isolate it so only its own command fails.
          log->warn("batch of {} failed ({}); retrying its commands one by one", batch.size(),
                    clean_message(e.what()));
          run_one_by_one(conn, batch);
        }
      } catch (const std::exception& e) {
        // A row the database refused (validation should have caught it):
        // isolate it so only its own command fails.
        log->warn("batch of {} failed ({}); retrying its commands one by one", batch.size(),
                  clean_message(e.what()));
        run_one_by_one(conn, batch);
      }
      release_streams(batch);
      auto mark = std::chrono::steady_clock::now();
      deliver(batch);
      deliver_us.fetch_add(micros_since(mark), std::memory_order_relaxed);
    }
  }

  void run_one_by_one(std::unique_ptr<postgres::pg_connection>& conn,
                      std::vector<pending_append>& batch) {
    for (auto& p : batch) {
      std::vector<pending_append> single;
      single.push_back(std::move(p));
      try {
        if (!conn) throw postgres::pg_error("not connected", "", true);
        run_batch(*conn, single);
      } catch (const postgres::pg_error& e) {
        if (e.connection_lost) {
          conn.reset();
          fail_all(single, store_errc::unavailable,
                   "connection to PostgreSQL lost during the append; its outcome is unknown");
          p = std::move(single.front());
          continue;
        }
        // Data errors (class 22) and constraint violations (23) are the
        // command's own fault; anything else (read-only after a failover,
        // disk full, timeouts) is the database's, and worth retrying.
        const auto& state = e.sqlstate;
        if (state.starts_with("22") || state.starts_with("23")) {
          rejected_inputs.fetch_add(1, std::memory_order_relaxed);
          fail_all(single, store_errc::invalid_input,
                   "PostgreSQL refused the append: " + clean_message(e.what()));
        } else {
          conn.reset();
          fail_all(single, store_errc::unavailable,
                   "PostgreSQL could not take the append: " + clean_message(e.what()));
        }
      } catch (const std::exception& e) {
        conn.reset();
        fail_all(single, store_errc::unavailable,
                 "the append failed and its outcome is unknown: " + clean_message(e.what()));
      }
      p = std::move(single.front());
    }
  }

  // -- readers ------------------------------------------------------------

  /// Snapshots and first event pages of many streams, in two statements.
  static std::function<void()> load_heads(pqxx::connection& c, std::vector<pending_head>& batch) {
    std::unordered_map<std::string, snapshot_record> snapshots;
    std::unordered_map<std::string, std::vector<recorded_event>> tails;
    {
      pqxx::nontransaction tx(c);
      array_literal ids;
      std::size_t page = 0;
      for (const auto& h : batch) {
        ids.quoted(h.stream_id);
        page = std::max(page, h.max_count);
      }
      auto id_list = ids.finish();
      for (const auto& row : tx.exec_prepared("troupe_load_snapshots", id_list)) {
        auto id = row[0].as<std::string>();
        snapshots[id] = snapshot_record{id, stream_version{row[1].as<std::int64_t>()},
                                        row[2].as<int>(), row[3].as<std::string>()};
      }
      array_literal after;
      for (const auto& h : batch) {
        auto it = snapshots.find(h.stream_id);
        after.number(it == snapshots.end() ? 0 : it->second.version.value);
      }
      for (const auto& row :
           tx.exec_prepared("troupe_read_stream_heads", id_list, after.finish(), row_limit(page))) {
        auto e = event_from_row(row);
        tails[e.stream_id].push_back(std::move(e));
      }
    }
    return [batch = std::move(batch), snapshots = std::move(snapshots),
            tails = std::move(tails)]() mutable {
      for (auto& h : batch) {
        stream_head_result r;
        if (auto s = snapshots.find(h.stream_id); s != snapshots.end())
          r.snapshot.snapshot = s->second;
        if (auto t = tails.find(h.stream_id); t != tails.end()) {
          r.tail.events = t->second;
          if (r.tail.events.size() > h.max_count) r.tail.events.resize(h.max_count);
        }
        h.done(std::move(r));
      }
    };
  }

  void reader_loop() {
    std::unique_ptr<pqxx::connection> conn;
    bool heads_first = true;
    while (true) {
      read_job job;
      {
        std::unique_lock lock{read_mutex};
        read_ready.wait(lock, [&] { return stopping || !reads.empty() || !heads.empty(); });
        if (reads.empty() && heads.empty()) return;
        // Alternate between the two queues so neither starves the other.
        heads_first = !heads_first;
        if (!heads.empty() && (heads_first || reads.empty())) {
          auto batch = std::make_shared<std::vector<pending_head>>();
          while (!heads.empty() && batch->size() < max_heads_per_query) {
            batch->push_back(std::move(heads.front()));
            heads.pop_front();
          }
          job = read_job{[batch](pqxx::connection& c) { return load_heads(c, *batch); },
                         [batch](store_errc e, std::string m) {
                           for (auto& h : *batch)
                             h.done(stream_head_result{snapshot_result{e, m, std::nullopt}, {}});
                         }};
        } else {
          job = std::move(reads.front());
          reads.pop_front();
        }
      }
      std::function<void()> deliver;
      try {
        if (!conn) conn = open_connection(options.url);
        deliver = job.run(*conn);
      } catch (const pqxx::sql_error& e) {
        deliver = [&job, message = clean_message(e.what())] {
          job.fail(store_errc::unavailable, "PostgreSQL read failed: " + message);
        };
      } catch (const std::exception& e) {
        // Broken or in an unknown state: start over with a new connection.
        conn.reset();
        connection_failures.fetch_add(1, std::memory_order_relaxed);
        deliver = [&job, message = clean_message(e.what())] {
          job.fail(store_errc::unavailable, "PostgreSQL unreachable: " + message);
        };
      }
      try {
        deliver();
      } catch (const std::exception& e) {
        log->error("a store read callback threw: {}", e.what());
      }
    }
  }

  void submit_read(read_job job) {
    bool stopped;
    {
      std::lock_guard lock{read_mutex};
      stopped = stopping;
      if (!stopped && reads.size() < options.max_queued_reads) {
        reads.push_back(std::move(job));
        read_ready.notify_one();
        return;
      }
    }
    job.fail(stopped ? store_errc::unavailable : store_errc::overloaded,
             stopped ? "event store is stopped" : "event store read queue is full");
  }
};

postgres_event_store::postgres_event_store(postgres_store_options options) : impl_(new impl) {
  auto& im = *impl_;
  im.options = std::move(options);
  im.log = im.options.log ? im.options.log : spdlog::default_logger();
  if (im.options.writer_connections == 0 || im.options.reader_connections == 0 ||
      im.options.batch_max_commands == 0)
    throw std::invalid_argument("postgres store: connection and batch counts must be >= 1");
  try {
    pqxx::connection conn(with_connect_timeout(im.options.url));
    auto report = postgres::migrate(conn);
    for (const auto& applied : report.applied)
      im.log->info("schema migration applied: {}", applied);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot prepare the PostgreSQL event store: " +
                             clean_message(e.what()));
  }
  for (std::size_t i = 0; i < im.options.writer_connections; ++i)
    im.threads.emplace_back([&im] {
      pthread_setname_np(pthread_self(), "troupe.pg.write");
      im.writer_loop();
    });
  for (std::size_t i = 0; i < im.options.reader_connections; ++i)
    im.threads.emplace_back([&im] {
      pthread_setname_np(pthread_self(), "troupe.pg.read");
      im.reader_loop();
    });
}

postgres_event_store::~postgres_event_store() { stop(); }

void postgres_event_store::stop() {
  auto& im = *impl_;
  {
    std::scoped_lock lock{im.append_mutex, im.read_mutex};
    if (im.stopping) return;
    im.stopping = true;
  }
  im.append_ready.notify_all();
  im.read_ready.notify_all();
  for (auto& t : im.threads) t.join();
}

void postgres_event_store::append(append_request request, append_callback done) {
  auto& im = *impl_;
  if (auto problem = validate_append(request, im.options.max_event_bytes)) {
    im.rejected_inputs.fetch_add(1, std::memory_order_relaxed);
    append_result r;
    r.error = store_errc::invalid_input;
    r.message = *problem;
    done(std::move(r));
    return;
  }
  for (auto& e : request.events) normalise_uuid(e.event_id);
  pending_append pending{std::move(request), std::move(done), {}, {}, {}};
  pending.metadata_text = metadata_json(pending.request.metadata);
  pending.recorded_micros = to_micros(pending.request.recorded_at);
  bool stopped;
  {
    std::lock_guard lock{im.append_mutex};
    stopped = im.stopping;
    if (!stopped && im.appends.size() < im.options.max_queued_appends) {
      im.appends.push_back(std::move(pending));
      // Wake writers only when one could act: an idle one when work
      // appears, a lingering one when its batch is full enough. Waking one
      // per append cost a context switch per command.
      auto queued = im.appends.size();
      if (queued == 1 || queued == im.linger_target()) im.append_ready.notify_all();
      return;
    }
  }
  append_result r;
  r.error = stopped ? store_errc::unavailable : store_errc::overloaded;
  r.message = stopped ? "event store is stopped" : "event store append queue is full";
  pending.done(std::move(r));
}

namespace {

/// A reader job running one prepared statement that returns events.
template <class... Params>
read_job event_query(const char* statement, event_store::read_callback done, Params... params) {
  auto shared_done = std::make_shared<event_store::read_callback>(std::move(done));
  return read_job{
      [statement, shared_done, params...](pqxx::connection& c) {
        read_result result;
        {
          pqxx::nontransaction tx(c);  // one statement: no BEGIN/COMMIT round trips
          auto rows = tx.exec_prepared(statement, params...);
          result.events.reserve(rows.size());
          for (const auto& row : rows) result.events.push_back(event_from_row(row));
        }
        return std::function<void()>([shared_done, result = std::move(result)]() mutable {
          (*shared_done)(std::move(result));
        });
      },
      [shared_done](store_errc e, std::string m) {
        (*shared_done)(read_result{e, std::move(m), {}});
      }};
}

}  // namespace

void postgres_event_store::read_stream(std::string stream_id, stream_version from,
                                       std::size_t max_count, read_callback done) {
  impl_->submit_read(event_query("troupe_read_stream", std::move(done), std::move(stream_id),
                                 from.value, row_limit(max_count)));
}

void postgres_event_store::read_all(global_position after, std::size_t max_count,
                                    read_callback done) {
  impl_->submit_read(
      event_query("troupe_read_all", std::move(done), after.value, row_limit(max_count)));
}

void postgres_event_store::load_snapshot(std::string stream_id, snapshot_callback done) {
  auto shared_done = std::make_shared<snapshot_callback>(std::move(done));
  impl_->submit_read(
      read_job{[stream_id = std::move(stream_id), shared_done](pqxx::connection& c) {
                 snapshot_result result;
                 {
                   pqxx::nontransaction tx(c);  // one statement: no BEGIN/COMMIT round trips
                   auto rows = tx.exec_prepared("troupe_load_snapshot", stream_id);
                   if (!rows.empty())
                     result.snapshot =
                         snapshot_record{stream_id, stream_version{rows[0][0].as<std::int64_t>()},
                                         rows[0][1].as<int>(), rows[0][2].as<std::string>()};
                 }
                 return std::function<void()>([shared_done, result = std::move(result)]() mutable {
                   (*shared_done)(std::move(result));
                 });
               },
               [shared_done](store_errc e, std::string m) {
                 (*shared_done)(snapshot_result{e, m, std::nullopt});
               }});
}

void postgres_event_store::load_stream_head(std::string stream_id, std::size_t max_count,
                                            head_callback done) {
  auto& im = *impl_;
  bool stopped;
  {
    std::lock_guard lock{im.read_mutex};
    stopped = im.stopping;
    if (!stopped && im.heads.size() < im.options.max_queued_reads) {
      im.heads.push_back(pending_head{std::move(stream_id), max_count, std::move(done)});
      im.read_ready.notify_one();
      return;
    }
  }
  done(stream_head_result{
      snapshot_result{stopped ? store_errc::unavailable : store_errc::overloaded,
                      stopped ? "event store is stopped" : "event store read queue is full",
                      std::nullopt},
      {}});
}

void postgres_event_store::save_snapshot(snapshot_record snapshot, done_callback done) {
  if (auto problem = validate_stream_id(snapshot.stream_id)) {
    done(store_errc::invalid_input, *problem);
    return;
  }
  auto shared_done = std::make_shared<done_callback>(std::move(done));
  impl_->submit_read(read_job{
      [snapshot = std::move(snapshot), shared_done](pqxx::connection& c) {
        {
          pqxx::work tx(c);
          tx.exec_prepared("troupe_save_snapshot", snapshot.stream_id, snapshot.version.value,
                           snapshot.schema_version, snapshot.state);
          tx.commit();
        }
        return std::function<void()>(
            [shared_done] { (*shared_done)(store_errc::ok, std::string()); });
      },
      [shared_done](store_errc e, std::string m) { (*shared_done)(e, std::move(m)); }});
}

void postgres_event_store::load_checkpoint(std::string name, checkpoint_callback done) {
  auto shared_done = std::make_shared<checkpoint_callback>(std::move(done));
  impl_->submit_read(read_job{[name = std::move(name), shared_done](pqxx::connection& c) {
                                global_position position;
                                {
                                  pqxx::nontransaction tx(c);
                                  auto rows = tx.exec_prepared("troupe_load_checkpoint", name);
                                  if (!rows.empty())
                                    position = global_position{rows[0][0].as<std::int64_t>()};
                                }
                                return std::function<void()>([shared_done, position] {
                                  (*shared_done)(store_errc::ok, std::string(), position);
                                });
                              },
                              [shared_done](store_errc e, std::string m) {
                                (*shared_done)(e, std::move(m), global_position{});
                              }});
}

void postgres_event_store::save_checkpoint(std::string name, global_position position,
                                           done_callback done) {
  if (name.empty() || name.size() > 200) {
    done(store_errc::invalid_input, "checkpoint names are 1..200 characters");
    return;
  }
  auto shared_done = std::make_shared<done_callback>(std::move(done));
  impl_->submit_read(
      read_job{[name = std::move(name), position, shared_done](pqxx::connection& c) {
                 {
                   pqxx::nontransaction tx(c);  // one statement, autocommit
                   tx.exec_prepared("troupe_save_checkpoint", name, position.value);
                 }
                 return std::function<void()>(
                     [shared_done] { (*shared_done)(store_errc::ok, std::string()); });
               },
               [shared_done](store_errc e, std::string m) { (*shared_done)(e, std::move(m)); }});
}

postgres_store_stats postgres_event_store::stats() const {
  const auto& im = *impl_;
  postgres_store_stats s;
  s.batches = im.batches.load(std::memory_order_relaxed);
  s.batched_commands = im.batched_commands.load(std::memory_order_relaxed);
  s.appended_events = im.appended_events.load(std::memory_order_relaxed);
  s.conflicts = im.conflicts.load(std::memory_order_relaxed);
  s.rejected_inputs = im.rejected_inputs.load(std::memory_order_relaxed);
  s.connection_failures = im.connection_failures.load(std::memory_order_relaxed);
  s.version_checks = im.version_checks.load(std::memory_order_relaxed);
  s.build_us = im.build_us.load(std::memory_order_relaxed);
  s.execute_us = im.execute_us.load(std::memory_order_relaxed);
  s.commit_us = im.commit_us.load(std::memory_order_relaxed);
  s.deliver_us = im.deliver_us.load(std::memory_order_relaxed);
  {
    std::lock_guard lock{const_cast<impl&>(im).append_mutex};
    s.queued_appends = static_cast<std::int64_t>(im.appends.size());
  }
  return s;
}

}  // namespace troupe
