#pragma once
// Read-model storage, the pure half: what a view table looks like and the
// changes a projection makes to it. A projection function never touches a
// database; it records row changes (upsert, increment, remove) into
// `view_changes`, which folds every change of a batch into at most one net
// change per row. A store then writes a whole batch with a few set-based
// statements (no per-event round trips, and no "row affected twice" in one
// statement), and `memory_view` applies the same net changes to maps so
// projections are unit-tested without a server.

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace troupe::view {

/// A SQL view over a projection's tables (joins for queries). `select`
/// names tables as `{schema}.table`; it is created in the same schema.
struct sql_view {
  std::string name;
  std::string select;
};

/// A cell: NULL, boolean, integer, float or text (also JSON text for jsonb).
using value = std::variant<std::monostate, bool, std::int64_t, double, std::string>;

enum class column_type : std::uint8_t { text, bigint, float8, boolean, jsonb };
std::string_view sql_type(column_type t);

struct column {
  std::string name;
  column_type type = column_type::text;
  /// Value of a fresh row (DEFAULT); NULL unless given. Increments treat
  /// NULL as zero.
  value initial{};
};

/// A view table, in the `troupe_views` schema. Key columns come first.
struct table {
  table(std::string table_name, std::vector<column> table_columns, std::size_t key_column_count = 1,
        std::vector<std::vector<std::string>> secondary_indexes = {}, int fill_factor = 100)
      : name(std::move(table_name)),
        columns(std::move(table_columns)),
        key_columns(key_column_count),
        indexes(std::move(secondary_indexes)),
        fillfactor(fill_factor) {}

  std::string name;
  std::vector<column> columns;
  std::size_t key_columns = 1;
  std::vector<std::vector<std::string>> indexes;  // secondary indexes, by column names
  /// PostgreSQL's fillfactor (10..100; 100 is its default): room left in
  /// each page so that an update can stay on the row's page (a HOT update,
  /// no new index entries). Worth lowering for tables whose rows are
  /// updated after insertion.
  int fillfactor = 100;

  /// Index of a column; throws std::invalid_argument naming the table when absent.
  std::size_t column_index(std::string_view column_name) const;
};

using key = std::vector<value>;

struct assignment {
  std::string_view column;
  value v;
};

/// The net effect of a batch on one row.
struct row_change {
  enum class kind : std::uint8_t {
    upsert,   // insert, or update the named columns of the existing row
    remove,   // delete the row
    replace,  // delete the row, then insert a fresh one (removed, then written again)
  };
  kind what = kind::upsert;
  std::map<std::size_t, value> set;  // column index -> new value
  std::map<std::size_t, value> add;  // column index -> delta (upsert only)
};

/// One event's or one batch's changes to a set of tables (a projection's).
/// Records are folded as they arrive: later changes to a row build on
/// earlier ones exactly as applying them one by one would.
class view_changes {
 public:
  explicit view_changes(std::span<const table> tables);

  /// Inserts the row or overwrites the given columns of the existing one.
  void upsert(std::size_t table_index, key k, std::initializer_list<assignment> columns);
  void upsert(std::size_t table_index, key k, std::vector<assignment> columns);
  /// Adds to numeric columns; a missing row is inserted with the deltas.
  void increment(std::size_t table_index, key k, std::initializer_list<assignment> deltas);
  void remove(std::size_t table_index, key k);

  /// Folds `later` (recorded after everything in this one) into this one.
  void merge(const view_changes& later);
  /// The same, taking `later`'s rows over where this one has none (no copies).
  void merge(view_changes&& later);
  void clear();
  bool empty() const;
  std::size_t rows() const;  // number of rows with a net change

  std::span<const table> tables() const { return tables_; }
  /// Per table: key -> net change, in key order.
  const std::map<key, row_change>& changes_of(std::size_t table_index) const {
    return changes_[table_index];
  }

 private:
  void check_key(std::size_t table_index, const key& k) const;
  void apply(std::size_t table_index, key k, row_change change);
  std::span<const table> tables_;
  std::vector<std::map<key, row_change>> changes_;
};

/// Tables held in memory, for unit tests of projection functions.
class memory_view {
 public:
  explicit memory_view(std::span<const table> tables);
  void apply(const view_changes& changes);
  /// The row with this key, or nullptr.
  const std::vector<value>* find(std::size_t table_index, const key& k) const;
  const std::map<key, std::vector<value>>& rows(std::size_t table_index) const {
    return rows_[table_index];
  }
  /// A cell of an existing row, by column name; throws when the row is absent.
  const value& at(std::size_t table_index, const key& k, std::string_view column) const;

 private:
  std::span<const table> tables_;
  std::vector<std::map<key, std::vector<value>>> rows_;
};

/// Numeric sum used by increments (integer + integer stays integer).
value add_values(const value& a, const value& b);

std::string to_string(const value& v);

}  // namespace troupe::view
