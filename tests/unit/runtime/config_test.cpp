#include "runtime/config.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

namespace troupe {
namespace {

TEST(Config, DefaultsComeFromTheBuiltInFile) {
  auto cfg = config::defaults();
  EXPECT_EQ(cfg.string("log.level"), "info");
  EXPECT_GT(cfg.integer("aggregate.max_live"), 0);
}

TEST(Config, LayersFileThenEnvironmentThenFlags) {
  auto path = ::testing::TempDir() + "troupe_config_test.json";
  std::ofstream(path)
      << R"({"aggregate": {"max_live": 5, "snapshot_every": 7}, "log": {"level": "debug"}})";
  config::source src;
  src.file = path;
  src.env = {{"TROUPE_AGGREGATE_MAX_LIVE", "6"},
             {"PATH", "/bin"},
             {"TROUPE_SERVICES_PG_PORT", "1"},
             {"TROUPE_AGGREGATE_TYPES_BOOK_SNAPSHOT_EVERY", "3"}};
  src.overrides = {"log.level=warn"};
  auto cfg = config::load(src);
  ASSERT_TRUE(cfg) << cfg.error();
  EXPECT_EQ(cfg->integer("aggregate.snapshot_every"), 7);  // file
  EXPECT_EQ(cfg->integer("aggregate.max_live"), 6);        // env beats file
  EXPECT_EQ(cfg->string("log.level"), "warn");             // flag beats all
  EXPECT_EQ(cfg->find_integer("aggregate.types.book.snapshot_every"), 3);
  std::remove(path.c_str());
}

TEST(Config, UnknownKeysAndBadValuesAreNamed) {
  auto expect_error = [](config::source src, std::string_view needle) {
    auto cfg = config::load(src);
    ASSERT_FALSE(cfg) << "expected an error mentioning " << needle;
    EXPECT_NE(cfg.error().find(needle), std::string::npos) << cfg.error();
  };
  expect_error({.overrides = {"aggregate.max_lve=5"}}, "aggregate.max_lve");
  expect_error({.overrides = {"aggregate.max_live=0"}}, "aggregate.max_live");
  expect_error({.overrides = {"aggregate.max_live=12x"}}, "12x");
  expect_error({.overrides = {"log.level=loud"}}, "log.level");
  expect_error({.overrides = {"nonsense"}}, "key=value");
  expect_error({.env = {{"TROUPE_AGGREGATE_MAX_LIVES", "5"}}}, "TROUPE_AGGREGATE_MAX_LIVES");
  expect_error({.env = {{"TROUPE_RUNTIME_THREADS", "-1"}}}, "TROUPE_RUNTIME_THREADS");
  auto path = ::testing::TempDir() + "troupe_config_bad.json";
  std::ofstream(path) << R"({"aggregate": {"max_live": "many"}})";
  expect_error({.file = path}, "aggregate.max_live");
  std::ofstream(path) << R"({"aggregate": {"max_live": 5)";
  expect_error({.file = path}, "not valid JSON");
  expect_error({.file = "/nonexistent/troupe.json"}, "/nonexistent/troupe.json");
  // Keys that are each valid but not together.
  expect_error(
      {.overrides = {"publisher.duplicate_window_s=10", "publisher.checkpoint_interval_ms=6000"}},
      "publisher.checkpoint_interval_ms");
  std::remove(path.c_str());
}

TEST(Config, DescribeRedactsPasswords) {
  auto cfg = config::defaults();
  ASSERT_FALSE(cfg.set("postgres.url", "postgresql://u:hunter2@h:1/db"));
  auto text = cfg.describe();
  EXPECT_EQ(text.find("hunter2"), std::string::npos);
  EXPECT_NE(text.find("postgresql://u:***@h:1/db"), std::string::npos);
  EXPECT_EQ(redact_url("postgresql://u:p@ss@h:1/db"), "postgresql://u:***@h:1/db");
  EXPECT_EQ(redact_url("host=h password=secret dbname=d"), "host=h password=*** dbname=d");
  EXPECT_EQ(redact_url("postgresql://u@h:1/db"), "postgresql://u@h:1/db");
}

TEST(Config, ListSettingsSplitOnCommas) {
  EXPECT_EQ(split_list("nats://a:1, nats://b:2,,nats://c:3 "),
            (std::vector<std::string>{"nats://a:1", "nats://b:2", "nats://c:3"}));
  EXPECT_TRUE(split_list("").empty());
  EXPECT_TRUE(split_list(" , ").empty());
}

}  // namespace
}  // namespace troupe
