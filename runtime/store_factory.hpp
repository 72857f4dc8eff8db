#pragma once
// Builds the event store a configuration asks for (store.kind): the one place
// where the runtime picks a persistence implementation.

#include <memory>

#include "persistence/event_store.hpp"
#include "runtime/config.hpp"

namespace troupe {

/// Connects and migrates when the store is PostgreSQL; throws
/// std::runtime_error with a readable reason (credentials removed) on failure.
std::shared_ptr<event_store> make_event_store(const config& cfg);

}  // namespace troupe
