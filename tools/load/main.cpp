// troupe-load: the bookstore load generator. See `troupe-load --help` and
// docs/benchmarks.md.
//
// Exit status: 0 run done (and audit passed when asked), 1 audit failed or
// no flow succeeded or the target could not be reached or seeded, 2 bad
// arguments.

#include <unistd.h>

#include <boost/json.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "tools/load/audit.hpp"
#include "tools/load/engine.hpp"
#include "tools/load/options.hpp"
#include "tools/load/report.hpp"

using namespace troupe::load;

namespace {

bool write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  if (!out) {
    std::fprintf(stderr, "troupe-load: cannot write %s\n", path.c_str());
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = parse_options(argc, argv);
  if (parsed.help_requested) {
    std::fputs(parsed.message.c_str(), stdout);
    return 0;
  }
  if (!parsed.options) {
    std::fprintf(stderr, "%s\n", parsed.message.c_str());
    return 2;
  }
  const auto& o = *parsed.options;
  const bool tty = isatty(STDERR_FILENO) == 1;
  auto say = [&](const std::string& line) {
    if (!o.quiet) std::fprintf(stderr, "troupe-load: %s\n", line.c_str());
  };

  auto token = obtain_token(o);
  if (!token.error.empty()) {
    std::fprintf(stderr, "troupe-load: %s\n", token.error.c_str());
    return 1;
  }
  if (!o.no_seed) {
    auto error = seed_catalog(o, token.token, say);
    if (!error.empty()) {
      std::fprintf(stderr, "troupe-load: seeding failed: %s\n", error.c_str());
      return 1;
    }
  }
  say("running " + o.scenario +
      (o.rate ? ", open loop at " + std::to_string(*o.rate) + " flows/s" : ", closed loop") + ", " +
      std::to_string(o.connections) + " connections");

  // A live line on a terminal; on a log, one plain line every 5 s.
  int ticks = 0;
  auto progress = [&](const std::string& line) {
    if (o.quiet) return;
    if (tty) {
      std::fprintf(stderr, "\r%-100s", line.c_str());
      std::fflush(stderr);
    } else if (ticks++ % 5 == 0) {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
  };
  auto result = run_load(o, token.token, progress);
  if (tty && !o.quiet) std::fprintf(stderr, "\r%-100s\r", "");
  auto& report = result.report;

  if (o.audit) {
    say("auditing " + std::to_string(result.acknowledged_orders.size()) +
        " acknowledged orders, sagas, stock and views");
    audit_options ao;
    ao.postgres_url = o.postgres_url;
    ao.acknowledged_orders = std::move(result.acknowledged_orders);
    ao.expect_terminal_orders = o.scenario != "browse";
    ao.settle_timeout = o.saga_timeout;
    ao.say = say;
    report.audit = run_audit(ao);
  }

  std::fputs(render_table(report).c_str(), stdout);
  bool ok = true;
  if (!o.json_file.empty())
    ok = write_file(o.json_file, boost::json::serialize(to_json(report)) + "\n") && ok;
  if (!o.plot_file.empty()) ok = write_file(o.plot_file, render_svg(report)) && ok;
  if (!report.audit_passed()) {
    std::fprintf(stderr, "troupe-load: the audit FAILED\n");
    return 1;
  }
  if (report.flows > 0 && report.flows == report.flows_failed) {
    std::fprintf(stderr, "troupe-load: every flow failed (see the errors above)\n");
    return 1;
  }
  if (report.flows == 0) {
    std::fprintf(stderr, "troupe-load: no flow finished in the measured time\n");
    return 1;
  }
  return ok ? 0 : 1;
}
