// troupe-load as a user runs it, against a real `troupe serve` (PostgreSQL
// and NATS from scripts/services): each scenario with its report and
// audit, open and closed loop, bad arguments, a target that is down, and an
// audit that must fail after a view was tampered with.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <boost/json.hpp>
#include <fstream>
#include <pqxx/pqxx>
#include <sstream>

#include "tests/integration/serve_node.hpp"

namespace troupe {
namespace {

namespace json = boost::json;
using integration::serve_node;

struct load_run {
  int exit_code = -1;
  std::string output;   // stdout and stderr
  json::object report;  // from --json, when written
};

/// A small catalog keeps seeding quick; every run shares it.
const std::string catalog =
    " --books 20 --authors 4 --categories 3 --publishers 2 --buyers 40 --prefix lt";

load_run troupe_load(const std::string& args, bool with_json = true) {
  static int counter = 0;
  load_run out;
  std::string json_file = "/tmp/troupe_load_test_" + std::to_string(getpid()) + "_" +
                          std::to_string(++counter) + ".json";
  std::remove(json_file.c_str());
  std::string command = std::string(TROUPE_LOAD_BINARY) + " " + args +
                        (with_json ? " --json " + json_file : "") + " 2>&1";
  auto* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  char buffer[512];
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) out.output += buffer;
  int status = pclose(pipe);
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(json_file);
  if (in) {
    std::stringstream text;
    text << in.rdbuf();
    boost::system::error_code ec;
    auto v = json::parse(text.str(), ec);
    if (!ec && v.is_object()) out.report = v.as_object();
  }
  std::remove(json_file.c_str());
  return out;
}

std::int64_t number(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr) return -1;
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) return static_cast<std::int64_t>(v->as_uint64());
  if (v->is_double()) return static_cast<std::int64_t>(v->as_double());
  return -1;
}

class TroupeLoad : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    node_ = new serve_node();
    ASSERT_TRUE(node_->start()) << "troupe serve did not become ready";
  }
  static void TearDownTestSuite() {
    delete node_;
    node_ = nullptr;
  }
  static std::string target() { return " -t http://127.0.0.1:" + std::to_string(node_->port); }
  static std::string audit() { return " --audit --pg-url '" + node_->db.url + "'"; }

  static inline serve_node* node_ = nullptr;
};

TEST_F(TroupeLoad, ACheckoutRunEndsEverySagaAndPassesTheAudit) {
  auto plot = "/tmp/troupe_load_test_" + std::to_string(getpid()) + ".svg";
  auto r = troupe_load(target() + catalog + " -s checkout -n 120 -w 0 -c 16 -q --plot " + plot +
                       audit());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto& rep = r.report;
  ASSERT_FALSE(rep.empty()) << r.output;
  EXPECT_EQ(number(rep, "flows"), 120) << r.output;
  // Every measured order got a terminal answer from its saga.
  const auto& outcomes = rep.at("saga_outcomes").as_object();
  std::int64_t ended =
      number(outcomes, "completed") + std::max<std::int64_t>(number(outcomes, "cancelled"), 0);
  EXPECT_EQ(ended, 120) << json::serialize(outcomes);
  EXPECT_TRUE(rep.at("audit").at("passed").as_bool()) << r.output;
  EXPECT_GE(rep.at("audit").at("checks").as_array().size(), 5u);
  EXPECT_NE(r.output.find("PASS"), std::string::npos) << r.output;
  // A basket, an order and at least one status read per flow.
  EXPECT_GE(number(rep, "requests"), 3 * 120);
  std::ifstream svg(plot);
  std::string first_line;
  std::getline(svg, first_line);
  EXPECT_NE(first_line.find("<svg"), std::string::npos) << first_line;
  std::remove(plot.c_str());
}

TEST_F(TroupeLoad, OpenLoopPlaceCompleteRecordsTwoCommandsPerFlow) {
  auto r =
      troupe_load(target() + catalog + " -s place-complete -r 150 -d 2s -w 1s -c 8 -q" + audit());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto& rep = r.report;
  EXPECT_EQ(rep.at("mode").as_string(), "open");
  auto flows = number(rep, "flows");
  EXPECT_GT(flows, 0);
  EXPECT_EQ(number(rep, "flows_failed"), 0) << r.output;
  EXPECT_EQ(number(rep, "commands"), 2 * flows);
  EXPECT_EQ(number(rep, "commands_ok"), 2 * flows);
  const auto& latency = rep.at("latency").as_object();
  EXPECT_TRUE(latency.contains("place")) << json::serialize(latency);
  EXPECT_TRUE(latency.contains("complete")) << json::serialize(latency);
  EXPECT_TRUE(rep.at("audit").at("passed").as_bool()) << r.output;
}

TEST_F(TroupeLoad, AMixedRunDrivesEveryWeightedScenario) {
  auto r = troupe_load(target() + catalog +
                       " -s mixed --mix browse=4,place-complete=1,checkout=1 -n 120 -w 0 -c 8 -q");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto& latency = r.report.at("latency").as_object();
  for (auto kind : {"browse", "place", "complete", "basket", "order-status"})
    EXPECT_TRUE(latency.contains(kind)) << kind << " missing in " << json::serialize(latency);
}

TEST_F(TroupeLoad, BadArgumentsGetAClearMessageAndExitStatus2) {
  struct bad_case {
    std::string args, mentions;
  };
  for (const auto& c : std::vector<bad_case>{{target() + " -r -5", "--rate"},
                                             {target() + " -s nope", "--scenario"},
                                             {" -t ftp:/x", "--target"},
                                             {target() + " -d 10 parsecs", ""},
                                             {target() + " -d soon", "--duration"},
                                             {target() + " --mix browse=1", "--mix"},
                                             {target() + " -s mixed --mix browse=x", "--mix"},
                                             {target() + " --items 0", "--items"},
                                             {"", "target"}}) {
    auto r = troupe_load(c.args, false);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.mentions), std::string::npos) << c.args << "\n" << r.output;
  }
}

TEST_F(TroupeLoad, ATargetThatIsDownIsReportedByName) {
  auto dead = integration::free_port();
  // Alone: refused before any load.
  auto alone = troupe_load(" -t 127.0.0.1:" + std::to_string(dead) + " -n 10 -q", false);
  EXPECT_EQ(alone.exit_code, 1) << alone.output;
  EXPECT_NE(alone.output.find("cannot reach"), std::string::npos) << alone.output;

  // Beside a live node: its share of the requests fails, and the report
  // says so per target instead of blending it into one error rate.
  auto dead_target = "127.0.0.1:" + std::to_string(dead);
  auto r = troupe_load(target() + " -t " + dead_target + catalog +
                       " --no-seed -s browse -n 200 -w 0 -c 4 -q");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto& per_target = r.report.at("per_target").as_object();
  ASSERT_TRUE(per_target.contains(dead_target)) << json::serialize(per_target);
  const auto& down = per_target.at(dead_target).as_object();
  EXPECT_GT(number(down, "requests"), 0);
  EXPECT_EQ(number(down, "failures"), number(down, "requests"));
  const auto& live = per_target.at(target().substr(4)).as_object();
  EXPECT_EQ(number(live, "failures"), 0) << json::serialize(per_target);
  EXPECT_TRUE(r.report.at("errors_by_kind").as_object().contains("browse connection refused"))
      << json::serialize(r.report.at("errors_by_kind"));
  EXPECT_NE(r.output.find(dead_target), std::string::npos) << r.output;
}

// Last: it leaves a view that differs from its rebuild.
TEST_F(TroupeLoad, ZTheAuditFailsWhenAViewWasTamperedWith) {
  {
    pqxx::connection c(node_->db.url);
    pqxx::work tx(c);
    auto changed = tx.exec(
        "UPDATE troupe_views.order_summary SET total = total + 1 WHERE order_id = (SELECT "
        "order_id FROM troupe_views.order_summary LIMIT 1)");
    ASSERT_EQ(changed.affected_rows(), 1u);
    tx.commit();
  }
  auto r = troupe_load(target() + catalog + " --no-seed -s browse -n 5 -w 0 -c 1 -q" + audit());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("FAIL"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("order_summary"), std::string::npos) << r.output;
  EXPECT_FALSE(r.report.at("audit").at("passed").as_bool());
}

}  // namespace
}  // namespace troupe
