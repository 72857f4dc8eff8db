#pragma once
// Where things live in a cluster, as pure functions: the shard of a stream
// (a stable hash every node computes alike) and the assignment of shards (or
// any named items) to live nodes. No I/O; runtime/cluster.cpp feeds these
// with what it reads from the NATS KV buckets.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

/// FNV-1a, 64 bits: stable across builds, platforms and restarts (unlike
/// std::hash), so every node maps a stream to the same shard.
/// `h` continues a hash: stable_hash(b, stable_hash(a)) == stable_hash(a + b).
constexpr std::uint64_t stable_hash(std::string_view text,
                                    std::uint64_t h = 14695981039346656037ull) {
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

/// The shard that owns `stream_id` among `shard_count` shards.
constexpr int shard_of(std::string_view stream_id, int shard_count) {
  return static_cast<int>(stable_hash(stream_id) % static_cast<std::uint64_t>(shard_count));
}

/// Who should own each item, given the live nodes and who owns what now.
///
/// `items` are the items' names (they seed the tie-breaking hash);
/// `current[i]` is item i's owner now ("" = nobody). Every live node gets
/// floor(n/k) or ceil(n/k) items; an item stays with its current owner while
/// that owner is live and under its share, so a change of membership moves
/// only as many items as balance needs. Deterministic: every node computing
/// it from the same inputs gets the same answer, and an assignment fed back
/// as `current` comes back unchanged. Empty `live_nodes` gives all "".
std::vector<std::string> assign_items(const std::vector<std::string>& items,
                                      std::vector<std::string> live_nodes,
                                      const std::vector<std::string>& current);

/// The shard names "shard.0" .. "shard.<n-1>" (lease keys and hash seeds).
std::vector<std::string> shard_names(int shard_count);

}  // namespace troupe
