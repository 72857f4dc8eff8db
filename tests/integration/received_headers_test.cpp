// Reading a received message's headers from its wire bytes, against a real
// nats-server: the answers are nats.c's own (natsMsgHeader_Get), messages
// as consumers receive them (core and JetStream pull) take the wire path -
// so a nats.c upgrade that moves the bytes shows here, not as a slower
// node - and anything else falls back to nats.c. And the other direction:
// headers encoded once as a block (outgoing_headers) reach a subscriber and
// nats-server as the same headers nats.c's map gives.

#include "runtime/src/received_headers.hpp"

#include "runtime/src/outgoing_headers.hpp"

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

/// A JetStream context and a memory stream for one test, deleted at the end.
struct test_stream {
  test_stream(natsConnection* nc, std::string stream_name, const std::string& subjects_pattern)
      : name(std::move(stream_name)) {
    EXPECT_EQ(natsConnection_JetStream(&js, nc, nullptr), NATS_OK);
    jsStreamConfig config;
    jsStreamConfig_Init(&config);
    config.Name = name.c_str();
    const char* subjects[] = {subjects_pattern.c_str()};
    config.Subjects = subjects;
    config.SubjectsLen = 1;
    config.Storage = js_MemoryStorage;
    jsErrCode code = static_cast<jsErrCode>(0);
    created = js_AddStream(nullptr, js, &config, nullptr, &code) == NATS_OK;
  }
  /// The next `count` messages on `subject` through a durable pull
  /// consumer; the caller destroys the list (natsMsgList_Destroy).
  natsMsgList fetch(const std::string& subject, const char* durable, int count) {
    natsMsgList list{};
    jsErrCode code = static_cast<jsErrCode>(0);
    EXPECT_EQ(js_PullSubscribe(&sub, js, subject.c_str(), durable, nullptr, nullptr, &code),
              NATS_OK);
    if (sub != nullptr) {
      EXPECT_EQ(natsSubscription_Fetch(&list, sub, count, 5000, &code), NATS_OK);
    }
    return list;
  }
  ~test_stream() {
    natsSubscription_Destroy(sub);
    jsErrCode code = static_cast<jsErrCode>(0);
    if (created) js_DeleteStream(js, name.c_str(), nullptr, &code);
    jsCtx_Destroy(js);
  }
  test_stream(const test_stream&) = delete;
  test_stream& operator=(const test_stream&) = delete;
  jsCtx* js = nullptr;
  natsSubscription* sub = nullptr;
  std::string name;
  bool created = false;
};

TEST(ReceivedHeaders, AJetStreamFetchedMessageIsReadFromTheWire) {
  auto nc = connect();
  auto run = unique("h");
  auto subject = "troupetest" + run + ".events.order.order_placed";
  test_stream stream(nc.get(), "TROUPE_TEST_HDR_" + run, "troupetest" + run + ".events.>");
  ASSERT_TRUE(stream.created);
  jsCtx* js = stream.js;
  jsErrCode code = static_cast<jsErrCode>(0);

  auto sent = message_with_headers(subject);
  EXPECT_EQ(js_PublishMsg(nullptr, js, sent.get(), nullptr, &code), NATS_OK);
  natsMsgList list = stream.fetch(subject, "hdrtest", 1);
  ASSERT_EQ(list.Count, 1);
  {
    received_headers wire(list.Msgs[0]);
    EXPECT_TRUE(wire.from_wire());
    auto from_wire = read_all(wire);
    EXPECT_EQ(from_wire[2], "42");
    EXPECT_EQ(read_all_through_nats(list.Msgs[0]), from_wire);
  }
  natsMsgList_Destroy(&list);
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

/// Headers as the publisher adds them, with the awkward cases: an empty
/// value (left out), a line break inside a value (sent as a space, as
/// nats.c's encoder does), spaces around a value, a key added twice and a
/// long value.
outgoing_headers publisher_like_headers(const std::string& id) {
  outgoing_headers h;
  h.add("Nats-Msg-Id", id);
  h.add("ce-id", id);
  h.add("ce-subject", "");
  h.add("ce-type", "order_placed");
  h.add("troupe-position", "42");
  h.add("troupe-correlation-id", "one\r\ntwo\nthree");
  h.add("spaced", "  a b  c  ");
  h.add("twice", "first");
  h.add("twice", "second");
  h.add("long", std::string(2000, 'x'));
  return h;
}

const std::vector<std::string> outgoing_keys = {
    "Nats-Msg-Id",           "ce-id",  "ce-subject", "ce-type", "troupe-position",
    "troupe-correlation-id", "spaced", "twice",      "long"};

/// Every value of every key, as nats.c reads them from a received message.
std::vector<std::vector<std::string>> values_through_nats(natsMsg* m) {
  std::vector<std::vector<std::string>> out;
  for (const auto& k : outgoing_keys) {
    const char** values = nullptr;
    int count = 0;
    std::vector<std::string> found;
    if (natsMsgHeader_Values(m, k.c_str(), &values, &count) == NATS_OK) {
      for (int i = 0; i < count; ++i) found.emplace_back(values[i]);
      free(values);
    }
    out.push_back(std::move(found));
  }
  return out;
}

TEST(OutgoingHeaders, ABlockArrivesAsTheHeadersNatsMapWouldHaveSent) {
  // On the nats.c this was written against the block is handed over as it
  // is; a library where that stops working shows here, not as a slower node.
  EXPECT_TRUE(outgoing_headers::sends_block());
  auto nc = connect();
  auto subject = "troupetest." + unique("out");
  auto headers = publisher_like_headers("0b7e6c2e-1b1a-4c55-9d8e-3f1f0f6d2a11");

  natsMsg* block = nullptr;
  ASSERT_EQ(headers.create(&block, subject.c_str(), "{\"n\":1}"), NATS_OK);
  message_ptr block_owner(block);
  // The acknowledgement handler reads troupe-position from the message it
  // published: from the block, without lifting it into nats.c's map.
  received_headers own(block);
  EXPECT_TRUE(own.from_wire());
  EXPECT_EQ(own.get("troupe-position"), std::optional<std::string_view>("42"));

  natsMsg* mapped = nullptr;
  ASSERT_EQ(headers.create_through_map(&mapped, subject.c_str(), "{\"n\":1}"), NATS_OK);
  message_ptr mapped_owner(mapped);

  auto got_block = round_trip(nc.get(), block, subject);
  auto got_mapped = round_trip(nc.get(), mapped, subject);
  ASSERT_NE(got_block, nullptr);
  ASSERT_NE(got_mapped, nullptr);
  EXPECT_EQ(std::string(natsMsg_GetData(got_block.get()), natsMsg_GetDataLength(got_block.get())),
            "{\"n\":1}");
  auto values = values_through_nats(got_block.get());
  EXPECT_EQ(values, values_through_nats(got_mapped.get()));
  EXPECT_EQ(values[0], std::vector<std::string>{"0b7e6c2e-1b1a-4c55-9d8e-3f1f0f6d2a11"});
  EXPECT_TRUE(values[2].empty());  // the empty value was left out
  EXPECT_EQ(values[5], std::vector<std::string>{"one  two three"});
  EXPECT_EQ(values[6], std::vector<std::string>{"a b  c"});
  EXPECT_EQ(values[7], (std::vector<std::string>{"first", "second"}));
  EXPECT_EQ(values[8], std::vector<std::string>{std::string(2000, 'x')});
}

TEST(OutgoingHeaders, JetStreamDeduplicatesByTheMessageIdInTheBlock) {
  auto nc = connect();
  auto run = unique("o");
  auto subject = "troupetest" + run + ".events.order.order_placed";
  test_stream stream(nc.get(), "TROUPE_TEST_OUT_" + run, subject);
  ASSERT_TRUE(stream.created);
  jsCtx* js = stream.js;
  jsErrCode code = static_cast<jsErrCode>(0);

  // The same event published twice: nats-server finds Nats-Msg-Id in the
  // block and keeps one; a different id is a new message.
  auto publish = [&](const std::string& id) {
    auto headers = publisher_like_headers(id);
    natsMsg* m = nullptr;
    EXPECT_EQ(headers.create(&m, subject.c_str(), "{}"), NATS_OK);
    message_ptr owner(m);
    jsPubAck* ack = nullptr;
    EXPECT_EQ(js_PublishMsg(&ack, js, m, nullptr, &code), NATS_OK);
    bool duplicate = ack != nullptr && ack->Duplicate;
    std::uint64_t sequence = ack != nullptr ? ack->Sequence : 0;
    jsPubAck_Destroy(ack);
    return std::pair{sequence, duplicate};
  };
  auto first = publish("11111111-1b1a-4c55-9d8e-3f1f0f6d2a11");
  auto again = publish("11111111-1b1a-4c55-9d8e-3f1f0f6d2a11");
  auto other = publish("22222222-1b1a-4c55-9d8e-3f1f0f6d2a11");
  EXPECT_FALSE(first.second);
  EXPECT_TRUE(again.second);
  EXPECT_EQ(again.first, first.first);
  EXPECT_FALSE(other.second);
  EXPECT_EQ(other.first, first.first + 1);

  natsMsgList list = stream.fetch(subject, "outtest", 2);
  ASSERT_EQ(list.Count, 2);
  received_headers wire(list.Msgs[0]);
  EXPECT_TRUE(wire.from_wire());
  EXPECT_EQ(wire.get("ce-id"),
            std::optional<std::string_view>("11111111-1b1a-4c55-9d8e-3f1f0f6d2a11"));
  EXPECT_EQ(wire.get("ce-type"), std::optional<std::string_view>("order_placed"));
  natsMsgList_Destroy(&list);
}

}  // namespace
}  // namespace troupe::detail
