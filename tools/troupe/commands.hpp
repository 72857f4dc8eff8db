#pragma once
// Subcommands of the `troupe` executable.

#include <cstdint>

#include <string>

#include "runtime/config.hpp"
#include "runtime/projector.hpp"

namespace troupe::cli {

struct serve_options {
  std::int64_t demo_orders = 0;  // orders to place at start-up, to show the node working
  bool exit_after_demo = false;
};

/// Runs a node until SIGINT/SIGTERM. Returns the process exit code.
int serve(const config& cfg, const serve_options& options);

/// Projector settings from the `projections.*` and `nats.*` keys.
projector_options projector_settings(const config& cfg);

/// `troupe projection list|rebuild NAME`.
int projection_command(const config& cfg, const std::string& action, const std::string& name,
                       std::size_t batch_size);

/// `troupe dead-letters list|replay ID`.
int dead_letters_command(const config& cfg, const std::string& action, std::int64_t id,
                         const std::string& consumer, std::size_t limit);

/// Prints the HTTP API's OpenAPI document.
int print_openapi(const config& cfg);
/// Prints the event catalog as json or md.
int print_catalog(const std::string& format);

/// `troupe cluster status [--json]`.
int cluster_status_command(const config& cfg, bool json);

/// Applies pending schema migrations to postgres.url and reports them.
int migrate(const config& cfg);

}  // namespace troupe::cli
