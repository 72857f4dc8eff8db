#pragma once
// The bookstore's query views, as pure projection definitions (no I/O):
//
//   order_summary    one row per order: buyer, status, total, item count,
//                    placed and closed times, cancel reason
//   orders_by_buyer  (buyer, order) -> status, total, placed time; the
//                    buyer's order list, paged by placed time
//   book_catalog     one row per book with price, stock (available,
//                    reserved, sold), rating; author, category and publisher
//                    names are joined from their tables by the SQL view
//                    `book_catalog_view`
//   sales_by_book    units and revenue of completed orders per book
//   feedbacks        one row per feedback (rating, comment), listed by book

#include <vector>

#include "runtime/projection.hpp"

namespace bookstore {

troupe::projection_definition order_summary_projection();
troupe::projection_definition orders_by_buyer_projection();
troupe::projection_definition book_catalog_projection();
troupe::projection_definition sales_by_book_projection();
troupe::projection_definition feedbacks_projection();

/// All of the above, in that order.
std::vector<troupe::projection_definition> bookstore_projections();

}  // namespace bookstore
