#pragma once
// Bridges a typed decider to the generic aggregate actor: a type-erased
// aggregate instance (state + decide + evolve) and the registration record of
// an aggregate type. No CAF here; the actor lives in runtime/src/.

#include <boost/json.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "persistence/types.hpp"
#include "runtime/codec.hpp"
#include "runtime/command.hpp"
#include "runtime/command_codec.hpp"
#include "runtime/decider.hpp"

namespace troupe {

/// One live aggregate's state and logic, seen without its types. Owned by one
/// aggregate actor and used only on that actor's thread.
class aggregate_instance {
 public:
  virtual ~aggregate_instance() = default;

  /// Folds a stored event into the state (decoding and upcasting it).
  /// Returns an explanation if the event cannot be decoded.
  virtual std::optional<std::string> apply(const recorded_event& event) = 0;

  /// Runs decide on the current state. Accepted events are kept pending
  /// (typed) until commit() or discard(); the returned ones are encoded, with
  /// empty event ids for the caller to fill.
  virtual std::expected<std::vector<new_event>, rejection> decide(const command_payload& c) = 0;
  /// The pending events are durable: fold them into the state.
  virtual void commit() = 0;
  /// The pending events were not written: forget them.
  virtual void discard() = 0;

  /// The state as JSON, for snapshots.
  virtual boost::json::value save_state() const = 0;
  /// Replaces the state from a snapshot's JSON.
  virtual std::optional<std::string> load_state(const boost::json::value& state) = 0;
};

/// What the runtime knows about one registered event type.
struct event_type_info {
  std::string type;
  int schema_version;
};

/// Registration record of one aggregate type.
struct aggregate_type {
  std::string category;
  /// Bumped by the user when the state's JSON shape changes incompatibly;
  /// snapshots of another schema are ignored (the stream is replayed).
  int state_schema_version = 1;
  /// Events between snapshots; 0 = no snapshots; nullopt = node default.
  std::optional<std::int64_t> snapshot_every;
  std::function<std::unique_ptr<aggregate_instance>()> make_instance;
  std::vector<event_type_info> events;
  /// A command as it travels between nodes: the index of its alternative in
  /// D::command and its JSON; nullopt when the payload is not this type's.
  std::function<std::optional<std::pair<std::size_t, std::string>>(const command_payload&)>
      encode_command;
  /// The inverse of encode_command, or why the text is not such a command.
  std::function<std::expected<command_payload, std::string>(std::size_t, std::string_view)>
      decode_command;
};

namespace detail {

template <class D>
class decider_instance final : public aggregate_instance {
  using codec = variant_codec<typename D::event>;

 public:
  std::optional<std::string> apply(const recorded_event& e) override {
    auto decoded = codec::decode(e.type, e.schema_version, e.data);
    if (!decoded) return decoded.error();
    state_ = D::evolve(std::move(state_), *decoded);
    return std::nullopt;
  }

  std::expected<std::vector<new_event>, rejection> decide(const command_payload& c) override {
    const auto* command = c.get<typename D::command>();
    if (command == nullptr)
      return std::unexpected(
          rejection{"wrong_command_type",
                    "command is not one of " + std::string(D::category) + "'s commands"});
    auto decided = D::decide(*command, state_);
    if (!decided) return std::unexpected(std::move(decided.error()));
    pending_ = std::move(*decided);
    std::vector<new_event> encoded;
    encoded.reserve(pending_.size());
    for (const auto& e : pending_) {
      auto enc = codec::encode(e);
      encoded.push_back(
          new_event{{}, std::string(enc.type), enc.schema_version, std::move(enc.data)});
    }
    return encoded;
  }

  void commit() override {
    for (const auto& e : pending_) state_ = D::evolve(std::move(state_), e);
    pending_.clear();
  }
  void discard() override { pending_.clear(); }

  boost::json::value save_state() const override { return boost::json::value_from(state_); }

  std::optional<std::string> load_state(const boost::json::value& json) override {
    auto value = boost::json::try_value_to<typename D::state>(json);
    if (!value) return value.error().message();
    state_ = std::move(*value);
    return std::nullopt;
  }

 private:
  typename D::state state_ = D::initial();
  std::vector<typename D::event> pending_;
};

template <class Variant>
struct event_infos;
template <class... Ts>
struct event_infos<std::variant<Ts...>> {
  static std::vector<event_type_info> get() {
    return {event_type_info{std::string(Ts::event_type), Ts::schema_version}...};
  }
};

}  // namespace detail

template <class D>
concept has_state_schema_version = requires {
  { D::state_schema_version } -> std::convertible_to<int>;
};

/// Commands that can travel between nodes as JSON (every alternative
/// described); others are served only by the node they were submitted to.
template <class Variant>
inline constexpr bool json_commands = false;
template <class... Cs>
inline constexpr bool json_commands<std::variant<Cs...>> =
    (... && (boost::json::has_value_from<Cs>::value && boost::json::has_value_to<Cs>::value));

/// The registration record for decider D.
template <decider D>
aggregate_type make_aggregate_type() {
  aggregate_type t;
  t.category = std::string(D::category);
  if constexpr (has_state_schema_version<D>) t.state_schema_version = D::state_schema_version;
  t.make_instance = [] { return std::make_unique<detail::decider_instance<D>>(); };
  t.events = detail::event_infos<typename D::event>::get();
  using C = typename D::command;
  if constexpr (json_commands<C>) {
    t.encode_command =
        [](const command_payload& p) -> std::optional<std::pair<std::size_t, std::string>> {
      const auto* c = p.get<C>();
      if (c == nullptr) return std::nullopt;
      return std::visit(
          [&](const auto& alternative) {
            return std::pair<std::size_t, std::string>{c->index(), to_json_text(alternative)};
          },
          *c);
    };
    t.decode_command = [](std::size_t index,
                          std::string_view json) -> std::expected<command_payload, std::string> {
      auto command = detail::variant_from_json<C>(
          index, json, std::make_index_sequence<std::variant_size_v<C>>{});
      if (!command) return std::unexpected(command.error());
      return command_payload::of<C>(std::move(*command));
    };
  }
  return t;
}

}  // namespace troupe
