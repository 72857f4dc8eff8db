#pragma once
// Projection definitions: pure functions from events to view changes.
//
//   auto p = projection_builder("order_summary", 1);
//   auto orders = p.table({"order_summary", {{"order_id"}, {"status"}, ...}});
//   p.on<order_placed>([orders](const order_placed& e, const recorded_event&,
//                               view::view_changes& v) {
//     v.upsert(orders, {e.order_id}, {{"status", "placed"}});
//   });
//   projection_definition def = std::move(p).build();
//
// A handler only records changes; the projector (runtime/projector.hpp)
// writes a batch's net changes and the projection's checkpoint in one
// transaction. A handler that throws marks its event as poison: the
// projector retries it, then parks it as a dead letter and moves on.
// Event types without a handler are skipped.

#include <functional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "persistence/types.hpp"
#include "persistence/view.hpp"
#include "runtime/codec.hpp"

namespace troupe {

struct projection_definition {
  using handler = std::function<void(const recorded_event&, view::view_changes&)>;

  std::string name;
  /// Bump when tables or handlers change meaning: the view must be rebuilt.
  int version = 1;
  std::vector<view::table> tables;
  std::vector<view::sql_view> sql_views;
  std::unordered_map<std::string, handler> handlers;  // by event type

  bool handles(std::string_view type) const { return handlers.contains(std::string(type)); }

  /// Records the changes `event` makes. Throws when the event cannot be
  /// applied (undecodable data, a handler's own check).
  void apply(const recorded_event& event, view::view_changes& changes) const {
    auto it = handlers.find(event.type);
    if (it != handlers.end()) it->second(event, changes);
  }

  std::size_t table_index(std::string_view table_name) const {
    for (std::size_t i = 0; i < tables.size(); ++i)
      if (tables[i].name == table_name) return i;
    throw std::invalid_argument("projection '" + name + "' has no table '" +
                                std::string(table_name) + "'");
  }
};

class projection_builder {
 public:
  projection_builder(std::string name, int version) {
    def_.name = std::move(name);
    def_.version = version;
  }

  /// Adds a table; the returned index names it in handlers.
  std::size_t table(view::table t) {
    def_.tables.push_back(std::move(t));
    return def_.tables.size() - 1;
  }

  projection_builder& view(std::string name, std::string select) {
    def_.sql_views.push_back({std::move(name), std::move(select)});
    return *this;
  }

  /// `handler(const E&, const recorded_event&, view::view_changes&)`; the
  /// stored data is decoded (and upcast) to E first.
  template <event_type E, class F>
  projection_builder& on(F handler) {
    def_.handlers[std::string(E::event_type)] =
        [handler = std::move(handler)](const recorded_event& raw, view::view_changes& changes) {
          auto decoded =
              variant_codec<std::variant<E>>::template decode_as<E>(raw.schema_version, raw.data);
          if (!decoded) throw std::runtime_error(decoded.error());
          handler(std::get<E>(*decoded), raw, changes);
        };
    return *this;
  }

  projection_definition build() && { return std::move(def_); }

 private:
  projection_definition def_;
};

}  // namespace troupe
