#pragma once
// The cluster: several nodes sharing one PostgreSQL and one NATS, with the
// aggregates spread over them by shard. Coordination is NATS only:
//
// - membership: every node puts `<node id>` into the KV bucket
//   `troupe_<name>_nodes` each heartbeat; the bucket's TTL removes a node
//   that stops doing so (crash, partition);
// - leases: `shard.<n>` and `singleton.<name>` in `troupe_<name>_leases`
//   hold the owner's node id. A node takes a free lease by compare-and-set
//   (create, or update at the revision of a released ""), renews it each
//   heartbeat by an update at its last revision, and releases it by writing
//   "" at that revision. A dead owner's lease disappears after the TTL.
//   A node that cannot renew within the TTL stops serving the shard first;
//   should two nodes briefly both think they own one, the event store's
//   version check rejects the stale writer (its actor re-reads the stream);
// - assignment: every node computes the same balanced, sticky assignment
//   (runtime/shard_map.hpp) from the live members and current owners, gives
//   up what it should not hold (stop taking commands, finish the ones in
//   flight, passivate the actors, release) and takes what is free and meant
//   for it;
// - forwarding: a command for a shard owned elsewhere goes to its owner
//   over NATS request/reply (`troupe.<name>.node.<id>`), retried while the
//   shard is moving (commands carry ids, so a retry is never applied twice).
//
// Singletons (the publisher, each projection, each saga type) hold a lease
// the same way; their start/stop callbacks run on the lease holder only.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace spdlog {
class logger;
}

namespace troupe {

class node;

struct cluster_options {
  std::string nats_url = "nats://127.0.0.1:4222";
  /// Namespace of buckets and subjects; nodes with the same name form a cluster.
  std::string name = "troupe";
  /// Sanitised to [A-Za-z0-9_-]; defaults to the node's id.
  std::string node_id;
  /// Advertised in the membership record (status pages, tools).
  std::string http_url;
  int shards = 64;
  std::chrono::milliseconds lease_ttl{5000};
  std::chrono::milliseconds heartbeat{500};
  /// How long a command may spend finding its shard's owner, in all.
  std::chrono::milliseconds forward_timeout{10000};
  /// One forwarded attempt's wait for the owner's answer before retrying.
  std::chrono::milliseconds forward_attempt_timeout{3000};
  /// Commands waiting for a peer's answer or a retry; beyond it: overloaded.
  std::size_t max_forwarded = 20000;
  /// JetStream replicas of the KV buckets (3 on a 3-server NATS cluster).
  int replicas = 1;
  std::chrono::milliseconds shutdown_timeout{30000};
  std::shared_ptr<spdlog::logger> log;
};

struct cluster_member {
  std::string id;
  std::string http_url;
  double heartbeat_age_seconds = 0;
  int shards = 0;  // leases on shards held now
};

struct cluster_lease {
  std::string key;         // "shard.<n>" or "singleton.<name>"
  std::string owner;       // "" = free
  double age_seconds = 0;  // since the owner last renewed it
  std::uint64_t revision = 0;
};

struct cluster_forwarding {
  std::int64_t forwarded = 0;        // commands sent to a peer
  std::int64_t received = 0;         // commands a peer sent here
  std::int64_t retries = 0;          // attempts repeated (shard moving, no answer)
  std::int64_t timed_out = 0;        // gave up after forward_timeout
  std::int64_t waiting = 0;          // now
  std::int64_t shards_acquired = 0;  // since start
  std::int64_t shards_released = 0;
  std::int64_t leases_lost = 0;  // renewals refused: another node took over
};

struct cluster_status {
  std::string name;
  std::string self;
  int shard_count = 0;
  bool connected = false;
  std::vector<cluster_member> members;
  std::vector<cluster_lease> shards;      // shard.0 .. shard.<n-1>
  std::vector<cluster_lease> singletons;  // singleton.<name>
  cluster_forwarding forwarding;

  /// The status as JSON (HTTP endpoint, `troupe cluster status --json`).
  std::string to_json() const;
  /// A human-readable table.
  std::string to_text() const;
};

class cluster {
 public:
  cluster(node& n, cluster_options options);
  ~cluster();
  cluster(const cluster&) = delete;
  cluster& operator=(const cluster&) = delete;

  /// A component with one active instance in the cluster. `start` runs when
  /// this node takes its lease, `stop` when it gives it up or loses it; both
  /// on the cluster's worker thread (they may block). A throwing `start`
  /// releases the lease for another node (or a later retry). Before start().
  ///
  /// `fence`, when given, runs at once on the cluster's heartbeat thread when
  /// the lease is lost (not when it is handed over): `stop` waits behind
  /// other singletons' stops and may block on the very fault that cost the
  /// lease, while the next owner may already be running. It must not block;
  /// it makes the running instance stop acting (a saga host stops sending
  /// commands and writing). It may find the slot empty while a start is
  /// still running; `stop` follows either way.
  void add_singleton(std::string name, std::function<void()> start, std::function<void()> stop,
                     std::function<void()> fence = {});

  /// Connects, creates the buckets, installs the node's command router and
  /// begins heartbeats. The node must have been started after
  /// enable_sharding(options.shards). Throws std::runtime_error when NATS
  /// cannot be reached or the node is not sharded alike.
  void start();

  /// Leaves gracefully: withdraws membership, stops the singletons held
  /// here and hands off every shard (finishing commands in flight) before
  /// releasing the leases. Idempotent; the destructor calls it.
  void stop();

  /// Sets the HTTP URL shown for this node (known once the server listens).
  void advertise_http(std::string url);

  /// What this node saw at its last heartbeat, plus its counters.
  cluster_status status() const;
  bool connected() const;
  const std::string& self() const;

  /// Reads a cluster's state straight from NATS (for `troupe cluster status`).
  static cluster_status read(const std::string& nats_url, const std::string& name, int shards);

 private:
  struct impl;
  std::shared_ptr<impl> impl_;  // shared with callbacks that may outlive stop()
};

/// `id` made safe for a NATS subject token and a KV key.
std::string cluster_safe_id(std::string_view id);

}  // namespace troupe
