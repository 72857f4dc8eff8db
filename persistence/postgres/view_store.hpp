#pragma once
// Read-model storage on PostgreSQL: creates a projection's view tables and
// writes a batch's net row changes together with the projection's
// checkpoint, in one transaction (exactly-once effect: a batch that is
// delivered again finds the checkpoint past it).
//
// One view_store is one connection, used by one thread (a projector or a
// rebuild). Every batch runs:
//
//   auto at = store.begin(checkpoint);  // locks the checkpoint row
//   ... fold the events after `at` ...
//   store.write(tables, changes);       // a few set-based statements
//   store.park(dead_letter);            // poison events, if any
//   store.commit(checkpoint, last);     // view, dead letters, checkpoint
//
// The checkpoint row lock serialises everything that moves a projection:
// the live projector, a rebuild's swap, a doubled projector in a cluster.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "persistence/types.hpp"
#include "persistence/view.hpp"

namespace troupe::postgres {

class pg_connection;

/// An event a consumer could not process, kept for inspection and replay.
struct dead_letter {
  std::int64_t id = 0;  // assigned when parked
  std::string consumer;
  recorded_event event;
  std::string error;
  int attempts = 0;
  std::string parked_at;    // as PostgreSQL prints it (read side only)
  std::string replayed_at;  // empty while not replayed (read side only)
};

class view_store {
 public:
  static constexpr std::string_view live_schema = "troupe_views";

  /// Connects; throws pg_error when it cannot.
  explicit view_store(const std::string& url);
  ~view_store();
  view_store(const view_store&) = delete;
  view_store& operator=(const view_store&) = delete;

  /// Creates the tables, indexes and SQL views in `schema` if missing and
  /// registers the projection; returns the version the live tables were
  /// built with (differs from `version` when a rebuild is due).
  int ensure(std::string_view projection, int version, std::span<const view::table> tables,
             std::span<const view::sql_view> sql_views, std::string_view schema = live_schema);

  /// The statements that create the tables, indexes and SQL views in
  /// `schema` when missing (no transaction of their own).
  std::string ddl(std::span<const view::table> tables, std::span<const view::sql_view> sql_views,
                  std::string_view schema);

  /// Starts a transaction and locks the named checkpoint (creating it at 0);
  /// returns its position.
  global_position begin(std::string_view checkpoint);
  /// Writes net row changes into `schema` inside the open transaction.
  void write(const view::view_changes& changes, std::string_view schema = live_schema);
  /// Records a dead letter inside the open transaction.
  void park(const dead_letter& letter);
  /// Moves the checkpoint to `position` and commits.
  void commit(std::string_view checkpoint, global_position position);
  /// Several checkpoints in one transaction (projectors sharing a consumer):
  /// starts it and locks them all, creating missing ones at 0; their
  /// positions, in the order given.
  std::vector<global_position> begin(std::span<const std::string> checkpoints);
  /// Moves each named checkpoint to its position and commits.
  void commit(std::span<const std::pair<std::string, global_position>> checkpoints);
  void rollback();

  /// Every row of a table, each as its columns' text joined by '|', sorted:
  /// for comparing a view with a rebuild.
  std::vector<std::string> dump(const view::table& table, std::string_view schema = live_schema);

  /// The version of the code that built a projection's live tables (0: never built).
  int built_version(std::string_view projection);

  /// The checkpoint's position without locking (0 when absent).
  global_position checkpoint(std::string_view checkpoint);

  /// Dead letters, oldest first; `consumer` empty for all.
  std::vector<dead_letter> dead_letters(std::string_view consumer = {}, std::size_t limit = 100);
  std::optional<dead_letter> dead_letter_by_id(std::int64_t id);
  /// Marks a dead letter replayed inside the open transaction.
  void mark_replayed(std::int64_t id);

  /// A raw statement inside or outside a transaction (rebuild swaps, tests).
  void exec(const std::string& sql);
  /// The first column of the first row as an integer (0 when no row).
  std::int64_t scalar(const std::string& sql);

  pg_connection& connection() { return *connection_; }

 private:
  std::unique_ptr<pg_connection> connection_;
  bool in_transaction_ = false;
};

/// `"schema"."name"`, quoted for SQL.
std::string qualified(std::string_view schema, std::string_view name);

}  // namespace troupe::postgres
