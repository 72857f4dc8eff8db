// libFuzzer target: request bodies decoded into commands. Any bytes must
// give a command or a list of field errors - never a crash, a hang or an
// exception. The first byte picks the command type.

#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>

#include "actors/bookstore.hpp"
#include "http/json_input.hpp"

namespace {

template <class T>
void decode(const boost::json::value& v) {
  auto result = troupe::http::decode_json<T>(v);
  if (result) {
    // A decoded command serialises back and decodes to the same value.
    auto again = troupe::http::decode_json<T>(boost::json::value_from(*result));
    if (!again || !(*again == *result)) __builtin_trap();
  } else if (result.error().empty()) {
    __builtin_trap();  // a refusal must name what is wrong
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  boost::system::error_code ec;
  boost::json::parse_options options;
  options.max_depth = 32;  // as the API parses
  auto v = boost::json::parse(text, ec, {}, options);
  if (ec) return 0;
  using namespace bookstore;
  switch (data[0] % 8) {
    case 0: decode<create_book>(v); break;
    case 1: decode<update_book>(v); break;
    case 2: decode<save_basket>(v); break;
    case 3: decode<place_order>(v); break;
    case 4: decode<create_feedback>(v); break;
    case 5: decode<open_account>(v); break;
    case 6: decode<add_stock>(v); break;
    default: decode<create_author>(v); break;
  }
  return 0;
}
