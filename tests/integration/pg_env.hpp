#pragma once
// Shared by integration suites: the URLs of the real services started by
// scripts/services, and a way to restart them from a test. A missing
// variable is a failure, never a skip.

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace troupe::integration {

inline std::string required_env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    ADD_FAILURE() << name
                  << " is not set. Integration tests need the real services: run them through "
                     "scripts/test, or `scripts/services start && . var/services.env` first.";
    return {};
  }
  return value;
}

inline std::string postgres_url() { return required_env("TROUPE_POSTGRES_URL"); }

/// The test server's URL with another database name.
inline std::string database_url(const std::string& database) {
  auto u = postgres_url();
  auto query = u.find('?');
  auto slash = u.rfind('/', query);
  return u.substr(0, slash + 1) + database + (query == std::string::npos ? "" : u.substr(query));
}

/// Runs `scripts/services <args>` of this checkout; true on success.
inline bool services(const std::string& args) {
  std::string command = std::string(TROUPE_SOURCE_DIR) + "/scripts/services " + args + " >&2";
  return std::system(command.c_str()) == 0;
}

}  // namespace troupe::integration
