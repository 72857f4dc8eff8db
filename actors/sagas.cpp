#include "actors/sagas.hpp"

#include <algorithm>
#include <boost/describe/enum_to_string.hpp>

#include "actors/basket.hpp"
#include "actors/book.hpp"
#include "actors/finance_account.hpp"

namespace bookstore {

using troupe::saga_context;
using troupe::step_result;

namespace {

// ---- order fulfilment ---------------------------------------------------------

using fs = fulfilment_status;
using fstate = order_fulfilment_state;

template <troupe::decider D>
void send(fstate& s, saga_context& ctx, std::string step, std::string_view id,
          typename D::command command) {
  s.waiting.push_back(step);
  ctx.send<D>(std::move(step), id, std::move(command));
}

void answered(fstate& s, const std::string& step) {
  s.waiting.erase(std::remove(s.waiting.begin(), s.waiting.end(), step), s.waiting.end());
}

std::string why(const step_result& r, const std::string& what) {
  if (r.gave_up()) return what + ": no answer (" + r.reason.code + ")";
  return what + ": " + r.reason.code +
         (r.reason.message.empty() ? "" : " (" + r.reason.message + ")");
}

/// Compensation is over once nothing is in flight: cancel the order (unless
/// it is cancelled already), then the saga ends.
void after_compensation_step(fstate& s, saga_context& ctx) {
  if (s.status != fs::compensating || !s.waiting.empty()) return;
  if (s.order_cancelled) {
    s.status = fs::cancelled;
    ctx.finish();
    return;
  }
  s.status = fs::cancelling;
  send<order>(s, ctx, "cancel", s.order_id,
              cancel_order{s.order_id, s.cancel_reason, ctx.now_ms()});
}

void compensate(fstate& s, saga_context& ctx, const std::string& reason) {
  if (s.cancel_reason.empty()) s.cancel_reason = reason;
  if (s.status == fs::compensating) return;
  s.status = fs::compensating;
  for (const auto& book_id : s.reserved)
    send<book>(s, ctx, "release:" + book_id, book_id, release_stock{book_id, s.order_id});
  if (s.payment_authorised)
    send<finance_account>(s, ctx, "void", s.buyer_id, void_payment{s.buyer_id, s.order_id});
  after_compensation_step(s, ctx);
}

/// Every reservation and the payment's authorisation accepted, and the
/// basket's clearing answered: complete the order. The basket is cleared
/// before the order can be seen completed, so a buyer who starts a new
/// basket then never has it deleted by this order's saga.
void after_reserving_step(fstate& s, saga_context& ctx) {
  if (s.status != fs::reserving || !s.waiting.empty()) return;
  s.status = fs::completing;
  send<order>(s, ctx, "complete", s.order_id, complete_order{s.order_id, ctx.now_ms()});
}

/// Settled once nothing is in flight.
void after_settling_step(fstate& s, saga_context& ctx) {
  if (s.status != fs::settling || !s.waiting.empty()) return;
  s.status = fs::completed;
  ctx.finish();
}

void settle(fstate& s, saga_context& ctx) {
  s.status = fs::settling;
  for (const auto& book_id : s.reserved)
    send<book>(s, ctx, "commit:" + book_id, book_id, commit_stock{book_id, s.order_id});
  send<finance_account>(s, ctx, "capture", s.buyer_id, capture_payment{s.buyer_id, s.order_id});
}

void on_reserved(fstate& s, const step_result& r, const std::string& book_id, saga_context& ctx) {
  // Given up: the reservation may have landed with its answer lost; the
  // release (idempotent) covers that.
  bool maybe_reserved = r.accepted() || r.gave_up();
  if (maybe_reserved) s.reserved.push_back(book_id);
  if (s.status == fs::reserving) {
    if (!r.accepted())
      compensate(s, ctx, why(r, "book " + book_id));
    else
      after_reserving_step(s, ctx);
  } else if (s.status == fs::compensating) {
    if (maybe_reserved)
      send<book>(s, ctx, "release:" + book_id, book_id, release_stock{book_id, s.order_id});
    after_compensation_step(s, ctx);
  }
}

}  // namespace

std::string order_fulfilment::correlate(const event& e) {
  return std::visit([](const auto& x) { return x.order_id; }, e);
}

void order_fulfilment::on_event(state& s, const event& e, saga_context& ctx) {
  if (const auto* placed = std::get_if<order_placed>(&e)) {
    if (s.status != fs::none) return;  // placed twice cannot happen; ignore a redelivery
    s.order_id = placed->order_id;
    s.buyer_id = placed->buyer_id;
    s.items = placed->items;
    s.total = placed->total;
    s.status = fs::reserving;
    if (placed->items.empty()) {
      compensate(s, ctx, "the order has no items");
      return;
    }
    // The stock, the payment and the basket at once: a refusal of the
    // stock or the payment is undone (released, voided), and the order
    // waits for one round trip, not three. A basket that became the order
    // is cleared whatever becomes of the order; one the order did not come
    // from is the buyer's next one, never touched.
    for (const auto& item : placed->items)
      send<book>(s, ctx, "reserve:" + item.book_id, item.book_id,
                 reserve_stock{item.book_id, s.order_id, item.quantity});
    send<finance_account>(s, ctx, "authorise", s.buyer_id,
                          authorise_payment{s.buyer_id, s.order_id, s.total});
    if (placed->from_basket)
      send<basket>(s, ctx, "clear-basket", s.buyer_id, delete_basket{s.buyer_id});
    return;
  }
  const auto& cancelled = std::get<order_cancelled>(e);
  switch (s.status) {
    case fs::reserving:
    case fs::clearing_basket:
    case fs::authorising:
    case fs::completing:
      // Cancelled by someone else while we worked: undo, no cancel needed.
      s.order_cancelled = true;
      compensate(s, ctx, "cancelled: " + cancelled.reason);
      return;
    case fs::compensating:
      s.order_cancelled = true;
      after_compensation_step(s, ctx);
      return;
    default: return;  // our own cancel (cancelling, verifying), or nothing to undo
  }
}

void order_fulfilment::on_step(state& s, const step_result& r, saga_context& ctx) {
  answered(s, r.step);
  const auto& step = r.step;
  if (step.starts_with("reserve:")) {
    on_reserved(s, r, step.substr(8), ctx);
  } else if (step == "clear-basket") {
    // Best effort, whatever the answer (the buyer may have deleted it).
    after_reserving_step(s, ctx);
    after_compensation_step(s, ctx);
  } else if (step == "authorise") {
    bool maybe_authorised = r.accepted() || r.gave_up();
    if (maybe_authorised) s.payment_authorised = true;
    if (s.status == fs::reserving) {
      if (r.accepted())
        after_reserving_step(s, ctx);
      else
        compensate(s, ctx, why(r, "payment"));
    } else if (s.status == fs::compensating) {
      if (maybe_authorised)
        send<finance_account>(s, ctx, "void", s.buyer_id, void_payment{s.buyer_id, s.order_id});
      after_compensation_step(s, ctx);
    }
  } else if (step == "complete") {
    if (s.status == fs::completing) {
      if (r.accepted()) {
        settle(s, ctx);
      } else if (r.rejected()) {
        // Only a cancelled order refuses completion.
        s.order_cancelled = true;
        compensate(s, ctx, why(r, "order"));
      } else {
        // Unknown whether it completed: a cancel settles it either way.
        s.status = fs::verifying;
        send<order>(s, ctx, "cancel-unconfirmed", s.order_id,
                    cancel_order{s.order_id, "completion could not be confirmed", ctx.now_ms()});
      }
    } else {
      after_compensation_step(s, ctx);
    }
  } else if (step == "cancel-unconfirmed") {
    if (r.accepted()) {
      s.order_cancelled = true;
      s.status = fs::completing;  // so compensate starts from a working state
      compensate(s, ctx, "completion could not be confirmed");
    } else if (r.rejected("invalid_status")) {
      settle(s, ctx);  // it had completed
    } else {
      s.status = fs::failed;  // neither is known: the dead letters tell an operator
      ctx.finish();
    }
  } else if (step.starts_with("commit:") || step == "capture") {
    after_settling_step(s, ctx);
  } else if (step.starts_with("release:") || step == "void") {
    after_compensation_step(s, ctx);
  } else if (step == "cancel") {
    // Refused means it is cancelled or settled already; given up means the
    // order may still be placed: say so rather than claim it cancelled.
    s.status = r.gave_up() ? fs::failed : fs::cancelled;
    ctx.finish();
  }
}

std::string_view order_fulfilment::status(const state& s) {
  return boost::describe::enum_to_string(s.status, "unknown");
}

// ---- rating -----------------------------------------------------------------------

namespace {
using rs = rating_status;

void remove_rating_of(rating_state& s, saga_context& ctx) {
  s.status = rs::removing;
  ctx.send<book>("remove-rating", s.book_id, remove_rating{s.book_id, s.feedback_id});
}
}  // namespace

std::string rating_saga::correlate(const event& e) {
  return std::visit([](const auto& x) { return x.feedback_id; }, e);
}

void rating_saga::on_event(state& s, const event& e, saga_context& ctx) {
  if (const auto* created = std::get_if<feedback_created>(&e)) {
    if (s.status != rs::none) return;
    s.feedback_id = created->feedback_id;
    s.book_id = created->book_id;
    s.rating = created->rating;
    s.status = rs::rating;
    ctx.send<book>("add-rating", s.book_id, add_rating{s.book_id, s.feedback_id, s.rating});
    return;
  }
  if (s.status == rs::rated)
    remove_rating_of(s, ctx);
  else if (s.status == rs::rating)
    s.deleted_meanwhile = true;
  // compensating: our own deletion; the step's answer ends the saga
}

void rating_saga::on_step(state& s, const step_result& r, saga_context& ctx) {
  if (r.step == "add-rating") {
    if (r.accepted()) {
      if (s.deleted_meanwhile)
        remove_rating_of(s, ctx);
      else
        s.status = rs::rated;  // stays until the feedback is deleted
    } else if (r.rejected()) {
      // The book is missing (or refuses the rating): the feedback goes.
      s.status = rs::compensating;
      ctx.send<feedback>("delete-feedback", s.feedback_id, delete_feedback{s.feedback_id});
    } else {
      s.status = rs::failed;  // the dead letter can be replayed
      ctx.finish();
    }
  } else if (r.step == "delete-feedback") {
    s.status = rs::rejected;
    ctx.finish();
  } else if (r.step == "remove-rating") {
    s.status = rs::removed;
    ctx.finish();
  }
}

std::string_view rating_saga::status(const state& s) {
  return boost::describe::enum_to_string(s.status, "unknown");
}

}  // namespace bookstore
