#pragma once
// Shared by integration suites: the URLs of the real services started by
// scripts/services, and a way to restart them from a test. A missing
// variable is a failure, never a skip.

#include <gtest/gtest.h>

#include <nats/nats.h>

#include <cstdio>
#include <cstdlib>
#include <pqxx/pqxx>
#include <string>
#include <string_view>

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

/// A database of the test's own, migrated; dropped (forcibly) at the end.
struct scoped_database {
  std::string name;
  std::string url;
  explicit scoped_database(std::string database) : name(std::move(database)) {
    pqxx::connection admin(postgres_url());
    pqxx::nontransaction(admin).exec("CREATE DATABASE " + name);
    url = database_url(name);
  }
  ~scoped_database() {
    // TROUPE_TEST_KEEP_DB=1 keeps a failed test's database for a look.
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    const char* keep = std::getenv("TROUPE_TEST_KEEP_DB");
    if (keep != nullptr && std::string_view(keep) == "1" && test != nullptr &&
        test->result()->Failed()) {
      std::fprintf(stderr, "kept the failed test's database: %s\n", url.c_str());
      return;
    }
    try {
      pqxx::connection admin(postgres_url());
      pqxx::nontransaction(admin).exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
    } catch (const std::exception& e) {
      ADD_FAILURE() << "cannot drop test database " << name << ": " << e.what();
    }
  }
  scoped_database(const scoped_database&) = delete;
  scoped_database& operator=(const scoped_database&) = delete;
};

/// Deletes a JetStream stream if it exists.
inline void delete_jetstream_stream(const std::string& stream) {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  if (natsConnection_ConnectTo(&nc, required_env("TROUPE_NATS_URL").c_str()) == NATS_OK &&
      natsConnection_JetStream(&js, nc, nullptr) == NATS_OK)
    js_DeleteStream(js, stream.c_str(), nullptr, nullptr);
  if (js != nullptr) jsCtx_Destroy(js);
  if (nc != nullptr) natsConnection_Destroy(nc);
}

/// Runs `scripts/services <args>` of this checkout; true on success.
inline bool services(const std::string& args) {
  std::string command = std::string(TROUPE_SOURCE_DIR) + "/scripts/services " + args + " >&2";
  return std::system(command.c_str()) == 0;
}

}  // namespace troupe::integration
