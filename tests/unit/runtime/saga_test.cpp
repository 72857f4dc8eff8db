// The saga machine's shared mechanics (timeouts, retries with backoff,
// rejections, dead letters, deterministic command ids), on a small saga of
// its own over a test ledger.

#include "runtime/saga.hpp"

#include <gtest/gtest.h>

#include <boost/describe.hpp>

#include "runtime/testing/saga_spec.hpp"

namespace saga_test {

struct charge {
  std::string account;
  std::int64_t amount = 0;
  bool operator==(const charge&) const = default;
};
BOOST_DESCRIBE_STRUCT(charge, (), (account, amount))

struct charged {
  static constexpr std::string_view event_type = "test_charged";
  static constexpr int schema_version = 1;
  std::int64_t amount = 0;
};
BOOST_DESCRIBE_STRUCT(charged, (), (amount))

struct ledger {
  static constexpr std::string_view category = "ledger";
  struct state {};
  using command = std::variant<charge>;
  using event = std::variant<charged>;
  static state initial() { return {}; }
  static troupe::decision<event> decide(const command&, const state&) { return {}; }
  static state evolve(state s, const event&) { return s; }
};

struct job_started {
  static constexpr std::string_view event_type = "test_job_started";
  static constexpr int schema_version = 1;
  std::string job_id;
  int charges = 1;
};
struct job_poked {
  static constexpr std::string_view event_type = "test_job_poked";
  static constexpr int schema_version = 1;
  std::string job_id;
};

struct job_state {
  int charges = 0;
  int done = 0;
  std::string result;
  bool operator==(const job_state&) const = default;
};
BOOST_DESCRIBE_STRUCT(job_state, (), (charges, done, result))

struct job {
  static constexpr std::string_view name = "job";
  using state = job_state;
  using event = std::variant<job_started, job_poked>;
  static std::string correlate(const event& e) {
    return std::visit([](const auto& x) { return x.job_id; }, e);
  }
  static bool starts(const event& e) { return std::holds_alternative<job_started>(e); }
  static void on_event(state& s, const event& e, troupe::saga_context& ctx) {
    if (const auto* started = std::get_if<job_started>(&e)) {
      s.charges = started->charges;
      for (int i = 1; i <= s.charges; ++i)
        ctx.send<ledger>("charge:" + std::to_string(i), "acct", charge{"acct", i * 10});
    } else {
      s.result += "poked;";
    }
  }
  static void on_step(state& s, const troupe::step_result& r, troupe::saga_context& ctx) {
    if (r.accepted()) {
      if (++s.done == s.charges) {
        s.result += "done";
        ctx.finish();
      }
    } else {
      s.result += (r.rejected() ? "rejected " : "gave up ") + r.reason.code;
      ctx.finish();
    }
  }
  static std::string_view status(const state& s) { return s.result.empty() ? "running" : "ended"; }
};

using troupe::command_status;
using troupe::testing::saga_spec;
using namespace std::chrono_literals;

TEST(SagaMachine, OnlyAStartingEventCreatesTheInstance) {
  saga_spec<job> spec;
  spec.when(job_poked{"j1"});
  EXPECT_TRUE(spec.sent().empty());
  EXPECT_FALSE(spec.machine().started());
  spec.when(job_started{"j1", 2});
  EXPECT_EQ(spec.sent_steps(), (std::vector<std::string>{"charge:1", "charge:2"}));
}

TEST(SagaMachine, CommandIdsAreSagaCorrelationStepAndAttempt) {
  saga_spec<job> spec;
  spec.when(job_started{"j1", 1});
  ASSERT_NE(spec.sent_step("charge:1"), nullptr);
  EXPECT_EQ(spec.sent_step("charge:1")->command_id, "job/j1/charge:1/1");
  EXPECT_EQ(spec.sent_step("charge:1")->stream_id, "ledger-acct");
  EXPECT_EQ(spec.sent_step("charge:1")->command_json, R"({"account":"acct","amount":10})");
  const ledger::command expected{charge{"acct", 10}};
  EXPECT_EQ(*spec.sent_command<ledger>("charge:1"), expected);
}

TEST(SagaMachine, AFailedStepIsRetriedWithExponentialBackoffThenGivenUp) {
  saga_spec<job> spec;  // 3 attempts, 200 ms doubling
  spec.when(job_started{"j1", 1}).fail("charge:1");
  EXPECT_TRUE(spec.sent().empty());
  spec.advance(199ms);
  EXPECT_TRUE(spec.sent().empty()) << "retried before the backoff";
  spec.advance(1ms);
  ASSERT_NE(spec.sent_step("charge:1"), nullptr);
  EXPECT_EQ(spec.sent_step("charge:1")->attempt, 2);
  EXPECT_EQ(spec.sent_step("charge:1")->command_id, "job/j1/charge:1/2");
  spec.fail("charge:1", command_status::unavailable).advance(399ms);
  EXPECT_TRUE(spec.sent().empty());
  spec.advance(1ms);
  ASSERT_NE(spec.sent_step("charge:1"), nullptr);
  EXPECT_EQ(spec.sent_step("charge:1")->attempt, 3);
  EXPECT_TRUE(spec.dead_letters().empty());
  spec.fail("charge:1");
  ASSERT_EQ(spec.dead_letters().size(), 1u);
  EXPECT_EQ(spec.dead_letters()[0].attempts, 3);
  EXPECT_EQ(spec.dead_letters()[0].step, "charge:1");
  EXPECT_EQ(spec.dead_letters()[0].command_id, "job/j1/charge:1/3");
  EXPECT_NE(spec.dead_letters()[0].error.find("unavailable"), std::string::npos);
  EXPECT_EQ(spec.state().result, "gave up unavailable");
  EXPECT_TRUE(spec.finished());
}

/// Two counted attempts, and up to five sends that were never applied.
const troupe::saga_settings two_attempts_five_untried{.step_timeout_ms = 30000,
                                                      .max_attempts = 2,
                                                      .retry_backoff_ms = 100,
                                                      .max_overload_retries = 5,
                                                      .max_backoff_ms = 1000};

TEST(SagaMachine, OverloadedSendsAreRetriedLongerThanFailures) {
  // Shed commands were never tried: a backlog must not become dead letters.
  saga_spec<job> spec(two_attempts_five_untried);
  spec.when(job_started{"j1", 1});
  for (int shed = 1; shed <= 5; ++shed) {
    spec.fail("charge:1", command_status::overloaded).advance(1000ms);
    ASSERT_NE(spec.sent_step("charge:1"), nullptr) << "overload " << shed;
    EXPECT_EQ(spec.sent_step("charge:1")->attempt, shed + 1);
    EXPECT_TRUE(spec.dead_letters().empty());
  }
  // Past the overload allowance, overloads count like other failures: this
  // one is the step's second counted failure of max_attempts 2.
  spec.fail("charge:1", command_status::overloaded).advance(1000ms);
  EXPECT_NE(spec.sent_step("charge:1"), nullptr) << "the first counted failure is retried";
  spec.fail("charge:1", command_status::overloaded);
  ASSERT_EQ(spec.dead_letters().size(), 1u);
  EXPECT_EQ(spec.dead_letters()[0].attempts, 7);
  EXPECT_EQ(spec.state().result, "gave up overloaded");
}

TEST(SagaMachine, StepsTurnedAwayByRoutingAreRetriedLikeShedOnes) {
  // While a cluster re-forms, shards go unserved for seconds and commands
  // are answered "unavailable, not applied": not a failed attempt.
  saga_spec<job> spec(two_attempts_five_untried);
  spec.when(job_started{"j1", 1});
  const char* routing[] = {"shard_unavailable", "shard_moved", "node_stopping", "node_leaving",
                           "not_owner"};
  for (int turned_away = 1; turned_away <= 5; ++turned_away) {
    const char* code = routing[turned_away - 1];
    spec.fail("charge:1", command_status::unavailable, code).advance(1000ms);
    ASSERT_NE(spec.sent_step("charge:1"), nullptr) << code;
    EXPECT_EQ(spec.sent_step("charge:1")->attempt, turned_away + 1);
    EXPECT_TRUE(spec.dead_letters().empty()) << code;
  }
  // A failure that may have applied counts: with max_attempts 2 the second
  // such answer gives the step up.
  spec.fail("charge:1", command_status::unavailable, "store_unavailable").advance(1000ms);
  EXPECT_NE(spec.sent_step("charge:1"), nullptr);
  spec.fail("charge:1", command_status::unavailable, "forward_timeout");
  ASSERT_EQ(spec.dead_letters().size(), 1u);
  EXPECT_EQ(spec.state().result, "gave up unavailable");
}

TEST(SagaMachine, NoAnswerWithinTheTimeoutCountsAsAFailure) {
  saga_spec<job> spec({.step_timeout_ms = 30000, .max_attempts = 2, .retry_backoff_ms = 100});
  spec.when(job_started{"j1", 1}).advance(29999ms);
  EXPECT_TRUE(spec.sent().empty());
  EXPECT_EQ(spec.machine().next_wakeup(), spec.now_ms() + 1);
  spec.advance(1ms).advance(100ms);
  ASSERT_NE(spec.sent_step("charge:1"), nullptr);
  EXPECT_EQ(spec.sent_step("charge:1")->attempt, 2);
  EXPECT_EQ(spec.machine().timeouts_fired(), 1);
  spec.advance(30s);
  EXPECT_EQ(spec.machine().timeouts_fired(), 2);
  EXPECT_EQ(spec.state().result, "gave up timeout");
  ASSERT_EQ(spec.dead_letters().size(), 1u);
}

TEST(SagaMachine, ARejectionIsNotRetried) {
  saga_spec<job> spec;
  spec.when(job_started{"j1", 1}).reject("charge:1", "insufficient_funds", "no");
  EXPECT_EQ(spec.state().result, "rejected insufficient_funds");
  EXPECT_TRUE(spec.dead_letters().empty());
  spec.advance(10min);
  EXPECT_TRUE(spec.sent().empty());
}

TEST(SagaMachine, ALateSuccessOfAnEarlierAttemptSettlesTheStep) {
  troupe::saga_machine<job> m("j1");
  m.on_event(job_started{"j1", 1}, 0);
  m.on_tick(30000);  // attempt 1 timed out
  auto retry = m.on_tick(30200);
  ASSERT_EQ(retry.sends.size(), 1u);
  EXPECT_EQ(retry.sends[0].attempt, 2);
  troupe::command_result ok;
  m.on_reply("charge:1", 1, ok, 30300);  // attempt 1 had landed after all
  EXPECT_TRUE(m.finished());
  EXPECT_EQ(m.state().result, "done");
  // A failure of a superseded attempt changes nothing.
  troupe::saga_machine<job> n("j2");
  n.on_event(job_started{"j2", 1}, 0);
  n.on_tick(30000);
  n.on_tick(30200);
  troupe::command_result failed;
  failed.status = command_status::unavailable;
  auto out = n.on_reply("charge:1", 1, failed, 30300);
  EXPECT_TRUE(out.sends.empty());
  EXPECT_EQ(n.next_wakeup(), 30200 + 30000);
}

TEST(SagaMachine, AFinishedSagaIgnoresEverythingAfter) {
  saga_spec<job> spec;
  spec.when(job_started{"j1", 1}).accept("charge:1");
  ASSERT_TRUE(spec.finished());
  spec.when(job_poked{"j1"}).when(job_started{"j1", 3}).advance(1h);
  EXPECT_TRUE(spec.sent().empty());
  EXPECT_EQ(spec.state().result, "done");
  EXPECT_FALSE(spec.machine().next_wakeup().has_value());
}

TEST(SagaMachine, InFlightStepsAreSentAgainWithTheSameIdsAfterARestart) {
  troupe::saga_machine<job> m("j1");
  m.on_event(job_started{"j1", 2}, 0);
  troupe::command_result ok;
  m.on_reply("charge:1", 1, ok, 10);
  auto again = m.in_flight();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].step, "charge:2");
  EXPECT_EQ(again[0].command_id, "job/j1/charge:2/1");
}

struct twice {
  static constexpr std::string_view name = "twice";
  using state = job_state;
  using event = std::variant<job_started>;
  static std::string correlate(const event&) { return "x"; }
  static bool starts(const event&) { return true; }
  static void on_event(state&, const event&, troupe::saga_context& ctx) {
    ctx.send<ledger>("same", "a", charge{"a", 1});
    ctx.send<ledger>("same", "a", charge{"a", 1});
  }
  static void on_step(state&, const troupe::step_result&, troupe::saga_context&) {}
  static std::string_view status(const state&) { return "x"; }
};

TEST(SagaMachine, SendingAStepNameTwiceIsAProgrammingError) {
  troupe::saga_machine<twice> m("x");
  EXPECT_THROW(m.on_event(job_started{"x", 1}, 0), std::logic_error);
}

}  // namespace saga_test
