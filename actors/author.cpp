#include "actors/author.hpp"

namespace bookstore {
namespace {

using decision = troupe::decision<author::event>;
using events = std::vector<author::event>;
constexpr detail::entry_kind kind{"author", "author_deleted"};

decision handle(const create_author& c, const catalog_entry_state& s) {
  if (auto r = detail::check_create(s, c.author_id, c.name, kind)) return std::unexpected(*r);
  return events{author_created{c.author_id, c.name}};
}

decision handle(const update_author& c, const catalog_entry_state& s) {
  if (auto r = detail::check_update(s, c.name, kind)) return std::unexpected(*r);
  // Renaming to the current name changes nothing worth recording.
  if (c.name == s.name) return events{};
  return events{author_updated{s.id, c.name}};
}

decision handle(const delete_author&, const catalog_entry_state& s) {
  if (auto r = detail::check_delete(s, kind)) return std::unexpected(*r);
  return events{author_deleted{s.id}};
}

}  // namespace

troupe::decision<author::event> author::decide(const command& c, const state& s) {
  return std::visit([&](const auto& cmd) { return handle(cmd, s); }, c);
}

author::state author::evolve(state s, const event& e) {
  std::visit(overloaded{
                 [&](const author_created& e) {
                   s.id = e.author_id;
                   s.status = lifecycle::active;
                   s.name = e.name;
                 },
                 [&](const author_updated& e) { s.name = e.name; },
                 [&](const author_deleted&) { s.status = lifecycle::deleted; },
             },
             e);
  return s;
}

}  // namespace bookstore
