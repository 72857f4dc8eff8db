// troupe-load's argument parsing: what it accepts, and that each bad input
// is refused with a message naming the option.

#include <gtest/gtest.h>

#include "tools/load/options.hpp"

namespace troupe::load {
namespace {

parse_result parse(std::vector<std::string> args) {
  args.insert(args.begin(), "troupe-load");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return parse_options(static_cast<int>(argv.size()), argv.data());
}

TEST(LoadOptions, DurationsTakeUnits) {
  EXPECT_EQ(parse_duration("30s"), std::chrono::milliseconds{30'000});
  EXPECT_EQ(parse_duration("250ms"), std::chrono::milliseconds{250});
  EXPECT_EQ(parse_duration("2m"), std::chrono::milliseconds{120'000});
  EXPECT_EQ(parse_duration("1.5"), std::chrono::milliseconds{1'500});
  EXPECT_EQ(parse_duration("0"), std::chrono::milliseconds{0});
  EXPECT_FALSE(parse_duration("soon"));
  EXPECT_FALSE(parse_duration("5 parsecs"));
  EXPECT_FALSE(parse_duration("-3s"));
  EXPECT_FALSE(parse_duration(""));
}

TEST(LoadOptions, EndpointsAreHostAndPort) {
  auto e = parse_endpoint("http://localhost:8080/api/v1");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->host, "127.0.0.1");
  EXPECT_EQ(e->port, 8080);
  EXPECT_EQ(parse_endpoint("10.0.0.2:81")->host, "10.0.0.2");
  EXPECT_FALSE(parse_endpoint("https://x:443"));  // no TLS client
  EXPECT_FALSE(parse_endpoint("http://x"));
  EXPECT_FALSE(parse_endpoint("x:0"));
  EXPECT_FALSE(parse_endpoint("x:70000"));
  EXPECT_FALSE(parse_endpoint("x:8o"));
}

TEST(LoadOptions, AFullCommandLine) {
  auto r = parse({"-t",
                  "127.0.0.1:1,127.0.0.1:2",
                  "-t",
                  "http://h:3",
                  "-s",
                  "mixed",
                  "--mix",
                  "browse=3,checkout=1",
                  "-r",
                  "500",
                  "-c",
                  "20",
                  "--threads",
                  "2",
                  "-d",
                  "1m",
                  "-w",
                  "0",
                  "--items",
                  "3",
                  "--status-wait",
                  "2s",
                  "--run-id",
                  "r1"});
  ASSERT_TRUE(r.options) << r.message;
  const auto& o = *r.options;
  ASSERT_EQ(o.targets.size(), 3u);
  EXPECT_EQ(o.targets[2].host, "h");
  EXPECT_EQ(o.mix.at("browse"), 3);
  EXPECT_EQ(o.mix.at("checkout"), 1);
  EXPECT_FALSE(o.mix.contains("place-complete"));
  EXPECT_EQ(*o.rate, 500);
  EXPECT_EQ(o.duration, std::chrono::minutes{1});
  EXPECT_EQ(o.warmup, std::chrono::milliseconds{0});
  EXPECT_EQ(o.items_per_order, 3);
  EXPECT_EQ(o.status_wait, std::chrono::seconds{2});
  EXPECT_EQ(o.run_id, "r1");
}

TEST(LoadOptions, MixedDefaultsToAWeightedBlend) {
  auto r = parse({"-t", "h:1", "-s", "mixed"});
  ASSERT_TRUE(r.options) << r.message;
  EXPECT_EQ(r.options->mix.size(), 3u);
  EXPECT_FALSE(r.options->rate);  // closed loop
}

TEST(LoadOptions, BadInputNamesTheOption) {
  struct bad {
    std::vector<std::string> args;
    std::string mentions;
  };
  for (const auto& b :
       std::vector<bad>{{{}, "--target"},
                        {{"-t", "nohost"}, "--target"},
                        {{"-t", "h:1", "-s", "browsing"}, "--scenario"},
                        {{"-t", "h:1", "-r", "0"}, "--rate"},
                        {{"-t", "h:1", "-c", "0"}, "--connections"},
                        {{"-t", "h:1", "-c", "2", "--threads", "3"}, "--threads"},
                        {{"-t", "h:1", "-d", "0"}, "--duration"},
                        {{"-t", "h:1", "-n", "0"}, "--flows"},
                        {{"-t", "h:1", "--mix", "browse=1"}, "--mix"},
                        {{"-t", "h:1", "-s", "mixed", "--mix", "browse=-1"}, "--mix"},
                        {{"-t", "h:1", "-s", "mixed", "--mix", "browse=0"}, "--mix"},
                        {{"-t", "h:1", "-s", "mixed", "--mix", "shopping=1"}, "--mix"},
                        {{"-t", "h:1", "--items", "5", "--books", "2"}, "--items"},
                        {{"-t", "h:1", "--prefix", "Bad Prefix"}, "--prefix"},
                        {{"-t", "h:1", "--run-id", "x/y"}, "--run-id"},
                        {{"-t", "h:1", "--status-wait", "31s"}, "--status-wait"},
                        {{"-t", "h:1", "--status-wait", "5s", "--timeout", "5s"}, "--status-wait"},
                        {{"-t", "h:1", "--no-such-flag"}, "no-such-flag"}}) {
    auto r = parse(b.args);
    EXPECT_FALSE(r.options) << b.mentions;
    EXPECT_NE(r.message.find(b.mentions), std::string::npos) << r.message;
  }
}

TEST(LoadOptions, AuditNeedsADatabase) {
  unsetenv("TROUPE_POSTGRES_URL");
  auto r = parse({"-t", "h:1", "--audit"});
  EXPECT_FALSE(r.options);
  EXPECT_NE(r.message.find("--pg-url"), std::string::npos) << r.message;
  setenv("TROUPE_POSTGRES_URL", "postgresql://x/y", 1);
  r = parse({"-t", "h:1", "--audit"});
  ASSERT_TRUE(r.options) << r.message;
  EXPECT_EQ(r.options->postgres_url, "postgresql://x/y");
  unsetenv("TROUPE_POSTGRES_URL");
}

TEST(LoadOptions, HelpIsNotAnError) {
  auto r = parse({"--help"});
  EXPECT_TRUE(r.help_requested);
  EXPECT_NE(r.message.find("--scenario"), std::string::npos);
}

}  // namespace
}  // namespace troupe::load
