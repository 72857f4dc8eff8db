#pragma once
// The audit troupe-load runs after a load (--audit): it reads PostgreSQL
// directly (the event store, saga registry and views) and checks that the
// run left a consistent world:
//   orders-placed-once   every acknowledged order id has exactly one
//                        order_placed event (stream order-<id>)
//   streams-consecutive  no stream (of all streams) has a gap, a duplicate
//                        version or does not start at 1
//   sagas-terminal       every saga instance finished (waits up to
//                        settle_timeout for running sagas to end)
//   orders-terminal      (when expect_terminal_orders) every acknowledged
//                        order is completed or cancelled in its stream
//   stock-balanced       per book: stock reserved == released + committed,
//                        and committed == the quantities of its completed
//                        orders' lines
//   view-<projection>    each view equals a rebuild of it from the log
//                        (built in shadow tables, compared, then dropped;
//                        the live view is not touched), once the view has
//                        caught up with the log
// Each check reports what it counted or the first offending row.

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "tools/load/report.hpp"

namespace troupe::load {

struct audit_options {
  std::string postgres_url;
  /// Order ids (without the "order-" prefix) the run saw acknowledged.
  std::vector<std::string> acknowledged_orders;
  /// When the scenario's orders must have ended (checkout: the saga, or
  /// place-complete: the explicit complete).
  bool expect_terminal_orders = true;
  std::chrono::milliseconds settle_timeout{60'000};
  bool check_views = true;
  /// Progress lines ("auditing views: order_summary ...").
  std::function<void(const std::string&)> say;
};

/// Runs every check; never throws for a failed check (a check that cannot
/// run, e.g. PostgreSQL unreachable, is a failed check with the reason).
std::vector<audit_check> run_audit(const audit_options& options);

}  // namespace troupe::load
