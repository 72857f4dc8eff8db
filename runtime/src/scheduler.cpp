#include "runtime/src/scheduler.hpp"

#include <atomic>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/detail/set_thread_name.hpp>
#include <caf/detail/thread_safe_actor_clock.hpp>
#include <caf/policy/work_stealing.hpp>
#include <caf/scheduler/coordinator.hpp>
#include <mutex>
#include <thread>
#include <unordered_set>

namespace troupe::detail {

namespace {

/// Remembers which actors set a timeout; cancel_timeouts for any other
/// actor (nothing to cancel) returns without involving the dispatcher.
/// Actor ids are never reused, so a remembered id is only ever the actor's.
class timeout_tracking_clock final : public caf::detail::thread_safe_actor_clock {
 public:
  using super = caf::detail::thread_safe_actor_clock;

  void set_ordinary_timeout(time_point t, caf::abstract_actor* self, caf::atom_value type,
                            uint64_t id) override {
    remember(self);
    super::set_ordinary_timeout(t, self, type, id);
  }

  void set_request_timeout(time_point t, caf::abstract_actor* self, caf::message_id id) override {
    remember(self);
    super::set_request_timeout(t, self, id);
  }

  void set_multi_timeout(time_point t, caf::abstract_actor* self, caf::atom_value type,
                         uint64_t id) override {
    remember(self);
    super::set_multi_timeout(t, self, type, id);
  }

  void cancel_timeouts(caf::abstract_actor* self) override {
    {
      std::lock_guard lock{mutex_};
      if (with_timeouts_.erase(self->id()) == 0) return;
    }
    forwarded_.fetch_add(1, std::memory_order_relaxed);
    super::cancel_timeouts(self);
  }

  std::uint64_t forwarded() const { return forwarded_.load(std::memory_order_relaxed); }

 private:
  void remember(caf::abstract_actor* self) {
    std::lock_guard lock{mutex_};
    with_timeouts_.insert(self->id());
  }

  std::mutex mutex_;
  std::unordered_set<caf::actor_id> with_timeouts_;
  std::atomic<std::uint64_t> forwarded_{0};
};

class troupe_scheduler final : public caf::scheduler::coordinator<caf::policy::work_stealing> {
 public:
  using super = caf::scheduler::coordinator<caf::policy::work_stealing>;

  explicit troupe_scheduler(caf::actor_system& system) : super(system) {}

  timeout_tracking_clock& clock() noexcept override { return clock_; }

 protected:
  // The base class runs its own clock's thread too ("caf.clock"); it stays
  // idle, since every timeout now goes to this clock. Ours has its own name
  // so that perf and top tell the two apart.
  void start() override {
    dispatcher_ = std::thread{[this] {
      caf::detail::set_thread_name("troupe.clock");
      system().thread_started();
      clock_.run_dispatch_loop();
      system().thread_terminates();
    }};
    super::start();
  }

  void stop() override {
    super::stop();
    clock_.cancel_dispatch_loop();
    if (dispatcher_.joinable()) dispatcher_.join();
  }

 private:
  timeout_tracking_clock clock_;
  std::thread dispatcher_;
};

}  // namespace

std::optional<std::uint64_t> timeout_cancellations_forwarded(caf::actor_system& system) {
  auto* clock = dynamic_cast<timeout_tracking_clock*>(&system.clock());
  if (clock == nullptr) return std::nullopt;
  return clock->forwarded();
}

void use_troupe_scheduler(caf::actor_system_config& config) {
  config.module_factories.push_back([](caf::actor_system& system) -> caf::actor_system::module* {
    return new troupe_scheduler(system);
  });
}

}  // namespace troupe::detail
