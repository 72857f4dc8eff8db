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

struct cluster::impl {
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
    steady::time_point renewed_at;
    steady::time_point retry_after;  // after a failed singleton start
    kv_value seen;                   // at the last read
  };
  struct singleton {
    std::string name;
    std::function<void()> start, stop;
  };
  struct forward_request {
    command_envelope command;
    command_completion done;
    steady::time_point deadline;
    int shard = 0;
  };
  struct awaiting_answer {
    std::shared_ptr<forward_request> request;
    steady::time_point attempt_deadline;
  };

  impl(node& n, cluster_options o) : node_(n), options(std::move(o)) {}

  node& node_;
  cluster_options options;
  std::shared_ptr<spdlog::logger> log;
  std::string self;
  std::string subject;
  std::vector<singleton> singletons;

  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  kvStore* nodes_kv = nullptr;
  kvStore* leases_kv = nullptr;
  natsSubscription* command_sub = nullptr;
  natsSubscription* answer_sub = nullptr;
  std::string inbox;

  // Leases: touched by the heartbeat thread (and stop() after it ended);
  // `state_mutex` guards them against status readers and drain callbacks.
  // Recursive: a drain callback may run inline while the lease is handed off.
  mutable std::recursive_mutex state_mutex;
  std::vector<lease> leases;  // shards first, then singletons
  std::vector<cluster_member> members;
  bool members_known = false;
  // Routing: shard -> owner's id, and whether we serve it.
  mutable std::shared_mutex routes_mutex;
  std::vector<std::string> shard_owner;
  std::set<std::string, std::less<>> live;
  std::unique_ptr<std::atomic<bool>[]> serving;

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
  std::atomic<bool> stopping{false};
  std::atomic<bool> leaving{false};
  std::atomic<bool> started{false};
  std::mutex worker_mutex;
  std::condition_variable worker_wake;
  std::deque<std::function<void()>> worker_tasks;
  bool worker_stop = false;

  // ---- helpers ----

  void nudge() {
    {
      std::lock_guard lock{wake_mutex};
      wake_now = true;
    }
    wake.notify_all();
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

  bool serves(int shard) const { return serving[shard].load(std::memory_order_acquire); }

  // ---- routing ----

  void route(std::shared_ptr<forward_request> r) {
    if (leaving.load(std::memory_order_acquire)) {
      finish(*r, failure(command_status::unavailable, "node_leaving",
                         "this node is leaving the cluster; retry on another node"));
      return;
    }
    auto now = steady::now();
    if (now >= r->deadline) {
      timed_out.fetch_add(1, std::memory_order_relaxed);
      finish(*r, failure(command_status::unavailable, "shard_unavailable",
                         "no node served shard " + std::to_string(r->shard) + " of " +
                             r->command.stream_id + " within " +
                             std::to_string(options.forward_timeout.count()) + " ms; retry"));
      return;
    }
    if (serves(r->shard)) {
      node_.submit_here(
          r->command,
          [this, r](command_result result) {
            if (result.status == command_status::unavailable &&
                result.reason.code == "shard_moved") {
              retry_later(r, std::chrono::milliseconds{20});
              return;
            }
            finish(*r, std::move(result));
          },
          true);
      return;
    }
    std::string owner;
    {
      std::shared_lock lock{routes_mutex};
      owner = shard_owner[r->shard];
      if (!owner.empty() && (owner == self || !live.contains(owner))) owner.clear();
    }
    if (owner.empty()) {
      retry_later(r, std::chrono::milliseconds{50});
      return;
    }
    forward(std::move(r), owner);
  }

  void finish(forward_request& r, command_result result) {
    waiting.fetch_sub(1, std::memory_order_relaxed);
    auto done = std::move(r.done);
    done(std::move(result));
  }

  void retry_later(std::shared_ptr<forward_request> r, std::chrono::milliseconds delay) {
    retried.fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard lock{forward_mutex};
      retries.emplace(steady::now() + delay, std::move(r));
    }
    forward_wake.notify_one();
  }

  void forward(std::shared_ptr<forward_request> r, const std::string& owner) {
    const auto* type = node_.find_aggregate_type(stream_category(r->command.stream_id));
    std::optional<std::pair<std::size_t, std::string>> encoded;
    if (type != nullptr && type->encode_command) encoded = type->encode_command(r->command.payload);
    if (!encoded) {
      finish(*r, failure(command_status::invalid, "wrong_command_type",
                         "the command does not belong to " + r->command.stream_id));
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
    auto body = boost::json::serialize(o);
    std::uint64_t id;
    {
      std::lock_guard lock{forward_mutex};
      id = next_request++;
      auto deadline = std::min(r->deadline, steady::now() + options.forward_attempt_timeout);
      awaiting.emplace(id, awaiting_answer{r, deadline});
      attempt_deadlines.emplace(deadline, id);
    }
    forwarded.fetch_add(1, std::memory_order_relaxed);
    auto reply = inbox + "." + std::to_string(id);
    natsStatus s =
        natsConnection_PublishRequest(nc, node_subject(options.name, owner).c_str(), reply.c_str(),
                                      body.data(), static_cast<int>(body.size()));
    if (s != NATS_OK) {
      std::shared_ptr<forward_request> again;
      {
        std::lock_guard lock{forward_mutex};
        if (auto it = awaiting.find(id); it != awaiting.end()) {
          again = std::move(it->second.request);
          awaiting.erase(it);
        }
      }
      if (again) retry_later(std::move(again), std::chrono::milliseconds{100});
    }
  }

  static void on_answer(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    auto* self = static_cast<impl*>(closure);
    std::string_view subject = natsMsg_GetSubject(msg);
    std::uint64_t id = 0;
    auto dot = subject.rfind('.');
    if (dot != std::string_view::npos)
      std::from_chars(subject.data() + dot + 1, subject.data() + subject.size(), id);
    std::shared_ptr<forward_request> r;
    {
      std::lock_guard lock{self->forward_mutex};
      if (auto it = self->awaiting.find(id); it != self->awaiting.end()) {
        r = std::move(it->second.request);
        self->awaiting.erase(it);
      }
    }
    if (r) {
      if (natsMsg_IsNoResponders(msg)) {
        self->retry_later(std::move(r), std::chrono::milliseconds{50});
      } else {
        auto result = decode_result(std::string_view(
            natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg))));
        if (result.status == command_status::unavailable &&
            (result.reason.code == "not_owner" || result.reason.code == "shard_moved")) {
          self->retry_later(std::move(r), std::chrono::milliseconds{20});
        } else {
          self->finish(*r, std::move(result));
        }
      }
    }
    natsMsg_Destroy(msg);
  }

  static void on_command(natsConnection* conn, natsSubscription*, natsMsg* msg, void* closure) {
    auto* self = static_cast<impl*>(closure);
    self->received.fetch_add(1, std::memory_order_relaxed);
    const char* reply_to = natsMsg_GetReply(msg);
    std::string reply = reply_to ? reply_to : "";
    auto answer = [conn, reply](const command_result& r) {
      if (reply.empty()) return;
      auto body = encode_result(r);
      natsConnection_Publish(conn, reply.c_str(), body.data(), static_cast<int>(body.size()));
    };
    auto request = self->decode_request(std::string_view(
        natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg))));
    natsMsg_Destroy(msg);
    if (!request) {
      answer(failure(command_status::invalid, "bad_forwarded_command", request.error()));
      return;
    }
    if (self->leaving.load() || !self->serves(shard_of(request->stream_id, self->options.shards))) {
      answer(failure(command_status::unavailable, "not_owner",
                     "node " + self->self + " does not serve the shard of " + request->stream_id));
      return;
    }
    self->node_.submit_here(std::move(*request), answer);
  }

  std::expected<command_envelope, std::string> decode_request(std::string_view text) {
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
    if (type == nullptr || index == nullptr || !index->is_number())
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
    return env;
  }

  void timer_loop() {
    std::unique_lock lock{forward_mutex};
    while (!stopping.load()) {
      auto now = steady::now();
      std::vector<std::shared_ptr<forward_request>> due;
      while (!retries.empty() && retries.begin()->first <= now) {
        due.push_back(std::move(retries.begin()->second));
        retries.erase(retries.begin());
      }
      while (!attempt_deadlines.empty() && attempt_deadlines.begin()->first <= now) {
        auto id = attempt_deadlines.begin()->second;
        attempt_deadlines.erase(attempt_deadlines.begin());
        if (auto it = awaiting.find(id); it != awaiting.end()) {
          // No answer in time: the owner may have died with it. Commands
          // carry ids, so trying again cannot apply one twice.
          due.push_back(std::move(it->second.request));
          awaiting.erase(it);
          retried.fetch_add(1, std::memory_order_relaxed);
        }
      }
      if (!due.empty()) {
        lock.unlock();
        for (auto& r : due) route(std::move(r));
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
    std::vector<std::shared_ptr<forward_request>> all;
    {
      std::lock_guard lock{forward_mutex};
      for (auto& [id, a] : awaiting) all.push_back(std::move(a.request));
      awaiting.clear();
      attempt_deadlines.clear();
      for (auto& [t, r] : retries) all.push_back(std::move(r));
      retries.clear();
    }
    for (auto& r : all)
      finish(*r, failure(command_status::unavailable, "node_leaving",
                         "this node left the cluster before the command was answered; retry"));
  }

  // ---- leases ----

  bool ours(const lease& l) const { return l.state != lease_state::idle; }

  /// Takes a free lease (absent or released) by compare-and-set.
  bool try_acquire(lease& l) {
    std::uint64_t rev = 0;
    natsStatus s;
    if (!l.seen.found)
      s = kvStore_Create(&rev, leases_kv, l.key.c_str(), self.data(),
                         static_cast<int>(self.size()));
    else
      s = kvStore_Update(&rev, leases_kv, l.key.c_str(), self.data(), static_cast<int>(self.size()),
                         l.seen.revision);
    if (s != NATS_OK) return false;
    l.revision = rev;
    l.renewed_at = steady::now();
    l.seen = kv_value{true, self, rev, unix_ns()};
    return true;
  }

  /// Writes "" at our revision; the lease is free for the next owner.
  void release(lease& l) {
    log->debug("releasing {} at revision {}", l.key, l.revision);
    std::uint64_t rev = 0;
    natsStatus s = kvStore_Update(&rev, leases_kv, l.key.c_str(), "", 0, l.revision);
    if (s != NATS_OK)
      log->warn("releasing {} failed ({}); it expires after the lease TTL", l.key, nats_error(s));
    else
      l.seen = kv_value{true, "", rev, unix_ns()};
    l.state = lease_state::idle;
    released.fetch_add(1, std::memory_order_relaxed);
    if (l.shard >= 0) set_route(l.shard, s == NATS_OK ? "" : self);
  }

  void set_route(int shard, const std::string& owner) {
    std::unique_lock lock{routes_mutex};
    shard_owner[shard] = owner;
  }

  /// Begins giving up a lease we hold: shards stop taking commands and
  /// passivate; singletons stop. It is released once that has finished.
  void hand_off(lease& l) {
    l.state = lease_state::handing_off;
    if (l.shard >= 0) {
      serving[l.shard].store(false, std::memory_order_release);
      node_.close_shard(l.shard, [this, key = l.key] { mark_drained(key); });
    } else {
      auto& sg = singletons[l.singleton];
      post([this, &sg, key = l.key] {
        try {
          sg.stop();
        } catch (const std::exception& e) {
          log->error("stopping {} failed: {}", sg.name, e.what());
        }
        mark_drained(key);
      });
    }
  }

  void mark_drained(const std::string& key) {
    log->debug("{} drained", key);
    {
      std::lock_guard lock{state_mutex};
      for (auto& l : leases)
        if (l.key == key && l.state == lease_state::handing_off) l.state = lease_state::drained;
    }
    nudge();
  }

  /// We no longer hold it (someone else took it, or we could not renew in
  /// time): stop at once.
  void lose(lease& l, const std::string& why) {
    log->warn("lost lease {}: {}", l.key, why);
    lost.fetch_add(1, std::memory_order_relaxed);
    auto was = l.state;
    l.state = lease_state::idle;
    if (l.shard >= 0) {
      serving[l.shard].store(false, std::memory_order_release);
      node_.close_shard(l.shard, [] {});
    } else if (was == lease_state::held || was == lease_state::starting) {
      auto& sg = singletons[l.singleton];
      post([this, &sg] {
        try {
          sg.stop();
        } catch (const std::exception& e) {
          log->error("stopping {} failed: {}", sg.name, e.what());
        }
      });
    }
  }

  void took(lease& l) {
    acquired.fetch_add(1, std::memory_order_relaxed);
    if (l.shard >= 0) {
      l.state = lease_state::held;
      set_route(l.shard, self);
      node_.open_shard(l.shard);
      serving[l.shard].store(true, std::memory_order_release);
      return;
    }
    l.state = lease_state::starting;
    auto& sg = singletons[l.singleton];
    post([this, &sg, key = l.key] {
      bool ok = true;
      try {
        sg.start();
        log->info("running {} (this node holds its lease)", sg.name);
      } catch (const std::exception& e) {
        ok = false;
        log->error("starting {} failed: {}; giving its lease up for now", sg.name, e.what());
      }
      std::lock_guard lock{state_mutex};
      for (auto& l : leases) {
        if (l.key != key || l.state != lease_state::starting) continue;
        if (ok) {
          l.state = lease_state::held;
        } else {
          l.state = lease_state::drained;
          l.retry_after = steady::now() + std::chrono::seconds{5};
        }
      }
    });
  }

  mutable std::mutex advertise_mutex;  // guards options.http_url

  std::string membership_value() const {
    boost::json::object o;
    {
      std::lock_guard lock{advertise_mutex};
      o["http"] = options.http_url;
    }
    o["subject"] = subject;
    return boost::json::serialize(o);
  }

  /// One heartbeat: membership, renewals, hand-offs, acquisitions.
  void tick() {
    auto value = membership_value();
    natsStatus s = kvStore_PutString(nullptr, nodes_kv, self.c_str(), value.c_str());
    if (s != NATS_OK) log->warn("heartbeat failed: {}", nats_error(s));
    bool members_ok = false;
    auto now_ns = unix_ns();
    auto read = read_members(nodes_kv, now_ns, members_ok);

    std::lock_guard lock{state_mutex};
    bool leases_ok = true;
    for (auto& l : leases) {
      kv_value v;
      if (kv_get(leases_kv, l.key, v) != NATS_OK) {
        leases_ok = false;
        continue;
      }
      l.seen = v;
    }
    // Renew what we hold; step down from what we cannot prove we hold.
    auto now = steady::now();
    for (auto& l : leases) {
      if (!ours(l)) continue;
      if (l.seen.found && l.seen.value == self && l.seen.revision == l.revision) {
        std::uint64_t rev = 0;
        auto sent = steady::now();
        if (kvStore_Update(&rev, leases_kv, l.key.c_str(), self.data(),
                           static_cast<int>(self.size()), l.revision) == NATS_OK) {
          l.revision = rev;
          l.renewed_at = sent;
          l.seen.revision = rev;
          l.seen.created_ns = unix_ns();
          continue;
        }
      } else if (leases_ok) {
        lose(l, l.seen.found ? "now held by '" + l.seen.value + "'" : "it expired");
        continue;
      }
      // Not renewed (NATS unreachable?): a peer may take it once it expires.
      if (now - l.renewed_at > options.lease_ttl * 4 / 5)
        lose(l, "not renewed for " +
                    std::to_string(
                        std::chrono::duration_cast<std::chrono::milliseconds>(now - l.renewed_at)
                            .count()) +
                    " ms");
    }
    // Hand-offs that finished.
    for (auto& l : leases)
      if (l.state == lease_state::drained) release(l);

    if (!members_ok || !leases_ok) return;  // act only on a complete picture
    members = std::move(read);
    members_known = true;
    std::vector<std::string> live_ids;
    for (const auto& m : members)
      if (m.heartbeat_age_seconds * 1000 < static_cast<double>(options.lease_ttl.count()))
        live_ids.push_back(m.id);
    if (!leaving.load() && std::find(live_ids.begin(), live_ids.end(), self) == live_ids.end())
      live_ids.push_back(self);  // our own put may not be visible yet
    if (leaving.load()) std::erase(live_ids, self);

    auto place = [&](std::size_t first, std::size_t count) {
      std::vector<std::string> names, current;
      for (std::size_t i = first; i < first + count; ++i) {
        names.push_back(leases[i].key);
        current.push_back(ours(leases[i]) ? self : leases[i].seen.value);
      }
      auto wanted = assign_items(names, live_ids, current);
      for (std::size_t i = first; i < first + count; ++i) {
        auto& l = leases[i];
        const auto& want = wanted[i - first];
        if (l.state == lease_state::held && want != self) {
          log->info("handing {} over (assigned to {})", l.key, want);
          hand_off(l);
        } else if (l.state == lease_state::idle && want == self &&
                   (!l.seen.found || l.seen.value.empty() || l.seen.value == self) &&
                   now >= l.retry_after) {
          // Our own id on a lease we do not hold: left by this node's previous
          // run (a crash); node ids are unique, so it is ours to take back.
          if (try_acquire(l)) {
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
    for (std::size_t i = 0; i < shard_count; ++i)
      shard_owner[i] = ours(leases[i]) ? self : leases[i].seen.value;
  }

  void heartbeat_loop() {
    while (!stopping.load()) {
      try {
        tick();
      } catch (const std::exception& e) {
        log->error("cluster heartbeat failed: {}", e.what());
      }
      std::unique_lock lock{wake_mutex};
      wake.wait_for(lock, options.heartbeat, [&] { return wake_now || stopping.load(); });
      wake_now = false;
    }
  }

  cluster_lease describe(const lease& l, std::int64_t now_ns) const {
    cluster_lease d;
    d.key = l.key;
    d.owner = ours(l) ? self : l.seen.value;
    d.revision = ours(l) ? l.revision : l.seen.revision;
    d.age_seconds =
        l.seen.found ? std::max(0.0, static_cast<double>(now_ns - l.seen.created_ns) / 1e9) : 0;
    return d;
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

cluster::cluster(node& n, cluster_options options) : impl_(new impl(n, std::move(options))) {
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
                            std::function<void()> stop) {
  auto& im = *impl_;
  if (im.started) throw std::logic_error("add singletons before cluster::start()");
  im.singletons.push_back({std::move(name), std::move(start), std::move(stop)});
}

void cluster::start() {
  auto& im = *impl_;
  if (im.started) return;
  if (im.node_.shard_count() != im.options.shards)
    throw std::runtime_error("the node must be sharded with enable_sharding(" +
                             std::to_string(im.options.shards) + ") before it starts");
  im.nc = detail::connect_nats(im.options.nats_url);
  natsStatus s = natsConnection_JetStream(&im.js, im.nc, nullptr);
  if (s != NATS_OK) throw std::runtime_error("JetStream context: " + nats_error(s));
  im.nodes_kv = open_bucket(im.js, bucket_name(im.options.name, "nodes"), im.options.lease_ttl,
                            im.options.replicas, *im.log);
  im.leases_kv = open_bucket(im.js, bucket_name(im.options.name, "leases"), im.options.lease_ttl,
                             im.options.replicas, *im.log);

  im.serving = std::make_unique<std::atomic<bool>[]>(static_cast<std::size_t>(im.options.shards));
  im.shard_owner.assign(static_cast<std::size_t>(im.options.shards), "");
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
  s = natsConnection_Subscribe(&im.answer_sub, im.nc, (im.inbox + ".*").c_str(), &impl::on_answer,
                               &im);
  if (s == NATS_OK)
    s = natsConnection_Subscribe(&im.command_sub, im.nc, im.subject.c_str(), &impl::on_command,
                                 &im);
  if (s == NATS_OK) {
    // Bounded: beyond these a slow node drops forwarded commands (their
    // senders retry after the attempt timeout) instead of growing memory.
    natsSubscription_SetPendingLimits(im.command_sub, 100000, 256 * 1024 * 1024);
    natsSubscription_SetPendingLimits(im.answer_sub, 100000, 64 * 1024 * 1024);
  }
  if (s != NATS_OK) throw std::runtime_error("cluster subscriptions: " + nats_error(s));

  im.node_.set_router([&im](command_envelope command, command_completion done) {
    auto now_waiting = im.waiting.fetch_add(1, std::memory_order_relaxed);
    if (static_cast<std::size_t>(now_waiting) >= im.options.max_forwarded) {
      im.waiting.fetch_sub(1, std::memory_order_relaxed);
      done(failure(command_status::overloaded, "cluster_overloaded",
                   "too many commands waiting for their shard's owner; retry later"));
      return;
    }
    auto r = std::make_shared<impl::forward_request>();
    r->shard = shard_of(command.stream_id, im.options.shards);
    r->command = std::move(command);
    r->done = std::move(done);
    r->deadline = steady::now() + im.options.forward_timeout;
    im.route(std::move(r));
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
  if (!im.started || im.leaving.exchange(true)) return;
  // Heartbeats stop; this thread does the leaving.
  {
    std::lock_guard lock{im.wake_mutex};
    im.stopping = true;
  }
  im.wake.notify_all();
  if (im.heartbeat_thread.joinable()) im.heartbeat_thread.join();
  kvStore_Delete(im.nodes_kv, im.self.c_str());  // peers stop assigning to us
  {
    std::lock_guard lock{im.state_mutex};
    for (auto& l : im.leases)
      if (l.state == impl::lease_state::held || l.state == impl::lease_state::starting)
        im.hand_off(l);
  }
  // Wait for the hand-offs, renewing what is still ours meanwhile.
  auto deadline = steady::now() + im.options.shutdown_timeout;
  while (steady::now() < deadline) {
    bool busy = false;
    {
      std::lock_guard lock{im.state_mutex};
      for (auto& l : im.leases) {
        if (l.state == impl::lease_state::drained) im.release(l);
        if (l.state == impl::lease_state::idle) continue;
        busy = true;
        std::uint64_t rev = 0;
        if (steady::now() - l.renewed_at > im.options.heartbeat &&
            kvStore_Update(&rev, im.leases_kv, l.key.c_str(), im.self.data(),
                           static_cast<int>(im.self.size()), l.revision) == NATS_OK) {
          l.revision = rev;
          l.renewed_at = steady::now();
        }
      }
    }
    if (!busy) break;
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }
  {
    std::lock_guard lock{im.state_mutex};
    for (auto& l : im.leases)
      if (l.state != impl::lease_state::idle) {
        im.log->warn("{} not handed off within the shutdown timeout; it expires after the TTL",
                     l.key);
        l.state = impl::lease_state::idle;
      }
  }
  im.node_.set_router([](command_envelope, command_completion done) {
    done(failure(command_status::unavailable, "node_leaving",
                 "this node has left the cluster; retry on another node"));
  });
  {
    std::lock_guard lock{im.worker_mutex};
    im.worker_stop = true;
  }
  im.worker_wake.notify_all();
  if (im.worker_thread.joinable()) im.worker_thread.join();
  im.forward_wake.notify_all();
  if (im.timer_thread.joinable()) im.timer_thread.join();
  if (im.command_sub) natsSubscription_Unsubscribe(im.command_sub);
  if (im.answer_sub) natsSubscription_Unsubscribe(im.answer_sub);
  im.fail_waiting();
  natsSubscription_Destroy(im.command_sub);
  natsSubscription_Destroy(im.answer_sub);
  im.command_sub = im.answer_sub = nullptr;
  kvStore_Destroy(im.nodes_kv);
  kvStore_Destroy(im.leases_kv);
  jsCtx_Destroy(im.js);
  natsConnection_Destroy(im.nc);
  im.nodes_kv = im.leases_kv = nullptr;
  im.js = nullptr;
  im.nc = nullptr;
  im.log->info("node {} left cluster {}", im.self, im.options.name);
}

cluster_status cluster::status() const {
  auto& im = *impl_;
  cluster_status st;
  st.name = im.options.name;
  st.self = im.self;
  st.shard_count = im.options.shards;
  st.connected = connected();
  auto now_ns = unix_ns();
  {
    std::lock_guard lock{im.state_mutex};
    st.members = im.members;
    for (const auto& l : im.leases)
      (l.shard >= 0 ? st.shards : st.singletons).push_back(im.describe(l, now_ns));
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
  auto& im = *impl_;
  return im.nc != nullptr && natsConnection_Status(im.nc) == NATS_CONN_STATUS_CONNECTED;
}

const std::string& cluster::self() const { return impl_->self; }

void cluster::advertise_http(std::string url) {
  std::lock_guard lock{impl_->advertise_mutex};
  impl_->options.http_url = std::move(url);
}

cluster_status cluster::read(const std::string& nats_url, const std::string& name, int shards,
                             std::chrono::milliseconds) {
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
