#pragma once
// Blocking PostgreSQL work off the io threads: a few worker threads, each
// with its own connection, fed by a bounded queue. Queries on views and the
// idempotency table run here; a full queue refuses new work at once (the
// caller answers 503) instead of queueing without bound.

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace pqxx {
class connection_base;
}

namespace troupe::http {

struct query_pool_options {
  std::string postgres_url;
  int threads = 2;
  std::size_t max_queued = 2000;
};

class query_pool {
 public:
  /// Runs on a worker with a live connection; may throw (the job's `fail`
  /// is then called with the reason, and a broken connection is replaced).
  using work = std::function<void(pqxx::connection_base&)>;
  using failure = std::function<void(const std::string& reason)>;

  explicit query_pool(query_pool_options options);
  ~query_pool();
  query_pool(const query_pool&) = delete;
  query_pool& operator=(const query_pool&) = delete;

  /// Queues a job; false (and nothing queued) when the queue is full or the
  /// pool is stopping.
  bool submit(work run, failure fail);
  /// Finishes the queued jobs and joins the workers. Idempotent.
  void stop();

  std::size_t queued() const;

 private:
  struct job {
    work run;
    failure fail;
  };
  void worker_loop();
  std::string connection_string() const;

  query_pool_options options_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<job> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace troupe::http
