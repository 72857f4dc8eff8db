// http_query: the HTTP API under wrk, beside a bare Beast echo server
// (bench/http_echo.cpp) measured in the same run with the same client.
//
//   catalog query  GET /api/v1/books?category_id=bench&page_size=20 (a
//                  page of 20 books from the view, one PostgreSQL query)
//   order placing  POST /api/v1/orders with one line (price quoted from the
//                  cache, one durable append); sagas off, so this is the
//                  HTTP + command path alone
//
// Both servers get one io thread; wrk runs 1 thread, 50 connections, 10 s
// per round, rounds interleaved; medians of 3. Ends with
//   RESULT http_query value=<query req/s> unit=req/s limit=<echo req/s> ...
//   RESULT http_place_order value=<orders/s> unit=req/s limit=<echo req/s> ...

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_env.hpp"
#include "bench/nats_env.hpp"
#include "bench/process.hpp"
#include "bench/result.hpp"

namespace {

using namespace troupe::bench;

}  // namespace

int main() {
  auto nats = env("TROUPE_NATS_URL");
  const std::string database = "troupe_bench_http";
  recreate_database(database);
  auto here = run("dirname \"$(readlink -f /proc/" + std::to_string(getpid()) + "/exe)\"");
  here.erase(here.find_last_not_of("\n") + 1);
  auto echo_port = free_port();
  auto api_port = free_port();
  pid_t echo = spawn({here + "/http_echo", std::to_string(echo_port)});
  auto stream = "TROUPE_BENCH_HTTP_" + std::to_string(getpid());
  std::vector<std::string> args{TROUPE_BINARY, "serve"};
  for (const std::string& s : std::vector<std::string>{
           "postgres.url=" + database_url(database), "nats.url=" + nats,
           "publisher.stream=" + stream,
           "publisher.subject_prefix=troupebench" + std::to_string(getpid()) + ".events",
           "projections.consumer_prefix=bh-" + std::to_string(getpid()) + "-",
           "sagas.enabled=false", "http.auth.mode=off", "http.io_threads=1",
           "http.port=" + std::to_string(api_port), "log.level=warn"}) {
    args.push_back("--set");
    args.push_back(s);
  }
  pid_t node = spawn(args);
  auto cleanup = [&] {
    kill(node, SIGTERM);
    kill(echo, SIGTERM);
    waitpid(node, nullptr, 0);
    waitpid(echo, nullptr, 0);
    drop_database(database);
    delete_stream(stream);
  };
  if (!wait_for("curl -s " + url(api_port, "/readyz"), "\"ready\"", 60)) {
    std::fprintf(stderr, "http_query: troupe serve did not become ready\n");
    cleanup();
    return 1;
  }
  // The catalog: 200 books in one category, all in the view.
  constexpr int books = 200;
  for (int b = 0; b < books; ++b) {
    auto body = "{\"book_id\":\"bench-" + std::to_string(b) + "\",\"name\":\"Bench book " +
                std::to_string(b) +
                "\",\"price\":1000,\"category_id\":\"bench\",\"publisher_id\":\"p\","
                "\"initial_stock\":1000000000}";
    run("curl -s -o /dev/null -X POST -H 'content-type: application/json' -d '" + body + "' " +
        url(api_port, "/api/v1/books"));
  }
  if (!wait_for("curl -s '" + url(api_port, "/api/v1/books?category_id=bench&page_size=1") + "'",
                "\"total\":" + std::to_string(books), 60)) {
    std::fprintf(stderr, "http_query: the catalog view did not reach %d books\n", books);
    cleanup();
    return 1;
  }
  auto script = "/tmp/troupe_bench_place_" + std::to_string(getpid()) + ".lua";
  std::ofstream(script) << place_order_script(200);

  // The same query with a parameter the API ignores, new on every request:
  // no answer is reused, each goes to PostgreSQL.
  auto uncached = "/tmp/troupe_bench_query_" + std::to_string(getpid()) + ".lua";
  std::ofstream(uncached) << R"lua(
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/api/v1/books?category_id=bench&page_size=20&nocache=" .. counter)
end
)lua";

  std::map<std::string, std::vector<wrk_result>> rounds;
  for (int round = 1; round <= 3; ++round) {
    rounds["echo"].push_back(run_wrk(url(echo_port, "/"), ""));
    rounds["query"].push_back(
        run_wrk(url(api_port, "/api/v1/books?category_id=bench&page_size=20"), ""));
    rounds["uncached"].push_back(run_wrk(url(api_port, "/"), uncached));
    rounds["place"].push_back(run_wrk(url(api_port, "/"), script));
    std::printf(
        "round %d: echo %.0f req/s, query %.0f req/s (p99 %.1f ms), uncached query %.0f req/s, "
        "place %.0f req/s (p99 %.1f ms, %ld errors)\n",
        round, rounds["echo"].back().rps, rounds["query"].back().rps, rounds["query"].back().p99_ms,
        rounds["uncached"].back().rps, rounds["place"].back().rps, rounds["place"].back().p99_ms,
        rounds["place"].back().errors);
    std::fflush(stdout);
  }
  auto med = [&](const std::string& k, double wrk_result::*field) {
    std::vector<double> v;
    for (const auto& r : rounds[k]) v.push_back(r.*field);
    return median(v);
  };
  std::printf(
      "medians: echo %.0f req/s (p50 %.2f p99 %.2f ms); query %.0f req/s (p50 %.2f p99 "
      "%.2f ms); place %.0f req/s (p50 %.2f p99 %.2f ms)\n",
      med("echo", &wrk_result::rps), med("echo", &wrk_result::p50_ms),
      med("echo", &wrk_result::p99_ms), med("query", &wrk_result::rps),
      med("query", &wrk_result::p50_ms), med("query", &wrk_result::p99_ms),
      med("place", &wrk_result::rps), med("place", &wrk_result::p50_ms),
      med("place", &wrk_result::p99_ms));
  long errors = 0;
  for (const auto& [k, v] : rounds)
    for (const auto& r : v) errors += r.errors;
  if (errors > 0) std::printf("non-2xx or socket errors: %ld\n", errors);
  std::printf("uncached query %.0f req/s (p50 %.2f p99 %.2f ms)\n",
              med("uncached", &wrk_result::rps), med("uncached", &wrk_result::p50_ms),
              med("uncached", &wrk_result::p99_ms));
  std::remove(script.c_str());
  std::remove(uncached.c_str());
  cleanup();
  print_result("http_query", med("query", &wrk_result::rps), "req/s",
               med("echo", &wrk_result::rps));
  print_result("http_query_uncached", med("uncached", &wrk_result::rps), "req/s",
               med("echo", &wrk_result::rps));
  print_result("http_place_order", med("place", &wrk_result::rps), "req/s",
               med("echo", &wrk_result::rps));
  return errors > 0 ? 1 : 0;
}
