#pragma once
// The bookstore's event catalog, generated from the registrations: every
// event type with its schema version, the aggregate that produces it and
// the projections and sagas that consume it. Served at
// /api/v1/event-catalog and printed by `troupe catalog`.

#include <string>

namespace bookstore {

/// The catalog as JSON: {"events": [{"type", "schema_version", "producer",
/// "projections": [...], "sagas": [...]}, ...]} sorted by producer and type.
std::string event_catalog_json();
/// The same as a Markdown table.
std::string event_catalog_markdown();

}  // namespace bookstore
