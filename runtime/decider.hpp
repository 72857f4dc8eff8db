#pragma once
// The decider API: how a user models an aggregate. Pure code only: no I/O, no
// clock, no randomness; time and ids arrive on the command.
//
//   struct my_aggregate {
//     static constexpr std::string_view category = "book";   // stream prefix
//     using state = ...;    // value type, JSON-convertible (Boost.Describe)
//     using command = std::variant<...>;   // imperative names
//     using event = std::variant<...>;     // past-tense names, see codec.hpp
//     static state initial();
//     static decision<event> decide(const command&, const state&);
//     static state evolve(state, const event&);
//   };

#include <concepts>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

/// A decider's "no": a stable machine-readable code and a human message.
/// Rejections are values, never exceptions.
struct rejection {
  std::string code;
  std::string message;
  bool operator==(const rejection&) const = default;
};

/// What decide returns: the events to append (possibly none) or a rejection.
template <class Event>
using decision = std::expected<std::vector<Event>, rejection>;

/// Shorthand for `return reject("code", "message");` inside decide.
inline std::unexpected<rejection> reject(std::string code, std::string message) {
  return std::unexpected<rejection>(rejection{std::move(code), std::move(message)});
}

template <class D>
concept decider = requires(const typename D::command& c, typename D::state s,
                           const typename D::event& e) {
  { D::category } -> std::convertible_to<std::string_view>;
  { D::initial() } -> std::same_as<typename D::state>;
  { D::decide(c, s) } -> std::same_as<decision<typename D::event>>;
  { D::evolve(std::move(s), e) } -> std::same_as<typename D::state>;
};

}  // namespace troupe
