#pragma once
// A command back from its stored form (`<category>#<alternative index>` and
// JSON), for any decider of a tuple: replays of saga dead letters.

#include <charconv>
#include <expected>
#include <string>
#include <string_view>
#include <tuple>
#include <variant>

#include "runtime/codec.hpp"
#include "runtime/command.hpp"

namespace troupe {

namespace detail {

template <class Variant, std::size_t... I>
std::expected<Variant, std::string> variant_from_json(std::size_t index, std::string_view json,
                                                      std::index_sequence<I...>) {
  std::expected<Variant, std::string> out =
      std::unexpected("no command alternative " + std::to_string(index));
  (void)((I == index ? (
                           out = [&]() -> std::expected<Variant, std::string> {
                             auto value =
                                 from_json_text<std::variant_alternative_t<I, Variant>>(json);
                             if (!value) return std::unexpected(value.error());
                             return Variant{std::in_place_index<I>, std::move(*value)};
                           }(),
                           true)
                     : false) ||
         ...);
  return out;
}

}  // namespace detail

/// The command named by `type` ("book#4") with `json` as its body, wrapped as
/// the runtime carries it; or why not.
template <class Deciders>
std::expected<command_payload, std::string> decode_command(std::string_view type,
                                                           std::string_view json) {
  auto hash = type.find('#');
  if (hash == std::string_view::npos)
    return std::unexpected("command type '" + std::string(type) + "' is not <category>#<index>");
  auto category = type.substr(0, hash);
  std::size_t index = 0;
  auto digits = type.substr(hash + 1);
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
  if (ec != std::errc{} || end != digits.data() + digits.size())
    return std::unexpected("command type '" + std::string(type) + "' has no index");
  std::expected<command_payload, std::string> out =
      std::unexpected("no aggregate category '" + std::string(category) + "'");
  [&]<class... Ds>(std::tuple<Ds...>*) {
    (void)((Ds::category == category
                ? (
                      out = [&]() -> std::expected<command_payload, std::string> {
                        using C = typename Ds::command;
                        auto command = detail::variant_from_json<C>(
                            index, json, std::make_index_sequence<std::variant_size_v<C>>{});
                        if (!command) return std::unexpected(command.error());
                        return command_payload::of<C>(std::move(*command));
                      }(),
                      true)
                : false) ||
           ...);
  }(static_cast<Deciders*>(nullptr));
  return out;
}

}  // namespace troupe
