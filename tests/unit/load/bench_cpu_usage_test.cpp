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

/// What /proc says of a child that renamed itself to `name` and ran
/// `work`: read while the child is alive (it waits to be killed), or, with
/// `after_exit`, once it has exited and been reaped.
struct child_reading {
  bool started = false;  // the child ran its work and said so
  bool read = false;
  std::string name;
  double seconds = -1;
};

template <class Work>
child_reading read_child(const char* name, Work work, bool after_exit = false) {
  int ready[2];
  if (pipe(ready) != 0) return {};
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_NAME, name);
    work();
    char done = 1;
    if (write(ready[1], &done, 1) != 1) _exit(1);
    pause();
    _exit(0);
  }
  char done = 0;
  child_reading r;
  r.started = read(ready[0], &done, 1) == 1;
  auto stop = [pid] {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  };
  if (after_exit) stop();
  if (r.started) r.read = process_cpu_seconds(pid, r.name, r.seconds);
  if (!after_exit) stop();
  close(ready[0]);
  close(ready[1]);
  return r;
}

TEST(BenchCpuUsage, ReadsANameWithSpacesAndParenthesesAndTheCpuUsed) {
  auto r = read_child("x) (y z", [] { burn_cpu(0.2); });
  ASSERT_TRUE(r.read);
  EXPECT_EQ(r.name, "x) (y z");
  EXPECT_GE(r.seconds, 0.15);  // 0.2 s used; /proc counts in 10 ms ticks
  EXPECT_LT(r.seconds, 5.0);
}

TEST(BenchCpuUsage, CountsTheCpuOfChildrenItHasReaped) {
  // As PostgreSQL's postmaster does for a backend that exited: the CPU the
  // backend used stays in the total.
  auto r = read_child("reaper", [] {
    pid_t grandchild = fork();
    if (grandchild == 0) {
      burn_cpu(0.2);
      _exit(0);
    }
    waitpid(grandchild, nullptr, 0);
  });
  ASSERT_TRUE(r.read);
  EXPECT_EQ(r.name, "reaper");
  EXPECT_GE(r.seconds, 0.15);
}

TEST(BenchCpuUsage, AProcessThatIsGoneIsNotRead) {
  auto r = read_child(
      "short", [] {}, /*after_exit=*/true);
  EXPECT_FALSE(r.read);
}

}  // namespace
