// publish: events/s of the publisher (read the global order from PostgreSQL,
// publish to JetStream with headers, wait for acknowledgements, save the
// checkpoint) beside the raw limit measured in the same run: nats.c
// asynchronous JetStream publishes of messages of the same subjects, sizes
// and headers, with the same bound on unacknowledged publishes.
// Goal (issue 4): >= 70% of the raw figure.
//
// Needs TROUPE_POSTGRES_URL and TROUPE_NATS_URL (scripts/bench sets them).

#include <nats/nats.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <pqxx/pqxx>
#include <thread>

#include "bench/bench_env.hpp"
#include "bench/nats_env.hpp"
#include "bench/result.hpp"
#include "persistence/postgres_event_store.hpp"
#include "persistence/sync.hpp"
#include "runtime/logging.hpp"
#include "runtime/publisher.hpp"
#include "runtime/uuid.hpp"

namespace {

using troupe::bench::env;

using steady = std::chrono::steady_clock;
constexpr const char* bench_database = "troupe_bench_publish";

std::string bench_url() { return troupe::bench::database_url(bench_database); }

void recreate_database() { troupe::bench::recreate_database(bench_database); }

/// `count` events of a realistic size over 1,000 streams.
void seed(troupe::event_store& store, int count) {
  std::vector<std::int64_t> versions(1000, 0);
  std::atomic<int> pending{0};
  for (int i = 0; i < count; ++i) {
    auto s = i % 1000;
    troupe::append_request r;
    r.stream_id = "book-bench" + std::to_string(s);
    r.expected = troupe::expected_version::exact(troupe::stream_version{versions[s]++});
    r.recorded_at = troupe::clock_type::now();
    r.metadata.command_id = troupe::new_uuid();
    r.metadata.correlation_id = r.metadata.command_id;
    r.events.push_back({troupe::new_uuid(), "stock_added", 1,
                        R"({"book_id":"bench)" + std::to_string(s) + R"(","quantity":1})"});
    while (pending.load() > 2000) std::this_thread::yield();
    ++pending;
    store.append(std::move(r), [&](troupe::append_result res) {
      if (res.error != troupe::store_errc::ok) {
        std::fprintf(stderr, "seeding failed: %s\n", res.message.c_str());
        std::exit(1);
      }
      --pending;
    });
  }
  while (pending.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds{5});
}

/// Publisher: from checkpoint 0 to the end of `count` events.
double publisher_rate(std::shared_ptr<troupe::event_store> store, const std::string& stream,
                      const std::string& checkpoint, std::int64_t last_position) {
  troupe::publisher_options o;
  o.nats_url = env("TROUPE_NATS_URL");
  o.stream_name = stream;
  o.subject_prefix = "bench" + stream + ".events";
  o.checkpoint_name = checkpoint;
  o.log = troupe::logger("publisher");
  troupe::event_publisher publisher(store, o);
  auto started = steady::now();
  publisher.start();
  while (publisher.stats().checkpoint < last_position)
    std::this_thread::sleep_for(std::chrono::milliseconds{1});
  auto seconds = std::chrono::duration<double>(steady::now() - started).count();
  publisher.stop();
  return static_cast<double>(publisher.stats().published) / seconds;
}

/// Raw: the same messages published asynchronously by nats.c, then all acks.
double raw_rate(const std::string& stream, int count, std::int64_t max_pending) {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  natsConnection_ConnectTo(&nc, env("TROUPE_NATS_URL").c_str());
  jsOptions o;
  jsOptions_Init(&o);
  o.PublishAsync.MaxPending = max_pending;
  natsConnection_JetStream(&js, nc, &o);
  jsStreamConfig config;
  jsStreamConfig_Init(&config);
  auto wildcard = "raw" + stream + ".>";
  const char* subjects[] = {wildcard.c_str()};
  config.Name = stream.c_str();
  config.Subjects = subjects;
  config.SubjectsLen = 1;
  config.Storage = js_FileStorage;
  config.Duplicates = 120'000'000'000LL;
  jsErrCode code = static_cast<jsErrCode>(0);
  jsStreamInfo* info = nullptr;
  js_AddStream(&info, js, &config, nullptr, &code);
  if (info != nullptr) jsStreamInfo_Destroy(info);
  auto subject = "raw" + stream + ".book.stock_added";
  auto started = steady::now();
  for (int i = 0; i < count; ++i) {
    auto id = troupe::new_uuid();
    std::string data = R"({"book_id":"bench)" + std::to_string(i % 1000) + R"(","quantity":1})";
    natsMsg* msg = nullptr;
    natsMsg_Create(&msg, subject.c_str(), nullptr, data.data(), static_cast<int>(data.size()));
    natsMsgHeader_Set(msg, "Nats-Msg-Id", id.c_str());
    natsMsgHeader_Set(msg, "ce-specversion", "1.0");
    natsMsgHeader_Set(msg, "ce-id", id.c_str());
    natsMsgHeader_Set(msg, "ce-source", "troupe/bench");
    natsMsgHeader_Set(msg, "ce-type", "stock_added");
    natsMsgHeader_Set(msg, "ce-subject", "book-bench0");
    natsMsgHeader_Set(msg, "ce-time", "2026-11-26T00:00:00.000000Z");
    natsMsgHeader_Set(msg, "ce-datacontenttype", "application/json");
    natsMsgHeader_Set(msg, "troupe-position", std::to_string(i + 1).c_str());
    natsMsgHeader_Set(msg, "troupe-stream-version", "1");
    natsMsgHeader_Set(msg, "troupe-schema-version", "1");
    natsMsgHeader_Set(msg, "troupe-correlation-id", id.c_str());
    if (js_PublishMsgAsync(js, &msg, nullptr) != NATS_OK) natsMsg_Destroy(msg);
  }
  jsPubOptions wait;
  jsPubOptions_Init(&wait);
  wait.MaxWait = 60000;
  js_PublishAsyncComplete(js, &wait);
  auto seconds = std::chrono::duration<double>(steady::now() - started).count();
  js_DeleteStream(js, stream.c_str(), nullptr, &code);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return count / seconds;
}

}  // namespace

int main(int argc, char** argv) {
  int count = argc > 1 ? std::atoi(argv[1]) : 100'000;
  int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  troupe::setup_logging("warn", "text");
  recreate_database();
  troupe::postgres_store_options so;
  so.url = bench_url();
  so.log = troupe::logger("store");
  auto store = std::make_shared<troupe::postgres_event_store>(so);
  seed(*store, count);
  auto last = troupe::sync::read_all(*store, troupe::global_position{0}, SIZE_MAX);
  auto last_position = last.events.back().position.value;

  std::vector<double> ours, raw;
  for (int r = 0; r < rounds; ++r) {
    auto stream = "BENCH_PUB_" + std::to_string(r);
    raw.push_back(raw_rate("BENCH_RAW_" + std::to_string(r), count, 4000));
    ours.push_back(publisher_rate(store, stream, "bench-" + std::to_string(r), last_position));
    troupe::bench::delete_stream(stream);
    std::printf(
        "round %d: publisher %.0f events/s, raw JetStream async publish %.0f msgs/s (%.1f%%)\n",
        r + 1, ours.back(), raw.back(), 100 * ours.back() / raw.back());
    std::fflush(stdout);
  }
  std::printf("median of %d rounds of %d events (publisher batch 2000, max 4000 unacknowledged)\n",
              rounds, count);
  troupe::bench::print_result("jetstream_publish_limit", troupe::bench::median(raw), "msgs/s");
  troupe::bench::print_result("publish", troupe::bench::median(ours), "events/s",
                              troupe::bench::median(raw));
  store->stop();
  troupe::bench::drop_database(bench_database);
  return 0;
}
