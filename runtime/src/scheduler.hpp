#pragma once
// CAF's work-stealing scheduler with a clock that does not wake its thread
// when an actor that never set a timeout ends. CAF 0.17 calls the clock's
// cancel_timeouts at every actor's cleanup, and thread_safe_actor_clock
// turns each call into an event for its dispatcher thread plus a condition
// variable notify: a futex wake and two context switches per actor. Every
// passivated aggregate paid it; with place-complete at the live-aggregate
// cap (one passivation per order) the node peaked ~20 % lower
// (docs/benchmarks.md).

#include <caf/fwd.hpp>
#include <cstdint>
#include <optional>

namespace troupe::detail {

/// Adds the scheduler to `config`: the actor system then uses it instead of
/// its default (same policy and settings, `scheduler.max-threads` etc.).
void use_troupe_scheduler(caf::actor_system_config& config);

/// How many actors' ends reached the clock's dispatcher (those that had set
/// a timeout); nullopt when `system` does not run this scheduler.
std::optional<std::uint64_t> timeout_cancellations_forwarded(caf::actor_system& system);

}  // namespace troupe::detail
