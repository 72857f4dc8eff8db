#pragma once
// The load engine: worker threads, each with its own io_context, its share
// of the keep-alive connections and of the rate, running scenario flows
// (a flow is one scenario iteration: a place-complete is two commands, a
// checkout a basket, an order and status polls until its saga ends).
// Flows do not own connections: a flow with a request ready takes any free
// connection of its worker, so a checkout waiting for its saga holds none.

#include <functional>
#include <string>
#include <vector>

#include "tools/load/options.hpp"
#include "tools/load/report.hpp"

namespace troupe::load {

struct run_result {
  run_report report;
  std::vector<std::string> acknowledged_orders;  // order ids answered 201
};

/// A bearer token for the run: options.token, else an admin token from the
/// node's dev-mode token route, else "" (auth off). Fails (returns the
/// reason) when the target does not answer at all.
struct token_result {
  std::string token;
  std::string error;
};
token_result obtain_token(const load_options& options);

/// Creates the catalog (categories, publishers, authors, books with a large
/// stock) and the buyers' finance accounts; existing ones are kept (409 is
/// fine), so repeated runs reuse one catalog. Returns an error text, or "".
std::string seed_catalog(const load_options& options, const std::string& token,
                         const std::function<void(const std::string&)>& say);

/// Runs the workload. `progress` gets a line about once a second (rate,
/// errors, p99 so far) while measuring.
run_result run_load(const load_options& options, const std::string& token,
                    const std::function<void(const std::string&)>& progress);

}  // namespace troupe::load
