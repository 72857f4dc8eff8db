#include "persistence/validation.hpp"

#include <boost/json.hpp>

namespace troupe {

namespace {

bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

}  // namespace

bool normalise_uuid(std::string& id) {
  if (id.size() != 36) return false;
  for (std::size_t i = 0; i < id.size(); ++i) {
    char& c = id[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
      continue;
    }
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    if (!is_hex(c)) return false;
  }
  return true;
}

std::optional<std::string> validate_append(const append_request& request,
                                           std::size_t max_event_bytes) {
  if (auto problem = validate_stream_id(request.stream_id)) return problem;
  if (request.events.empty()) return "append of stream " + request.stream_id + " has no events";
  const auto& m = request.metadata;
  for (const auto* field :
       {&m.command_id, &m.correlation_id, &m.causation_id, &m.traceparent, &m.node_id})
    if (field->size() > 512 || has_nul(*field)) return "event metadata field is over 512 bytes";
  for (const auto& e : request.events) {
    std::string id = e.event_id;
    if (!normalise_uuid(id)) return "event id '" + e.event_id + "' is not a UUID";
    if (e.type.empty() || e.type.size() > 200 || has_nul(e.type))
      return "event type must be 1..200 characters";
    if (e.schema_version < 1) return "event schema version must be >= 1";
    if (e.data.size() > max_event_bytes)
      return "event " + e.type + " is " + std::to_string(e.data.size()) +
             " bytes, over the limit of " + std::to_string(max_event_bytes);
    // Validate without keeping the document: a per-thread arena, reused.
    thread_local unsigned char arena[16384];
    boost::json::monotonic_resource resource(arena, sizeof arena);
    boost::system::error_code ec;
    auto json = boost::json::parse(e.data, ec, &resource);
    if (ec) return "event " + e.type + " data is not valid JSON: " + ec.message();
    if (!json.is_object()) return "event " + e.type + " data must be a JSON object";
  }
  return std::nullopt;
}

}  // namespace troupe
