#include "persistence/types.hpp"

namespace troupe {

std::string expected_version::to_string() const {
  switch (kind_) {
    case kind::any: return "any";
    case kind::no_stream: return "no stream";
    case kind::exact: return std::to_string(version_);
  }
  return "?";
}

namespace {
bool is_lower_or_digit(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == ':' || c == '-';
}
}  // namespace

std::optional<std::string> validate_stream_id(std::string_view stream_id) {
  if (stream_id.empty()) return "stream id is empty";
  if (stream_id.size() > max_stream_id_length)
    return "stream id is longer than " + std::to_string(max_stream_id_length) + " characters";
  auto dash = stream_id.find('-');
  if (dash == std::string_view::npos)
    return "stream id '" + std::string(stream_id) + "' has no '-' between category and id";
  auto category = stream_id.substr(0, dash);
  auto id = stream_id.substr(dash + 1);
  if (category.empty() || !(category[0] >= 'a' && category[0] <= 'z'))
    return "stream id '" + std::string(stream_id) +
           "': category must start with a lower-case letter";
  for (char c : category)
    if (!is_lower_or_digit(c) && c != '_')
      return "stream id '" + std::string(stream_id) +
             "': category may hold only lower-case letters, digits and '_'";
  if (id.empty()) return "stream id '" + std::string(stream_id) + "' has an empty id after '-'";
  for (char c : id)
    if (!is_id_char(c))
      return "stream id '" + std::string(stream_id) +
             "': id may hold only letters, digits and '_', '.', ':', '-'";
  return std::nullopt;
}

std::string_view stream_category(std::string_view stream_id) {
  return stream_id.substr(0, stream_id.find('-'));
}

}  // namespace troupe
