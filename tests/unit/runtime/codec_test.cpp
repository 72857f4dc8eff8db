#include "runtime/codec.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "counter.hpp"
#include "runtime/testing/decider_spec.hpp"
#include "runtime/uuid.hpp"

namespace counter_domain {
namespace {

using codec = troupe::variant_codec<counter::event>;

TEST(Codec, EncodesTypeVersionAndData) {
  auto enc = codec::encode(incremented{7});
  EXPECT_EQ(enc.type, "counter_incremented");
  EXPECT_EQ(enc.schema_version, 2);
  EXPECT_EQ(enc.data, "{\"by\":7}");
}

TEST(Codec, UpcastsVersionOneOnRead) {
  auto decoded = codec::decode("counter_incremented", 1, R"({"step":5})");
  ASSERT_TRUE(decoded) << decoded.error();
  EXPECT_EQ(*decoded, counter::event{incremented{5}});
}

TEST(Codec, RefusesWhatItCannotReadWithAReason) {
  EXPECT_NE(codec::decode("counter_exploded", 1, "{}").error().find("unknown event type"),
            std::string::npos);
  EXPECT_NE(codec::decode("counter_incremented", 3, R"({"by":1})").error().find("newer"),
            std::string::npos);
  EXPECT_FALSE(codec::decode("counter_incremented", 2, "not json"));
  EXPECT_FALSE(codec::decode("counter_incremented", 2, R"({"by":"seven"})"));
}

TEST(DeciderSpec, GivenWhenThen) {
  troupe::testing::decider_spec<counter> spec;
  spec.given({incremented{2}, incremented{3}}).when(increment{4}).then({incremented{4}});
  EXPECT_EQ(spec.current_state().value, 9);
  troupe::testing::decider_spec<counter>().when(increment{101}).then_rejected("invalid_step");
  troupe::testing::decider_spec<counter>().when(reset{}).then_nothing();
}

TEST(Uuid, Version7TextFormAndOrder) {
  // A fresh thread: the generator never goes back in time within a thread.
  troupe::uuid_bytes a{}, b{};
  std::thread([&] {
    a = troupe::make_uuid_v7(1'700'000'000'000);
    b = troupe::make_uuid_v7(1'700'000'000'000);
  }).join();
  auto text = troupe::to_string(a);
  ASSERT_EQ(text.size(), 36u);
  EXPECT_EQ(text[14], '7');                                          // version
  EXPECT_NE(std::string("89ab").find(text[19]), std::string::npos);  // variant
  EXPECT_LT(troupe::to_string(a), troupe::to_string(b));  // monotonic within a millisecond
  EXPECT_EQ(text.substr(0, 8), "018bcfe5");               // 1.7e12 ms = 0x018bcfe56800
}

}  // namespace
}  // namespace counter_domain
