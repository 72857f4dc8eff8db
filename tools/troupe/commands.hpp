#pragma once
// Subcommands of the `troupe` executable.

#include <cstdint>

#include "runtime/config.hpp"

namespace troupe::cli {

struct serve_options {
  std::int64_t demo_orders = 0;  // orders to place at start-up, to show the node working
  bool exit_after_demo = false;
};

/// Runs a node until SIGINT/SIGTERM. Returns the process exit code.
int serve(const config& cfg, const serve_options& options);

/// Applies pending schema migrations to postgres.url and reports them.
int migrate(const config& cfg);

}  // namespace troupe::cli
