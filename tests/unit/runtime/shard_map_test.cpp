// The pure half of the cluster: stream -> shard, and shards -> nodes.

#include "runtime/shard_map.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>

namespace troupe {
namespace {

std::map<std::string, int> counts(const std::vector<std::string>& owners) {
  std::map<std::string, int> c;
  for (const auto& o : owners) ++c[o];
  return c;
}

int moved(const std::vector<std::string>& before, const std::vector<std::string>& after) {
  int m = 0;
  for (std::size_t i = 0; i < before.size(); ++i) m += before[i] != after[i];
  return m;
}

TEST(ShardOf, IsStableAcrossBuildsAndSpreadsStreams) {
  // Fixed values: a change here would move every stream of a running
  // cluster to another shard.
  EXPECT_EQ(stable_hash(""), 14695981039346656037ull);
  EXPECT_EQ(stable_hash("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(stable_hash("rder-7", stable_hash("o")), stable_hash("order-7"));
  std::vector<int> per_shard(64);
  for (int i = 0; i < 64000; ++i) ++per_shard[shard_of("order-" + std::to_string(i), 64)];
  for (int n : per_shard) {
    EXPECT_GT(n, 800);
    EXPECT_LT(n, 1200);
  }
}

TEST(AssignItems, BalancesWithinOneAndIsAFixedPoint) {
  auto shards = shard_names(64);
  for (int k = 1; k <= 7; ++k) {
    std::vector<std::string> nodes;
    for (int i = 0; i < k; ++i) nodes.push_back("node-" + std::to_string(i));
    auto a = assign_items(shards, nodes, {});
    auto c = counts(a);
    ASSERT_EQ(c.size(), static_cast<std::size_t>(k));
    for (const auto& [node, n] : c) {
      EXPECT_GE(n, 64 / k) << node;
      EXPECT_LE(n, 64 / k + 1) << node;
    }
    EXPECT_EQ(assign_items(shards, nodes, a), a) << k << " nodes";
    // Order of the node list does not matter.
    std::reverse(nodes.begin(), nodes.end());
    EXPECT_EQ(assign_items(shards, nodes, a), a);
  }
}

TEST(AssignItems, AJoiningNodeTakesOnlyItsShare) {
  auto shards = shard_names(64);
  auto three = assign_items(shards, {"a", "b", "c"}, {});
  auto four = assign_items(shards, {"a", "b", "c", "d"}, three);
  EXPECT_EQ(moved(three, four), 16);  // exactly d's share, nothing reshuffled
  EXPECT_EQ(counts(four)["d"], 16);
  for (std::size_t i = 0; i < 64; ++i) {
    if (four[i] != three[i]) {
      EXPECT_EQ(four[i], "d");
    }
  }
}

TEST(AssignItems, ALeavingNodesShardsAreSpreadAndNothingElseMoves) {
  auto shards = shard_names(64);
  auto three = assign_items(shards, {"a", "b", "c"}, {});
  auto two = assign_items(shards, {"a", "c"}, three);
  for (std::size_t i = 0; i < 64; ++i) {
    if (three[i] != "b") {
      EXPECT_EQ(two[i], three[i]) << i;
    } else {
      EXPECT_NE(two[i], "b");
    }
  }
  auto c = counts(two);
  EXPECT_EQ(c["a"], 32);
  EXPECT_EQ(c["c"], 32);
}

TEST(AssignItems, OwnersThatAreNotLiveAreIgnoredAndNoNodesMeansNobody) {
  auto items = std::vector<std::string>{"publisher", "projection.a", "projection.b"};
  auto a = assign_items(items, {"x"}, {"dead", "", "x"});
  EXPECT_EQ(a, (std::vector<std::string>{"x", "x", "x"}));
  EXPECT_EQ(assign_items(items, {}, a), (std::vector<std::string>{"", "", ""}));
}

TEST(AssignItems, RandomMembershipChangesKeepBalanceAndMoveLittle) {
  std::mt19937 rng(7);
  auto shards = shard_names(64);
  std::vector<std::string> nodes = {"n0", "n1", "n2"};
  auto owners = assign_items(shards, nodes, {});
  int next = 3;
  for (int round = 0; round < 200; ++round) {
    auto before_nodes = nodes.size();
    if (nodes.size() > 1 && rng() % 2 == 0) {
      nodes.erase(nodes.begin() + static_cast<std::ptrdiff_t>(rng() % nodes.size()));
    } else {
      nodes.push_back("n" + std::to_string(next++));
    }
    auto after = assign_items(shards, nodes, owners);
    auto c = counts(after);
    for (const auto& [node, n] : c) {
      EXPECT_GE(n, 64 / static_cast<int>(nodes.size()));
      EXPECT_LE(n, 64 / static_cast<int>(nodes.size()) + 1);
    }
    // At most the leaver's shards plus balancing slack, or the joiner's share.
    int bound = static_cast<int>(64 / std::min(before_nodes, nodes.size()) + 1);
    EXPECT_LE(moved(owners, after), bound) << "round " << round;
    owners = after;
  }
}

}  // namespace
}  // namespace troupe
