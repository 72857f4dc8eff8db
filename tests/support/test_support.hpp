#pragma once
// Small helpers shared by test suites.

#include <chrono>
#include <random>
#include <string>
#include <string_view>
#include <thread>

namespace troupe::test_support {

/// Polls `done` until it holds or `timeout` passes; for effects that finish
/// asynchronously (passivation, publishing), never as a fixed sleep.
template <class Predicate>
bool eventually(Predicate done, std::chrono::milliseconds timeout = std::chrono::seconds{10}) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
  return done();
}

/// `prefix` followed by a random number: names no other run uses, for
/// suites that share a database or a NATS server.
inline std::string unique(std::string_view prefix) {
  static thread_local std::mt19937_64 random{std::random_device{}()};
  return std::string(prefix) + std::to_string(random() % 1'000'000'000'000ULL);
}

}  // namespace troupe::test_support
