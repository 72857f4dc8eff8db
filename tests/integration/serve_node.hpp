#pragma once
// A `troupe serve` of a test's own (database, JetStream stream, consumers,
// port), started in a child process, with dev-mode tokens.

#include <signal.h>

#include <boost/json.hpp>
#include <string>
#include <vector>

#include "tests/integration/http_client.hpp"
#include "tests/integration/pg_env.hpp"
#include "tests/integration/troupe_process.hpp"
#include "tests/support/test_support.hpp"

namespace troupe::integration {

using test_support::eventually;
using test_support::unique;

/// A `troupe serve` of the test's own: database, JetStream stream, consumers, port.
struct serve_node {
  std::string run = unique("h");
  scoped_database db{"troupe_test_" + run};
  std::string stream = "TROUPE_TEST_" + run;
  std::uint16_t port = free_port();
  std::vector<std::string> extra_sets;
  pid_t pid = -1;

  std::vector<std::string> sets() const {
    std::vector<std::string> s{"postgres.url=" + db.url,
                               "nats.url=" + required_env("TROUPE_NATS_URL"),
                               "publisher.stream=" + stream,
                               "publisher.subject_prefix=troupetest" + run + ".events",
                               "projections.consumer_prefix=v-" + run + "-",
                               "sagas.consumer_prefix=s-" + run + "-",
                               "http.port=" + std::to_string(port),
                               "http.auth.mode=dev",
                               "log.level=warn"};
    s.insert(s.end(), extra_sets.begin(), extra_sets.end());
    return s;
  }

  bool start() {
    pid = start_serve(sets());
    if (pid <= 0) return false;
    http_client probe(port);
    return eventually([&] { return probe.get("/readyz").status == 200; }, std::chrono::seconds{30});
  }

  /// Sends `sig` and returns the exit status.
  int stop(int sig = SIGTERM) { return stop_process(pid, sig); }

  std::string token(const std::string& subject, bool admin) {
    http_client c(port);
    auto r =
        c.post("/api/v1/dev/tokens",
               boost::json::serialize(boost::json::object{{"sub", subject}, {"admin", admin}}));
    if (r.status != 201) return {};
    return std::string(r.json().at("token").as_string());
  }

  ~serve_node() {
    stop(SIGKILL);
    delete_jetstream_stream(stream);
  }
};

}  // namespace troupe::integration
