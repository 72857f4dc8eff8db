#pragma once
// Small helpers shared by the bookstore deciders. Pure functions only, like
// the deciders that use them.

#include <algorithm>
#include <boost/describe.hpp>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace bookstore {

/// Where a catalog entity is in its life. Deletion is soft: a deleted entity
/// keeps its stream (and its history) but refuses new business.
enum class lifecycle { absent, active, deleted };
BOOST_DESCRIBE_ENUM(lifecycle, absent, active, deleted)

/// Builds a visitor from lambdas, so each decide/evolve reads as one case per
/// alternative and a missing alternative fails to compile.
template <class... Fs>
struct overloaded : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
overloaded(Fs...) -> overloaded<Fs...>;

/// A name of only spaces is as useless to a reader as an empty one.
inline bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c) != 0; });
}

/// Counts code points, not bytes: a length limit shown to a user is in
/// characters, and a comment in Greek must not get half the room of one in
/// English. Assumes UTF-8 (the API only accepts JSON, which is UTF-8).
inline std::size_t utf8_length(std::string_view s) {
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

/// Ratings are whole stars, 0 to 5, everywhere in the bookstore.
inline constexpr int min_rating = 0;
inline constexpr int max_rating = 5;
inline bool is_valid_rating(int rating) { return rating >= min_rating && rating <= max_rating; }

}  // namespace bookstore
