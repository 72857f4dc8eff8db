#pragma once
// The saga host: runs one saga definition's instances on a node.
//
//   JetStream events --subscription (explicit acks)--> host loop thread
//     correlate -> instance (loaded on first use by replaying its stream)
//     each input (event, step answer, clock tick) is appended to the
//     instance's own stream `<saga>-<correlation>` BEFORE it is applied
//     (write-ahead); then the machine runs and its sends go to the node
//     (node::submit, deterministic command ids); answers come back as inputs.
//     Inputs that queue while an instance's append is in flight go in its
//     next append as one record; an accepted answer that leads to nothing
//     outside the instance (one of several parallel steps answered) is
//     applied at once and stored with the next input that does (defer()).
//   registry (troupe_sagas) and dead letters are written in batches; an
//   event is acknowledged only after its input is stored and the instance
//   registered, so a crash never loses an instance.
//
// Each instance handles one input at a time (its inbox is its mailbox),
// like an aggregate actor; different instances interleave on the host's
// thread, their store writes and commands in flight at once. After a
// restart the host loads every open instance from the registry, replays it
// (same state, same steps in flight), sends the in-flight steps again (the
// aggregates recognise the command ids) and arms its timers; a timeout that
// fell due while the node was down fires once, at once. Finished instances,
// and open ones waiting only for a later event, leave memory; the latter
// come back (replayed) when that event arrives.

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "persistence/event_store.hpp"
#include "persistence/postgres/saga_registry.hpp"
#include "runtime/node.hpp"
#include "runtime/publisher.hpp"
#include "runtime/saga.hpp"
#include "runtime/shard_map.hpp"
#include "runtime/subscription.hpp"
#include "runtime/uuid.hpp"

namespace troupe {

struct saga_host_options {
  std::string postgres_url;           // registry and dead letters
  subscription_options subscription;  // `durable` is derived from the saga's name
  std::string consumer_prefix = "troupe-saga-";
  /// The publisher's subject prefix. When set and the saga names the one
  /// stream category its events come from (`S::source_category`), its
  /// consumer takes only that category's subjects: a saga otherwise
  /// receives (and skips) every event of the system.
  std::string subject_prefix;
  saga_settings settings;
  std::int64_t registry_flush_ms = 20;
  /// In a cluster a saga's instances are split into `partitions` by the
  /// stable hash of their stream (runtime/shard_map.hpp), each partition a
  /// lease-held singleton with a consumer of its own; this host runs
  /// `partition` and ignores the others' events. 1 = all instances here.
  int partition = 0;
  int partitions = 1;
  std::shared_ptr<spdlog::logger> log;
  /// Called on the host's thread when an instance ends (benchmarks, audits).
  std::function<void(const std::string& correlation, std::string_view status)> on_finished;
};

struct saga_host_stats {
  std::int64_t live_instances = 0;
  std::int64_t started = 0;
  std::int64_t finished = 0;
  std::int64_t inputs = 0;  // transitions: events, answers and ticks applied
  std::int64_t timeouts_fired = 0;
  std::int64_t dead_letters = 0;
  std::int64_t commands_sent = 0;
  std::int64_t recovered = 0;  // open instances loaded at start
  /// Starting events assumed to begin a new instance whose stream turned
  /// out to exist (a redelivery, a second consumer): each cost one read.
  std::int64_t wrong_new_guesses = 0;
  std::int64_t deliveries = 0;     // events its consumer delivered, its own or not
  std::int64_t registry_rows = 0;  // troupe_sagas rows written (see flush())
  std::int64_t inputs_queued = 0;  // waiting in instances' inboxes: the host's backlog
  std::int64_t input_records = 0;  // appends of inputs (each one record, of 1 or more inputs)
  std::int64_t deferred = 0;       // answers stored in a later input's record: see defer()
  std::int64_t timers = 0;  // wake-ups waiting: one per instance with a step or timer pending
  std::map<std::string, std::int64_t> live_by_status;
  double completion_p50_ms = 0;
  double completion_p99_ms = 0;

  /// Adds another partition's figures (the percentiles: the worse one).
  /// Next to the fields so that a new one is summed too: /metrics sums
  /// partitions, and a field left out there read 0.
  saga_host_stats& operator+=(const saga_host_stats& other) {
    live_instances += other.live_instances;
    started += other.started;
    finished += other.finished;
    inputs += other.inputs;
    timeouts_fired += other.timeouts_fired;
    dead_letters += other.dead_letters;
    commands_sent += other.commands_sent;
    recovered += other.recovered;
    wrong_new_guesses += other.wrong_new_guesses;
    deliveries += other.deliveries;
    registry_rows += other.registry_rows;
    inputs_queued += other.inputs_queued;
    input_records += other.input_records;
    deferred += other.deferred;
    timers += other.timers;
    for (const auto& [status, count] : other.live_by_status) live_by_status[status] += count;
    completion_p50_ms = std::max(completion_p50_ms, other.completion_p50_ms);
    completion_p99_ms = std::max(completion_p99_ms, other.completion_p99_ms);
    return *this;
  }
};

template <saga_definition S>
class saga_host {
 public:
  saga_host(node& n, std::shared_ptr<event_store> store, saga_host_options options)
      : node_(n), store_(std::move(store)), options_(std::move(options)) {
    log_ = options_.log ? options_.log : spdlog::default_logger();
  }
  ~saga_host() { stop(); }
  saga_host(const saga_host&) = delete;
  saga_host& operator=(const saga_host&) = delete;

  /// Resumes the open instances, then consumes events. Throws
  /// std::runtime_error when PostgreSQL or NATS cannot be reached.
  void start() {
    registry_ = std::make_unique<postgres::saga_registry>(options_.postgres_url);
    mailbox_ = std::make_shared<mailbox>();
    abandoning_ = false;
    fenced_ = false;
    thread_ = std::thread([this] {
      // Named for profilers and top -H (at most 15 characters): unnamed,
      // it read "troupe" like nats.c's own threads.
      pthread_setname_np(pthread_self(), "troupe.saga");
      loop();
    });
    if (options_.partitions < 1 || options_.partition < 0 ||
        options_.partition >= options_.partitions)
      throw std::invalid_argument("saga partition must be in 0..partitions-1");
    for (const auto& correlation : registry_open_instances()) {
      if (!mine(correlation)) continue;
      post(recover{correlation});
      recovered_.fetch_add(1);
    }
    auto sub = options_.subscription;
    sub.durable = options_.consumer_prefix + std::string(S::name);
    if constexpr (requires { S::source_category; }) {
      if (!options_.subject_prefix.empty()) {
        sub.filter_subject =
            event_publisher::category_subjects(options_.subject_prefix, S::source_category);
        // Its own consumer: nats-server 2.9 cannot change an existing
        // consumer's filter, and an unfiltered one may already exist.
        sub.durable += "-" + std::string(S::source_category);
      }
    }
    if (options_.partitions > 1)
      sub.durable +=
          "-p" + std::to_string(options_.partition) + "of" + std::to_string(options_.partitions);
    sub.cumulative_acks = false;
    sub.log = log_;
    subscription_ = std::make_unique<subscription>(
        sub, [this](std::span<const delivery> batch, std::span<verdict> v) { handle(batch, v); },
        [this](const delivery& d, const std::string& error) {
          // Malformed or uncorrelatable messages: kept as dead letters (the
          // subscription's thread; a connection of its own, rarely used).
          log_->error("saga {}: message {} parked: {}", S::name, d.event.event_id, error);
          try {
            postgres::view_store letters(options_.postgres_url);
            postgres::dead_letter letter;
            letter.consumer = "saga:" + std::string(S::name);
            letter.event = d.event;
            letter.error = error;
            letter.attempts = d.attempt;
            letters.exec("BEGIN");
            letters.park(letter);
            letters.exec("COMMIT");
            dead_letters_.fetch_add(1);
            return true;
          } catch (const std::exception& e) {
            log_->warn("saga {}: dead letter not stored ({}); the message comes back", S::name,
                       e.what());
            return false;
          }
        });
    subscription_->start();
  }

  /// Stops acting at once, waiting for nothing: no further appends,
  /// commands, registry rows or acknowledgements. For a cluster whose lease
  /// on this partition was lost - another node may be running these
  /// instances already, and stop() may block for seconds on an unreachable
  /// NATS. Whatever was not acknowledged is redelivered to the next owner.
  /// stop() must still follow, to end the threads.
  void fence() {
    fenced_ = true;
    abandoning_ = true;
    end_loop();
  }

  void stop() {
    // The subscription's thread may be waiting for inputs to be stored:
    // tell it to give up first (its batch is redelivered to the next run).
    abandoning_ = true;
    if (subscription_) subscription_->stop();
    subscription_.reset();
    end_loop();
    if (thread_.joinable()) thread_.join();
    registry_.reset();
  }

  saga_host_stats stats() const {
    saga_host_stats s;
    s.started = started_.load();
    s.finished = finished_.load();
    s.inputs = inputs_.load();
    s.timeouts_fired = timeouts_.load();
    s.dead_letters = dead_letters_.load();
    s.commands_sent = commands_sent_.load();
    s.recovered = recovered_.load();
    s.wrong_new_guesses = wrong_new_guesses_.load();
    s.deliveries = deliveries_.load();
    s.registry_rows = registry_rows_.load();
    s.inputs_queued = inputs_queued_.load();
    s.input_records = input_records_.load();
    s.deferred = deferred_.load();
    s.timers = timers_pending_.load();
    std::lock_guard lock(stats_mutex_);
    s.live_instances = live_;
    s.live_by_status = live_by_status_;
    if (!completion_ms_.empty()) {
      auto sorted = completion_ms_;
      std::sort(sorted.begin(), sorted.end());
      s.completion_p50_ms = sorted[sorted.size() / 2];
      s.completion_p99_ms = sorted[std::min(sorted.size() - 1, sorted.size() * 99 / 100)];
    }
    return s;
  }

  static std::string stream_of(std::string_view correlation) {
    return std::string(S::name) + "-" + std::string(correlation);
  }

  /// Whether the instance of `correlation` belongs to this host's partition.
  bool mine(std::string_view correlation) const {
    if (options_.partitions <= 1) return true;
    // shard_of(stream_of(correlation)) without building the string: this
    // runs for every event each partition's host reads.
    auto h = stable_hash(correlation, stable_hash("-", stable_hash(S::name)));
    return static_cast<int>(h % static_cast<std::uint64_t>(options_.partitions)) ==
           options_.partition;
  }

 private:
  // ---- messages to the loop ----------------------------------------------------

  struct batch_token {
    std::mutex mutex;
    std::condition_variable done;
    int remaining = 0;
    void complete() {
      std::lock_guard lock(mutex);
      if (--remaining == 0) done.notify_all();
    }
  };
  struct event_input {
    recorded_event raw;
    typename S::event event;
    std::shared_ptr<batch_token> token;
  };
  struct recover {
    std::string correlation;
  };
  struct loaded {
    std::string correlation;
    read_result result;
  };
  struct appended {
    std::string correlation;
    append_result result;
  };
  struct answered {
    std::string correlation;
    std::string step;
    int attempt;
    command_result result;
  };
  using message =
      std::variant<std::pair<std::string, event_input>, recover, loaded, appended, answered>;

  // ---- instances -------------------------------------------------------------------

  struct input {
    enum class kind : std::uint8_t { event, answer, tick } what = kind::tick;
    std::int64_t at = 0;
    std::optional<event_input> event;
    std::string step;
    int attempt = 0;
    command_result result;
  };
  struct instance {
    explicit instance(std::string correlation, saga_settings settings)
        : machine(std::move(correlation), settings) {}
    saga_machine<S> machine;
    std::int64_t version = 0;
    enum class phase : std::uint8_t { unloaded, loading, idle, appending } state = phase::unloaded;
    std::deque<input> inbox;
    std::set<std::string> seen_events;
    std::int64_t started_ms = 0;
    bool tick_queued = false;
    std::optional<std::int64_t> armed_at;  // its entry in timers_, if any
    bool registered = false;
    // What its registry row says of it (finished, has a step or timer
    // pending), once written: recovery needs nothing else, so a row is
    // written again only when one of the two changes (flush()).
    std::optional<std::pair<bool, bool>> registered_shape;
    bool assumed_new = false;       // its stream was not read: see pump()
    bool read_first = false;        // that guess failed once: read from now on
    std::size_t appending = 0;      // inputs at the inbox's front in the append in flight
    bool one_at_a_time = false;     // the store refused a record of several: see on_appended
    std::vector<input> unrecorded;  // applied, stored with the next record: see defer()
    std::optional<saga_machine<S>> recorded;  // the machine before them (its stream's state)
  };

  /// At most this many inputs in one record.
  static constexpr std::size_t max_inputs_per_record = 64;

  static std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  /// The loop's mailbox. Shared with the callbacks of store operations and
  /// commands still in flight, which may finish after the host is gone.
  struct mailbox {
    std::mutex mutex;
    std::condition_variable wake;
    std::deque<message> queue;
    bool stopping = false;
    void post(message m) {
      {
        std::lock_guard lock(mutex);
        queue.push_back(std::move(m));
      }
      wake.notify_one();
    }
  };

  void post(message m) { mailbox_->post(std::move(m)); }

  /// Tells the loop to end: after its queue (stop) or at once (fenced_).
  void end_loop() {
    if (!mailbox_) return;
    {
      std::lock_guard lock(mailbox_->mutex);
      mailbox_->stopping = true;
    }
    mailbox_->wake.notify_all();
  }

  /// A callback for an asynchronous operation: posts to the mailbox, which
  /// outlives the host.
  template <class Make>
  auto poster(Make make) {
    return [box = mailbox_, make = std::move(make)](auto result) mutable {
      box->post(make(std::move(result)));
    };
  }

  std::vector<std::string> registry_open_instances() {
    try {
      return registry_->open_instances(S::name);
    } catch (const std::exception& e) {
      throw std::runtime_error("saga " + std::string(S::name) + ": " + e.what());
    }
  }

  /// Subscription thread: hands the relevant events to the loop and waits
  /// until each is stored and its instance registered; then all are acked.
  void handle(std::span<const delivery> batch, std::span<verdict> verdicts) {
    auto token = std::make_shared<batch_token>();
    deliveries_.fetch_add(static_cast<std::int64_t>(batch.size()));
    std::vector<std::pair<std::string, event_input>> relevant;
    for (const auto& d : batch) {
      if (!d.malformed.empty()) continue;
      auto decoded = variant_codec<typename S::event>::decode(d.event.type, d.event.schema_version,
                                                              d.event.data);
      if (!decoded) {
        if (!decoded.error().starts_with("unknown event type"))
          log_->error("saga {}: event {} ({}) cannot be read: {}", S::name, d.event.event_id,
                      d.event.type, decoded.error());
        continue;  // not an event this saga listens to
      }
      std::string correlation;
      try {
        correlation = S::correlate(*decoded);
      } catch (const std::exception& e) {
        verdicts[static_cast<std::size_t>(&d - batch.data())] =
            verdict::park(std::string("cannot correlate: ") + e.what());
        continue;  // only this message is parked; its neighbours go on
      }
      if (!mine(correlation)) continue;  // another partition's instance: acknowledged
      relevant.push_back(
          {std::move(correlation), event_input{d.event, std::move(*decoded), token}});
    }
    if (relevant.empty()) return;
    token->remaining = static_cast<int>(relevant.size());
    for (auto& r : relevant) post(std::move(r));
    std::unique_lock lock(token->mutex);
    while (!token->done.wait_for(lock, std::chrono::milliseconds{100},
                                 [&] { return token->remaining == 0; })) {
      if (abandoning_) throw abandon_subscription();  // redelivered to the next run
    }
  }

  // ---- the loop ----------------------------------------------------------------------

  void loop() {
    std::vector<message> work;
    auto last_flush = std::chrono::steady_clock::now();
    while (true) {
      {
        auto& box = *mailbox_;
        std::unique_lock lock(box.mutex);
        auto wait_until = std::chrono::steady_clock::now() + std::chrono::milliseconds{100};
        if (!timers_.empty()) {
          auto due_in = timers_.begin()->first - now_ms();
          wait_until = std::min(wait_until,
                                std::chrono::steady_clock::now() +
                                    std::chrono::milliseconds{std::max<std::int64_t>(0, due_in)});
        }
        if (!dirty_.empty() || !acks_after_flush_.empty())
          wait_until = std::min(wait_until,
                                last_flush + std::chrono::milliseconds{options_.registry_flush_ms});
        box.wake.wait_until(lock, wait_until, [&] { return box.stopping || !box.queue.empty(); });
        if (fenced_ || (box.stopping && box.queue.empty())) break;
        work.assign(std::make_move_iterator(box.queue.begin()),
                    std::make_move_iterator(box.queue.end()));
        box.queue.clear();
      }
      for (auto& m : work) {
        if (fenced_) break;
        dispatch(std::move(m));
      }
      work.clear();
      if (fenced_) break;
      fire_due_timers();
      if (!quiet_.empty()) passivate();
      // The subscription's batch waits for its acknowledgements: once all
      // of its events are stored, waiting out the flush interval would only
      // hold back the next batch (the next orders' sagas).
      bool batch_stored = !acks_after_flush_.empty() && unstored_events_ == 0;
      if ((!dirty_.empty() || !acks_after_flush_.empty()) &&
          (batch_stored || std::chrono::steady_clock::now() - last_flush >=
                               std::chrono::milliseconds{options_.registry_flush_ms})) {
        flush();
        last_flush = std::chrono::steady_clock::now();
      }
    }
    if (!fenced_ && (!dirty_.empty() || !acks_after_flush_.empty())) flush();
  }

  void dispatch(message m) {
    std::visit(
        [this](auto&& msg) {
          using M = std::decay_t<decltype(msg)>;
          if constexpr (std::is_same_v<M, std::pair<std::string, event_input>>) {
            input in;
            in.what = input::kind::event;
            in.at = now_ms();
            in.event = std::move(msg.second);
            if (in.event->token) ++unstored_events_;
            enqueue(msg.first, std::move(in));
          } else if constexpr (std::is_same_v<M, recover>) {
            pump(get(msg.correlation));
          } else if constexpr (std::is_same_v<M, loaded>) {
            on_loaded(msg.correlation, std::move(msg.result));
          } else if constexpr (std::is_same_v<M, appended>) {
            on_appended(msg.correlation, std::move(msg.result));
          } else {
            input in;
            in.what = input::kind::answer;
            in.at = now_ms();
            in.step = std::move(msg.step);
            in.attempt = msg.attempt;
            in.result = std::move(msg.result);
            enqueue(msg.correlation, std::move(in));
          }
        },
        std::move(m));
  }

  instance& get(const std::string& correlation) {
    auto it = instances_.find(correlation);
    if (it == instances_.end())
      it = instances_.emplace(correlation, instance(correlation, options_.settings)).first;
    return it->second;
  }

  void enqueue(const std::string& correlation, input in) {
    auto& inst = get(correlation);
    inst.inbox.push_back(std::move(in));
    inputs_queued_.fetch_add(1, std::memory_order_relaxed);
    pump(inst);
  }

  void pump(instance& inst) {
    const auto& correlation = inst.machine.correlation_id();
    if (inst.state == instance::phase::unloaded && !inst.read_first && !inst.inbox.empty() &&
        inst.inbox.front().what == input::kind::event &&
        S::starts(inst.inbox.front().event->event)) {
      // A starting event for an instance not in memory almost always
      // begins a new saga: skip reading its (empty) stream and let the
      // append's version check (no stream yet) prove the guess. A stream
      // that exists (a redelivered start of a finished saga) conflicts,
      // and the instance is read and the event tried again (on_appended).
      start_fresh(inst);
      inst.assumed_new = true;
      inst.state = instance::phase::idle;
    }
    if (inst.state == instance::phase::unloaded) {
      inst.state = instance::phase::loading;
      store_->read_stream(stream_of(correlation), stream_version{1}, SIZE_MAX,
                          poster([correlation](read_result r) -> message {
                            return loaded{correlation, std::move(r)};
                          }));
      return;
    }
    while (inst.state == instance::phase::idle && !inst.inbox.empty()) {
      auto& in = inst.inbox.front();
      if (skip(inst, in)) {
        if (in.event && in.event->token) {
          if (inst.machine.started()) {
            // Seen before (a redelivery): acknowledged only once the
            // instance is registered, as for its first delivery.
            dirty_.insert(correlation);
            acks_after_flush_.push_back(in.event->token);
          } else {
            in.event->token->complete();
          }
        }
        if (in.what == input::kind::tick) inst.tick_queued = false;
        pop_input(inst);
        continue;
      }
      if (defer(inst)) continue;
      auto count = record_size(inst);
      append_request r;
      r.stream_id = stream_of(correlation);
      r.expected = expected_version::exact(stream_version{inst.version});
      r.recorded_at = clock_type::now();
      r.metadata.command_id = new_uuid();
      r.metadata.correlation_id = correlation;
      if (in.event) r.metadata.causation_id = in.event->raw.event_id;
      std::vector<const input*> record;
      record.reserve(inst.unrecorded.size() + count);
      for (const auto& u : inst.unrecorded) record.push_back(&u);
      for (std::size_t i = 0; i < count; ++i) record.push_back(&inst.inbox[i]);
      r.events.push_back(encode(record));
      inst.state = instance::phase::appending;
      inst.appending = count;
      input_records_.fetch_add(1, std::memory_order_relaxed);
      store_->append(std::move(r), poster([correlation](append_result res) -> message {
                       return appended{correlation, std::move(res)};
                     }));
    }
  }

  /// How many inputs from the inbox's front go in the next record: the
  /// front one and those behind it up to the first that would be skipped
  /// by the state before the record (it is looked at again after it) or
  /// that repeats an event of the record. Every input of a record is
  /// applied, in order, live and in a replay alike; one made moot by an
  /// earlier one of the same record (a reply after the finish) changes
  /// nothing in either.
  std::size_t record_size(const instance& inst) const {
    if (inst.one_at_a_time) return 1;
    std::size_t n = 1;
    while (n < inst.inbox.size() && n < max_inputs_per_record) {
      const auto& next = inst.inbox[n];
      if (skip(inst, next)) break;
      if (next.what == input::kind::event &&
          std::any_of(inst.inbox.begin(), inst.inbox.begin() + static_cast<std::ptrdiff_t>(n),
                      [&](const input& earlier) {
                        return earlier.what == input::kind::event &&
                               earlier.event->raw.event_id == next.event->raw.event_id;
                      }))
        break;
      ++n;
    }
    return n;
  }

  /// An accepted answer at the inbox's front that sends nothing, gives up
  /// nothing and leaves other steps in flight (one of several parallel
  /// steps answered) changes nothing outside the instance: it
  /// is applied at once and stored with the next input that does change
  /// something, in that input's record, instead of in one of its own (the
  /// fulfilment saga's first answer of each of its three rounds).
  /// Lost in a crash before that record, it was never stored: the restarted
  /// instance still has its step in flight and sends it again with the same
  /// command id, which the aggregate answers as before - accepted (a
  /// duplicate, or a no-op by the command's domain key). A refusal is not
  /// deferred: an aggregate need not refuse twice.
  bool defer(instance& inst) {
    const auto& in = inst.inbox.front();
    if (in.what != input::kind::answer || inst.one_at_a_time ||
        inst.unrecorded.size() >= max_inputs_per_record ||
        (in.result.status != command_status::accepted &&
         in.result.status != command_status::duplicate))
      return false;
    // The last step in flight answered: settling it sends the next round or
    // leaves nothing pending, so it is never deferred - known without the
    // trial copy of the machine (the last answer of each of the fulfilment
    // saga's rounds: 3 of a one-book order's 6).
    if (inst.machine.pending_steps() == 1 && inst.machine.pending(in.step)) return false;
    auto trial = inst.machine;
    auto out = trial.on_reply(in.step, in.attempt, in.result, in.at);
    // With no step left in flight, nothing may come to carry it into a
    // record soon (a rating waits for a deletion that may never come).
    if (!out.sends.empty() || !out.dead_letters.empty() || out.finished_now ||
        trial.pending_steps() == 0)
      return false;
    if (inst.unrecorded.empty()) inst.recorded = std::move(inst.machine);
    inst.machine = std::move(trial);
    inputs_.fetch_add(1);
    deferred_.fetch_add(1, std::memory_order_relaxed);
    inst.unrecorded.push_back(pop_input(inst));
    return true;
  }

  /// Deferred inputs go back to the inbox's front, to be applied again to
  /// the machine as its stream has it (restored, or read again).
  void requeue_unrecorded(instance& inst) {
    if (inst.recorded) inst.machine = std::move(*inst.recorded);
    inst.recorded.reset();
    for (auto it = inst.unrecorded.rbegin(); it != inst.unrecorded.rend(); ++it) {
      inst.inbox.push_front(std::move(*it));
      inputs_queued_.fetch_add(1, std::memory_order_relaxed);
      inputs_.fetch_sub(1);
    }
    inst.unrecorded.clear();
  }

  /// The inbox's front input, done with: stored, skipped or dead-lettered.
  input pop_input(instance& inst) {
    auto in = std::move(inst.inbox.front());
    inst.inbox.pop_front();
    inputs_queued_.fetch_sub(1, std::memory_order_relaxed);
    if (in.event && in.event->token) --unstored_events_;
    return in;
  }

  /// A machine with no inputs applied, at version 0: before a replay, or
  /// for an instance assumed new.
  void start_fresh(instance& inst) {
    inst.machine = saga_machine<S>(inst.machine.correlation_id(), options_.settings);
    inst.seen_events.clear();
    inst.version = 0;
  }

  /// Inputs that would change nothing are not stored.
  bool skip(const instance& inst, const input& in) const {
    if (inst.machine.finished()) return true;
    if (in.what == input::kind::event) {
      if (inst.seen_events.contains(in.event->raw.event_id)) return true;
      if (!inst.machine.started() && !S::starts(in.event->event)) return true;
    }
    if (in.what == input::kind::tick) {
      auto due = inst.machine.next_wakeup();
      return !due || *due > in.at;
    }
    // An answer to a step no longer in flight (settled by an earlier
    // attempt, or sent again after a restart) changes nothing.
    if (in.what == input::kind::answer) return !inst.machine.pending(in.step);
    return false;
  }

  /// Inputs as one stored record: a single input as `saga_event_received`,
  /// `saga_step_answered` or `saga_clock_ticked`; several as
  /// `saga_inputs_received`, whose `inputs` array holds each one's fields
  /// and its `kind` (one of those three), in the order they were applied.
  static new_event encode(const std::vector<const input*>& record) {
    new_event e;
    e.event_id = new_uuid();
    if (record.size() == 1) {
      auto [type, o] = to_json(*record.front());
      e.type = type;
      e.data = boost::json::serialize(o);
      return e;
    }
    boost::json::array inputs;
    inputs.reserve(record.size());
    for (const auto* in : record) {
      auto [type, o] = to_json(*in);
      o["kind"] = type;
      inputs.push_back(std::move(o));
    }
    e.type = "saga_inputs_received";
    e.data = boost::json::serialize(boost::json::object{{"inputs", std::move(inputs)}});
    return e;
  }

  static std::pair<std::string_view, boost::json::object> to_json(const input& in) {
    boost::json::object o;
    o["at"] = in.at;
    std::string_view type;
    if (in.what == input::kind::event) {
      type = "saga_event_received";
      const auto& raw = in.event->raw;
      o["event_id"] = raw.event_id;
      o["type"] = raw.type;
      o["schema_version"] = raw.schema_version;
      o["data"] = raw.data;
      o["position"] = raw.position.value;
    } else if (in.what == input::kind::answer) {
      type = "saga_step_answered";
      o["step"] = in.step;
      o["attempt"] = in.attempt;
      o["status"] = std::string(to_string(in.result.status));
      o["code"] = in.result.reason.code;
      o["message"] = in.result.reason.message;
    } else {
      type = "saga_clock_ticked";
    }
    return {type, std::move(o)};
  }

  /// The stored inputs back, in order, or nullopt for a record this build
  /// cannot read.
  static std::optional<std::vector<input>> decode(const recorded_event& stored) {
    try {
      boost::system::error_code ec;
      auto json = boost::json::parse(stored.data, ec);
      if (ec || !json.is_object()) return std::nullopt;
      const auto& o = json.get_object();
      std::vector<input> out;
      if (stored.type != "saga_inputs_received") {
        auto in = decode_or_throw(stored.type, o);
        if (!in) return std::nullopt;
        out.push_back(std::move(*in));
        return out;
      }
      for (const auto& item : o.at("inputs").as_array()) {
        const auto& fields = item.as_object();
        auto in = decode_or_throw(fields.at("kind").as_string(), fields);
        if (!in) return std::nullopt;
        out.push_back(std::move(*in));
      }
      return out;
    } catch (const std::exception&) {
      return std::nullopt;  // a missing or mistyped field: reported by the caller
    }
  }

  static std::optional<input> decode_or_throw(std::string_view type, const boost::json::object& o) {
    input in;
    in.at = o.at("at").to_number<std::int64_t>();
    if (type == "saga_event_received") {
      in.what = input::kind::event;
      recorded_event raw;
      raw.event_id = o.at("event_id").as_string().c_str();
      raw.type = o.at("type").as_string().c_str();
      raw.schema_version = static_cast<int>(o.at("schema_version").to_number<std::int64_t>());
      raw.data = o.at("data").as_string().c_str();
      raw.position = global_position{o.at("position").to_number<std::int64_t>()};
      auto decoded =
          variant_codec<typename S::event>::decode(raw.type, raw.schema_version, raw.data);
      if (!decoded) return std::nullopt;
      in.event = event_input{std::move(raw), std::move(*decoded), nullptr};
    } else if (type == "saga_step_answered") {
      in.what = input::kind::answer;
      in.step = o.at("step").as_string().c_str();
      in.attempt = static_cast<int>(o.at("attempt").to_number<std::int64_t>());
      in.result.status = status_from(o.at("status").as_string());
      in.result.reason = {o.at("code").as_string().c_str(), o.at("message").as_string().c_str()};
    } else if (type == "saga_clock_ticked") {
      in.what = input::kind::tick;
    } else {
      return std::nullopt;
    }
    return in;
  }

  static command_status status_from(std::string_view s) {
    for (auto st : {command_status::accepted, command_status::duplicate, command_status::rejected,
                    command_status::conflict, command_status::overloaded,
                    command_status::unavailable, command_status::invalid})
      if (to_string(st) == s) return st;
    return command_status::unavailable;
  }

  typename saga_machine<S>::output apply(instance& inst, const input& in) {
    switch (in.what) {
      case input::kind::event:
        inst.seen_events.insert(in.event->raw.event_id);
        return inst.machine.on_event(in.event->event, in.at);
      case input::kind::answer: return inst.machine.on_reply(in.step, in.attempt, in.result, in.at);
      case input::kind::tick: return inst.machine.on_tick(in.at);
    }
    return {};
  }

  void on_loaded(const std::string& correlation, read_result r) {
    auto& inst = get(correlation);
    requeue_unrecorded(inst);  // none today: every path to a read takes them back first
    if (r.error != store_errc::ok) {
      log_->warn("saga {} {}: cannot load ({}); retrying", S::name, correlation, r.message);
      inst.state = instance::phase::unloaded;
      retry_later(correlation);
      return;
    }
    start_fresh(inst);
    inst.registered_shape.reset();  // registered again below, whatever it said before
    for (const auto& stored : r.events) {
      inst.version = stored.version.value;
      auto inputs = decode(stored);
      if (!inputs) {
        log_->error("saga {} {}: cannot read stored input {} ({})", S::name, correlation,
                    stored.version.value, stored.type);
        continue;
      }
      for (const auto& in : *inputs) {
        if (inst.started_ms == 0) inst.started_ms = in.at;
        apply(inst, in);  // replay: the effects happened before
      }
    }
    inst.state = instance::phase::idle;
    // Loaded only to find it finished (a late event): register it again
    // (idempotent) so it is passivated after the next flush.
    // Every loaded instance is registered again (an idempotent upsert): an
    // append whose answer was lost may have stored an input nobody
    // registered. One that never started (an event for nobody) just goes.
    if (inst.machine.started())
      dirty_.insert(correlation);
    else
      quiet_.insert(correlation);
    // Steps in flight when the node went down go out again, with the same
    // command ids: an aggregate that applied one answers with its outcome.
    if (!r.events.empty() && !inst.machine.finished())
      execute(inst, {inst.machine.in_flight(), {}, false});
    arm(inst);
    pump(inst);
  }

  void on_appended(const std::string& correlation, append_result r) {
    auto& inst = get(correlation);
    inst.state = instance::phase::idle;
    auto count = std::exchange(inst.appending, 0);
    if (r.error == store_errc::version_conflict) {
      requeue_unrecorded(inst);
      if (inst.assumed_new) {
        wrong_new_guesses_.fetch_add(1);
      } else {
        // Someone else wrote this saga (a doubled host): start over from its stream.
        log_->warn("saga {} {}: stream moved under us; reloading", S::name, correlation);
      }
      inst.assumed_new = false;
      inst.read_first = true;
      inst.state = instance::phase::unloaded;
      pump(inst);
      return;
    }
    if (r.error == store_errc::invalid_input && (count > 1 || !inst.unrecorded.empty())) {
      // One of them is too much for the store (or all of them together):
      // store them one by one until one is stored, so that only the input
      // the store refuses on its own is dead-lettered. Deferred ones were
      // applied already: they are taken back and come first.
      inst.one_at_a_time = true;
      requeue_unrecorded(inst);
      pump(inst);
      return;
    }
    if (r.error == store_errc::invalid_input && !inst.inbox.empty()) {
      // The store will never take this input (too large, say): it becomes a
      // dead letter and the instance goes on without it, instead of blocking
      // its inbox and the saga's consumer for good.
      auto in = pop_input(inst);
      postgres::dead_letter letter;
      letter.consumer = "saga:" + std::string(S::name);
      if (in.event) letter.event = in.event->raw;
      letter.event.metadata.correlation_id = correlation;
      letter.error = "input not stored: " + r.message;
      letter.attempts = 1;
      pending_letters_.push_back(std::move(letter));
      dead_letters_.fetch_add(1);
      log_->error("saga {} {}: input refused by the store, dead-lettered: {}", S::name, correlation,
                  r.message);
      if (in.what == input::kind::tick) inst.tick_queued = false;
      if (in.event && in.event->token) acks_after_flush_.push_back(in.event->token);
      dirty_.insert(correlation);
      pump(inst);
      return;
    }
    if (r.error != store_errc::ok) {
      log_->warn("saga {} {}: input not stored ({}); retrying", S::name, correlation, r.message);
      retry_later(correlation);
      return;
    }
    inst.version = r.last_version.value;
    inst.assumed_new = false;
    inst.one_at_a_time = false;
    inst.unrecorded.clear();  // applied when they came
    inst.recorded.reset();
    for (std::size_t i = 0; i < count && !inst.inbox.empty(); ++i) {
      auto in = pop_input(inst);
      if (in.what == input::kind::tick) {
        inst.tick_queued = false;
        timeouts_.fetch_add(1);
      }
      bool was_started = inst.machine.started();
      if (inst.started_ms == 0) inst.started_ms = in.at;
      auto out = apply(inst, in);
      inputs_.fetch_add(1);
      if (!was_started && inst.machine.started()) started_.fetch_add(1);
      execute(inst, out);
      if (in.event && in.event->token) acks_after_flush_.push_back(in.event->token);
    }
    dirty_.insert(correlation);
    arm(inst);
    pump(inst);
  }

  void execute(instance& inst, const typename saga_machine<S>::output& out) {
    const auto& correlation = inst.machine.correlation_id();
    for (const auto& send : out.sends) {
      command_envelope env;
      env.stream_id = send.stream_id;
      env.payload = send.payload;
      env.command_id = send.command_id;
      env.correlation_id = correlation;
      commands_sent_.fetch_add(1);
      node_.submit(std::move(env), poster([correlation, step = send.step, attempt = send.attempt](
                                              command_result result) -> message {
                     return answered{correlation, step, attempt, std::move(result)};
                   }));
    }
    for (const auto& d : out.dead_letters) {
      postgres::dead_letter letter;
      letter.consumer = "saga:" + std::string(S::name);
      letter.event.event_id = d.command_id;
      letter.event.stream_id = d.stream_id;
      letter.event.type = d.command_type;  // decodes command_json on replay
      letter.event.data = d.command_json;
      letter.event.metadata.correlation_id = correlation;
      letter.error = d.error;
      letter.attempts = d.attempts;
      pending_letters_.push_back(std::move(letter));
      dead_letters_.fetch_add(1);
      log_->warn("saga {} {}: step {} failed {} times, dead-lettered: {}", S::name, correlation,
                 d.step, d.attempts, d.error);
    }
    if (out.finished_now) {
      finished_.fetch_add(1);
      if (options_.on_finished) options_.on_finished(correlation, inst.machine.status());
      std::lock_guard lock(stats_mutex_);
      // The latest 100k completions, as a ring.
      auto sample = static_cast<double>(now_ms() - inst.started_ms);
      if (completion_ms_.size() < 100000)
        completion_ms_.push_back(sample);
      else
        completion_ms_[completion_next_++ % completion_ms_.size()] = sample;
    }
  }

  /// Instances that are finished or wait for nothing but a later event leave
  /// memory once their last change is registered and nothing is queued for
  /// them (their stream has everything).
  void passivate() {
    bool erased = false;
    for (auto it = quiet_.begin(); it != quiet_.end();) {
      auto found = instances_.find(*it);
      if (found == instances_.end()) {
        it = quiet_.erase(it);
      } else if (found->second.inbox.empty() && found->second.unrecorded.empty() &&
                 found->second.state == instance::phase::idle && !dirty_.contains(*it) &&
                 (found->second.machine.finished() || !found->second.machine.next_wakeup())) {
        disarm(found->second);
        instances_.erase(found);
        it = quiet_.erase(it);
        erased = true;
      } else {
        ++it;
      }
    }
    if (erased) publish_live_stats();
  }

  /// One timer entry per instance, moved when its next wakeup changes and
  /// removed when it has none: a heap that kept every deadline ever set
  /// held each step's 30 s timeout long after the step was answered (some
  /// 160,000 entries at 1,800 orders/s, by count) and the checkout
  /// benchmark's rounds fell as it grew.
  void arm(instance& inst) {
    auto due = inst.machine.next_wakeup();
    if (due == inst.armed_at) return;
    disarm(inst);
    if (due) timers_.insert({*due, inst.machine.correlation_id()});
    inst.armed_at = due;
    timers_pending_.store(static_cast<std::int64_t>(timers_.size()), std::memory_order_relaxed);
  }

  void disarm(instance& inst) {
    if (!inst.armed_at) return;
    if (auto it = timers_.find({*inst.armed_at, inst.machine.correlation_id()});
        it != timers_.end())
      timers_.erase(it);
    inst.armed_at.reset();
    timers_pending_.store(static_cast<std::int64_t>(timers_.size()), std::memory_order_relaxed);
  }

  void retry_later(const std::string& correlation) {
    timers_.insert({now_ms() + options_.settings.retry_backoff_ms, correlation});
    timers_pending_.store(static_cast<std::int64_t>(timers_.size()), std::memory_order_relaxed);
  }

  void fire_due_timers() {
    auto now = now_ms();
    while (!timers_.empty() && timers_.begin()->first <= now) {
      auto entry = timers_.extract(timers_.begin());
      timers_pending_.store(static_cast<std::int64_t>(timers_.size()), std::memory_order_relaxed);
      const auto& [entry_due, correlation] = entry.value();
      auto it = instances_.find(correlation);
      if (it == instances_.end()) continue;
      auto& inst = it->second;
      if (inst.armed_at == entry_due) inst.armed_at.reset();  // its entry is the one taken
      if (inst.state == instance::phase::unloaded) {
        pump(inst);
        continue;
      }
      auto due = inst.machine.next_wakeup();
      if (!inst.tick_queued && due && *due <= now) {
        inst.tick_queued = true;
        input tick;
        tick.what = input::kind::tick;
        tick.at = now;
        inst.inbox.push_back(std::move(tick));
      } else if (due && *due > now) {
        arm(inst);  // a wakeup that moved later: wait for it (a due tick re-arms once stored)
      }
      pump(inst);
    }
  }

  /// Registry rows and dead letters in one transaction; then the events
  /// whose inputs they cover are acknowledged and finished instances leave.
  ///
  /// A row is written when an instance first appears and whenever it
  /// finishes or changes between "a step or timer pending" and "waiting
  /// only for an event": recovery loads the open rows with a wake-up, and
  /// reads the instance's state from its stream, so an order's intermediate
  /// steps need no row writes (they were ~5 updates per order). The status
  /// column of an open row is therefore the one it had at that change.
  void flush() {
    std::vector<postgres::saga_row> rows;
    // Same thread, nothing erased until the save returns: pointers hold.
    std::vector<std::pair<instance*, std::pair<bool, bool>>> shapes;
    for (const auto& correlation : dirty_) {
      auto it = instances_.find(correlation);
      if (it == instances_.end()) continue;
      const auto& m = it->second.machine;
      std::pair<bool, bool> shape{m.finished(), m.next_wakeup().has_value()};
      if (it->second.registered_shape == shape) continue;
      rows.push_back({correlation, std::string(m.status()), m.finished(), m.next_wakeup(),
                      it->second.started_ms, it->second.version});
      shapes.emplace_back(&it->second, shape);
    }
    try {
      if (!rows.empty() || !pending_letters_.empty())
        registry_->save(S::name, rows, pending_letters_);
    } catch (const std::exception& e) {
      log_->warn("saga {}: registry not written ({}); retrying", S::name, e.what());
      try {
        registry_ = std::make_unique<postgres::saga_registry>(options_.postgres_url);
      } catch (const std::exception&) {
      }
      return;  // tokens wait: their events are not acknowledged yet
    }
    pending_letters_.clear();
    registry_rows_.fetch_add(static_cast<std::int64_t>(rows.size()));
    for (const auto& [inst, shape] : shapes) inst->registered_shape = shape;
    for (auto& token : acks_after_flush_) token->complete();
    acks_after_flush_.clear();
    for (const auto& correlation : dirty_) {
      auto it = instances_.find(correlation);
      // Finished, or waiting for nothing but a later event (a rated rating
      // waits for the feedback's deletion): its stream has everything, so it
      // can leave memory and come back on its next event.
      if (it != instances_.end() &&
          (it->second.machine.finished() || !it->second.machine.next_wakeup()))
        quiet_.insert(correlation);
    }
    dirty_.clear();
    passivate();
    publish_live_stats();
  }

  void publish_live_stats() {
    std::map<std::string, std::int64_t> by_status;
    for (const auto& [correlation, inst] : instances_)
      if (inst.machine.started()) ++by_status[std::string(inst.machine.status())];
    std::lock_guard lock(stats_mutex_);
    live_ = static_cast<std::int64_t>(instances_.size());
    live_by_status_ = std::move(by_status);
  }

  node& node_;
  std::shared_ptr<event_store> store_;
  saga_host_options options_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<postgres::saga_registry> registry_;
  std::unique_ptr<subscription> subscription_;
  std::thread thread_;

  std::shared_ptr<mailbox> mailbox_ = std::make_shared<mailbox>();
  std::atomic<bool> abandoning_{false};
  std::atomic<bool> fenced_{false};

  // Loop thread only.
  std::unordered_map<std::string, instance> instances_;
  std::multiset<std::pair<std::int64_t, std::string>> timers_;  // (due ms, correlation)
  std::set<std::string> dirty_;
  std::set<std::string> quiet_;
  std::vector<std::shared_ptr<batch_token>> acks_after_flush_;
  std::int64_t unstored_events_ = 0;  // delivered events not yet stored (or skipped)
  std::vector<postgres::dead_letter> pending_letters_;

  std::atomic<std::int64_t> started_{0}, finished_{0}, inputs_{0}, timeouts_{0}, dead_letters_{0},
      commands_sent_{0}, recovered_{0}, wrong_new_guesses_{0}, deliveries_{0}, registry_rows_{0},
      inputs_queued_{0}, input_records_{0}, deferred_{0}, timers_pending_{0};
  mutable std::mutex stats_mutex_;
  std::int64_t live_ = 0;
  std::map<std::string, std::int64_t> live_by_status_;
  std::vector<double> completion_ms_;
  std::size_t completion_next_ = 0;
};

}  // namespace troupe
