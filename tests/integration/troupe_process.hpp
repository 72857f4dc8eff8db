#pragma once
// The troupe executable as a test runs it: `troupe serve` in a child
// process (to kill it), or a command whose exit code and output are read.
// TROUPE_BINARY comes from the test target's compile definitions.

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace troupe::integration {

/// `troupe serve --set <each of sets> <extra...>` in a child process.
inline pid_t start_serve(const std::vector<std::string>& sets,
                         const std::vector<std::string>& extra = {}) {
  // Any free port, unless the test picks one: tests must not collide.
  std::vector<std::string> args{TROUPE_BINARY, "serve", "--set", "http.port=0"};
  for (const auto& s : sets) {
    args.push_back("--set");
    args.push_back(s);
  }
  args.insert(args.end(), extra.begin(), extra.end());
  pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(TROUPE_BINARY, argv.data());
    _exit(127);
  }
  return pid;
}

/// Runs `troupe <args>`; its exit code and everything it printed.
inline std::pair<int, std::string> run_troupe(const std::string& args) {
  std::string out;
  auto* pipe = popen((std::string(TROUPE_BINARY) + " " + args + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  char buffer[512];
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) out += buffer;
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace troupe::integration
