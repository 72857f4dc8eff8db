#include "runtime/publisher.hpp"

#include <nats/nats.h>
#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

#include "persistence/sync.hpp"
#include "runtime/src/nats_support.hpp"
#include "runtime/src/outgoing_headers.hpp"
#include "runtime/src/received_headers.hpp"
#include "runtime/wakeup_signal.hpp"

namespace troupe {

using detail::nats_error;

namespace {

std::string rfc3339(clock_type::time_point t) {
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  auto seconds = static_cast<std::time_t>(micros / 1000000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[40];
  auto n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + n, sizeof text - n, ".%06lldZ", static_cast<long long>(micros % 1000000));
  return text;
}

void append_token(std::string& out, std::string_view token) {
  for (char c : token) {
    bool bad = c == '.' || c == '*' || c == '>' || c == ' ' || c == '\t' || c == '\r' ||
               c == '\n' || static_cast<unsigned char>(c) < 0x20;
    out.push_back(bad ? '_' : c);
  }
}

}  // namespace

std::string event_publisher::category_subjects(std::string_view prefix, std::string_view category) {
  std::string subjects(prefix);
  subjects.push_back('.');
  append_token(subjects, category);
  subjects += ".>";
  return subjects;
}

std::string event_publisher::subject_of(std::string_view prefix, const recorded_event& event) {
  std::string subject(prefix);
  subject.push_back('.');
  append_token(subject, stream_category(event.stream_id));
  subject.push_back('.');
  append_token(subject, event.type);
  return subject;
}

struct event_publisher::impl {
  std::shared_ptr<event_store> store;
  publisher_options options;
  std::shared_ptr<spdlog::logger> log;

  natsConnection* connection = nullptr;
  jsCtx* js = nullptr;
  std::thread thread;
  std::atomic<bool> stopping{false};
  std::atomic<bool> alive{false};

  std::atomic<std::int64_t> published{0}, duplicates{0}, failed_rounds{0}, checkpoint{0};
  std::atomic<std::int64_t> rounds_read{0}, checkpoint_saves{0};
  std::atomic<std::int64_t> rounds_by_sequence{0}, sequence_mismatches{0};
  std::atomic<int> round_errors{0};  // set by the async error handler

  // Rounds in flight, oldest first. Each covers a range of positions (one
  // read); an acknowledgement counts for the round holding its message's
  // position, so a round is confirmed only when every one of its own
  // publishes is acknowledged - never because later ones made up the count
  // for a message lost in a reconnect - or, for a round confirmed by
  // sequence, when its last publish got the stream sequence expected.
  struct round_state {
    global_position first, last;  // the read's range (internal events included)
    bool all_sent = false;        // every publish handed to nats.c (acks may come first)
    std::int64_t acked = 0;
    std::chrono::steady_clock::time_point sent_at;
    std::int64_t publishes = 0;        // how many it publishes (internal events left out)
    std::int64_t last_published = 0;   // the position of its last publish
    bool by_sequence = false;          // only its last publish is acknowledged
    std::uint64_t final_sequence = 0;  // by_sequence: the stream sequence that one must get
    bool sequence_confirmed = false;
    // The last publish's acknowledgement (any round): its stream sequence,
    // and whether the message was new (a duplicate names an older one).
    std::uint64_t last_sequence = 0;
    bool last_new = false;
    bool complete() const {
      return all_sent && (by_sequence ? sequence_confirmed : acked >= publishes);
    }
  };
  std::mutex ack_mutex;  // guards rounds
  std::condition_variable ack_arrived;
  std::deque<round_state> rounds;

  void count_ack(natsMsg* msg, const jsPubAck& ack) {
    // Read where the publish wrote it: asking nats.c would lift every header
    // of the message into its map again.
    auto text = detail::received_headers(msg).get("troupe-position");
    if (!text) return;
    std::int64_t position = 0;
    std::from_chars(text->data(), text->data() + text->size(), position);
    std::lock_guard lock(ack_mutex);
    for (auto& r : rounds) {
      if (position < r.first.value || position > r.last.value) continue;
      if (position == r.last_published) {
        r.last_sequence = ack.Sequence;
        r.last_new = !ack.Duplicate;
      }
      if (!r.by_sequence) {
        ++r.acked;
        published.fetch_add(1, std::memory_order_relaxed);
      } else if (position == r.last_published && r.last_new &&
                 r.last_sequence == r.final_sequence) {
        r.sequence_confirmed = true;
        published.fetch_add(r.publishes, std::memory_order_relaxed);
        rounds_by_sequence.fetch_add(1, std::memory_order_relaxed);
      } else {
        // The stream did not grow by exactly this round: a message lost on
        // the way, one that was already there, or another writer. Send
        // again from the checkpoint, each publish acknowledged.
        sequence_mismatches.fetch_add(1, std::memory_order_relaxed);
        round_errors.fetch_add(1, std::memory_order_relaxed);
        log->warn("publish round {}..{} got stream sequence {}{} instead of {}; sending it again",
                  r.first.value, r.last.value, ack.Sequence, ack.Duplicate ? " (duplicate)" : "",
                  r.final_sequence);
        ack_arrived.notify_all();
        return;
      }
      if (&r == &rounds.front() && r.complete()) ack_arrived.notify_all();
      return;
    }
  }

  static void on_publish_ack(jsCtx*, natsMsg* msg, jsPubAck* ack, jsPubAckErr* error,
                             void* closure) {
    auto* self = static_cast<impl*>(closure);
    if (error == nullptr && ack != nullptr) {
      if (ack->Duplicate) self->duplicates.fetch_add(1, std::memory_order_relaxed);
      self->count_ack(msg, *ack);
    } else {
      self->round_errors.fetch_add(1, std::memory_order_relaxed);
      self->wake();
      if (error != nullptr)
        self->log->warn("publish failed: {}",
                        error->ErrText != nullptr ? error->ErrText : nats_error(error->Err));
    }
    natsMsg_Destroy(msg);
  }

  void connect() {
    connection = detail::connect_nats(options.nats_url);
    jsOptions js_options;
    jsOptions_Init(&js_options);
    js_options.PublishAsync.MaxPending = options.max_pending;
    js_options.PublishAsync.AckHandler = &impl::on_publish_ack;
    js_options.PublishAsync.AckHandlerClosure = this;
    natsStatus s = natsConnection_JetStream(&js, connection, &js_options);
    if (s != NATS_OK) throw std::runtime_error("cannot open JetStream: " + nats_error(s));
  }

  /// Creates the stream, or brings an existing one to the configured settings.
  void ensure_stream() {
    jsStreamConfig config;
    jsStreamConfig_Init(&config);
    auto wildcard = options.subject_prefix + ".>";
    const char* subjects[] = {wildcard.c_str()};
    config.Name = options.stream_name.c_str();
    config.Subjects = subjects;
    config.SubjectsLen = 1;
    config.Storage = js_FileStorage;
    config.Replicas = options.replicas;
    config.Duplicates =
        std::chrono::duration_cast<std::chrono::nanoseconds>(options.duplicate_window).count();
    jsStreamInfo* info = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    natsStatus s = js_AddStream(&info, js, &config, nullptr, &code);
    if (s != NATS_OK) {
      // Already there (perhaps with other settings): update it instead.
      code = static_cast<jsErrCode>(0);
      s = js_UpdateStream(&info, js, &config, nullptr, &code);
    }
    if (info != nullptr) jsStreamInfo_Destroy(info);
    if (s != NATS_OK)
      throw std::runtime_error("cannot create or update JetStream stream " + options.stream_name +
                               ": " + nats_error(s, code));
  }

  /// The headers of the event being published; one buffer for all.
  detail::outgoing_headers headers;

  /// Publishes an event, asynchronously with an acknowledgement or without
  /// a reply; false when it could not be sent.
  bool publish(const recorded_event& e, global_position previous, bool acknowledged) {
    auto subject = subject_of(options.subject_prefix, e);
    headers.clear();
    headers.add("Nats-Msg-Id", e.event_id);
    headers.add("ce-specversion", "1.0");
    headers.add("ce-id", e.event_id);
    headers.add("ce-source", options.source);
    headers.add("ce-type", e.type);
    headers.add("ce-subject", e.stream_id);
    headers.add("ce-time", rfc3339(e.recorded_at));
    headers.add("ce-datacontenttype", "application/json");
    headers.add("troupe-position", std::to_string(e.position.value));
    headers.add("troupe-stream-version", std::to_string(e.version.value));
    // The event before this one in the global order: with it an ordered
    // consumer tells a redelivered duplicate from a gap (a message that a
    // failed round will re-send later) and fills the gap from the store.
    headers.add("troupe-previous-position", std::to_string(previous.value));
    headers.add("troupe-schema-version", std::to_string(e.schema_version));
    headers.add("troupe-correlation-id", e.metadata.correlation_id);
    natsMsg* msg = nullptr;
    natsStatus s = headers.create(&msg, subject.c_str(), e.data);
    if (s == NATS_OK && options.lose_publish && options.lose_publish(e)) {
      natsMsg_Destroy(msg);
      return true;
    }
    if (s == NATS_OK)
      s = acknowledged ? js_PublishMsgAsync(js, &msg, nullptr)
                       : natsConnection_PublishMsg(connection, msg);
    if (msg != nullptr) natsMsg_Destroy(msg);  // still ours after a failed or plain publish
    if (s != NATS_OK) {
      log->warn("cannot publish event {}: {}", e.event_id, nats_error(s));
      return false;
    }
    return true;
  }

  void wake() {
    std::lock_guard lock(ack_mutex);
    ack_arrived.notify_all();
  }

  /// Waits until the oldest round is acknowledged, an error arrived, or
  /// `until` passed.
  void wait_for_front(std::chrono::steady_clock::time_point until) {
    std::unique_lock lock(ack_mutex);
    ack_arrived.wait_until(lock, until, [&] {
      return (!rounds.empty() && rounds.front().complete()) ||
             round_errors.load(std::memory_order_relaxed) > 0 || stopping;
    });
  }

  /// After an error or a timeout: lets what is in flight finish (or gives
  /// up on it) and forgets every round; they are sent again.
  void drain() {
    jsPubOptions wait;
    jsPubOptions_Init(&wait);
    wait.MaxWait = options.ack_timeout.count();
    natsStatus s = js_PublishAsyncComplete(js, &wait);
    if (s != NATS_OK) {
      natsMsgList pending{};
      if (js_PublishAsyncGetPendingList(&pending, js) == NATS_OK) natsMsgList_Destroy(&pending);
      log->warn("publish acknowledgements did not all arrive: {}", nats_error(s));
    }
    std::lock_guard lock(ack_mutex);
    rounds.clear();
    round_errors.store(0);
  }

  std::future<read_result> read_async(global_position after) {
    auto promise = std::make_shared<std::promise<read_result>>();
    auto future = promise->get_future();
    store->read_all(after, options.batch_size,
                    [promise](read_result r) { promise->set_value(std::move(r)); });
    return future;
  }

  std::atomic<int> saves_in_flight{0};
  std::vector<const recorded_event*> to_publish;  // a round's events, reused

  /// Sleeps until `until`, or less when an error arrived or stop() was called.
  void pause_until(std::chrono::steady_clock::time_point until) {
    std::unique_lock lock(ack_mutex);
    ack_arrived.wait_until(
        lock, until, [&] { return round_errors.load(std::memory_order_relaxed) > 0 || stopping; });
  }

  void save_checkpoint(global_position at) {
    checkpoint_saves.fetch_add(1, std::memory_order_relaxed);
    saves_in_flight.fetch_add(1);
    store->save_checkpoint(options.checkpoint_name, at, [this, at](store_errc e, std::string m) {
      if (e != store_errc::ok) {
        log->warn("publisher checkpoint {} not saved: {}", at.value, m);
      } else {
        auto seen = checkpoint.load();
        while (seen < at.value && !checkpoint.compare_exchange_weak(seen, at.value)) {
        }
      }
      saves_in_flight.fetch_sub(1);  // last: stop() may free us after this
    });
  }

  void run() {
    auto [error, position] = sync::load_checkpoint(*store, options.checkpoint_name);
    while (error != store_errc::ok && !stopping) {
      log->warn("publisher cannot read its checkpoint ({}); retrying", to_string(error));
      std::this_thread::sleep_for(options.retry_backoff);
      std::tie(error, position) = sync::load_checkpoint(*store, options.checkpoint_name);
    }
    checkpoint.store(position.value);
    log->info("publisher resumes after position {}", position.value);
    // A pipeline of rounds: while round N's acknowledgements are on their
    // way, round N+1 is published and N+2 read by the store's reader
    // thread. A round is confirmed (its checkpoint saved, without waiting)
    // once every one of its publishes is acknowledged. Any failed or late
    // acknowledgement sends everything again from the last confirmed round;
    // JetStream drops what it already has. At most max_pending publishes
    // are outstanding, so nats.c never stalls a publish.
    const std::size_t depth =
        std::max<std::size_t>(1, static_cast<std::size_t>(options.max_pending) /
                                     std::max<std::size_t>(1, options.batch_size));
    std::optional<std::future<read_result>> ahead;
    global_position next_from = position;  // reads continue after the last round sent
    global_position previous = position;   // of the last event sent
    bool crashed = false;
    using steady = std::chrono::steady_clock;
    global_position saved = position;  // the checkpoint in the store (or on its way)
    auto saved_at = steady::now();
    // A save is due once the interval since the last one has passed.
    auto save_due_at = [&] { return saved_at + options.checkpoint_interval; };
    auto next_read_at = steady::time_point{};  // pacing of rounds (min_round_interval)

    // Confirming rounds by sequence: the stream's sequence after everything
    // sent so far, when known; learned from the last publish of a
    // confirmed round (if new: a duplicate's sequence is an older message's)
    // once nothing was sent after it.
    bool by_sequence = options.confirm_by_sequence;
    std::optional<std::uint64_t> next_sequence;
    struct known_sequence {
      std::uint64_t sequence;
      global_position after;  // the round's last publish
    };
    std::optional<known_sequence> learned;
    std::int64_t mismatches_seen = 0;
    int mismatches_in_a_row = 0;

    auto reset = [&] {
      if (ahead) ahead->wait();
      ahead.reset();
      drain();
      next_from = previous = position;
      next_sequence.reset();
      learned.reset();
      if (auto m = sequence_mismatches.load(); m > mismatches_seen) {
        mismatches_seen = m;
        // Three in a row: something else writes to the stream; stop guessing.
        if (++mismatches_in_a_row >= 3 && by_sequence) {
          by_sequence = false;
          log->warn(
              "publisher: stream {} keeps growing by other than this publisher's rounds "
              "(another writer?); every publish is acknowledged from now on",
              options.stream_name);
        }
      }
      failed_rounds.fetch_add(1, std::memory_order_relaxed);
      std::this_thread::sleep_for(options.retry_backoff);
    };
    // Pops the acknowledged rounds at the front, oldest first.
    auto confirmed = [&] {
      std::vector<round_state> done;
      std::lock_guard lock(ack_mutex);
      while (!rounds.empty() && rounds.front().complete()) {
        done.push_back(rounds.front());
        rounds.pop_front();
      }
      return done;
    };
    auto front_overdue = [&] {
      std::lock_guard lock(ack_mutex);
      return !rounds.empty() &&
             std::chrono::steady_clock::now() - rounds.front().sent_at > options.ack_timeout;
    };
    auto in_flight = [&] {
      std::lock_guard lock(ack_mutex);
      return rounds.size();
    };
    auto front_deadline = [&] {
      std::lock_guard lock(ack_mutex);
      return rounds.empty() ? std::chrono::steady_clock::now() + options.poll_interval
                            : rounds.front().sent_at + options.ack_timeout;
    };

    while (!stopping) {
      if (round_errors.load(std::memory_order_relaxed) > 0) {
        reset();
        continue;
      }
      for (const auto& round : confirmed()) {
        if (options.crash_before_checkpoint && options.crash_before_checkpoint()) {
          log->warn("publisher: simulated crash before saving checkpoint {}", round.last.value);
          crashed = true;
          break;
        }
        position = round.last;
        if (round.publishes == 0) continue;
        if (round.by_sequence) mismatches_in_a_row = 0;
        if (round.last_new)
          learned = known_sequence{round.last_sequence, global_position{round.last_published}};
        else
          learned.reset();
      }
      if (crashed) break;
      if (position.value > saved.value && steady::now() >= save_due_at()) {
        save_checkpoint(position);
        saved = position;
        saved_at = steady::now();
      }
      if (front_overdue()) {
        log->warn("publish acknowledgements did not arrive within {} ms",
                  options.ack_timeout.count());
        reset();
        continue;
      }
      if (in_flight() >= depth) {
        wait_for_front(front_deadline());
        continue;
      }

      if (!ahead && steady::now() < next_read_at) {
        pause_until(next_read_at);
        continue;
      }
      auto read_started = steady::now();
      auto read = ahead ? ahead->get() : sync::read_all(*store, next_from, options.batch_size);
      ahead.reset();
      if (read.error != store_errc::ok) {
        failed_rounds.fetch_add(1, std::memory_order_relaxed);
        std::this_thread::sleep_for(options.retry_backoff);
        continue;
      }
      if (read.events.empty()) {
        // Idle: wait for new events, but not past a checkpoint save due.
        auto pause = options.poll_interval;
        if (position.value > saved.value)
          pause = std::clamp(
              std::chrono::ceil<std::chrono::milliseconds>(save_due_at() - steady::now()),
              std::chrono::milliseconds{1}, pause);
        if (in_flight() > 0)
          wait_for_front(std::min(steady::now() + pause, front_deadline()));
        else if (options.new_events)
          options.new_events->wait_for(pause);
        else
          pause_until(steady::now() + pause);
        continue;
      }
      rounds_read.fetch_add(1, std::memory_order_relaxed);
      auto last = read.events.back().position;
      if (read.events.size() == options.batch_size)
        ahead = read_async(last);
      else
        next_read_at = read_started + options.min_round_interval;
      to_publish.clear();
      for (const auto& e : read.events)
        if (options.internal_categories.empty() ||
            !options.internal_categories.contains(std::string(stream_category(e.stream_id))))
          to_publish.push_back(&e);  // internal ones (saga inputs) are not for consumers
      if (by_sequence && !next_sequence && learned && learned->after == previous)
        next_sequence = learned->sequence;
      round_state round{
          .first = read.events.front().position, .last = last, .sent_at = steady::now()};
      round.publishes = static_cast<std::int64_t>(to_publish.size());
      if (!to_publish.empty()) round.last_published = to_publish.back()->position.value;
      round.by_sequence = next_sequence.has_value() && !to_publish.empty();
      if (round.by_sequence) round.final_sequence = *next_sequence + to_publish.size();
      {
        std::lock_guard lock(ack_mutex);
        rounds.push_back(round);
      }
      bool sent = true;
      for (const auto* e : to_publish) {
        sent = publish(*e, previous, !round.by_sequence || e == to_publish.back());
        if (!sent) break;
        previous = e->position;
      }
      if (round.by_sequence) next_sequence = round.final_sequence;
      if (!sent) {
        reset();
        continue;
      }
      next_from = last;
      {
        std::lock_guard lock(ack_mutex);
        rounds.back().all_sent = true;
        if (rounds.size() == 1 && rounds.front().complete()) ack_arrived.notify_all();
      }
    }
    if (ahead) ahead->wait();
    if (!crashed) {
      // Finish what is in flight, then leave with the last checkpoint saved
      // (a failed save is retried once here; the next start re-sends from
      // an older one at worst).
      if (in_flight() > 0) {
        jsPubOptions wait;
        jsPubOptions_Init(&wait);
        wait.MaxWait = options.ack_timeout.count();
        js_PublishAsyncComplete(js, &wait);
        if (round_errors.load() == 0)
          for (const auto& round : confirmed()) position = round.last;
      }
      if (position.value > checkpoint.load())
        sync::save_checkpoint(*store, options.checkpoint_name, position);
    }
    alive = false;
  }
};

event_publisher::event_publisher(std::shared_ptr<event_store> store, publisher_options options)
    : impl_(new impl) {
  impl_->store = std::move(store);
  impl_->options = std::move(options);
  impl_->log = impl_->options.log ? impl_->options.log : spdlog::default_logger();
}

event_publisher::~event_publisher() { stop(); }

void event_publisher::start() {
  auto& im = *impl_;
  if (im.alive) return;
  im.connect();
  im.ensure_stream();
  im.alive = true;
  im.thread = std::thread([&im] {
    pthread_setname_np(pthread_self(), "troupe.publish");
    im.run();
  });
}

void event_publisher::stop() {
  auto& im = *impl_;
  im.stopping = true;
  im.wake();
  // It may be waiting for new events (a spare notify only wakes the next
  // publisher of this node once, early).
  if (im.options.new_events) im.options.new_events->notify();
  if (im.thread.joinable()) im.thread.join();
  // Checkpoint saves still in the store call back into us; the store calls
  // every callback exactly once, so this ends (slowly if the store is slow).
  for (int i = 1; im.saves_in_flight.load() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
    if (i % 1000 == 0)
      im.log->warn("publisher stopping: {} checkpoint saves still in the store",
                   im.saves_in_flight.load());
  }
  if (im.js != nullptr) {
    jsCtx_Destroy(im.js);
    im.js = nullptr;
  }
  if (im.connection != nullptr) {
    natsConnection_Destroy(im.connection);
    im.connection = nullptr;
  }
}

bool event_publisher::running() const { return impl_->alive; }

bool event_publisher::connected() const {
  // The connection lives from start() to stop(); its status is thread-safe.
  return impl_->alive && impl_->connection != nullptr &&
         natsConnection_Status(impl_->connection) == NATS_CONN_STATUS_CONNECTED;
}

publisher_stats event_publisher::stats() const {
  publisher_stats s;
  s.published = impl_->published.load();
  s.duplicates = impl_->duplicates.load();
  s.failed_rounds = impl_->failed_rounds.load();
  s.checkpoint = impl_->checkpoint.load();
  s.rounds = impl_->rounds_read.load();
  s.checkpoint_saves = impl_->checkpoint_saves.load();
  s.rounds_by_sequence = impl_->rounds_by_sequence.load();
  s.sequence_mismatches = impl_->sequence_mismatches.load();
  return s;
}

}  // namespace troupe
