// view_changes folds a batch into one net change per row; applying the fold
// must give exactly what applying every change one by one gives.

#include "persistence/view.hpp"

#include <gtest/gtest.h>

#include <random>

namespace troupe::view {
namespace {

const std::vector<table> tables{
    {"items",
     {{"id", column_type::text},
      {"name", column_type::text},
      {"count", column_type::bigint, std::int64_t{0}},
      {"score", column_type::float8, 0.0}}},
    {"pairs",
     {{"a", column_type::text}, {"b", column_type::bigint}, {"flag", column_type::boolean}},
     2},
};

TEST(ViewChanges, UpsertThenIncrementFoldsIntoOneRow) {
  view_changes c(tables);
  c.upsert(0, {std::string("x")}, {{"name", std::string("first")}, {"count", std::int64_t{5}}});
  c.increment(0, {std::string("x")}, {{"count", std::int64_t{2}}});
  c.upsert(0, {std::string("x")}, {{"name", std::string("second")}});
  ASSERT_EQ(c.rows(), 1u);
  memory_view v(tables);
  v.apply(c);
  EXPECT_EQ(v.at(0, {std::string("x")}, "name"), value(std::string("second")));
  EXPECT_EQ(v.at(0, {std::string("x")}, "count"), value(std::int64_t{7}));
  EXPECT_EQ(v.at(0, {std::string("x")}, "score"), value(0.0));
}

TEST(ViewChanges, RemoveThenUpsertStartsAFreshRow) {
  memory_view v(tables);
  view_changes first(tables);
  first.upsert(0, {std::string("x")}, {{"name", std::string("old")}, {"count", std::int64_t{9}}});
  v.apply(first);
  view_changes second(tables);
  second.remove(0, {std::string("x")});
  second.increment(0, {std::string("x")}, {{"count", std::int64_t{1}}});
  v.apply(second);
  EXPECT_EQ(v.at(0, {std::string("x")}, "count"), value(std::int64_t{1}));
  EXPECT_EQ(v.at(0, {std::string("x")}, "name"), value(std::monostate{}));
}

TEST(ViewChanges, BadInputIsRejectedWithTheTableName) {
  view_changes c(tables);
  EXPECT_THROW(c.upsert(0, {std::string("x")}, {{"nope", std::int64_t{1}}}), std::invalid_argument);
  EXPECT_THROW(c.upsert(0, {std::string("x")}, {{"id", std::string("y")}}), std::invalid_argument);
  EXPECT_THROW(c.upsert(1, {std::string("only-one-key-part")}, {}), std::invalid_argument);
  EXPECT_THROW(c.increment(0, {std::string("x")}, {{"name", std::int64_t{1}}}),
               std::invalid_argument);
  EXPECT_THROW(c.remove(0, {std::monostate{}}), std::invalid_argument);
  try {
    c.upsert(0, {std::string("x")}, {{"nope", std::int64_t{1}}});
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("items"), std::string::npos);
  }
}

// Random sequences of changes over a few keys: the folded batch and the
// change-by-change application agree, whatever the interleaving.
TEST(ViewChanges, FoldingAgreesWithApplyingOneByOne) {
  std::mt19937 rng(42);
  for (int round = 0; round < 300; ++round) {
    memory_view stepwise(tables), folded(tables);
    view_changes seed(tables);
    seed.upsert(0, {std::string("k0")}, {{"count", std::int64_t{3}}, {"score", 1.5}});
    stepwise.apply(seed);
    folded.apply(seed);
    view_changes batch(tables);
    for (int step = 0; step < 12; ++step) {
      view_changes one(tables);
      key k{std::string("k") + std::to_string(rng() % 3)};
      key pair{std::string("p"), std::int64_t(rng() % 2)};
      switch (rng() % 6) {
        case 0: one.upsert(0, k, {{"name", std::string("n") + std::to_string(step)}}); break;
        case 1: one.increment(0, k, {{"count", std::int64_t(rng() % 10) - 4}}); break;
        case 2: one.increment(0, k, {{"score", 0.25}, {"count", std::int64_t{1}}}); break;
        case 3: one.remove(0, k); break;
        case 4: one.upsert(1, pair, {{"flag", rng() % 2 == 0}}); break;
        default: one.upsert(0, k, {{"count", std::int64_t(step)}}); break;
      }
      stepwise.apply(one);
      batch.merge(one);
    }
    folded.apply(batch);
    ASSERT_EQ(stepwise.rows(0), folded.rows(0)) << "round " << round;
    ASSERT_EQ(stepwise.rows(1), folded.rows(1)) << "round " << round;
  }
}

}  // namespace
}  // namespace troupe::view
