#include "runtime/commit_watch.hpp"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace troupe {

namespace {

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

struct waiter {
  std::uint64_t ticket;
  std::int64_t after_version;
  commit_watch::wake_fn wake;
};

struct ticket_entry {
  std::string stream_id;
  commit_watch::clock::time_point deadline;
};

}  // namespace

struct commit_watch::impl {
  std::size_t max_waiters;
  mutable std::mutex mutex;
  std::condition_variable timer_wakeup;
  bool stopped = false;
  std::uint64_t next_ticket = 1;
  // Read without the mutex by committed(): nobody waiting is the common
  // case and costs a commit nothing more than this load (and the signal's
  // one).
  std::atomic<std::size_t> count{0};
  std::atomic<std::int64_t> refused{0};
  std::shared_ptr<wakeup_signal> signal = std::make_shared<wakeup_signal>();
  std::unordered_map<std::string, std::vector<waiter>, string_hash, std::equal_to<>> streams;
  std::unordered_map<std::uint64_t, ticket_entry> tickets;
  std::set<std::pair<clock::time_point, std::uint64_t>> deadlines;
  std::thread timer;

  /// Forgets a ticket whose waiter already left its stream's list.
  void forget(std::uint64_t ticket) {
    auto t = tickets.find(ticket);
    if (t == tickets.end()) return;
    deadlines.erase({t->second.deadline, ticket});
    tickets.erase(t);
    count.fetch_sub(1);
  }

  /// Unregisters `ticket` (under the mutex) and hands back its wake.
  wake_fn take(std::uint64_t ticket) {
    auto t = tickets.find(ticket);
    if (t == tickets.end()) return {};
    wake_fn wake;
    auto s = streams.find(t->second.stream_id);
    if (s != streams.end()) {
      auto& list = s->second;
      for (auto w = list.begin(); w != list.end(); ++w)
        if (w->ticket == ticket) {
          wake = std::move(w->wake);
          list.erase(w);
          break;
        }
      if (list.empty()) streams.erase(s);
    }
    forget(ticket);
    return wake;
  }

  void run_timer() {
    std::unique_lock lock{mutex};
    while (!stopped) {
      if (deadlines.empty()) {
        timer_wakeup.wait(lock);
        continue;
      }
      auto first = deadlines.begin()->first;
      if (clock::now() < first) {
        timer_wakeup.wait_until(lock, first);
        continue;
      }
      std::vector<wake_fn> due;
      auto now = clock::now();
      while (!deadlines.empty() && deadlines.begin()->first <= now)
        due.push_back(take(deadlines.begin()->second));
      lock.unlock();
      for (auto& wake : due)
        if (wake) wake(watch_end::deadline);
      lock.lock();
    }
  }
};

commit_watch::commit_watch(std::size_t max_waiters) : impl_(new impl) {
  impl_->max_waiters = max_waiters;
  impl_->timer = std::thread([im = impl_.get()] { im->run_timer(); });
}

commit_watch::~commit_watch() { stop(); }

std::uint64_t commit_watch::wait(std::string_view stream_id, std::int64_t after_version,
                                 clock::time_point deadline, wake_fn wake) {
  auto& im = *impl_;
  std::lock_guard lock{im.mutex};
  if (im.stopped) return 0;
  if (im.tickets.size() >= im.max_waiters) {
    im.refused.fetch_add(1, std::memory_order_relaxed);
    return 0;
  }
  auto ticket = im.next_ticket++;
  auto s = im.streams.find(stream_id);
  if (s == im.streams.end()) s = im.streams.emplace(std::string(stream_id), 0).first;
  s->second.push_back(waiter{ticket, after_version, std::move(wake)});
  im.tickets.emplace(ticket, ticket_entry{std::string(stream_id), deadline});
  bool earliest = im.deadlines.empty() || deadline < im.deadlines.begin()->first;
  im.deadlines.emplace(deadline, ticket);
  im.count.fetch_add(1);
  if (earliest) im.timer_wakeup.notify_one();
  return ticket;
}

bool commit_watch::cancel(std::uint64_t ticket) {
  auto& im = *impl_;
  std::lock_guard lock{im.mutex};
  return static_cast<bool>(im.take(ticket));
}

void commit_watch::committed(std::string_view stream_id, std::int64_t version) {
  auto& im = *impl_;
  im.signal->notify();
  if (im.count.load() == 0) return;
  std::vector<wake_fn> woken;
  {
    std::lock_guard lock{im.mutex};
    auto s = im.streams.find(stream_id);
    if (s == im.streams.end()) return;
    // One pass over the stream's waiters, however many a commit wakes.
    auto& list = s->second;
    auto kept = list.begin();
    for (auto& w : list) {
      if (w.after_version < version) {
        woken.push_back(std::move(w.wake));
        im.forget(w.ticket);
      } else {
        if (&*kept != &w) *kept = std::move(w);
        ++kept;
      }
    }
    list.erase(kept, list.end());
    if (list.empty()) im.streams.erase(s);
  }
  for (auto& wake : woken)
    if (wake) wake(watch_end::committed);
}

void commit_watch::stop() {
  auto& im = *impl_;
  std::vector<wake_fn> woken;
  {
    std::lock_guard lock{im.mutex};
    if (im.stopped) return;
    im.stopped = true;
    while (!im.tickets.empty()) woken.push_back(im.take(im.tickets.begin()->first));
    im.timer_wakeup.notify_one();
  }
  if (im.timer.joinable()) im.timer.join();
  for (auto& wake : woken)
    if (wake) wake(watch_end::stopped);
}

std::size_t commit_watch::waiting() const { return impl_->count.load(); }

const std::shared_ptr<wakeup_signal>& commit_watch::signal() const { return impl_->signal; }

std::int64_t commit_watch::refused() const {
  return impl_->refused.load(std::memory_order_relaxed);
}

}  // namespace troupe
