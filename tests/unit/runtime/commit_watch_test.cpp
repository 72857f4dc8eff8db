#include "runtime/commit_watch.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

namespace {

using troupe::commit_watch;
using troupe::watch_end;
using namespace std::chrono_literals;

// Records how each waiter ended; a waiter woken twice is a bug.
struct endings {
  std::mutex mutex;
  std::vector<std::pair<int, watch_end>> seen;
  commit_watch::wake_fn waiter(int id) {
    return [this, id](watch_end how) {
      std::lock_guard lock{mutex};
      seen.emplace_back(id, how);
    };
  }
  std::vector<std::pair<int, watch_end>> get() {
    std::lock_guard lock{mutex};
    return seen;
  }
};

auto far() { return commit_watch::clock::now() + 1h; }

TEST(CommitWatch, ACommitPastTheVersionWakesItsStreamsWaitersOnly) {
  endings e;  // outlives the watch, whose stop wakes whoever still waits
  commit_watch watch(100);
  ASSERT_NE(watch.wait("order-1", 3, far(), e.waiter(1)), 0U);
  ASSERT_NE(watch.wait("order-1", 5, far(), e.waiter(2)), 0U);
  ASSERT_NE(watch.wait("order-2", 3, far(), e.waiter(3)), 0U);
  EXPECT_EQ(watch.waiting(), 3U);

  watch.committed("order-1", 3);  // not past 3
  watch.committed("order-9", 100);
  EXPECT_TRUE(e.get().empty());
  watch.committed("order-1", 4);  // past 3, not past 5
  ASSERT_EQ(e.get().size(), 1U);
  EXPECT_EQ(e.get()[0], std::make_pair(1, watch_end::committed));
  watch.committed("order-1", 6);
  ASSERT_EQ(e.get().size(), 2U);
  EXPECT_EQ(e.get()[1], std::make_pair(2, watch_end::committed));
  watch.committed("order-1", 7);  // nobody left there: nothing runs twice
  EXPECT_EQ(e.get().size(), 2U);
  EXPECT_EQ(watch.waiting(), 1U);
}

TEST(CommitWatch, AWaiterEndsAtItsDeadlineUnlessWithdrawn) {
  std::promise<watch_end> ended;
  endings e;
  commit_watch watch(100);
  watch.wait("book-1", 0, commit_watch::clock::now() + 30ms,
             [&ended](watch_end how) { ended.set_value(how); });
  auto withdrawn = watch.wait("book-1", 0, commit_watch::clock::now() + 20ms, e.waiter(1));
  EXPECT_TRUE(watch.cancel(withdrawn));
  EXPECT_FALSE(watch.cancel(withdrawn));
  auto f = ended.get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(f.get(), watch_end::deadline);
  EXPECT_TRUE(e.get().empty());
  EXPECT_EQ(watch.waiting(), 0U);
  watch.committed("book-1", 1);  // the deadline already ended it
}

TEST(CommitWatch, IsBoundedAndAFreedPlaceCanBeTakenAgain) {
  endings e;
  commit_watch watch(2);
  auto first = watch.wait("s-1", 0, far(), e.waiter(1));
  ASSERT_NE(first, 0U);
  ASSERT_NE(watch.wait("s-2", 0, far(), e.waiter(2)), 0U);
  EXPECT_EQ(watch.wait("s-3", 0, far(), e.waiter(3)), 0U);
  EXPECT_EQ(watch.refused(), 1);
  watch.committed("s-2", 1);
  EXPECT_NE(watch.wait("s-3", 0, far(), e.waiter(3)), 0U);
  EXPECT_TRUE(watch.cancel(first));
  EXPECT_NE(watch.wait("s-4", 0, far(), e.waiter(4)), 0U);
  EXPECT_EQ(watch.refused(), 1);
}

TEST(CommitWatch, StoppingEndsEveryWaiterAndRefusesNewOnes) {
  endings e;  // outlives the watch, whose stop wakes whoever still waits
  commit_watch watch(100);
  for (int i = 0; i < 5; ++i) watch.wait("s-" + std::to_string(i % 2), 0, far(), e.waiter(i));
  watch.stop();
  auto seen = e.get();
  ASSERT_EQ(seen.size(), 5U);
  for (const auto& [id, how] : seen) EXPECT_EQ(how, watch_end::stopped) << id;
  EXPECT_EQ(watch.wait("s-0", 0, far(), e.waiter(9)), 0U);
  EXPECT_EQ(watch.refused(), 0);  // stopped is not full
  watch.stop();
}

TEST(CommitWatch, UnderConcurrentCommitsEveryWaiterIsWokenExactlyOnce) {
  commit_watch watch(100000);
  constexpr int streams = 50, per_thread = 2000, threads = 4;
  std::atomic<int> woken{0}, by_commit{0};
  std::vector<std::atomic<int>> times(threads * per_thread);
  std::atomic<bool> done{false};
  std::thread committer([&] {
    std::int64_t v = 0;
    while (!done) {
      ++v;
      for (int s = 0; s < streams; ++s) watch.committed("s-" + std::to_string(s), v);
    }
  });
  std::vector<std::thread> waiters;
  for (int t = 0; t < threads; ++t)
    waiters.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        int id = t * per_thread + i;
        // Some wait past a version the committer reaches, some until a
        // deadline, some are withdrawn.
        auto deadline = commit_watch::clock::now() + (i % 3 == 0 ? 1ms : 1h);
        auto ticket =
            watch.wait("s-" + std::to_string(i % streams), i % 7, deadline, [&, id](watch_end how) {
              times[id].fetch_add(1);
              woken.fetch_add(1);
              if (how == watch_end::committed) by_commit.fetch_add(1);
            });
        ASSERT_NE(ticket, 0U);
        if (i % 5 == 0 && watch.cancel(ticket)) times[id].fetch_add(1);  // counts as its end
      }
    });
  for (auto& w : waiters) w.join();
  for (int i = 0; i < 1000 && watch.waiting() > 0; ++i) std::this_thread::sleep_for(5ms);
  done = true;
  committer.join();
  EXPECT_EQ(watch.waiting(), 0U);
  for (int id = 0; id < threads * per_thread; ++id) ASSERT_EQ(times[id].load(), 1) << id;
  EXPECT_GT(by_commit.load(), 0);
}

}  // namespace

// ---- the publisher's wake-up signal ---------------------------------------------

TEST(WakeupSignal, ANotifyBeforeTheWaitIsNotLost) {
  troupe::wakeup_signal signal;
  signal.notify();
  auto started = std::chrono::steady_clock::now();
  EXPECT_TRUE(signal.wait_for(10s));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_FALSE(signal.wait_for(10ms)) << "one notify wakes one wait";
}

TEST(WakeupSignal, ANotifyFromAnotherThreadEndsTheWaitEarly) {
  troupe::wakeup_signal signal;
  auto waited = std::async(std::launch::async, [&] {
    auto started = std::chrono::steady_clock::now();
    bool notified = signal.wait_for(30s);
    return std::make_pair(notified, std::chrono::steady_clock::now() - started);
  });
  // Notify until the waiter has returned: a notify that lands before it
  // sleeps is kept for it, one after wakes it.
  while (waited.wait_for(10ms) != std::future_status::ready) signal.notify();
  auto [notified, took] = waited.get();
  EXPECT_TRUE(notified);
  EXPECT_LT(took, 20s);
}

TEST(CommitWatch, EveryCommitNotifiesItsSignalEvenWithNobodyWaiting) {
  commit_watch watch(100);
  EXPECT_FALSE(watch.signal()->wait_for(1ms));
  watch.committed("order-1", 1);
  EXPECT_TRUE(watch.signal()->wait_for(10s));
}
