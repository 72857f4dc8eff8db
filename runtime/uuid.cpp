#include "runtime/uuid.hpp"

#include <chrono>
#include <random>

namespace troupe {

namespace {

// One generator per thread: no locks on the command path.
struct generator_state {
  std::mt19937_64 random{std::random_device{}()};
  std::uint64_t last_millis = 0;
  std::uint16_t counter = 0;  // 12-bit sequence within one millisecond
};

thread_local generator_state state;

}  // namespace

uuid_bytes make_uuid_v7(std::uint64_t unix_millis) {
  // Monotonic per thread: within one millisecond a counter in rand_a orders
  // ids; when it overflows, borrow the next millisecond.
  if (unix_millis <= state.last_millis) {
    unix_millis = state.last_millis;
    if (++state.counter > 0x0fff) {
      state.counter = 0;
      ++unix_millis;
    }
  } else {
    state.counter = static_cast<std::uint16_t>(state.random() & 0x01ff);  // leave headroom
  }
  state.last_millis = unix_millis;

  uuid_bytes b{};
  for (int i = 0; i < 6; ++i) b[i] = static_cast<std::uint8_t>(unix_millis >> (40 - 8 * i));
  b[6] = static_cast<std::uint8_t>(0x70 | ((state.counter >> 8) & 0x0f));
  b[7] = static_cast<std::uint8_t>(state.counter & 0xff);
  std::uint64_t r = state.random();
  b[8] = static_cast<std::uint8_t>(0x80 | ((r >> 56) & 0x3f));  // variant 10
  for (int i = 9; i < 16; ++i) b[i] = static_cast<std::uint8_t>(r >> (8 * (15 - i)));
  return b;
}

uuid_bytes make_uuid_v7() {
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  return make_uuid_v7(static_cast<std::uint64_t>(now));
}

std::string to_string(const uuid_bytes& id) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (std::size_t i = 0; i < id.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(hex[id[i] >> 4]);
    out.push_back(hex[id[i] & 0x0f]);
  }
  return out;
}

}  // namespace troupe
