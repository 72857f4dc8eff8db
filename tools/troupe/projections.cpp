// `troupe projection list|rebuild` and `troupe dead-letters list|replay`.

#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "actors/bookstore.hpp"
#include "actors/projections.hpp"
#include "persistence/postgres/migrations.hpp"
#include "persistence/postgres/view_store.hpp"
#include "runtime/command_codec.hpp"
#include "runtime/logging.hpp"
#include "runtime/node.hpp"
#include "runtime/store_factory.hpp"
#include "tools/troupe/commands.hpp"

namespace troupe::cli {

namespace {

std::optional<projection_definition> find_projection(const std::string& name) {
  for (auto& def : bookstore::bookstore_projections())
    if (def.name == name) return std::move(def);
  return std::nullopt;
}

std::string projection_names() {
  std::string out;
  for (const auto& def : bookstore::bookstore_projections())
    out += (out.empty() ? "" : ", ") + def.name;
  return out;
}

std::string thousands(std::int64_t n) {
  auto digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return (n < 0 ? "-" : "") + out;
}

/// A progress bar on a terminal, a plain line every two seconds otherwise.
class progress_printer {
 public:
  progress_printer() : tty_(isatty(STDERR_FILENO) != 0) {}

  void update(const rebuild_progress& p) {
    auto now = std::chrono::steady_clock::now();
    if (!tty_ && now - last_ < std::chrono::seconds{2}) return;
    last_ = now;
    double fraction =
        p.head > 0 ? static_cast<double>(p.position) / static_cast<double>(p.head) : 1;
    fraction = std::clamp(fraction, 0.0, 1.0);
    char line[200];
    std::snprintf(line, sizeof line, "%5.1f%%  %s events  %s ev/s  eta %.0f s%s", fraction * 100,
                  thousands(p.events_done).c_str(),
                  thousands(static_cast<std::int64_t>(p.events_per_second)).c_str(), p.eta_seconds,
                  p.resumed ? "  (resumed)" : "");
    if (tty_) {
      constexpr int width = 30;
      std::string bar(static_cast<std::size_t>(fraction * width), '#');
      bar.resize(width, '.');
      std::fprintf(stderr, "\r[%s] %s", bar.c_str(), line);
    } else {
      std::fprintf(stderr, "rebuild: %s\n", line);
    }
    std::fflush(stderr);
    printed_ = true;
  }

  void finish() {
    if (tty_ && printed_) std::fprintf(stderr, "\n");
  }

 private:
  bool tty_;
  bool printed_ = false;
  std::chrono::steady_clock::time_point last_{};
};

/// A saga step given up: its command is sent again, as it was, to its
/// aggregate (through a node of this process), with a command id of its
/// own. What it means is the operator's call: a capture after a completed
/// order settles it; a reservation after the saga compensated would hold
/// stock nobody releases.
int replay_saga_step(const config& cfg, postgres::view_store& vs,
                     const postgres::dead_letter& letter) {
  auto payload =
      decode_command<bookstore::bookstore_aggregates>(letter.event.type, letter.event.data);
  if (!payload) {
    std::cerr << "troupe dead-letters replay: cannot rebuild the command of dead letter "
              << letter.id << ": " << payload.error() << "\n";
    return 2;
  }
  auto store = make_event_store(cfg);
  node n(cfg, store);
  n.register_aggregates<bookstore::bookstore_aggregates>();
  n.start();
  command_envelope env;
  env.stream_id = letter.event.stream_id;
  env.payload = std::move(*payload);
  env.command_id = letter.event.event_id + "/replay";
  env.correlation_id = letter.event.metadata.correlation_id;
  auto result = n.submit_and_wait(std::move(env));
  n.stop();
  if (!result.ok()) {
    std::cerr << "troupe dead-letters replay: " << letter.event.stream_id << " answered "
              << to_string(result.status) << " " << result.reason.code << " "
              << result.reason.message << "; the dead letter stays\n";
    return 1;
  }
  vs.mark_replayed(letter.id);
  std::printf("dead letter %lld replayed: %s accepted the command (%zu events)\n",
              static_cast<long long>(letter.id), letter.event.stream_id.c_str(),
              result.event_count);
  return 0;
}

}  // namespace

projector_options projector_settings(const config& cfg) {
  projector_options o;
  o.postgres_url = cfg.string("postgres.url");
  o.subscription.nats_url = cfg.string("nats.url");
  o.subscription.stream = cfg.string("publisher.stream");
  o.subscription.max_in_flight =
      2 * static_cast<std::size_t>(cfg.integer("projections.batch_size"));  // one ahead
  o.subscription.ack_wait = std::chrono::milliseconds{cfg.integer("projections.ack_wait_ms")};
  o.consumer_prefix = cfg.string("projections.consumer_prefix");
  o.max_attempts = static_cast<int>(cfg.integer("projections.max_attempts"));
  o.retry_backoff = std::chrono::milliseconds{cfg.integer("projections.retry_backoff_ms")};
  o.log = logger("projector");
  return o;
}

int projection_command(const config& cfg, const std::string& action, const std::string& name,
                       std::size_t batch_size) {
  setup_logging(cfg.string("log.level"), cfg.string("log.format"));
  if (cfg.string("store.kind") != "postgres") {
    std::cerr << "troupe projection: projections live in PostgreSQL (store.kind is "
              << cfg.string("store.kind") << ")\n";
    return 2;
  }
  const auto url = cfg.string("postgres.url");
  auto def = find_projection(name);
  if (action == "rebuild" && !def) {
    std::cerr << "troupe projection rebuild: no projection '" << name
              << "'; there are: " << projection_names() << "\n";
    return 2;
  }
  try {
    postgres::migrate(url);
    if (action == "list") {
      postgres::view_store vs(url);
      auto head = vs.scalar("SELECT coalesce(max(global_position), 0) FROM troupe_events");
      std::printf("%-18s %8s %12s %12s %s\n", "projection", "version", "position", "behind",
                  "dead letters");
      for (const auto& def : bookstore::bookstore_projections()) {
        auto at = vs.checkpoint(projector::checkpoint_name(def.name)).value;
        auto parked = vs.dead_letters(projector::checkpoint_name(def.name), 100000).size();
        auto built = vs.built_version(def.name);
        std::printf("%-18s %8s %12s %12s %zu\n", def.name.c_str(),
                    built == 0             ? "-"
                    : built == def.version ? std::to_string(built).c_str()
                                           : (std::to_string(built) + " (code " +
                                              std::to_string(def.version) + ": rebuild)")
                                                 .c_str(),
                    thousands(at).c_str(), thousands(head - at).c_str(), parked);
      }
      return 0;
    }
    // rebuild
    auto store = make_event_store(cfg);
    progress_printer printer;
    rebuild_options o;
    o.postgres_url = url;
    o.batch_size = batch_size;
    o.log = logger("rebuild");
    o.progress = [&](const rebuild_progress& p) { printer.update(p); };
    auto started = std::chrono::steady_clock::now();
    auto report = rebuild_projection(*def, *store, o);
    printer.finish();
    auto seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::printf("rebuilt %s%s: %s events in %.1f s, swapped in at position %s\n", def->name.c_str(),
                report.resumed ? " (resumed)" : "", thousands(report.events).c_str(), seconds,
                thousands(report.position).c_str());
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "troupe projection " << action << ": " << e.what() << "\n";
    return 1;
  }
}

int dead_letters_command(const config& cfg, const std::string& action, std::int64_t id,
                         const std::string& consumer, std::size_t limit) {
  setup_logging(cfg.string("log.level"), cfg.string("log.format"));
  const auto url = cfg.string("postgres.url");
  try {
    postgres::migrate(url);
    postgres::view_store vs(url);
    if (action == "list") {
      auto letters = vs.dead_letters(consumer, limit);
      if (letters.empty()) {
        std::printf("no dead letters%s\n", consumer.empty() ? "" : (" for " + consumer).c_str());
        return 0;
      }
      for (const auto& d : letters)
        std::printf("%lld  %s  %s  %s v%lld at %lld  attempts %d  parked %s%s\n  error: %s\n",
                    static_cast<long long>(d.id), d.consumer.c_str(), d.event.type.c_str(),
                    d.event.stream_id.c_str(), static_cast<long long>(d.event.version.value),
                    static_cast<long long>(d.event.position.value), d.attempts, d.parked_at.c_str(),
                    d.replayed_at.empty() ? "" : ("  replayed " + d.replayed_at).c_str(),
                    d.error.c_str());
      return 0;
    }
    // replay
    auto letter = vs.dead_letter_by_id(id);
    if (!letter) {
      std::cerr << "troupe dead-letters replay: no dead letter " << id << "\n";
      return 2;
    }
    if (!letter->replayed_at.empty()) {
      std::cerr << "troupe dead-letters replay: dead letter " << id << " was replayed at "
                << letter->replayed_at << "\n";
      return 1;
    }
    if (letter->consumer.starts_with("saga:")) return replay_saga_step(cfg, vs, *letter);
    const std::string prefix = "projection:";
    if (!letter->consumer.starts_with(prefix)) {
      std::cerr << "troupe dead-letters replay: dead letter " << id << " belongs to "
                << letter->consumer << ", which this build cannot replay\n";
      return 2;
    }
    auto def = find_projection(letter->consumer.substr(prefix.size()));
    if (!def) {
      std::cerr << "troupe dead-letters replay: projection of " << letter->consumer
                << " is not in this build\n";
      return 2;
    }
    replay_dead_letter(*def, url, id);
    std::printf("dead letter %lld replayed into %s\n", static_cast<long long>(id),
                def->name.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "troupe dead-letters " << action << ": " << e.what() << "\n";
    return 1;
  }
}

}  // namespace troupe::cli
