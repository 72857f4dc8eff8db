// cluster: order placement through one node versus a three-node cluster on
// this machine, measured in the same run, and how long shards take to move.
//
//   single   one `troupe serve` (cluster.enabled=false)
//   cluster  three `troupe serve` with cluster.enabled, sharing a database
//            and NATS; the load is spread over their three HTTP ports, so
//            about two commands in three are forwarded to another node
//
// Both: POST /api/v1/orders with one line (price from the cache, one durable
// append), sagas off (the command path and forwarding alone), projections
// on. wrk, 48 connections in all (16 per cluster node), 10 s rounds,
// interleaved, medians of 3. On a 2-core machine three nodes share the
// same cores, so the cluster cannot be faster: the ratio is the cost of
// forwarding and of running three processes.
//
// Then, under the same load: a fourth node joins (rebalance: until the four
// share the shards evenly), and is killed -9 (takeover: until the three own
// every shard again; bounded below by the lease TTL).
//
//   RESULT cluster_3_nodes value=<orders/s> unit=orders/s limit=<1-node orders/s> ...
//   RESULT rebalance_seconds value=<s> unit=s
//   RESULT cluster_takeover_seconds value=<s> unit=s limit=<lease TTL + 2 s> ...

#include <signal.h>
#include <sys/wait.h>

#include <boost/json.hpp>
#include <fstream>
#include <future>
#include <map>
#include <set>

#include "bench/bench_env.hpp"
#include "bench/nats_env.hpp"
#include "bench/process.hpp"
#include "bench/result.hpp"

namespace {

using namespace troupe::bench;
using steady = std::chrono::steady_clock;

constexpr int shards = 64;
constexpr int lease_ttl_ms = 3000;

struct node_process {
  std::string id;
  std::uint16_t port = free_port();
  pid_t pid = -1;
};

std::vector<std::string> serve_args(const std::vector<std::string>& sets) {
  std::vector<std::string> args{TROUPE_BINARY, "serve"};
  for (const auto& s : sets) {
    args.push_back("--set");
    args.push_back(s);
  }
  return args;
}

/// Members and whether every shard has a live owner, evenly spread.
bool settled(std::uint16_t port, std::size_t nodes) {
  auto body = run("curl -s --max-time 2 " + url(port, "/api/v1/cluster"));
  boost::system::error_code ec;
  auto json = boost::json::parse(body, ec);
  if (ec || !json.is_object()) return false;
  std::set<std::string> members;
  for (const auto& m : json.at("nodes").as_array())
    members.insert(std::string(m.at("id").as_string()));
  if (members.size() != nodes) return false;
  std::map<std::string, int> owned;
  for (const auto& s : json.at("shards").as_array()) {
    auto owner = std::string(s.at("owner").as_string());
    if (!members.contains(owner)) return false;
    ++owned[owner];
  }
  if (owned.size() != nodes) return false;
  for (const auto& [owner, n] : owned)
    if (n < shards / static_cast<int>(nodes) || n > shards / static_cast<int>(nodes) + 1)
      return false;
  return true;
}

double seconds_until(const std::function<bool()>& done, double limit_s) {
  auto start = steady::now();
  while (!done()) {
    if (std::chrono::duration<double>(steady::now() - start).count() > limit_s) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds{50});
  }
  return std::chrono::duration<double>(steady::now() - start).count();
}

}  // namespace

int main() {
  auto nats = env("TROUPE_NATS_URL");
  auto run_id = std::to_string(getpid());
  const std::string single_db = "troupe_bench_single", cluster_db = "troupe_bench_cluster";
  recreate_database(single_db);
  recreate_database(cluster_db);
  auto logs = "/tmp/troupe_bench_cluster_" + run_id;
  run("mkdir -p " + logs);

  auto common = [&](const std::string& db, const std::string& tag) {
    return std::vector<std::string>{
        "postgres.url=" + database_url(db),
        "nats.url=" + nats,
        "publisher.stream=TROUPE_BENCH_" + tag + "_" + run_id,
        "publisher.subject_prefix=troupebench" + tag + run_id + ".events",
        "projections.consumer_prefix=b" + tag + "-" + run_id + "-",
        "sagas.enabled=false",
        "http.auth.mode=off",
        "log.level=warn"};
  };
  node_process single{"single"};
  {
    auto sets = common(single_db, "S");
    sets.push_back("http.port=" + std::to_string(single.port));
    single.pid = spawn(serve_args(sets), logs + "/single.log");
  }
  std::vector<node_process> nodes{{"c1"}, {"c2"}, {"c3"}, {"c4"}};
  auto start_member = [&](node_process& n, bool wait = true) {
    auto sets = common(cluster_db, "C");
    for (const std::string& s : {"http.port=" + std::to_string(n.port), "node.id=" + n.id,
                                 std::string("cluster.enabled=true"), "cluster.name=bench" + run_id,
                                 "cluster.shards=" + std::to_string(shards),
                                 "cluster.lease_ttl_ms=" + std::to_string(lease_ttl_ms),
                                 std::string("cluster.heartbeat_ms=300")})
      sets.push_back(s);
    n.pid = spawn(serve_args(sets), logs + "/" + n.id + ".log");
    return !wait || wait_for("curl -s " + url(n.port, "/readyz"), "\"ready\"", 60);
  };
  bool ok = wait_for("curl -s " + url(single.port, "/readyz"), "\"ready\"", 60);
  for (int i = 0; i < 3 && ok; ++i) ok = start_member(nodes[static_cast<std::size_t>(i)]);
  auto cleanup = [&] {
    for (auto* n : {&single, &nodes[0], &nodes[1], &nodes[2], &nodes[3]}) {
      if (n->pid <= 0) continue;
      kill(n->pid, SIGTERM);
      waitpid(n->pid, nullptr, 0);
      n->pid = -1;
    }
    drop_database(single_db);
    drop_database(cluster_db);
    // The two worlds' event streams and the cluster's KV buckets.
    for (const std::string& s :
         {"TROUPE_BENCH_S_" + run_id, "TROUPE_BENCH_C_" + run_id,
          "KV_troupe_bench" + run_id + "_nodes", "KV_troupe_bench" + run_id + "_leases"})
      delete_stream(s);
  };
  if (!ok || seconds_until([&] { return settled(nodes[0].port, 3); }, 60) < 0) {
    std::fprintf(stderr, "cluster: the nodes did not start (logs in %s)\n", logs.c_str());
    cleanup();
    return 1;
  }
  // The catalog, in both worlds.
  for (auto port : {single.port, nodes[0].port})
    for (int b = 0; b < 200; ++b)
      run("curl -s -o /dev/null -X POST -H 'content-type: application/json' -d "
          "'{\"book_id\":\"bench-" +
          std::to_string(b) +
          "\",\"name\":\"Bench\",\"price\":1000,\"category_id\":\"bench\",\"publisher_id\":\"p\","
          "\"initial_stock\":1000000000}' " +
          url(port, "/api/v1/books"));
  auto script = logs + "/place.lua";
  std::ofstream(script) << place_order_script(200);
  // wrk against several nodes at once; the summed rate, the worst p99.
  auto spread_load = [&](std::vector<std::uint16_t> ports, int connections, int seconds) {
    std::vector<std::future<wrk_result>> parts;
    for (auto port : ports)
      parts.push_back(std::async(std::launch::async, [&, port] {
        return run_wrk(url(port, "/"), script, connections, seconds);
      }));
    wrk_result sum;
    for (auto& p : parts) {
      auto r = p.get();
      sum.rps += r.rps;
      sum.p99_ms = std::max(sum.p99_ms, r.p99_ms);
      sum.p50_ms = std::max(sum.p50_ms, r.p50_ms);
      sum.errors += r.errors;
    }
    return sum;
  };
  std::vector<double> one, three, one_p99, three_p99;
  long errors = 0;
  for (int round = 1; round <= 3; ++round) {
    auto s = spread_load({single.port}, 48, 10);
    auto c = spread_load({nodes[0].port, nodes[1].port, nodes[2].port}, 16, 10);
    one.push_back(s.rps);
    one_p99.push_back(s.p99_ms);
    three.push_back(c.rps);
    three_p99.push_back(c.p99_ms);
    errors += s.errors + c.errors;
    std::printf(
        "round %d: one node %.0f orders/s (p99 %.1f ms), three nodes %.0f orders/s (p99 %.1f "
        "ms)\n",
        round, s.rps, s.p99_ms, c.rps, c.p99_ms);
    std::fflush(stdout);
  }

  // Rebalance and takeover, under load on the first three nodes.
  auto background = std::async(std::launch::async, [&] {
    return spread_load({nodes[0].port, nodes[1].port, nodes[2].port}, 16, 30);
  });
  std::this_thread::sleep_for(std::chrono::seconds{3});
  // From the moment the new node shows up as a member until the four share
  // the shards evenly (the others hand theirs over, it takes them).
  start_member(nodes[3], false);
  auto members = [&] {
    auto body = run("curl -s --max-time 2 " + url(nodes[0].port, "/api/v1/cluster"));
    return body.find("\"c4\"") != std::string::npos;
  };
  double rebalance = -1;
  if (seconds_until(members, 60) >= 0)
    rebalance = seconds_until([&] { return settled(nodes[0].port, 4); }, 60);
  std::this_thread::sleep_for(std::chrono::seconds{2});
  kill(nodes[3].pid, SIGKILL);
  waitpid(nodes[3].pid, nullptr, 0);
  nodes[3].pid = -1;
  double takeover = seconds_until([&] { return settled(nodes[0].port, 3); }, 60);
  auto during = background.get();
  errors += during.errors;
  std::printf(
      "a fourth node joined: shards balanced over four %.2f s after it became a member; killed "
      "-9: three nodes own every shard again after %.2f s (lease TTL "
      "%.1f s); load meanwhile %.0f orders/s, p99 %.1f ms, %ld errors\n",
      rebalance, takeover, lease_ttl_ms / 1000.0, during.rps, during.p99_ms, during.errors);
  std::printf(
      "medians: one node %.0f orders/s (p99 %.1f ms); three nodes %.0f orders/s (p99 %.1f "
      "ms)\n",
      median(one), median(one_p99), median(three), median(three_p99));
  if (errors > 0)
    std::printf("non-2xx answers or socket errors: %ld (503s while shards move are expected)\n",
                errors);
  cleanup();
  print_result("cluster_3_nodes", median(three), "orders/s", median(one));
  print_result("rebalance_seconds", rebalance, "s");
  print_result("cluster_takeover_seconds", takeover, "s", lease_ttl_ms / 1000.0 + 2);
  run("rm -rf " + logs);
  return rebalance < 0 || takeover < 0 ? 1 : 0;
}
