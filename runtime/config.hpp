#pragma once
// Node configuration: built-in defaults (config/troupe.json, compiled in),
// then an optional JSON file, then TROUPE_* environment variables, then
// `--set key=value` flags; later layers win. Every key is checked against a
// schema: an unknown key or a bad value is an error naming the key and where
// it came from, so a node never starts on a typo.
//
// Environment names: TROUPE_ + the key upper-cased with '.' as '_'
// (aggregate.idle_timeout_ms -> TROUPE_AGGREGATE_IDLE_TIMEOUT_MS). Variables
// starting with TROUPE_SERVICES_ or TROUPE_TEST_ belong to scripts and tests
// and are ignored here.

#include <cstdint>
#include <expected>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

class config {
 public:
  struct source {
    std::optional<std::string> file = {};                       // a JSON file to layer on top
    std::vector<std::pair<std::string, std::string>> env = {};  // name, value
    std::vector<std::string> overrides = {};                    // "key=value"
  };

  /// Builds the configuration, or explains the first problem found.
  static std::expected<config, std::string> load(const source& from);
  /// Only the built-in defaults (tests, tools).
  static config defaults();
  /// The process environment, as `source::env` wants it.
  static std::vector<std::pair<std::string, std::string>> process_environment();

  std::int64_t integer(std::string_view key) const;
  const std::string& string(std::string_view key) const;
  bool boolean(std::string_view key) const;
  /// Integer of an optional key (wildcard entries such as
  /// aggregate.types.<category>.snapshot_every).
  std::optional<std::int64_t> find_integer(std::string_view key) const;

  /// Sets one key from text, with the same checks as --set.
  std::optional<std::string> set(std::string_view key, std::string_view value);

  /// Every key with its effective value and origin, for `troupe config`.
  std::string describe() const;
  /// Keys of wildcard entries present (e.g. all aggregate.types.*.x keys).
  std::vector<std::string> keys_with_prefix(std::string_view prefix) const;

  struct value {
    std::string text;  // canonical text form
    std::int64_t integer = 0;
    bool boolean = false;
    std::string origin;  // "defaults", "file x.json", "env TROUPE_X", "--set"
  };

 private:
  std::map<std::string, value, std::less<>> values_;
  friend struct config_loader;
};

/// A URL with its password replaced by ***, safe to log.
std::string redact_url(std::string_view url);

/// A list-valued setting ("a, b,c" -> {"a", "b", "c"}): comma-separated,
/// spaces and empty entries dropped (nats.url, projections.only).
std::vector<std::string> split_list(const std::string& text);

}  // namespace troupe
