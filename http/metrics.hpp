#pragma once
// The API's Prometheus metrics (prometheus-cpp core): requests by route,
// method and status class, and their latency. Served as text by /metrics,
// followed by the runtime's own counters.

#include <memory>
#include <string>
#include <string_view>

namespace troupe::http {

class api_metrics {
 public:
  api_metrics();
  ~api_metrics();
  api_metrics(const api_metrics&) = delete;
  api_metrics& operator=(const api_metrics&) = delete;

  /// One answered request; `route` is the pattern ("/api/v1/books/{book_id}"),
  /// never the raw path, so label sets stay bounded.
  void observe(std::string_view route, std::string_view method, int status, double seconds);
  /// The text exposition format.
  std::string text() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe::http
