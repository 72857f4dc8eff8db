#pragma once
// Sagas, the pure half: a saga is a state machine keyed by a correlation id.
// Events start and move it; it reacts by sending commands ("steps") to
// aggregates and by reacting to their outcomes; it ends in a terminal state.
//
//   struct rating_saga {
//     static constexpr std::string_view name = "rating";
//     struct state { ... };                          // described for JSON
//     using event = std::variant<feedback_created, feedback_deleted>;
//     static std::string correlate(const event&);    // the instance's id
//     static bool starts(const event&);              // may create an instance
//     static void on_event(state&, const event&, saga_context&);
//     static void on_step(state&, const step_result&, saga_context&);
//     static std::string_view status(const state&);  // for metrics and logs
//     // Optional: the one stream category all its events come from; the
//     // host then consumes only that category's subjects.
//     static constexpr std::string_view source_category = "feedback";
//   };
//
// The definition never sees retries or clocks. `saga_machine` wraps it and
// owns the mechanics every saga shares: each step has a timeout
// (`saga_settings::step_timeout`); a step that fails (store unavailable,
// overloaded, timed out) is sent again after an exponential backoff, up to
// `max_attempts` sends (sends never applied - shed as overloaded, or turned
// away by routing while shards move - do not count, up to
// `max_overload_retries`); a rejection is not retried (the aggregate said
// no).
// Only then does the definition hear of it: `accepted`, `rejected` or
// `gave_up` (the last also produces a dead letter). A step's command id is
// `<saga>/<correlation>/<step>/<attempt>`, so a restart that sends the same
// attempt again is recognised by the aggregate's idempotency window.
//
// The machine is deterministic: the same inputs (events, replies, clock
// ticks, each with its time) give the same state and the same sends. The
// runtime persists the inputs and replays them after a restart; tests drive
// it with a virtual clock (runtime/testing/saga_spec.hpp).

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "runtime/codec.hpp"
#include "runtime/command.hpp"
#include "runtime/decider.hpp"

namespace troupe {

struct saga_settings {
  std::int64_t step_timeout_ms = 30000;
  int max_attempts = 3;
  std::int64_t retry_backoff_ms = 200;  // doubles per attempt
  /// A step shed as `overloaded`, or turned away by routing while a cluster
  /// re-forms (`command_result::never_applied`), was never tried: such
  /// answers do not use up max_attempts (a backlog on one hot aggregate, or
  /// shards unserved for seconds, must not turn into dead letters), up to
  /// this many in a row; their backoff still doubles up to max_backoff_ms.
  int max_overload_retries = 20;
  std::int64_t max_backoff_ms = 5000;
};

/// What the definition hears about a step.
struct step_result {
  enum class kind : std::uint8_t { accepted, rejected, gave_up };
  std::string step;
  kind outcome = kind::accepted;
  rejection reason;  // rejected: the aggregate's; gave_up: the last failure
  bool accepted() const { return outcome == kind::accepted; }
  bool rejected(std::string_view code = {}) const {
    return outcome == kind::rejected && (code.empty() || reason.code == code);
  }
  bool gave_up() const { return outcome == kind::gave_up; }
};

/// A command to send: one attempt of a step.
struct saga_send {
  std::string step;
  int attempt = 1;
  std::string stream_id;
  command_payload payload;   // holds D::command of the target decider
  std::string command_type;  // `<category>#<index in D::command>`: enough to decode command_json
  std::string command_json;
  std::string command_id;
};

/// A step that failed every attempt: kept for inspection and replay.
struct saga_dead_letter {
  std::string step;
  std::string stream_id;
  std::string command_type;
  std::string command_json;
  std::string command_id;
  int attempts = 0;
  std::string error;
};

/// Handed to a definition's handlers: how it sends steps and ends.
class saga_context {
 public:
  explicit saga_context(std::int64_t now_ms) : now_ms_(now_ms) {}

  /// Sends `command` to `<D::category>-<id>` as step `step` (a name unique
  /// within the instance: a step is sent once; its retries are the
  /// machine's business).
  template <decider D>
  void send(std::string step, std::string_view id, typename D::command command) {
    request r;
    r.step = std::move(step);
    r.stream_id = std::string(D::category) + "-" + std::string(id);
    r.command_json = std::visit([](const auto& c) { return to_json_text(c); }, command);
    r.command_type = std::string(D::category) + "#" + std::to_string(command.index());
    r.payload = command_payload::of<typename D::command>(std::move(command));
    requests_.push_back(std::move(r));
  }

  /// The instance is done: later events and replies are ignored.
  void finish() { finished_ = true; }

  std::int64_t now_ms() const { return now_ms_; }

 private:
  template <class S>
  friend class saga_machine;
  struct request {
    std::string step;
    std::string stream_id;
    command_payload payload;
    std::string command_type;
    std::string command_json;
  };
  std::int64_t now_ms_;
  std::vector<request> requests_;
  bool finished_ = false;
};

template <class S>
concept saga_definition = requires(typename S::state& s, const typename S::event& e,
                                   const step_result& r, saga_context& ctx) {
  { S::name } -> std::convertible_to<std::string_view>;
  { S::correlate(e) } -> std::convertible_to<std::string>;
  { S::starts(e) } -> std::same_as<bool>;
  S::on_event(s, e, ctx);
  S::on_step(s, r, ctx);
  { S::status(s) } -> std::convertible_to<std::string_view>;
};

/// One saga instance: the definition's state plus the steps in flight.
template <class S>
class saga_machine {
 public:
  struct output {
    std::vector<saga_send> sends;
    std::vector<saga_dead_letter> dead_letters;
    bool finished_now = false;
  };

  saga_machine(std::string correlation_id, saga_settings settings = {})
      : correlation_id_(std::move(correlation_id)), settings_(settings) {}

  /// An event the saga listens to. Before the instance started, only an
  /// event for which `S::starts` holds starts it; others are ignored.
  output on_event(const typename S::event& e, std::int64_t now_ms) {
    output out;
    if (finished_ || (!started_ && !S::starts(e))) return out;
    started_ = true;
    saga_context ctx(now_ms);
    S::on_event(state_, e, ctx);
    absorb(ctx, now_ms, out);
    return out;
  }

  /// The outcome of one attempt of a step.
  output on_reply(const std::string& step, int attempt, const command_result& result,
                  std::int64_t now_ms) {
    output out;
    auto it = pending_.find(step);
    if (finished_ || it == pending_.end()) return out;  // settled already: a late reply
    auto& p = it->second;
    switch (result.status) {
      case command_status::accepted:
      case command_status::duplicate:
        // Any attempt's success settles the step (commands are idempotent
        // by their domain key, so an earlier attempt landing is the effect).
        settle(step, {step, step_result::kind::accepted, {}}, now_ms, out);
        return out;
      case command_status::rejected:
      case command_status::invalid:
        settle(step, {step, step_result::kind::rejected, result.reason}, now_ms, out);
        return out;
      case command_status::conflict:
      case command_status::overloaded:
      case command_status::unavailable:
        if (attempt != p.attempt) return out;  // an older attempt's failure: superseded
        fail(step, rejection{std::string(to_string(result.status)), result.reason.message},
             result.never_applied(), now_ms, out);
        return out;
    }
    return out;
  }

  /// The clock moved: fires due timeouts and retries.
  output on_tick(std::int64_t now_ms) {
    output out;
    if (finished_) return out;
    std::vector<std::string> due_timeouts, due_retries;
    for (const auto& [step, p] : pending_) {
      if (p.retry_at && *p.retry_at <= now_ms)
        due_retries.push_back(step);
      else if (!p.retry_at && p.timeout_at <= now_ms)
        due_timeouts.push_back(step);
    }
    for (const auto& step : due_timeouts) {
      ++timeouts_fired_;
      fail(step,
           rejection{"timeout",
                     "no answer within " + std::to_string(settings_.step_timeout_ms) + " ms"},
           false, now_ms, out);
    }
    for (const auto& step : due_retries) {
      auto it = pending_.find(step);
      if (it == pending_.end()) continue;
      auto& p = it->second;
      p.retry_at.reset();
      ++p.attempt;
      p.timeout_at = now_ms + settings_.step_timeout_ms;
      out.sends.push_back(make_send(step, p));
    }
    return out;
  }

  /// The earliest time a timeout or retry falls due (nothing pending: none).
  std::optional<std::int64_t> next_wakeup() const {
    std::optional<std::int64_t> at;
    for (const auto& [step, p] : pending_) {
      auto due = p.retry_at ? *p.retry_at : p.timeout_at;
      if (!at || due < *at) at = due;
    }
    return at;
  }

  /// The sends a restarted instance must issue again: the current attempt of
  /// every step in flight (same command ids, so nothing applies twice).
  std::vector<saga_send> in_flight() const {
    std::vector<saga_send> out;
    for (const auto& [step, p] : pending_)
      if (!p.retry_at) out.push_back(make_send(step, p));
    return out;
  }

  bool started() const { return started_; }
  bool finished() const { return finished_; }
  const typename S::state& state() const { return state_; }
  std::string_view status() const { return S::status(state_); }
  const std::string& correlation_id() const { return correlation_id_; }
  std::size_t pending_steps() const { return pending_.size(); }
  bool pending(std::string_view step) const { return pending_.contains(step); }
  std::int64_t timeouts_fired() const { return timeouts_fired_; }

  /// `<saga>/<correlation>/<step>/<attempt>`.
  std::string command_id(std::string_view step, int attempt) const {
    return std::string(S::name) + "/" + correlation_id_ + "/" + std::string(step) + "/" +
           std::to_string(attempt);
  }

 private:
  struct pending_step {
    int attempt = 1;
    int overloads = 0;  // sends never applied (shed or turned away by routing)
    std::string stream_id;
    command_payload payload;
    std::string command_type;
    std::string command_json;
    std::int64_t timeout_at = 0;
    std::optional<std::int64_t> retry_at;  // set while waiting to send again
  };

  saga_send make_send(const std::string& step, const pending_step& p) const {
    return {step,
            p.attempt,
            p.stream_id,
            p.payload,
            p.command_type,
            p.command_json,
            command_id(step, p.attempt)};
  }

  void absorb(saga_context& ctx, std::int64_t now_ms, output& out) {
    for (auto& r : ctx.requests_) {
      if (pending_.contains(r.step) || sent_steps_.contains(r.step))
        throw std::logic_error("saga " + std::string(S::name) + " sent step '" + r.step +
                               "' twice; step names must be unique within an instance");
      sent_steps_.emplace(r.step, true);
      pending_step p;
      p.stream_id = std::move(r.stream_id);
      p.payload = std::move(r.payload);
      p.command_type = std::move(r.command_type);
      p.command_json = std::move(r.command_json);
      p.timeout_at = now_ms + settings_.step_timeout_ms;
      auto [it, inserted] = pending_.emplace(r.step, std::move(p));
      out.sends.push_back(make_send(it->first, it->second));
    }
    ctx.requests_.clear();
    if (ctx.finished_ && !finished_) {
      finished_ = true;
      out.finished_now = true;
      pending_.clear();  // a finished saga waits for nothing
    }
  }

  void settle(const std::string& step, step_result result, std::int64_t now_ms, output& out) {
    pending_.erase(step);
    saga_context ctx(now_ms);
    S::on_step(state_, result, ctx);
    absorb(ctx, now_ms, out);
  }

  void fail(const std::string& step, rejection why, bool never_applied, std::int64_t now_ms,
            output& out) {
    auto& p = pending_.at(step);
    bool shed = never_applied && p.overloads < settings_.max_overload_retries;
    if (shed) ++p.overloads;
    if (!shed && p.attempt - p.overloads >= settings_.max_attempts) {
      out.dead_letters.push_back({step, p.stream_id, p.command_type, p.command_json,
                                  command_id(step, p.attempt), p.attempt,
                                  why.code + ": " + why.message});
      settle(step, {step, step_result::kind::gave_up, std::move(why)}, now_ms, out);
      return;
    }
    auto backoff = settings_.retry_backoff_ms;
    for (int i = 1; i < p.attempt && backoff < settings_.max_backoff_ms; ++i) backoff *= 2;
    p.retry_at = now_ms + std::min(backoff, settings_.max_backoff_ms);
  }

  std::string correlation_id_;
  saga_settings settings_;
  typename S::state state_{};
  std::map<std::string, pending_step, std::less<>> pending_;  // less<>: looked up by string_view
  std::map<std::string, bool> sent_steps_;
  bool started_ = false;
  bool finished_ = false;
  std::int64_t timeouts_fired_ = 0;
};

}  // namespace troupe
