#pragma once
// Event codec: typed events <-> stored JSON, with schema versions and
// upcasters. Each event type is a struct described with Boost.Describe and
// carrying two static members:
//
//   struct book_created {
//     static constexpr std::string_view event_type = "book_created";
//     static constexpr int schema_version = 2;
//     // Optional: lifts stored data from `from_version` to `from_version + 1`.
//     static void upcast(int from_version, boost::json::object& data);
//     std::string book_id; ...
//   };
//   BOOST_DESCRIBE_STRUCT(book_created, (), (book_id, ...))
//
// Old events are never rewritten; they are upcast each time they are read.

#include <boost/json.hpp>
#include <concepts>
#include <expected>
#include <string>
#include <string_view>
#include <variant>

#include "persistence/types.hpp"

namespace troupe {

template <class T>
concept event_type = requires {
  { T::event_type } -> std::convertible_to<std::string_view>;
  { T::schema_version } -> std::convertible_to<int>;
};

template <class T>
concept upcastable = requires(int v, boost::json::object& o) {
  T::upcast(v, o);
};

/// Encoded form of one event, ready for new_event.
struct encoded_event {
  std::string_view type;
  int schema_version;
  std::string data;
};

template <class Variant>
struct variant_codec;

/// Encodes/decodes the alternatives of an event variant by their type names.
template <event_type... Ts>
struct variant_codec<std::variant<Ts...>> {
  using variant = std::variant<Ts...>;

  static encoded_event encode(const variant& v) {
    return std::visit(
        [](const auto& e) {
          using T = std::decay_t<decltype(e)>;
          return encoded_event{T::event_type, T::schema_version,
                               boost::json::serialize(boost::json::value_from(e))};
        },
        v);
  }

  /// Decodes stored data of `type` written with `stored_version`, upcasting
  /// it to the current schema first.
  static std::expected<variant, std::string> decode(std::string_view type, int stored_version,
                                                    std::string_view data) {
    std::expected<variant, std::string> out =
        std::unexpected("unknown event type '" + std::string(type) + "'");
    (void)((type == Ts::event_type ? (out = decode_as<Ts>(stored_version, data), true) : false) ||
           ...);
    return out;
  }

  template <class T>
  static std::expected<variant, std::string> decode_as(int stored_version, std::string_view data) {
    if (stored_version > T::schema_version)
      return std::unexpected("event '" + std::string(T::event_type) + "' has schema version " +
                             std::to_string(stored_version) + ", newer than this build's " +
                             std::to_string(T::schema_version));
    if (stored_version < 1)
      return std::unexpected("event '" + std::string(T::event_type) +
                             "' has invalid schema version " + std::to_string(stored_version));
    boost::system::error_code ec;
    auto json = boost::json::parse(data, ec);
    if (ec || !json.is_object())
      return std::unexpected("event '" + std::string(T::event_type) +
                             "': data is not a JSON object");
    if (stored_version < T::schema_version) {
      if constexpr (upcastable<T>) {
        for (int v = stored_version; v < T::schema_version; ++v) T::upcast(v, json.as_object());
      } else {
        return std::unexpected("event '" + std::string(T::event_type) + "' v" +
                               std::to_string(stored_version) + " has no upcaster");
      }
    }
    auto value = boost::json::try_value_to<T>(json);
    if (!value)
      return std::unexpected("event '" + std::string(T::event_type) +
                             "': " + value.error().message());
    return variant{std::move(*value)};
  }

  static constexpr std::string_view type_name(const variant& v) {
    return std::visit([](const auto& e) { return std::decay_t<decltype(e)>::event_type; }, v);
  }
};

/// JSON text of any describable value (state snapshots, test output).
template <class T>
std::string to_json_text(const T& value) {
  return boost::json::serialize(boost::json::value_from(value));
}

/// Parses JSON text into T, with a readable error.
template <class T>
std::expected<T, std::string> from_json_text(std::string_view text) {
  boost::system::error_code ec;
  auto json = boost::json::parse(text, ec);
  if (ec) return std::unexpected("invalid JSON: " + ec.message());
  auto value = boost::json::try_value_to<T>(json);
  if (!value) return std::unexpected(value.error().message());
  return std::move(*value);
}

}  // namespace troupe
