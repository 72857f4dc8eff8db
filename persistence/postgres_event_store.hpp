#pragma once
// The PostgreSQL event store (libpqxx). Appends from many aggregate actors
// are coalesced by group-commit writer threads, each with its own
// connection: one transaction per batch, one round trip per batch (the
// troupe_append_events function), per-command success or conflict. Reads and
// snapshot writes run on a separate reader pool so they never queue behind
// appends. Every queue is bounded; beyond it callers get `overloaded`.
//
// Owned by the node; all public methods are thread-safe and non-blocking.

#include <chrono>
#include <memory>
#include <string>

#include "persistence/event_store.hpp"

namespace spdlog {
class logger;
}

namespace troupe {

struct postgres_store_options {
  std::string url;  // libpq URL; credentials are never logged
  std::size_t writer_connections = 2;
  std::size_t reader_connections = 2;
  std::size_t batch_max_commands = 512;
  std::chrono::microseconds batch_linger{0};  // wait this long for a fuller batch
  std::size_t max_queued_appends = 20000;
  std::size_t max_queued_reads = 20000;
  std::size_t max_event_bytes = 1 << 20;  // data of one event
  std::chrono::milliseconds reconnect_backoff{250};
  std::shared_ptr<spdlog::logger> log;  // nullptr: spdlog's default
};

/// Counters, for metrics and benchmarks.
struct postgres_store_stats {
  std::int64_t batches = 0;
  std::int64_t batched_commands = 0;
  std::int64_t appended_events = 0;
  std::int64_t conflicts = 0;
  std::int64_t rejected_inputs = 0;
  std::int64_t connection_failures = 0;
  std::int64_t queued_appends = 0;
  // Expected versions sent to the database for the existence check; an
  // append expecting a version this store saw committed needs none.
  std::int64_t version_checks = 0;
  // Where writer time goes, summed over batches (microseconds).
  std::int64_t build_us = 0;    // validating done; building the statement
  std::int64_t execute_us = 0;  // BEGIN + the append function
  std::int64_t commit_us = 0;   // COMMIT (the fsync)
  std::int64_t deliver_us = 0;  // callbacks
};

class postgres_event_store final : public event_store {
 public:
  /// Connects, applies migrations (see postgres/migrations.hpp) and starts
  /// the writer and reader threads. Throws std::runtime_error when the
  /// database cannot be reached or migrated.
  explicit postgres_event_store(postgres_store_options options);
  ~postgres_event_store() override;

  void append(append_request request, append_callback done) override;
  void read_stream(std::string stream_id, stream_version from, std::size_t max_count,
                   read_callback done) override;
  void read_all(global_position after, std::size_t max_count, read_callback done) override;
  void load_snapshot(std::string stream_id, snapshot_callback done) override;
  void load_stream_head(std::string stream_id, std::size_t max_count, head_callback done) override;
  void save_snapshot(snapshot_record snapshot, done_callback done) override;
  void load_checkpoint(std::string name, checkpoint_callback done) override;
  void save_checkpoint(std::string name, global_position position, done_callback done) override;

  postgres_store_stats stats() const;

  /// Stops accepting work, finishes what is queued, closes connections.
  void stop();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe
