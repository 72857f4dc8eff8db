// The limit for HTTP benchmarks: a bare Beast + Boost.JSON server on one
// thread that answers every request by parsing its JSON body (or a fixed
// document for bodiless requests) and serialising it back. Keep-alive,
// no routing, no logging: what Beast itself costs on this machine.
//
// Usage: http_echo PORT   (runs until killed)

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <memory>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

const boost::json::value fixed = boost::json::parse(
    R"({"items":[{"book_id":"b1","name":"Echo","price":1000,"stock":5}],"page":1,"page_size":20,"total":1})");

class session : public std::enable_shared_from_this<session> {
 public:
  explicit session(tcp::socket s) : stream_(std::move(s)) {}
  void read() {
    request_ = {};
    http::async_read(stream_, buffer_, request_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       if (!ec) self->answer();
                     });
  }

 private:
  void answer() {
    boost::system::error_code ec;
    auto doc = request_.body().empty() ? fixed : boost::json::parse(request_.body(), ec);
    auto res = std::make_shared<http::response<http::string_body>>(http::status::ok, 11);
    res->set(http::field::content_type, "application/json");
    res->body() = boost::json::serialize(ec ? fixed : doc);
    res->keep_alive(request_.keep_alive());
    res->prepare_payload();
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code e, std::size_t) {
                        if (!e && res->keep_alive()) self->read();
                      });
  }
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
};

void accept(tcp::acceptor& acceptor) {
  acceptor.async_accept([&acceptor](beast::error_code ec, tcp::socket s) {
    if (!ec) {
      s.set_option(tcp::no_delay(true));
      std::make_shared<session>(std::move(s))->read();
    }
    accept(acceptor);
  });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: http_echo PORT\n");
    return 2;
  }
  asio::io_context io{1};
  tcp::acceptor acceptor(
      io, {asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(std::atoi(argv[1]))});
  accept(acceptor);
  io.run();
}
