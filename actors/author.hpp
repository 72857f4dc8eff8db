#pragma once
// The author aggregate (stream `author-<author_id>`): an author of books; books refer to it by id.
// Pure decider; hosted by the runtime's aggregate actor.

#include <boost/describe.hpp>
#include <string>
#include <string_view>
#include <variant>

#include "actors/catalog_entry.hpp"
#include "runtime/decider.hpp"

namespace bookstore {

// ---- commands ---------------------------------------------------------------

struct create_author {
  std::string author_id;
  std::string name;
  bool operator==(const create_author&) const = default;
};
BOOST_DESCRIBE_STRUCT(create_author, (), (author_id, name))

struct update_author {
  std::string author_id;
  std::string name;
  bool operator==(const update_author&) const = default;
};
BOOST_DESCRIBE_STRUCT(update_author, (), (author_id, name))

struct delete_author {
  std::string author_id;
  bool operator==(const delete_author&) const = default;
};
BOOST_DESCRIBE_STRUCT(delete_author, (), (author_id))

// ---- events -----------------------------------------------------------------

struct author_created {
  static constexpr std::string_view event_type = "author_created";
  static constexpr int schema_version = 1;
  std::string author_id;
  std::string name;
  bool operator==(const author_created&) const = default;
};
BOOST_DESCRIBE_STRUCT(author_created, (), (author_id, name))

struct author_updated {
  static constexpr std::string_view event_type = "author_updated";
  static constexpr int schema_version = 1;
  std::string author_id;
  std::string name;
  bool operator==(const author_updated&) const = default;
};
BOOST_DESCRIBE_STRUCT(author_updated, (), (author_id, name))

struct author_deleted {
  static constexpr std::string_view event_type = "author_deleted";
  static constexpr int schema_version = 1;
  std::string author_id;
  bool operator==(const author_deleted&) const = default;
};
BOOST_DESCRIBE_STRUCT(author_deleted, (), (author_id))

// ---- decider ----------------------------------------------------------------

struct author {
  static constexpr std::string_view category = "author";
  using state = catalog_entry_state;
  using command = std::variant<create_author, update_author, delete_author>;
  using event = std::variant<author_created, author_updated, author_deleted>;

  static state initial() { return {}; }
  static troupe::decision<event> decide(const command& c, const state& s);
  static state evolve(state s, const event& e);
};
static_assert(troupe::decider<author>);

}  // namespace bookstore
