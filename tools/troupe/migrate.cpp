// `troupe migrate`: applies the PostgreSQL schema migrations (nodes also do
// this at start-up; this is for operators who migrate ahead of a rollout).

#include <iostream>

#include "persistence/postgres/migrations.hpp"
#include "runtime/config.hpp"
#include "tools/troupe/commands.hpp"

namespace troupe::cli {

int migrate(const config& cfg) {
  try {
    auto report = postgres::migrate(cfg.string("postgres.url"));
    for (const auto& applied : report.applied) std::cout << "applied migration " << applied << "\n";
    std::cout << "schema is at version " << report.current_version
              << (report.applied.empty() ? " (already up to date)" : "") << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "troupe migrate: " << e.what() << " (database "
              << redact_url(cfg.string("postgres.url")) << ")\n";
    return 1;
  }
}

}  // namespace troupe::cli
