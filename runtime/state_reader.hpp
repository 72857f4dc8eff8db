#pragma once
// Reads one aggregate's current state straight from the store (snapshot +
// tail), without activating its actor: for queries that want the state with
// its exact version (HTTP GET of one resource, whose ETag is that version).
// Asynchronous like the store; nothing blocks.

#include <boost/json/value.hpp>
#include <functional>
#include <memory>
#include <string>

#include "persistence/event_store.hpp"
#include "runtime/aggregate_host.hpp"

namespace troupe {

struct state_read {
  store_errc error = store_errc::ok;
  std::string message;
  boost::json::value state;  // the decider's state as JSON
  stream_version version;    // 0 = the stream has no events
};

/// Folds `stream_id`'s snapshot and the events after it with `type`'s
/// decider and calls `done` once, on a store thread.
void read_state(std::shared_ptr<event_store> store, const aggregate_type& type,
                std::string stream_id, std::function<void(state_read)> done);

}  // namespace troupe
