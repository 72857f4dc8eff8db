#include "persistence/types.hpp"

#include <gtest/gtest.h>

namespace troupe {
namespace {

TEST(StreamId, AcceptsCategoryDashId) {
  EXPECT_EQ(validate_stream_id("book-42"), std::nullopt);
  EXPECT_EQ(validate_stream_id("order-0195f1b2-7c1e-7000-8000-000000000001"), std::nullopt);
  EXPECT_EQ(validate_stream_id("finance_account-buyer.1:x"), std::nullopt);
  EXPECT_EQ(stream_category("order-0195f1b2-7c1e"), "order");
}

TEST(StreamId, RejectsBrokenNamesWithAReason) {
  EXPECT_NE(validate_stream_id(""), std::nullopt);
  EXPECT_NE(validate_stream_id("book"), std::nullopt);
  EXPECT_NE(validate_stream_id("book-"), std::nullopt);
  EXPECT_NE(validate_stream_id("-42"), std::nullopt);
  EXPECT_NE(validate_stream_id("Book-42"), std::nullopt);
  EXPECT_NE(validate_stream_id("book-4 2"), std::nullopt);
  EXPECT_NE(validate_stream_id("book-4'2"), std::nullopt);
  EXPECT_NE(validate_stream_id("book-" + std::string(max_stream_id_length, 'x')), std::nullopt);
  EXPECT_NE(validate_stream_id("Book-42")->find("Book-42"), std::string::npos);
}

TEST(ExpectedVersion, MatchesOnlyWhatItSays) {
  EXPECT_TRUE(expected_version::any().matches(stream_version{7}));
  EXPECT_TRUE(expected_version::no_stream().matches(stream_version{0}));
  EXPECT_FALSE(expected_version::no_stream().matches(stream_version{1}));
  EXPECT_TRUE(expected_version::exact(stream_version{3}).matches(stream_version{3}));
  EXPECT_FALSE(expected_version::exact(stream_version{3}).matches(stream_version{4}));
  EXPECT_EQ(expected_version::exact(stream_version{0}), expected_version::no_stream());
}

}  // namespace
}  // namespace troupe
