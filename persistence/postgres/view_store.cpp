#include "persistence/postgres/view_store.hpp"

#include <charconv>
#include <cstdio>
#include <map>
#include <stdexcept>

#include "persistence/postgres/pg_connection.hpp"

namespace troupe::postgres {

namespace {

std::string quote_ident(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

/// A value as text for an array literal or a SQL literal (NULL -> nullopt).
std::optional<std::string> value_text(const view::value& v) {
  if (std::holds_alternative<std::monostate>(v)) return std::nullopt;
  if (auto* b = std::get_if<bool>(&v)) return std::string(*b ? "t" : "f");
  if (auto* d = std::get_if<double>(&v)) {
    char text[32];
    std::snprintf(text, sizeof text, "%.17g", *d);
    return std::string(text);
  }
  return view::to_string(v);
}

void append_array_element(std::string& out, const view::value& v) {
  if (std::holds_alternative<std::monostate>(v)) {
    out += "NULL";
    return;
  }
  if (auto* i = std::get_if<std::int64_t>(&v)) {
    char digits[24];
    auto end = std::to_chars(digits, digits + sizeof digits, *i).ptr;
    out.append(digits, end);
    return;
  }
  if (auto* b = std::get_if<bool>(&v)) {
    out.push_back(*b ? 't' : 'f');
    return;
  }
  if (auto* d = std::get_if<double>(&v)) {
    char digits[32];
    std::snprintf(digits, sizeof digits, "%.17g", *d);
    out += digits;
    return;
  }
  const auto& text = std::get<std::string>(v);
  out.push_back('"');
  for (char c : text) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
}

std::string array_type(view::column_type t) { return std::string(view::sql_type(t)) + "[]"; }

}  // namespace

std::string qualified(std::string_view schema, std::string_view name) {
  return quote_ident(schema) + "." + quote_ident(name);
}

view_store::view_store(const std::string& url) : connection_(new pg_connection(url)) {
  // "already exists, skipping" notices from the idempotent DDL are noise.
  connection_->exec("SET client_min_messages TO warning");
}

view_store::~view_store() = default;

void view_store::exec(const std::string& sql) { connection_->exec(sql); }

std::int64_t view_store::scalar(const std::string& sql) {
  auto rows = connection_->exec(sql);
  return rows.size() > 0 ? rows.integer(0, 0) : 0;
}

std::string view_store::ddl(std::span<const view::table> tables,
                            std::span<const view::sql_view> sql_views, std::string_view schema) {
  auto& c = *connection_;
  std::string sql = "CREATE SCHEMA IF NOT EXISTS " + quote_ident(schema) + ";";
  for (const auto& t : tables) {
    sql += "CREATE TABLE IF NOT EXISTS " + qualified(schema, t.name) + " (";
    for (const auto& col : t.columns) {
      sql += quote_ident(col.name) + " " + std::string(view::sql_type(col.type));
      if (auto initial = value_text(col.initial)) {
        sql += " DEFAULT " + c.quote(*initial);
        if (col.type != view::column_type::text)
          sql += "::" + std::string(view::sql_type(col.type));
      }
      sql += ", ";
    }
    sql += "PRIMARY KEY (";
    for (std::size_t k = 0; k < t.key_columns; ++k)
      sql += (k ? ", " : "") + quote_ident(t.columns[k].name);
    sql += "));";
    if (t.fillfactor < 10 || t.fillfactor > 100)
      throw std::invalid_argument("view table '" + t.name + "': fillfactor " +
                                  std::to_string(t.fillfactor) + " is outside 10..100");
    // Also for a table created before the setting: it applies to pages
    // written from now on.
    if (t.fillfactor != 100)
      sql += "ALTER TABLE " + qualified(schema, t.name) +
             " SET (fillfactor = " + std::to_string(t.fillfactor) + ");";
    for (const auto& index : t.indexes) {
      std::string name = t.name;
      std::string columns;
      for (const auto& col : index) {
        t.column_index(col);  // throws on a typo
        name += "_" + col;
        columns += (columns.empty() ? "" : ", ") + quote_ident(col);
      }
      sql += "CREATE INDEX IF NOT EXISTS " + quote_ident(name + "_idx") + " ON " +
             qualified(schema, t.name) + " (" + columns + ");";
    }
  }
  for (const auto& v : sql_views) {
    std::string select = v.select;
    std::string placeholder = "{schema}";
    for (auto at = select.find(placeholder); at != std::string::npos;
         at = select.find(placeholder, at))
      select.replace(at, placeholder.size(), quote_ident(schema));
    sql += "CREATE OR REPLACE VIEW " + qualified(schema, v.name) + " AS " + select + ";";
  }
  return sql;
}

int view_store::ensure(std::string_view projection, int version,
                       std::span<const view::table> tables,
                       std::span<const view::sql_view> sql_views, std::string_view schema) {
  auto& c = *connection_;
  // Two nodes starting at once would race on CREATE ... IF NOT EXISTS.
  std::string sql = "BEGIN; SELECT pg_advisory_xact_lock(hashtext(" +
                    c.quote("troupe_views:" + std::string(projection)) + "));";
  sql += ddl(tables, sql_views, schema);
  if (schema == live_schema)
    sql += "INSERT INTO troupe_projections (name, version) VALUES (" + c.quote(projection) + ", " +
           std::to_string(version) + ") ON CONFLICT DO NOTHING;";
  sql += "SELECT version FROM troupe_projections WHERE name = " + c.quote(projection) + ";";
  try {
    auto rows = c.exec(sql);
    int stored = rows.size() > 0 ? static_cast<int>(rows.integer(0, 0)) : version;
    c.exec("COMMIT");
    return stored;
  } catch (...) {
    c.exec("ROLLBACK");
    throw;
  }
}

global_position view_store::begin(std::string_view checkpoint) {
  const std::string name(checkpoint);
  return begin(std::span(&name, 1)).front();
}

void view_store::write(const view::view_changes& changes, std::string_view schema) {
  using kind = view::row_change::kind;
  auto& c = *connection_;
  // Every statement of the batch goes in one string, one round trip: sent
  // one by one (a projector group's batch held ten or so), each was a
  // context switch of this thread and of the server's backend. The arrays
  // travel as quoted literals instead of parameters; an error stops the
  // string at the failing statement and aborts the transaction, as before.
  std::string script;
  auto tables = changes.tables();
  for (std::size_t t = 0; t < tables.size(); ++t) {
    const auto& rows = changes.changes_of(t);
    if (rows.empty()) continue;
    const auto& table = tables[t];
    const auto target = qualified(schema, table.name);
    const auto keys = table.key_columns;

    // Deletions first (a replaced row is deleted, then inserted fresh).
    std::vector<std::string> key_arrays(keys, "{");
    bool any_delete = false;
    // Upserts grouped by which columns they set and add: one statement each.
    using entry_ptr = const std::pair<const view::key, view::row_change>*;
    std::map<std::pair<std::uint64_t, std::uint64_t>, std::vector<entry_ptr>> groups;
    for (const auto& entry : rows) {
      const auto& change = entry.second;
      if (change.what != kind::upsert) {
        for (std::size_t k = 0; k < keys; ++k) {
          if (key_arrays[k].size() > 1) key_arrays[k].push_back(',');
          append_array_element(key_arrays[k], entry.first[k]);
        }
        any_delete = true;
      }
      if (change.what == kind::remove) continue;
      std::pair<std::uint64_t, std::uint64_t> signature{0, 0};  // set and added columns
      for (const auto& [column, v] : change.set) signature.first |= std::uint64_t{1} << column;
      for (const auto& [column, v] : change.add) signature.second |= std::uint64_t{1} << column;
      groups[signature].push_back(&entry);
    }
    if (any_delete) {
      std::string sql = "DELETE FROM " + target + " AS t USING unnest(";
      for (std::size_t k = 0; k < keys; ++k) {
        key_arrays[k].push_back('}');
        sql += (k ? ", " : "") + c.quote(key_arrays[k]) + "::" + array_type(table.columns[k].type);
      }
      sql += ") AS u(";
      for (std::size_t k = 0; k < keys; ++k) sql += (k ? ", k" : "k") + std::to_string(k);
      sql += ") WHERE ";
      for (std::size_t k = 0; k < keys; ++k)
        sql += (k ? " AND t." : "t.") + quote_ident(table.columns[k].name) + " = u.k" +
               std::to_string(k);
      script += sql + ";\n";
    }
    for (const auto& [signature, members] : groups) {
      const auto& first = members.front()->second;
      std::vector<std::size_t> set_columns, add_columns;
      for (const auto& [column, v] : first.set) set_columns.push_back(column);
      for (const auto& [column, v] : first.add) add_columns.push_back(column);
      std::vector<std::size_t> columns;
      for (std::size_t k = 0; k < keys; ++k) columns.push_back(k);
      columns.insert(columns.end(), set_columns.begin(), set_columns.end());
      columns.insert(columns.end(), add_columns.begin(), add_columns.end());

      std::vector<std::string> arrays(columns.size(), "{");
      for (const auto* entry : members) {
        const auto& change = entry->second;
        std::size_t i = 0;
        for (std::size_t k = 0; k < keys; ++k, ++i) {
          if (arrays[i].size() > 1) arrays[i].push_back(',');
          append_array_element(arrays[i], entry->first[k]);
        }
        for (auto column : set_columns) {
          if (arrays[i].size() > 1) arrays[i].push_back(',');
          append_array_element(arrays[i++], change.set.at(column));
        }
        for (auto column : add_columns) {
          if (arrays[i].size() > 1) arrays[i].push_back(',');
          append_array_element(arrays[i++], change.add.at(column));
        }
      }
      for (auto& a : arrays) a.push_back('}');

      std::string names;
      std::string unnest;
      for (std::size_t i = 0; i < columns.size(); ++i) {
        names += (i ? ", " : "") + quote_ident(table.columns[columns[i]].name);
        unnest += (i ? ", " : "") + c.quote(arrays[i]) +
                  "::" + array_type(table.columns[columns[i]].type);
      }
      std::string sql = "INSERT INTO " + target + " AS t (" + names + ") SELECT * FROM unnest(" +
                        unnest + ") ON CONFLICT (";
      for (std::size_t k = 0; k < keys; ++k)
        sql += (k ? ", " : "") + quote_ident(table.columns[k].name);
      sql += ") DO ";
      if (set_columns.empty() && add_columns.empty()) {
        sql += "NOTHING";
      } else {
        sql += "UPDATE SET ";
        bool comma = false;
        for (auto column : set_columns) {
          auto name = quote_ident(table.columns[column].name);
          sql += (comma ? ", " : "") + name + " = EXCLUDED." + name;
          comma = true;
        }
        for (auto column : add_columns) {
          auto name = quote_ident(table.columns[column].name);
          sql += (comma ? ", " : "") + name + " = coalesce(t." + name + ", 0) + EXCLUDED." + name;
          comma = true;
        }
      }
      script += sql + ";\n";
    }
  }
  if (!script.empty()) c.exec(script);
}

void view_store::park(const dead_letter& letter) {
  const auto& e = letter.event;
  connection_->exec_params(
      "INSERT INTO troupe_dead_letters (consumer, event_id, position, stream_id, stream_version, "
      "event_type, schema_version, data, error, attempts) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
      {letter.consumer, e.event_id, std::to_string(e.position.value), e.stream_id,
       std::to_string(e.version.value), e.type, std::to_string(e.schema_version), e.data,
       letter.error, std::to_string(letter.attempts)});
}

void view_store::commit(std::string_view checkpoint, global_position position) {
  const std::pair<std::string, global_position> one{std::string(checkpoint), position};
  commit(std::span(&one, 1));
}

std::vector<global_position> view_store::begin(std::span<const std::string> checkpoints) {
  auto& c = *connection_;
  std::string values, names;
  for (const auto& name : checkpoints) {
    auto quoted = c.quote(name);
    values += (values.empty() ? "(" : ", (") + quoted + ", 0)";
    names += (names.empty() ? "" : ", ") + quoted;
  }
  in_transaction_ = true;
  // Locked in name order, as every other locker of several would.
  const std::string lock = "SELECT name, position FROM troupe_checkpoints WHERE name IN (" + names +
                           ") ORDER BY name FOR UPDATE";
  std::vector<global_position> positions(checkpoints.size());
  auto read = [&](const pg_rows& rows) {
    std::size_t found = 0;
    for (std::size_t i = 0; i < checkpoints.size(); ++i)
      for (int r = 0; r < rows.size(); ++r)
        if (rows.text(r, 0) == checkpoints[i]) {
          positions[i] = global_position{rows.integer(r, 1)};
          ++found;
          break;
        }
    return found == checkpoints.size();
  };
  // The rows exist after a checkpoint's first transaction; creating them
  // (a new projection, or one a rebuild deleted) only when one is missing
  // saves the INSERT's parse, plan and run in every batch.
  if (!read(c.exec("BEGIN; " + lock)))
    read(c.exec("INSERT INTO troupe_checkpoints (name, position) VALUES " + values +
                " ON CONFLICT DO NOTHING; " + lock));
  return positions;
}

void view_store::commit(std::span<const std::pair<std::string, global_position>> checkpoints) {
  auto& c = *connection_;
  // One statement for all the checkpoints of a group (it was one each).
  std::string values;
  for (const auto& [name, position] : checkpoints)
    values += (values.empty() ? "(" : ", (") + c.quote(name) + ", " +
              std::to_string(position.value) + "::bigint)";
  c.exec(
      "UPDATE troupe_checkpoints AS c SET position = v.position, updated_at = now() FROM "
      "(VALUES " +
      values + ") AS v(name, position) WHERE c.name = v.name; COMMIT");
  in_transaction_ = false;
}

void view_store::rollback() {
  in_transaction_ = false;
  try {
    connection_->exec("ROLLBACK");
  } catch (const pg_error&) {
    // The connection is gone: the server rolled back already.
  }
}

int view_store::built_version(std::string_view projection) {
  return static_cast<int>(
      scalar("SELECT coalesce(max(version), 0) FROM troupe_projections WHERE name = " +
             connection_->quote(projection)));
}

global_position view_store::checkpoint(std::string_view checkpoint) {
  auto rows = connection_->exec("SELECT position FROM troupe_checkpoints WHERE name = " +
                                connection_->quote(checkpoint));
  return global_position{rows.size() > 0 ? rows.integer(0, 0) : 0};
}

std::vector<std::string> view_store::dump(const view::table& table, std::string_view schema) {
  std::string sql = "SELECT concat_ws('|'";
  for (const auto& col : table.columns)
    sql += ", coalesce(" + quote_ident(col.name) + "::text, '<null>')";
  sql += ") FROM " + qualified(schema, table.name) + " ORDER BY 1";
  auto rows = connection_->exec(sql);
  std::vector<std::string> out;
  out.reserve(rows.size());
  for (int r = 0; r < rows.size(); ++r) out.emplace_back(rows.text(r, 0));
  return out;
}

namespace {

constexpr const char* dead_letter_columns =
    "id, consumer, event_id, position, stream_id, stream_version, event_type, schema_version, "
    "data, error, attempts, parked_at::text, coalesce(replayed_at::text, '')";

dead_letter dead_letter_from(const pg_rows& rows, int r) {
  dead_letter d;
  d.id = rows.integer(r, 0);
  d.consumer = rows.text(r, 1);
  d.event.event_id = rows.text(r, 2);
  d.event.position = global_position{rows.integer(r, 3)};
  d.event.stream_id = rows.text(r, 4);
  d.event.version = stream_version{rows.integer(r, 5)};
  d.event.type = rows.text(r, 6);
  d.event.schema_version = static_cast<int>(rows.integer(r, 7));
  d.event.data = rows.text(r, 8);
  d.error = rows.text(r, 9);
  d.attempts = static_cast<int>(rows.integer(r, 10));
  d.parked_at = rows.text(r, 11);
  d.replayed_at = rows.text(r, 12);
  return d;
}

}  // namespace

std::vector<dead_letter> view_store::dead_letters(std::string_view consumer, std::size_t limit) {
  std::string sql = std::string("SELECT ") + dead_letter_columns + " FROM troupe_dead_letters";
  if (!consumer.empty()) sql += " WHERE consumer = " + connection_->quote(consumer);
  sql += " ORDER BY id LIMIT " + std::to_string(limit);
  auto rows = connection_->exec(sql);
  std::vector<dead_letter> out;
  for (int r = 0; r < rows.size(); ++r) out.push_back(dead_letter_from(rows, r));
  return out;
}

std::optional<dead_letter> view_store::dead_letter_by_id(std::int64_t id) {
  auto rows = connection_->exec(std::string("SELECT ") + dead_letter_columns +
                                " FROM troupe_dead_letters WHERE id = " + std::to_string(id));
  if (rows.size() == 0) return std::nullopt;
  return dead_letter_from(rows, 0);
}

void view_store::mark_replayed(std::int64_t id) {
  connection_->exec("UPDATE troupe_dead_letters SET replayed_at = now() WHERE id = " +
                    std::to_string(id));
}

}  // namespace troupe::postgres
