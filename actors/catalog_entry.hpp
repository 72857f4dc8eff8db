#pragma once
// What author, category and publisher have in common: a named catalog entry
// that is created, renamed and soft-deleted. They stay separate aggregates
// (own streams, own event types) and share only this state and these checks.

#include <boost/describe.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "actors/common.hpp"
#include "runtime/decider.hpp"

namespace bookstore {

struct catalog_entry_state {
  std::string id;
  lifecycle status = lifecycle::absent;
  std::string name;
  bool operator==(const catalog_entry_state&) const = default;
};
BOOST_DESCRIBE_STRUCT(catalog_entry_state, (), (id, status, name))

namespace detail {

/// How one kind of entry is named in rejections.
struct entry_kind {
  std::string_view noun;          // "author"
  std::string_view deleted_code;  // "author_deleted"
};

std::optional<troupe::rejection> check_create(const catalog_entry_state& s, std::string_view id,
                                              std::string_view name, entry_kind kind);
std::optional<troupe::rejection> check_update(const catalog_entry_state& s, std::string_view name,
                                              entry_kind kind);
std::optional<troupe::rejection> check_delete(const catalog_entry_state& s, entry_kind kind);

}  // namespace detail
}  // namespace bookstore
