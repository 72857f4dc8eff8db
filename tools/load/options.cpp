#include "tools/load/options.hpp"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <ctime>
#include <set>
#include <sstream>

namespace troupe::load {

namespace {

const std::set<std::string> scenarios{"place-complete", "checkout", "browse", "mixed"};

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, sep))
    if (!trim(part).empty()) out.push_back(trim(part));
  return out;
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_duration(const std::string& text) {
  auto s = trim(text);
  if (s.empty()) return std::nullopt;
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(s, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  auto unit = s.substr(used);
  double ms = 0;
  if (unit.empty() || unit == "s")
    ms = value * 1000;
  else if (unit == "ms")
    ms = value;
  else if (unit == "m" || unit == "min")
    ms = value * 60'000;
  else if (unit == "h")
    ms = value * 3'600'000;
  else
    return std::nullopt;
  if (!(ms >= 0) || ms > 7 * 24 * 3'600'000.0) return std::nullopt;
  return std::chrono::milliseconds{static_cast<std::int64_t>(ms)};
}

std::optional<endpoint> parse_endpoint(const std::string& text) {
  auto s = trim(text);
  endpoint e;
  e.text = s;
  if (s.starts_with("https://")) return std::nullopt;  // no TLS client here
  if (s.starts_with("http://")) s = s.substr(7);
  if (auto slash = s.find('/'); slash != std::string::npos) s = s.substr(0, slash);
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  e.host = s.substr(0, colon);
  auto port = s.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  auto p = std::stoi(port);
  if (p < 1 || p > 65535) return std::nullopt;
  e.port = static_cast<std::uint16_t>(p);
  if (e.host == "localhost") e.host = "127.0.0.1";
  return e;
}

parse_result parse_options(int argc, const char* const* argv) {
  parse_result result;
  load_options o;
  CLI::App app{
      "troupe-load: drives a Troupe node (or several) with bookstore workloads and reports\n"
      "throughput, latency percentiles (corrected for coordinated omission in open loop),\n"
      "errors and saga outcomes; --audit then checks the event store and views."};
  app.set_help_flag("-h,--help", "show this help");
  std::vector<std::string> targets;
  std::string duration = "30s", warmup = "5s", timeout = "30s", saga_timeout = "60s", mix,
              status_wait = "10s";
  std::optional<double> rate;
  app.add_option("-t,--target", targets,
                 "node to drive, http://host:port; repeat or comma-separate for several "
                 "(connections are spread over them)")
      ->required();
  app.add_option("-s,--scenario", o.scenario, "place-complete | checkout | browse | mixed")
      ->capture_default_str();
  app.add_option("--mix", mix,
                 "mixed: weights, e.g. browse=8,checkout=1,place-complete=1 (the default)");
  app.add_option("-r,--rate", rate,
                 "open loop: flows started per second (latency measured from each flow's "
                 "intended start); without it, closed loop");
  app.add_option("-c,--connections", o.connections, "keep-alive connections")
      ->capture_default_str();
  app.add_option("--threads", o.threads, "client threads (each with its share of connections)")
      ->capture_default_str();
  app.add_option("-d,--duration", duration, "measured time, e.g. 30s, 2m")->capture_default_str();
  app.add_option("-n,--flows", o.flow_count, "stop after this many flows instead of a duration");
  app.add_option("-w,--warmup", warmup, "time before measuring (excluded from the results)")
      ->capture_default_str();
  app.add_option("--timeout", timeout, "per-request timeout")->capture_default_str();
  app.add_option("--saga-timeout", saga_timeout,
                 "checkout: how long to wait for the saga to end an order")
      ->capture_default_str();
  app.add_option("--status-wait", status_wait,
                 "checkout: how long each order-status request waits on the server for a "
                 "change (long poll, at most 30s); 0 = poll")
      ->capture_default_str();
  app.add_flag("--no-seed", o.no_seed, "do not create the catalog, buyers and accounts first");
  app.add_option("--books", o.books, "books in the catalog")->capture_default_str();
  app.add_option("--authors", o.authors, "authors")->capture_default_str();
  app.add_option("--categories", o.categories, "categories")->capture_default_str();
  app.add_option("--publishers", o.publishers, "publishers")->capture_default_str();
  app.add_option("--buyers", o.buyers, "buyers (each with a finance account)")
      ->capture_default_str();
  app.add_option("--items", o.items_per_order, "lines per order")->capture_default_str();
  app.add_option("--prefix", o.prefix, "id prefix of the seeded catalog")->capture_default_str();
  app.add_option("--token", o.token,
                 "bearer token (admin); default: one from /api/v1/dev/tokens when the node "
                 "runs auth dev mode, else none");
  app.add_option("--json", o.json_file, "write the report as JSON to this file");
  app.add_option(
      "--plot", o.plot_file,
      "write an SVG latency-over-time plot to this file (the first hour of a longer run)");
  app.add_flag("--audit", o.audit,
               "after the run, audit PostgreSQL: orders placed once, streams consecutive, sagas "
               "terminal, stock balanced, views equal a rebuild (exit 1 when it fails)");
  app.add_option("--pg-url", o.postgres_url,
                 "PostgreSQL for --audit (default: $TROUPE_POSTGRES_URL)");
  app.add_flag("-q,--quiet", o.quiet, "no progress lines");
  app.add_option("--run-id", o.run_id,
                 "keeps order ids of separate runs apart (default: time and process id); a reused "
                 "id makes orders collide (409)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    result.help_requested = true;
    result.message = app.help();
    return result;
  } catch (const CLI::ParseError& e) {
    result.message = std::string(e.what()) + "\n(troupe-load --help lists the options)";
    return result;
  }
  auto fail = [&](const std::string& m) {
    result.message = "troupe-load: " + m;
    return result;
  };
  for (const auto& t : targets)
    for (const auto& part : split(t, ',')) {
      auto e = parse_endpoint(part);
      if (!e) return fail("bad --target '" + part + "': expected http://host:port");
      o.targets.push_back(*e);
    }
  if (o.targets.empty()) return fail("--target is required");
  if (!scenarios.contains(o.scenario))
    return fail("unknown --scenario '" + o.scenario +
                "': choose place-complete, checkout, browse or mixed");
  if (o.scenario == "mixed") {
    if (mix.empty()) mix = "browse=8,checkout=1,place-complete=1";
    for (const auto& part : split(mix, ',')) {
      auto eq = part.find('=');
      auto name = trim(part.substr(0, eq));
      if (eq == std::string::npos || !scenarios.contains(name) || name == "mixed")
        return fail("bad --mix entry '" + part + "': expected <scenario>=<weight>");
      double w = 0;
      try {
        w = std::stod(part.substr(eq + 1));
      } catch (const std::exception&) {
        return fail("bad weight in --mix entry '" + part + "'");
      }
      if (!(w >= 0)) return fail("weights must be >= 0 in --mix entry '" + part + "'");
      o.mix[name] = w;
    }
    double sum = 0;
    for (const auto& [k, w] : o.mix) sum += w;
    if (!(sum > 0)) return fail("--mix needs at least one positive weight");
  } else if (!mix.empty()) {
    return fail("--mix applies to --scenario mixed only");
  }
  if (rate && !(*rate > 0 && *rate <= 10'000'000))
    return fail("--rate must be a positive number of flows per second");
  o.rate = rate;
  if (o.connections < 1 || o.connections > 50'000)
    return fail("--connections must be between 1 and 50000");
  if (o.threads < 1 || o.threads > 64) return fail("--threads must be between 1 and 64");
  if (o.threads > o.connections) return fail("--threads cannot exceed --connections");
  auto d = parse_duration(duration);
  if (!d || d->count() == 0) return fail("bad --duration '" + duration + "' (e.g. 30s, 2m)");
  o.duration = *d;
  if (o.flow_count && *o.flow_count < 1) return fail("--flows must be at least 1");
  auto w = parse_duration(warmup);
  if (!w) return fail("bad --warmup '" + warmup + "' (e.g. 5s, 0)");
  o.warmup = *w;
  auto to = parse_duration(timeout);
  if (!to || to->count() == 0) return fail("bad --timeout '" + timeout + "'");
  o.request_timeout = *to;
  auto st = parse_duration(saga_timeout);
  if (!st || st->count() == 0) return fail("bad --saga-timeout '" + saga_timeout + "'");
  o.saga_timeout = *st;
  auto sw = parse_duration(status_wait);
  if (!sw || *sw > std::chrono::seconds{30})
    return fail("bad --status-wait '" + status_wait + "' (0 to 30s, e.g. 10s)");
  if (*sw >= o.request_timeout)
    return fail("--status-wait (" + status_wait + ") must be shorter than --timeout (" + timeout +
                ")");
  o.status_wait = *sw;
  for (auto [name, value] : {std::pair{"--books", o.books},
                             {"--authors", o.authors},
                             {"--categories", o.categories},
                             {"--publishers", o.publishers},
                             {"--buyers", o.buyers}})
    if (value < 1 || value > 10'000'000) return fail(std::string(name) + " must be at least 1");
  if (o.items_per_order < 1 || o.items_per_order > 100)
    return fail("--items must be between 1 and 100 (an order holds at most 100 lines)");
  if (o.items_per_order > o.books) return fail("--items cannot exceed --books");
  if (o.prefix.empty() ||
      o.prefix.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") != std::string::npos)
    return fail("--prefix must be lower-case letters, digits or '_'");
  if (o.audit && o.postgres_url.empty()) {
    if (const char* env = std::getenv("TROUPE_POSTGRES_URL")) o.postgres_url = env;
    if (o.postgres_url.empty()) return fail("--audit needs --pg-url or TROUPE_POSTGRES_URL");
  }
  // Seconds and process id: two runs started in the same second differ.
  if (o.run_id.empty())
    o.run_id = std::to_string(std::time(nullptr)) + "_" + std::to_string(getpid());
  if (o.run_id.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") != std::string::npos)
    return fail("--run-id must be lower-case letters, digits or '_'");
  result.options = std::move(o);
  return result;
}

}  // namespace troupe::load
