#pragma once
// The subscription host: one durable JetStream pull consumer on the events
// stream, fetched on its own thread (nats.c calls block) and handed to a
// handler thread in batches of half of `max_in_flight`: one batch is being
// handled while the next is fetched and decoded. `max_in_flight` is also
// the consumer's MaxAckPending, so the server never has more outstanding.
//
// The handler gives each message a verdict:
//   ack    done; acknowledged
//   retry  failed; redelivered after an exponential backoff (NAK with a
//          delay), until `max_attempts` deliveries: then parked as a dead
//          letter and acknowledged, so a poison message never loops
//   park   failed for good (e.g. a validation error): parked at once
// Parking goes through the dead-letter sink (PostgreSQL in production); if
// the sink itself fails the message is NAKed and comes back, never dropped.
//
// Messages carry the publisher's headers: the recorded event is rebuilt
// from them, plus the position of the event published just before it
// (`troupe-previous-position`), which lets an ordered consumer (a
// projector) tell a duplicate from a gap.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "persistence/types.hpp"

namespace spdlog {
class logger;
}

namespace troupe {

struct subscription_options {
  std::string nats_url;
  std::string stream = "TROUPE_EVENTS";
  std::string durable;               // the consumer's name
  std::string filter_subject;        // empty: every subject of the stream
  std::size_t max_in_flight = 1000;  // fetch batch and MaxAckPending
  bool cumulative_acks = false;      // AckAll: for in-order consumers, one ack per batch
  std::chrono::milliseconds ack_wait{30000};
  std::chrono::milliseconds fetch_wait{250};
  int max_attempts = 5;  // deliveries before a message is parked
  std::chrono::milliseconds backoff_base{200};
  std::chrono::milliseconds backoff_max{10000};
  std::shared_ptr<spdlog::logger> log;
};

struct delivery {
  recorded_event event;
  global_position previous;  // the event published just before this one (0: none)
  std::uint64_t stream_sequence = 0;
  int attempt = 1;           // 1 on first delivery
  std::int64_t pending = 0;  // messages still waiting in the consumer after this one
  std::string malformed;     // non-empty: the headers could not be read (why)
};

struct verdict {
  enum class kind : std::uint8_t { ack, retry, park };
  kind what = kind::ack;
  std::string error;  // for retry and park
  static verdict ack() { return {}; }
  static verdict retry(std::string why) { return {kind::retry, std::move(why)}; }
  static verdict park(std::string why) { return {kind::park, std::move(why)}; }
};

struct subscription_stats {
  std::int64_t delivered = 0;
  std::int64_t acked = 0;
  std::int64_t retried = 0;
  std::int64_t parked = 0;
  std::int64_t in_flight = 0;     // handed to the handler, not yet acked (pending acks)
  std::int64_t consumer_lag = 0;  // messages waiting in the consumer (last fetch)
  std::int64_t fetch_errors = 0;
};

/// Thrown by a handler to end the subscription there without acknowledging
/// the batch in hand, as a crash would (fault tests).
struct abandon_subscription : std::exception {
  const char* what() const noexcept override { return "subscription abandoned"; }
};

class subscription {
 public:
  /// Sets the verdicts (one per delivery, pre-filled with ack). Runs on the
  /// subscription's thread; may block. Any other exception than
  /// abandon_subscription retries the whole batch.
  using handler = std::function<void(std::span<const delivery>, std::span<verdict>)>;
  /// Stores a dead letter; false when it could not (the message comes back).
  using dead_letter_sink = std::function<bool(const delivery&, const std::string& error)>;

  subscription(subscription_options options, handler on_batch, dead_letter_sink park);
  ~subscription();
  subscription(const subscription&) = delete;
  subscription& operator=(const subscription&) = delete;

  /// Connects, creates or updates the durable consumer, starts the thread.
  /// Throws std::runtime_error when NATS or the stream is not there.
  void start();
  /// Finishes the batch in hand and stops; the consumer stays (durable).
  void stop();
  /// False once stopped or abandoned.
  bool running() const;
  subscription_stats stats() const;

  /// Deletes a durable consumer (e.g. when a projection is dropped).
  static void delete_consumer(const std::string& nats_url, const std::string& stream,
                              const std::string& durable);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe
