#include "actors/event_catalog.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <variant>

#include "actors/bookstore.hpp"
#include "actors/projections.hpp"
#include "actors/sagas.hpp"
#include "runtime/aggregate_host.hpp"

namespace bookstore {

namespace {

struct entry {
  std::string type;
  int schema_version;
  std::string producer;
  std::vector<std::string> projections;
  std::vector<std::string> sagas;
};

template <class Variant>
struct variant_types;
template <class... Ts>
struct variant_types<std::variant<Ts...>> {
  static std::vector<std::string> get() { return {std::string(Ts::event_type)...}; }
};

template <class Saga>
void add_saga(std::vector<entry>& entries) {
  for (const auto& type : variant_types<typename Saga::event>::get())
    for (auto& e : entries)
      if (e.type == type) e.sagas.emplace_back(Saga::name);
}

std::vector<entry> build() {
  std::vector<entry> entries;
  [&]<class... Ds>(std::tuple<Ds...>*) {
    (
        [&] {
          auto t = troupe::make_aggregate_type<Ds>();
          for (const auto& e : t.events)
            entries.push_back({e.type, e.schema_version, t.category, {}, {}});
        }(),
        ...);
  }(static_cast<bookstore_aggregates*>(nullptr));
  for (const auto& p : bookstore_projections())
    for (auto& e : entries)
      if (p.handles(e.type)) e.projections.push_back(p.name);
  add_saga<order_fulfilment>(entries);
  add_saga<rating_saga>(entries);
  std::sort(entries.begin(), entries.end(), [](const entry& a, const entry& b) {
    return std::tie(a.producer, a.type) < std::tie(b.producer, b.type);
  });
  return entries;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "-" : out;
}

}  // namespace

std::string event_catalog_json() {
  boost::json::array events;
  for (const auto& e : build()) {
    boost::json::array projections(e.projections.begin(), e.projections.end());
    boost::json::array sagas(e.sagas.begin(), e.sagas.end());
    events.push_back(boost::json::object{{"type", e.type},
                                         {"schema_version", e.schema_version},
                                         {"producer", e.producer},
                                         {"projections", std::move(projections)},
                                         {"sagas", std::move(sagas)}});
  }
  return boost::json::serialize(boost::json::object{{"events", std::move(events)}});
}

std::string event_catalog_markdown() {
  std::string out =
      "| event | schema version | producer | projections | sagas |\n|---|---|---|---|---|\n";
  for (const auto& e : build())
    out += "| " + e.type + " | " + std::to_string(e.schema_version) + " | " + e.producer + " | " +
           joined(e.projections) + " | " + joined(e.sagas) + " |\n";
  return out;
}

}  // namespace bookstore
