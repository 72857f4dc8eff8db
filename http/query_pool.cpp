#include "http/query_pool.hpp"

#include <memory>
#include <pqxx/pqxx>

namespace troupe::http {

query_pool::query_pool(query_pool_options options) : options_(std::move(options)) {
  for (int i = 0; i < std::max(options_.threads, 1); ++i)
    workers_.emplace_back([this] { worker_loop(); });
}

query_pool::~query_pool() { stop(); }

bool query_pool::submit(work run, failure fail) {
  {
    std::lock_guard lock{mutex_};
    if (stopping_ || queue_.size() >= options_.max_queued) return false;
    queue_.push_back(job{std::move(run), std::move(fail)});
  }
  wake_.notify_one();
  return true;
}

void query_pool::stop() {
  {
    std::lock_guard lock{mutex_};
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& w : workers_)
    if (w.joinable()) w.join();
  workers_.clear();
}

std::size_t query_pool::queued() const {
  std::lock_guard lock{mutex_};
  return queue_.size();
}

std::string query_pool::connection_string() const {
  // An unreachable server must fail a job in seconds, not hang a worker.
  const auto& url = options_.postgres_url;
  if (url.find("connect_timeout") != std::string::npos) return url;
  if (url.starts_with("postgres://") || url.starts_with("postgresql://"))
    return url + (url.find('?') == std::string::npos ? "?" : "&") + "connect_timeout=5";
  return url + " connect_timeout=5";
}

void query_pool::worker_loop() {
  std::unique_ptr<pqxx::connection> connection;
  while (true) {
    job next;
    {
      std::unique_lock lock{mutex_};
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything queued is done
      next = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      if (!connection || !connection->is_open()) {
        connection = std::make_unique<pqxx::connection>(connection_string());
        // A runaway query must not hold a worker (and with it a share of
        // the API) for long.
        pqxx::nontransaction(*connection).exec("SET statement_timeout = 10000");
      }
      next.run(*connection);
    } catch (const pqxx::broken_connection& e) {
      connection.reset();
      next.fail(std::string("database unreachable: ") + e.what());
    } catch (const std::exception& e) {
      // A failed statement may leave the connection mid-transaction; a fresh
      // one is cheaper to reason about than recovery.
      if (connection && !connection->is_open()) connection.reset();
      next.fail(e.what());
    }
  }
}

}  // namespace troupe::http
