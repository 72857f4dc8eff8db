#pragma once
// Given/when/then for sagas, with a virtual clock: no actors, no store, no
// waiting. Each input (an event, a step's answer, the clock moving) runs the
// saga machine and records what it sent; a timeout fires by advancing the
// clock past it.
//
//   saga_spec<order_fulfilment> spec;
//   spec.when(order_placed{...});
//   EXPECT_EQ(*spec.sent_command<book>("reserve:b1"), book::command{reserve_stock{...}});
//   spec.accept("reserve:b1").advance(std::chrono::seconds{30});
//
// After every input the kit replays all inputs so far into a fresh machine
// and checks it reaches the same state, steps in flight and wake-up time:
// the runtime restores sagas that way after a restart, so a definition that
// is not deterministic fails here first.

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "runtime/saga.hpp"

namespace troupe::testing {

template <saga_definition S>
class saga_spec {
 public:
  explicit saga_spec(saga_settings settings = {}, std::int64_t start_ms = 1'700'000'000'000)
      : settings_(settings), now_ms_(start_ms), machine_("", settings) {}

  /// Delivers an event. The first one names the instance (its correlation).
  saga_spec& when(const typename S::event& e) {
    if (correlation_.empty()) {
      correlation_ = S::correlate(e);
      machine_ = saga_machine<S>(correlation_, settings_);
    } else {
      EXPECT_EQ(S::correlate(e), correlation_) << "event for another instance";
    }
    auto at = now_ms_;
    return run([e, at](saga_machine<S>& m) { return m.on_event(e, at); });
  }

  /// The current attempt of `step` succeeded.
  saga_spec& accept(std::string_view step) { return answer(step, command_status::accepted, {}); }

  /// The aggregate refused `step`.
  saga_spec& reject(std::string_view step, std::string code, std::string message = {}) {
    return answer(step, command_status::rejected, {std::move(code), std::move(message)});
  }

  /// The current attempt of `step` failed (store unavailable by default),
  /// with the reason code given (by default the status's name).
  saga_spec& fail(std::string_view step, command_status status = command_status::unavailable,
                  std::string code = {}) {
    if (code.empty()) code = to_string(status);
    return answer(step, status, {std::move(code), "test failure"});
  }

  /// Moves the virtual clock; due timeouts and retries fire.
  saga_spec& advance(std::chrono::milliseconds by) {
    now_ms_ += by.count();
    auto at = now_ms_;
    return run([at](saga_machine<S>& m) { return m.on_tick(at); });
  }

  /// Commands sent by the last input.
  const std::vector<saga_send>& sent() const { return last_.sends; }
  std::vector<std::string> sent_steps() const {
    std::vector<std::string> out;
    for (const auto& s : last_.sends) out.push_back(s.step);
    return out;
  }
  /// The command of `step` if the last input sent it (any attempt).
  template <decider D>
  const typename D::command* sent_command(std::string_view step) const {
    for (const auto& s : last_.sends)
      if (s.step == step) return s.payload.template get<typename D::command>();
    return nullptr;
  }
  const saga_send* sent_step(std::string_view step) const {
    for (const auto& s : last_.sends)
      if (s.step == step) return &s;
    return nullptr;
  }
  /// Dead letters of every input so far.
  const std::vector<saga_dead_letter>& dead_letters() const { return dead_letters_; }

  const typename S::state& state() const { return machine_.state(); }
  std::string_view status() const { return machine_.status(); }
  bool finished() const { return machine_.finished(); }
  const saga_machine<S>& machine() const { return machine_; }
  std::int64_t now_ms() const { return now_ms_; }

 private:
  using input = std::function<typename saga_machine<S>::output(saga_machine<S>&)>;

  saga_spec& answer(std::string_view step, command_status status, rejection reason) {
    auto it = attempts_.find(std::string(step));
    if (it == attempts_.end()) {
      ADD_FAILURE() << "step '" << step << "' was never sent";
      return *this;
    }
    command_result result;
    result.status = status;
    result.reason = std::move(reason);
    auto at = now_ms_;
    int attempt = it->second;
    std::string name(step);
    return run([name, attempt, result, at](saga_machine<S>& m) {
      return m.on_reply(name, attempt, result, at);
    });
  }

  saga_spec& run(input in) {
    last_ = in(machine_);
    for (const auto& s : last_.sends) attempts_[s.step] = s.attempt;
    for (const auto& d : last_.dead_letters) dead_letters_.push_back(d);
    inputs_.push_back(std::move(in));
    check_replay();
    return *this;
  }

  void check_replay() const {
    saga_machine<S> replayed(correlation_, settings_);
    for (const auto& in : inputs_) in(replayed);
    EXPECT_EQ(to_json_text(replayed.state()), to_json_text(machine_.state()))
        << "replaying the inputs gives another state: the definition is not deterministic";
    EXPECT_EQ(replayed.pending_steps(), machine_.pending_steps());
    EXPECT_EQ(replayed.next_wakeup(), machine_.next_wakeup());
    EXPECT_EQ(replayed.finished(), machine_.finished());
  }

  saga_settings settings_;
  std::int64_t now_ms_;
  std::string correlation_;
  saga_machine<S> machine_;
  typename saga_machine<S>::output last_;
  std::map<std::string, int> attempts_;
  std::vector<saga_dead_letter> dead_letters_;
  std::vector<input> inputs_;
};

}  // namespace troupe::testing
