#pragma once
// What benchmarks share about their environment: the services' URLs (set by
// scripts/bench) and a database of their own, created empty for each run so
// figures do not depend on what earlier runs left.

#include <cstdio>
#include <cstdlib>
#include <pqxx/pqxx>
#include <string>
#include <string_view>

namespace troupe::bench {

/// A required environment variable; exits with a clear message without it.
inline std::string env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    std::fprintf(stderr, "benchmark: %s is not set (run it through scripts/bench)\n", name);
    std::exit(2);
  }
  return value;
}

/// TROUPE_POSTGRES_URL with another database name.
inline std::string database_url(std::string_view database) {
  auto u = env("TROUPE_POSTGRES_URL");
  auto query = u.find('?');
  auto slash = u.rfind('/', query);
  return u.substr(0, slash + 1) + std::string(database) +
         (query == std::string::npos ? "" : u.substr(query));
}

inline void drop_database(std::string_view database) {
  pqxx::connection admin(env("TROUPE_POSTGRES_URL"));
  pqxx::nontransaction(admin).exec("DROP DATABASE IF EXISTS " + std::string(database) +
                                   " WITH (FORCE)");
}

inline void recreate_database(std::string_view database) {
  drop_database(database);
  pqxx::connection admin(env("TROUPE_POSTGRES_URL"));
  pqxx::nontransaction(admin).exec("CREATE DATABASE " + std::string(database));
}

}  // namespace troupe::bench
