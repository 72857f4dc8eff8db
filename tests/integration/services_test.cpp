// Proves the services started by scripts/services are real and reachable:
// PostgreSQL 15 (transactions, a table round trip) and NATS with JetStream
// (pub/sub, a file-backed stream with Nats-Msg-Id de-duplication).
//
// Needs TROUPE_POSTGRES_URL and TROUPE_NATS_URL (scripts/test sets them; by
// hand: `scripts/services start && . var/services.env`). Missing variables
// are a failure, never a skip.

#include <nats/nats.h>

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <unistd.h>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <string>

namespace {

std::optional<std::string> env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string{value};
}

std::string missing_env_message(const char* name) {
  return std::string{name} +
         " is not set. Integration tests need the real services: run them "
         "through scripts/test, or `scripts/services start && . "
         "var/services.env` before running this binary.";
}

// A name no other run (or concurrent test process) uses.
std::string unique_suffix() {
  static const std::string run = [] {
    std::random_device rd;
    return std::to_string(::getpid()) + "_" + std::to_string(rd() % 1000000);
  }();
  static int counter = 0;
  return run + "_" + std::to_string(++counter);
}

// ------------------------------------------------------------ PostgreSQL

class PostgresServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto url_env = env("TROUPE_POSTGRES_URL");
    ASSERT_TRUE(url_env.has_value()) << missing_env_message("TROUPE_POSTGRES_URL");
    url = *url_env;
  }
  std::string url;
};

TEST_F(PostgresServiceTest, IsPostgres15) {
  pqxx::connection conn{url};
  pqxx::work tx{conn};
  auto version = tx.exec1("select version()")[0].as<std::string>();
  tx.commit();
  EXPECT_NE(version.find("PostgreSQL 15"), std::string::npos) << version;
}

TEST_F(PostgresServiceTest, TableRoundTripInTransactions) {
  pqxx::connection conn{url};
  const std::string table = "services_test_" + unique_suffix();
  const std::string quoted = conn.quote_name(table);

  // Drop the table whatever happens below.
  struct Dropper {
    pqxx::connection& conn;
    std::string quoted;
    ~Dropper() {
      try {
        pqxx::nontransaction ntx{conn};
        ntx.exec0("drop table if exists " + quoted);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "could not drop " << quoted << ": " << e.what();
      }
    }
  } dropper{conn, quoted};

  {
    pqxx::work tx{conn};
    tx.exec0("create table " + quoted + " (id bigint primary key, body text not null, note text)");
    tx.exec_params0("insert into " + quoted + " values ($1, $2, $3)", 1, "héllo, wörld", nullptr);
    tx.exec_params0("insert into " + quoted + " values ($1, $2, $3)", 2, "second", "n");
    tx.commit();
  }
  {
    // A rolled-back insert must leave no trace.
    pqxx::work tx{conn};
    tx.exec_params0("insert into " + quoted + " values ($1, $2, $3)", 3, "rolled back", nullptr);
    tx.abort();
  }
  {
    pqxx::read_transaction tx{conn};
    auto rows = tx.exec("select id, body, note from " + quoted + " order by id");
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0][0].as<long>(), 1);
    EXPECT_EQ(rows[0][1].as<std::string>(), "héllo, wörld");
    EXPECT_FALSE(rows[0][2].as<std::optional<std::string>>().has_value());
    EXPECT_EQ(rows[1][0].as<long>(), 2);
    EXPECT_EQ(rows[1][2].as<std::optional<std::string>>(), std::optional<std::string>{"n"});
  }
}

// ------------------------------------------------------------ NATS

struct NatsDeleter {
  void operator()(natsConnection* nc) const { natsConnection_Destroy(nc); }
  void operator()(natsSubscription* sub) const { natsSubscription_Destroy(sub); }
  void operator()(natsMsg* msg) const { natsMsg_Destroy(msg); }
  void operator()(jsCtx* js) const { jsCtx_Destroy(js); }
  void operator()(jsPubAck* ack) const { jsPubAck_Destroy(ack); }
  void operator()(jsStreamInfo* si) const { jsStreamInfo_Destroy(si); }
};
template <typename T>
using NatsPtr = std::unique_ptr<T, NatsDeleter>;

std::string nats_error(natsStatus s, jsErrCode jerr = static_cast<jsErrCode>(0)) {
  char stack[2048] = {0};
  nats_GetLastErrorStack(stack, sizeof stack);
  std::string text = natsStatus_GetText(s);
  if (jerr != 0) text += " (JetStream error " + std::to_string(static_cast<int>(jerr)) + ")";
  if (stack[0] != '\0') text += "\n" + std::string{stack};
  return text;
}

class NatsServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto url_env = env("TROUPE_NATS_URL");
    ASSERT_TRUE(url_env.has_value()) << missing_env_message("TROUPE_NATS_URL");
    url = *url_env;
    natsConnection* raw = nullptr;
    natsStatus s = natsConnection_ConnectTo(&raw, url.c_str());
    conn.reset(raw);
    ASSERT_EQ(s, NATS_OK) << "connect to " << url << ": " << nats_error(s);
  }
  // Close the connection before the next test; nats_Close runs once at exit.
  void TearDown() override { conn.reset(); }

  std::string url;
  NatsPtr<natsConnection> conn;
};

TEST_F(NatsServiceTest, PublishSubscribeRoundTrip) {
  const std::string subject = "troupe.test.services." + unique_suffix();
  natsSubscription* raw_sub = nullptr;
  natsStatus s = natsConnection_SubscribeSync(&raw_sub, conn.get(), subject.c_str());
  NatsPtr<natsSubscription> sub{raw_sub};
  ASSERT_EQ(s, NATS_OK) << nats_error(s);
  // Make sure the server knows the subscription before publishing.
  ASSERT_EQ(s = natsConnection_FlushTimeout(conn.get(), 5000), NATS_OK) << nats_error(s);

  const std::string payload = "ping " + subject;
  ASSERT_EQ(s = natsConnection_PublishString(conn.get(), subject.c_str(), payload.c_str()), NATS_OK)
      << nats_error(s);

  natsMsg* raw_msg = nullptr;
  s = natsSubscription_NextMsg(&raw_msg, sub.get(), 5000);
  NatsPtr<natsMsg> msg{raw_msg};
  ASSERT_EQ(s, NATS_OK) << "no message within 5 s: " << nats_error(s);
  EXPECT_EQ(std::string(natsMsg_GetData(msg.get()), natsMsg_GetDataLength(msg.get())), payload);
  EXPECT_EQ(std::string{natsMsg_GetSubject(msg.get())}, subject);

  EXPECT_EQ(s = natsSubscription_Unsubscribe(sub.get()), NATS_OK) << nats_error(s);
}

TEST_F(NatsServiceTest, JetStreamFileStreamDeduplicatesByMsgId) {
  jsCtx* raw_js = nullptr;
  natsStatus s = natsConnection_JetStream(&raw_js, conn.get(), nullptr);
  NatsPtr<jsCtx> js{raw_js};
  ASSERT_EQ(s, NATS_OK) << nats_error(s);

  const std::string suffix = unique_suffix();
  const std::string stream = "TROUPE_SERVICES_TEST_" + suffix;
  const std::string subject = "troupe.test.js." + suffix;
  const char* subjects[] = {subject.c_str()};

  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = stream.c_str();
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Storage = js_FileStorage;
  // The duplicate window is in nanoseconds.
  cfg.Duplicates = std::chrono::nanoseconds{std::chrono::minutes{2}}.count();

  jsErrCode jerr = static_cast<jsErrCode>(0);
  jsStreamInfo* raw_si = nullptr;
  s = js_AddStream(&raw_si, js.get(), &cfg, nullptr, &jerr);
  NatsPtr<jsStreamInfo> created{raw_si};
  ASSERT_EQ(s, NATS_OK) << "create stream " << stream << ": " << nats_error(s, jerr)
                        << "\n(is JetStream enabled? nats-server must run with -js)";
  ASSERT_NE(created, nullptr);
  EXPECT_EQ(created->Config->Storage, js_FileStorage);

  // Delete the stream whatever happens below.
  struct StreamDeleter {
    jsCtx* js;
    std::string name;
    ~StreamDeleter() {
      jsErrCode err = static_cast<jsErrCode>(0);
      natsStatus st = js_DeleteStream(js, name.c_str(), nullptr, &err);
      EXPECT_EQ(st, NATS_OK) << "delete stream " << name << ": " << nats_error(st, err);
    }
  } deleter{js.get(), stream};

  const std::string msg_id = "event-" + suffix;
  const std::string payload = R"({"hello":"jetstream"})";
  for (int attempt = 1; attempt <= 2; ++attempt) {
    jsPubOptions opts;
    jsPubOptions_Init(&opts);
    opts.MsgId = msg_id.c_str();
    jsPubAck* raw_ack = nullptr;
    jerr = static_cast<jsErrCode>(0);
    s = js_Publish(&raw_ack, js.get(), subject.c_str(), payload.data(),
                   static_cast<int>(payload.size()), &opts, &jerr);
    NatsPtr<jsPubAck> ack{raw_ack};
    ASSERT_EQ(s, NATS_OK) << "publish #" << attempt << ": " << nats_error(s, jerr);
    ASSERT_NE(ack, nullptr);
    EXPECT_EQ(std::string{ack->Stream}, stream);
    EXPECT_EQ(ack->Sequence, 1u) << "publish #" << attempt;
    EXPECT_EQ(ack->Duplicate, attempt == 2) << "publish #" << attempt;
  }

  jsStreamInfo* raw_info = nullptr;
  jerr = static_cast<jsErrCode>(0);
  s = js_GetStreamInfo(&raw_info, js.get(), stream.c_str(), nullptr, &jerr);
  NatsPtr<jsStreamInfo> info{raw_info};
  ASSERT_EQ(s, NATS_OK) << nats_error(s, jerr);
  EXPECT_EQ(info->State.Msgs, 1u) << "the second publish with the same Nats-Msg-Id must be dropped";
}

// Releases the nats.c library's global resources once all tests ran.
class NatsLibrary : public ::testing::Environment {
 public:
  void TearDown() override { nats_CloseAndWait(5000); }
};
const auto* const nats_library [[maybe_unused]] =
    ::testing::AddGlobalTestEnvironment(new NatsLibrary);

}  // namespace
