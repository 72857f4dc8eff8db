#include "persistence/postgres/migrations.hpp"

#include <pqxx/pqxx>
#include <stdexcept>

namespace troupe::postgres {

namespace {

struct migration {
  int version;
  const char* name;
  const char* sql;
};

// Never edit a migration that has shipped: add a new one.
const migration migrations[] = {
    {1, "create events",
     R"sql(
-- Positions come from this sequence, reserved in blocks by
-- troupe_reserve_positions only. It must keep CACHE 1, and nothing else may
-- draw from it or insert events without that function: gap-safe readers rely
-- on positions following transaction-id order.
CREATE SEQUENCE troupe_events_position_seq AS bigint CACHE 1;
CREATE TABLE troupe_events (
  global_position bigint PRIMARY KEY,
  stream_id text NOT NULL,
  stream_version bigint NOT NULL CHECK (stream_version > 0),
  event_id uuid NOT NULL,
  event_type text NOT NULL,
  schema_version int NOT NULL CHECK (schema_version > 0),
  -- json, not jsonb: stored exactly as written and cheaper to insert; the
  -- runtime decodes events itself.
  data json NOT NULL,
  metadata json NOT NULL,
  recorded_at timestamptz NOT NULL,
  -- The writing transaction: readers of the global order read only below
  -- the oldest transaction still in flight (see troupe_append_events).
  transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
  CONSTRAINT troupe_events_stream_version_key UNIQUE (stream_id, stream_version),
  CONSTRAINT troupe_events_event_id_key UNIQUE (event_id)
);
)sql"},
    {2, "create snapshots, checkpoints and the views schema",
     R"sql(
CREATE TABLE troupe_snapshots (
  stream_id text PRIMARY KEY,
  stream_version bigint NOT NULL,
  schema_version int NOT NULL,
  state json NOT NULL,
  written_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE troupe_checkpoints (
  name text PRIMARY KEY,
  position bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE SCHEMA IF NOT EXISTS troupe_views;
)sql"},
    {3, "create the batch append function",
     R"sql(
-- Gap safety: the transaction id and a block of positions are taken together
-- under an advisory lock, so transaction-id order equals position order
-- across writers, and a reader that reads only rows with transaction_id <
-- pg_snapshot_xmin(pg_current_snapshot()) reads a prefix of the final order.
-- The lock covers only that reservation; inserts and commits of concurrent
-- batches run in parallel. Every writer of troupe_events must reserve its
-- positions this way.
CREATE FUNCTION troupe_reserve_positions(n bigint) RETURNS bigint
  LANGUAGE plpgsql AS $fn$
DECLARE
  first_position bigint;
BEGIN
  PERFORM pg_advisory_lock(7262700);
  BEGIN
    PERFORM pg_current_xact_id();
    first_position := nextval('troupe_events_position_seq');
    IF n > 1 THEN
      PERFORM setval('troupe_events_position_seq', first_position + n - 1);
    END IF;
  EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM pg_advisory_unlock(7262700);
    RAISE;
  END;
  PERFORM pg_advisory_unlock(7262700);
  RETURN first_position;
END
$fn$;

-- The fast append path's check that each command's expected version
-- exists: raises TR001 naming the first missing one, which aborts the
-- transaction (the caller then redoes the batch the careful way).
CREATE FUNCTION troupe_check_versions(p_stream text[], p_version bigint[]) RETURNS void
  LANGUAGE plpgsql
  -- plpgsql, not sql, so the plan is cached per connection; no sequential
  -- scans (see troupe_append_events).
  SET enable_seqscan = off
  AS $fn$
DECLARE
  missing text;
BEGIN
  SELECT g.s || ' at ' || g.v INTO missing FROM unnest(p_stream, p_version) AS g(s, v)
  WHERE (SELECT 1 FROM troupe_events p
         WHERE p.stream_id = g.s AND p.stream_version = g.v LIMIT 1) IS NULL
  LIMIT 1;
  IF missing IS NOT NULL THEN
    RAISE EXCEPTION USING ERRCODE = 'TR001', MESSAGE = 'expected version missing: ' || missing;
  END IF;
END
$fn$;

-- The careful append path, used when the fast path (COPY, then a check of
-- expected versions) finds a conflict in a batch: rows of many commands, in
-- order; a command's first row carries its expected version in p_expected
-- and goes in only if the stream is exactly there (the previous version
-- exists; the unique key rejects a stale writer). Rows that cannot go in are
-- skipped, not raised, so one command's conflict never fails its batch-mates.
-- Returns the first reserved position and how many rows went in; row k
-- (1-based) was given position first + k - 1.
CREATE FUNCTION troupe_append_events(
    p_stream text[], p_version bigint[], p_expected bigint[], p_event_id uuid[],
    p_type text[], p_schema int[], p_data text[], p_metadata text[],
    p_recorded_micros bigint[], OUT first_position bigint, OUT inserted bigint)
  LANGUAGE plpgsql
  -- Plans are cached per connection. The version guard is a LIMIT 1 scalar
  -- subquery, not EXISTS, because PostgreSQL may plan EXISTS as a hashed
  -- subplan over the whole table when the table is small (as at start-up)
  -- and keep that plan while the table grows. No sequential scans either.
  SET enable_seqscan = off
  AS $fn$
BEGIN
  first_position := troupe_reserve_positions(cardinality(p_stream));
  INSERT INTO troupe_events
    (global_position, stream_id, stream_version, event_id, event_type, schema_version, data,
     metadata, recorded_at)
  SELECT first_position + i.k - 1, i.s, i.v, i.id, i.t, i.sv, i.d::json, i.m::json,
         timestamptz 'epoch' + i.r * interval '1 microsecond'
  FROM unnest(p_stream, p_version, p_expected, p_event_id, p_type, p_schema, p_data,
              p_metadata, p_recorded_micros) WITH ORDINALITY AS i(s, v, x, id, t, sv, d, m, r, k)
  WHERE i.x <= 0
     OR (SELECT 1 FROM troupe_events p
         WHERE p.stream_id = i.s AND p.stream_version = i.x LIMIT 1) IS NOT NULL
  ON CONFLICT DO NOTHING;
  GET DIAGNOSTICS inserted = ROW_COUNT;
END
$fn$;
)sql"},
    {4, "create the projection registry and dead letters",
     R"sql(
-- Which version of each projection's code built its live tables.
CREATE TABLE troupe_projections (
  name text PRIMARY KEY,
  version int NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  rebuilt_at timestamptz
);
-- Events a consumer could not process after its retries: kept whole (the
-- data as text, since invalid JSON may be why it failed), listed and
-- replayed by `troupe dead-letters`.
CREATE TABLE troupe_dead_letters (
  id bigserial PRIMARY KEY,
  consumer text NOT NULL,
  event_id text NOT NULL,
  position bigint NOT NULL,
  stream_id text NOT NULL,
  stream_version bigint NOT NULL,
  event_type text NOT NULL,
  schema_version int NOT NULL,
  data text NOT NULL,
  error text NOT NULL,
  attempts int NOT NULL,
  parked_at timestamptz NOT NULL DEFAULT now(),
  replayed_at timestamptz
);
CREATE INDEX troupe_dead_letters_consumer_idx ON troupe_dead_letters (consumer, id);
)sql"},
    {5, "create the saga registry",
     R"sql(
-- Saga instances that are not finished, so a starting node finds them, replays
-- their inputs (their own event streams) and re-arms their timeouts. A row
-- is written before the event that created the instance is acknowledged.
CREATE TABLE troupe_sagas (
  saga text NOT NULL,
  correlation_id text NOT NULL,
  status text NOT NULL,
  finished boolean NOT NULL,
  next_wakeup_ms bigint,
  started_ms bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (saga, correlation_id)
);
CREATE INDEX troupe_sagas_open_idx ON troupe_sagas (saga) WHERE NOT finished;
)sql"},
    {6, "create the HTTP request outcomes",
     R"sql(
-- The first outcome of each command sent with an x-request-id, so a repeat
-- (a client retrying after a timeout, also after a node restart) gets the
-- same status and body instead of a second execution. `fingerprint` names
-- the request (method, path, body hash): reusing an id for another request
-- is refused.
CREATE TABLE troupe_http_requests (
  request_id text PRIMARY KEY,
  fingerprint text NOT NULL,
  status int NOT NULL,
  content_type text NOT NULL,
  headers text NOT NULL,
  body text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX troupe_http_requests_created_idx ON troupe_http_requests (created_at);
)sql"},
    {7, "version the saga registry rows",
     R"sql(
-- The version of the saga's input stream a row describes. A host that lost
-- its lease may still flush rows for a while; a row never replaces one
-- written from a later version (a finished saga must not look open again).
ALTER TABLE troupe_sagas ADD COLUMN stream_version bigint NOT NULL DEFAULT 0;
)sql"},
};

constexpr long long migration_lock_key = 7262701;

}  // namespace

int latest_schema_version() { return std::size(migrations); }

migration_report migrate(pqxx::connection& connection) {
  migration_report report;
  // Session lock: a second node starting at the same moment waits here, then
  // finds the work done.
  pqxx::nontransaction(connection)
      .exec("SELECT pg_advisory_lock(" + std::to_string(migration_lock_key) + ")");
  try {
    pqxx::nontransaction(connection)
        .exec(
            "CREATE TABLE IF NOT EXISTS troupe_schema_migrations ("
            " version int PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())");
    {
      pqxx::nontransaction tx(connection);
      auto row = tx.exec1("SELECT coalesce(max(version), 0) FROM troupe_schema_migrations");
      report.current_version = row[0].as<int>();
    }
    if (report.current_version > latest_schema_version())
      throw std::runtime_error(
          "database schema is at version " + std::to_string(report.current_version) +
          ", newer than this build knows (" + std::to_string(latest_schema_version()) + ")");
    for (const auto& m : migrations) {
      if (m.version <= report.current_version) continue;
      try {
        pqxx::work tx(connection);
        tx.exec(m.sql);
        tx.exec_params("INSERT INTO troupe_schema_migrations (version, name) VALUES ($1, $2)",
                       m.version, std::string(m.name));
        tx.commit();
      } catch (const std::exception& e) {
        throw std::runtime_error("migration " + std::to_string(m.version) + " (" + m.name +
                                 ") failed: " + e.what());
      }
      report.current_version = m.version;
      report.applied.push_back(std::to_string(m.version) + " " + m.name);
    }
  } catch (...) {
    pqxx::nontransaction(connection)
        .exec("SELECT pg_advisory_unlock(" + std::to_string(migration_lock_key) + ")");
    throw;
  }
  pqxx::nontransaction(connection)
      .exec("SELECT pg_advisory_unlock(" + std::to_string(migration_lock_key) + ")");
  return report;
}

migration_report migrate(const std::string& url) {
  pqxx::connection connection(url);
  return migrate(connection);
}

}  // namespace troupe::postgres
