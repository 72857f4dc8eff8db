#pragma once
// The troupe executable as a test runs it: `troupe serve` in a child
// process (to kill it), or a command whose exit code and output are read.
// TROUPE_BINARY comes from the test target's compile definitions.

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace troupe::integration {

/// A TCP port free on loopback now (for a child to listen on).
inline std::uint16_t free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

/// `troupe serve --set <each of sets> <extra...>` in a child process; its
/// output goes to `log_file` when given (appended), else to the test's.
inline pid_t start_serve(const std::vector<std::string>& sets,
                         const std::vector<std::string>& extra = {},
                         const std::string& log_file = {}) {
  // Any free port, unless the test picks one: tests must not collide.
  std::vector<std::string> args{TROUPE_BINARY, "serve", "--set", "http.port=0"};
  for (const auto& s : sets) {
    args.push_back("--set");
    args.push_back(s);
  }
  args.insert(args.end(), extra.begin(), extra.end());
  pid_t pid = fork();
  if (pid == 0) {
    if (!log_file.empty()) {
      int fd = open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
      }
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(TROUPE_BINARY, argv.data());
    _exit(127);
  }
  return pid;
}

/// Sends `sig` to a child started here, waits for it and returns its exit
/// status (-1 when there is none); `pid` is reset.
inline int stop_process(pid_t& pid, int sig) {
  if (pid <= 0) return -1;
  kill(pid, sig);
  int status = 0;
  waitpid(pid, &status, 0);
  pid = -1;
  return status;
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
