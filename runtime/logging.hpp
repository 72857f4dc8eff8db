#pragma once
// Logging through spdlog: human-readable text (coloured on a terminal) or one
// JSON object per line. Subsystems take a named logger from `logger(name)`.

#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <string_view>

namespace troupe {

/// Configures the process-wide sinks. `format` is "text" or "json"; `level`
/// one of spdlog's level names. Call once at start-up.
void setup_logging(std::string_view level, std::string_view format);

/// A logger named after a subsystem ("region", "node", ...), sharing the
/// process-wide sinks and level.
std::shared_ptr<spdlog::logger> logger(const std::string& name);

}  // namespace troupe
