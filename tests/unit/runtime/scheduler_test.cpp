// The node's CAF scheduler: timeouts and delayed messages still work through
// its clock, and an actor that never set a timeout ends without involving
// the clock's thread.

#include "runtime/src/scheduler.hpp"

#include <gtest/gtest.h>

#include <caf/all.hpp>
#include <chrono>
#include <memory>
#include <vector>

namespace {

using namespace std::chrono_literals;

struct scheduler_fixture : ::testing::Test {
  static caf::actor_system_config& config() {
    static caf::actor_system_config cfg = [] {
      caf::actor_system_config c;
      c.set("scheduler.max-threads", std::size_t{2});
      troupe::detail::use_troupe_scheduler(c);
      return c;
    }();
    return cfg;
  }
  caf::actor_system system{config()};
};

TEST_F(scheduler_fixture, ActorsWithoutTimeoutsEndWithoutReachingTheClock) {
  ASSERT_TRUE(troupe::detail::timeout_cancellations_forwarded(system).has_value());
  {
    caf::scoped_actor self{system};
    for (int i = 0; i < 1000; ++i) {
      auto echo = system.spawn([]() -> caf::behavior { return {[](int x) { return x; }}; });
      self->request(echo, caf::infinite, i)
          .receive([&](int x) { EXPECT_EQ(x, i); }, [&](caf::error& e) { FAIL() << to_string(e); });
      self->send_exit(echo, caf::exit_reason::user_shutdown);
    }
  }
  system.await_all_actors_done();
  EXPECT_EQ(*troupe::detail::timeout_cancellations_forwarded(system), 0u);
}

TEST_F(scheduler_fixture, RequestTimeoutsAndDelayedMessagesStillArrive) {
  // Holds every request unanswered (a void handler would answer it).
  auto silent = system.spawn([](caf::event_based_actor* a) -> caf::behavior {
    auto held = std::make_shared<std::vector<caf::response_promise>>();
    return {[a, held](int) {
      held->push_back(a->make_response_promise());
      return held->back();
    }};
  });
  caf::scoped_actor self{system};
  bool timed_out = false;
  self->request(silent, 50ms, 1)
      .receive([](caf::message&) {},
               [&](caf::error& e) { timed_out = e == caf::sec::request_timeout; });
  EXPECT_TRUE(timed_out);
  // The requester set a timeout: its end must cancel it through the clock.
  auto requester = system.spawn([silent](caf::event_based_actor* a) -> caf::behavior {
    a->request(silent, 10s, 2).then([](caf::message&) {});
    return {[a](int) { a->quit(); }};
  });
  self->delayed_send(requester, 20ms, 3);
  self->wait_for(requester);
  self->send_exit(silent, caf::exit_reason::user_shutdown);
  self->wait_for(silent);
  EXPECT_EQ(*troupe::detail::timeout_cancellations_forwarded(system), 1u);
}

TEST(Scheduler, AnotherSchedulerIsNotMistakenForIt) {
  caf::actor_system_config cfg;
  caf::actor_system system{cfg};
  EXPECT_FALSE(troupe::detail::timeout_cancellations_forwarded(system).has_value());
}

}  // namespace
