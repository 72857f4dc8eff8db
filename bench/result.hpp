#pragma once
// Helpers shared by benchmarks: medians and the RESULT line format.

#include <algorithm>
#include <cstdio>
#include <string_view>
#include <vector>

namespace troupe::bench {

inline double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  auto n = values.size();
  if (n == 0) return 0;
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

/// `RESULT <name> value=<v> unit=<u> limit=<l> ratio=<v/l>`; limit <= 0 omits
/// limit and ratio.
inline void print_result(std::string_view name, double value, std::string_view unit,
                         double limit = 0) {
  if (limit > 0)
    std::printf("RESULT %.*s value=%.6g unit=%.*s limit=%.6g ratio=%.3f\n",
                static_cast<int>(name.size()), name.data(), value, static_cast<int>(unit.size()),
                unit.data(), limit, value / limit);
  else
    std::printf("RESULT %.*s value=%.6g unit=%.*s\n", static_cast<int>(name.size()), name.data(),
                value, static_cast<int>(unit.size()), unit.data());
  std::fflush(stdout);
}

}  // namespace troupe::bench
