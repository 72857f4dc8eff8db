#include "runtime/shard_map.hpp"

#include <algorithm>
#include <map>

namespace troupe {

namespace {

/// Rendezvous weight of (item, node): who wins a free item.
std::uint64_t weight(std::string_view item, std::string_view node) {
  std::string key;
  key.reserve(item.size() + node.size() + 1);
  key.append(item).push_back('\x1f');
  key.append(node);
  // FNV's low bits mix poorly for similar keys; finish with a 64-bit mixer.
  auto h = stable_hash(key);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

}  // namespace

std::vector<std::string> assign_items(const std::vector<std::string>& items,
                                      std::vector<std::string> live_nodes,
                                      const std::vector<std::string>& current) {
  std::vector<std::string> out(items.size());
  std::sort(live_nodes.begin(), live_nodes.end());
  live_nodes.erase(std::unique(live_nodes.begin(), live_nodes.end()), live_nodes.end());
  if (live_nodes.empty()) return out;
  const auto n = items.size();
  const auto k = live_nodes.size();

  // Shares: floor(n/k) each, and one more for n%k nodes - those holding the
  // most now (so fewer items move), ties broken by name.
  std::map<std::string, std::size_t, std::less<>> held;
  for (const auto& node : live_nodes) held[node] = 0;
  for (std::size_t i = 0; i < n && i < current.size(); ++i)
    if (auto it = held.find(current[i]); it != held.end()) ++it->second;
  auto by_holdings = live_nodes;
  std::stable_sort(by_holdings.begin(), by_holdings.end(),
                   [&](const std::string& a, const std::string& b) { return held[a] > held[b]; });
  std::map<std::string, std::size_t, std::less<>> share;
  for (std::size_t r = 0; r < k; ++r) share[by_holdings[r]] = n / k + (r < n % k ? 1 : 0);

  // Keep what live owners hold, up to their share (lowest item first).
  std::map<std::string, std::size_t, std::less<>> given;
  for (std::size_t i = 0; i < n; ++i) {
    if (i >= current.size()) break;
    auto it = share.find(current[i]);
    if (it == share.end() || given[current[i]] >= it->second) continue;
    out[i] = current[i];
    ++given[current[i]];
  }
  // The rest go to the node under its share with the highest weight.
  for (std::size_t i = 0; i < n; ++i) {
    if (!out[i].empty()) continue;
    const std::string* best = nullptr;
    std::uint64_t best_weight = 0;
    for (const auto& node : live_nodes) {
      if (given[node] >= share[node]) continue;
      auto w = weight(items[i], node);
      if (best == nullptr || w > best_weight) {
        best = &node;
        best_weight = w;
      }
    }
    out[i] = *best;  // shares add up to n, so someone is under its share
    ++given[*best];
  }
  return out;
}

std::vector<std::string> shard_names(int shard_count) {
  std::vector<std::string> names;
  names.reserve(static_cast<std::size_t>(shard_count));
  for (int s = 0; s < shard_count; ++s) names.push_back("shard." + std::to_string(s));
  return names;
}

}  // namespace troupe
