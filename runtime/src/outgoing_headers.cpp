#include "runtime/src/outgoing_headers.hpp"

#include <dlfcn.h>

#include <cstring>

namespace troupe::detail {

namespace {

constexpr std::string_view version_line = "NATS/1.0\r\n";

/// nats.c's natsMsg_create (msg.c): a message whose payload `buf` starts
/// with `hdrLen` bytes of header block, kept unlifted and sent as is.
using create_function = natsStatus (*)(natsMsg** message, const char* subject, int subject_length,
                                       const char* reply, int reply_length, const char* buffer,
                                       int buffer_length, int header_length);

/// The library's natsMsg_create, when it is a version known to have it with
/// this signature (headers arrived in 2.2; checked up to 3.x) and it passes
/// the self-check; nullptr otherwise.
create_function block_creator() {
  static const create_function creator = []() -> create_function {
    auto version = nats_GetVersionNumber();  // (major << 16) | (minor << 8) | patch
    if (version < 0x020200 || version >= 0x040000) return nullptr;
    auto found = reinterpret_cast<create_function>(dlsym(RTLD_DEFAULT, "natsMsg_create"));
    if (found == nullptr) return nullptr;
    // The block must come back as these headers, and the payload intact.
    constexpr std::string_view probe = "NATS/1.0\r\nfirst: one\r\nsecond: two words\r\n\r\n{}";
    constexpr int header_length = static_cast<int>(probe.size()) - 2;
    natsMsg* message = nullptr;
    if (found(&message, "probe", 5, nullptr, 0, probe.data(), static_cast<int>(probe.size()),
              header_length) != NATS_OK ||
        message == nullptr)
      return nullptr;
    const char* first = nullptr;
    const char* second = nullptr;
    bool same = natsMsg_GetDataLength(message) == 2 &&
                std::memcmp(natsMsg_GetData(message), "{}", 2) == 0 &&
                std::strcmp(natsMsg_GetSubject(message), "probe") == 0 &&
                natsMsgHeader_Get(message, "first", &first) == NATS_OK && first != nullptr &&
                std::strcmp(first, "one") == 0 &&
                natsMsgHeader_Get(message, "second", &second) == NATS_OK && second != nullptr &&
                std::strcmp(second, "two words") == 0;
    natsMsg_Destroy(message);
    return same ? found : nullptr;
  }();
  return creator;
}

}  // namespace

bool outgoing_headers::sends_block() { return block_creator() != nullptr; }

void outgoing_headers::clear() {
  block_.assign(version_line);
  count_ = 0;
}

void outgoing_headers::add(std::string_view key, std::string_view value) {
  if (value.empty()) return;
  block_ += key;
  block_ += ": ";
  auto start = block_.size();
  block_ += value;
  for (auto i = start; i < block_.size(); ++i)
    if (block_[i] == '\r' || block_[i] == '\n') block_[i] = ' ';
  block_ += "\r\n";
  ++count_;
}

natsStatus outgoing_headers::create(natsMsg** message, const char* subject, std::string_view data) {
  *message = nullptr;
  if (subject == nullptr || subject[0] == '\0') return NATS_INVALID_ARG;
  if (count_ == 0)
    return natsMsg_Create(message, subject, nullptr, data.data(), static_cast<int>(data.size()));
  if (auto creator = block_creator()) {
    message_.assign(block_);
    message_ += "\r\n";
    auto header_length = static_cast<int>(message_.size());
    message_ += data;
    return creator(message, subject, static_cast<int>(std::strlen(subject)), nullptr, 0,
                   message_.data(), static_cast<int>(message_.size()), header_length);
  }
  return create_through_map(message, subject, data);
}

natsStatus outgoing_headers::create_through_map(natsMsg** message, const char* subject,
                                                std::string_view data) const {
  *message = nullptr;
  natsStatus s =
      natsMsg_Create(message, subject, nullptr, data.data(), static_cast<int>(data.size()));
  // Each "key: value" line of the block, through nats.c's map.
  std::string_view lines(block_);
  lines.remove_prefix(version_line.size());
  std::string key, value;
  while (s == NATS_OK && !lines.empty()) {
    auto end = lines.find("\r\n");
    auto line = lines.substr(0, end);
    lines.remove_prefix(end + 2);
    auto colon = line.find(": ");
    key.assign(line.substr(0, colon));
    value.assign(line.substr(colon + 2));
    s = natsMsgHeader_Add(*message, key.c_str(), value.c_str());
  }
  if (s != NATS_OK) {
    natsMsg_Destroy(*message);
    *message = nullptr;
  }
  return s;
}

}  // namespace troupe::detail
