#pragma once
// Given/when/then specifications for deciders, for users' GoogleTest suites:
//
//   decider_spec<book>()
//       .given({book_created{...}, stock_added{...}})
//       .when(reserve_stock{...})
//       .then({stock_reserved{...}});
//
//   decider_spec<book>().given({...}).when(...).then_rejected("insufficient_stock");
//
// Besides the rule itself, every spec checks what the runtime relies on: each
// event survives the codec (encode, decode, equal), and so does the state.

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "runtime/codec.hpp"
#include "runtime/decider.hpp"

namespace troupe::testing {

template <decider D>
class decider_spec {
  using event = typename D::event;
  using command = typename D::command;
  using state = typename D::state;
  using codec = variant_codec<event>;

 public:
  decider_spec() : state_(D::initial()) {}

  decider_spec& given(std::vector<event> history) {
    for (auto& e : history) state_ = D::evolve(std::move(state_), e);
    return *this;
  }

  decider_spec& when(command c) {
    command_ = std::move(c);
    return *this;
  }

  /// Expects exactly these events (in order). Returns true when they match.
  bool then(const std::vector<event>& expected) {
    auto outcome = run();
    if (!outcome) {
      ADD_FAILURE() << "expected events " << describe(expected)
                    << "\nbut the command was rejected: " << outcome.error().code << " ("
                    << outcome.error().message << ")";
      return false;
    }
    bool ok = true;
    if (*outcome != expected) {
      ADD_FAILURE() << "expected events " << describe(expected) << "\nbut got         "
                    << describe(*outcome);
      ok = false;
    }
    for (const auto& e : *outcome) ok = check_round_trip(e) && ok;
    for (const auto& e : *outcome) state_ = D::evolve(std::move(state_), e);
    return check_state_round_trip() && ok;
  }

  /// Expects the command to be accepted with no events.
  bool then_nothing() { return then({}); }

  /// Expects a rejection with this code.
  bool then_rejected(std::string_view code) {
    auto outcome = run();
    if (outcome) {
      ADD_FAILURE() << "expected rejection '" << code << "' but got events " << describe(*outcome);
      return false;
    }
    if (outcome.error().code != code) {
      ADD_FAILURE() << "expected rejection '" << code << "' but got '" << outcome.error().code
                    << "' (" << outcome.error().message << ")";
      return false;
    }
    if (outcome.error().message.empty()) {
      ADD_FAILURE() << "rejection '" << code << "' has no message for the user";
      return false;
    }
    return true;
  }

  /// The state after `given` (and after `then`'s events, once it ran).
  const state& current_state() const { return state_; }

  static std::string describe(const std::vector<event>& events) {
    std::ostringstream out;
    out << "[";
    for (std::size_t i = 0; i < events.size(); ++i) {
      auto enc = codec::encode(events[i]);
      out << (i ? ", " : "") << enc.type << " " << enc.data;
    }
    out << "]";
    return out.str();
  }

 private:
  decision<event> run() {
    if (!command_) {
      ADD_FAILURE() << "decider_spec: then() without when()";
      return reject("no_command", "no command given");
    }
    return D::decide(*command_, state_);
  }

  static bool check_round_trip(const event& e) {
    auto enc = codec::encode(e);
    auto back = codec::decode(enc.type, enc.schema_version, enc.data);
    if (!back) {
      ADD_FAILURE() << "event " << enc.type << " " << enc.data
                    << " does not decode: " << back.error();
      return false;
    }
    if (!(*back == e)) {
      ADD_FAILURE() << "event " << enc.type << " " << enc.data
                    << " changes when encoded and decoded";
      return false;
    }
    return true;
  }

  bool check_state_round_trip() const {
    if constexpr (std::equality_comparable<state>) {
      auto text = to_json_text(state_);
      auto back = from_json_text<state>(text);
      if (!back) {
        ADD_FAILURE() << "state " << text << " does not decode: " << back.error();
        return false;
      }
      if (!(*back == state_)) {
        ADD_FAILURE() << "state " << text
                      << " changes when encoded and decoded (snapshots would lose it)";
        return false;
      }
    }
    return true;
  }

  state state_;
  std::optional<command> command_;
};

}  // namespace troupe::testing
