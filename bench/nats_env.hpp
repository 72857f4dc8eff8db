#pragma once
// JetStream housekeeping for benchmarks: streams they create are deleted
// afterwards, so repeated runs do not fill the local nats-server's disk.

#include <nats/nats.h>

#include <string>

#include "bench/bench_env.hpp"

namespace troupe::bench {

inline void delete_stream(const std::string& stream) {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  if (natsConnection_ConnectTo(&nc, env("TROUPE_NATS_URL").c_str()) == NATS_OK &&
      natsConnection_JetStream(&js, nc, nullptr) == NATS_OK) {
    jsErrCode code = static_cast<jsErrCode>(0);
    js_DeleteStream(js, stream.c_str(), nullptr, &code);
  }
  if (js != nullptr) jsCtx_Destroy(js);
  if (nc != nullptr) natsConnection_Destroy(nc);
}

}  // namespace troupe::bench
