#include "tools/load/histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>

namespace troupe::load {
namespace {

// Values below 128 get a bucket each (exact). Above, every power of two
// [2^e, 2^(e+1)) is cut into 128 equal buckets of width 2^(e-7): a bucket
// is never wider than 1/128 (< 0.8 %) of the smallest value in it, which
// is what keeps every reported value within 1 % of a recorded one.
constexpr int sub_bucket_bits = 7;
constexpr std::int64_t sub_bucket_count = std::int64_t{1} << sub_bucket_bits;
// 2^32 µs is about 71.6 minutes: far beyond any timeout a load run uses.
constexpr int tracked_bits = 32;
constexpr std::int64_t largest_trackable = (std::int64_t{1} << tracked_bits) - 1;
constexpr std::size_t bucket_total =
    static_cast<std::size_t>(sub_bucket_count * (1 + tracked_bits - sub_bucket_bits));

// Bucket layout: [0, 128) exact, then 128 buckets per shift = 0, 1, ...,
// where shift is how many low bits of the value the bucket ignores.
std::size_t bucket_of(std::int64_t value) {
  if (value < sub_bucket_count) return static_cast<std::size_t>(value);
  const int highest_bit = std::bit_width(static_cast<std::uint64_t>(value)) - 1;
  const int shift = highest_bit - sub_bucket_bits;
  const std::int64_t sub_bucket = (value >> shift) - sub_bucket_count;  // 0..127
  return static_cast<std::size_t>(sub_bucket_count * (shift + 1) + sub_bucket);
}

/// The largest value that falls into the bucket.
std::int64_t bucket_upper_bound(std::size_t index) {
  const auto i = static_cast<std::int64_t>(index);
  if (i < sub_bucket_count) return i;
  const auto shift = i / sub_bucket_count - 1;
  const auto sub_bucket = i % sub_bucket_count + sub_bucket_count;  // 128..255
  return ((sub_bucket + 1) << shift) - 1;
}

}  // namespace

histogram::histogram() : buckets_(bucket_total, 0) {}

void histogram::record(std::int64_t micros) {
  if (micros < 0) micros = 0;
  if (micros > largest_trackable) {
    // Count it at the top rather than drop it: a lost request must still
    // weigh on the high percentiles.
    micros = largest_trackable;
    ++clamped_;
  }
  ++buckets_[bucket_of(micros)];
  if (count_ == 0 || micros < min_) min_ = micros;
  max_ = std::max(max_, micros);
  ++count_;
  sum_ += static_cast<double>(micros);
}

void histogram::merge(const histogram& other) {
  if (other.count_ == 0) return;
  for (std::size_t i = 0; i < buckets_.size(); ++i) buckets_[i] += other.buckets_[i];
  min_ = count_ == 0 ? other.min_ : std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  count_ += other.count_;
  clamped_ += other.clamped_;
  sum_ += other.sum_;
}

void histogram::reset() {
  std::fill(buckets_.begin(), buckets_.end(), 0);
  count_ = max_ = min_ = clamped_ = 0;
  sum_ = 0;
}

std::int64_t histogram::min() const { return count_ == 0 ? 0 : min_; }

double histogram::mean() const { return count_ == 0 ? 0.0 : sum_ / static_cast<double>(count_); }

std::int64_t histogram::percentile(double p) const {
  if (count_ == 0) return 0;
  if (!(p > 0)) p = 0;  // also catches NaN
  if (p > 100) p = 100;
  const double wanted = p / 100.0 * static_cast<double>(count_);
  // p / 100 is rarely exact in binary (99.9 / 100 * 1000 = 999.0000000000001):
  // a relative nudge down keeps such ranks from rounding up one value.
  auto rank = static_cast<std::int64_t>(std::ceil(wanted - wanted * 1e-9));
  rank = std::clamp<std::int64_t>(rank, 1, count_);
  std::int64_t seen = 0;
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    seen += buckets_[i];
    // The upper bound never under-reports; max_ is exact, so the top
    // bucket is not reported above the largest value actually seen.
    if (seen >= rank) return std::min(bucket_upper_bound(i), max_);
  }
  return max_;
}

}  // namespace troupe::load
