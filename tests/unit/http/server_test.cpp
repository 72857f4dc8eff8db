// The Beast server on its own, on loopback, with handlers that misbehave:
// no answer (504 after the request timeout), two answers (only one sent),
// a slow answer during a graceful stop (still delivered), limits, and the
// 100-continue handshake.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "http/server.hpp"
#include "tests/integration/http_client.hpp"

namespace troupe::http {
namespace {

using integration::http_client;

server_options small_limits() {
  server_options o;
  o.port = 0;
  o.io_threads = 1;
  o.max_body_bytes = 2048;
  o.max_header_bytes = 1024;
  o.request_timeout = std::chrono::milliseconds{300};
  return o;
}

/// Sends raw bytes and returns everything read until the peer closes or
/// `wait` passes.
std::string raw_exchange(std::uint16_t port, const std::string& bytes,
                         std::chrono::milliseconds wait = std::chrono::milliseconds{1500}) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return "connect failed";
  timeval tv{0, static_cast<suseconds_t>(wait.count() * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  (void)!write(fd, bytes.data(), bytes.size());
  std::string out;
  char buffer[4096];
  ssize_t n = 0;
  while ((n = read(fd, buffer, sizeof buffer)) > 0) out.append(buffer, static_cast<std::size_t>(n));
  close(fd);
  return out;
}

TEST(Server, ARequestNobodyAnswersGets504InsteadOfHanging) {
  server s(small_limits(), [](request&&, responder) { /* loses the request */ });
  s.start();
  http_client c(s.port());
  auto started = std::chrono::steady_clock::now();
  auto r = c.get("/anything");
  EXPECT_EQ(r.status, 504);
  EXPECT_EQ(r.header("content-type"), "application/problem+json");
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds{5});
  EXPECT_TRUE(s.shutdown(std::chrono::seconds{2}));
}

TEST(Server, ASecondAnswerToOneRequestIsDropped) {
  server s(small_limits(), [](request&& r, responder reply) {
    reply(response{200, "text/plain", "first " + r.path});
    reply(response{500, "text/plain", "second"});
  });
  s.start();
  http_client c(s.port());
  auto a = c.get("/a");
  auto b = c.get("/b");  // the same keep-alive connection still works
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.body, "first /a");
  EXPECT_EQ(b.status, 200);
  EXPECT_EQ(b.body, "first /b");
  EXPECT_EQ(s.stats().requests_in_flight, 0);
}

TEST(Server, LimitsAnswer413And431) {
  server s(small_limits(), [](request&&, responder reply) {
    reply(response{200, "text/plain", "ok"});
  });
  s.start();
  http_client c(s.port());
  auto big = c.post("/x", std::string(4096, 'x'));
  EXPECT_EQ(big.status, 413);
  http_client d(s.port());
  auto headers = d.request("GET", "/x", {}, {{"x-padding", std::string(2000, 'p')}});
  EXPECT_EQ(headers.status, 431);
  EXPECT_EQ(s.stats().malformed_requests, 2);
}

TEST(Server, AnExpectContinueClientIsToldToSendItsBody) {
  server s(small_limits(), [](request&& r, responder reply) {
    reply(response{200, "text/plain", std::to_string(r.body.size())});
  });
  s.start();
  std::string body(1500, 'b');
  auto out = raw_exchange(s.port(),
                          "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1500\r\n"
                          "Expect: 100-continue\r\nConnection: close\r\n\r\n" +
                              body);
  EXPECT_EQ(out.rfind("HTTP/1.1 100 Continue\r\n\r\n", 0), 0u) << out;
  EXPECT_NE(out.find("HTTP/1.1 200 OK"), std::string::npos) << out;
  EXPECT_NE(out.find("\r\n\r\n1500"), std::string::npos) << out;
}

TEST(Server, HeadGetsTheHeaderOfTheAnswerWithoutItsBody) {
  server s(small_limits(), [](request&& r, responder reply) {
    reply(response{200, "text/plain", r.method == "HEAD" ? "twelve bytes" : "other"});
  });
  s.start();
  auto out = raw_exchange(s.port(), "HEAD /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK", 0), 0u) << out;
  EXPECT_NE(out.find("Content-Length: 12\r\n"), std::string::npos) << out;
  EXPECT_TRUE(out.ends_with("\r\n\r\n")) << out;
}

TEST(Server, AnswersAreFramedForKeepAliveAndHttp10AndTheirHeadersStayOneLineEach) {
  server s(small_limits(), [](request&& r, responder reply) {
    response res{r.path == "/created" ? 201 : 200, "application/json",
                 "{\"path\":\"" + r.path + "\"}"};
    res.headers.push_back({"etag", "\"7\""});
    res.headers.push_back({"x-note", "split\r\nSet-Cookie: injected"});
    reply(std::move(res));
  });
  s.start();
  // Two requests on one HTTP/1.1 connection: both answered, the first
  // kept open (no Connection header), the second closed as asked.
  auto out = raw_exchange(s.port(),
                          "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /created HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  auto second = out.find("HTTP/1.1 201 Created\r\n");
  ASSERT_NE(second, std::string::npos) << out;
  auto first = out.substr(0, second);
  EXPECT_EQ(
      first.rfind("HTTP/1.1 200 OK\r\nServer: troupe\r\nContent-Type: application/json\r\n", 0), 0u)
      << first;
  EXPECT_NE(first.find("\r\netag: \"7\"\r\n"), std::string::npos) << first;
  EXPECT_NE(first.find("\r\nContent-Length: 13\r\n\r\n{\"path\":\"/a\"}"), std::string::npos)
      << first;
  EXPECT_EQ(first.find("Connection:"), std::string::npos) << first;
  EXPECT_EQ(first.find("\r\nSet-Cookie"), std::string::npos) << "a header value broke its line";
  EXPECT_NE(out.find("Connection: close\r\n", second), std::string::npos) << out;
  EXPECT_TRUE(out.ends_with("{\"path\":\"/created\"}")) << out;
  // HTTP/1.0 asking to be kept open is told so, in its own version.
  auto old = raw_exchange(s.port(), "GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                          std::chrono::milliseconds{300});
  EXPECT_EQ(old.rfind("HTTP/1.0 200 OK\r\n", 0), 0u) << old;
  EXPECT_NE(old.find("Connection: keep-alive\r\n"), std::string::npos) << old;
}

TEST(Server, AGracefulStopDeliversTheAnswerInFlight) {
  std::thread late;
  server s(small_limits(), [&late](request&&, responder reply) {
    late = std::thread([reply] {
      std::this_thread::sleep_for(std::chrono::milliseconds{150});
      reply(response{200, "text/plain", "late but answered"});
    });
  });
  s.start();
  std::string answer;
  std::thread client([&] {
    http_client c(s.port());
    answer = c.get("/slow").body;
  });
  while (s.stats().requests_in_flight == 0)
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  EXPECT_TRUE(s.shutdown(std::chrono::seconds{5}));
  client.join();
  late.join();
  EXPECT_EQ(answer, "late but answered");
  // Stopped: new connections are refused.
  http_client after(s.port());
  EXPECT_EQ(after.get("/").status, 0);
}

}  // namespace
}  // namespace troupe::http
