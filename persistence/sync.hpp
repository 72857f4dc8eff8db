#pragma once
// Blocking wrappers over the asynchronous event store, for tools, tests and
// start-up code. Never call these from inside an actor.

#include <future>

#include "persistence/event_store.hpp"

namespace troupe::sync {

inline append_result append(event_store& store, append_request request) {
  std::promise<append_result> p;
  auto f = p.get_future();
  store.append(std::move(request), [&p](append_result r) { p.set_value(std::move(r)); });
  return f.get();
}

inline read_result read_stream(event_store& store, std::string stream_id,
                               stream_version from = stream_version{1},
                               std::size_t max_count = SIZE_MAX) {
  std::promise<read_result> p;
  auto f = p.get_future();
  store.read_stream(std::move(stream_id), from, max_count,
                    [&p](read_result r) { p.set_value(std::move(r)); });
  return f.get();
}

inline read_result read_all(event_store& store, global_position after = global_position{0},
                            std::size_t max_count = SIZE_MAX) {
  std::promise<read_result> p;
  auto f = p.get_future();
  store.read_all(after, max_count, [&p](read_result r) { p.set_value(std::move(r)); });
  return f.get();
}

inline snapshot_result load_snapshot(event_store& store, std::string stream_id) {
  std::promise<snapshot_result> p;
  auto f = p.get_future();
  store.load_snapshot(std::move(stream_id), [&p](snapshot_result r) { p.set_value(std::move(r)); });
  return f.get();
}

inline store_errc save_snapshot(event_store& store, snapshot_record snapshot) {
  std::promise<store_errc> p;
  auto f = p.get_future();
  store.save_snapshot(std::move(snapshot), [&p](store_errc e, std::string) { p.set_value(e); });
  return f.get();
}

inline std::pair<store_errc, global_position> load_checkpoint(event_store& store,
                                                              std::string name) {
  std::promise<std::pair<store_errc, global_position>> p;
  auto f = p.get_future();
  store.load_checkpoint(std::move(name), [&p](store_errc e, std::string, global_position at) {
    p.set_value({e, at});
  });
  return f.get();
}

inline store_errc save_checkpoint(event_store& store, std::string name, global_position at) {
  std::promise<store_errc> p;
  auto f = p.get_future();
  store.save_checkpoint(std::move(name), at, [&p](store_errc e, std::string) { p.set_value(e); });
  return f.get();
}

}  // namespace troupe::sync
