#include "runtime/cluster.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/json.hpp>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <expected>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <thread>

#include "runtime/node.hpp"
#include "runtime/shard_map.hpp"
#include "runtime/src/nats_support.hpp"

namespace troupe {

using steady = std::chrono::steady_clock;
using detail::nats_error;

std::string cluster_safe_id(std::string_view id) {
  std::string out;
  out.reserve(id.size());
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    out.push_back(ok ? c : '_');
  }
  return out.empty() ? std::string("node") : out;
}

namespace {

std::int64_t unix_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string bucket_name(const std::string& cluster, std::string_view what) {
  return "troupe_" + cluster_safe_id(cluster) + "_" + std::string(what);
}

std::string node_subject(const std::string& cluster, const std::string& node_id) {
  return "troupe." + cluster_safe_id(cluster) + ".node." + node_id;
}

/// One KV entry as read.
struct kv_value {
  bool found = false;
  std::string value;
  std::uint64_t revision = 0;
  std::int64_t created_ns = 0;
};

/// kvStore_Get: the entry, nothing (absent, deleted, expired) or an error.
natsStatus kv_get(kvStore* kv, const std::string& key, kv_value& out) {
  out = {};
  kvEntry* e = nullptr;
  natsStatus s = kvStore_Get(&e, kv, key.c_str());
  if (s == NATS_NOT_FOUND) return NATS_OK;
  if (s != NATS_OK) return s;
  out.found = true;
  out.value = kvEntry_ValueString(e) ? kvEntry_ValueString(e) : "";
  out.revision = kvEntry_Revision(e);
  out.created_ns = kvEntry_Created(e);
  kvEntry_Destroy(e);
  return NATS_OK;
}

kvStore* open_bucket(jsCtx* js, const std::string& name, std::chrono::milliseconds ttl,
                     int replicas, spdlog::logger& log) {
  kvConfig cfg;
  kvConfig_Init(&cfg);
  cfg.Bucket = name.c_str();
  cfg.History = 1;
  cfg.TTL = std::chrono::duration_cast<std::chrono::nanoseconds>(ttl).count();  // nats.c 3.4: ns
  cfg.Replicas = replicas;
  cfg.StorageType = js_MemoryStorage;  // leases are soft state: a lost bucket re-forms
  kvStore* kv = nullptr;
  natsStatus s = js_CreateKeyValue(&kv, js, &cfg);
  if (s == NATS_OK) return kv;
  // Exists with other settings (an older TTL, say): use it as it is.
  std::string why = nats_error(s);
  if (const char* text = nats_GetLastError(nullptr)) why += std::string(": ") + text;
  natsStatus bound = js_KeyValue(&kv, js, name.c_str());
  if (bound != NATS_OK)
    throw std::runtime_error("cannot create the KV bucket " + name + ": " + why);
  log.warn("KV bucket {} exists with other settings than this node's ({}); using it as it is", name,
           nats_error(s));
  return kv;
}

std::vector<cluster_member> read_members(kvStore* kv, std::int64_t now_ns, bool& ok) {
  std::vector<cluster_member> out;
  kvKeysList list{};
  natsStatus s = kvStore_Keys(&list, kv, nullptr);
  if (s == NATS_NOT_FOUND) {
    ok = true;
    return out;
  }
  if (s != NATS_OK) {
    ok = false;
    return out;
  }
  ok = true;
  for (int i = 0; i < list.Count; ++i) {
    kv_value v;
    if (kv_get(kv, list.Keys[i], v) != NATS_OK) {
      ok = false;
      continue;
    }
    if (!v.found) continue;
    cluster_member m;
    m.id = list.Keys[i];
    boost::system::error_code ec;
    auto json = boost::json::parse(v.value, ec);
    if (!ec && json.is_object())
      if (const auto* http = json.as_object().if_contains("http"); http && http->is_string())
        m.http_url = std::string(http->as_string());
    m.heartbeat_age_seconds = std::max(0.0, static_cast<double>(now_ns - v.created_ns) / 1e9);
    out.push_back(std::move(m));
  }
  kvKeysList_Destroy(&list);
  return out;
}

command_result failure(command_status status, std::string code, std::string message) {
  command_result r;
  r.status = status;
  r.reason = rejection{std::move(code), std::move(message)};
  return r;
}

std::optional<command_status> status_from(std::string_view s) {
  for (auto st : {command_status::accepted, command_status::duplicate, command_status::rejected,
                  command_status::conflict, command_status::overloaded, command_status::unavailable,
                  command_status::invalid})
    if (to_string(st) == s) return st;
  return std::nullopt;
}

std::string encode_result(const command_result& r) {
  boost::json::object o;
  o["st"] = to_string(r.status);
  if (!r.reason.code.empty()) o["code"] = r.reason.code;
  if (!r.reason.message.empty()) o["msg"] = r.reason.message;
  o["fv"] = r.first_version.value;
  o["v"] = r.version.value;
  o["p"] = r.position.value;
  o["n"] = r.event_count;
  return boost::json::serialize(o);
}

command_result decode_result(std::string_view text) {
  boost::system::error_code ec;
  auto json = boost::json::parse(text, ec);
  if (ec || !json.is_object())
    return failure(command_status::unavailable, "bad_peer_answer", "a peer answered garbage");
  const auto& o = json.as_object();
  auto text_of = [&](const char* key) {
    const auto* v = o.if_contains(key);
    return v && v->is_string() ? std::string(v->as_string()) : std::string();
  };
  auto int_of = [&](const char* key) -> std::int64_t {
    const auto* v = o.if_contains(key);
    return v && v->is_int64() ? v->as_int64() : 0;
  };
  auto status = status_from(text_of("st"));
  if (!status)
    return failure(command_status::unavailable, "bad_peer_answer", "a peer answered garbage");
  command_result r;
  r.status = *status;
  r.reason = rejection{text_of("code"), text_of("msg")};
  r.first_version = stream_version{int_of("fv")};
  r.version = stream_version{int_of("v")};
  r.position = global_position{int_of("p")};
  r.event_count = static_cast<std::size_t>(int_of("n"));
  return r;
}

std::int64_t encode_expected(expected_version e) {
  switch (e.which()) {
    case expected_version::kind::any: return -1;
    case expected_version::kind::no_stream: return 0;
    case expected_version::kind::exact: return e.version().value;
  }
  return -1;
}

expected_version decode_expected(std::int64_t v) {
  if (v < 0) return expected_version::any();
  return expected_version::exact(stream_version{v});
}

}  // namespace

// ---- the implementation ----------------------------------------------------------

// Threads and what they own:
// - heartbeat thread: the leases (state, revisions) and every KV write;
//   region callbacks and singleton starts report to it through `events`
//   instead of touching lease state, so no CAF thread ever waits for NATS;
// - timer thread: forwarded commands' retries and attempt deadlines;
// - worker thread: singleton start/stop (they block);
// - nats.c threads: forwarded commands arriving, answers arriving.
// Callbacks that may outlive cluster::stop hold the impl by shared_ptr.
struct cluster::impl : std::enable_shared_from_this<cluster::impl> {
  enum class lease_state : std::uint8_t {
    idle,         // not ours
    starting,     // ours; a singleton's start is running
    held,         // ours and serving
    handing_off,  // ours; finishing in-flight work before release
    drained,      // ours; ready to release
  };
  struct lease {
    std::string key;
    int shard = -1;      // for shard leases
    int singleton = -1;  // index into singletons
    lease_state state = lease_state::idle;
    std::uint64_t revision = 0;  // ours, when not idle
    std::uint64_t epoch = 0;     // bumped per take/hand-off: stale callbacks are ignored
    steady::time_point renewed_at;
    steady::time_point retry_after;  // after a failed singleton start
    // As last seen through the watcher.
    std::string owner;
    std::uint64_t seen_revision = 0;
    bool exists = false;
    steady::time_point seen_at;
  };
  struct member_seen {
    std::string http_url;
    steady::time_point seen_at;  // local clock: immune to skew between machines
  };
  struct singleton {
    std::string name;
    std::function<void()> start, stop, fence;
    // The lease epoch at which it was last lost: a start still running then
    // (the slot was empty when fenced) fences what it started.
    std::shared_ptr<std::atomic<std::uint64_t>> lost_epoch =
        std::make_shared<std::atomic<std::uint64_t>>(0);
  };
  enum class event_kind : std::uint8_t { drained, started, start_failed };
  struct lease_event {
    std::string key;
    std::uint64_t epoch;
    event_kind kind;
  };
  struct forward_request {
    command_envelope command;
    command_completion done;
    steady::time_point deadline;
    std::int64_t deadline_unix_ms = 0;
    int shard = 0;
    int attempts = 0;
  };
  struct awaiting_answer {
    std::shared_ptr<forward_request> request;
    std::string owner;
    steady::time_point attempt_deadline;
  };

  impl(node& n, cluster_options o) : node_(n), options(std::move(o)) {}

  node& node_;
  cluster_options options;
  std::shared_ptr<spdlog::logger> log;
  std::string self;
  std::string subject;
  std::vector<singleton> singletons;

  std::shared_ptr<natsConnection> nc;  // answers in flight keep it alive
  jsCtx* js = nullptr;
  kvStore* nodes_kv = nullptr;
  kvStore* leases_kv = nullptr;
  kvWatcher* nodes_watch = nullptr;
  kvWatcher* leases_watch = nullptr;
  bool nodes_synced = false, leases_synced = false;  // initial values received
  natsSubscription* command_sub = nullptr;
  natsSubscription* answer_sub = nullptr;
  std::string inbox;

  // Leases and members: written by the heartbeat thread (and stop() after
  // it ended) under `state_mutex`; status() reads them.
  mutable std::mutex state_mutex;
  std::vector<lease> leases;  // shards first, then singletons
  std::map<std::string, member_seen, std::less<>> members;
  std::mutex events_mutex;
  std::vector<lease_event> events;
  // Routing: shard -> owner's id, live members; and whether we serve a
  // shard, until when (steady ns): a node that cannot renew stops serving
  // on its own, however slow its heartbeat thread is.
  mutable std::shared_mutex routes_mutex;
  std::vector<std::string> shard_owner;
  std::set<std::string, std::less<>> live;
  std::unique_ptr<std::atomic<bool>[]> serving;
  std::unique_ptr<std::atomic<std::int64_t>[]> serve_until;

  // Forwarding.
  std::mutex forward_mutex;
  std::condition_variable forward_wake;
  std::unordered_map<std::uint64_t, awaiting_answer> awaiting;
  std::multimap<steady::time_point, std::uint64_t> attempt_deadlines;
  std::multimap<steady::time_point, std::shared_ptr<forward_request>> retries;
  std::uint64_t next_request = 1;
  std::atomic<std::int64_t> waiting{0};
  std::atomic<std::int64_t> forwarded{0}, received{0}, retried{0}, timed_out{0};
  std::atomic<std::int64_t> acquired{0}, released{0}, lost{0};

  // Threads.
  std::thread heartbeat_thread, timer_thread, worker_thread;
  std::mutex wake_mutex;
  std::condition_variable wake;
  bool wake_now = false;
  std::atomic<bool> stopping{false};  // heartbeats end
  std::atomic<bool> leaving{false};   // commands are no longer routed
  std::atomic<bool> timer_stop{false};
  bool started = false;
  std::mutex worker_mutex;
  std::condition_variable worker_wake;
  std::deque<std::function<void()>> worker_tasks;
  bool worker_stop = false;
  mutable std::mutex advertise_mutex;  // guards options.http_url

  // ---- helpers ----

  void nudge() {
    {
      std::lock_guard lock{wake_mutex};
      wake_now = true;
    }
    wake.notify_all();
  }

  void report(std::string key, std::uint64_t epoch, event_kind kind) {
    {
      std::lock_guard lock{events_mutex};
      events.push_back({std::move(key), epoch, kind});
    }
    nudge();
  }

  void post(std::function<void()> task) {
    {
      std::lock_guard lock{worker_mutex};
      worker_tasks.push_back(std::move(task));
    }
    worker_wake.notify_one();
  }

  void worker_loop() {
    while (true) {
      std::function<void()> task;
      {
        std::unique_lock lock{worker_mutex};
        worker_wake.wait(lock, [&] { return worker_stop || !worker_tasks.empty(); });
        if (worker_tasks.empty()) return;
        task = std::move(worker_tasks.front());
        worker_tasks.pop_front();
      }
      task();
    }
  }

  static std::int64_t steady_ns(steady::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  }

  bool serves(int shard) const {
    return serving[shard].load(std::memory_order_acquire) &&
           steady_ns(steady::now()) < serve_until[shard].load(std::memory_order_acquire);
  }

  /// How long past its last renewal a lease is still served here: well
  /// before a peer can take it (the bucket expires it after the full TTL).
  std::chrono::nanoseconds serve_margin() const { return options.lease_ttl * 4 / 5; }

  // ---- routing ----

  void route(std::shared_ptr<forward_request> r) {
    if (leaving.load(std::memory_order_acquire)) {
      finish(*r, failure(command_status::unavailable, not_applied::node_leaving,
                         "this node is leaving the cluster; retry on another node"));
      return;
    }
    if (steady::now() >= r->deadline) {
      timed_out.fetch_add(1, std::memory_order_relaxed);
      finish(*r, failure(command_status::unavailable, not_applied::shard_unavailable,
                         "no node served shard " + std::to_string(r->shard) + " of " +
                             r->command.stream_id + " within " +
                             std::to_string(options.forward_timeout.count()) +
                             " ms (the command was not applied); retry"));
      return;
    }
    if (serves(r->shard)) {
      node_.submit_here(
          r->command,
          [self_ptr = shared_from_this(), r](command_result result) {
            if (result.status == command_status::unavailable &&
                result.reason.code == not_applied::shard_moved) {
              self_ptr->retry_later(r);  // never tried here: send it on
              return;
            }
            self_ptr->finish(*r, std::move(result));
          },
          true);
      return;
    }
    std::string owner;
    {
      std::shared_lock lock{routes_mutex};
      owner = shard_owner[static_cast<std::size_t>(r->shard)];
      if (!owner.empty() && (owner == self || !live.contains(owner))) owner.clear();
    }
    if (owner.empty()) {
      retry_later(std::move(r));  // moving, or its owner's lease has not expired yet
      return;
    }
    forward(std::move(r), owner);
  }

  void finish(forward_request& r, command_result result) {
    waiting.fetch_sub(1, std::memory_order_relaxed);
    auto done = std::move(r.done);
    done(std::move(result));
  }

  /// Tries again after a backoff that grows per attempt (20 ms .. 500 ms),
  /// so a shard in motion is not hammered while the routing table catches up.
  void retry_later(std::shared_ptr<forward_request> r) {
    if (timer_stop.load()) {
      finish(*r, failure(command_status::unavailable, not_applied::node_leaving,
                         "this node left the cluster before the command was sent; retry"));
      return;
    }
    retried.fetch_add(1, std::memory_order_relaxed);
    auto delay = std::chrono::milliseconds{20} * (1 << std::min(r->attempts++, 5));
    {
      std::lock_guard lock{forward_mutex};
      retries.emplace(steady::now() + std::min(delay, std::chrono::milliseconds{500}),
                      std::move(r));
    }
    forward_wake.notify_one();
  }

  void forward(std::shared_ptr<forward_request> r, const std::string& owner) {
    const auto* type = node_.find_aggregate_type(stream_category(r->command.stream_id));
    std::optional<std::pair<std::size_t, std::string>> encoded;
    if (type != nullptr && type->encode_command) encoded = type->encode_command(r->command.payload);
    if (!encoded) {
      finish(*r, failure(command_status::invalid, "not_forwardable",
                         "the command for " + r->command.stream_id +
                             " cannot be sent to another node (its type has no JSON form)"));
      return;
    }
    boost::json::object o;
    o["s"] = r->command.stream_id;
    o["k"] = encoded->first;
    o["c"] = encoded->second;
    o["id"] = r->command.command_id;
    o["corr"] = r->command.correlation_id;
    if (!r->command.causation_id.empty()) o["caus"] = r->command.causation_id;
    if (!r->command.traceparent.empty()) o["tp"] = r->command.traceparent;
    o["e"] = encode_expected(r->command.expected);
    o["dl"] = r->deadline_unix_ms;
    auto body = boost::json::serialize(o);
    std::uint64_t id;
    {
      std::lock_guard lock{forward_mutex};
      id = next_request++;
      auto deadline = std::min(r->deadline, steady::now() + options.forward_attempt_timeout);
      awaiting.emplace(id, awaiting_answer{r, owner, deadline});
      attempt_deadlines.emplace(deadline, id);
    }
    forwarded.fetch_add(1, std::memory_order_relaxed);
    auto reply = inbox + "." + std::to_string(id);
    natsStatus s =
        natsConnection_PublishRequest(nc.get(), node_subject(options.name, owner).c_str(),
                                      reply.c_str(), body.data(), static_cast<int>(body.size()));
    if (s != NATS_OK) {
      if (auto again = take_awaiting(id)) retry_later(std::move(again));  // never sent
    }
  }

  std::shared_ptr<forward_request> take_awaiting(std::uint64_t id) {
    std::lock_guard lock{forward_mutex};
    auto it = awaiting.find(id);
    if (it == awaiting.end()) return nullptr;
    auto r = std::move(it->second.request);
    awaiting.erase(it);
    return r;
  }

  static void on_answer(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    auto* im = static_cast<impl*>(closure);
    std::string_view subject = natsMsg_GetSubject(msg);
    std::uint64_t id = 0;
    if (auto dot = subject.rfind('.'); dot != std::string_view::npos)
      std::from_chars(subject.data() + dot + 1, subject.data() + subject.size(), id);
    if (auto r = im->take_awaiting(id)) {
      if (natsMsg_IsNoResponders(msg)) {
        im->retry_later(std::move(r));  // its owner is not subscribed (any more)
      } else {
        auto result = decode_result(std::string_view(
            natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg))));
        // Answers that mean "not tried there": send it on.
        if (result.status == command_status::unavailable &&
            (result.reason.code == not_applied::not_owner ||
             result.reason.code == not_applied::shard_moved))
          im->retry_later(std::move(r));
        else
          im->finish(*r, std::move(result));
      }
    }
    natsMsg_Destroy(msg);
  }

  static void on_command(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    auto* im = static_cast<impl*>(closure);
    im->received.fetch_add(1, std::memory_order_relaxed);
    const char* reply_to = natsMsg_GetReply(msg);
    auto answer = [conn = im->nc,
                   reply = std::string(reply_to ? reply_to : "")](const command_result& r) {
      if (reply.empty()) return;
      auto body = encode_result(r);
      natsConnection_Publish(conn.get(), reply.c_str(), body.data(), static_cast<int>(body.size()));
    };
    std::int64_t deadline_ms = 0;
    auto request =
        im->decode_request(std::string_view(natsMsg_GetData(msg),
                                            static_cast<std::size_t>(natsMsg_GetDataLength(msg))),
                           deadline_ms);
    natsMsg_Destroy(msg);
    if (!request) {
      answer(failure(command_status::invalid, "bad_forwarded_command", request.error()));
      return;
    }
    if (deadline_ms > 0 && unix_ns() / 1'000'000 > deadline_ms) {
      // Its sender has given up on it: do not apply it behind its back.
      answer(failure(command_status::unavailable, not_applied::expired,
                     "the command arrived after its sender's deadline; not applied"));
      return;
    }
    if (im->leaving.load() || !im->serves(shard_of(request->stream_id, im->options.shards))) {
      answer(failure(command_status::unavailable, not_applied::not_owner,
                     "node " + im->self + " does not serve the shard of " + request->stream_id));
      return;
    }
    im->node_.submit_here(std::move(*request), answer);
  }

  std::expected<command_envelope, std::string> decode_request(std::string_view text,
                                                              std::int64_t& deadline_ms) {
    boost::system::error_code ec;
    auto json = boost::json::parse(text, ec);
    if (ec || !json.is_object()) return std::unexpected("not a JSON object");
    const auto& o = json.as_object();
    auto text_of = [&](const char* key) {
      const auto* v = o.if_contains(key);
      return v && v->is_string() ? std::string(v->as_string()) : std::string();
    };
    command_envelope env;
    env.stream_id = text_of("s");
    const auto* type = node_.find_aggregate_type(stream_category(env.stream_id));
    const auto* index = o.if_contains("k");
    if (type == nullptr || !type->decode_command || index == nullptr || !index->is_number())
      return std::unexpected("no command for stream '" + env.stream_id + "'");
    auto payload = type->decode_command(static_cast<std::size_t>(index->to_number<std::int64_t>()),
                                        text_of("c"));
    if (!payload) return std::unexpected(payload.error());
    env.payload = std::move(*payload);
    env.command_id = text_of("id");
    env.correlation_id = text_of("corr");
    env.causation_id = text_of("caus");
    env.traceparent = text_of("tp");
    const auto* expected = o.if_contains("e");
    env.expected = decode_expected(expected && expected->is_int64() ? expected->as_int64() : -1);
    const auto* deadline = o.if_contains("dl");
    deadline_ms = deadline && deadline->is_int64() ? deadline->as_int64() : 0;
    return env;
  }

  /// An attempt got no answer in time. Re-sending to the same live owner
  /// could run the command twice (the first copy may only be queued there),
  /// so that is done only when the owner is gone or the shard has moved;
  /// otherwise the wait goes on until the command's deadline, after which
  /// its outcome is unknown. Called under forward_mutex.
  void attempt_expired(std::uint64_t id, std::vector<std::shared_ptr<forward_request>>& resend,
                       std::vector<awaiting_answer>& unanswered) {
    auto it = awaiting.find(id);
    if (it == awaiting.end()) return;
    auto& a = it->second;
    bool same_owner;
    {
      std::shared_lock lock{routes_mutex};
      same_owner = live.contains(a.owner) &&
                   shard_owner[static_cast<std::size_t>(a.request->shard)] == a.owner;
    }
    auto now = steady::now();
    if (same_owner && now < a.request->deadline) {
      a.attempt_deadline = std::min(a.request->deadline, now + options.forward_attempt_timeout);
      attempt_deadlines.emplace(a.attempt_deadline, id);
      return;
    }
    if (same_owner) {
      unanswered.push_back(std::move(a));
    } else {
      retried.fetch_add(1, std::memory_order_relaxed);
      resend.push_back(std::move(a.request));  // its owner died or the shard moved
    }
    awaiting.erase(it);
  }

  void timer_loop() {
    std::unique_lock lock{forward_mutex};
    while (!timer_stop.load()) {
      auto now = steady::now();
      std::vector<std::shared_ptr<forward_request>> due;
      std::vector<awaiting_answer> unanswered;
      while (!retries.empty() && retries.begin()->first <= now) {
        due.push_back(std::move(retries.begin()->second));
        retries.erase(retries.begin());
      }
      while (!attempt_deadlines.empty() && attempt_deadlines.begin()->first <= now) {
        auto id = attempt_deadlines.begin()->second;
        attempt_deadlines.erase(attempt_deadlines.begin());
        attempt_expired(id, due, unanswered);
      }
      if (!due.empty() || !unanswered.empty()) {
        lock.unlock();
        for (auto& r : due) route(std::move(r));
        for (auto& a : unanswered) {
          timed_out.fetch_add(1, std::memory_order_relaxed);
          finish(*a.request,
                 failure(command_status::unavailable, "forward_timeout",
                         "node " + a.owner + " did not answer within " +
                             std::to_string(options.forward_timeout.count()) +
                             " ms; the command may have been applied: retry with the same id"));
        }
        lock.lock();
        continue;
      }
      auto next = now + std::chrono::milliseconds{100};
      if (!retries.empty()) next = std::min(next, retries.begin()->first);
      if (!attempt_deadlines.empty()) next = std::min(next, attempt_deadlines.begin()->first);
      forward_wake.wait_until(lock, next);
    }
  }

  /// Answers everything still waiting (the node is leaving).
  void fail_waiting() {
    std::vector<std::shared_ptr<forward_request>> tried, untried;
    {
      std::lock_guard lock{forward_mutex};
      for (auto& [id, a] : awaiting) tried.push_back(std::move(a.request));
      awaiting.clear();
      attempt_deadlines.clear();
      for (auto& [t, r] : retries) untried.push_back(std::move(r));
      retries.clear();
    }
    for (auto& r : tried)
      finish(*r, failure(command_status::unavailable, not_applied::node_leaving,
                         "this node left the cluster before the command's owner answered; it "
                         "may have been applied: retry with the same id"));
    for (auto& r : untried)
      finish(*r, failure(command_status::unavailable, not_applied::node_leaving,
                         "this node left the cluster before the command was sent; retry"));
  }

  // ---- the view of NATS: two watchers -------------------------------------------

  bool open_watchers() {
    kvWatchOptions o;
    kvWatchOptions_Init(&o);
    if (nodes_watch == nullptr) {
      nodes_synced = false;
      members.clear();
      if (kvStore_WatchAll(&nodes_watch, nodes_kv, &o) != NATS_OK) {
        nodes_watch = nullptr;
        return false;
      }
    }
    if (leases_watch == nullptr) {
      leases_synced = false;
      if (kvStore_WatchAll(&leases_watch, leases_kv, &o) != NATS_OK) {
        leases_watch = nullptr;
        return false;
      }
    }
    return true;
  }

  /// Applies every update the watchers hold (membership and leases). A
  /// watcher that fails is recreated (its initial values re-sync the view).
  void drain_watchers() {
    auto now = steady::now();
    auto drain = [&](kvWatcher*& w, bool& synced, auto&& apply) {
      for (int i = 0; w != nullptr && i < 100000; ++i) {
        kvEntry* e = nullptr;
        natsStatus s = kvWatcher_Next(&e, w, 1);
        if (s == NATS_TIMEOUT) return;
        if (s != NATS_OK) {
          log->warn("KV watcher failed ({}); watching again", nats_error(s));
          kvWatcher_Destroy(w);
          w = nullptr;
          return;
        }
        if (e == nullptr) {  // end of the initial values
          synced = true;
          continue;
        }
        apply(e);
        kvEntry_Destroy(e);
      }
    };
    drain(nodes_watch, nodes_synced, [&](kvEntry* e) {
      std::string id = kvEntry_Key(e);
      if (kvEntry_Operation(e) != kvOp_Put) {
        members.erase(id);
        return;
      }
      member_seen m;
      m.seen_at = now;
      boost::system::error_code ec;
      auto json = boost::json::parse(kvEntry_ValueString(e) ? kvEntry_ValueString(e) : "", ec);
      if (!ec && json.is_object())
        if (const auto* http = json.as_object().if_contains("http"); http && http->is_string())
          m.http_url = std::string(http->as_string());
      members[id] = std::move(m);
    });
    drain(leases_watch, leases_synced, [&](kvEntry* e) {
      std::string_view key = kvEntry_Key(e);
      for (auto& l : leases) {
        if (l.key != key) continue;
        bool put = kvEntry_Operation(e) == kvOp_Put;
        l.exists = put;
        l.owner = put && kvEntry_ValueString(e) ? kvEntry_ValueString(e) : "";
        l.seen_revision = kvEntry_Revision(e);
        l.seen_at = now;
        // Someone else wrote our lease after our last write: it is theirs.
        if (ours(l) && l.owner != self && l.seen_revision > l.revision)
          lose(l, "now held by '" + l.owner + "'");
      }
    });
    for (auto it = members.begin(); it != members.end();)
      it = now - it->second.seen_at > options.lease_ttl ? members.erase(it) : std::next(it);
  }

  // ---- leases ----

  bool ours(const lease& l) const { return l.state != lease_state::idle; }

  void set_serving(const lease& l, bool on) {
    if (l.shard < 0) return;
    if (on)
      serve_until[l.shard].store(steady_ns(l.renewed_at + serve_margin()),
                                 std::memory_order_release);
    serving[l.shard].store(on, std::memory_order_release);
  }

  /// Takes a free lease by compare-and-set: create when absent (or expired),
  /// update at the revision of a released "" (or of our own previous run's).
  bool try_acquire(lease& l) {
    std::uint64_t rev = 0;
    auto sent = steady::now();
    natsStatus s = (!l.exists || (!l.owner.empty() && l.owner != self))
                       ? kvStore_Create(&rev, leases_kv, l.key.c_str(), self.data(),
                                        static_cast<int>(self.size()))
                       : kvStore_Update(&rev, leases_kv, l.key.c_str(), self.data(),
                                        static_cast<int>(self.size()), l.seen_revision);
    if (s != NATS_OK && l.exists && (l.owner.empty() || l.owner == self))
      // A released (or our leftover) entry ages out of the bucket after its
      // TTL, and nats-server 2.9 tells no watcher: the update then finds no
      // key. Create takes it only if nobody else wrote it meanwhile. (Without
      // this a singleton whose start failed was never taken again.)
      s = kvStore_Create(&rev, leases_kv, l.key.c_str(), self.data(),
                         static_cast<int>(self.size()));
    if (s != NATS_OK) return false;
    l.revision = rev;
    l.renewed_at = sent;
    l.owner = self;
    l.exists = true;
    l.seen_revision = rev;
    return true;
  }

  /// Writes "" at our revision; the lease is free for the next owner.
  void release(lease& l) {
    std::uint64_t rev = 0;
    natsStatus s = kvStore_Update(&rev, leases_kv, l.key.c_str(), "", 0, l.revision);
    if (s != NATS_OK)
      log->warn("releasing {} failed ({}); it expires after the lease TTL", l.key, nats_error(s));
    l.state = lease_state::idle;
    ++l.epoch;
    released.fetch_add(1, std::memory_order_relaxed);
    if (l.shard >= 0) set_route(l.shard, s == NATS_OK ? "" : self);
  }

  void set_route(int shard, const std::string& owner) {
    std::unique_lock lock{routes_mutex};
    shard_owner[static_cast<std::size_t>(shard)] = owner;
  }

  /// Begins giving up a lease we hold: a shard stops taking commands and
  /// passivates its actors once their queued commands are done; a singleton
  /// stops. It is released (next heartbeat) when that has finished.
  void hand_off(lease& l) {
    l.state = lease_state::handing_off;
    auto epoch = ++l.epoch;
    if (l.shard >= 0) {
      set_serving(l, false);
      node_.close_shard(l.shard, [weak = weak_from_this(), key = l.key, epoch] {
        if (auto im = weak.lock()) im->report(key, epoch, event_kind::drained);
      });
      return;
    }
    post([im = shared_from_this(), index = l.singleton, key = l.key, epoch] {
      im->stop_singleton(index);
      im->report(key, epoch, event_kind::drained);
    });
  }

  void stop_singleton(int index) {
    auto& sg = singletons[static_cast<std::size_t>(index)];
    try {
      sg.stop();
    } catch (const std::exception& e) {
      log->error("stopping {} failed: {}", sg.name, e.what());
    }
  }

  /// We no longer hold it (someone else took it, or we could not renew in
  /// time): stop at once.
  void lose(lease& l, const std::string& why) {
    log->warn("lost lease {}: {}", l.key, why);
    lost.fetch_add(1, std::memory_order_relaxed);
    auto was = l.state;
    l.state = lease_state::idle;
    ++l.epoch;
    if (l.shard >= 0) {
      set_serving(l, false);
      node_.close_shard(l.shard, [] {});
    } else if (was != lease_state::drained) {
      auto& sg = singletons[static_cast<std::size_t>(l.singleton)];
      sg.lost_epoch->store(l.epoch, std::memory_order_release);
      if (sg.fence) {
        try {
          sg.fence();
        } catch (const std::exception& e) {
          log->error("fencing {} failed: {}", sg.name, e.what());
        }
      }
      post([im = shared_from_this(), index = l.singleton] { im->stop_singleton(index); });
    }
  }

  void took(lease& l) {
    acquired.fetch_add(1, std::memory_order_relaxed);
    auto epoch = ++l.epoch;
    if (l.shard >= 0) {
      l.state = lease_state::held;
      set_route(l.shard, self);
      node_.open_shard(l.shard);
      set_serving(l, true);
      return;
    }
    l.state = lease_state::starting;
    post([im = shared_from_this(), index = l.singleton, key = l.key, epoch] {
      auto& sg = im->singletons[static_cast<std::size_t>(index)];
      try {
        sg.start();
        if (sg.fence && sg.lost_epoch->load(std::memory_order_acquire) > epoch) {
          sg.fence();  // lost while starting: the stop queued behind us ends it
          return;
        }
        im->log->info("running {} (this node holds its lease)", sg.name);
        im->report(key, epoch, event_kind::started);
      } catch (const std::exception& e) {
        im->log->error("starting {} failed: {}; giving its lease up for now", sg.name, e.what());
        im->report(key, epoch, event_kind::start_failed);
      }
    });
  }

  /// Applies what drain callbacks and singleton starts reported.
  void apply_events() {
    std::vector<lease_event> now_events;
    {
      std::lock_guard lock{events_mutex};
      now_events.swap(events);
    }
    for (const auto& ev : now_events) {
      for (auto& l : leases) {
        if (l.key != ev.key || l.epoch != ev.epoch) continue;  // stale: a later take/hand-off
        if (ev.kind == event_kind::drained && l.state == lease_state::handing_off)
          l.state = lease_state::drained;
        if (ev.kind == event_kind::started && l.state == lease_state::starting)
          l.state = lease_state::held;
        if (ev.kind == event_kind::start_failed && l.state == lease_state::starting) {
          l.state = lease_state::drained;
          l.retry_after = steady::now() + std::chrono::seconds{5};
        }
      }
    }
    for (auto& l : leases)
      if (l.state == lease_state::drained) release(l);
  }

  /// Renews every lease we hold by compare-and-set at our revision. Only a
  /// refusal because the revision moved means another node has it; other
  /// failures (NATS slow or away) leave it to the serve deadline.
  void renew() {
    for (auto& l : leases) {
      if (!ours(l)) continue;
      std::uint64_t rev = 0;
      auto sent = steady::now();
      natsStatus s = kvStore_Update(&rev, leases_kv, l.key.c_str(), self.data(),
                                    static_cast<int>(self.size()), l.revision);
      if (s == NATS_OK) {
        l.revision = rev;
        l.renewed_at = sent;
        if (l.state == lease_state::held) set_serving(l, true);
        continue;
      }
      std::string why = nats_error(s);
      if (const char* text = nats_GetLastError(nullptr)) why += std::string(": ") + text;
      if (why.find("wrong last sequence") != std::string::npos) {
        lose(l, "renewal refused (" + why + ")");
        continue;
      }
      if (steady::now() - l.renewed_at > serve_margin())
        lose(l, "not renewed for " +
                    std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                       steady::now() - l.renewed_at)
                                       .count()) +
                    " ms (" + why + ")");
    }
  }

  std::string membership_value() const {
    boost::json::object o;
    {
      std::lock_guard lock{advertise_mutex};
      o["http"] = options.http_url;
    }
    o["subject"] = subject;
    return boost::json::serialize(o);
  }

  /// One heartbeat: renewals first (they keep us serving), membership,
  /// the watchers' news, hand-offs and acquisitions.
  void tick() {
    std::lock_guard lock{state_mutex};
    renew();
    apply_events();
    auto value = membership_value();
    if (natsStatus s = kvStore_PutString(nullptr, nodes_kv, self.c_str(), value.c_str());
        s != NATS_OK)
      log->warn("heartbeat failed: {}", nats_error(s));
    if (!open_watchers()) return;  // no view of the cluster: act on nothing
    drain_watchers();
    if (!nodes_synced || !leases_synced) return;  // a partial view: wait for the rest

    std::vector<std::string> live_ids;
    for (const auto& [id, m] : members) live_ids.push_back(id);
    if (!members.contains(self)) live_ids.push_back(self);  // our put may not be seen yet
    auto now = steady::now();
    auto place = [&](std::size_t first, std::size_t count) {
      std::vector<std::string> names, current;
      for (std::size_t i = first; i < first + count; ++i) {
        names.push_back(leases[i].key);
        current.push_back(holder(leases[i], now));
      }
      auto wanted = assign_items(names, live_ids, current);
      for (std::size_t i = first; i < first + count; ++i) {
        auto& l = leases[i];
        const auto& want = wanted[i - first];
        if (l.state == lease_state::held && want != self) {
          log->info("handing {} over (assigned to {})", l.key, want);
          hand_off(l);
        } else if (l.state == lease_state::idle && want == self && now >= l.retry_after) {
          // Free: released, never taken, expired, ours from a previous run
          // (node ids are unique), or its owner is no longer a member (then
          // create succeeds only once the bucket has expired the lease).
          const auto& owner = holder(l, now);
          bool free = owner.empty() || owner == self || !members.contains(owner);
          if (free && try_acquire(l)) {
            log->info("took {}", l.key);
            took(l);
          }
        }
      }
    };
    auto shard_count = static_cast<std::size_t>(options.shards);
    place(0, shard_count);
    place(shard_count, leases.size() - shard_count);

    std::unique_lock routes{routes_mutex};
    live = std::set<std::string, std::less<>>(live_ids.begin(), live_ids.end());
    for (std::size_t i = 0; i < shard_count; ++i) shard_owner[i] = holder(leases[i], now);
  }

  /// Who holds a lease as far as this node can tell: us, its last writer,
  /// or nobody ("") when it was released, never taken, or not renewed for a
  /// TTL. The last case matters after a NATS failover: an owner that could
  /// not renew in time loses the lease, the bucket expires the entry and
  /// nats-server 2.9 tells no watcher, so the last writer - alive and a
  /// member - would otherwise look like its holder for good, and nobody
  /// would take it (two saga partitions sat unserved for 53 s that way).
  const std::string& holder(const lease& l, steady::time_point now) const {
    static const std::string nobody;
    if (ours(l)) return self;
    if (!l.exists || now - l.seen_at > options.lease_ttl) return nobody;
    return l.owner;
  }

  void heartbeat_loop() {
    auto next_full = steady::now();
    while (!stopping.load()) {
      try {
        if (steady::now() >= next_full) {
          tick();
          next_full = steady::now() + options.heartbeat;
        } else {
          std::lock_guard lock{state_mutex};
          apply_events();  // nudged: release what finished handing off, now
        }
      } catch (const std::exception& e) {
        log->error("cluster heartbeat failed: {}", e.what());
      }
      std::unique_lock lock{wake_mutex};
      wake.wait_until(lock, next_full, [&] { return wake_now || stopping.load(); });
      wake_now = false;
    }
  }

  cluster_lease describe(const lease& l) const {
    cluster_lease d;
    d.key = l.key;
    d.owner = holder(l, steady::now());
    d.revision = ours(l) ? l.revision : l.seen_revision;
    auto since = ours(l) ? l.renewed_at : l.seen_at;
    d.age_seconds =
        l.exists || ours(l)
            ? std::max(0.0, std::chrono::duration<double>(steady::now() - since).count())
            : 0;
    return d;
  }

  /// Hands off every lease matching `which` and waits (renewing the rest)
  /// until they are released or the shutdown timeout passes.
  void hand_off_all(const std::function<bool(const lease&)>& which, steady::time_point deadline) {
    {
      std::lock_guard lock{state_mutex};
      for (auto& l : leases)
        if (which(l) && (l.state == lease_state::held || l.state == lease_state::starting))
          hand_off(l);
    }
    auto last_renewal = steady::now();
    while (steady::now() < deadline) {
      bool busy = false;
      {
        std::lock_guard lock{state_mutex};
        apply_events();
        if (steady::now() - last_renewal >= options.heartbeat) {
          renew();
          last_renewal = steady::now();
        }
        for (const auto& l : leases) busy = busy || (which(l) && ours(l));
      }
      if (!busy) return;
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
    std::lock_guard lock{state_mutex};
    for (auto& l : leases)
      if (which(l) && ours(l)) {
        log->warn("{} not handed off within the shutdown timeout; it expires after the TTL", l.key);
        l.state = lease_state::idle;
        set_serving(l, false);
      }
  }
};

// ---- status ------------------------------------------------------------------------

std::string cluster_status::to_json() const {
  boost::json::object o;
  o["cluster"] = name;
  o["self"] = self;
  o["connected"] = connected;
  o["shard_count"] = shard_count;
  boost::json::array ms;
  for (const auto& m : members)
    ms.push_back(boost::json::object{{"id", m.id},
                                     {"http_url", m.http_url},
                                     {"heartbeat_age_seconds", m.heartbeat_age_seconds},
                                     {"shards", m.shards}});
  o["nodes"] = std::move(ms);
  auto leases = [](const std::vector<cluster_lease>& list) {
    boost::json::array a;
    for (const auto& l : list)
      a.push_back(boost::json::object{{"key", l.key},
                                      {"owner", l.owner},
                                      {"age_seconds", l.age_seconds},
                                      {"revision", l.revision}});
    return a;
  };
  o["shards"] = leases(shards);
  o["singletons"] = leases(singletons);
  o["forwarding"] = boost::json::object{{"forwarded", forwarding.forwarded},
                                        {"received", forwarding.received},
                                        {"retries", forwarding.retries},
                                        {"timed_out", forwarding.timed_out},
                                        {"waiting", forwarding.waiting},
                                        {"shards_acquired", forwarding.shards_acquired},
                                        {"shards_released", forwarding.shards_released},
                                        {"leases_lost", forwarding.leases_lost}};
  return boost::json::serialize(o);
}

std::string cluster_status::to_text() const {
  std::string out =
      fmt::format("cluster {}: {} nodes, {} shards\n", name, members.size(), shard_count);
  out += fmt::format("{:<28} {:>7} {:>14}  {}\n", "NODE", "SHARDS", "HEARTBEAT AGE", "HTTP");
  for (const auto& m : members)
    out += fmt::format("{:<28} {:>7} {:>13.1f}s  {}\n", m.id, m.shards, m.heartbeat_age_seconds,
                       m.http_url);
  int unowned = 0;
  for (const auto& s : shards) unowned += s.owner.empty();
  out += fmt::format("shards without an owner: {}\n", unowned);
  out += fmt::format("{:<36} {:<28} {:>9}\n", "SINGLETON", "HOLDER", "LEASE AGE");
  for (const auto& s : singletons)
    out += fmt::format("{:<36} {:<28} {:>8.1f}s\n", s.key.substr(s.key.find('.') + 1),
                       s.owner.empty() ? "-" : s.owner, s.age_seconds);
  out += "\nSHARD OWNERS\n";
  for (const auto& s : shards)
    out += fmt::format("{:<10} {:<28} {:>6.1f}s\n", s.key, s.owner.empty() ? "-" : s.owner,
                       s.age_seconds);
  return out;
}

// ---- public ------------------------------------------------------------------------

cluster::cluster(node& n, cluster_options options)
    : impl_(std::make_shared<impl>(n, std::move(options))) {
  auto& im = *impl_;
  im.log = im.options.log ? im.options.log : spdlog::default_logger();
  if (im.options.shards < 1 || im.options.shards > 4096)
    throw std::invalid_argument("cluster.shards must be 1..4096");
  if (im.options.lease_ttl < std::chrono::milliseconds{1000})
    throw std::invalid_argument("cluster.lease_ttl_ms must be at least 1000");
  if (im.options.heartbeat * 3 > im.options.lease_ttl)
    throw std::invalid_argument(
        "cluster.heartbeat_ms must be at most a third of cluster.lease_ttl_ms, so a lease is "
        "renewed several times before it can expire");
  im.self = cluster_safe_id(im.options.node_id.empty() ? n.id() : im.options.node_id);
  im.subject = node_subject(im.options.name, im.self);
}

cluster::~cluster() { stop(); }

void cluster::add_singleton(std::string name, std::function<void()> start,
                            std::function<void()> stop, std::function<void()> fence) {
  auto& im = *impl_;
  if (im.started) throw std::logic_error("add singletons before cluster::start()");
  im.singletons.push_back({std::move(name), std::move(start), std::move(stop), std::move(fence)});
}

void cluster::start() {
  auto& im = *impl_;
  if (im.started) return;
  if (im.node_.shard_count() != im.options.shards)
    throw std::runtime_error("the node must be sharded with enable_sharding(" +
                             std::to_string(im.options.shards) + ") before it starts");
  im.nc = std::shared_ptr<natsConnection>(detail::connect_nats(im.options.nats_url),
                                          natsConnection_Destroy);
  // JetStream calls (KV reads and writes) give up well within a lease TTL,
  // so a slow server cannot stall renewals until a lease expires.
  jsOptions js_options;
  jsOptions_Init(&js_options);
  js_options.Wait = std::clamp<std::int64_t>(im.options.lease_ttl.count() / 5, 200, 2000);
  natsStatus s = natsConnection_JetStream(&im.js, im.nc.get(), &js_options);
  if (s != NATS_OK) throw std::runtime_error("JetStream context: " + nats_error(s));
  im.nodes_kv = open_bucket(im.js, bucket_name(im.options.name, "nodes"), im.options.lease_ttl,
                            im.options.replicas, *im.log);
  im.leases_kv = open_bucket(im.js, bucket_name(im.options.name, "leases"), im.options.lease_ttl,
                             im.options.replicas, *im.log);

  auto shards = static_cast<std::size_t>(im.options.shards);
  im.serving = std::make_unique<std::atomic<bool>[]>(shards);
  im.serve_until = std::make_unique<std::atomic<std::int64_t>[]>(shards);
  im.shard_owner.assign(shards, "");
  for (const auto& name : shard_names(im.options.shards)) {
    impl::lease l;
    l.key = name;
    l.shard = static_cast<int>(im.leases.size());
    im.leases.push_back(std::move(l));
  }
  for (std::size_t i = 0; i < im.singletons.size(); ++i) {
    impl::lease l;
    l.key = "singleton." + im.singletons[i].name;
    l.singleton = static_cast<int>(i);
    im.leases.push_back(std::move(l));
  }

  natsInbox* inbox = nullptr;
  natsInbox_Create(&inbox);
  im.inbox = reinterpret_cast<const char*>(inbox);
  natsInbox_Destroy(inbox);
  s = natsConnection_Subscribe(&im.answer_sub, im.nc.get(), (im.inbox + ".*").c_str(),
                               &impl::on_answer, &im);
  if (s == NATS_OK)
    s = natsConnection_Subscribe(&im.command_sub, im.nc.get(), im.subject.c_str(),
                                 &impl::on_command, &im);
  if (s == NATS_OK) {
    // Bounded: beyond these a slow node drops forwarded commands (their
    // senders see no answer and wait for their deadline) instead of growing.
    natsSubscription_SetPendingLimits(im.command_sub, 100000, 256 * 1024 * 1024);
    natsSubscription_SetPendingLimits(im.answer_sub, 100000, 64 * 1024 * 1024);
  }
  if (s != NATS_OK) throw std::runtime_error("cluster subscriptions: " + nats_error(s));

  im.node_.set_router([im = impl_](command_envelope command, command_completion done) {
    auto now_waiting = im->waiting.fetch_add(1, std::memory_order_relaxed);
    if (static_cast<std::size_t>(now_waiting) >= im->options.max_forwarded) {
      im->waiting.fetch_sub(1, std::memory_order_relaxed);
      done(failure(command_status::overloaded, "cluster_overloaded",
                   "too many commands waiting for their shard's owner; retry later"));
      return;
    }
    auto r = std::make_shared<impl::forward_request>();
    r->shard = shard_of(command.stream_id, im->options.shards);
    r->command = std::move(command);
    r->done = std::move(done);
    r->deadline = steady::now() + im->options.forward_timeout;
    r->deadline_unix_ms = unix_ns() / 1'000'000 + im->options.forward_timeout.count();
    im->route(std::move(r));
  });
  im.started = true;
  im.worker_thread = std::thread([&im] { im.worker_loop(); });
  im.timer_thread = std::thread([&im] { im.timer_loop(); });
  im.heartbeat_thread = std::thread([&im] { im.heartbeat_loop(); });
  im.log->info("node {} joined cluster {} ({} shards, lease TTL {} ms)", im.self, im.options.name,
               im.options.shards, im.options.lease_ttl.count());
}

void cluster::stop() {
  auto& im = *impl_;
  if (!im.started || im.stopping.exchange(true)) return;
  im.wake.notify_all();
  if (im.heartbeat_thread.joinable()) im.heartbeat_thread.join();
  // Withdraw membership: peers stop assigning to us and wait for our leases.
  kvStore_Delete(im.nodes_kv, im.self.c_str());
  auto deadline = steady::now() + im.options.shutdown_timeout;
  // Singletons first, while commands are still routed: a saga stopping
  // here must not see its steps refused.
  im.hand_off_all([](const impl::lease& l) { return l.singleton >= 0; }, deadline);
  im.hand_off_all([](const impl::lease& l) { return l.shard >= 0; }, deadline);
  im.leaving = true;
  im.node_.set_router([](command_envelope, command_completion done) {
    done(failure(command_status::unavailable, not_applied::node_leaving,
                 "this node has left the cluster; retry on another node"));
  });
  // No more callbacks into us from NATS: drain waits for those running.
  for (auto* sub : {im.command_sub, im.answer_sub}) {
    if (sub == nullptr) continue;
    if (natsSubscription_Drain(sub) == NATS_OK) natsSubscription_WaitForDrainCompletion(sub, 5000);
    natsSubscription_Destroy(sub);
  }
  im.command_sub = im.answer_sub = nullptr;
  {
    std::lock_guard lock{im.forward_mutex};
    im.timer_stop = true;
  }
  im.forward_wake.notify_all();
  if (im.timer_thread.joinable()) im.timer_thread.join();
  im.fail_waiting();
  {
    std::lock_guard lock{im.worker_mutex};
    im.worker_stop = true;
  }
  im.worker_wake.notify_all();
  if (im.worker_thread.joinable()) im.worker_thread.join();
  {
    std::lock_guard lock{im.state_mutex};
    for (auto* w : {&im.nodes_watch, &im.leases_watch})
      if (*w != nullptr) {
        kvWatcher_Destroy(*w);
        *w = nullptr;
      }
  }
  kvStore_Destroy(im.nodes_kv);
  kvStore_Destroy(im.leases_kv);
  jsCtx_Destroy(im.js);
  im.nodes_kv = im.leases_kv = nullptr;
  im.js = nullptr;
  // The connection itself closes with the last holder (answers in flight).
  im.log->info("node {} left cluster {}", im.self, im.options.name);
}

cluster_status cluster::status() const {
  auto& im = *impl_;
  cluster_status st;
  st.name = im.options.name;
  st.self = im.self;
  st.shard_count = im.options.shards;
  st.connected = connected();
  {
    std::lock_guard lock{im.state_mutex};
    auto now = steady::now();
    for (const auto& [id, m] : im.members)
      st.members.push_back(
          cluster_member{id, m.http_url,
                         std::max(0.0, std::chrono::duration<double>(now - m.seen_at).count()), 0});
    for (const auto& l : im.leases)
      (l.shard >= 0 ? st.shards : st.singletons).push_back(im.describe(l));
  }
  for (auto& m : st.members)
    for (const auto& s : st.shards) m.shards += s.owner == m.id;
  st.forwarding.forwarded = im.forwarded.load();
  st.forwarding.received = im.received.load();
  st.forwarding.retries = im.retried.load();
  st.forwarding.timed_out = im.timed_out.load();
  st.forwarding.waiting = im.waiting.load();
  st.forwarding.shards_acquired = im.acquired.load();
  st.forwarding.shards_released = im.released.load();
  st.forwarding.leases_lost = im.lost.load();
  return st;
}

bool cluster::connected() const {
  auto nc = impl_->nc;
  return nc != nullptr && natsConnection_Status(nc.get()) == NATS_CONN_STATUS_CONNECTED;
}

const std::string& cluster::self() const { return impl_->self; }

void cluster::advertise_http(std::string url) {
  std::lock_guard lock{impl_->advertise_mutex};
  impl_->options.http_url = std::move(url);
}

cluster_status cluster::read(const std::string& nats_url, const std::string& name, int shards) {
  cluster_status st;
  st.name = name;
  st.shard_count = shards;
  auto* nc = detail::connect_nats(nats_url);
  jsCtx* js = nullptr;
  kvStore* nodes = nullptr;
  kvStore* leases = nullptr;
  auto cleanup = [&] {
    kvStore_Destroy(nodes);
    kvStore_Destroy(leases);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
  };
  natsStatus s = natsConnection_JetStream(&js, nc, nullptr);
  if (s == NATS_OK) s = js_KeyValue(&nodes, js, bucket_name(name, "nodes").c_str());
  if (s == NATS_OK) s = js_KeyValue(&leases, js, bucket_name(name, "leases").c_str());
  if (s != NATS_OK) {
    cleanup();
    throw std::runtime_error("no cluster named '" + name + "' at " + nats_url + " (" +
                             nats_error(s) + ")");
  }
  st.connected = true;
  auto now_ns = unix_ns();
  bool ok = false;
  st.members = read_members(nodes, now_ns, ok);
  auto read_lease = [&](const std::string& key) {
    kv_value v;
    kv_get(leases, key, v);
    cluster_lease l;
    l.key = key;
    l.owner = v.value;
    l.revision = v.revision;
    l.age_seconds = v.found ? std::max(0.0, static_cast<double>(now_ns - v.created_ns) / 1e9) : 0;
    return l;
  };
  for (const auto& key : shard_names(shards)) st.shards.push_back(read_lease(key));
  kvKeysList list{};
  if (kvStore_Keys(&list, leases, nullptr) == NATS_OK) {
    for (int i = 0; i < list.Count; ++i)
      if (std::string_view(list.Keys[i]).starts_with("singleton."))
        st.singletons.push_back(read_lease(list.Keys[i]));
    kvKeysList_Destroy(&list);
  }
  for (auto& m : st.members)
    for (const auto& sh : st.shards) m.shards += sh.owner == m.id;
  cleanup();
  return st;
}

}  // namespace troupe
