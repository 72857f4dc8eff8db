#pragma once
// A thin libpq connection for the event store's writers. The write path
// needs what libpqxx 6.4 does not give: a whole batch of COPY rows sent as
// one buffer (libpqxx formats and sends row by row), and no hidden
// reconnects. Errors become pg_error with the SQLSTATE and whether the
// connection is gone (then the outcome of what was in flight is unknown).

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
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

/// Rows in COPY's binary format (COPY ... FROM STDIN (FORMAT binary)): no
/// escaping on the client, no text parsing of numbers, ids and times on
/// the server. Fields are appended in the table's column order.
class binary_copy {
 public:
  binary_copy();
  void reserve(std::size_t bytes) { data_.reserve(bytes); }
  void row(std::int16_t fields) { be(fields); }
  void int8(std::int64_t v) {
    be(std::int32_t{8});
    be(v);
  }
  void int4(std::int32_t v) {
    be(std::int32_t{4});
    be(v);
  }
  /// text, json (sent as its text) and the like.
  void text(std::string_view v);
  /// A UUID in canonical text form (8-4-4-4-12 lower-case hex), as 16 bytes.
  void uuid(std::string_view canonical);
  /// timestamptz from microseconds since the Unix epoch.
  void timestamptz(std::int64_t unix_micros);
  /// The data with its trailer; the builder is spent.
  std::string_view finish();

 private:
  template <class T>
  void be(T v) {
    auto u = static_cast<std::make_unsigned_t<T>>(v);
    for (int shift = (sizeof(T) - 1) * 8; shift >= 0; shift -= 8)
      data_.push_back(static_cast<char>((u >> shift) & 0xff));
  }
  std::string data_;
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
  /// Runs `copy_statement` (COPY ... FROM STDIN, in the format `data` is
  /// in) and sends `data` in one go.
  void copy_in(const std::string& copy_statement, std::string_view data);
  /// `value` as a quoted SQL literal.
  std::string quote(std::string_view value) const;

 private:
  [[noreturn]] void fail(PGresult* result, const std::string& what);
  pg_rows check(PGresult* result, const std::string& what);
  PGconn* conn_;
};

}  // namespace troupe::postgres
