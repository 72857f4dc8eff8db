#pragma once
// Front door of the bookstore domain: every aggregate, and the list the
// runtime registers.

#include <tuple>

#include "actors/author.hpp"
#include "actors/basket.hpp"
#include "actors/book.hpp"
#include "actors/category.hpp"
#include "actors/feedback.hpp"
#include "actors/finance_account.hpp"
#include "actors/order.hpp"
#include "actors/publisher.hpp"

namespace bookstore {

using bookstore_aggregates =
    std::tuple<book, author, book_category, publisher, basket, order, feedback, finance_account>;

}  // namespace bookstore
