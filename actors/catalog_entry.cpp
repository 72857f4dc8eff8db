#include "actors/catalog_entry.hpp"

namespace bookstore::detail {
namespace {

troupe::rejection deleted(const catalog_entry_state& s, entry_kind kind) {
  return {std::string(kind.deleted_code),
          "the " + std::string(kind.noun) + " '" + s.name + "' was deleted"};
}

std::optional<troupe::rejection> check_name(std::string_view name, entry_kind kind) {
  if (is_blank(name))
    return troupe::rejection{"name_required", "a " + std::string(kind.noun) + " needs a name"};
  return std::nullopt;
}

std::optional<troupe::rejection> check_active(const catalog_entry_state& s, entry_kind kind) {
  if (s.status == lifecycle::absent)
    return troupe::rejection{"not_found", "no such " + std::string(kind.noun)};
  if (s.status == lifecycle::deleted) return deleted(s, kind);
  return std::nullopt;
}

}  // namespace

std::optional<troupe::rejection> check_create(const catalog_entry_state& s, std::string_view id,
                                              std::string_view name, entry_kind kind) {
  // A deleted entry keeps its stream, so its id cannot be reused either.
  if (s.status == lifecycle::deleted) return deleted(s, kind);
  if (s.status == lifecycle::active)
    return troupe::rejection{"already_exists",
                             "the " + std::string(kind.noun) + " '" + s.id + "' already exists"};
  if (is_blank(id))
    return troupe::rejection{"id_required", "a " + std::string(kind.noun) + " needs an id"};
  return check_name(name, kind);
}

std::optional<troupe::rejection> check_update(const catalog_entry_state& s, std::string_view name,
                                              entry_kind kind) {
  if (auto r = check_active(s, kind)) return r;
  return check_name(name, kind);
}

std::optional<troupe::rejection> check_delete(const catalog_entry_state& s, entry_kind kind) {
  return check_active(s, kind);
}

}  // namespace bookstore::detail
