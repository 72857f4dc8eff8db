#pragma once
// The category aggregate (stream `category-<category_id>`): a category
// (genre) books are filed under; books refer to it by id. Pure decider;
// hosted by the runtime's aggregate actor.
//
// The decider is named book_category because a class cannot have a static
// member (`category`) with its own name.

#include <boost/describe.hpp>
#include <string>
#include <string_view>
#include <variant>

#include "actors/catalog_entry.hpp"
#include "runtime/decider.hpp"

namespace bookstore {

// ---- commands ---------------------------------------------------------------

struct create_category {
  std::string category_id;
  std::string name;
  bool operator==(const create_category&) const = default;
};
BOOST_DESCRIBE_STRUCT(create_category, (), (category_id, name))

struct update_category {
  std::string category_id;
  std::string name;
  bool operator==(const update_category&) const = default;
};
BOOST_DESCRIBE_STRUCT(update_category, (), (category_id, name))

struct delete_category {
  std::string category_id;
  bool operator==(const delete_category&) const = default;
};
BOOST_DESCRIBE_STRUCT(delete_category, (), (category_id))

// ---- events -----------------------------------------------------------------

struct category_created {
  static constexpr std::string_view event_type = "category_created";
  static constexpr int schema_version = 1;
  std::string category_id;
  std::string name;
  bool operator==(const category_created&) const = default;
};
BOOST_DESCRIBE_STRUCT(category_created, (), (category_id, name))

struct category_updated {
  static constexpr std::string_view event_type = "category_updated";
  static constexpr int schema_version = 1;
  std::string category_id;
  std::string name;
  bool operator==(const category_updated&) const = default;
};
BOOST_DESCRIBE_STRUCT(category_updated, (), (category_id, name))

struct category_deleted {
  static constexpr std::string_view event_type = "category_deleted";
  static constexpr int schema_version = 1;
  std::string category_id;
  bool operator==(const category_deleted&) const = default;
};
BOOST_DESCRIBE_STRUCT(category_deleted, (), (category_id))

// ---- decider ----------------------------------------------------------------

struct book_category {
  static constexpr std::string_view category = "category";
  using state = catalog_entry_state;
  using command = std::variant<create_category, update_category, delete_category>;
  using event = std::variant<category_created, category_updated, category_deleted>;

  static state initial() { return {}; }
  static troupe::decision<event> decide(const command& c, const state& s);
  static state evolve(state s, const event& e);
};
static_assert(troupe::decider<book_category>);

}  // namespace bookstore
