#pragma once
// UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then randomness. Time-ordered,
// so event ids index well, and unique across nodes without coordination.

#include <array>
#include <cstdint>
#include <string>

namespace troupe {

using uuid_bytes = std::array<std::uint8_t, 16>;

/// A new UUIDv7 for the current time. Thread-safe (per-thread generator);
/// ids made by one thread are strictly increasing.
uuid_bytes make_uuid_v7();
/// The same with an explicit timestamp, for tests.
uuid_bytes make_uuid_v7(std::uint64_t unix_millis);
/// Canonical text form: 8-4-4-4-12 lower-case hex.
std::string to_string(const uuid_bytes& id);
/// A new UUIDv7 in text form.
inline std::string new_uuid() { return to_string(make_uuid_v7()); }

}  // namespace troupe
