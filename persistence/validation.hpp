#pragma once
// What every event store refuses before storage: the input rules shared by
// the PostgreSQL and in-memory stores, so both answer bad input alike.

#include <optional>
#include <string>

#include "persistence/event_store.hpp"

namespace troupe {

inline constexpr std::size_t default_max_event_bytes = 1 << 20;
/// Events one command may append at most.
inline constexpr std::size_t max_events_per_append = 1000;

/// Explains why `request` cannot be stored (stream id rule, no events, event
/// id not a UUID, type, schema version, data over `max_event_bytes` or not a
/// JSON object, oversized metadata), or nullopt when it is acceptable.
std::optional<std::string> validate_append(const append_request& request,
                                           std::size_t max_event_bytes);

/// Lower-cases a UUID in canonical 8-4-4-4-12 text form; false if it is not one.
bool normalise_uuid(std::string& id);

}  // namespace troupe
