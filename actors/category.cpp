#include "actors/category.hpp"

namespace bookstore {
namespace {

using decision = troupe::decision<book_category::event>;
using events = std::vector<book_category::event>;
constexpr detail::entry_kind kind{"category", "category_deleted"};

decision handle(const create_category& c, const catalog_entry_state& s) {
  if (auto r = detail::check_create(s, c.category_id, c.name, kind)) return std::unexpected(*r);
  return events{category_created{c.category_id, c.name}};
}

decision handle(const update_category& c, const catalog_entry_state& s) {
  if (auto r = detail::check_update(s, c.name, kind)) return std::unexpected(*r);
  // Renaming to the current name changes nothing worth recording.
  if (c.name == s.name) return events{};
  return events{category_updated{s.id, c.name}};
}

decision handle(const delete_category&, const catalog_entry_state& s) {
  if (auto r = detail::check_delete(s, kind)) return std::unexpected(*r);
  return events{category_deleted{s.id}};
}

}  // namespace

troupe::decision<book_category::event> book_category::decide(const command& c, const state& s) {
  return std::visit([&](const auto& cmd) { return handle(cmd, s); }, c);
}

book_category::state book_category::evolve(state s, const event& e) {
  std::visit(overloaded{
                 [&](const category_created& e) {
                   s.id = e.category_id;
                   s.status = lifecycle::active;
                   s.name = e.name;
                 },
                 [&](const category_updated& e) { s.name = e.name; },
                 [&](const category_deleted&) { s.status = lifecycle::deleted; },
             },
             e);
  return s;
}

}  // namespace bookstore
