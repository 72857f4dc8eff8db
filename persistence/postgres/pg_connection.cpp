#include "persistence/postgres/pg_connection.hpp"

#include <libpq-fe.h>

#include <charconv>

namespace troupe::postgres {

pg_rows::pg_rows(PGresult* result) : result_(result) {}
pg_rows::pg_rows(pg_rows&& other) noexcept : result_(other.result_) { other.result_ = nullptr; }
pg_rows& pg_rows::operator=(pg_rows&& other) noexcept {
  if (this != &other) {
    if (result_ != nullptr) PQclear(result_);
    result_ = other.result_;
    other.result_ = nullptr;
  }
  return *this;
}
pg_rows::~pg_rows() {
  if (result_ != nullptr) PQclear(result_);
}
int pg_rows::size() const { return result_ == nullptr ? 0 : PQntuples(result_); }
std::string_view pg_rows::text(int row, int column) const {
  return {PQgetvalue(result_, row, column),
          static_cast<std::size_t>(PQgetlength(result_, row, column))};
}
std::int64_t pg_rows::integer(int row, int column) const {
  auto t = text(row, column);
  std::int64_t value = 0;
  std::from_chars(t.data(), t.data() + t.size(), value);
  return value;
}

pg_connection::pg_connection(const std::string& conninfo) : conn_(PQconnectdb(conninfo.c_str())) {
  if (conn_ == nullptr) throw pg_error("out of memory connecting to PostgreSQL", "", true);
  if (PQstatus(conn_) != CONNECTION_OK) {
    std::string message = PQerrorMessage(conn_);
    PQfinish(conn_);
    conn_ = nullptr;
    throw pg_error(message, "", true);
  }
}

pg_connection::~pg_connection() {
  if (conn_ != nullptr) PQfinish(conn_);
}

void pg_connection::fail(PGresult* result, const std::string& what) {
  std::string state;
  std::string message = what + ": ";
  if (result != nullptr) {
    if (const char* s = PQresultErrorField(result, PG_DIAG_SQLSTATE)) state = s;
    message += PQresultErrorMessage(result);
    PQclear(result);
  } else {
    message += PQerrorMessage(conn_);
  }
  bool lost = PQstatus(conn_) != CONNECTION_OK;
  throw pg_error(message, std::move(state), lost);
}

pg_rows pg_connection::check(PGresult* result, const std::string& what) {
  if (result == nullptr) fail(nullptr, what);
  auto status = PQresultStatus(result);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) fail(result, what);
  return pg_rows(result);
}

pg_rows pg_connection::exec(const std::string& sql) {
  return check(PQexec(conn_, sql.c_str()), "query failed");
}

pg_rows pg_connection::exec_params(const std::string& sql, const std::vector<std::string>& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p.c_str());
  return check(PQexecParams(conn_, sql.c_str(), static_cast<int>(params.size()), nullptr,
                            values.data(), nullptr, nullptr, 0),
               "query failed");
}

void pg_connection::copy_in(const std::string& copy_statement, std::string_view data) {
  PGresult* start = PQexec(conn_, copy_statement.c_str());
  if (start == nullptr || PQresultStatus(start) != PGRES_COPY_IN) fail(start, "COPY failed");
  PQclear(start);
  if (PQputCopyData(conn_, data.data(), static_cast<int>(data.size())) != 1 ||
      PQputCopyEnd(conn_, nullptr) != 1)
    fail(nullptr, "sending COPY data failed");
  // The COPY's own outcome; read to the end so the connection is ready for
  // the next command even when the COPY failed.
  PGresult* result = PQgetResult(conn_);
  while (PGresult* extra = PQgetResult(conn_)) PQclear(extra);
  check(result, "COPY failed");
}

binary_copy::binary_copy() {
  // Signature, flags (no OIDs), header extension length.
  static constexpr char header[] = "PGCOPY\n\377\r\n";
  data_.append(header, sizeof header);  // includes the signature's final NUL
  be(std::int32_t{0});
  be(std::int32_t{0});
}

void binary_copy::text(std::string_view v) {
  be(static_cast<std::int32_t>(v.size()));
  data_.append(v);
}

void binary_copy::uuid(std::string_view canonical) {
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  be(std::int32_t{16});
  for (std::size_t i = 0; i + 1 < canonical.size(); ++i) {
    if (canonical[i] == '-') continue;
    data_.push_back(static_cast<char>(nibble(canonical[i]) << 4 | nibble(canonical[i + 1])));
    ++i;
  }
}

void binary_copy::timestamptz(std::int64_t unix_micros) {
  // PostgreSQL counts from 2000-01-01 00:00:00 UTC.
  constexpr std::int64_t postgres_epoch_micros = 946'684'800'000'000;
  int8(unix_micros - postgres_epoch_micros);
}

std::string_view binary_copy::finish() {
  be(std::int16_t{-1});
  return data_;
}

std::string pg_connection::quote(std::string_view value) const {
  char* escaped = PQescapeLiteral(conn_, value.data(), value.size());
  if (escaped == nullptr) throw pg_error("cannot quote a literal", "", false);
  std::string out(escaped);
  PQfreemem(escaped);
  return out;
}

}  // namespace troupe::postgres
