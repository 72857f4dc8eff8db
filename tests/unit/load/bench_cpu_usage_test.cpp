// The load benchmarks' CPU accounting (bench/cpu_usage.hpp): a process's
// CPU time read from /proc, its own and that of the children it reaped.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <string>

#include "bench/cpu_usage.hpp"

namespace {

using troupe::bench::process_cpu_seconds;

/// Spins until this process has used `seconds` of CPU (its own clock, so
/// the amount does not depend on how busy the machine is).
void burn_cpu(double seconds) {
  timespec t{};
  volatile unsigned long sink = 0;
  do {
    for (int i = 0; i < 100000; ++i) sink = sink + static_cast<unsigned long>(i);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  } while (static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9 < seconds);
}

/// A child that renames itself, runs `work`, tells the parent through a
/// pipe and then waits to be killed, so its /proc entry can be read.
template <class Work>
pid_t start_child(const char* name, int ready_fd[2], Work work) {
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_NAME, name);
    work();
    char done = 1;
    if (write(ready_fd[1], &done, 1) != 1) _exit(1);
    pause();
    _exit(0);
  }
  return pid;
}

void wait_ready(int ready_fd[2]) {
  char done = 0;
  ASSERT_EQ(read(ready_fd[0], &done, 1), 1);
}

void stop_child(pid_t pid) {
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

TEST(BenchCpuUsage, ReadsANameWithSpacesAndParenthesesAndTheCpuUsed) {
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = start_child("x) (y z", ready, [] { burn_cpu(0.2); });
  wait_ready(ready);
  std::string name;
  double seconds = -1;
  ASSERT_TRUE(process_cpu_seconds(child, name, seconds));
  stop_child(child);
  EXPECT_EQ(name, "x) (y z");
  EXPECT_GE(seconds, 0.15);  // 0.2 s used; /proc counts in 10 ms ticks
  EXPECT_LT(seconds, 5.0);
  close(ready[0]);
  close(ready[1]);
}

TEST(BenchCpuUsage, CountsTheCpuOfChildrenItHasReaped) {
  // As PostgreSQL's postmaster does for a backend that exited: the CPU the
  // backend used stays in the total.
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = start_child("reaper", ready, [] {
    pid_t grandchild = fork();
    if (grandchild == 0) {
      burn_cpu(0.2);
      _exit(0);
    }
    waitpid(grandchild, nullptr, 0);
  });
  wait_ready(ready);
  std::string name;
  double seconds = -1;
  ASSERT_TRUE(process_cpu_seconds(child, name, seconds));
  stop_child(child);
  EXPECT_EQ(name, "reaper");
  EXPECT_GE(seconds, 0.15);
  close(ready[0]);
  close(ready[1]);
}

TEST(BenchCpuUsage, AProcessThatIsGoneIsNotRead) {
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = start_child("short", ready, [] {});
  wait_ready(ready);
  stop_child(child);
  std::string name;
  double seconds = -1;
  EXPECT_FALSE(process_cpu_seconds(child, name, seconds));
  close(ready[0]);
  close(ready[1]);
}

}  // namespace
