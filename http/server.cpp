#include "http/server.hpp"

#include "http/problem.hpp"

#include <pthread.h>
#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <condition_variable>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_set>

namespace troupe::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

struct server::impl : std::enable_shared_from_this<server::impl> {
  class session;

  server_options options;
  handler on_request;
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::vector<std::thread> threads;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::uint16_t bound_port = 0;
  std::size_t next_context = 0;
  std::atomic<bool> draining{false};
  bool stopped = false;

  std::mutex sessions_mutex;
  std::condition_variable sessions_changed;
  std::unordered_set<session*> sessions;  // open connections

  std::atomic<std::int64_t> accepted{0}, refused{0}, requests{0}, in_flight{0}, malformed{0};

  class session : public std::enable_shared_from_this<session> {
   public:
    session(std::shared_ptr<impl> owner, tcp::socket socket)
        : owner_(std::move(owner)), stream_(std::move(socket)), deadline_(stream_.get_executor()) {}

    ~session() {
      std::lock_guard lock{owner_->sessions_mutex};
      owner_->sessions.erase(this);
      owner_->sessions_changed.notify_all();
    }

    void start() {
      {
        std::lock_guard lock{owner_->sessions_mutex};
        owner_->sessions.insert(this);
      }
      read_next();
    }

    /// Closes the connection if it is waiting for a request (on its thread).
    void close_if_idle() {
      asio::post(stream_.get_executor(), [self = shared_from_this()] {
        if (self->awaiting_request_) self->close();
      });
    }
    /// Closes the connection whatever it is doing (on its thread).
    void force_close() {
      asio::post(stream_.get_executor(), [self = shared_from_this()] { self->close(); });
    }

   private:
    void read_next() {
      if (owner_->draining) return close();
      parser_.emplace();
      parser_->body_limit(owner_->options.max_body_bytes);
      parser_->header_limit(static_cast<std::uint32_t>(owner_->options.max_header_bytes));
      // A request already begun in the buffer (pipelined) gets the read
      // timeout; an empty keep-alive connection gets the idle timeout.
      stream_.expires_after(buffer_.size() > 0 ? owner_->options.read_timeout
                                               : owner_->options.idle_timeout);
      // Only a connection with nothing of a next request yet may be closed
      // by a graceful stop; one being read or written is finished first.
      awaiting_request_ = buffer_.size() == 0;
      head_request_ = false;
      bhttp::async_read_header(
          stream_, buffer_, *parser_,
          [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_header(ec); });
    }

    void on_header(beast::error_code ec) {
      awaiting_request_ = false;
      if (ec) return on_read(ec);
      stream_.expires_after(owner_->options.read_timeout);
      // A client that asks before sending its body (curl does above 1 KiB)
      // is told to go on, instead of waiting a second for nothing.
      const auto& head = parser_->get();
      if (beast::iequals(head[bhttp::field::expect], "100-continue") && !parser_->is_done()) {
        static const std::string go_on = "HTTP/1.1 100 Continue\r\n\r\n";
        return asio::async_write(stream_, asio::buffer(go_on),
                                 [self = shared_from_this()](beast::error_code ec, std::size_t) {
                                   if (ec) return self->close();
                                   self->read_body();
                                 });
      }
      read_body();
    }

    void read_body() {
      bhttp::async_read(
          stream_, buffer_, *parser_,
          [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
    }

    void on_read(beast::error_code ec) {
      if (ec == bhttp::error::end_of_stream || ec == asio::error::operation_aborted ||
          ec == asio::error::connection_reset || ec == asio::error::eof)
        return close();
      if (ec == beast::error::timeout) {
        // Idle keep-alive connections time out quietly; a half-read request
        // is a client problem worth a 408.
        if (parser_->got_some())
          return fail(408, "request-timeout", "the request did not arrive in time");
        return close();
      }
      if (ec == bhttp::error::body_limit)
        return fail(413, "payload-too-large",
                    "the request body exceeds " + std::to_string(owner_->options.max_body_bytes) +
                        " bytes");
      if (ec == bhttp::error::header_limit)
        return fail(431, "headers-too-large",
                    "the request headers exceed " +
                        std::to_string(owner_->options.max_header_bytes) + " bytes");
      if (ec) return fail(400, "malformed-request", "malformed HTTP request");

      auto message = parser_->release();
      request r;
      r.method = std::string(message.method_string());
      r.target = std::string(message.target());
      auto q = r.target.find('?');
      r.path = r.target.substr(0, q);
      if (q != std::string::npos) r.query = r.target.substr(q + 1);
      r.headers.reserve(static_cast<std::size_t>(std::distance(message.begin(), message.end())));
      for (const auto& field : message) {
        std::string name(field.name_string());
        std::transform(name.begin(), name.end(), name.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        r.headers.push_back({std::move(name), std::string(field.value())});
      }
      r.body = std::move(message.body());
      r.keep_alive = message.keep_alive();
      keep_alive_ = r.keep_alive;
      version_ = message.version();
      head_request_ = message.method() == bhttp::verb::head;
      ++owner_->requests;
      ++owner_->in_flight;
      stream_.expires_never();  // the handler may take its time (bounded by its own timeouts)
      auto self = shared_from_this();
      // One answer per request, whatever a handler does: a second call would
      // start a second write on the stream.
      auto answered = std::make_shared<std::atomic<bool>>(false);
      responder reply = [self, answered](response res) {
        if (answered->exchange(true)) return;
        asio::post(self->stream_.get_executor(),
                   [self, res = std::move(res)]() mutable { self->write(std::move(res), true); });
      };
      // And an answer in bounded time: a handler that lost its request
      // (a bug, a callback that threw) costs the client a 504, not a hang.
      deadline_.expires_after(owner_->options.request_timeout);
      deadline_.async_wait([reply](beast::error_code ec) {
        if (ec) return;  // cancelled: answered in time
        reply(problem(504, "answer-timeout",
                      "the request was not answered in time; its outcome is unknown"));
      });
      owner_->on_request(std::move(r), std::move(reply));
    }

    void fail(int status, std::string_view type, const std::string& detail) {
      ++owner_->malformed;
      keep_alive_ = false;
      write(problem(status, type, detail), false);
    }

    void write(response res, bool counted) {
      if (counted) {
        --owner_->in_flight;
        deadline_.cancel();
      }
      if (closed_) return;
      bool keep = keep_alive_ && !owner_->draining;
      // The head is written by hand and sent with the body in one gathered
      // write: Beast's field container and serializer cost more than the
      // rest of an answer's user time on the io thread.
      auto out = std::make_shared<outgoing>();
      out->body = std::move(res.body);
      auto& head = out->head;
      head.reserve(128 + res.content_type.size() + 64 * res.headers.size());
      head += version_ == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
      head += std::to_string(res.status);
      head += ' ';
      auto reason = bhttp::obsolete_reason(static_cast<bhttp::status>(res.status));
      head.append(reason.data(), reason.size());
      head += "\r\nServer: troupe\r\nContent-Type: ";
      append_field_text(head, res.content_type);
      for (const auto& h : res.headers) {
        head += "\r\n";
        append_field_text(head, h.name);
        head += ": ";
        append_field_text(head, h.value);
      }
      // HEAD: the GET answer's header, its Content-Length too, no body.
      head += "\r\nContent-Length: ";
      head += std::to_string(out->body.size());
      if (!keep && version_ != 10) head += "\r\nConnection: close";
      if (keep && version_ == 10) head += "\r\nConnection: keep-alive";
      head += "\r\n\r\n";
      stream_.expires_after(owner_->options.write_timeout);
      std::array<asio::const_buffer, 2> buffers{
          asio::buffer(out->head), head_request_ ? asio::const_buffer{} : asio::buffer(out->body)};
      asio::async_write(stream_, buffers,
                        [self = shared_from_this(), out, keep](beast::error_code ec, std::size_t) {
                          if (ec || !keep) return self->close();
                          self->read_next();
                        });
    }

    struct outgoing {
      std::string head, body;
    };

    /// A field name or value as written by our own handlers; a line break
    /// in one would end the head early, so it becomes a space.
    static void append_field_text(std::string& out, std::string_view text) {
      for (char c : text) out.push_back(c == '\r' || c == '\n' ? ' ' : c);
    }

    void close() {
      if (closed_) return;
      closed_ = true;
      deadline_.cancel();
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      stream_.socket().close(ignored);
    }

    std::shared_ptr<impl> owner_;
    beast::tcp_stream stream_;
    asio::steady_timer deadline_;
    beast::flat_buffer buffer_;
    std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
    unsigned version_ = 11;
    bool keep_alive_ = true;
    bool awaiting_request_ = false;
    bool head_request_ = false;
    bool closed_ = false;
  };

  void accept_next() {
    auto& context = *contexts[next_context];
    next_context = (next_context + 1) % contexts.size();
    acceptor->async_accept(context,
                           [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
                             if (ec == asio::error::operation_aborted || !self->acceptor->is_open())
                               return;
                             if (!ec) {
                               self->on_accept(std::move(socket));
                               return self->accept_next();
                             }
                             // Out of descriptors or similar: retrying at once
                             // would spin; wait a little.
                             auto timer = std::make_shared<asio::steady_timer>(
                                 self->acceptor->get_executor(), std::chrono::milliseconds{50});
                             timer->async_wait([self, timer](beast::error_code) {
                               if (self->acceptor->is_open()) self->accept_next();
                             });
                           });
  }

  void on_accept(tcp::socket socket) {
    std::size_t open = 0;
    {
      std::lock_guard lock{sessions_mutex};
      open = sessions.size();
    }
    if (open >= options.max_connections || draining) {
      ++refused;
      // A fresh socket's send buffer is empty: this short write cannot block.
      static const std::string body =
          problem(503, "too-many-connections",
                  "the node has reached its connection limit; retry later")
              .body;
      std::string text =
          "HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
          "application/problem+json\r\nRetry-After: 1\r\nConnection: close\r\n"
          "Content-Length: " +
          std::to_string(body.size()) + "\r\n\r\n" + body;
      beast::error_code ignored;
      socket.non_blocking(true, ignored);
      socket.write_some(asio::buffer(text), ignored);
      socket.shutdown(tcp::socket::shutdown_send, ignored);
      socket.close(ignored);
      return;
    }
    ++accepted;
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    std::make_shared<session>(shared_from_this(), std::move(socket))->start();
  }

  std::vector<std::shared_ptr<session>> live_sessions() {
    std::vector<std::shared_ptr<session>> out;
    std::lock_guard lock{sessions_mutex};
    for (auto* s : sessions)
      if (auto p = s->weak_from_this().lock()) out.push_back(std::move(p));
    return out;
  }
};

server::server(server_options options, handler on_request) : impl_(std::make_shared<impl>()) {
  impl_->options = std::move(options);
  impl_->on_request = std::move(on_request);
}

server::~server() { shutdown(std::chrono::milliseconds{0}); }

void server::start() {
  auto& s = *impl_;
  int threads = s.options.io_threads > 0 ? s.options.io_threads
                                         : static_cast<int>(std::thread::hardware_concurrency());
  threads = std::max(threads, 1);
  for (int i = 0; i < threads; ++i) {
    s.contexts.push_back(std::make_unique<asio::io_context>(1));
    s.guards.push_back(asio::make_work_guard(*s.contexts.back()));
  }
  try {
    auto address = asio::ip::make_address(s.options.address);
    s.acceptor = std::make_unique<tcp::acceptor>(*s.contexts.front());
    tcp::endpoint endpoint{address, s.options.port};
    s.acceptor->open(endpoint.protocol());
    s.acceptor->set_option(asio::socket_base::reuse_address(true));
    s.acceptor->bind(endpoint);
    s.acceptor->listen(asio::socket_base::max_listen_connections);
    s.bound_port = s.acceptor->local_endpoint().port();
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot listen on " + s.options.address + ":" +
                             std::to_string(s.options.port) + ": " + e.what());
  }
  s.accept_next();
  for (auto& context : s.contexts)
    s.threads.emplace_back([c = context.get()] {
      pthread_setname_np(pthread_self(), "troupe.http");
      c->run();
    });
}

std::uint16_t server::port() const { return impl_->bound_port; }

bool server::shutdown(std::chrono::milliseconds timeout) {
  auto& s = *impl_;
  if (s.stopped || s.contexts.empty()) return true;
  s.stopped = true;
  s.draining = true;
  // Close the listener on its own thread (acceptor operations are not
  // thread-safe against the pending accept).
  {
    auto closed = std::make_shared<std::promise<void>>();
    auto done = closed->get_future();
    asio::post(*s.contexts.front(), [self = impl_, closed] {
      beast::error_code ignored;
      self->acceptor->close(ignored);
      closed->set_value();
    });
    done.wait_for(std::chrono::seconds{5});
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool finished = true;
  while (true) {
    for (auto& session : s.live_sessions()) session->close_if_idle();
    std::unique_lock lock{s.sessions_mutex};
    if (s.sessions.empty()) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      finished = s.in_flight == 0;
      lock.unlock();
      for (auto& session : s.live_sessions()) session->force_close();
      break;
    }
    s.sessions_changed.wait_for(lock, std::chrono::milliseconds{50});
  }
  s.guards.clear();
  // Give forced closes a moment to run, then stop whatever is left.
  auto stop_by = std::chrono::steady_clock::now() + std::chrono::seconds{2};
  while (std::chrono::steady_clock::now() < stop_by) {
    std::unique_lock lock{s.sessions_mutex};
    if (s.sessions.empty()) break;
    s.sessions_changed.wait_for(lock, std::chrono::milliseconds{20});
  }
  for (auto& context : s.contexts) context->stop();
  for (auto& t : s.threads)
    if (t.joinable()) t.join();
  // The contexts stay: a responder still held by the runtime may post to
  // them (into a stopped context, harmlessly) until the node stops.
  return finished;
}

server_stats server::stats() const {
  auto& s = *impl_;
  server_stats out;
  {
    std::lock_guard lock{s.sessions_mutex};
    out.connections_open = static_cast<std::int64_t>(s.sessions.size());
  }
  out.connections_accepted = s.accepted;
  out.connections_refused = s.refused;
  out.requests = s.requests;
  out.requests_in_flight = s.in_flight;
  out.malformed_requests = s.malformed;
  return out;
}

}  // namespace troupe::http
