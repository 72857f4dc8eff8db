// Reading a received message's headers from its wire bytes, against a real
// nats-server: the answers are nats.c's own (natsMsgHeader_Get), messages
// as consumers receive them (core and JetStream pull) take the wire path -
// so a nats.c upgrade that moves the bytes shows here, not as a slower
// node - and anything else falls back to nats.c.

#include "runtime/src/received_headers.hpp"

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pg_env.hpp"
#include "tests/support/test_support.hpp"

namespace troupe::detail {
namespace {

using test_support::unique;

struct connection_deleter {
  void operator()(natsConnection* c) const { natsConnection_Destroy(c); }
};
struct message_deleter {
  void operator()(natsMsg* m) const { natsMsg_Destroy(m); }
};
using connection_ptr = std::unique_ptr<natsConnection, connection_deleter>;
using message_ptr = std::unique_ptr<natsMsg, message_deleter>;

connection_ptr connect() {
  natsConnection* nc = nullptr;
  EXPECT_EQ(natsConnection_ConnectTo(&nc, integration::required_env("TROUPE_NATS_URL").c_str()),
            NATS_OK);
  return connection_ptr(nc);
}

/// Headers as a publisher sets them: a key added twice, values with spaces
/// inside and around, a long one.
message_ptr message_with_headers(const std::string& subject) {
  natsMsg* m = nullptr;
  EXPECT_EQ(natsMsg_Create(&m, subject.c_str(), nullptr, "{\"n\":1}", 7), NATS_OK);
  EXPECT_EQ(natsMsgHeader_Set(m, "ce-id", "0b7e6c2e-1b1a-4c55-9d8e-3f1f0f6d2a11"), NATS_OK);
  EXPECT_EQ(natsMsgHeader_Set(m, "ce-type", "order_placed"), NATS_OK);
  EXPECT_EQ(natsMsgHeader_Set(m, "troupe-position", "42"), NATS_OK);
  EXPECT_EQ(natsMsgHeader_Set(m, "spaced", "  a b  c  "), NATS_OK);
  EXPECT_EQ(natsMsgHeader_Add(m, "twice", "first"), NATS_OK);
  EXPECT_EQ(natsMsgHeader_Add(m, "twice", "second"), NATS_OK);
  EXPECT_EQ(natsMsgHeader_Set(m, "long", std::string(2000, 'x').c_str()), NATS_OK);
  return message_ptr(m);
}

const std::vector<std::string> keys = {"ce-id", "ce-type", "troupe-position", "spaced",
                                       "twice", "long",    "absent",          "Ce-Id"};

std::vector<std::optional<std::string>> read_all(const received_headers& h) {
  std::vector<std::optional<std::string>> out;
  for (const auto& k : keys) {
    auto v = h.get(k.c_str());
    out.push_back(v ? std::optional<std::string>(std::string(*v)) : std::nullopt);
  }
  return out;
}

std::vector<std::optional<std::string>> read_all_through_nats(natsMsg* m) {
  std::vector<std::optional<std::string>> out;
  for (const auto& k : keys) {
    const char* value = nullptr;
    if (natsMsgHeader_Get(m, k.c_str(), &value) == NATS_OK && value != nullptr)
      out.emplace_back(value);
    else
      out.emplace_back(std::nullopt);
  }
  return out;
}

message_ptr round_trip(natsConnection* nc, natsMsg* sent, const std::string& subject) {
  natsSubscription* sub = nullptr;
  EXPECT_EQ(natsConnection_SubscribeSync(&sub, nc, subject.c_str()), NATS_OK);
  EXPECT_EQ(natsConnection_Flush(nc), NATS_OK);
  EXPECT_EQ(natsConnection_PublishMsg(nc, sent), NATS_OK);
  natsMsg* got = nullptr;
  EXPECT_EQ(natsSubscription_NextMsg(&got, sub, 5000), NATS_OK);
  natsSubscription_Destroy(sub);
  return message_ptr(got);
}

TEST(ReceivedHeaders, AReceivedMessageIsReadFromTheWireWithTheAnswersNatsGives) {
  auto nc = connect();
  auto subject = "troupetest." + unique("hdr");
  auto sent = message_with_headers(subject);
  auto got = round_trip(nc.get(), sent.get(), subject);
  ASSERT_NE(got, nullptr);

  received_headers wire(got.get());
  EXPECT_TRUE(wire.from_wire());
  auto from_wire = read_all(wire);
  EXPECT_EQ(from_wire[0], "0b7e6c2e-1b1a-4c55-9d8e-3f1f0f6d2a11");
  EXPECT_EQ(from_wire[3], "a b  c");
  EXPECT_EQ(from_wire[4], "first");
  EXPECT_EQ(from_wire[5], std::string(2000, 'x'));
  EXPECT_EQ(from_wire[6], std::nullopt);
  EXPECT_EQ(from_wire[7], std::nullopt);  // keys match exactly, as in nats.c
  // nats.c's own answers (lifting rewrites the block in place) ...
  EXPECT_EQ(read_all_through_nats(got.get()), from_wire);
  // ... after which the wire is no longer readable: nats.c answers.
  received_headers lifted(got.get());
  EXPECT_FALSE(lifted.from_wire());
  EXPECT_EQ(read_all(lifted), from_wire);
}

TEST(ReceivedHeaders, AJetStreamFetchedMessageIsReadFromTheWire) {
  auto nc = connect();
  jsCtx* js = nullptr;
  ASSERT_EQ(natsConnection_JetStream(&js, nc.get(), nullptr), NATS_OK);
  auto run = unique("h");
  auto stream = "TROUPE_TEST_HDR_" + run;
  auto subject = "troupetest" + run + ".events.order.order_placed";
  auto wildcard = "troupetest" + run + ".events.>";
  jsStreamConfig config;
  jsStreamConfig_Init(&config);
  config.Name = stream.c_str();
  const char* subjects[] = {wildcard.c_str()};
  config.Subjects = subjects;
  config.SubjectsLen = 1;
  config.Storage = js_MemoryStorage;
  jsErrCode code = static_cast<jsErrCode>(0);
  ASSERT_EQ(js_AddStream(nullptr, js, &config, nullptr, &code), NATS_OK);

  auto sent = message_with_headers(subject);
  EXPECT_EQ(js_PublishMsg(nullptr, js, sent.get(), nullptr, &code), NATS_OK);
  natsSubscription* sub = nullptr;
  ASSERT_EQ(js_PullSubscribe(&sub, js, subject.c_str(), "hdrtest", nullptr, nullptr, &code),
            NATS_OK);
  natsMsgList list{};
  ASSERT_EQ(natsSubscription_Fetch(&list, sub, 1, 5000, &code), NATS_OK);
  ASSERT_EQ(list.Count, 1);
  {
    received_headers wire(list.Msgs[0]);
    EXPECT_TRUE(wire.from_wire());
    auto from_wire = read_all(wire);
    EXPECT_EQ(from_wire[2], "42");
    EXPECT_EQ(read_all_through_nats(list.Msgs[0]), from_wire);
  }
  natsMsgList_Destroy(&list);
  natsSubscription_Destroy(sub);
  js_DeleteStream(js, stream.c_str(), nullptr, &code);
  jsCtx_Destroy(js);
}

TEST(ReceivedHeaders, MessagesNotAsTheyArrivedAreAskedThroughNats) {
  // Built here: its headers live in nats.c's map, there is no wire block.
  auto built = message_with_headers("troupetest.local");
  received_headers local(built.get());
  EXPECT_FALSE(local.from_wire());
  EXPECT_EQ(read_all(local), read_all_through_nats(built.get()));
  EXPECT_EQ(local.get("twice"), std::optional<std::string_view>("first"));

  // Received without headers: nothing to find, and nothing read past the
  // subject into the payload.
  auto nc = connect();
  auto subject = "troupetest." + unique("plain");
  natsMsg* plain = nullptr;
  ASSERT_EQ(natsMsg_Create(&plain, subject.c_str(), nullptr, "NATS/1.0\r\n\r\n", 12), NATS_OK);
  message_ptr plain_owner(plain);
  auto got = round_trip(nc.get(), plain, subject);
  ASSERT_NE(got, nullptr);
  received_headers none(got.get());
  EXPECT_FALSE(none.from_wire());
  EXPECT_EQ(none.get("ce-id"), std::nullopt);
}

}  // namespace
}  // namespace troupe::detail
