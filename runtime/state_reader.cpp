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

/// Applies events to the reading; false (and answered) when one cannot be.
bool apply_events(reading& r, const std::vector<recorded_event>& events) {
  for (const auto& e : events) {
    if (auto problem = r.instance->apply(e)) {
      state_read out;
      out.error = store_errc::invalid_input;
      out.message = "event " + std::to_string(e.version.value) + " of " + r.stream_id +
                    " cannot be read: " + *problem;
      r.done(std::move(out));
      return false;
    }
    r.version = e.version;
  }
  return true;
}

void answer(reading& r) {
  state_read out;
  out.state = r.instance->save_state();
  out.version = r.version;
  r.done(std::move(out));
}

bool failed(reading& r, store_errc error, std::string& message) {
  if (error == store_errc::ok) return false;
  state_read out;
  out.error = error;
  out.message = std::move(message);
  r.done(std::move(out));
  return true;
}

void finish_with_tail(std::shared_ptr<reading> r) {
  auto from = stream_version{r->version.value + 1};
  auto store = r->store;
  auto stream = r->stream_id;
  store->read_stream(std::move(stream), from, SIZE_MAX, [r](read_result tail) {
    if (failed(*r, tail.error, tail.message)) return;
    if (apply_events(*r, tail.events)) answer(*r);
  });
}

/// Uses the snapshot when it fits this build's state schema; any problem
/// with it only means reading the whole stream.
bool restore(reading& r, const snapshot_record& snapshot, int schema_version,
             const std::function<std::unique_ptr<aggregate_instance>()>& make_instance) {
  if (snapshot.schema_version != schema_version) return false;
  boost::system::error_code ec;
  auto doc = boost::json::parse(snapshot.state, ec);
  if (ec || !doc.is_object()) return false;
  const auto* state = doc.as_object().if_contains("state");
  if (state == nullptr) return false;
  if (r.instance->load_state(*state)) {
    r.instance = make_instance();
    return false;
  }
  r.version = snapshot.version;
  return true;
}

/// Events read with the snapshot; a longer tail is read afterwards.
constexpr std::size_t head_page = 1000;

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
  // Snapshot and the events after it in one request (the PostgreSQL store
  // serves many per round trip); only a long tail needs a second read.
  store_ref->load_stream_head(
      std::move(stream_id), head_page, [r, make_instance, schema_version](stream_head_result head) {
        if (failed(*r, head.snapshot.error, head.snapshot.message)) return;
        // A snapshot this build cannot use: read the whole stream instead.
        if (head.snapshot.snapshot &&
            !restore(*r, *head.snapshot.snapshot, schema_version, make_instance))
          return finish_with_tail(r);
        if (failed(*r, head.tail.error, head.tail.message)) return;
        if (!apply_events(*r, head.tail.events)) return;
        if (head.tail.events.size() >= head_page) return finish_with_tail(r);
        answer(*r);
      });
}

}  // namespace troupe
