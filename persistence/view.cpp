#include "persistence/view.hpp"

#include <cstdio>
#include <stdexcept>

namespace troupe::view {

std::string_view sql_type(column_type t) {
  switch (t) {
    case column_type::text: return "text";
    case column_type::bigint: return "bigint";
    case column_type::float8: return "double precision";
    case column_type::boolean: return "boolean";
    case column_type::jsonb: return "jsonb";
  }
  return "text";
}

std::size_t table::column_index(std::string_view column_name) const {
  for (std::size_t i = 0; i < columns.size(); ++i)
    if (columns[i].name == column_name) return i;
  throw std::invalid_argument("view table '" + name + "' has no column '" +
                              std::string(column_name) + "'");
}

value add_values(const value& a, const value& b) {
  auto as_double = [](const value& v) -> double {
    if (auto* i = std::get_if<std::int64_t>(&v)) return static_cast<double>(*i);
    if (auto* d = std::get_if<double>(&v)) return *d;
    if (std::holds_alternative<std::monostate>(v)) return 0.0;
    throw std::invalid_argument("increment of a non-numeric value");
  };
  auto* ai = std::get_if<std::int64_t>(&a);
  auto* bi = std::get_if<std::int64_t>(&b);
  if ((ai != nullptr || std::holds_alternative<std::monostate>(a)) &&
      (bi != nullptr || std::holds_alternative<std::monostate>(b)))
    return (ai ? *ai : 0) + (bi ? *bi : 0);
  return as_double(a) + as_double(b);
}

std::string to_string(const value& v) {
  struct visitor {
    std::string operator()(std::monostate) const { return "NULL"; }
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(std::int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const {
      char text[32];
      std::snprintf(text, sizeof text, "%.17g", d);
      return text;
    }
    std::string operator()(const std::string& s) const { return s; }
  };
  return std::visit(visitor{}, v);
}

// ---- view_changes -------------------------------------------------------------

view_changes::view_changes(std::span<const table> tables)
    : tables_(tables), changes_(tables.size()) {
  for (const auto& t : tables)
    if (t.columns.size() > 64 || t.key_columns == 0 || t.key_columns > t.columns.size())
      throw std::invalid_argument("view table '" + t.name +
                                  "' needs 1..64 columns and at least one key column");
}

void view_changes::check_key(std::size_t table_index, const key& k) const {
  if (table_index >= tables_.size()) throw std::invalid_argument("no such view table");
  const auto& t = tables_[table_index];
  if (k.size() != t.key_columns)
    throw std::invalid_argument("view table '" + t.name + "' needs " +
                                std::to_string(t.key_columns) + " key value(s), got " +
                                std::to_string(k.size()));
  for (const auto& part : k)
    if (std::holds_alternative<std::monostate>(part))
      throw std::invalid_argument("view table '" + t.name + "': key value is NULL");
}

void view_changes::upsert(std::size_t table_index, key k,
                          std::initializer_list<assignment> columns) {
  upsert(table_index, std::move(k), std::vector<assignment>(columns));
}

void view_changes::upsert(std::size_t table_index, key k, std::vector<assignment> columns) {
  check_key(table_index, k);
  const auto& t = tables_[table_index];
  row_change change;
  for (auto& a : columns) {
    auto i = t.column_index(a.column);
    if (i < t.key_columns)
      throw std::invalid_argument("view table '" + t.name + "': key column '" +
                                  std::string(a.column) + "' cannot be set");
    change.set[i] = std::move(a.v);
  }
  apply(table_index, std::move(k), std::move(change));
}

void view_changes::increment(std::size_t table_index, key k,
                             std::initializer_list<assignment> deltas) {
  check_key(table_index, k);
  const auto& t = tables_[table_index];
  row_change change;
  for (const auto& a : deltas) {
    auto i = t.column_index(a.column);
    auto type = t.columns[i].type;
    if (type != column_type::bigint && type != column_type::float8)
      throw std::invalid_argument("view table '" + t.name + "': column '" + std::string(a.column) +
                                  "' is not numeric");
    change.add[i] = add_values(std::monostate{}, a.v);
  }
  apply(table_index, std::move(k), std::move(change));
}

void view_changes::remove(std::size_t table_index, key k) {
  check_key(table_index, k);
  row_change change;
  change.what = row_change::kind::remove;
  apply(table_index, std::move(k), std::move(change));
}

void view_changes::apply(std::size_t table_index, key k, row_change incoming) {
  const auto& t = tables_[table_index];
  auto& rows = changes_[table_index];
  auto it = rows.find(k);
  if (it == rows.end()) {
    rows.emplace(std::move(k), std::move(incoming));
    return;
  }
  auto& existing = it->second;
  using kind = row_change::kind;
  if (incoming.what == kind::remove || incoming.what == kind::replace) {
    existing = std::move(incoming);
    return;
  }
  // An upsert on top of what is there.
  if (existing.what == kind::remove) {
    // The row was deleted in this batch: it comes back fresh.
    existing.what = kind::replace;
    existing.set.clear();
  }
  for (const auto& [column, v] : incoming.set) {
    existing.set[column] = v;
    existing.add.erase(column);
  }
  for (const auto& [column, delta] : incoming.add) {
    auto set = existing.set.find(column);
    if (set != existing.set.end()) {
      set->second = add_values(set->second, delta);
    } else if (existing.what == kind::replace) {
      existing.set[column] = add_values(t.columns[column].initial, delta);
    } else {
      auto& pending = existing.add[column];
      pending = add_values(pending, delta);
    }
  }
}

void view_changes::merge(const view_changes& later) {
  for (std::size_t t = 0; t < changes_.size() && t < later.changes_.size(); ++t)
    for (const auto& [k, change] : later.changes_[t]) apply(t, k, change);
}

void view_changes::merge(view_changes&& later) {
  for (std::size_t t = 0; t < changes_.size() && t < later.changes_.size(); ++t) {
    auto& rows = later.changes_[t];
    while (!rows.empty()) {
      auto node = rows.extract(rows.begin());
      apply(t, std::move(node.key()), std::move(node.mapped()));
    }
  }
}

void view_changes::clear() {
  for (auto& rows : changes_) rows.clear();
}

bool view_changes::empty() const { return rows() == 0; }

std::size_t view_changes::rows() const {
  std::size_t n = 0;
  for (const auto& rows : changes_) n += rows.size();
  return n;
}

// ---- memory_view ----------------------------------------------------------------

memory_view::memory_view(std::span<const table> tables) : tables_(tables), rows_(tables.size()) {}

void memory_view::apply(const view_changes& changes) {
  for (std::size_t t = 0; t < tables_.size(); ++t) {
    const auto& schema = tables_[t];
    auto& rows = rows_[t];
    for (const auto& [k, change] : changes.changes_of(t)) {
      using kind = row_change::kind;
      if (change.what == kind::remove) {
        rows.erase(k);
        continue;
      }
      auto fresh = [&] {
        std::vector<value> row;
        for (std::size_t c = 0; c < schema.columns.size(); ++c)
          row.push_back(c < k.size() ? k[c] : schema.columns[c].initial);
        return row;
      };
      auto it = rows.find(k);
      if (change.what == kind::replace || it == rows.end())
        it = rows.insert_or_assign(k, fresh()).first;
      for (const auto& [column, v] : change.set) it->second[column] = v;
      for (const auto& [column, delta] : change.add)
        it->second[column] = add_values(it->second[column], delta);
    }
  }
}

const std::vector<value>* memory_view::find(std::size_t table_index, const key& k) const {
  auto it = rows_.at(table_index).find(k);
  return it == rows_[table_index].end() ? nullptr : &it->second;
}

const value& memory_view::at(std::size_t table_index, const key& k, std::string_view column) const {
  auto* row = find(table_index, k);
  if (row == nullptr)
    throw std::out_of_range("view table '" + tables_[table_index].name + "' has no row " +
                            (k.empty() ? std::string() : to_string(k.front())));
  return (*row)[tables_[table_index].column_index(column)];
}

}  // namespace troupe::view
