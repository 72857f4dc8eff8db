#include "runtime/state_reader.hpp"

#include <boost/json.hpp>

namespace troupe {

namespace {

struct reading {
  std::shared_ptr<event_store> store;
  std::string stream_id;
  std::unique_ptr<aggregate_instance> instance;
  std::function<void(state_read)> done;
  stream_version version{0};
};

void finish_with_tail(std::shared_ptr<reading> r) {
  auto from = stream_version{r->version.value + 1};
  auto store = r->store;
  auto stream = r->stream_id;
  store->read_stream(std::move(stream), from, SIZE_MAX, [r](read_result tail) {
    state_read out;
    if (tail.error != store_errc::ok) {
      out.error = tail.error;
      out.message = std::move(tail.message);
      return r->done(std::move(out));
    }
    for (const auto& e : tail.events) {
      if (auto problem = r->instance->apply(e)) {
        out.error = store_errc::invalid_input;
        out.message = "event " + std::to_string(e.version.value) + " of " + r->stream_id +
                      " cannot be read: " + *problem;
        return r->done(std::move(out));
      }
      r->version = e.version;
    }
    out.state = r->instance->save_state();
    out.version = r->version;
    r->done(std::move(out));
  });
}

/// Uses the snapshot when it fits this build's state schema; any problem
/// with it only means reading the whole stream.
void restore(reading& r, const snapshot_record& snapshot, int schema_version,
             const std::function<std::unique_ptr<aggregate_instance>()>& make_instance) {
  if (snapshot.schema_version != schema_version) return;
  boost::system::error_code ec;
  auto doc = boost::json::parse(snapshot.state, ec);
  if (ec || !doc.is_object()) return;
  const auto* state = doc.as_object().if_contains("state");
  if (state == nullptr) return;
  if (r.instance->load_state(*state)) {
    r.instance = make_instance();
    return;
  }
  r.version = snapshot.version;
}

}  // namespace

void read_state(std::shared_ptr<event_store> store, const aggregate_type& type,
                std::string stream_id, std::function<void(state_read)> done) {
  auto r = std::make_shared<reading>();
  r->store = std::move(store);
  r->stream_id = stream_id;
  r->instance = type.make_instance();
  r->done = std::move(done);
  auto make_instance = type.make_instance;
  auto schema_version = type.state_schema_version;
  auto store_ref = r->store;
  store_ref->load_snapshot(std::move(stream_id),
                           [r, make_instance, schema_version](snapshot_result s) {
                             if (s.error != store_errc::ok) {
                               state_read out;
                               out.error = s.error;
                               out.message = std::move(s.message);
                               return r->done(std::move(out));
                             }
                             if (s.snapshot)
                               restore(*r, *s.snapshot, schema_version, make_instance);
                             finish_with_tail(r);
                           });
}

}  // namespace troupe
