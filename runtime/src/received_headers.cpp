#include "runtime/src/received_headers.hpp"

#include <cstdint>
#include <cstring>

namespace troupe::detail {

namespace {

constexpr std::string_view version_line = "NATS/1.0";
/// A header block larger than this is not read from the wire (NATS's own
/// limit for a whole message is 1 MiB by default; ours are ~600 bytes).
constexpr std::ptrdiff_t max_wire_block = 64 * 1024;

/// nats.c 2.2 (headers) through 3.x place a received message's header block
/// right before its payload, in one allocation with the subject and reply.
bool library_layout_known() {
  static const bool known = [] {
    auto version = nats_GetVersionNumber();  // (major << 16) | (minor << 8) | patch
    return version >= 0x020200 && version < 0x040000;
  }();
  return known;
}

/// What C's isspace() calls a space (nats.c trims values with it).
bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

received_headers::received_headers(natsMsg* msg) : msg_(msg) { from_wire_ = parse_wire(); }

bool received_headers::parse_wire() {
  if (msg_ == nullptr || !library_layout_known()) return false;
  const char* subject = natsMsg_GetSubject(msg_);
  const char* reply = natsMsg_GetReply(msg_);
  const char* data = natsMsg_GetData(msg_);
  if (subject == nullptr || data == nullptr) return false;
  // The layout: subject\0 [reply\0] headers\0 payload\0. Every pointer
  // must come in that order, close together, or this is not that layout
  // (compared as addresses: they may point into different allocations).
  auto address = [](const char* p) { return reinterpret_cast<std::uintptr_t>(p); };
  auto in_order = [&](const char* first, const char* second) {
    return address(first) < address(second) &&
           address(second) - address(first) <= static_cast<std::uintptr_t>(max_wire_block);
  };
  const char* before = subject;
  if (reply != nullptr) {
    if (!in_order(subject, reply) || !in_order(reply, data)) return false;
    before = reply;
  }
  if (!in_order(before, data)) return false;
  const char* block = before + std::strlen(before) + 1;
  if (!in_order(block, data) || data[-1] != '\0') return false;
  std::string_view wire(block, static_cast<std::size_t>(data - 1 - block));
  // "NATS/1.0\r\n" alone: a status ("NATS/1.0 503") is left to nats.c.
  if (wire.size() < version_line.size() + 4 || !wire.starts_with(version_line) ||
      wire.substr(version_line.size(), 2) != "\r\n" || !wire.ends_with("\r\n\r\n"))
    return false;
  wire.remove_prefix(version_line.size() + 2);
  count_ = 0;
  while (true) {
    auto end = wire.find("\r\n");
    if (end == std::string_view::npos) return false;
    auto line = wire.substr(0, end);
    wire.remove_prefix(end + 2);
    if (line.empty()) return wire.empty();  // the blank line ends the block
    // A NUL means nats.c lifted the headers already (it cuts the block up in
    // place); a leading space is a folded line: both are nats.c's to read.
    if (line.find('\0') != std::string_view::npos || is_space(line.front())) return false;
    auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0 || count_ == capacity) return false;
    auto value = trim(line.substr(colon + 1));
    if (value.empty()) return false;  // nats.c calls that a protocol error
    entries_[count_++] = {line.substr(0, colon), value};
  }
}

std::optional<std::string_view> received_headers::get(const char* key) const {
  if (from_wire_) {
    std::string_view wanted(key);
    for (std::size_t i = 0; i < count_; ++i)
      if (entries_[i].first == wanted) return entries_[i].second;
    return std::nullopt;
  }
  const char* value = nullptr;
  if (msg_ == nullptr || natsMsgHeader_Get(msg_, key, &value) != NATS_OK || value == nullptr)
    return std::nullopt;
  return std::string_view(value);
}

}  // namespace troupe::detail
