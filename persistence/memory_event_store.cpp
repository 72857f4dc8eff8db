#include "persistence/memory_event_store.hpp"

#include <algorithm>

#include "persistence/validation.hpp"

namespace troupe {

std::string_view to_string(store_errc e) {
  switch (e) {
    case store_errc::ok: return "ok";
    case store_errc::version_conflict: return "version_conflict";
    case store_errc::invalid_input: return "invalid_input";
    case store_errc::unavailable: return "unavailable";
    case store_errc::overloaded: return "overloaded";
  }
  return "unknown";
}

memory_event_store::memory_event_store(std::size_t max_event_bytes)
    : max_event_bytes_(max_event_bytes) {}
memory_event_store::~memory_event_store() = default;

bool memory_event_store::take_injected_failure() {
  if (failures_to_inject_ == 0) return false;
  --failures_to_inject_;
  return true;
}

void memory_event_store::fail_next(std::size_t count) {
  std::lock_guard lock{mutex_};
  failures_to_inject_ = count;
}

void memory_event_store::append(append_request request, append_callback done) {
  append_result result;
  if (auto problem = validate_append(request, max_event_bytes_)) {
    result.error = store_errc::invalid_input;
    result.message = *problem;
    done(std::move(result));
    return;
  }
  // Stored in canonical form, as the PostgreSQL store's uuid column does.
  for (auto& e : request.events) normalise_uuid(e.event_id);
  {
    std::lock_guard lock{mutex_};
    if (take_injected_failure()) {
      result.error = store_errc::unavailable;
      result.message = "injected failure";
    } else {
      auto& indexes = streams_[request.stream_id];
      stream_version current{static_cast<std::int64_t>(indexes.size())};
      if (!request.expected.matches(current)) {
        result.error = store_errc::version_conflict;
        result.message = "stream " + request.stream_id + " is at version " +
                         std::to_string(current.value) + ", expected " +
                         request.expected.to_string();
        result.actual_version = current;
      } else {
        result.first_version = current.next();
        auto info = std::make_shared<const append_info>(
            append_info{request.stream_id, std::move(request.metadata), request.recorded_at});
        for (auto& e : request.events) {
          current = current.next();
          indexes.push_back(log_.size());
          log_.push_back(stored_event{info, std::move(e.event_id), std::move(e.type),
                                      std::move(e.data), current, e.schema_version});
        }
        result.last_version = current;
        result.last_position = global_position{static_cast<std::int64_t>(log_.size())};
        result.actual_version = current;
      }
    }
  }
  done(std::move(result));
}

void memory_event_store::read_stream(std::string stream_id, stream_version from,
                                     std::size_t max_count, read_callback done) {
  read_result result;
  {
    std::lock_guard lock{mutex_};
    if (take_injected_failure()) {
      result.error = store_errc::unavailable;
      result.message = "injected failure";
    } else if (auto it = streams_.find(stream_id); it != streams_.end()) {
      auto first = static_cast<std::size_t>(std::max<std::int64_t>(from.value, 1) - 1);
      for (auto i = first; i < it->second.size() && result.events.size() < max_count; ++i)
        result.events.push_back(materialise(it->second[i]));
    }
  }
  done(std::move(result));
}

void memory_event_store::read_all(global_position after, std::size_t max_count,
                                  read_callback done) {
  read_result result;
  {
    std::lock_guard lock{mutex_};
    if (take_injected_failure()) {
      result.error = store_errc::unavailable;
      result.message = "injected failure";
    } else {
      // Appends are atomic under the mutex, so nothing can commit late here.
      for (auto i = static_cast<std::size_t>(std::max<std::int64_t>(after.value, 0));
           i < log_.size() && result.events.size() < max_count; ++i)
        result.events.push_back(materialise(i));
    }
  }
  done(std::move(result));
}

void memory_event_store::load_snapshot(std::string stream_id, snapshot_callback done) {
  snapshot_result result;
  {
    std::lock_guard lock{mutex_};
    if (take_injected_failure()) {
      result.error = store_errc::unavailable;
      result.message = "injected failure";
    } else if (auto it = snapshots_.find(stream_id); it != snapshots_.end()) {
      result.snapshot = it->second;
    }
  }
  done(std::move(result));
}

void memory_event_store::save_snapshot(snapshot_record snapshot, done_callback done) {
  store_errc error = store_errc::ok;
  std::string message;
  {
    std::lock_guard lock{mutex_};
    if (take_injected_failure()) {
      error = store_errc::unavailable;
      message = "injected failure";
    } else {
      auto& slot = snapshots_[snapshot.stream_id];
      // Never let a late, older snapshot replace a newer one.
      if (slot.stream_id.empty() || slot.version < snapshot.version) slot = std::move(snapshot);
    }
  }
  done(error, std::move(message));
}

void memory_event_store::load_checkpoint(std::string name, checkpoint_callback done) {
  store_errc error = store_errc::ok;
  std::string message;
  global_position position;
  {
    std::lock_guard lock{mutex_};
    if (take_injected_failure()) {
      error = store_errc::unavailable;
      message = "injected failure";
    } else if (auto it = checkpoints_.find(name); it != checkpoints_.end()) {
      position = it->second;
    }
  }
  done(error, std::move(message), position);
}

void memory_event_store::save_checkpoint(std::string name, global_position position,
                                         done_callback done) {
  store_errc error = store_errc::ok;
  std::string message;
  {
    std::lock_guard lock{mutex_};
    if (take_injected_failure()) {
      error = store_errc::unavailable;
      message = "injected failure";
    } else {
      auto& slot = checkpoints_[name];
      slot = std::max(slot, position);
    }
  }
  done(error, std::move(message));
}

recorded_event memory_event_store::materialise(std::size_t index) const {
  const auto& s = log_[index];
  recorded_event e;
  e.event_id = s.event_id;
  e.stream_id = s.append->stream_id;
  e.version = s.version;
  e.position = global_position{static_cast<std::int64_t>(index) + 1};
  e.type = s.type;
  e.schema_version = s.schema_version;
  e.data = s.data;
  e.metadata = s.append->metadata;
  e.recorded_at = s.append->recorded_at;
  return e;
}

std::size_t memory_event_store::event_count() const {
  std::lock_guard lock{mutex_};
  return log_.size();
}

std::size_t memory_event_store::stream_count() const {
  std::lock_guard lock{mutex_};
  return streams_.size();
}

}  // namespace troupe
