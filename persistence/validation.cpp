#include "persistence/validation.hpp"

#include <boost/json.hpp>

namespace troupe {

namespace {

bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

/// Text PostgreSQL accepts: UTF-8 sequences without NUL. (PostgreSQL is
/// stricter still; what slips through fails only its own command.)
bool is_clean_text(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t extra = 0;
    if (c == 0) return false;
    if (c < 0x80)
      extra = 0;
    else if ((c >> 5) == 0x6)
      extra = 1;
    else if ((c >> 4) == 0xe)
      extra = 2;
    else if ((c >> 3) == 0x1e)
      extra = 3;
    else
      return false;
    if (i + extra >= s.size() && extra > 0) return false;
    for (std::size_t k = 1; k <= extra; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
    i += extra + 1;
  }
  return true;
}

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
  if (request.events.size() > max_events_per_append)
    return "append of stream " + request.stream_id + " has " +
           std::to_string(request.events.size()) + " events, over the limit of " +
           std::to_string(max_events_per_append);
  const auto& m = request.metadata;
  for (const auto* field :
       {&m.command_id, &m.correlation_id, &m.causation_id, &m.traceparent, &m.node_id})
    if (field->size() > 512 || !is_clean_text(*field))
      return "event metadata fields must be UTF-8 text of at most 512 bytes";
  std::vector<std::string> ids;
  ids.reserve(request.events.size());
  for (const auto& e : request.events) {
    std::string id = e.event_id;
    if (!normalise_uuid(id)) return "event id '" + e.event_id + "' is not a UUID";
    for (const auto& earlier : ids)
      if (earlier == id) return "event id " + id + " appears twice in one append";
    ids.push_back(std::move(id));
    if (e.type.empty() || e.type.size() > 200 || !is_clean_text(e.type))
      return "event type must be 1..200 bytes of UTF-8 text";
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
