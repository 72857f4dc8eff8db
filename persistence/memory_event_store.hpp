#pragma once
// In-memory event store: the twin of the PostgreSQL store for unit tests, the
// decider test kit and in-memory benchmarks. Same contract, same expected-
// version and global-position semantics; callbacks run inline on the caller's
// thread. Thread-safe; one mutex, since every operation is short.

#include <deque>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "persistence/event_store.hpp"

namespace troupe {

class memory_event_store final : public event_store {
 public:
  explicit memory_event_store(std::size_t max_event_bytes = 1 << 20);
  ~memory_event_store() override;

  void append(append_request request, append_callback done) override;
  void read_stream(std::string stream_id, stream_version from, std::size_t max_count,
                   read_callback done) override;
  void read_all(global_position after, std::size_t max_count, read_callback done) override;
  void load_snapshot(std::string stream_id, snapshot_callback done) override;
  void save_snapshot(snapshot_record snapshot, done_callback done) override;
  void load_checkpoint(std::string name, checkpoint_callback done) override;
  void save_checkpoint(std::string name, global_position position, done_callback done) override;

  /// Test hook: the next `count` operations fail with `unavailable`.
  void fail_next(std::size_t count);

  std::size_t event_count() const;
  std::size_t stream_count() const;

 private:
  bool take_injected_failure();

  /// What all events of one append share, stored once.
  struct append_info {
    std::string stream_id;
    event_metadata metadata;
    clock_type::time_point recorded_at;
  };
  struct stored_event {
    std::shared_ptr<const append_info> append;
    std::string event_id;
    std::string type;
    std::string data;
    stream_version version;
    int schema_version;
  };
  recorded_event materialise(std::size_t index) const;

  mutable std::mutex mutex_;
  std::deque<stored_event> log_;  // index = position - 1; a deque never moves old events
  std::unordered_map<std::string, std::vector<std::size_t>> streams_;
  std::unordered_map<std::string, snapshot_record> snapshots_;
  std::unordered_map<std::string, global_position> checkpoints_;
  std::size_t failures_to_inject_ = 0;
  std::size_t max_event_bytes_;
};

}  // namespace troupe
