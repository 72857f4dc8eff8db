#pragma once
// The publisher aggregate (stream `publisher-<publisher_id>`): a publisher of books; books refer to
// it by id. Pure decider; hosted by the runtime's aggregate actor.

#include <boost/describe.hpp>
#include <string>
#include <string_view>
#include <variant>

#include "actors/catalog_entry.hpp"
#include "runtime/decider.hpp"

namespace bookstore {

// ---- commands ---------------------------------------------------------------

struct create_publisher {
  std::string publisher_id;
  std::string name;
  bool operator==(const create_publisher&) const = default;
};
BOOST_DESCRIBE_STRUCT(create_publisher, (), (publisher_id, name))

struct update_publisher {
  std::string publisher_id;
  std::string name;
  bool operator==(const update_publisher&) const = default;
};
BOOST_DESCRIBE_STRUCT(update_publisher, (), (publisher_id, name))

struct delete_publisher {
  std::string publisher_id;
  bool operator==(const delete_publisher&) const = default;
};
BOOST_DESCRIBE_STRUCT(delete_publisher, (), (publisher_id))

// ---- events -----------------------------------------------------------------

struct publisher_created {
  static constexpr std::string_view event_type = "publisher_created";
  static constexpr int schema_version = 1;
  std::string publisher_id;
  std::string name;
  bool operator==(const publisher_created&) const = default;
};
BOOST_DESCRIBE_STRUCT(publisher_created, (), (publisher_id, name))

struct publisher_updated {
  static constexpr std::string_view event_type = "publisher_updated";
  static constexpr int schema_version = 1;
  std::string publisher_id;
  std::string name;
  bool operator==(const publisher_updated&) const = default;
};
BOOST_DESCRIBE_STRUCT(publisher_updated, (), (publisher_id, name))

struct publisher_deleted {
  static constexpr std::string_view event_type = "publisher_deleted";
  static constexpr int schema_version = 1;
  std::string publisher_id;
  bool operator==(const publisher_deleted&) const = default;
};
BOOST_DESCRIBE_STRUCT(publisher_deleted, (), (publisher_id))

// ---- decider ----------------------------------------------------------------

struct publisher {
  static constexpr std::string_view category = "publisher";
  using state = catalog_entry_state;
  using command = std::variant<create_publisher, update_publisher, delete_publisher>;
  using event = std::variant<publisher_created, publisher_updated, publisher_deleted>;

  static state initial() { return {}; }
  static troupe::decision<event> decide(const command& c, const state& s);
  static state evolve(state s, const event& e);
};
static_assert(troupe::decider<publisher>);

}  // namespace bookstore
