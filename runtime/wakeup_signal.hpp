#pragma once
// A "something new happened" signal between threads: many notifiers (the
// threads that commit events), one waiter that otherwise polls (the
// publisher, between rounds that found nothing to publish). A notify that
// comes before the wait is not lost: the next wait returns at once.
//
// notify() costs two atomic loads while a notify is already pending (the
// steady state when nobody waits: publisher.wake_on_commit is off), one
// store more otherwise, and takes a lock only while the waiter sleeps, so
// it sits on the command path without every commit writing a shared line.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace troupe {

class wakeup_signal {
 public:
  void notify() {
    // Already pending: a wait that has not yet consumed it will return and
    // look after this moment, so storing it again adds nothing.
    if (!pending_.load()) pending_.store(true);
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
