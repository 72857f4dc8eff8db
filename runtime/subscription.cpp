#include "runtime/subscription.hpp"

#include <pthread.h>

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "runtime/src/nats_support.hpp"
#include "runtime/src/received_headers.hpp"

namespace troupe {

using detail::nats_error;

namespace {

/// Names the thread for profilers and top -H (at most 15 characters).
void name_thread(const char* name) { pthread_setname_np(pthread_self(), name); }

bool parse_int(std::optional<std::string_view> text, std::int64_t& out) {
  if (!text) return false;
  auto end = text->data() + text->size();
  auto [ptr, ec] = std::from_chars(text->data(), end, out);
  return ec == std::errc{} && ptr == end;
}

/// "2026-11-26T09:13:04.123456Z" (what the publisher writes).
bool parse_time(std::optional<std::string_view> text, clock_type::time_point& out) {
  // A header value is not NUL-terminated where it arrived: copy it out.
  std::array<char, 40> buffer{};
  if (!text || text->size() >= buffer.size()) return false;
  std::copy(text->begin(), text->end(), buffer.begin());
  std::tm utc{};
  int micros = 0;
  if (std::sscanf(buffer.data(), "%4d-%2d-%2dT%2d:%2d:%2d.%6dZ", &utc.tm_year, &utc.tm_mon,
                  &utc.tm_mday, &utc.tm_hour, &utc.tm_min, &utc.tm_sec, &micros) != 7)
    return false;
  utc.tm_year -= 1900;
  utc.tm_mon -= 1;
  auto seconds = timegm(&utc);
  out = clock_type::time_point{std::chrono::duration_cast<clock_type::duration>(
      std::chrono::seconds{seconds} + std::chrono::microseconds{micros})};
  return true;
}

/// Rebuilds the recorded event from a message; empty string when fine,
/// otherwise what is wrong.
std::string decode(natsMsg* msg, delivery& d) {
  auto& e = d.event;
  detail::received_headers headers(msg);
  auto id = headers.get("ce-id");
  auto stream = headers.get("ce-subject");
  auto type = headers.get("ce-type");
  if (!id || !stream || !type) return "missing CloudEvents headers (ce-id, ce-subject, ce-type)";
  e.event_id = *id;
  e.stream_id = *stream;
  e.type = *type;
  std::int64_t n = 0;
  if (!parse_int(headers.get("troupe-position"), n) || n <= 0)
    return "missing or invalid troupe-position header";
  e.position = global_position{n};
  if (!parse_int(headers.get("troupe-stream-version"), n) || n <= 0)
    return "missing or invalid troupe-stream-version header";
  e.version = stream_version{n};
  if (!parse_int(headers.get("troupe-schema-version"), n) || n <= 0)
    return "missing or invalid troupe-schema-version header";
  e.schema_version = static_cast<int>(n);
  if (parse_int(headers.get("troupe-previous-position"), n)) d.previous = global_position{n};
  if (auto correlation = headers.get("troupe-correlation-id"))
    e.metadata.correlation_id = *correlation;
  parse_time(headers.get("ce-time"), e.recorded_at);
  e.data.assign(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
  return {};
}

}  // namespace

struct subscription::impl {
  subscription_options options;
  handler on_batch;
  dead_letter_sink park;
  std::shared_ptr<spdlog::logger> log;

  natsConnection* connection = nullptr;
  jsCtx* js = nullptr;
  natsSubscription* sub = nullptr;
  std::thread thread;
  std::atomic<bool> stopping{false};
  std::atomic<bool> alive{false};

  std::atomic<std::int64_t> delivered{0}, acked{0}, retried{0}, parked{0}, in_flight{0},
      consumer_lag{0}, fetch_errors{0};

  void connect() {
    connection = detail::connect_nats(options.nats_url);
    natsStatus s = natsConnection_JetStream(&js, connection, nullptr);
    if (s != NATS_OK) throw std::runtime_error("cannot open JetStream: " + nats_error(s));
  }

  /// Creates the durable consumer, or brings it to the configured settings;
  /// then binds a pull subscription to it (binding never deletes it).
  void ensure_consumer() {
    jsConsumerConfig config;
    jsConsumerConfig_Init(&config);
    config.Durable = options.durable.c_str();
    config.DeliverPolicy = js_DeliverAll;
    config.AckPolicy = options.cumulative_acks ? js_AckAll : js_AckExplicit;
    config.AckWait = std::chrono::duration_cast<std::chrono::nanoseconds>(options.ack_wait).count();
    config.MaxDeliver = -1;  // we park after max_attempts ourselves, keeping the message
    config.MaxAckPending = static_cast<int64_t>(options.max_in_flight);
    if (!options.filter_subject.empty()) config.FilterSubject = options.filter_subject.c_str();
    jsConsumerInfo* info = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    natsStatus s = js_AddConsumer(&info, js, options.stream.c_str(), &config, nullptr, &code);
    if (s != NATS_OK) {
      code = static_cast<jsErrCode>(0);
      s = js_UpdateConsumer(&info, js, options.stream.c_str(), &config, nullptr, &code);
    }
    if (info != nullptr) jsConsumerInfo_Destroy(info);
    if (s != NATS_OK)
      throw std::runtime_error("cannot create or update consumer " + options.durable +
                               " on stream " + options.stream + ": " + nats_error(s, code));
    jsSubOptions sub_options;
    jsSubOptions_Init(&sub_options);
    sub_options.Stream = options.stream.c_str();
    sub_options.Consumer = options.durable.c_str();
    code = static_cast<jsErrCode>(0);
    s = js_PullSubscribe(&sub, js, nullptr, options.durable.c_str(), nullptr, &sub_options, &code);
    if (s != NATS_OK)
      throw std::runtime_error("cannot bind to consumer " + options.durable + ": " +
                               nats_error(s, code));
  }

  std::chrono::milliseconds backoff(int attempt) const {
    auto delay = options.backoff_base;
    for (int i = 1; i < attempt && delay < options.backoff_max; ++i) delay *= 2;
    return std::min(delay, options.backoff_max);
  }

  /// A fetched batch, decoded, waiting for the handler.
  struct fetched {
    natsMsgList list{};
    std::vector<delivery> batch;
  };
  std::mutex queue_mutex;
  std::condition_variable queue_changed;
  std::deque<fetched> queue;  // at most one batch ahead of the handler
  std::thread fetcher;
  std::atomic<bool> warned_oversized_fetch{false};

  std::size_t fetch_size() const { return std::max<std::size_t>(1, options.max_in_flight / 2); }

  /// The batch to pass to natsSubscription_Fetch, which is also the room
  /// nats.c allocates for the messages it returns. nats.c 3.4.1 (Debian)
  /// first collects the messages already waiting in the subscription (late
  /// answers to earlier fetches) without checking that room, and writes past
  /// it (seen: 408 messages returned for a fetch of 250, the heap corrupted,
  /// the node crashing later elsewhere). So when messages are waiting, ask
  /// for all of them plus max_in_flight (the most the server can send us
  /// unacknowledged, in case more land meanwhile); otherwise the normal
  /// batch, half of max_in_flight, so the next batch fits beside the one
  /// being handled. (Asking for more than the server can send would make
  /// every fetch wait its full timeout.)
  int fetch_room() const {
    int waiting = 0, bytes = 0;
    if (natsSubscription_GetPending(sub, &waiting, &bytes) != NATS_OK) waiting = 0;
    return waiting > 0 ? waiting + static_cast<int>(options.max_in_flight)
                       : static_cast<int>(fetch_size());
  }

  /// The fetcher thread: fetches and decodes the next batch while the
  /// handler works on the current one (its database round trips overlap
  /// the server's delivery), one batch ahead at most.
  void fetch_loop() {
    while (!stopping) {
      {
        std::unique_lock lock(queue_mutex);
        queue_changed.wait(lock, [&] { return stopping || queue.empty(); });
        if (stopping) break;
      }
      // No fetch requests while the connection is down: nats.c reconnects
      // by itself, and the consumer keeps its place.
      if (natsConnection_Status(connection) != NATS_CONN_STATUS_CONNECTED) {
        std::this_thread::sleep_for(std::chrono::milliseconds{50});
        continue;
      }
      fetched f;
      jsErrCode code = static_cast<jsErrCode>(0);
      const int room = fetch_room();
      natsStatus s = natsSubscription_Fetch(&f.list, sub, room, options.fetch_wait.count(), &code);
      if (s == NATS_TIMEOUT) continue;
      if (s != NATS_OK) {
        fetch_errors.fetch_add(1, std::memory_order_relaxed);
        log->warn("subscription {}: fetch failed: {}", options.durable, nats_error(s, code));
        std::this_thread::sleep_for(options.backoff_base);
        continue;
      }
      // Should nats.c still report more messages than it had room for (see
      // fetch_room), the slots past the room are not messages: touching
      // them, or letting natsMsgList_Destroy free them, corrupts the heap.
      {
        if (f.list.Count > room && !warned_oversized_fetch.exchange(true))
          log->warn(
              "subscription {}: nats.c returned {} messages for a fetch of {}; the rest "
              "are ignored (they are redelivered)",
              options.durable, f.list.Count, room);
        int kept = 0;
        for (int i = 0; i < std::min(f.list.Count, room); ++i)
          if (f.list.Msgs[i] != nullptr) f.list.Msgs[kept++] = f.list.Msgs[i];
        f.list.Count = kept;
      }
      f.batch.resize(static_cast<std::size_t>(f.list.Count));
      for (int i = 0; i < f.list.Count; ++i) {
        auto& d = f.batch[static_cast<std::size_t>(i)];
        jsMsgMetaData* meta = nullptr;
        if (natsMsg_GetMetaData(&meta, f.list.Msgs[i]) == NATS_OK) {
          d.stream_sequence = meta->Sequence.Stream;
          d.attempt = static_cast<int>(meta->NumDelivered);
          d.pending = static_cast<std::int64_t>(meta->NumPending);
          jsMsgMetaData_Destroy(meta);
        }
        d.malformed = decode(f.list.Msgs[i], d);
      }
      if (!f.batch.empty()) consumer_lag.store(f.batch.back().pending, std::memory_order_relaxed);
      delivered.fetch_add(f.list.Count, std::memory_order_relaxed);
      in_flight.fetch_add(f.list.Count, std::memory_order_relaxed);
      {
        std::lock_guard lock(queue_mutex);
        queue.push_back(std::move(f));
      }
      queue_changed.notify_all();
    }
  }

  /// Hands back what was fetched but not handled: NAKed so it is
  /// redelivered at once to whoever consumes next, not after the ack wait.
  void release_queued() {
    std::lock_guard lock(queue_mutex);
    for (auto& f : queue) {
      for (int i = 0; i < f.list.Count; ++i) natsMsg_Nak(f.list.Msgs[i], nullptr);
      natsMsgList_Destroy(&f.list);
    }
    queue.clear();
  }

  void run() {
    fetcher = std::thread([this] {
      name_thread("troupe.fetch");
      fetch_loop();
    });
    std::vector<verdict> verdicts;
    bool abandoned = false;
    while (!stopping) {
      fetched f;
      {
        std::unique_lock lock(queue_mutex);
        if (!queue_changed.wait_for(lock, options.fetch_wait,
                                    [&] { return stopping || !queue.empty(); }) ||
            queue.empty())
          continue;
        f = std::move(queue.front());
        queue.pop_front();
      }
      queue_changed.notify_all();  // the fetcher may go ahead
      verdicts.assign(f.batch.size(), verdict::ack());
      for (std::size_t i = 0; i < f.batch.size(); ++i)
        if (!f.batch[i].malformed.empty()) verdicts[i] = verdict::park(f.batch[i].malformed);
      try {
        on_batch(f.batch, verdicts);
      } catch (const abandon_subscription&) {
        abandoned = true;
      } catch (const std::exception& e) {
        log->warn("subscription {}: handler failed, batch comes back: {}", options.durable,
                  e.what());
        for (auto& v : verdicts) v = verdict::retry(e.what());
      }
      if (abandoned) {
        log->warn("subscription {}: abandoned with {} messages unacknowledged", options.durable,
                  f.list.Count);
        natsMsgList_Destroy(&f.list);
        break;
      }
      settle(f.list, f.batch, verdicts);
      natsMsgList_Destroy(&f.list);
      in_flight.fetch_sub(static_cast<std::int64_t>(f.batch.size()), std::memory_order_relaxed);
    }
    {
      std::lock_guard lock(queue_mutex);  // so the fetcher cannot miss the wake-up
      stopping = true;                    // an abandoned run stops the fetcher too
    }
    queue_changed.notify_all();
    fetcher.join();
    if (abandoned) {
      std::lock_guard lock(queue_mutex);  // a crash acknowledges nothing, NAKs nothing
      for (auto& f : queue) natsMsgList_Destroy(&f.list);
      queue.clear();
    } else {
      release_queued();
    }
    alive = false;
  }

  void settle(natsMsgList& list, std::span<const delivery> batch, std::span<verdict> verdicts) {
    // With cumulative acks, acknowledging the last acked message covers
    // every earlier one; a retried message breaks the run.
    int last_ack = -1;
    for (int i = 0; i < list.Count; ++i) {
      auto& v = verdicts[static_cast<std::size_t>(i)];
      auto* msg = list.Msgs[i];
      const auto& d = batch[static_cast<std::size_t>(i)];
      if (v.what == verdict::kind::retry && options.cumulative_acks) {
        // A later cumulative ack would cover the NAK: park instead (kept,
        // replayable), never lose it.
        v = verdict::park(v.error + " (retry is not possible with cumulative acks)");
      }
      if (v.what == verdict::kind::retry && d.attempt < options.max_attempts) {
        if (options.cumulative_acks && last_ack >= 0) ack(list.Msgs[last_ack]);
        last_ack = -1;
        natsMsg_NakWithDelay(msg, backoff(d.attempt).count(), nullptr);
        retried.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      if (v.what != verdict::kind::ack) {
        auto why = v.what == verdict::kind::retry
                       ? v.error + " (gave up after " + std::to_string(d.attempt) + " attempts)"
                       : v.error;
        if (!park(d, why)) {
          if (options.cumulative_acks && last_ack >= 0) ack(list.Msgs[last_ack]);
          last_ack = -1;
          natsMsg_NakWithDelay(msg, backoff(d.attempt).count(), nullptr);
          retried.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        parked.fetch_add(1, std::memory_order_relaxed);
        log->warn("subscription {}: event {} ({}) parked as a dead letter: {}", options.durable,
                  d.event.event_id, d.event.type, why);
      }
      if (options.cumulative_acks) {
        last_ack = i;
        acked.fetch_add(1, std::memory_order_relaxed);
      } else {
        ack(msg);
      }
    }
    if (options.cumulative_acks && last_ack >= 0) ack(list.Msgs[last_ack]);
  }

  void ack(natsMsg* msg) {
    if (natsMsg_Ack(msg, nullptr) == NATS_OK) {
      if (!options.cumulative_acks) acked.fetch_add(1, std::memory_order_relaxed);
    }
  }
};

subscription::subscription(subscription_options options, handler on_batch, dead_letter_sink park)
    : impl_(new impl) {
  impl_->options = std::move(options);
  impl_->on_batch = std::move(on_batch);
  impl_->park = std::move(park);
  impl_->log = impl_->options.log ? impl_->options.log : spdlog::default_logger();
  if (impl_->options.durable.empty())
    throw std::invalid_argument("a subscription needs a durable consumer name");
  if (impl_->options.max_in_flight == 0 || impl_->options.max_in_flight > 100000)
    throw std::invalid_argument("subscription max_in_flight must be 1..100000");
}

subscription::~subscription() { stop(); }

void subscription::start() {
  auto& im = *impl_;
  if (im.alive) return;
  im.connect();
  im.ensure_consumer();
  im.stopping = false;
  im.alive = true;
  im.thread = std::thread([&im] {
    name_thread("troupe.consume");
    im.run();
  });
}

void subscription::stop() {
  auto& im = *impl_;
  {
    std::lock_guard lock(im.queue_mutex);
    im.stopping = true;
  }
  im.queue_changed.notify_all();
  if (im.thread.joinable()) im.thread.join();
  if (im.connection != nullptr) natsConnection_Flush(im.connection);  // acks out before we go
  if (im.sub != nullptr) {
    natsSubscription_Destroy(im.sub);  // not Unsubscribe: the durable consumer stays
    im.sub = nullptr;
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

bool subscription::running() const { return impl_->alive; }

subscription_stats subscription::stats() const {
  auto& im = *impl_;
  subscription_stats s;
  s.delivered = im.delivered.load();
  s.acked = im.acked.load();
  s.retried = im.retried.load();
  s.parked = im.parked.load();
  s.in_flight = im.in_flight.load();
  s.consumer_lag = im.consumer_lag.load();
  s.fetch_errors = im.fetch_errors.load();
  return s;
}

void subscription::delete_consumer(const std::string& nats_url, const std::string& stream,
                                   const std::string& durable) {
  natsConnection* connection = nullptr;
  jsCtx* js = nullptr;
  natsStatus s = natsConnection_ConnectTo(&connection, nats_url.c_str());
  if (s == NATS_OK) s = natsConnection_JetStream(&js, connection, nullptr);
  jsErrCode code = static_cast<jsErrCode>(0);
  if (s == NATS_OK) s = js_DeleteConsumer(js, stream.c_str(), durable.c_str(), nullptr, &code);
  if (js != nullptr) jsCtx_Destroy(js);
  if (connection != nullptr) natsConnection_Destroy(connection);
  if (s != NATS_OK && s != NATS_NOT_FOUND)
    throw std::runtime_error("cannot delete consumer " + durable + ": " + nats_error(s, code));
}

}  // namespace troupe
