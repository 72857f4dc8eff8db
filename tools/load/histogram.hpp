#pragma once
// An HDR-style latency histogram: log-linear buckets (every power of two
// split into 128 linear sub-buckets, so any recorded value is reported
// within 1 % of itself), fixed memory, O(1) record, mergeable. Values are
// microseconds, from 0 to about 1.2 hours (larger values are clamped and
// counted as such).

#include <array>
#include <cstdint>
#include <vector>

namespace troupe::load {

class histogram {
 public:
  histogram();

  /// Records one value (microseconds; negative values count as 0).
  void record(std::int64_t micros);
  void merge(const histogram& other);
  void reset();

  std::int64_t count() const { return count_; }
  std::int64_t min() const;  // 0 when empty
  std::int64_t max() const { return max_; }
  double mean() const;
  /// The smallest recorded value v (within the bucket's 1 % resolution)
  /// such that at least p percent of the values are <= v; p in [0, 100].
  /// 0 when empty.
  std::int64_t percentile(double p) const;
  /// Values recorded above the largest trackable value (clamped to it).
  std::int64_t clamped() const { return clamped_; }

 private:
  std::vector<std::int64_t> buckets_;
  std::int64_t count_ = 0, max_ = 0, min_ = 0, clamped_ = 0;
  double sum_ = 0;
};

}  // namespace troupe::load
