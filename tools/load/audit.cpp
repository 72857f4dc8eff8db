#include "tools/load/audit.hpp"

#include <spdlog/logger.h>
#include <spdlog/sinks/null_sink.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <map>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "actors/projections.hpp"
#include "actors/sagas.hpp"
#include "http/server.hpp"
#include "persistence/event_store.hpp"
#include "persistence/postgres/pg_connection.hpp"
#include "persistence/postgres/view_store.hpp"
#include "persistence/postgres_event_store.hpp"
#include "runtime/projector.hpp"

namespace troupe::load {

namespace {

using steady = std::chrono::steady_clock;
using postgres::pg_connection;
using postgres::view_store;

const std::string fulfilment_saga{bookstore::order_fulfilment::name};
const std::string rating_saga{bookstore::rating_saga::name};

// ---- keeping credentials out of every message --------------------------------

/// Replaces the connection string and the password in it (URI user info,
/// `password=` in a URI query or in key=value form) with "***" in any text
/// that leaves run_audit. libpq never puts the password into its messages;
/// this guards against anything else that might quote the URL.
class redactor {
 public:
  explicit redactor(const std::string& url) {
    if (!url.empty()) whole_ = url;
    auto scheme = url.find("://");
    if (scheme != std::string::npos) {
      auto start = scheme + 3;
      auto end = url.find_first_of("/?", start);
      auto at = url.rfind('@', end == std::string::npos ? std::string::npos : end);
      if (at != std::string::npos && at > start) {
        auto userinfo = std::string_view(url).substr(start, at - start);
        if (auto colon = userinfo.find(':'); colon != std::string_view::npos)
          add(userinfo.substr(colon + 1));
      }
    }
    for (auto at = url.find("password="); at != std::string::npos;
         at = url.find("password=", at + 1)) {
      auto value = std::string_view(url).substr(at + 9);
      if (!value.empty() && (value[0] == '\'' || value[0] == '"')) {
        auto quote = value[0];
        value.remove_prefix(1);
        value = value.substr(0, value.find(quote));
      } else {
        value = value.substr(0, value.find_first_of("& "));
      }
      add(value);
    }
  }

  std::string operator()(std::string text) const {
    if (!whole_.empty()) replace_all(text, whole_);
    for (const auto& s : secrets_) replace_all(text, s);
    return text;
  }

 private:
  void add(std::string_view secret) {
    // Very short passwords would turn ordinary digits and words into "***";
    // they are no secret worth the garbled report.
    for (auto s : {std::string(secret), http::percent_decode(secret, false)})
      if (s.size() >= 3) secrets_.push_back(std::move(s));
  }
  static void replace_all(std::string& text, const std::string& secret) {
    for (auto at = text.find(secret); at != std::string::npos; at = text.find(secret, at + 3))
      text.replace(at, secret.size(), "***");
  }
  std::string whole_;
  std::vector<std::string> secrets_;
};

// ---- small helpers -----------------------------------------------------------

std::string str(std::string_view v) { return std::string(v); }
std::string num(std::int64_t v) { return std::to_string(v); }
/// "1 table", "3 tables".
std::string count_of(std::int64_t n, std::string_view noun) {
  return num(n) + " " + std::string(noun) + (n == 1 ? "" : "s");
}

std::string seconds_text(std::chrono::milliseconds d) {
  auto ms = d.count();
  if (ms % 1000 == 0) return num(ms / 1000) + " s";
  return num(ms) + " ms";
}

/// libpq's messages span lines; a check's detail is one line.
std::string one_line(std::string_view s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

std::string clip(std::string_view s, std::size_t max = 300) {
  if (s.size() <= max) return std::string(s);
  return std::string(s.substr(0, max)) + "...";
}

/// A PostgreSQL text[] literal of `ids`.
std::string text_array(std::span<const std::string> ids) {
  std::string out = "{";
  for (const auto& id : ids) {
    if (out.size() > 1) out.push_back(',');
    out.push_back('"');
    for (char c : id) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

/// Acknowledged ids are looked up this many at a time: one array parameter
/// per statement keeps a million ids to a hundred round trips.
constexpr std::size_t lookup_chunk = 10'000;

/// Calls `fn` with consecutive slices of at most lookup_chunk ids.
template <class Fn>
void for_each_chunk(const std::vector<std::string>& ids, Fn&& fn) {
  for (std::size_t at = 0; at < ids.size(); at += lookup_chunk)
    fn(std::span<const std::string>(ids).subspan(at, std::min(lookup_chunk, ids.size() - at)));
}

std::vector<std::string> distinct_ids(const std::vector<std::string>& ids) {
  std::vector<std::string> out = ids;
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

class auditor {
 public:
  explicit auditor(const audit_options& o)
      : options_(o), redact_(o.postgres_url), ids_(distinct_ids(o.acknowledged_orders)) {}

  std::vector<audit_check> run() {
    // Listed order; sagas-terminal waits for the run to settle before the
    // checks that need a settled world (terminal orders, stock, views).
    checked("orders-placed-once", [&](audit_check& c) { orders_placed_once(c); });
    checked("streams-consecutive", [&](audit_check& c) { streams_consecutive(c); });
    checked("sagas-terminal", [&](audit_check& c) { sagas_terminal(c); });
    if (options_.expect_terminal_orders)
      checked("orders-terminal", [&](audit_check& c) { orders_terminal(c); });
    checked("stock-balanced", [&](audit_check& c) { stock_balanced(c); });
    if (options_.check_views) views();
    for (auto& c : checks_) c.detail = one_line(redact_(std::move(c.detail)));
    return std::move(checks_);
  }

 private:
  template <class F>
  void checked(std::string name, F&& body) {
    audit_check c;
    c.name = std::move(name);
    say("auditing: " + c.name);
    try {
      body(c);
    } catch (const std::exception& e) {
      c.passed = false;
      c.detail = "could not run: " + redact_(e.what());
    }
    checks_.push_back(std::move(c));
  }

  void say(const std::string& line) const {
    if (options_.say) options_.say(redact_(line));
  }

  std::unique_ptr<pg_connection> connect() const {
    return std::make_unique<pg_connection>(options_.postgres_url);
  }

  // ---- orders-placed-once ----------------------------------------------------

  void orders_placed_once(audit_check& c) {
    const auto& ids = ids_;
    auto db = connect();
    std::int64_t missing = 0, repeated = 0;
    std::string first_missing, first_repeated;
    std::int64_t first_repeated_count = 0;
    for_each_chunk(ids, [&](std::span<const std::string> chunk) {
      auto rows = db->exec_params(
          "SELECT count(*) FILTER (WHERE n = 0), count(*) FILTER (WHERE n > 1), "
          "coalesce(min(id) FILTER (WHERE n = 0), ''), coalesce(min(id) FILTER (WHERE n > 1), ''), "
          "coalesce(max(n), 0) FROM (SELECT i.id, (SELECT count(*) FROM troupe_events e "
          "WHERE e.stream_id = 'order-' || i.id AND e.event_type = 'order_placed') AS n "
          "FROM unnest($1::text[]) AS i(id)) s",
          {text_array(chunk)});
      missing += rows.integer(0, 0);
      repeated += rows.integer(0, 1);
      if (first_missing.empty()) first_missing = str(rows.text(0, 2));
      if (first_repeated.empty() && rows.integer(0, 1) > 0) {
        first_repeated = str(rows.text(0, 3));
        first_repeated_count = rows.integer(0, 4);
      }
    });
    auto total = static_cast<std::int64_t>(ids.size());
    c.passed = missing == 0 && repeated == 0;
    if (c.passed && total == 0) {
      c.detail = "no acknowledged orders to look for";
      return;
    }
    if (c.passed) {
      c.detail = count_of(total, "acknowledged order") + ", each placed exactly once";
      if (ids.size() != options_.acknowledged_orders.size())
        c.detail += " (" + num(static_cast<std::int64_t>(options_.acknowledged_orders.size())) +
                    " acknowledgements)";
      return;
    }
    c.detail = num(total) + " acknowledged orders:";
    if (missing > 0)
      c.detail += " " + num(missing) + " without an order_placed event (first: order-" +
                  first_missing + ")";
    if (repeated > 0)
      c.detail += std::string(missing > 0 ? ";" : "") + " " + num(repeated) +
                  " placed more than once (first: order-" + first_repeated + ", up to " +
                  num(first_repeated_count) + " order_placed events)";
  }

  // ---- streams-consecutive ---------------------------------------------------

  void streams_consecutive(audit_check& c) {
    auto db = connect();
    auto rows = db->exec(
        "SELECT count(*), coalesce(sum(n), 0), count(*) FILTER (WHERE bad), "
        "coalesce(min(stream_id) FILTER (WHERE bad), '') FROM (SELECT stream_id, count(*) AS n, "
        "count(*) <> max(stream_version) OR min(stream_version) <> 1 OR "
        "count(DISTINCT stream_version) <> count(*) AS bad FROM troupe_events GROUP BY stream_id) "
        "s");
    auto streams = rows.integer(0, 0), events = rows.integer(0, 1), bad = rows.integer(0, 2);
    if (bad == 0) {
      c.passed = true;
      c.detail = num(streams) + " streams, " + num(events) +
                 " events: every stream runs 1, 2, 3, ... without a gap or a repeat";
      return;
    }
    auto stream = str(rows.text(0, 3));
    auto detail = db->exec_params(
        "SELECT count(*), min(stream_version), max(stream_version), "
        "count(*) - count(DISTINCT stream_version), "
        "coalesce((SELECT min(v) FROM generate_series(1, max(t.stream_version)) AS v WHERE NOT "
        "EXISTS (SELECT 1 FROM troupe_events x WHERE x.stream_id = $1 AND x.stream_version = v)), "
        "0) FROM troupe_events t WHERE t.stream_id = $1",
        {stream});
    c.passed = false;
    c.detail = num(bad) + " of " + num(streams) + " streams are not consecutive; first: " + stream +
               " has " + num(detail.integer(0, 0)) + " events, versions " +
               num(detail.integer(0, 1)) + ".." + num(detail.integer(0, 2));
    if (auto gap = detail.integer(0, 4); gap > 0) c.detail += ", version " + num(gap) + " missing";
    if (auto dup = detail.integer(0, 3); dup > 0)
      c.detail += ", " + num(dup) + " repeated versions";
    if (detail.integer(0, 1) != 1) c.detail += ", does not start at 1";
  }

  // ---- sagas-terminal ----------------------------------------------------------

  // An instance counts as open while it is not finished, except a saga that
  // waits by design for a later event with nothing in flight (no wake-up
  // due): a rating stays `rated` until its feedback is deleted. An order
  // fulfilment always ends (completed or cancelled), so an idle unfinished
  // one is stuck and counts as open.
  static std::string open_condition() {
    return "NOT finished AND (saga = '" + fulfilment_saga + "' OR next_wakeup_ms IS NOT NULL)";
  }

  void sagas_terminal(audit_check& c) {
    auto db = connect();
    const auto open_sql = "SELECT count(*) FROM troupe_sagas WHERE " + open_condition();
    auto started = steady::now();
    auto deadline = started + options_.settle_timeout;
    auto open = db->exec(open_sql).integer(0, 0);
    auto last_said = started;
    while (open > 0 && steady::now() < deadline) {
      if (steady::now() - last_said >= std::chrono::seconds{5}) {
        say("auditing: waiting for " + num(open) + " saga instances to finish");
        last_said = steady::now();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds{100});
      open = db->exec(open_sql).integer(0, 0);
    }
    auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - started);

    // "orderfulfilment: completed 10, cancelled 2; rating: rated 3 (waiting)"
    auto by_status = db->exec(
        "SELECT saga, status, CASE WHEN finished THEN '' WHEN " + open_condition() +
        " THEN ' (not finished)' ELSE ' (idle: waits for a later event)' END AS state, count(*) "
        "FROM troupe_sagas GROUP BY 1, 2, 3 ORDER BY 1, 3, 2");
    std::string summary, saga;
    std::int64_t total = 0;
    for (int r = 0; r < by_status.size(); ++r) {
      auto name = str(by_status.text(r, 0));
      if (name != saga) {
        summary += (summary.empty() ? "" : "; ") + name + ":";
        saga = name;
      } else {
        summary += ",";
      }
      summary += " " + str(by_status.text(r, 1)) + " " + num(by_status.integer(r, 3)) +
                 str(by_status.text(r, 2));
      total += by_status.integer(r, 3);
    }
    if (open == 0) {
      c.passed = true;
      c.detail = total == 0 ? "no saga instances (sagas disabled?)"
                            : count_of(total, "saga instance") + " settled (" + summary + ")";
      return;
    }
    auto first = db->exec(
        "SELECT saga, correlation_id, status, coalesce(next_wakeup_ms::text, 'none'), "
        "updated_at::text FROM troupe_sagas WHERE " +
        open_condition() + " ORDER BY started_ms, saga, correlation_id LIMIT 1");
    c.passed = false;
    c.detail = num(open) + " of " + num(total) + " saga instances not finished after " +
               seconds_text(waited) + "; first: " + str(first.text(0, 0)) + " " +
               str(first.text(0, 1)) + " in status " + str(first.text(0, 2)) + " (next wake-up " +
               str(first.text(0, 3)) + ", last change " + str(first.text(0, 4)) +
               "); all: " + summary;
  }

  // ---- orders-terminal ---------------------------------------------------------

  void orders_terminal(audit_check& c) {
    const auto& ids = ids_;
    auto db = connect();
    std::map<std::string, std::int64_t> last_types;  // "" = no events
    std::string first_open, first_open_type;
    for_each_chunk(ids, [&](std::span<const std::string> chunk) {
      auto rows = db->exec_params(
          "SELECT coalesce(t, ''), count(*), min(id) FROM (SELECT i.id, (SELECT e.event_type "
          "FROM troupe_events e WHERE e.stream_id = 'order-' || i.id "
          "ORDER BY e.stream_version DESC LIMIT 1) AS t FROM unnest($1::text[]) AS i(id)) s "
          "GROUP BY 1 ORDER BY 1",
          {text_array(chunk)});
      for (int r = 0; r < rows.size(); ++r) {
        auto type = str(rows.text(r, 0));
        last_types[type] += rows.integer(r, 1);
        if (first_open.empty() && !type.empty() && type != "order_completed" &&
            type != "order_cancelled") {
          first_open = str(rows.text(r, 2));
          first_open_type = type;
        }
      }
    });
    std::int64_t completed = last_types["order_completed"];
    std::int64_t cancelled = last_types["order_cancelled"];
    std::int64_t absent = last_types[""];
    std::int64_t open = static_cast<std::int64_t>(ids.size()) - completed - cancelled - absent;
    std::string counts = num(completed) + " completed, " + num(cancelled) + " cancelled";
    // An acknowledged order with no stream at all is orders-placed-once's
    // failure; counting it here too would report one fault twice.
    std::string absent_note =
        absent > 0 ? "; " + num(absent) + " absent from the log (see orders-placed-once)" : "";
    c.passed = open == 0;
    if (c.passed) {
      c.detail = num(completed + cancelled) + " acknowledged orders ended: " + counts + absent_note;
      return;
    }
    c.detail = num(open) + " of " + num(static_cast<std::int64_t>(ids.size())) +
               " acknowledged orders did not end (" + counts + absent_note + "); first: order-" +
               first_open + ", whose last event is " + first_open_type;
  }

  // ---- stock-balanced ----------------------------------------------------------

  // What must hold once every order fulfilment saga finished, from
  // actors/sagas.cpp and actors/book.cpp:
  //
  // Only the fulfilment saga moves reserved stock: on order_placed it
  // reserves each line (stock_reserved{book, order, line quantity}); it then
  // either settles - commit_stock for every reserved book, only after the
  // order completed (its own complete_order accepted, or a cancel that was
  // refused because the order had completed) - or compensates - release_stock
  // for every reserved book. release/commit carry the reservation's quantity
  // and close it. So, per (book, order), after all sagas finished:
  //
  //   (1) reserved == released + committed           nothing is left reserved
  //   (2) committed > 0  =>  the order is completed (its stream's last event
  //       is order_completed) and lists the book, and committed == the line's
  //       quantity
  //   (3) an order whose saga settled it (it has a stock_committed, or its
  //       fulfilment saga ended `completed`) has committed == quantity on
  //       EVERY line: all-or-nothing, never a partial commit
  //   (4) reserved > 0  =>  the order was placed
  //
  // Summed per book, (1) gives reserved == released + committed, and (2)+(3)
  // give committed == the quantities of that book's lines in completed orders
  // whose fulfilment saga committed them. The per-(book, order) form is
  // checked because it is strictly stronger and names the offending order.
  //
  // What this deliberately allows:
  //  - a completed order with no stock moves at all: with sagas disabled
  //    nothing is ever reserved (no saga row either);
  //  - a completed order whose stock was released, not committed: a client
  //    that completes the order itself (POST /orders/{id}/complete) while the
  //    saga works makes the saga's complete_order fail with invalid_status,
  //    which the saga takes as "cancelled meanwhile": it releases everything
  //    and ends `cancelled` although the order is completed;
  //  - a cancelled order with released stock.
  // A saga that finished `completed` always committed (settling sends
  // commit_stock for every book it reserved, and it reserved every line), so
  // (3) also covers "the saga completed but the stock never left the shelf".
  void stock_balanced(audit_check& c) {
    auto db = connect();
    const std::string ctes =
        "WITH moves AS ("
        " SELECT data->>'book_id' AS book_id, data->>'order_id' AS order_id,"
        "  coalesce(sum((data->>'quantity')::bigint) FILTER (WHERE event_type = 'stock_reserved'),"
        "   0) AS reserved,"
        "  coalesce(sum((data->>'quantity')::bigint) FILTER (WHERE event_type = 'stock_released'),"
        "   0) AS released,"
        "  coalesce(sum((data->>'quantity')::bigint) FILTER (WHERE event_type = "
        "'stock_committed'), 0) AS committed"
        " FROM troupe_events"
        " WHERE event_type IN ('stock_reserved', 'stock_released', 'stock_committed')"
        " GROUP BY 1, 2),"
        " settled AS ("
        " SELECT order_id FROM moves WHERE committed > 0"
        " UNION SELECT correlation_id FROM troupe_sagas WHERE saga = '" +
        fulfilment_saga +
        "' AND status = 'completed'),"
        " lines AS ("
        " SELECT s.order_id, i.value->>'book_id' AS book_id,"
        "  sum((i.value->>'quantity')::bigint) AS quantity"
        " FROM settled s JOIN troupe_events e ON e.stream_id = 'order-' || s.order_id"
        "  AND e.event_type = 'order_placed'"
        " CROSS JOIN LATERAL json_array_elements(e.data->'items') AS i"
        " GROUP BY 1, 2),"
        " pairs AS ("
        " SELECT coalesce(m.book_id, l.book_id) AS book_id,"
        "  coalesce(m.order_id, l.order_id) AS order_id,"
        "  coalesce(m.reserved, 0) AS reserved, coalesce(m.released, 0) AS released,"
        "  coalesce(m.committed, 0) AS committed, l.quantity AS line"
        " FROM moves m FULL JOIN lines l ON l.order_id = m.order_id AND l.book_id = m.book_id)";

    auto totals = db->exec(
        ctes +
        " SELECT count(DISTINCT book_id) FILTER (WHERE reserved + released + committed > 0),"
        " count(DISTINCT order_id) FILTER (WHERE reserved + released + committed > 0),"
        " coalesce(sum(reserved), 0), coalesce(sum(released), 0), coalesce(sum(committed), 0),"
        " coalesce(sum(line), 0), count(DISTINCT order_id) FILTER (WHERE line IS NOT NULL)"
        " FROM pairs");
    auto books = totals.integer(0, 0), orders = totals.integer(0, 1);
    auto reserved = totals.integer(0, 2), released = totals.integer(0, 3),
         committed = totals.integer(0, 4), lines = totals.integer(0, 5),
         settled = totals.integer(0, 6);

    auto bad = db->exec(
        ctes +
        ", checked AS ("
        " SELECT p.*, o.last_type, coalesce(s.status, '') AS saga_status,"
        "  CASE"
        "   WHEN p.reserved > p.released + p.committed THEN 'stock still reserved'"
        "   WHEN p.reserved < p.released + p.committed THEN"
        "    'more stock released and committed than was reserved'"
        "   WHEN p.committed > 0 AND o.last_type IS DISTINCT FROM 'order_completed' THEN"
        "    'stock committed for an order that is not completed'"
        "   WHEN p.committed > 0 AND p.line IS NULL THEN"
        "    'stock committed for a book the order does not list'"
        "   WHEN p.line IS NOT NULL AND p.committed <> p.line THEN"
        "    'the order was settled but this line''s committed stock differs from its quantity'"
        "   WHEN p.reserved > 0 AND o.last_type IS NULL THEN"
        "    'stock reserved for an order that was never placed'"
        "  END AS problem"
        " FROM pairs p"
        " LEFT JOIN LATERAL (SELECT e.event_type AS last_type FROM troupe_events e"
        "  WHERE e.stream_id = 'order-' || p.order_id ORDER BY e.stream_version DESC LIMIT 1) o"
        "  ON true"
        " LEFT JOIN troupe_sagas s ON s.saga = '" +
        fulfilment_saga +
        "' AND s.correlation_id = p.order_id)"
        " SELECT count(*) OVER (), book_id, order_id, reserved, released, committed,"
        " coalesce(line::text, 'none'), coalesce(last_type, 'no events'),"
        " saga_status, problem"
        " FROM checked WHERE problem IS NOT NULL ORDER BY book_id, order_id LIMIT 1");

    auto balance = "reserved " + num(reserved) + " = released " + num(released) + " + committed " +
                   num(committed);
    if (bad.size() == 0) {
      c.passed = true;
      if (reserved + released + committed == 0) {
        c.detail = "no stock was reserved (no fulfilment saga moved stock): nothing to balance";
        return;
      }
      c.detail = count_of(books, "book") + ", " + count_of(orders, "order") + ": " + balance +
                 "; committed = the lines of " + count_of(settled, "completed order") +
                 " settled by their saga (" + num(lines) + (lines == 1 ? " copy)" : " copies)");
      return;
    }
    auto book = str(bad.text(0, 1));
    auto order = str(bad.text(0, 2));
    auto per_book = db->exec_params(
        "SELECT coalesce(sum((data->>'quantity')::bigint) FILTER (WHERE event_type = "
        "'stock_reserved'), 0), coalesce(sum((data->>'quantity')::bigint) FILTER (WHERE "
        "event_type = 'stock_released'), 0), coalesce(sum((data->>'quantity')::bigint) FILTER "
        "(WHERE event_type = 'stock_committed'), 0) FROM troupe_events WHERE event_type IN "
        "('stock_reserved', 'stock_released', 'stock_committed') AND data->>'book_id' = $1",
        {book});
    auto saga_status = str(bad.text(0, 8));
    c.passed = false;
    c.detail = count_of(bad.integer(0, 0), "(book, order) pair") + " out of balance; first: book " +
               book + ", order " + order + ": " + str(bad.text(0, 9)) + " (reserved " +
               str(bad.text(0, 3)) + ", released " + str(bad.text(0, 4)) + ", committed " +
               str(bad.text(0, 5)) + "; the order's line for the book: " + str(bad.text(0, 6)) +
               "; the order's last event: " + str(bad.text(0, 7)) +
               "; its fulfilment saga: " + (saga_status.empty() ? "none" : saga_status) +
               "). Book " + book + " in all: reserved " + num(per_book.integer(0, 0)) +
               ", released " + num(per_book.integer(0, 1)) + ", committed " +
               num(per_book.integer(0, 2)) + ". All books: " + balance;
    if (reserved != released + committed) c.detail += " (does not hold)";
  }

  // ---- view-<projection> -----------------------------------------------------

  void views() {
    // One deadline for all views to catch up, as `troupe serve`'s demo has.
    auto deadline = steady::now() + options_.settle_timeout;
    std::unique_ptr<postgres_event_store> store;
    std::string store_error;
    try {
      postgres_store_options so;
      so.url = options_.postgres_url;
      so.writer_connections = 1;
      so.reader_connections = 1;
      so.log = quiet_log();
      store = std::make_unique<postgres_event_store>(std::move(so));
    } catch (const std::exception& e) {
      store_error = e.what();
    }
    for (const auto& def : bookstore::bookstore_projections()) {
      checked("view-" + def.name, [&](audit_check& c) {
        if (!store) throw std::runtime_error("cannot open the event store: " + store_error);
        view_check(def, *store, deadline, c);
      });
    }
    if (store) store->stop();
  }

  static std::shared_ptr<spdlog::logger> quiet_log() {
    return std::make_shared<spdlog::logger>("troupe-load-audit",
                                            std::make_shared<spdlog::sinks::null_sink_mt>());
  }

  /// The rebuild's reads, stopped at `cap`: events after it are cut off, and
  /// a read that has nothing to give is an error rather than an empty
  /// result. rebuild_projection swaps its shadow in only after an empty read
  /// or a short batch the interrupt hook declined; with this store an empty
  /// read cannot happen (it makes the rebuild throw instead), and the hook
  /// (see build_shadow) accepts every short batch, so no swap ever happens.
  class capped_store final : public event_store {
   public:
    capped_store(event_store& inner, std::int64_t cap) : inner_(inner), cap_(cap) {}

    void append(append_request, append_callback done) override {
      append_result r;
      r.error = store_errc::invalid_input;
      r.message = "the audit's event store is read-only";
      done(std::move(r));
    }
    void read_stream(std::string stream_id, stream_version from, std::size_t max_count,
                     read_callback done) override {
      inner_.read_stream(std::move(stream_id), from, max_count, std::move(done));
    }
    void read_all(global_position after, std::size_t max_count, read_callback done) override {
      auto cap = cap_;
      if (after.value >= cap) {
        read_result r;
        r.error = store_errc::unavailable;
        r.message = "the audit reads the log only up to position " + num(cap);
        done(std::move(r));
        return;
      }
      inner_.read_all(after, max_count, [cap, after, done = std::move(done)](read_result r) {
        if (r.error == store_errc::ok) {
          std::erase_if(r.events,
                        [cap](const recorded_event& e) { return e.position.value > cap; });
          if (r.events.empty()) {
            r.error = store_errc::unavailable;
            r.message = "the log shows no event after position " + num(after.value) +
                        " yet (the view is at " + num(cap) + ")";
          }
        }
        done(std::move(r));
      });
    }
    void load_snapshot(std::string stream_id, snapshot_callback done) override {
      inner_.load_snapshot(std::move(stream_id), std::move(done));
    }
    void save_snapshot(snapshot_record, done_callback done) override {
      done(store_errc::invalid_input, "the audit's event store is read-only");
    }
    void load_checkpoint(std::string name, checkpoint_callback done) override {
      inner_.load_checkpoint(std::move(name), std::move(done));
    }
    void save_checkpoint(std::string, global_position, done_callback done) override {
      done(store_errc::invalid_input, "the audit's event store is read-only");
    }

   private:
    event_store& inner_;
    std::int64_t cap_;
  };

  /// Where rebuild_projection keeps its shadow tables and their checkpoint
  /// (the names runtime/projector.cpp uses).
  static std::string shadow_schema(const projection_definition& def) {
    return "troupe_rebuild_" + def.name;
  }
  static std::string rebuild_checkpoint(const projection_definition& def) {
    return projector::checkpoint_name(def.name) + ":rebuild:v" + std::to_string(def.version);
  }

  /// Drops the shadow tables and any rebuild checkpoint of the projection.
  static void drop_shadow(view_store& vs, const projection_definition& def) {
    auto prefix = projector::checkpoint_name(def.name) + ":rebuild:";
    vs.exec("DROP SCHEMA IF EXISTS \"" + shadow_schema(def) +
            "\" CASCADE; DELETE FROM troupe_checkpoints WHERE left(name, " +
            std::to_string(prefix.size()) + ") = " + vs.connection().quote(prefix));
  }

  /// Folds the log up to exactly `target` into the shadow tables, resuming
  /// the shadow already there; retries while the log does not show
  /// everything up to `target` yet, giving up after settle_timeout without
  /// progress.
  void build_shadow(const projection_definition& def, event_store& store, view_store& vs,
                    std::int64_t target) {
    capped_store capped(store, target);
    auto last_said = steady::now();
    std::int64_t before = -1;
    auto stalled_since = steady::now();
    for (;;) {
      rebuild_options o;
      o.postgres_url = options_.postgres_url;
      o.log = quiet_log();
      std::int64_t done_before = 0;
      // Stop after the batch that reaches the target, and after any short
      // batch: declining a short batch would let the rebuild swap.
      o.interrupt = [&](const rebuild_progress& p) {
        auto batch = p.events_done - done_before;
        done_before = p.events_done;
        return p.position >= target || batch < static_cast<std::int64_t>(o.batch_size);
      };
      o.progress = [&](const rebuild_progress& p) {
        if (steady::now() - last_said < std::chrono::seconds{2}) return;
        last_said = steady::now();
        say("auditing views: " + def.name + ": rebuilt up to position " + num(p.position) + " of " +
            num(target));
      };
      std::string error;
      bool swapped = false;
      try {
        swapped = rebuild_projection(def, capped, o).swapped;
      } catch (const std::runtime_error& e) {
        error = e.what();  // e.g. the log does not show up to the target yet
      }
      if (swapped)  // cannot happen with capped_store (see above)
        throw std::runtime_error(
            "the rebuild swapped its tables into the live view; the comparison is void");
      auto at = vs.checkpoint(rebuild_checkpoint(def)).value;
      if (at >= target) return;
      if (at > before) {
        before = at;
        stalled_since = steady::now();
        continue;
      }
      if (steady::now() - stalled_since >= options_.settle_timeout)
        throw std::runtime_error("the rebuild stopped at position " + num(at) + " of " +
                                 num(target) + (error.empty() ? "" : ": " + error));
      std::this_thread::sleep_for(std::chrono::milliseconds{100});
    }
  }

  /// Sorted (bytewise) so that two dumps compare however PostgreSQL collates.
  using dump = std::vector<std::vector<std::string>>;

  static std::string difference(const projection_definition& def, dump live, dump rebuilt) {
    for (std::size_t t = 0; t < def.tables.size(); ++t) {
      auto& a = live[t];
      auto& b = rebuilt[t];
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      if (a == b) continue;
      std::vector<std::string> only_live, only_rebuilt;
      std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(only_live));
      std::set_difference(b.begin(), b.end(), a.begin(), a.end(), std::back_inserter(only_rebuilt));
      std::string out = "table " + def.tables[t].name + ": " +
                        num(static_cast<std::int64_t>(a.size())) + " rows live, " +
                        num(static_cast<std::int64_t>(b.size())) + " in the rebuild";
      if (!only_live.empty())
        out += "; " + num(static_cast<std::int64_t>(only_live.size())) +
               " only in the live view (first: '" + clip(only_live.front()) + "')";
      if (!only_rebuilt.empty())
        out += "; " + num(static_cast<std::int64_t>(only_rebuilt.size())) +
               " only in the rebuild (first: '" + clip(only_rebuilt.front()) + "')";
      return out;
    }
    return {};
  }

  // The comparison never writes to the live view: the rebuild goes to the
  // shadow schema troupe_rebuild_<name>, capped at the live checkpoint and
  // always interrupted before its swap (capped_store, build_shadow), and the
  // shadow is dropped afterwards. The one thing rebuild_projection does to
  // the live schema is its idempotent ensure(): CREATE ... IF NOT EXISTS of
  // tables and indexes that exist already and CREATE OR REPLACE of the SQL
  // views with their unchanged definition - no row changes. A projection
  // whose live tables were never built is reported, not rebuilt. An
  // interrupted operator rebuild of the same projection (its shadow) is
  // dropped: the audit must start from an empty shadow.
  void view_check(const projection_definition& def, event_store& store, steady::time_point deadline,
                  audit_check& c) {
    view_store vs(options_.postgres_url);
    const auto live_cp = projector::checkpoint_name(def.name);
    auto built = vs.built_version(def.name);
    if (built == 0) {
      c.passed = false;
      c.detail = "the view was never built (no projector ran?)";
      return;
    }
    if (built != def.version) {
      c.passed = false;
      c.detail = "the live tables were built by version " + num(built) +
                 " of the projection, this build has version " + num(def.version) +
                 ": a rebuild is due, the view cannot equal this build's rebuild";
      return;
    }

    // Caught up: the checkpoint reached the last event the projector can
    // see - saga inputs (streams <saga>-<correlation>) never reach it, as in
    // report_view_lag of tools/troupe/serve.cpp.
    const std::string head_sql =
        "SELECT coalesce(max(global_position), 0) FROM troupe_events WHERE stream_id NOT LIKE '" +
        fulfilment_saga + "-%' AND stream_id NOT LIKE '" + rating_saga + "-%'";
    say("auditing views: " + def.name + ": waiting for the view to catch up");
    auto head = vs.scalar(head_sql);
    auto at = vs.checkpoint(live_cp).value;
    while (at < head && steady::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds{100});
      head = vs.scalar(head_sql);
      at = vs.checkpoint(live_cp).value;
    }
    if (at < head) {
      c.passed = false;
      c.detail = "the view did not catch up with the log within " +
                 seconds_text(options_.settle_timeout) + ": at position " + num(at) + " of " +
                 num(head) + " (is its projector running?)";
      return;
    }

    auto live_dump = [&](std::int64_t& position) {
      // One snapshot for the checkpoint and the rows: a projector moves both
      // in one transaction.
      dump out;
      vs.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
      try {
        position = vs.checkpoint(live_cp).value;
        for (const auto& t : def.tables) out.push_back(vs.dump(t));
        vs.exec("COMMIT");
      } catch (...) {
        try {
          vs.exec("ROLLBACK");
        } catch (const std::exception&) {
        }
        throw;
      }
      return out;
    };

    if (at == 0) {
      // Nothing the projection can see was written: the rebuild would read
      // nothing and (by rebuild_projection's design) swap at once. Its result
      // is known without it: empty tables.
      std::int64_t position = 0;
      auto live = live_dump(position);
      if (position == 0) {
        dump empty(def.tables.size());
        auto diff = difference(def, live, empty);
        c.passed = diff.empty();
        c.detail = c.passed ? "no events yet: the view is empty, as a rebuild would be"
                            : diff + " (the log holds no event for it)";
        return;
      }
      at = position;  // events arrived meanwhile: compare at that point
    }

    say("auditing views: " + def.name + ": rebuilding up to position " + num(at) +
        " in the shadow schema");
    drop_shadow(vs, def);
    try {
      build_shadow(def, store, vs, at);
      std::int64_t position = 0;
      auto live = live_dump(position);
      if (position < at)
        throw std::runtime_error("the live checkpoint went back from " + num(at) + " to " +
                                 num(position) + " during the audit (a rebuild swapped?)");
      if (position > at) {
        // More events arrived meanwhile: bring the shadow to where the live
        // snapshot is.
        build_shadow(def, store, vs, position);
        at = position;
      }
      dump rebuilt;
      std::int64_t rows = 0;
      for (const auto& t : def.tables) {
        rebuilt.push_back(vs.dump(t, shadow_schema(def)));
        rows += static_cast<std::int64_t>(rebuilt.back().size());
      }
      auto diff = difference(def, std::move(live), std::move(rebuilt));
      c.passed = diff.empty();
      c.detail = c.passed
                     ? count_of(static_cast<std::int64_t>(def.tables.size()), "table") + ", " +
                           count_of(rows, "row") + ": equal a rebuild up to position " + num(at)
                     : diff + " (both folded up to position " + num(at) + ")";
    } catch (...) {
      try {
        drop_shadow(vs, def);
      } catch (const std::exception&) {
      }
      throw;
    }
    try {
      drop_shadow(vs, def);
    } catch (const std::exception& e) {
      c.detail += "; the shadow schema " + shadow_schema(def) +
                  " could not be dropped: " + redact_(e.what());
    }
  }

  const audit_options& options_;
  redactor redact_;
  const std::vector<std::string> ids_;  // acknowledged order ids, sorted, each once
  std::vector<audit_check> checks_;
};

}  // namespace

std::vector<audit_check> run_audit(const audit_options& options) { return auditor(options).run(); }

}  // namespace troupe::load
