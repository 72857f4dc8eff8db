#pragma once
// The event store interface: the front door of persistence/. The runtime only
// ever talks to this interface; PostgreSQL and in-memory implementations sit
// behind it and pass one shared contract test suite.
//
// Every operation is asynchronous: it returns at once and calls its callback
// exactly once, on any thread (possibly inline, before the call returns).
// Callbacks must be cheap and must not block: typically they post a message
// to an actor.

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "persistence/types.hpp"

namespace troupe {

enum class store_errc : std::uint8_t {
  ok,
  version_conflict,  // expected version did not match; nothing written
  invalid_input,     // rejected before reaching storage (bad id, oversized...)
  unavailable,       // storage unreachable; retryable, outcome may be unknown
  overloaded,        // not attempted: the store's bounded queue is full
};
std::string_view to_string(store_errc e);

/// Everything one command wants to write: atomically, all or nothing.
struct append_request {
  std::string stream_id;
  expected_version expected = expected_version::any();
  std::vector<new_event> events;
  event_metadata metadata;  // shared by every event of the command
  clock_type::time_point recorded_at;
};

struct append_result {
  store_errc error = store_errc::ok;
  std::string message;
  stream_version first_version;   // of the first appended event
  stream_version last_version;    // the stream's version after the append
  global_position last_position;  // of the last appended event
  stream_version actual_version;  // on conflict: where the stream really is
};

struct read_result {
  store_errc error = store_errc::ok;
  std::string message;
  std::vector<recorded_event> events;
};

/// The state of one stream folded up to `version`, as the decider's JSON.
struct snapshot_record {
  std::string stream_id;
  stream_version version;
  int schema_version = 1;
  std::string state;
};

struct snapshot_result {
  store_errc error = store_errc::ok;
  std::string message;
  std::optional<snapshot_record> snapshot;
};

/// What an aggregate needs to come alive: its latest snapshot and the
/// first page of events after it (after version 0 when there is none).
struct stream_head_result {
  snapshot_result snapshot;  // an error here means nothing was read
  read_result tail;
};

class event_store {
 public:
  using append_callback = std::function<void(append_result)>;
  using read_callback = std::function<void(read_result)>;
  using snapshot_callback = std::function<void(snapshot_result)>;
  using head_callback = std::function<void(stream_head_result)>;
  using done_callback = std::function<void(store_errc, std::string)>;

  virtual ~event_store() = default;

  /// Appends all events of one command if the stream is at the expected
  /// version; versions and global positions are assigned here.
  virtual void append(append_request request, append_callback done) = 0;

  /// Reads up to `max_count` events of a stream with version >= `from`.
  virtual void read_stream(std::string stream_id, stream_version from, std::size_t max_count,
                           read_callback done) = 0;

  /// Reads up to `max_count` events with global position > `after`, in order,
  /// never skipping an event that could still become visible below the last
  /// one returned.
  virtual void read_all(global_position after, std::size_t max_count, read_callback done) = 0;

  /// The latest snapshot of a stream, if any.
  virtual void load_snapshot(std::string stream_id, snapshot_callback done) = 0;

  /// The latest snapshot of a stream and up to `max_count` events after it.
  /// Stores may serve many of these in one round trip (PostgreSQL does);
  /// this default loads the snapshot, then reads the tail.
  virtual void load_stream_head(std::string stream_id, std::size_t max_count, head_callback done) {
    load_snapshot(stream_id, [this, stream_id, max_count,
                              done = std::move(done)](snapshot_result snapshot) mutable {
      if (snapshot.error != store_errc::ok) {
        done(stream_head_result{std::move(snapshot), {}});
        return;
      }
      auto from = snapshot.snapshot ? snapshot.snapshot->version.next() : stream_version{1};
      read_stream(
          std::move(stream_id), from, max_count,
          [snapshot = std::move(snapshot), done = std::move(done)](read_result tail) mutable {
            done(stream_head_result{std::move(snapshot), std::move(tail)});
          });
    });
  }

  /// Stores a snapshot, replacing an older one of the same stream.
  virtual void save_snapshot(snapshot_record snapshot, done_callback done) = 0;

  using checkpoint_callback = std::function<void(store_errc, std::string, global_position)>;

  /// The position a named reader of the global order (the publisher, a
  /// projection) has finished with; 0 when it never saved one.
  virtual void load_checkpoint(std::string name, checkpoint_callback done) = 0;

  /// Records that `name` has finished with everything up to `position`.
  /// Never moves a checkpoint backwards.
  virtual void save_checkpoint(std::string name, global_position position, done_callback done) = 0;
};

}  // namespace troupe
