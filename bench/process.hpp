#pragma once
// Benchmarks that drive processes: free ports, children, shell commands and
// wrk (its requests/s, latency percentiles and errors parsed).

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <regex>
#include <string>
#include <thread>
#include <vector>

namespace troupe::bench {

inline std::uint16_t free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

/// Starts `args` (args[0] a path) in a child; its output goes to `log_file`
/// when given.
inline pid_t spawn(std::vector<std::string> args, const std::string& log_file = {}) {
  pid_t pid = fork();
  if (pid == 0) {
    if (!log_file.empty()) {
      int fd = open(log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
      }
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

inline std::string run(const std::string& command) {
  std::string out;
  auto* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  std::array<char, 4096> buffer{};
  while (auto n = fread(buffer.data(), 1, buffer.size(), pipe)) out.append(buffer.data(), n);
  pclose(pipe);
  return out;
}

inline std::string url(std::uint16_t port, const std::string& path) {
  return "http://127.0.0.1:" + std::to_string(port) + path;
}

inline bool wait_for(const std::string& command, const std::string& expected, int seconds) {
  for (int i = 0; i < seconds * 10; ++i) {
    if (run(command).find(expected) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds{100});
  }
  return false;
}

struct wrk_result {
  double rps = 0, p50_ms = 0, p99_ms = 0;
  long errors = 0;
};

inline double to_ms(const std::string& value, const std::string& unit) {
  double v = std::stod(value);
  if (unit == "us") return v / 1000;
  if (unit == "s") return v * 1000;
  return v;
}

inline wrk_result run_wrk(const std::string& target, const std::string& script,
                          int connections = 50, int seconds = 10) {
  auto out = run("wrk -t1 -c" + std::to_string(connections) + " -d" + std::to_string(seconds) +
                 "s --latency " + (script.empty() ? "" : "-s " + script + " ") + target + " 2>&1");
  wrk_result r;
  std::smatch m;
  if (std::regex_search(out, m, std::regex(R"(Requests/sec:\s+([0-9.]+))")))
    r.rps = std::stod(m[1]);
  if (std::regex_search(out, m, std::regex(R"(\n\s+50%\s+([0-9.]+)(us|ms|s))")))
    r.p50_ms = to_ms(m[1], m[2]);
  if (std::regex_search(out, m, std::regex(R"(\n\s+99%\s+([0-9.]+)(us|ms|s))")))
    r.p99_ms = to_ms(m[1], m[2]);
  if (std::regex_search(out, m, std::regex(R"(Non-2xx or 3xx responses:\s+([0-9]+))")))
    r.errors += std::stol(m[1]);
  if (std::regex_search(
          out, m, std::regex(R"(Socket errors:.*?([0-9]+), write ([0-9]+), timeout ([0-9]+))")))
    r.errors += std::stol(m[1]) + std::stol(m[2]);
  if (r.rps == 0) std::fprintf(stderr, "wrk said:\n%s\n", out.c_str());
  return r;
}

/// A wrk script placing one-line orders (`POST /api/v1/orders`) for the
/// books bench-0 .. bench-<books-1>, each with a new order id (seeded per
/// wrk process, so several wrk processes never collide).
inline std::string place_order_script(int books) {
  return R"lua(
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
local run = tostring(math.random(1, 1000000000))
local counter = 0
request = function()
  counter = counter + 1
  local body = '{"order_id":"w' .. run .. '-' .. counter ..
    '","buyer_id":"bench","items":[{"book_id":"bench-' .. (counter % )lua" +
         std::to_string(books) + R"lua() .. '","quantity":1}]}'
  return wrk.format("POST", "/api/v1/orders", {["Content-Type"] = "application/json"}, body)
end
)lua";
}

}  // namespace troupe::bench
