#pragma once
// Vocabulary shared by the event store, the runtime and every user of them:
// strong types for versions and positions, the stored event envelope, and the
// stream-id naming rule. No I/O here.

#include <chrono>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

/// An integer that cannot be mixed up with another kind of integer.
template <class Tag>
struct strong_int {
  std::int64_t value = 0;
  constexpr strong_int() = default;
  constexpr explicit strong_int(std::int64_t v) : value(v) {}
  constexpr auto operator<=>(const strong_int&) const = default;
  constexpr strong_int next() const { return strong_int{value + 1}; }
};

/// 1-based, gap-free version of one stream; 0 means "no events yet".
using stream_version = strong_int<struct stream_version_tag>;
/// Position in the global order of all events, assigned by the store.
using global_position = strong_int<struct global_position_tag>;

/// The version a writer expects a stream to be at when it appends.
class expected_version {
 public:
  enum class kind : std::uint8_t { any, no_stream, exact };

  static constexpr expected_version any() { return expected_version{kind::any, 0}; }
  static constexpr expected_version no_stream() { return expected_version{kind::no_stream, 0}; }
  static constexpr expected_version exact(stream_version v) {
    return v.value == 0 ? no_stream() : expected_version{kind::exact, v.value};
  }

  constexpr kind which() const { return kind_; }
  constexpr stream_version version() const { return stream_version{version_}; }
  /// True when a stream currently at `current` satisfies this expectation.
  constexpr bool matches(stream_version current) const {
    switch (kind_) {
      case kind::any: return true;
      case kind::no_stream: return current.value == 0;
      case kind::exact: return current.value == version_;
    }
    return false;
  }
  std::string to_string() const;
  constexpr bool operator==(const expected_version&) const = default;

 private:
  constexpr expected_version(kind k, std::int64_t v) : kind_(k), version_(v) {}
  kind kind_;
  std::int64_t version_;
};

/// Who caused an event and why; travels with every event of one command.
struct event_metadata {
  std::string command_id;
  std::string correlation_id;
  std::string causation_id;
  std::string traceparent;
  std::string node_id;
  bool operator==(const event_metadata&) const = default;
};

/// An event about to be appended: its data is already encoded JSON text.
struct new_event {
  std::string event_id;  // UUIDv7, text form
  std::string type;
  int schema_version = 1;
  std::string data;
};

using clock_type = std::chrono::system_clock;

/// An event as the store returns it.
struct recorded_event {
  std::string event_id;
  std::string stream_id;
  stream_version version;
  global_position position;
  std::string type;
  int schema_version = 1;
  std::string data;
  event_metadata metadata;
  clock_type::time_point recorded_at;
};

/// Stream ids are `<category>-<id>`: a category of lower-case letters, digits
/// and '_' starting with a letter, then '-', then an id of letters, digits and
/// `_ . : -` (so UUIDs fit). At most `max_stream_id_length` characters.
inline constexpr std::size_t max_stream_id_length = 200;

/// Returns an explanation when `stream_id` breaks the naming rule.
std::optional<std::string> validate_stream_id(std::string_view stream_id);
/// The category part of a valid stream id ("book" for "book-42").
std::string_view stream_category(std::string_view stream_id);

}  // namespace troupe
