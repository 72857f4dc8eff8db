#pragma once
// A minimal decider for runtime tests: a counter that refuses big steps and
// whose v1 event stored the step under another name.

#include <boost/describe.hpp>
#include <boost/json.hpp>
#include <string_view>
#include <variant>

#include "runtime/decider.hpp"

namespace counter_domain {

struct increment {
  std::int64_t by = 1;
};
struct reset {};

struct incremented {
  static constexpr std::string_view event_type = "counter_incremented";
  static constexpr int schema_version = 2;
  // v1 called the step "step".
  static void upcast(int from_version, boost::json::object& data) {
    if (from_version == 1) {
      data["by"] = data["step"];
      data.erase("step");
    }
  }
  std::int64_t by = 0;
  bool operator==(const incremented&) const = default;
};
BOOST_DESCRIBE_STRUCT(incremented, (), (by))

struct was_reset {
  static constexpr std::string_view event_type = "counter_reset";
  static constexpr int schema_version = 1;
  bool operator==(const was_reset&) const = default;
};
BOOST_DESCRIBE_STRUCT(was_reset, (), ())

struct counter_state {
  std::int64_t value = 0;
  std::int64_t changes = 0;
  bool operator==(const counter_state&) const = default;
};
BOOST_DESCRIBE_STRUCT(counter_state, (), (value, changes))

struct counter {
  static constexpr std::string_view category = "counter";
  using state = counter_state;
  using command = std::variant<increment, reset>;
  using event = std::variant<incremented, was_reset>;

  static state initial() { return {}; }
  static troupe::decision<event> decide(const command& c, const state& s) {
    if (const auto* inc = std::get_if<increment>(&c)) {
      if (inc->by <= 0 || inc->by > 100)
        return troupe::reject("invalid_step", "step must be 1..100");
      return std::vector<event>{incremented{inc->by}};
    }
    if (s.value == 0) return std::vector<event>{};
    return std::vector<event>{was_reset{}};
  }
  static state evolve(state s, const event& e) {
    if (const auto* inc = std::get_if<incremented>(&e))
      s.value += inc->by;
    else
      s.value = 0;
    ++s.changes;
    return s;
  }
};
static_assert(troupe::decider<counter>);

}  // namespace counter_domain
