#pragma once
// Versioned schema migrations for the PostgreSQL store. Applied at node
// start-up and by `troupe migrate`; idempotent, and safe when several nodes
// start at once (an advisory lock serialises them, each migration runs in its
// own transaction and is recorded in troupe_schema_migrations).

#include <string>
#include <vector>

#include <pqxx/connection>

namespace troupe::postgres {

struct migration_report {
  int current_version = 0;
  std::vector<std::string> applied;  // "3 create snapshots", ... this time
};

/// The newest schema version this build knows.
int latest_schema_version();

/// Brings the database to the latest schema. Throws on failure (with the
/// migration's name in the message). Refuses a database whose schema is
/// newer than this build.
migration_report migrate(pqxx::connection& connection);
/// The same over a new connection to `url`.
migration_report migrate(const std::string& url);

}  // namespace troupe::postgres
