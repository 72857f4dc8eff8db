#include "persistence/postgres/saga_registry.hpp"

#include "persistence/postgres/pg_connection.hpp"

namespace troupe::postgres {

namespace {

void append_element(std::string& array, std::string_view text) {
  if (array.size() > 1) array.push_back(',');
  array.push_back('"');
  for (char c : text) {
    if (c == '"' || c == '\\') array.push_back('\\');
    array.push_back(c);
  }
  array.push_back('"');
}

void append_null(std::string& array) {
  if (array.size() > 1) array.push_back(',');
  array += "NULL";
}

}  // namespace

saga_registry::saga_registry(const std::string& url) : store_(url) {}
saga_registry::~saga_registry() = default;

std::vector<std::string> saga_registry::open_instances(std::string_view saga) {
  auto& c = store_.connection();
  auto rows = c.exec("SELECT correlation_id FROM troupe_sagas WHERE saga = " + c.quote(saga) +
                     " AND NOT finished AND next_wakeup_ms IS NOT NULL ORDER BY started_ms");
  std::vector<std::string> out;
  for (int r = 0; r < rows.size(); ++r) out.emplace_back(rows.text(r, 0));
  return out;
}

void saga_registry::save(std::string_view saga, const std::vector<saga_row>& rows,
                         const std::vector<dead_letter>& letters) {
  auto& c = store_.connection();
  c.exec("BEGIN");
  try {
    if (!rows.empty()) {
      std::string ids = "{", statuses = "{", finished = "{", wakeups = "{", started = "{",
                  versions = "{";
      for (const auto& r : rows) {
        append_element(ids, r.correlation_id);
        append_element(statuses, r.status);
        append_element(finished, r.finished ? "t" : "f");
        if (r.next_wakeup_ms)
          append_element(wakeups, std::to_string(*r.next_wakeup_ms));
        else
          append_null(wakeups);
        append_element(started, std::to_string(r.started_ms));
        append_element(versions, std::to_string(r.stream_version));
      }
      for (auto* a : {&ids, &statuses, &finished, &wakeups, &started, &versions}) a->push_back('}');
      c.exec_params(
          "INSERT INTO troupe_sagas AS t (saga, correlation_id, status, finished, next_wakeup_ms, "
          "started_ms, stream_version) SELECT $1, u.i, u.s, u.f, u.w, u.st, u.v FROM "
          "unnest($2::text[], $3::text[], $4::boolean[], $5::bigint[], $6::bigint[], "
          "$7::bigint[]) AS u(i, s, f, w, st, v) ON CONFLICT (saga, correlation_id) DO UPDATE "
          "SET status = EXCLUDED.status, finished = EXCLUDED.finished, next_wakeup_ms = "
          "EXCLUDED.next_wakeup_ms, stream_version = EXCLUDED.stream_version, updated_at = now() "
          "WHERE t.stream_version <= EXCLUDED.stream_version",
          {std::string(saga), ids, statuses, finished, wakeups, started, versions});
    }
    for (const auto& letter : letters) store_.park(letter);
    c.exec("COMMIT");
  } catch (...) {
    try {
      c.exec("ROLLBACK");
    } catch (const pg_error&) {
    }
    throw;
  }
}

std::vector<std::pair<std::string, std::int64_t>> saga_registry::by_status(std::string_view saga) {
  auto& c = store_.connection();
  auto rows = c.exec("SELECT status, count(*) FROM troupe_sagas WHERE saga = " + c.quote(saga) +
                     " GROUP BY status ORDER BY status");
  std::vector<std::pair<std::string, std::int64_t>> out;
  for (int r = 0; r < rows.size(); ++r) out.emplace_back(rows.text(r, 0), rows.integer(r, 1));
  return out;
}

}  // namespace troupe::postgres
