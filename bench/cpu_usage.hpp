#pragma once
// CPU time of the processes a load benchmark runs, read from /proc: the
// load benchmarks report the CPU each process spends per command beside
// their peaks, which on this shared machine move 15-20 % between runs of
// one build.

#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace troupe::bench {

/// A process's CPU seconds: user + system of its own threads, plus those of
/// its children it has waited for (so a PostgreSQL backend that exits
/// during a window still counts, through the postmaster).
inline bool process_cpu_seconds(pid_t pid, std::string& name, double& seconds) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(in, text)) return false;
  // The name is in parentheses and may hold spaces; the fields follow it.
  auto open = text.find('(');
  auto close = text.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return false;
  name = text.substr(open + 1, close - open - 1);
  std::istringstream fields(text.substr(close + 2));
  std::vector<std::string> f;
  for (std::string field; fields >> field && f.size() < 15;) f.push_back(field);
  if (f.size() < 15) return false;
  // After the name: state(0) ... utime(11) stime(12) cutime(13) cstime(14).
  double ticks = 0;
  for (int i = 11; i <= 14; ++i) ticks += std::stod(f[static_cast<std::size_t>(i)]);
  seconds = ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
  return true;
}

/// CPU seconds so far of every process whose name is in `names`, summed by
/// name; the node is counted by its pid (its name is shared with tools).
inline std::map<std::string, double> cpu_by_name(const std::vector<std::string>& names,
                                                 pid_t node) {
  std::map<std::string, double> total;
  for (const auto& n : names) total[n] = 0;
  total["troupe"] = 0;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return total;
  while (auto* entry = readdir(proc)) {
    char* end = nullptr;
    auto pid = static_cast<pid_t>(std::strtol(entry->d_name, &end, 10));
    if (end == entry->d_name || *end != '\0') continue;
    std::string name;
    double seconds = 0;
    if (!process_cpu_seconds(pid, name, seconds)) continue;
    if (pid == node) {
      total["troupe"] += seconds;
    } else if (total.contains(name) && name != "troupe") {
      total[name] += seconds;
    }
  }
  closedir(proc);
  return total;
}

/// Measures the CPU each process spends over a window of a load run, in a
/// thread of its own: from `skip` after construction, for `window`.
class cpu_window {
 public:
  cpu_window(pid_t node, std::chrono::milliseconds skip, std::chrono::milliseconds window)
      : node_(node), window_(window) {
    thread_ = std::thread([this, skip] {
      std::this_thread::sleep_for(skip);
      auto before = cpu_by_name(names(), node_);
      auto start = std::chrono::steady_clock::now();
      std::this_thread::sleep_for(window_);
      auto after = cpu_by_name(names(), node_);
      seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      for (const auto& [name, cpu] : after) used_[name] = cpu - before[name];
    });
  }
  cpu_window(const cpu_window&) = delete;
  cpu_window& operator=(const cpu_window&) = delete;
  ~cpu_window() {
    if (thread_.joinable()) thread_.join();
  }

  /// Waits for the window to end; then CPU seconds used in it, by process.
  const std::map<std::string, double>& used() {
    if (thread_.joinable()) thread_.join();
    return used_;
  }
  double seconds() {
    used();
    return seconds_;
  }

  static std::vector<std::string> names() { return {"postgres", "nats-server", "troupe-load"}; }

 private:
  pid_t node_;
  std::chrono::milliseconds window_;
  std::thread thread_;
  std::map<std::string, double> used_;
  double seconds_ = 0;
};

}  // namespace troupe::bench
