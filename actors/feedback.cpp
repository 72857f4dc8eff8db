#include "actors/feedback.hpp"

namespace bookstore {
namespace {

using decision = troupe::decision<feedback::event>;
using troupe::reject;
using events = std::vector<feedback::event>;

decision handle(const create_feedback& c, const feedback_state& s) {
  if (s.status == lifecycle::deleted)
    return reject("feedback_deleted", "this feedback was deleted");
  if (s.status == lifecycle::active)
    return reject("already_exists", "the feedback '" + s.feedback_id + "' already exists");
  if (is_blank(c.feedback_id)) return reject("id_required", "feedback needs an id");
  if (is_blank(c.book_id)) return reject("id_required", "feedback needs a book id");
  if (!is_valid_rating(c.rating))
    return reject("invalid_rating", "a rating is a whole number from 0 to 5");
  if (utf8_length(c.comment) > max_comment_length)
    return reject("comment_too_long",
                  "a comment has at most " + std::to_string(max_comment_length) + " characters");
  return events{feedback_created{c.feedback_id, c.book_id, c.rating, c.comment, c.created_at}};
}

decision handle(const delete_feedback&, const feedback_state& s) {
  if (s.status == lifecycle::absent) return reject("not_found", "no such feedback");
  if (s.status == lifecycle::deleted)
    return reject("feedback_deleted", "this feedback was already deleted");
  return events{feedback_deleted{s.feedback_id, s.book_id}};
}

}  // namespace

troupe::decision<feedback::event> feedback::decide(const command& c, const state& s) {
  return std::visit([&](const auto& cmd) { return handle(cmd, s); }, c);
}

feedback::state feedback::evolve(state s, const event& e) {
  std::visit(overloaded{
                 [&](const feedback_created& e) {
                   s.feedback_id = e.feedback_id;
                   s.status = lifecycle::active;
                   s.book_id = e.book_id;
                   s.rating = e.rating;
                 },
                 [&](const feedback_deleted&) { s.status = lifecycle::deleted; },
             },
             e);
  return s;
}

}  // namespace bookstore
