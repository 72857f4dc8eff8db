#pragma once
// Waiting for a stream to move: the server side of a long poll. A caller
// that knows a stream at version N asks to be woken once the stream passes
// N; the aggregates of this node report every commit here. A waiter is woken
// exactly once: by a commit past its version, at its deadline, or when the
// watch stops. Without it a client that waits for a saga to move an order
// polls the store many times a second; with it, one request per change.
//
// Commits are only seen on the node that appends them: a clustered caller
// checks node::serves_stream() before waiting here.
//
// Bounded: at most `max_waiters` wait at once; beyond that wait() refuses
// and the caller answers at once instead of waiting.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

#include "runtime/wakeup_signal.hpp"

namespace troupe {

enum class watch_end { committed, deadline, stopped };

class commit_watch {
 public:
  using clock = std::chrono::steady_clock;
  /// Runs once, on the committing thread (an actor's: it must not block),
  /// on the watch's timer thread, or on the thread calling stop().
  using wake_fn = std::function<void(watch_end)>;

  explicit commit_watch(std::size_t max_waiters);
  ~commit_watch();  // stop()
  commit_watch(const commit_watch&) = delete;
  commit_watch& operator=(const commit_watch&) = delete;

  /// Registers a waiter for `stream_id` passing `after_version`. Returns its
  /// ticket (never 0), or 0 without calling `wake` when the watch is full or
  /// stopped. A waiter registered before a commit is woken by it, so a caller
  /// registers first and reads the stream after, and misses nothing.
  std::uint64_t wait(std::string_view stream_id, std::int64_t after_version,
                     clock::time_point deadline, wake_fn wake);

  /// Withdraws a waiter that has not been woken (its wake never runs);
  /// false when it was already woken or withdrawn.
  bool cancel(std::uint64_t ticket);

  /// A commit of `stream_id` up to `version`: wakes its waiters below it,
  /// in one pass over that stream's waiters, and notifies signal(). Costs
  /// two atomic loads when nobody waits on the node; while anybody does,
  /// a lock and a lookup.
  void committed(std::string_view stream_id, std::int64_t version);

  /// Notified at every commit on this node: the publisher waits on it
  /// between rounds instead of sleeping out its poll interval.
  const std::shared_ptr<wakeup_signal>& signal() const;

  /// Wakes every waiter with `stopped`; later wait() calls refuse.
  void stop();

  std::size_t waiting() const;
  /// wait() calls refused because max_waiters were waiting.
  std::int64_t refused() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe
