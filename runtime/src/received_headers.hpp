#pragma once
// The headers of a message received from NATS, read where they arrived.
//
// nats.c answers natsMsgHeader_Get by "lifting" every header of the message
// into a hash map: one allocation per header value and one per map entry,
// all freed again by the library's garbage-collector thread when the message
// is destroyed. For the 13 CloudEvents/Troupe headers of every event a
// consumer receives that was the node's largest single cost under checkout
// load (freeing alone ~8 % of the node's CPU, on one thread). A received
// message keeps its header block as it came off the wire, right before its
// payload in the message's single allocation (nats.c's natsMsg_create), so
// the few headers a consumer needs can be found there with no allocation.
//
// The wire form is used only when the library is a version whose layout
// this was written against and the bytes prove it: the block sits between
// the reply (or subject) string and the payload, starts with "NATS/1.0",
// has no status and ends with an empty line. Anything else - a message
// built locally, one whose headers were already lifted (lifting rewrites
// the block in place), a status message, folded lines, too many headers -
// goes through natsMsgHeader_Get as before, with the same answers.

#include <nats/nats.h>

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>
#include <utility>

namespace troupe::detail {

class received_headers {
 public:
  explicit received_headers(natsMsg* msg);

  /// The first value of `key` (matched exactly, as nats.c does) with the
  /// spaces around it trimmed; nullopt when the message has no such header.
  /// The view lives as long as the message.
  std::optional<std::string_view> get(const char* key) const;

  /// True when the headers were read from the message's wire bytes, false
  /// when each get() asks nats.c.
  bool from_wire() const { return from_wire_; }

  /// The most headers read from the wire; a message with more is read
  /// through nats.c.
  static constexpr std::size_t capacity = 32;

 private:
  bool parse_wire();

  natsMsg* msg_;
  bool from_wire_ = false;
  std::size_t count_ = 0;
  std::array<std::pair<std::string_view, std::string_view>, capacity> entries_;
};

}  // namespace troupe::detail
