#include "actors/publisher.hpp"

namespace bookstore {
namespace {

using decision = troupe::decision<publisher::event>;
using events = std::vector<publisher::event>;
constexpr detail::entry_kind kind{"publisher", "publisher_deleted"};

decision handle(const create_publisher& c, const catalog_entry_state& s) {
  if (auto r = detail::check_create(s, c.publisher_id, c.name, kind)) return std::unexpected(*r);
  return events{publisher_created{c.publisher_id, c.name}};
}

decision handle(const update_publisher& c, const catalog_entry_state& s) {
  if (auto r = detail::check_update(s, c.name, kind)) return std::unexpected(*r);
  // Renaming to the current name changes nothing worth recording.
  if (c.name == s.name) return events{};
  return events{publisher_updated{s.id, c.name}};
}

decision handle(const delete_publisher&, const catalog_entry_state& s) {
  if (auto r = detail::check_delete(s, kind)) return std::unexpected(*r);
  return events{publisher_deleted{s.id}};
}

}  // namespace

troupe::decision<publisher::event> publisher::decide(const command& c, const state& s) {
  return std::visit([&](const auto& cmd) { return handle(cmd, s); }, c);
}

publisher::state publisher::evolve(state s, const event& e) {
  std::visit(overloaded{
                 [&](const publisher_created& e) {
                   s.id = e.publisher_id;
                   s.status = lifecycle::active;
                   s.name = e.name;
                 },
                 [&](const publisher_updated& e) { s.name = e.name; },
                 [&](const publisher_deleted&) { s.status = lifecycle::deleted; },
             },
             e);
  return s;
}

}  // namespace bookstore
