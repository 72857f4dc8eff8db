#pragma once
// Commands as the runtime carries them: a type-erased typed payload plus the
// envelope (ids, expected version), and the result every command gets back.

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <typeinfo>

#include "persistence/types.hpp"
#include "runtime/decider.hpp"

namespace troupe {

/// A typed command value, type-erased so the runtime can carry it without
/// knowing the domain. Holds exactly one `D::command` of some decider D.
class command_payload {
 public:
  command_payload() = default;

  template <class Command>
  static command_payload of(Command command) {
    command_payload p;
    p.value_ = std::make_shared<const Command>(std::move(command));
    p.type_ = &typeid(Command);
    return p;
  }

  template <class Command>
  const Command* get() const {
    return type_ != nullptr && *type_ == typeid(Command) ? static_cast<const Command*>(value_.get())
                                                         : nullptr;
  }
  bool empty() const { return value_ == nullptr; }

 private:
  std::shared_ptr<const void> value_;
  const std::type_info* type_ = nullptr;
};

struct command_envelope {
  std::string stream_id;
  command_payload payload;
  /// Identifies the command for idempotency; generated when empty.
  std::string command_id;
  std::string correlation_id;
  std::string causation_id;
  std::string traceparent;
  expected_version expected = expected_version::any();
  /// A hint, not a precondition: the caller expects this command to create
  /// its stream (an order with a fresh id). An aggregate activated by it
  /// skips its activation read; a wrong guess costs a conflict and a
  /// re-read, never a wrong outcome.
  bool creates_stream = false;
};

enum class command_status : std::uint8_t {
  accepted,     // events (maybe none) are durable
  duplicate,    // this command id was applied before; the original outcome
  rejected,     // the decider said no; nothing written
  conflict,     // expected version did not match; nothing written
  overloaded,   // shed before it was tried; retry later
  unavailable,  // the store failed; retry (the outcome may be unknown)
  invalid,      // malformed: bad stream id, unknown category, wrong type
};
inline std::string_view to_string(command_status s) {
  switch (s) {
    case command_status::accepted: return "accepted";
    case command_status::duplicate: return "duplicate";
    case command_status::rejected: return "rejected";
    case command_status::conflict: return "conflict";
    case command_status::overloaded: return "overloaded";
    case command_status::unavailable: return "unavailable";
    case command_status::invalid: return "invalid";
  }
  return "unknown";
}

/// Reason codes of `unavailable` answers whose command certainly was not
/// applied (command_result::never_applied): the places that answer so name
/// them from here, so a code cannot drift from the retry rule that reads it.
namespace not_applied {
inline constexpr const char* shard_unavailable = "shard_unavailable";  // no node served it in time
inline constexpr const char* shard_moved = "shard_moved";  // this node no longer serves it
inline constexpr const char* node_stopping = "node_stopping";
inline constexpr const char* node_leaving = "node_leaving";
inline constexpr const char* not_owner = "not_owner";  // a peer that does not serve it
inline constexpr const char* expired = "expired";      // arrived after its sender's deadline
inline constexpr const char* node_not_running = "node_not_running";
inline constexpr const char* all[] = {shard_unavailable, shard_moved, node_stopping,   node_leaving,
                                      not_owner,         expired,     node_not_running};
}  // namespace not_applied

struct command_result {
  command_status status = command_status::accepted;
  rejection reason;              // set unless accepted/duplicate
  stream_version first_version;  // of the command's first event
  stream_version version;        // the stream's version after the command
  global_position position;      // of the command's last event
  std::size_t event_count = 0;

  bool ok() const {
    return status == command_status::accepted || status == command_status::duplicate;
  }

  /// Certainly not applied anywhere: shed before it was tried, or turned
  /// away by routing (no node served its shard, the shard moved, the node
  /// is stopping or leaving, a peer does not own it, it arrived after its
  /// sender's deadline). Retrying such a command cannot apply it twice, and
  /// while a cluster re-forms it is the normal answer for seconds, so
  /// retry policies need not count it as a failed attempt. Other
  /// `unavailable` answers (the store failed, a forward timed out) may have
  /// been applied.
  bool never_applied() const {
    if (status == command_status::overloaded) return true;
    if (status != command_status::unavailable) return false;
    for (const char* code : not_applied::all)
      if (reason.code == code) return true;
    return false;
  }
};

/// Called exactly once with a command's outcome, on a runtime thread; must
/// not block.
using command_completion = std::function<void(command_result)>;

}  // namespace troupe
