#pragma once
// A thin libpq connection for the event store's writers. The write path
// needs what libpqxx 6.4 does not give: a whole batch of COPY rows sent as
// one buffer (libpqxx formats and sends row by row), and no hidden
// reconnects. Errors become pg_error with the SQLSTATE and whether the
// connection is gone (then the outcome of what was in flight is unknown).

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

typedef struct pg_conn PGconn;
typedef struct pg_result PGresult;

namespace troupe::postgres {

struct pg_error : std::runtime_error {
  pg_error(const std::string& message, std::string state, bool lost)
      : std::runtime_error(message), sqlstate(std::move(state)), connection_lost(lost) {}
  std::string sqlstate;  // empty when there is none (connection errors)
  bool connection_lost;
};

/// Owns one PGresult.
class pg_rows {
 public:
  explicit pg_rows(PGresult* result);
  pg_rows(pg_rows&&) noexcept;
  pg_rows& operator=(pg_rows&&) noexcept;
  ~pg_rows();
  int size() const;
  std::string_view text(int row, int column) const;
  std::int64_t integer(int row, int column) const;

 private:
  PGresult* result_;
};

class pg_connection {
 public:
  /// Connects; throws pg_error (connection_lost) when it cannot.
  explicit pg_connection(const std::string& conninfo);
  ~pg_connection();
  pg_connection(const pg_connection&) = delete;
  pg_connection& operator=(const pg_connection&) = delete;

  /// A simple query (several statements allowed); the last one's rows.
  pg_rows exec(const std::string& sql);
  /// One statement with text parameters.
  pg_rows exec_params(const std::string& sql, const std::vector<std::string>& params);
  /// Runs `copy_statement` (COPY ... FROM STDIN) and sends `data`, rows in
  /// COPY text format, in one go.
  void copy_in(const std::string& copy_statement, std::string_view data);

  /// `value` escaped as a COPY text field (appended to `out`).
  static void append_copy_field(std::string& out, std::string_view value);
  /// `value` as a quoted SQL literal.
  std::string quote(std::string_view value) const;

 private:
  [[noreturn]] void fail(PGresult* result, const std::string& what);
  pg_rows check(PGresult* result, const std::string& what);
  PGconn* conn_;
};

}  // namespace troupe::postgres
