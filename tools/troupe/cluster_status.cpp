// `troupe cluster status`: the cluster as NATS holds it (membership and
// leases), read without joining.

#include <iostream>

#include "runtime/cluster.hpp"
#include "runtime/config.hpp"
#include "tools/troupe/commands.hpp"

namespace troupe::cli {

int cluster_status_command(const config& cfg, bool json) {
  try {
    auto st = cluster::read(cfg.string("nats.url"), cfg.string("cluster.name"),
                            static_cast<int>(cfg.integer("cluster.shards")));
    std::cout << (json ? st.to_json() + "\n" : st.to_text());
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "troupe cluster status: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace troupe::cli
