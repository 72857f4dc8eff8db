// The load benchmarks: a `troupe serve` on a fresh database, driven by
// troupe-load over HTTP, each figure beside the goal for this
// 2-core machine (the client shares the cores with the node, PostgreSQL
// and NATS, as wrk does in http_query). Built three times:
//
//   place_complete       place an order, then complete it: one event per
//                        command (the peer comparison's workload);
//                        publisher on, projections and sagas off.
//                        Peak: closed loop, 256 connections. Latency: open
//                        loop at 5k flows/s = 10k commands/s.
//                        Goals: >= 20k commands/s; p99 <= 25 ms at 10k/s.
//   place_complete_view  the same with the order_summary view kept current
//                        (its projector on). Goal: >= 15k commands/s.
//   checkout             basket, order, fulfilment saga to its end (waited
//                        for by long polls on the order). Peak: closed loop,
//                        1000 connections (one checkout per seeded buyer),
//                        completed orders/s. Latency: open loop at 1.5k
//                        orders/s, 1000 connections, end-to-end p99.
//                        Goals: >= 3k orders/s; p99 <= 250 ms at 1.5k/s.
//
// Each figure is the median of 3 rounds (10 s measured after 3 s warm-up);
// every round's troupe-load report is kept in var/bench/<mode>-*.json.
// Beside each peak: the CPU per command (per completed order for checkout)
// of the node, PostgreSQL, nats-server and in total (troupe-load included),
// over 9 s inside the measured window. A peak moves 15-20 % between runs on
// this shared machine; with the cores used (printed) these say whether a
// run got fewer cores, slower ones (every process's share up alike), or
// less work to do in one part (its share moves against the others').

#include <sys/wait.h>

#include <boost/json.hpp>
#include <fstream>
#include <map>
#include <sstream>

#include "bench/bench_env.hpp"
#include "bench/cpu_usage.hpp"
#include "bench/nats_env.hpp"
#include "bench/process.hpp"
#include "bench/result.hpp"

namespace {

using namespace troupe::bench;
namespace json = boost::json;

constexpr std::string_view mode = TROUPE_LOAD_BENCH_MODE;
constexpr int rounds = 3;

struct load_figures {
  double commands_per_second = 0, flows_per_second = 0, completed_per_second = 0;
  double p99_ms = 0, flow_p99_ms = 0;
  std::int64_t errors = 0;
};

double number(const json::value& v) {
  if (v.is_double()) return v.as_double();
  if (v.is_int64()) return static_cast<double>(v.as_int64());
  if (v.is_uint64()) return static_cast<double>(v.as_uint64());
  return 0;
}

load_figures run_load(const std::string& args, const std::string& report_file) {
  auto command = std::string(TROUPE_LOAD_BINARY) + " " + args + " -q --json " + report_file;
  auto out = run(command + " 2>&1");
  std::ifstream in(report_file);
  std::stringstream text;
  text << in.rdbuf();
  boost::system::error_code ec;
  auto v = json::parse(text.str(), ec);
  if (ec || !v.is_object()) {
    std::fprintf(stderr, "troupe-load wrote no report:\n%s\n", out.c_str());
    std::exit(1);
  }
  const auto& r = v.as_object();
  load_figures f;
  double seconds = number(r.at("measured_seconds"));
  f.commands_per_second = number(r.at("commands_ok")) / seconds;
  f.flows_per_second = number(r.at("flows")) / seconds;
  const auto& outcomes = r.at("saga_outcomes").as_object();
  if (const auto* c = outcomes.if_contains("completed"))
    f.completed_per_second = number(*c) / seconds;
  const auto& latency = r.at("latency").as_object();
  if (const auto* all = latency.if_contains("all")) f.p99_ms = number(all->at("p99_ms"));
  if (const auto* flow = latency.if_contains("flow")) f.flow_p99_ms = number(flow->at("p99_ms"));
  for (const auto& [kind, n] : r.at("errors_by_kind").as_object())
    f.errors += std::llround(number(n));
  std::printf("  %s\n", args.c_str());
  std::printf(
      "    %.0f commands/s, %.0f flows/s, %.0f completed/s, p99 %.1f ms, flow p99 %.1f ms, "
      "%lld errors\n",
      f.commands_per_second, f.flows_per_second, f.completed_per_second, f.p99_ms, f.flow_p99_ms,
      static_cast<long long>(f.errors));
  std::fflush(stdout);
  return f;
}

}  // namespace

int main() {
  auto nats = env("TROUPE_NATS_URL");
  auto run_id = std::to_string(getpid());
  const std::string db = "troupe_bench_" + std::string(mode);
  recreate_database(db);
  run("mkdir -p var/bench");
  auto port = free_port();
  const bool checkout = mode == "checkout";
  std::vector<std::string> sets{"postgres.url=" + database_url(db),
                                "nats.url=" + nats,
                                "http.port=" + std::to_string(port),
                                "publisher.stream=TROUPE_BENCH_LOAD_" + run_id,
                                "publisher.subject_prefix=troupebenchload" + run_id + ".events",
                                "projections.consumer_prefix=bl-" + run_id + "-",
                                "sagas.consumer_prefix=bls-" + run_id + "-",
                                "http.auth.mode=off",
                                "log.level=warn"};
  if (mode == "place_complete") sets.push_back("projections.enabled=false");
  if (mode == "place_complete_view") sets.push_back("projections.only=order_summary");
  if (!checkout) sets.push_back("sagas.enabled=false");
  std::vector<std::string> args{TROUPE_BINARY, "serve"};
  for (const auto& s : sets) {
    args.push_back("--set");
    args.push_back(s);
  }
  auto log = "var/bench/" + std::string(mode) + "-node.log";
  pid_t node = spawn(args, log);
  if (!wait_for("curl -s -o /dev/null -w '%{http_code}' " + url(port, "/readyz"), "200", 60)) {
    std::fprintf(stderr, "troupe serve did not become ready (see %s)\n", log.c_str());
    kill(node, SIGKILL);
    return 1;
  }
  auto target = " -t 127.0.0.1:" + std::to_string(port);
  auto seeded = run(std::string(TROUPE_LOAD_BINARY) + target + " -s place-complete -n 1 -w 0 2>&1");
  if (seeded.find("seeding failed") != std::string::npos) {
    std::fprintf(stderr, "%s", seeded.c_str());
    return 1;
  }

  const std::string scenario = checkout ? "checkout" : "place-complete";
  // Open loop at the goal's latency point: 10k commands/s = 5k
  // place-complete flows/s; 1.5k checkouts/s.
  const std::string latency_rate = checkout ? "1500" : "5000";
  std::vector<double> peak, latency;
  std::map<std::string, std::vector<double>> cpu_per_op;  // by process, and "total"
  for (int r = 0; r < rounds; ++r) {
    auto tag = "var/bench/" + std::string(mode) + "-" + std::to_string(r + 1);
    // A checkout holds its flow for the saga's whole run (hundreds of ms),
    // so its peak needs more flows in flight: one per seeded buyer.
    cpu_window cpu(node, std::chrono::milliseconds{3500}, std::chrono::milliseconds{9000});
    auto p = run_load(target + " --no-seed -s " + scenario + (checkout ? " -c 1000" : " -c 256") +
                          " -d 10s -w 3s",
                      tag + "-peak.json");
    peak.push_back(checkout ? p.completed_per_second : p.commands_per_second);
    double ops = peak.back() * cpu.seconds();
    double total = 0;
    std::printf("    CPU per %s:", checkout ? "completed order" : "command");
    for (const auto& [name, seconds] : cpu.used()) {
      double us = ops > 0 ? seconds * 1e6 / ops : 0;
      cpu_per_op[name].push_back(us);
      total += seconds;
      std::printf(" %s %.1f us,", name.c_str(), us);
    }
    cpu_per_op["total"].push_back(ops > 0 ? total * 1e6 / ops : 0);
    std::printf(" total %.1f us (%.2f cores)\n", cpu_per_op["total"].back(), total / cpu.seconds());
    std::fflush(stdout);
    if (mode != "place_complete_view") {
      // A checkout's status request is a long poll that holds its
      // connection for the saga's run, so the open loop needs as many
      // connections as flows in flight, or it measures the client's queue.
      auto l = run_load(target + " --no-seed -s " + scenario + " -r " + latency_rate +
                            (checkout ? " -c 1000" : " -c 256") + " -d 10s -w 3s",
                        tag + "-latency.json");
      latency.push_back(checkout ? l.flow_p99_ms : l.p99_ms);
    }
  }
  kill(node, SIGTERM);
  int status = 0;
  waitpid(node, &status, 0);
  drop_database(db);
  delete_stream("TROUPE_BENCH_LOAD_" + run_id);

  if (mode == "place_complete") {
    print_result("place_complete", median(peak), "commands/s", 20'000);
    print_result("place_complete_p99_at_10k", median(latency), "ms", 25);
  } else if (mode == "place_complete_view") {
    print_result("place_complete_view", median(peak), "commands/s", 15'000);
  } else {
    print_result("checkout", median(peak), "orders/s", 3'000);
    print_result("checkout_p99_at_1500", median(latency), "ms", 250);
  }
  // Medians by process, each over the rounds (so they need not add up).
  const std::string per =
      std::string(mode) + (checkout ? "_cpu_us_per_order" : "_cpu_us_per_command");
  print_result(per, median(cpu_per_op["total"]), "us");
  print_result(per + "_node", median(cpu_per_op["troupe"]), "us");
  print_result(per + "_postgres", median(cpu_per_op["postgres"]), "us");
  print_result(per + "_nats", median(cpu_per_op["nats-server"]), "us");
  return 0;
}
