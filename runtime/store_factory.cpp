#include "runtime/store_factory.hpp"

#include "persistence/memory_event_store.hpp"
#include "persistence/postgres_event_store.hpp"
#include "runtime/logging.hpp"

namespace troupe {

std::shared_ptr<event_store> make_event_store(const config& cfg) {
  auto max_event_bytes = static_cast<std::size_t>(cfg.integer("store.max_event_bytes"));
  if (cfg.string("store.kind") == "memory")
    return std::make_shared<memory_event_store>(max_event_bytes);
  postgres_store_options o;
  o.url = cfg.string("postgres.url");
  o.writer_connections = static_cast<std::size_t>(cfg.integer("postgres.writer_connections"));
  o.reader_connections = static_cast<std::size_t>(cfg.integer("postgres.reader_connections"));
  o.batch_max_commands = static_cast<std::size_t>(cfg.integer("postgres.batch_max_commands"));
  o.batch_linger = std::chrono::microseconds{cfg.integer("postgres.batch_linger_us")};
  o.max_queued_appends = static_cast<std::size_t>(cfg.integer("postgres.max_queued_appends"));
  o.max_queued_reads = static_cast<std::size_t>(cfg.integer("postgres.max_queued_reads"));
  o.max_event_bytes = max_event_bytes;
  o.reconnect_backoff = std::chrono::milliseconds{cfg.integer("postgres.reconnect_backoff_ms")};
  o.log = logger("store");
  return std::make_shared<postgres_event_store>(std::move(o));
}

}  // namespace troupe
