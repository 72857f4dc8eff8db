#pragma once
// troupe-load's settings, parsed from the command line (parse_options),
// checked before anything connects: a bad argument is a clear message and
// exit status 2, never a half-started run.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace troupe::load {

struct endpoint {
  std::string host;  // "127.0.0.1"
  std::uint16_t port = 0;
  std::string text;  // as given, for reports
};

struct load_options {
  std::vector<endpoint> targets;
  /// place-complete | checkout | browse | mixed
  std::string scenario = "place-complete";
  /// mixed: weight per scenario (e.g. browse=8,checkout=1,place-complete=1).
  std::map<std::string, double> mix;
  /// Open loop when set: scenario iterations (flows) started per second,
  /// whatever the answers do. Otherwise closed loop: each connection runs
  /// one flow after the other.
  std::optional<double> rate;
  int connections = 64;
  int threads = 1;
  std::chrono::milliseconds duration{30'000};
  std::optional<std::int64_t> flow_count;  // stop after this many flows instead
  std::chrono::milliseconds warmup{5'000};
  std::chrono::milliseconds request_timeout{30'000};
  /// checkout: how long to wait for the saga to end an order.
  std::chrono::milliseconds saga_timeout{60'000};
  /// checkout: how long each status request waits on the server for the
  /// order to change (a long poll); 0 = poll with client-side pauses.
  std::chrono::milliseconds status_wait{10'000};

  // Catalog: created (idempotently) before the run unless no_seed.
  bool no_seed = false;
  int books = 1000, authors = 100, categories = 10, publishers = 10, buyers = 1000;
  int items_per_order = 1;
  std::string prefix = "load";  // ids: load-book-17, load-buyer-3, ...

  std::string token;  // bearer token; empty: ask /api/v1/dev/tokens, else none
  std::string json_file, plot_file;
  bool audit = false;
  std::string postgres_url;  // for --audit (default: TROUPE_POSTGRES_URL)
  bool quiet = false;
  /// A run id keeps order ids of separate runs apart (default: time-based).
  std::string run_id;
};

/// Parses argv. On bad input returns the message to print (exit 2); on
/// --help returns the usage text with help_requested set.
struct parse_result {
  std::optional<load_options> options;
  std::string message;
  bool help_requested = false;
};
parse_result parse_options(int argc, const char* const* argv);

/// "30s", "500ms", "2m", "1h", or a bare number of seconds.
std::optional<std::chrono::milliseconds> parse_duration(const std::string& text);
/// "http://host:port" (path ignored), "host:port".
std::optional<endpoint> parse_endpoint(const std::string& text);

}  // namespace troupe::load
