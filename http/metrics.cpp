#include "http/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <mutex>
#include <unordered_map>

namespace troupe::http {

struct api_metrics::impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  prometheus::Family<prometheus::Counter>& requests =
      prometheus::BuildCounter()
          .Name("troupe_http_requests_total")
          .Help("HTTP requests answered, by route pattern, method and status")
          .Register(*registry);
  prometheus::Family<prometheus::Histogram>& latency =
      prometheus::BuildHistogram()
          .Name("troupe_http_request_duration_seconds")
          .Help("Time from a request read in full to its response queued, by route")
          .Register(*registry);

  // Family::Add looks labels up under a lock each time; cache the series.
  struct series {
    prometheus::Counter* count;
    prometheus::Histogram* seconds;
  };
  std::mutex mutex;
  std::unordered_map<std::string, series> cache;
};

api_metrics::api_metrics() : impl_(std::make_unique<impl>()) {}
api_metrics::~api_metrics() = default;

void api_metrics::observe(std::string_view route, std::string_view method, int status,
                          double seconds) {
  std::string key;
  key.reserve(route.size() + method.size() + 8);
  key.append(method).append(" ").append(route).append(" ").append(std::to_string(status));
  impl::series s{};
  {
    std::lock_guard lock{impl_->mutex};
    auto it = impl_->cache.find(key);
    if (it == impl_->cache.end()) {
      std::map<std::string, std::string> labels{{"route", std::string(route)},
                                                {"method", std::string(method)},
                                                {"status", std::to_string(status)}};
      auto& count = impl_->requests.Add(labels);
      auto& latency = impl_->latency.Add(
          {{"route", std::string(route)}, {"method", std::string(method)}},
          prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                  0.1, 0.25, 0.5, 1, 2.5, 5});
      it = impl_->cache.emplace(std::move(key), impl::series{&count, &latency}).first;
    }
    s = it->second;
  }
  s.count->Increment();
  s.seconds->Observe(seconds);
}

std::string api_metrics::text() const {
  return prometheus::TextSerializer().Serialize(impl_->registry->Collect());
}

}  // namespace troupe::http
