// The publisher against real PostgreSQL and nats-server: every committed
// event reaches JetStream once by id, in per-stream order, with CloudEvents
// headers; a crash between publish and checkpoint re-sends without
// duplicates; a nats-server restart loses nothing; a round confirmed by its
// last publish's sequence finds a lost publish, and another writer on the
// stream.

#include "runtime/publisher.hpp"

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "persistence/postgres_event_store.hpp"
#include "persistence/sync.hpp"
#include "pg_env.hpp"
#include "runtime/uuid.hpp"
#include "runtime/wakeup_signal.hpp"
#include "tests/support/test_support.hpp"
#include "troupe_process.hpp"

namespace troupe {
namespace {

using test_support::unique;

/// Publishing waits up to 30 s: a restarted nats-server may take a while.
template <class Predicate>
bool eventually(Predicate done, std::chrono::seconds timeout = std::chrono::seconds{30}) {
  return test_support::eventually(done, timeout);
}

std::shared_ptr<postgres_event_store> make_store() {
  postgres_store_options o;
  o.url = integration::postgres_url();
  return std::make_shared<postgres_event_store>(std::move(o));
}

/// A publisher on a JetStream stream and subjects of its own, starting after
/// everything already in the (shared) test database.
struct test_publisher_setup {
  std::string run = unique("t");
  std::string stream = "TROUPE_TEST_" + run;
  std::string prefix = "troupetest" + run + ".events";
  std::string checkpoint = "publisher-test-" + run;

  publisher_options options() const {
    publisher_options o;
    o.nats_url = integration::required_env("TROUPE_NATS_URL");
    o.stream_name = stream;
    o.subject_prefix = prefix;
    o.checkpoint_name = checkpoint;
    o.poll_interval = std::chrono::milliseconds{5};
    o.retry_backoff = std::chrono::milliseconds{100};
    o.ack_timeout = std::chrono::milliseconds{2000};
    return o;
  }
};

/// Appends `per_stream` events to each of `streams` streams, interleaved.
std::vector<append_result> append_events(event_store& store, const std::string& run, int streams,
                                         int per_stream) {
  std::vector<append_result> results;
  for (int v = 0; v < per_stream; ++v)
    for (int s = 0; s < streams; ++s) {
      append_request r;
      r.stream_id = "thing-" + run + "-" + std::to_string(s);
      r.expected = expected_version::exact(stream_version{v});
      r.recorded_at = clock_type::now();
      r.metadata.command_id = new_uuid();
      r.metadata.correlation_id = "corr-" + run;
      r.events.push_back(
          new_event{new_uuid(), "thing_happened", 1, R"({"n":)" + std::to_string(v) + "}"});
      results.push_back(sync::append(store, std::move(r)));
      EXPECT_EQ(results.back().error, store_errc::ok) << results.back().message;
    }
  return results;
}

global_position current_end(event_store& store) {
  // The highest committed position: what the publisher must skip.
  auto after = global_position{0};
  while (true) {
    auto page = sync::read_all(store, after, 100000);
    if (page.events.empty()) return after;
    after = page.events.back().position;
  }
}

struct stream_message {
  std::string subject, event_id, ce_type, ce_subject, ce_specversion;
  std::int64_t position = 0, version = 0, previous = 0;
};

/// Every message of a JetStream stream, in stream order.
std::vector<stream_message> read_stream(const std::string& stream) {
  std::vector<stream_message> out;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  EXPECT_EQ(natsConnection_ConnectTo(&nc, integration::required_env("TROUPE_NATS_URL").c_str()),
            NATS_OK);
  EXPECT_EQ(natsConnection_JetStream(&js, nc, nullptr), NATS_OK);
  jsStreamInfo* info = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  EXPECT_EQ(js_GetStreamInfo(&info, js, stream.c_str(), nullptr, &code), NATS_OK);
  auto first = info->State.FirstSeq, last = info->State.LastSeq;
  jsStreamInfo_Destroy(info);
  for (auto seq = first; seq <= last && last > 0; ++seq) {
    natsMsg* msg = nullptr;
    if (js_GetMsg(&msg, js, stream.c_str(), seq, nullptr, &code) != NATS_OK) continue;
    stream_message m;
    m.subject = natsMsg_GetSubject(msg);
    auto header = [&](const char* key) {
      const char* value = nullptr;
      return natsMsgHeader_Get(msg, key, &value) == NATS_OK ? std::string(value) : std::string();
    };
    m.event_id = header("Nats-Msg-Id");
    m.ce_type = header("ce-type");
    m.ce_subject = header("ce-subject");
    m.ce_specversion = header("ce-specversion");
    m.position = std::stoll("0" + header("troupe-position"));
    m.version = std::stoll("0" + header("troupe-stream-version"));
    m.previous = std::stoll("0" + header("troupe-previous-position"));
    out.push_back(std::move(m));
    natsMsg_Destroy(msg);
  }
  code = static_cast<jsErrCode>(0);
  js_DeleteStream(js, stream.c_str(), nullptr, &code);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return out;
}

/// How many messages a JetStream stream holds (0 if it does not exist yet).
std::uint64_t stream_message_count(const std::string& stream) {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  std::uint64_t count = 0;
  if (natsConnection_ConnectTo(&nc, integration::required_env("TROUPE_NATS_URL").c_str()) ==
          NATS_OK &&
      natsConnection_JetStream(&js, nc, nullptr) == NATS_OK) {
    jsStreamInfo* info = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    if (js_GetStreamInfo(&info, js, stream.c_str(), nullptr, &code) == NATS_OK) {
      count = info->State.Msgs;
      jsStreamInfo_Destroy(info);
    }
  }
  if (js != nullptr) jsCtx_Destroy(js);
  if (nc != nullptr) natsConnection_Destroy(nc);
  return count;
}

/// Each appended event is in the stream exactly once, and each aggregate
/// stream's events are in version order.
void expect_exactly_once_in_order(const std::vector<stream_message>& messages,
                                  const std::vector<append_result>& appended,
                                  const std::string& prefix) {
  std::map<std::string, int> seen;
  for (const auto& m : messages) ++seen[m.event_id];
  EXPECT_EQ(messages.size(), appended.size());
  for (const auto& [id, count] : seen) EXPECT_EQ(count, 1) << "event " << id;
  std::map<std::string, std::int64_t> last_version;
  for (const auto& m : messages) {
    EXPECT_EQ(m.subject, prefix + ".thing.thing_happened");
    EXPECT_EQ(m.ce_type, "thing_happened");
    EXPECT_EQ(m.ce_specversion, "1.0");
    EXPECT_EQ(m.version, last_version[m.ce_subject] + 1) << m.ce_subject;
    last_version[m.ce_subject] = m.version;
  }
}

TEST(Publisher, EveryCommittedEventReachesJetStreamOnceInOrder) {
  auto store = make_store();
  test_publisher_setup setup;
  ASSERT_EQ(sync::save_checkpoint(*store, setup.checkpoint, current_end(*store)), store_errc::ok);
  auto appended = append_events(*store, setup.run, 10, 30);
  event_publisher publisher(store, setup.options());
  publisher.start();
  auto last = appended.back().last_position.value;
  ASSERT_TRUE(eventually([&] { return publisher.stats().checkpoint >= last; }))
      << "checkpoint " << publisher.stats().checkpoint << " of " << last;
  publisher.stop();
  EXPECT_EQ(sync::load_checkpoint(*store, setup.checkpoint).second.value, last);
  expect_exactly_once_in_order(read_stream(setup.stream), appended, setup.prefix);
}

TEST(Publisher, ACommitSignalWakesAnIdlePublisherBeforeItsPollInterval) {
  auto store = make_store();
  test_publisher_setup setup;
  ASSERT_EQ(sync::save_checkpoint(*store, setup.checkpoint, current_end(*store)), store_errc::ok);
  auto options = setup.options();
  options.poll_interval = std::chrono::seconds{60};  // the test's timeout is far shorter
  options.new_events = std::make_shared<wakeup_signal>();
  event_publisher publisher(store, options);
  publisher.start();
  // Let its first round find nothing, so that it waits (a round that finds
  // the events below would pass without the signal, not fail).
  std::this_thread::sleep_for(std::chrono::milliseconds{500});
  auto appended = append_events(*store, setup.run, 2, 3);
  options.new_events->notify();  // what the node's commit_watch does per commit
  auto last = appended.back().last_position.value;
  EXPECT_TRUE(
      eventually([&] { return publisher.stats().checkpoint >= last; }, std::chrono::seconds{20}))
      << "checkpoint " << publisher.stats().checkpoint << " of " << last
      << ": still asleep for its 60 s poll interval";
  publisher.stop();
}

TEST(Publisher, AWokenPublisherGathersATrickleOfCommitsIntoPacedRounds) {
  auto store = make_store();
  test_publisher_setup setup;
  ASSERT_EQ(sync::save_checkpoint(*store, setup.checkpoint, current_end(*store)), store_errc::ok);
  auto options = setup.options();
  options.poll_interval = std::chrono::seconds{60};
  options.new_events = std::make_shared<wakeup_signal>();
  options.min_round_interval = std::chrono::milliseconds{100};
  event_publisher publisher(store, options);
  publisher.start();
  // One commit at a time, each signalled as the node's commit_watch does:
  // unpaced, nearly every commit would be a round of its own.
  std::vector<append_result> appended;
  auto began = std::chrono::steady_clock::now();
  for (int i = 0; i < 150; ++i) {
    auto one = append_events(*store, setup.run + "-" + std::to_string(i), 1, 1);
    appended.push_back(one.front());
    options.new_events->notify();
  }
  auto last = appended.back().last_position.value;
  ASSERT_TRUE(eventually([&] { return publisher.stats().checkpoint >= last; }));
  auto elapsed = std::chrono::steady_clock::now() - began;
  auto rounds = publisher.stats().rounds;
  publisher.stop();
  // At most one round per interval, plus the first and the last.
  EXPECT_LE(rounds, elapsed / options.min_round_interval + 2)
      << "over " << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count() << " ms";
  auto messages = read_stream(setup.stream);
  ASSERT_EQ(messages.size(), appended.size());
  std::set<std::string> ids;
  for (const auto& m : messages) ids.insert(m.event_id);
  EXPECT_EQ(ids.size(), appended.size());
}

TEST(Publisher, TheCheckpointIsSavedOncePerIntervalAndWhenItStops) {
  auto store = make_store();
  test_publisher_setup setup;
  auto start = current_end(*store);
  ASSERT_EQ(sync::save_checkpoint(*store, setup.checkpoint, start), store_errc::ok);
  auto options = setup.options();
  options.checkpoint_interval = std::chrono::seconds{50};  // longer than the test
  event_publisher publisher(store, options);
  publisher.start();
  // Three rounds, each published and acknowledged before the next commit.
  std::vector<append_result> appended;
  for (int round = 0; round < 3; ++round) {
    for (auto& r : append_events(*store, setup.run + "-" + std::to_string(round), 2, 5))
      appended.push_back(r);
    ASSERT_TRUE(eventually([&] { return stream_message_count(setup.stream) >= appended.size(); }));
  }
  EXPECT_GE(publisher.stats().rounds, 3);
  EXPECT_EQ(publisher.stats().checkpoint_saves, 0);
  EXPECT_EQ(sync::load_checkpoint(*store, setup.checkpoint).second, start)
      << "saved before its interval";
  publisher.stop();
  EXPECT_EQ(sync::load_checkpoint(*store, setup.checkpoint).second.value,
            appended.back().last_position.value)
      << "a stop keeps what was acknowledged";
  EXPECT_EQ(read_stream(setup.stream).size(), appended.size());
}

TEST(Publisher, InternalCategoriesStayOutAndEachMessageNamesThePreviousOneSent) {
  auto store = make_store();
  test_publisher_setup setup;
  auto start = current_end(*store);
  ASSERT_EQ(sync::save_checkpoint(*store, setup.checkpoint, start), store_errc::ok);
  std::int64_t normal = 0;
  global_position last;
  for (int i = 0; i < 60; ++i) {
    bool internal = i % 3 != 0;
    append_request r;
    r.stream_id = (internal ? "sagainternal-" : "thing-") + setup.run + "-" + std::to_string(i);
    r.expected = expected_version::no_stream();
    r.recorded_at = clock_type::now();
    r.events.push_back(new_event{new_uuid(), "thing_happened", 1, "{}"});
    auto result = sync::append(*store, std::move(r));
    ASSERT_EQ(result.error, store_errc::ok);
    last = result.last_position;
    normal += internal ? 0 : 1;
  }
  auto options = setup.options();
  options.internal_categories = {"sagainternal"};
  event_publisher publisher(store, options);
  publisher.start();
  ASSERT_TRUE(eventually([&] { return publisher.stats().checkpoint >= last.value; }));
  publisher.stop();
  auto messages = read_stream(setup.stream);
  ASSERT_EQ(static_cast<std::int64_t>(messages.size()), normal);
  auto previous = start.value;
  for (const auto& m : messages) {
    EXPECT_EQ(m.subject.find("sagainternal"), std::string::npos) << m.subject;
    EXPECT_EQ(m.previous, previous) << "message at " << m.position;
    previous = m.position;
  }
}

/// Runs a publisher with `options` until every appended event is confirmed
/// (its checkpoint reaches the last one); its statistics then.
publisher_stats publish_all(std::shared_ptr<event_store> store, const publisher_options& options,
                            const std::vector<append_result>& appended) {
  event_publisher publisher(std::move(store), options);
  publisher.start();
  auto last = appended.back().last_position.value;
  EXPECT_TRUE(eventually([&] { return publisher.stats().checkpoint >= last; }))
      << "checkpoint " << publisher.stats().checkpoint << " of " << last;
  auto stats = publisher.stats();
  publisher.stop();
  return stats;
}

TEST(Publisher, ALostPublishIsFoundByTheRoundsSequenceAndSentAgain) {
  auto store = make_store();
  test_publisher_setup setup;
  ASSERT_EQ(sync::save_checkpoint(*store, setup.checkpoint, current_end(*store)), store_errc::ok);
  auto appended = append_events(*store, setup.run, 10, 20);
  auto options = setup.options();
  // Rounds of 20, one in flight: from the second round on the sequence is
  // known, so only each round's last publish is acknowledged.
  options.batch_size = 20;
  options.max_pending = 20;
  // Lost without a word, once: the 5th publish of the 6th round.
  auto lost = appended[104].last_position;
  std::atomic<int> losses{0};
  options.lose_publish = [&](const recorded_event& e) {
    return e.position == lost && losses.fetch_add(1) == 0;
  };
  auto stats = publish_all(store, options, appended);
  EXPECT_EQ(losses.load(), 2) << "the lost event should have been published a second time";
  EXPECT_EQ(stats.sequence_mismatches, 1);
  EXPECT_GE(stats.rounds_by_sequence, 5) << "rounds were not confirmed by sequence";
  // Every event once; the lost one landed after the rest of its round (the
  // round was sent again), and the message after it names it as previous,
  // so an ordered consumer sees the gap and fills it from the store.
  auto messages = read_stream(setup.stream);
  std::map<std::int64_t, int> seen;
  for (const auto& m : messages) ++seen[m.position];
  EXPECT_EQ(messages.size(), appended.size());
  for (const auto& a : appended) EXPECT_EQ(seen[a.last_position.value], 1) << a.last_position.value;
  auto at = [&](std::int64_t position) {
    return std::find_if(messages.begin(), messages.end(),
                        [&](const stream_message& m) { return m.position == position; });
  };
  auto next = at(appended[105].last_position.value);
  ASSERT_NE(next, messages.end());
  EXPECT_EQ(next->previous, lost.value);
  EXPECT_LT(next - messages.begin(), at(lost.value) - messages.begin());
}

TEST(Publisher, AnotherWriterOnTheStreamTurnsConfirmationBySequenceOff) {
  auto store = make_store();
  test_publisher_setup setup;
  ASSERT_EQ(sync::save_checkpoint(*store, setup.checkpoint, current_end(*store)), store_errc::ok);
  auto appended = append_events(*store, setup.run, 10, 20);
  natsConnection* nc = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&nc, integration::required_env("TROUPE_NATS_URL").c_str()),
            NATS_OK);
  jsCtx* js = nullptr;
  ASSERT_EQ(natsConnection_JetStream(&js, nc, nullptr), NATS_OK);
  auto options = setup.options();
  options.batch_size = 20;
  options.max_pending = 20;
  // Before each of the publisher's publishes, another writer's message is
  // stored in the stream.
  auto foreign_subject = setup.prefix + ".foreign.note";
  std::atomic<int> foreign{0};
  options.lose_publish = [&](const recorded_event&) {
    jsErrCode code = static_cast<jsErrCode>(0);
    if (js_Publish(nullptr, js, foreign_subject.c_str(), "{}", 2, nullptr, &code) == NATS_OK)
      ++foreign;
    return false;
  };
  auto stats = publish_all(store, options, appended);
  // Three rounds in a row found the stream grown by more than their own
  // messages; from then on each publish was acknowledged.
  EXPECT_EQ(stats.sequence_mismatches, 3);
  EXPECT_EQ(stats.rounds_by_sequence, 0);
  auto messages = read_stream(setup.stream);
  std::vector<stream_message> ours;
  for (auto& m : messages)
    if (m.subject != foreign_subject) ours.push_back(std::move(m));
  EXPECT_EQ(messages.size() - ours.size(), static_cast<std::size_t>(foreign.load()));
  expect_exactly_once_in_order(ours, appended, setup.prefix);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
}

TEST(Publisher, ACrashBeforeTheCheckpointResendsWithoutDuplicates) {
  auto store = make_store();
  test_publisher_setup setup;
  auto start = current_end(*store);
  ASSERT_EQ(sync::save_checkpoint(*store, setup.checkpoint, start), store_errc::ok);
  auto appended = append_events(*store, setup.run, 5, 40);
  auto crashing = setup.options();
  crashing.crash_before_checkpoint = [] { return true; };
  {
    event_publisher first(store, crashing);
    first.start();
    ASSERT_TRUE(eventually([&] { return !first.running(); }));
    EXPECT_GT(first.stats().published, 0);
  }
  // Published, acknowledged, but the checkpoint never moved.
  EXPECT_EQ(sync::load_checkpoint(*store, setup.checkpoint).second, start);
  event_publisher second(store, setup.options());
  second.start();
  auto last = appended.back().last_position.value;
  ASSERT_TRUE(eventually([&] { return second.stats().checkpoint >= last; }));
  EXPECT_GT(second.stats().duplicates, 0) << "the re-sent events should be dropped as duplicates";
  second.stop();
  expect_exactly_once_in_order(read_stream(setup.stream), appended, setup.prefix);
}

TEST(Publisher, AKilledPublisherProcessResumesWithoutLossOrDuplicates) {
  auto store = make_store();
  test_publisher_setup setup;
  ASSERT_EQ(sync::save_checkpoint(*store, setup.checkpoint, current_end(*store)), store_errc::ok);
  // Committed, not yet published: the node below publishes them in small
  // rounds so it can be killed part-way.
  auto appended = append_events(*store, setup.run, 25, 200);
  constexpr std::uint64_t total = 25 * 200;
  std::vector<std::string> sets{
      "publisher.stream=" + setup.stream, "publisher.subject_prefix=" + setup.prefix,
      "publisher.checkpoint=" + setup.checkpoint, "publisher.batch_size=20",
      "publisher.max_pending=20",
      // Only the publisher: on a shared database,
      // sagas recovered from other runs would
      // append (and publish) events of their own.
      "sagas.enabled=false", "projections.enabled=false", "log.level=warn"};
  auto node = integration::start_serve(sets);
  ASSERT_GT(node, 0);
  ASSERT_TRUE(eventually([&] { return stream_message_count(setup.stream) >= 200; }));
  ASSERT_EQ(kill(node, SIGKILL), 0);
  int status = 0;
  waitpid(node, &status, 0);
  auto at_kill = stream_message_count(setup.stream);
  RecordProperty("published_before_kill", static_cast<int>(at_kill));
  EXPECT_LT(at_kill, total) << "the node finished before it was killed; the test proved little";

  node = integration::start_serve(sets);
  ASSERT_GT(node, 0);
  EXPECT_TRUE(eventually([&] { return stream_message_count(setup.stream) >= total; },
                         std::chrono::seconds{60}));
  // A little longer: anything beyond `total` would be a duplicate.
  std::this_thread::sleep_for(std::chrono::milliseconds{300});
  kill(node, SIGTERM);
  waitpid(node, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  expect_exactly_once_in_order(read_stream(setup.stream), appended, setup.prefix);
}

TEST(Publisher, ANatsServerRestartLosesNothing) {
  auto store = make_store();
  test_publisher_setup setup;
  ASSERT_EQ(sync::save_checkpoint(*store, setup.checkpoint, current_end(*store)), store_errc::ok);
  event_publisher publisher(store, setup.options());
  publisher.start();
  std::vector<append_result> appended;
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    for (int round = 0; writing; ++round) {
      auto more = append_events(*store, setup.run + "-" + std::to_string(round), 4, 5);
      appended.insert(appended.end(), more.begin(), more.end());
      std::this_thread::sleep_for(std::chrono::milliseconds{20});
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds{300});
  ASSERT_TRUE(integration::services("stop nats"));
  std::this_thread::sleep_for(std::chrono::milliseconds{300});
  ASSERT_TRUE(integration::services("start nats"));
  std::this_thread::sleep_for(std::chrono::milliseconds{500});
  writing = false;
  writer.join();
  auto last = appended.back().last_position.value;
  ASSERT_TRUE(eventually([&] { return publisher.stats().checkpoint >= last; }))
      << "checkpoint " << publisher.stats().checkpoint << " of " << last;
  // nats.c buffers publishes while it reconnects, so a short restart may
  // fail no round at all; either way nothing may be missing.
  RecordProperty("failed_rounds", static_cast<int>(publisher.stats().failed_rounds));
  publisher.stop();
  auto messages = read_stream(setup.stream);
  std::set<std::string> ids;
  for (const auto& m : messages) ids.insert(m.event_id);
  EXPECT_EQ(ids.size(), messages.size()) << "duplicates in the stream";
  EXPECT_EQ(ids.size(), appended.size()) << "events missing from the stream";
}

}  // namespace
}  // namespace troupe
