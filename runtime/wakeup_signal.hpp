#pragma once
// A "something new happened" signal between threads: many notifiers (the
// threads that commit events), one waiter that otherwise polls (the
// publisher, between rounds that found nothing to publish). A notify that
// comes before the wait is not lost: the next wait returns at once.
//
// notify() costs one atomic load while a notify is already pending (the
// steady state between the waiter's waits, and whenever nobody waits), and
// only the call that makes it pending writes the flag and, if the waiter
// sleeps, takes the lock - so it sits on the command path without every
// commit writing a shared line or queueing on the waiter's mutex.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace troupe {

class wakeup_signal {
 public:
  void notify() {
    // Already pending: a wait that has not yet consumed it will return and
    // look after this moment, and whoever made it pending woke the waiter,
    // so this call has nothing to add - no store, no lock.
    if (pending_.load() || pending_.exchange(true)) return;
    if (waiting_.load()) {
      std::lock_guard lock(mutex_);
      woken_.notify_one();
    }
  }

  /// Returns at the first notify since the last wait (true), or after
  /// `timeout` without one (false).
  bool wait_for(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    waiting_.store(true);
    bool notified = woken_.wait_for(lock, timeout, [&] { return pending_.exchange(false); });
    waiting_.store(false);
    return notified;
  }

 private:
  std::atomic<bool> pending_{false};
  std::atomic<bool> waiting_{false};
  std::mutex mutex_;
  std::condition_variable woken_;
};

}  // namespace troupe
