#pragma once
// Strict JSON -> command decoding for request bodies, driven by the
// Boost.Describe descriptions the deciders already carry. Unlike
// boost::json::value_to it names the offending field ("items[1].quantity:
// must be an integer"), refuses unknown fields (a typo must not be silently
// ignored), and never throws.

#include <boost/describe.hpp>
#include <boost/json.hpp>
#include <boost/mp11.hpp>
#include <cstdint>
#include <expected>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "http/problem.hpp"

namespace troupe::http {

namespace json_input_detail {

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};
template <class T>
struct is_vector : std::false_type {};
template <class T>
struct is_vector<std::vector<T>> : std::true_type {};

using errors = std::vector<field_error>;

inline std::string describe_kind(const boost::json::value& v) {
  switch (v.kind()) {
    case boost::json::kind::null: return "null";
    case boost::json::kind::bool_: return "a boolean";
    case boost::json::kind::int64:
    case boost::json::kind::uint64: return "an integer";
    case boost::json::kind::double_: return "a number";
    case boost::json::kind::string: return "a string";
    case boost::json::kind::array: return "an array";
    case boost::json::kind::object: return "an object";
  }
  return "a value";
}

template <class T>
void read(const boost::json::value& v, T& out, const std::string& path, errors& errs);

template <class T>
void read_struct(const boost::json::value& v, T& out, const std::string& path, errors& errs) {
  const auto* object = v.if_object();
  if (object == nullptr) {
    errs.push_back({path.empty() ? "(body)" : path, "must be an object, not " + describe_kind(v)});
    return;
  }
  using members = boost::describe::describe_members<T, boost::describe::mod_public>;
  auto field_path = [&](std::string_view name) {
    return path.empty() ? std::string(name) : path + "." + std::string(name);
  };
  boost::mp11::mp_for_each<members>([&](auto member) {
    using M = std::remove_cvref_t<decltype(out.*member.pointer)>;
    const auto* found = object->if_contains(member.name);
    if (found == nullptr || (is_optional<M>::value && found->is_null())) {
      if constexpr (!is_optional<M>::value)
        errs.push_back({field_path(member.name), "is required"});
      return;
    }
    read(*found, out.*member.pointer, field_path(member.name), errs);
  });
  for (const auto& [key, value] : *object) {
    bool known = false;
    boost::mp11::mp_for_each<members>([&](auto member) { known = known || key == member.name; });
    if (!known) errs.push_back({field_path(key), "is not a known field"});
  }
}

template <class T>
void read(const boost::json::value& v, T& out, const std::string& path, errors& errs) {
  if constexpr (std::is_same_v<T, std::string>) {
    if (const auto* s = v.if_string())
      out.assign(s->data(), s->size());
    else
      errs.push_back({path, "must be a string, not " + describe_kind(v)});
  } else if constexpr (std::is_same_v<T, bool>) {
    if (const auto* b = v.if_bool())
      out = *b;
    else
      errs.push_back({path, "must be true or false, not " + describe_kind(v)});
  } else if constexpr (std::is_integral_v<T>) {
    std::int64_t n = 0;
    if (const auto* i = v.if_int64())
      n = *i;
    else if (const auto* u = v.if_uint64();
             u != nullptr && *u <= static_cast<std::uint64_t>(INT64_MAX))
      n = static_cast<std::int64_t>(*u);
    else {
      errs.push_back({path, "must be an integer, not " + describe_kind(v)});
      return;
    }
    if (n < static_cast<std::int64_t>(std::numeric_limits<T>::min()) ||
        n > static_cast<std::int64_t>(std::numeric_limits<T>::max())) {
      errs.push_back({path, "is out of range"});
      return;
    }
    out = static_cast<T>(n);
  } else if constexpr (std::is_floating_point_v<T>) {
    if (v.is_number())
      out = static_cast<T>(v.to_number<double>());
    else
      errs.push_back({path, "must be a number, not " + describe_kind(v)});
  } else if constexpr (is_optional<T>::value) {
    typename T::value_type inner{};
    auto before = errs.size();
    read(v, inner, path, errs);
    if (errs.size() == before) out = std::move(inner);
  } else if constexpr (is_vector<T>::value) {
    const auto* array = v.if_array();
    if (array == nullptr) {
      errs.push_back({path, "must be an array, not " + describe_kind(v)});
      return;
    }
    out.clear();
    out.reserve(array->size());
    for (std::size_t i = 0; i < array->size(); ++i) {
      typename T::value_type item{};
      read((*array)[i], item, path + "[" + std::to_string(i) + "]", errs);
      out.push_back(std::move(item));
    }
  } else if constexpr (std::is_enum_v<T>) {
    const auto* s = v.if_string();
    bool matched = false;
    std::string names;
    boost::mp11::mp_for_each<boost::describe::describe_enumerators<T>>([&](auto e) {
      names += (names.empty() ? "" : ", ") + std::string(e.name);
      if (s != nullptr && *s == e.name) {
        out = e.value;
        matched = true;
      }
    });
    if (!matched) errs.push_back({path, "must be one of " + names});
  } else {
    read_struct(v, out, path, errs);
  }
}

}  // namespace json_input_detail

/// Decodes a whole described struct from a JSON value, or lists every
/// problem found (not just the first).
template <class T>
std::expected<T, std::vector<field_error>> decode_json(const boost::json::value& v) {
  T out{};
  std::vector<field_error> errs;
  json_input_detail::read_struct(v, out, "", errs);
  if (!errs.empty()) return std::unexpected(std::move(errs));
  return out;
}

}  // namespace troupe::http
