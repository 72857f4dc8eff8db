#pragma once
// What the runtime's NATS users (publisher, subscriptions) share: readable
// errors and a connection that reconnects for as long as the node runs.

#include <nats/nats.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/config.hpp"

namespace troupe::detail {

inline std::string nats_error(natsStatus s, jsErrCode code = static_cast<jsErrCode>(0)) {
  std::string out = natsStatus_GetText(s);
  if (code != 0) out += " (JetStream error " + std::to_string(static_cast<int>(code)) + ")";
  return out;
}

/// Connects to `url` - one server, or several separated by commas (the
/// servers of a NATS cluster: any reachable one will do, and the client
/// moves to another when it fails) - retrying reconnections without end
/// (work in flight during an outage fails and is retried by its owner);
/// throws std::runtime_error when the first connection fails.
inline natsConnection* connect_nats(const std::string& url) {
  auto servers = split_list(url);
  std::vector<const char*> server_ptrs;
  for (const auto& s : servers) server_ptrs.push_back(s.c_str());
  natsOptions* opts = nullptr;
  natsConnection* connection = nullptr;
  natsStatus s = natsOptions_Create(&opts);
  if (s == NATS_OK)
    s = natsOptions_SetServers(opts, server_ptrs.data(), static_cast<int>(server_ptrs.size()));
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts, 250);
  if (s == NATS_OK) s = natsConnection_Connect(&connection, opts);
  natsOptions_Destroy(opts);
  if (s != NATS_OK)
    throw std::runtime_error("cannot connect to NATS at " + url + ": " + nats_error(s));
  return connection;
}

}  // namespace troupe::detail
