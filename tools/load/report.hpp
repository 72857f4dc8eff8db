#pragma once
// The result of a troupe-load run and its three renderings: a text table
// for people, JSON for tools (--json) and an SVG latency-over-time plot
// (--plot). Pure: no I/O beyond building strings.

#include <boost/json/fwd.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tools/load/histogram.hpp"

namespace troupe::load {

/// One second of the measured part of the run.
struct time_slice {
  double start_seconds = 0;  // since the end of the warm-up
  std::int64_t requests = 0;
  std::int64_t errors = 0;  // requests that failed (status >= 400 or no answer)
  histogram latency;        // all requests answered in this second
};

struct audit_check {
  std::string name;  // e.g. "orders-placed-once"
  bool passed = false;
  std::string detail;  // what was counted, or the first offending row
};

struct run_report {
  // What was run.
  std::string target;      // "http://127.0.0.1:8080" (several joined by ",")
  std::string scenario;    // place-complete | checkout | browse | mixed
  std::string mode;        // "open" or "closed"
  double target_rate = 0;  // open loop: flows/s asked for
  int connections = 0;
  double warmup_seconds = 0;
  double measured_seconds = 0;  // wall time of the measured part

  // What happened in the measured part.
  std::int64_t flows = 0;  // scenario iterations finished (successfully or not)
  std::int64_t flows_failed = 0;
  std::int64_t requests = 0;     // HTTP requests answered or failed
  std::int64_t commands = 0;     // requests that were commands (POST/PUT/PATCH/DELETE)
  std::int64_t commands_ok = 0;  // commands answered 2xx
  /// Latency by request kind ("place", "complete", "basket", "order-status",
  /// "browse", ...) plus "flow" (a whole scenario iteration, e.g. a checkout
  /// from basket to terminal saga state) and "all" (every request).
  /// In open loop, measured from the request's intended start (corrected
  /// for coordinated omission).
  std::map<std::string, histogram> latency;
  std::map<int, std::int64_t> status_counts;           // 0 = no answer
  std::map<std::string, std::int64_t> errors_by_kind;  // "timeout", "connect", "409 conflict", ...
  std::map<std::string, std::int64_t> saga_outcomes;   // "completed", "cancelled", "unfinished"
  /// Projection lag sampled from the target's /metrics once a second:
  /// the largest seen per projection, in seconds.
  std::map<std::string, double> max_view_lag_seconds;
  std::vector<time_slice> timeline;
  /// Per target (when several are driven): requests and failures, so a node
  /// that is down or failing shows by name.
  std::map<std::string, std::pair<std::int64_t, std::int64_t>> per_target;

  std::optional<std::vector<audit_check>> audit;  // when --audit ran

  double flows_per_second() const;
  double requests_per_second() const;
  double commands_per_second() const;  // successful commands per second
  bool audit_passed() const;           // true when no audit ran
};

/// A fixed-width text table (throughput, latency percentiles per kind in
/// ms, status codes, errors, saga outcomes, view lag, per-target counts,
/// audit checks).
std::string render_table(const run_report& report);
/// Everything in the report as JSON (latencies in milliseconds, with
/// p50/p90/p99/p99.9/max/mean/count per kind; the timeline per second).
boost::json::object to_json(const run_report& report);
/// A self-contained SVG: p50, p99 and max latency per second (log scale,
/// ms) over the run, with throughput per second as a second series and
/// error seconds marked.
std::string render_svg(const run_report& report);

}  // namespace troupe::load
