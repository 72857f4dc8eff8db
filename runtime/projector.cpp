#include "runtime/projector.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "persistence/postgres/pg_connection.hpp"
#include "persistence/postgres/view_store.hpp"
#include "persistence/sync.hpp"

namespace troupe {

namespace {

using postgres::pg_error;
using postgres::view_store;

/// SQLSTATE classes 22 (data exception) and 23 (integrity constraint): the
/// rows are wrong, not the database - retrying the same rows cannot help.
bool is_data_error(const pg_error& e) {
  return e.sqlstate.starts_with("22") || e.sqlstate.starts_with("23");
}

struct store_unavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Reads the log after `after` up to and including `up_to`, in order, but
/// at most `limit` events; false when it stopped at the limit.
bool read_range(event_store& store, global_position after, global_position up_to,
                std::vector<recorded_event>& out, std::size_t limit) {
  while (after < up_to) {
    if (limit == 0) return false;
    auto read = sync::read_all(store, after, std::min<std::size_t>(1000, limit));
    if (read.error != store_errc::ok)
      throw store_unavailable("cannot read the event log: " + read.message);
    if (read.events.empty())
      throw store_unavailable("the event log does not show position " +
                              std::to_string(up_to.value) + " yet");
    for (auto& e : read.events) {
      if (e.position > up_to) return true;
      after = e.position;
      out.push_back(std::move(e));
      --limit;
    }
  }
  return true;
}

/// A batch's events for one projection, in log order: pointers into the
/// delivered batch (which outlives the transaction) or into `read`, the
/// gaps filled from the log. Copying every delivered event once per member
/// projection was ~2 % of the node under checkout load.
struct collected {
  std::vector<const recorded_event*> events;
  std::deque<recorded_event> read;  // addresses stay put as it grows, and when moved

  bool empty() const { return events.empty(); }
  const recorded_event& back() const { return *events.back(); }
};

/// Copies for the options' callbacks (tests and benchmarks), only when set.
std::vector<recorded_event> copies(std::span<const recorded_event* const> events) {
  std::vector<recorded_event> out;
  out.reserve(events.size());
  for (const auto* e : events) out.push_back(*e);
  return out;
}

void check_name(std::string_view projection) {
  bool ok = !projection.empty() && projection.size() <= 40;
  for (char c : projection)
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
  if (!ok)
    throw std::invalid_argument("projection name '" + std::string(projection) +
                                "' must be 1..40 characters of a-z, 0-9 and _");
}

std::string shadow_schema(std::string_view projection) {
  return "troupe_rebuild_" + std::string(projection);
}

std::string rebuild_checkpoint(const projection_definition& def) {
  return projector::checkpoint_name(def.name) + ":rebuild:v" + std::to_string(def.version);
}

}  // namespace

std::string projector::checkpoint_name(std::string_view projection) {
  return "projection:" + std::string(projection);
}

struct projector::impl {
  projection_definition def;
  std::shared_ptr<event_store> store;
  projector_options options;
  std::shared_ptr<spdlog::logger> log;
  std::string checkpoint;
  std::mutex sub_mutex;  // guards `sub` and `feed` (status() vs start/stop)
  std::unique_ptr<subscription> sub;
  // Fed by a projector_group instead of a consumer of its own: the group's
  // subscription, owned by the group (which clears this before it goes).
  subscription* feed = nullptr;
  std::unique_ptr<view_store> views;
  std::atomic<bool> stopping{false};
  std::atomic<bool> crashed{false};

  std::atomic<std::int64_t> position{0}, events_applied{0}, batches{0}, duplicates{0},
      gap_filled{0}, dead_letters{0}, lag_micros{0};
  mutable std::mutex mutex;  // guards stalled; with reached, wakes waiters
  mutable std::condition_variable reached;
  std::string stalled;

  view::view_changes batch_changes;
  view::view_changes event_changes;

  // Standby: a thread following the checkpoint of the active node.
  std::thread follower;
  std::mutex follow_mutex;
  std::condition_variable follow_wake;
  bool following = false;

  void stop_following() {
    {
      std::lock_guard lock{follow_mutex};
      following = false;
    }
    follow_wake.notify_all();
    if (follower.joinable()) follower.join();
  }

  void publish_position(std::int64_t p) {
    {
      std::lock_guard lock(mutex);
      position.store(p);
    }
    reached.notify_all();
  }

  impl(projection_definition d, std::shared_ptr<event_store> s, projector_options o)
      : def(std::move(d)),
        store(std::move(s)),
        options(std::move(o)),
        batch_changes(def.tables),
        event_changes(def.tables) {}

  void set_stalled(std::string why) {
    std::lock_guard lock(mutex);
    stalled = std::move(why);
  }

  std::chrono::milliseconds backoff(int attempt) const {
    auto delay = options.retry_backoff;
    for (int i = 1; i < attempt && delay < options.max_backoff; ++i) delay *= 2;
    return std::min(delay, options.max_backoff);
  }

  view_store& connected() {
    if (!views) views = std::make_unique<view_store>(options.postgres_url);
    return *views;
  }

  /// The events of a batch not yet applied after `from`, in log order, with
  /// gaps filled from the store. A gap is read at most `max_gap` events at
  /// a time (a member far behind its group's consumer, say): then the rest
  /// waits, `caught_up` is false, and the caller commits and collects again.
  collected collect(std::span<const delivery> batch, global_position from, bool& caught_up) {
    const std::size_t max_gap = std::max<std::size_t>(2, 2 * options.subscription.max_in_flight);
    caught_up = true;
    collected todo;
    auto cursor = from;
    for (const auto& d : batch) {
      if (!d.malformed.empty()) continue;
      const auto& e = d.event;
      if (e.position <= cursor) {
        duplicates.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      if (d.previous > cursor) {
        std::vector<recorded_event> gap;
        bool whole = read_range(*store, cursor, d.previous, gap,
                                max_gap > todo.events.size() ? max_gap - todo.events.size() : 0);
        gap_filled.fetch_add(static_cast<std::int64_t>(gap.size()), std::memory_order_relaxed);
        for (auto& g : gap) {
          todo.read.push_back(std::move(g));
          todo.events.push_back(&todo.read.back());
        }
        if (!whole) {
          caught_up = false;
          return todo;
        }
      }
      todo.events.push_back(&e);
      cursor = e.position;
    }
    return todo;
  }

  /// Folds one event into batch_changes; after max_attempts failures it is
  /// added to `parked` instead. Handlers are pure functions, so a failure
  /// is deterministic: the attempts run back to back, without the backoff
  /// that only helps against a flaky database (and without holding the
  /// transaction open for seconds per poison event).
  void fold(const recorded_event& e, std::vector<postgres::dead_letter>& parked) {
    for (int attempt = 1;; ++attempt) {
      event_changes.clear();
      try {
        def.apply(e, event_changes);
        batch_changes.merge(std::move(event_changes));
        return;
      } catch (const std::exception& x) {
        if (attempt >= options.max_attempts) {
          parked.push_back({0, checkpoint, e, x.what(), attempt, {}, {}});
          return;
        }
      }
    }
  }

  void committed(std::span<const recorded_event* const> applied, global_position at,
                 std::size_t parked) {
    events_applied.fetch_add(static_cast<std::int64_t>(applied.size()), std::memory_order_relaxed);
    batches.fetch_add(1, std::memory_order_relaxed);
    dead_letters.fetch_add(static_cast<std::int64_t>(parked), std::memory_order_relaxed);
    if (!applied.empty()) {
      auto age = clock_type::now() - applied.back()->recorded_at;
      lag_micros.store(std::chrono::duration_cast<std::chrono::microseconds>(age).count());
    }
    {
      std::lock_guard lock(mutex);
      position.store(at.value);
      stalled.clear();
    }
    reached.notify_all();
    if (options.on_commit) options.on_commit(copies(applied));
  }

  /// One transaction for the whole batch.
  /// One transaction; false when a long gap left part of the batch for
  /// the next one (collect()).
  bool apply_batch(std::span<const delivery> batch) {
    auto& vs = connected();
    auto at = vs.begin(checkpoint);
    bool caught_up = true;
    auto todo = collect(batch, at, caught_up);
    if (todo.empty()) {
      vs.rollback();
      if (at.value > position.load()) committed({}, at, 0);
      return true;
    }
    batch_changes.clear();
    std::vector<postgres::dead_letter> parked;
    for (const auto* e : todo.events) fold(*e, parked);
    vs.write(batch_changes);
    for (const auto& p : parked) vs.park(p);
    if (options.crash_before_commit && options.crash_before_commit(copies(todo.events))) {
      log->warn("projector {}: simulated crash before commit", def.name);
      views.reset();  // closes the connection: the server rolls back
      crashed = true;
      throw abandon_subscription();
    }
    vs.commit(checkpoint, todo.back().position);
    for (const auto& p : parked)
      log->error("projector {}: event {} ({} at {}) parked as a dead letter: {}", def.name,
                 p.event.event_id, p.event.type, p.event.position.value, p.error);
    committed(todo.events, todo.back().position, parked.size());
    return caught_up;
  }

  /// In a transaction of the group's (projector_group): folds this member's
  /// part of `batch` after `from`, its checkpoint locked there, and writes
  /// it on `vs`. Returns what it applied; what it parked goes in `parked`.
  collected fold_shared(view_store& vs, std::span<const delivery> batch, global_position from,
                        bool& caught_up, std::vector<postgres::dead_letter>& parked) {
    auto todo = collect(batch, from, caught_up);
    if (todo.empty()) return todo;
    batch_changes.clear();
    for (const auto* e : todo.events) fold(*e, parked);
    vs.write(batch_changes);
    for (const auto& p : parked) vs.park(p);
    return todo;
  }

  /// After a data error: one event per transaction, so the bad one is found
  /// and parked while its neighbours apply.
  bool apply_one_by_one(std::span<const delivery> batch) {
    auto& vs = connected();
    bool caught_up = true;
    auto todo = collect(batch, vs.checkpoint(checkpoint), caught_up);
    for (const auto* next : todo.events) {
      const auto& e = *next;
      for (int attempt = 1;; ++attempt) {
        auto& conn = connected();
        try {
          auto at = conn.begin(checkpoint);
          if (e.position <= at) {
            conn.rollback();
            break;
          }
          batch_changes.clear();
          std::vector<postgres::dead_letter> parked;
          fold(e, parked);
          if (attempt >= options.max_attempts && parked.empty())
            parked.push_back({0, checkpoint, e, stalled, attempt, {}, {}});
          if (parked.empty()) conn.write(batch_changes);
          for (const auto& p : parked) conn.park(p);
          conn.commit(checkpoint, e.position);
          if (!parked.empty())
            log->error("projector {}: event {} ({}) parked as a dead letter: {}", def.name,
                       e.event_id, e.type, parked.front().error);
          committed(std::span(&next, 1), e.position, parked.size());
          break;
        } catch (const pg_error& x) {
          conn.rollback();
          if (x.connection_lost) views.reset();
          if (!is_data_error(x)) throw;  // infrastructure: the caller retries
          set_stalled("event " + e.event_id + " rejected by PostgreSQL (attempt " +
                      std::to_string(attempt) + "): " + x.what());
          std::this_thread::sleep_for(backoff(attempt));
        }
      }
    }
    return caught_up;
  }

  void handle(std::span<const delivery> batch, std::span<verdict>) {
    bool isolate = false;
    for (int failures = 0;; ++failures) {
      if (stopping) throw abandon_subscription();  // redelivered to whoever runs next
      try {
        // A member far behind catches up in bounded transactions.
        bool done = false;
        while (!done) {
          if (stopping) throw abandon_subscription();
          done = isolate ? apply_one_by_one(batch) : apply_batch(batch);
        }
        return;
      } catch (const pg_error& x) {
        if (views) views->rollback();
        if (x.connection_lost) views.reset();
        if (is_data_error(x) && !isolate) {
          log->warn("projector {}: a row was rejected ({}); applying one event at a time", def.name,
                    x.what());
          isolate = true;
          continue;
        }
        set_stalled(std::string("PostgreSQL: ") + x.what());
      } catch (const store_unavailable& x) {
        if (views) views->rollback();
        set_stalled(x.what());
      } catch (const abandon_subscription&) {
        throw;
      } catch (const std::exception& x) {
        // Anything else (out of memory, a callback's exception): drop the
        // connection so no half-written transaction survives, and retry.
        views.reset();
        set_stalled(std::string("unexpected: ") + x.what());
      }
      log->warn("projector {}: retrying a batch: {}", def.name, status_stalled());
      std::this_thread::sleep_for(backoff(failures + 1));
    }
  }

  /// Parks a message whose headers could not be read (it has no place in
  /// the log's order); false when PostgreSQL could not take it.
  bool park_malformed(const delivery& d, const std::string& error) {
    try {
      auto& vs = connected();
      vs.exec("BEGIN");
      vs.park({0, checkpoint, d.event, error, d.attempt, {}, {}});
      vs.exec("COMMIT");
      return true;
    } catch (const pg_error&) {
      views.reset();
      return false;
    }
  }

  /// Before consuming: the view's tables exist and the position is the
  /// committed checkpoint.
  void prepare() {
    stop_following();
    stopping = false;
    crashed = false;
    try {
      auto& vs = connected();
      int built = vs.ensure(def.name, def.version, def.tables, def.sql_views);
      if (built != def.version)
        log->warn(
            "projection {} was built by version {} of its code, this is version {}: run "
            "`troupe projection rebuild {}`",
            def.name, built, def.version, def.name);
      position.store(vs.checkpoint(checkpoint).value);
    } catch (const pg_error& e) {
      views.reset();
      throw std::runtime_error("projection " + def.name + ": " + e.what());
    }
  }

  std::string status_stalled() const {
    std::lock_guard lock(mutex);
    return stalled;
  }
};

projector::projector(projection_definition definition, std::shared_ptr<event_store> store,
                     projector_options options)
    : impl_(new impl(std::move(definition), std::move(store), std::move(options))) {
  auto& im = *impl_;
  im.log = im.options.log ? im.options.log : spdlog::default_logger();
  im.checkpoint = checkpoint_name(im.def.name);
  check_name(im.def.name);
  if (im.options.max_attempts < 1) throw std::invalid_argument("max_attempts must be >= 1");
}

projector::~projector() { stop(); }

void projector::start() {
  auto& im = *impl_;
  {
    std::lock_guard lock{im.sub_mutex};
    if ((im.sub && im.sub->running()) || im.feed != nullptr) return;
  }
  im.prepare();
  auto sub_options = im.options.subscription;
  sub_options.durable = im.options.consumer_prefix + im.def.name;
  sub_options.filter_subject.clear();  // the previous-position chain needs every event
  sub_options.cumulative_acks = true;  // applied in order: one ack per batch
  sub_options.log = im.log;
  auto sub = std::make_unique<subscription>(
      sub_options,
      [&im](std::span<const delivery> batch, std::span<verdict> verdicts) {
        im.handle(batch, verdicts);
      },
      [&im](const delivery& d, const std::string& error) { return im.park_malformed(d, error); });
  sub->start();
  {
    std::lock_guard lock{im.sub_mutex};
    im.sub = std::move(sub);
  }
  im.log->info("projector {} runs from position {}", im.def.name, im.position.load());
}

void projector::follow(std::chrono::milliseconds interval) {
  auto& im = *impl_;
  stop();
  {
    std::lock_guard lock{im.follow_mutex};
    im.following = true;
  }
  im.follower = std::thread([&im, interval] {
    std::unique_ptr<view_store> vs;
    std::unique_lock lock{im.follow_mutex};
    while (im.following) {
      lock.unlock();
      try {
        if (!vs) vs = std::make_unique<view_store>(im.options.postgres_url);
        auto p = vs->checkpoint(im.checkpoint).value;
        if (p != im.position.load()) im.publish_position(p);
      } catch (const std::exception& e) {
        vs.reset();  // reconnect on the next round
        im.log->debug("projection {} standby: {}", im.def.name, e.what());
      }
      lock.lock();
      im.follow_wake.wait_for(lock, interval, [&] { return !im.following; });
    }
  });
}

void projector::stop() {
  auto& im = *impl_;
  {
    std::lock_guard lock{im.sub_mutex};
    if (im.feed != nullptr) {  // its group's thread is using it
      im.log->error("projector {} is fed by a projector group: stop the group", im.def.name);
      return;
    }
  }
  im.stop_following();
  im.stopping = true;
  std::unique_ptr<subscription> sub;
  {
    std::lock_guard lock{im.sub_mutex};
    sub = std::move(im.sub);
  }
  if (sub) sub->stop();  // outside the lock: it waits for the batch in hand
  sub.reset();
  im.views.reset();
}

projection_status projector::status() const {
  auto& im = *impl_;
  projection_status s;
  s.name = im.def.name;
  std::lock_guard sub_lock{im.sub_mutex};  // start/stop may run on another thread
  s.running = ((im.sub && im.sub->running()) || (im.feed && im.feed->running())) && !im.crashed;
  {
    std::lock_guard lock{im.follow_mutex};
    s.standby = im.following;
  }
  s.position = im.position.load();
  s.events_applied = im.events_applied.load();
  s.batches = im.batches.load();
  s.duplicates = im.duplicates.load();
  s.gap_filled = im.gap_filled.load();
  s.dead_letters = im.dead_letters.load();
  if (auto* fed_by = im.sub ? im.sub.get() : im.feed) {
    auto sub = fed_by->stats();
    s.consumer_lag = sub.consumer_lag;
    s.pending_acks = sub.in_flight;
  }
  s.lag_seconds = static_cast<double>(im.lag_micros.load()) / 1e6;
  s.stalled = im.status_stalled();
  return s;
}

const projection_definition& projector::definition() const { return impl_->def; }

// ---- projector_group ----------------------------------------------------------

struct projector_group::impl {
  std::vector<projector*> members;
  projector_options options;
  std::unique_ptr<subscription> sub;
  // A malformed message some members parked and another could not: when it
  // comes back, only the others park it (no dead letter twice).
  std::map<std::uint64_t, std::set<std::size_t>> parked_by;
  std::unique_ptr<view_store> views;  // the shared transaction's connection

  /// Every member's part of a batch in one transaction. False when the
  /// members must finish it one by one: an error (their own path retries,
  /// isolates a refused row and parks it) or a member far behind (its gap
  /// is filled in bounded transactions).
  bool apply_together(std::span<const delivery> batch) {
    std::vector<std::string> names;
    for (auto* m : members) {
      if (m->impl_->stopping) throw abandon_subscription();  // redelivered to the next run
      names.push_back(m->impl_->checkpoint);
    }
    try {
      if (!views) views = std::make_unique<view_store>(options.postgres_url);
      auto from = views->begin(names);
      std::vector<collected> applied(members.size());
      std::vector<std::vector<postgres::dead_letter>> parked(members.size());
      std::vector<std::pair<std::string, global_position>> moved;
      bool all_caught_up = true;
      for (std::size_t i = 0; i < members.size(); ++i) {
        bool caught_up = true;
        applied[i] = members[i]->impl_->fold_shared(*views, batch, from[i], caught_up, parked[i]);
        all_caught_up = all_caught_up && caught_up;
        if (!applied[i].empty()) moved.emplace_back(names[i], applied[i].back().position);
      }
      for (std::size_t i = 0; i < members.size(); ++i) {
        auto& m = *members[i]->impl_;
        if (!applied[i].empty() && m.options.crash_before_commit &&
            m.options.crash_before_commit(copies(applied[i].events))) {
          m.log->warn("projector {}: simulated crash before the group's commit", m.def.name);
          views.reset();  // closes the connection: the server rolls back
          m.crashed = true;
          throw abandon_subscription();
        }
      }
      if (moved.empty())
        views->rollback();
      else
        views->commit(moved);
      for (std::size_t i = 0; i < members.size(); ++i) {
        auto& m = *members[i]->impl_;
        for (const auto& p : parked[i])
          m.log->error("projector {}: event {} ({} at {}) parked as a dead letter: {}", m.def.name,
                       p.event.event_id, p.event.type, p.event.position.value, p.error);
        if (!applied[i].empty())
          m.committed(applied[i].events, applied[i].back().position, parked[i].size());
        else if (from[i].value > m.position.load())
          m.committed({}, from[i], 0);
      }
      return all_caught_up;
    } catch (const abandon_subscription&) {
      throw;
    } catch (const pg_error& x) {
      if (views) views->rollback();
      if (x.connection_lost) views.reset();
      options.log->warn("projectors sharing a consumer: a batch goes member by member ({})",
                        x.what());
    } catch (const std::exception& x) {
      views.reset();  // no half-written transaction survives
      options.log->warn("projectors sharing a consumer: a batch goes member by member ({})",
                        x.what());
    }
    return false;
  }
};

projector_group::projector_group(std::vector<projector*> members, projector_options options)
    : impl_(new impl{std::move(members), std::move(options), nullptr, {}, nullptr}) {
  if (!impl_->options.log) impl_->options.log = spdlog::default_logger();
}

projector_group::~projector_group() { stop(); }

std::string projector_group::consumer_name(std::string_view consumer_prefix) {
  // '-' never occurs in a projection's name, so this is no projector's own.
  return std::string(consumer_prefix) + "shared-feed";
}

void projector_group::start() {
  auto& g = *impl_;
  if (g.sub) return;
  for (auto* m : g.members) m->impl_->prepare();
  auto sub_options = g.options.subscription;
  sub_options.durable = consumer_name(g.options.consumer_prefix);
  sub_options.filter_subject.clear();
  sub_options.cumulative_acks = true;
  sub_options.log = g.options.log;
  auto sub = std::make_unique<subscription>(
      sub_options,
      [&g](std::span<const delivery> batch, std::span<verdict> verdicts) {
        if (g.options.shared_transaction && g.apply_together(batch)) return;
        // Each member in a transaction of its own; one that has the batch
        // already (a redelivery, or the shared transaction) skips it.
        for (auto* m : g.members) m->impl_->handle(batch, verdicts);
      },
      [&g](const delivery& d, const std::string& error) {
        auto& done = g.parked_by[d.stream_sequence];
        for (std::size_t i = 0; i < g.members.size(); ++i)
          if (!done.contains(i) && g.members[i]->impl_->park_malformed(d, error)) done.insert(i);
        bool all = done.size() == g.members.size();
        if (all) g.parked_by.erase(d.stream_sequence);
        return all;
      });
  sub->start();
  for (auto* m : g.members) {
    std::lock_guard lock{m->impl_->sub_mutex};
    m->impl_->feed = sub.get();
  }
  g.sub = std::move(sub);
  std::string names;
  for (auto* m : g.members)
    names += (names.empty() ? "" : ", ") + m->definition().name + " from " +
             std::to_string(m->impl_->position.load());
  g.options.log->info("projectors share consumer {}: {}", sub_options.durable, names);
}

void projector_group::stop() {
  auto& g = *impl_;
  if (!g.sub) return;
  for (auto* m : g.members) m->impl_->stopping = true;  // ends a member's retry loop
  g.sub->stop();                                        // waits for the batch in hand
  for (auto* m : g.members) {
    {
      std::lock_guard lock{m->impl_->sub_mutex};
      m->impl_->feed = nullptr;
    }
    m->impl_->views.reset();
  }
  g.views.reset();
  g.sub.reset();
}

bool projector::wait_until(global_position target, std::chrono::milliseconds timeout) const {
  auto& im = *impl_;
  std::unique_lock lock(im.mutex);
  return im.reached.wait_for(lock, timeout, [&] { return im.position.load() >= target.value; });
}

// ---- rebuilds -------------------------------------------------------------------

rebuild_report rebuild_projection(const projection_definition& def, event_store& store,
                                  const rebuild_options& options) {
  auto log = options.log ? options.log : spdlog::default_logger();
  if (options.batch_size == 0 || options.batch_size > 100000)
    throw std::invalid_argument("rebuild batch size must be 1..100000");
  check_name(def.name);
  rebuild_report report;
  try {
    view_store vs(options.postgres_url);
    const auto shadow = shadow_schema(def.name);
    const auto rebuild_cp = rebuild_checkpoint(def);
    const auto live_cp = projector::checkpoint_name(def.name);
    vs.ensure(def.name, def.version, def.tables, def.sql_views);  // live tables exist

    // Resume only a rebuild of this version whose shadow tables are there.
    bool resumable =
        vs.scalar("SELECT count(*) FROM troupe_checkpoints WHERE name = " +
                  vs.connection().quote(rebuild_cp)) > 0 &&
        vs.scalar("SELECT count(*) FROM information_schema.schemata WHERE schema_name = " +
                  vs.connection().quote(shadow)) > 0;
    if (!resumable) {
      vs.exec("DROP SCHEMA IF EXISTS \"" + shadow + "\" CASCADE");
      vs.exec("DELETE FROM troupe_checkpoints WHERE name LIKE " +
              vs.connection().quote(projector::checkpoint_name(def.name) + ":rebuild:%"));
    }
    vs.ensure(def.name, def.version, def.tables, def.sql_views, shadow);
    report.resumed = resumable;

    view::view_changes changes(def.tables), one(def.tables);
    std::int64_t skipped = 0;
    auto fold_into = [&](const std::vector<recorded_event>& events) {
      changes.clear();
      for (const auto& e : events) {
        one.clear();
        try {
          def.apply(e, one);
          changes.merge(one);
        } catch (const std::exception& x) {
          // The live projector parked it; the rebuild skips it the same way.
          if (++skipped <= 5)
            log->warn("rebuild {}: event {} ({} at {}) skipped: {}", def.name, e.event_id, e.type,
                      e.position.value, x.what());
        }
      }
    };

    rebuild_progress progress;
    progress.resumed = resumable;
    auto started = std::chrono::steady_clock::now();
    const std::string head_sql = "SELECT coalesce(max(global_position), 0) FROM troupe_events";
    for (;;) {
      auto at = vs.begin(rebuild_cp);
      auto read = sync::read_all(store, at, options.batch_size);
      if (read.error != store_errc::ok) {
        vs.rollback();
        throw std::runtime_error("cannot read the event log: " + read.message);
      }
      if (read.events.empty()) {
        vs.rollback();
        break;
      }
      fold_into(read.events);
      vs.write(changes, shadow);
      vs.commit(rebuild_cp, read.events.back().position);
      progress.events_done += static_cast<std::int64_t>(read.events.size());
      report.events = progress.events_done;
      progress.position = read.events.back().position.value;
      progress.head = vs.scalar(head_sql);
      double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      progress.events_per_second =
          seconds > 0 ? static_cast<double>(progress.events_done) / seconds : 0;
      // Positions are nearly dense, so the distance to the head estimates
      // the events left.
      auto left = std::max<std::int64_t>(0, progress.head - progress.position);
      progress.eta_seconds = progress.events_per_second > 0
                                 ? static_cast<double>(left) / progress.events_per_second
                                 : 0;
      if (options.progress) options.progress(progress);
      if (options.interrupt && options.interrupt(progress)) {
        log->info("rebuild {}: interrupted at position {}", def.name, progress.position);
        return report;
      }
      if (read.events.size() < options.batch_size) break;
    }

    // The swap: lock the live checkpoint (a live projector's batch finishes
    // first, its next one waits), bring the shadow to at least the live
    // position, then trade the tables in one transaction.
    auto live = vs.begin(live_cp);
    auto rebuilt = vs.checkpoint(rebuild_cp);
    std::vector<recorded_event> tail;
    if (rebuilt < live) {
      read_range(store, rebuilt, live, tail, SIZE_MAX);
      fold_into(tail);
      vs.write(changes, shadow);
      rebuilt = live;
    }
    std::string sql;
    for (const auto& t : def.tables)
      sql += "DROP TABLE IF EXISTS " + postgres::qualified(view_store::live_schema, t.name) +
             " CASCADE; ALTER TABLE " + postgres::qualified(shadow, t.name) +
             " SET SCHEMA \"troupe_views\";";
    sql += "DROP SCHEMA \"" + shadow + "\" CASCADE;";
    sql += "DELETE FROM troupe_checkpoints WHERE name = " + vs.connection().quote(rebuild_cp) + ";";
    sql += "UPDATE troupe_projections SET version = " + std::to_string(def.version) +
           ", rebuilt_at = now() WHERE name = " + vs.connection().quote(def.name) + ";";
    // Index names move with their tables; SQL views are created again over
    // the new tables (they were dropped with the old ones).
    sql += vs.ddl(def.tables, def.sql_views, view_store::live_schema);
    vs.exec(sql);
    vs.commit(live_cp, std::max(live, rebuilt));
    if (skipped > 0)
      log->warn(
          "rebuild {}: {} events could not be applied and were skipped, as the live "
          "projector parks them (see `troupe dead-letters list`)",
          def.name, skipped);
    report.swapped = true;
    report.position = std::max(live, rebuilt).value;
    log->info("rebuild {}: swapped in at position {} ({} events this run)", def.name,
              report.position, report.events);
  } catch (const pg_error& e) {
    throw std::runtime_error("rebuild of " + def.name + " failed: " + e.what());
  }
  return report;
}

void replay_dead_letter(const projection_definition& def, const std::string& postgres_url,
                        std::int64_t id) {
  try {
    view_store vs(postgres_url);
    auto letter = vs.dead_letter_by_id(id);
    if (!letter) throw std::runtime_error("no dead letter " + std::to_string(id));
    auto cp = projector::checkpoint_name(def.name);
    if (letter->consumer != cp)
      throw std::runtime_error("dead letter " + std::to_string(id) + " belongs to " +
                               letter->consumer + ", not to projection " + def.name);
    if (letter->event.position.value == 0)
      throw std::runtime_error("dead letter " + std::to_string(id) +
                               " is a message without an event (" + letter->error +
                               "); there is nothing to replay");
    if (!letter->replayed_at.empty())
      throw std::runtime_error("dead letter " + std::to_string(id) + " was replayed at " +
                               letter->replayed_at);
    view::view_changes changes(def.tables);
    def.apply(letter->event, changes);  // throws with the reason when still poison
    auto at = vs.begin(cp);             // serialises with the live projector
    vs.write(changes);
    vs.mark_replayed(id);
    vs.commit(cp, at);
  } catch (const pg_error& e) {
    throw std::runtime_error("replay of dead letter " + std::to_string(id) +
                             " failed: " + e.what());
  }
}

}  // namespace troupe
