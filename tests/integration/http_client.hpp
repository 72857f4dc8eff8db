#pragma once
// A small blocking HTTP/1.1 client for tests, on Beast: one keep-alive
// connection, reopened when the server closed it.

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace troupe::integration {

struct http_reply {
  int status = 0;                              // 0: no answer (connection refused or closed)
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string error;

  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
  boost::json::value json() const {
    boost::system::error_code ec;
    auto v = boost::json::parse(body, ec);
    return ec ? boost::json::value() : v;
  }
  /// The problem's type slug ("not-found"), empty when not a problem.
  std::string problem_type() const {
    auto v = json();
    if (!v.is_object() || !v.as_object().contains("type")) return {};
    std::string type(v.at("type").as_string());
    auto slash = type.rfind("/problems/");
    return slash == std::string::npos ? type : type.substr(slash + 10);
  }
};

class http_client {
 public:
  explicit http_client(std::uint16_t port) : port_(port) {}

  http_reply request(const std::string& method, const std::string& target,
                     const std::string& body = {},
                     const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    namespace beast = boost::beast;
    namespace http = boost::beast::http;
    for (int attempt = 0; attempt < 2; ++attempt) {
      http_reply out;
      try {
        if (!stream_) connect();
        http::request<http::string_body> req{http::string_to_verb(method), target, 11};
        req.set(http::field::host, "127.0.0.1");
        bool has_type = false;
        for (const auto& [k, v] : headers) {
          req.set(k, v);
          has_type = has_type || k == "content-type";
        }
        if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
        if (!body.empty() && !has_type) req.set(http::field::content_type, "application/json");
        req.body() = body;
        req.prepare_payload();
        http::write(*stream_, req);
        beast::flat_buffer buffer;
        http::response_parser<http::string_body> parser;
        parser.body_limit(64 << 20);
        http::read(*stream_, buffer, parser);
        auto res = parser.release();
        out.status = res.result_int();
        for (const auto& f : res) {
          std::string name(f.name_string());
          for (auto& ch : name)
            ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
          out.headers[name] = std::string(f.value());
        }
        out.body = res.body();
        if (!res.keep_alive()) stream_.reset();
        return out;
      } catch (const std::exception& e) {
        stream_.reset();
        out.error = e.what();
        if (attempt == 1) return out;
      }
    }
    return {};
  }

  http_reply get(const std::string& target) { return request("GET", target); }
  http_reply post(const std::string& target, const std::string& body,
                  const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    return request("POST", target, body, headers);
  }

  std::string token;  // sent as a bearer token when not empty

 private:
  void connect() {
    namespace asio = boost::asio;
    stream_.emplace(*context_);
    stream_->connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
  }

  std::uint16_t port_;
  std::unique_ptr<boost::asio::io_context> context_ = std::make_unique<boost::asio::io_context>();
  std::optional<boost::beast::tcp_stream> stream_;
};

}  // namespace troupe::integration
