#pragma once
// Headers of a message to publish, encoded once as NATS's header block.
//
// nats.c's only public way to put headers on a message is its header map:
// natsMsgHeader_Set allocates a value struct, a copy of the value and a hash
// entry per header, the publish encodes the map, and the library's
// garbage-collector thread frees it all when the message is destroyed. For
// the 13 CloudEvents/Troupe headers of every published event that was the
// node's largest single cost left under checkout load (natsMsg_freeHeaders
// alone ~5 % of the node's CPU). A message nats.c received and never
// "lifted" is published with its header block as it is; nats.c builds such
// a message with natsMsg_create, which its shared library exports. An
// outgoing_headers block is handed to that function when the library is a
// version this was written against and a self-check at first use shows the
// block comes back as the same headers; otherwise each line goes through
// natsMsgHeader_Set as before. Either way the wire carries the same block.

#include <nats/nats.h>

#include <string>
#include <string_view>

namespace troupe::detail {

class outgoing_headers {
 public:
  outgoing_headers() { clear(); }

  /// Forgets the headers added so far (the buffer is kept for the next).
  void clear();

  /// Adds "key: value"; `key` is a header name (no ':', spaces or line
  /// breaks), and a key added twice is sent twice, as natsMsgHeader_Add does. An empty value is
  /// left out (nats.c 3.4 drops a neighbouring header when it receives an empty one). A line break
  /// in the value is sent as a space, as nats.c's own encoder does: it would end or split the
  /// block.
  void add(std::string_view key, std::string_view value);

  /// A message on `subject` with these headers and `data`; the caller owns
  /// it (natsMsg_Destroy) as after natsMsg_Create.
  natsStatus create(natsMsg** message, const char* subject, std::string_view data);

  /// As create(), each header set through nats.c's map: what create() does
  /// when it cannot hand over the block (public for the tests that compare
  /// the two).
  natsStatus create_through_map(natsMsg** message, const char* subject,
                                std::string_view data) const;

  /// True when create() hands the block to nats.c as it is; false when it
  /// sets each header through nats.c's map.
  static bool sends_block();

 private:
  std::string block_;    // "NATS/1.0\r\n" and a "key: value\r\n" per header
  std::string message_;  // block, blank line, data: what natsMsg_create copies
  std::size_t count_ = 0;
};

}  // namespace troupe::detail
