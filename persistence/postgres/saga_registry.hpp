#pragma once
// Which saga instances are open, so a starting node can resume them (their
// inputs live in their own event streams). Written by the saga host in
// batches, together with the dead letters of failed steps; one connection,
// one thread.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "persistence/postgres/view_store.hpp"

namespace troupe::postgres {

class pg_connection;

struct saga_row {
  std::string correlation_id;
  std::string status;
  bool finished = false;
  std::optional<std::int64_t> next_wakeup_ms;
  std::int64_t started_ms = 0;
  /// The version of the instance's input stream the row describes: a row
  /// never replaces one from a later version (a stale host's late flush).
  std::int64_t stream_version = 0;
};

class saga_registry {
 public:
  explicit saga_registry(const std::string& url);
  ~saga_registry();

  /// Correlation ids of the saga's unfinished instances with something
  /// pending (a step in flight or a timer); the others need nothing until
  /// their next event.
  std::vector<std::string> open_instances(std::string_view saga);
  /// Upserts rows (except over rows of a later stream version) and parks
  /// dead letters, in one transaction.
  void save(std::string_view saga, const std::vector<saga_row>& rows,
            const std::vector<dead_letter>& letters);
  /// Counts of instances by status (finished ones included).
  std::vector<std::pair<std::string, std::int64_t>> by_status(std::string_view saga);

 private:
  view_store store_;
};

}  // namespace troupe::postgres
