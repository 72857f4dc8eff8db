#include "tools/load/engine.hpp"

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

namespace troupe::load {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

constexpr std::string_view api = "/api/v1";
/// Open loop: flows started but not finished, per worker, beyond which a
/// due flow is not started and counted as "client-overloaded" (the client
/// must not grow without bound when the target cannot keep up).
constexpr std::size_t max_active_flows = 100'000;
/// The per-second timeline (a histogram of ~26 KB per second and worker)
/// covers the first hour of the measured part; totals cover all of it.
constexpr std::size_t max_timeline_seconds = 3600;
constexpr std::int64_t book_stock = 1'000'000'000;
constexpr std::int64_t credit_limit = 4'000'000'000'000;

std::int64_t micros_between(clock_type::time_point from, clock_type::time_point to) {
  return std::chrono::duration_cast<std::chrono::microseconds>(to - from).count();
}

/// The problem type slug of an error body ("not-found"), or "".
std::string problem_slug(const std::string& body) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec || !v.is_object()) return {};
  const auto* type = v.as_object().if_contains("type");
  if (type == nullptr || !type->is_string()) return {};
  std::string t(type->as_string());
  auto slash = t.rfind('/');
  return slash == std::string::npos ? t : t.substr(slash + 1);
}

// ---- a blocking client for the few requests outside the run ---------------

struct simple_reply {
  int status = 0;
  std::string body;
  std::string error;
};

simple_reply simple_request(const endpoint& target, http::verb method, const std::string& path,
                            const std::string& body, const std::string& token,
                            std::chrono::milliseconds timeout = std::chrono::milliseconds{5000}) {
  simple_reply out;
  try {
    asio::io_context io;
    beast::tcp_stream stream(io);
    stream.expires_after(timeout);
    stream.connect(tcp::endpoint(asio::ip::make_address(target.host), target.port));
    http::request<http::string_body> req{method, path, 11};
    req.set(http::field::host, target.host);
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    if (!body.empty()) req.set(http::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    http::read(stream, buffer, parser);
    out.status = parser.get().result_int();
    out.body = parser.get().body();
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  return out;
}

// ---- flows ----------------------------------------------------------------

enum class scenario_kind { place_complete, checkout, browse, seed };

struct request_spec {
  http::verb method = http::verb::get;
  std::string target;
  std::string body;
  const char* kind = "";
  bool command = false;
};

struct flow {
  scenario_kind kind = scenario_kind::browse;
  clock_type::time_point intended;    // when the flow was due to start
  clock_type::time_point step_start;  // when the current request was due
  bool measured = false;              // started inside the measured window
  bool failed = false;
  int step = 0;
  int buyer = -1;
  std::int64_t seen_version = 0;  // checkout: the order's version seen last
  std::string order_id;
  request_spec request;
};

// ---- per-worker statistics ------------------------------------------------

struct worker_stats {
  std::mutex mutex;
  run_report part;
  std::vector<std::string> acknowledged;
  // For the progress line (whole measured part so far).
  std::int64_t progress_requests = 0, progress_errors = 0;
  histogram progress_latency;
};

class worker;

class connection {
 public:
  connection(worker& w, asio::io_context& io, const endpoint& target)
      : worker_(w), stream_(io), target_(target) {}

  void send(flow* f);
  const endpoint& target() const { return target_; }

 private:
  void write();
  void read();
  void fail(const std::string& kind, const boost::system::error_code& ec);

  worker& worker_;
  beast::tcp_stream stream_;
  const endpoint& target_;
  bool connected_ = false;
  flow* flow_ = nullptr;
  std::string request_;  // the whole request, written as it goes on the wire
  beast::flat_buffer buffer_;
  std::optional<http::response_parser<http::string_body>> parser_;
};

struct shared_state {
  const load_options* options = nullptr;
  std::string token;
  clock_type::time_point start, measure_start, measure_end;
  bool by_count = false;
  std::atomic<std::int64_t> measured_flows_started{0};
  std::atomic<bool> stop_starting{false};
  std::vector<std::pair<scenario_kind, double>> mix;  // cumulative weights
  std::vector<request_spec> seed_requests;
  std::atomic<std::size_t> next_seed{0};
  std::atomic<std::int64_t> seed_failures{0};
  std::mutex seed_error_mutex;
  std::string seed_error;
};

class worker {
 public:
  worker(shared_state& shared, std::size_t index, std::size_t workers, int connections,
         std::optional<double> rate)
      : shared_(shared),
        opts_(*shared.options),
        index_(index),
        workers_(workers),
        rate_(rate),
        concurrency_(static_cast<std::size_t>(connections)),
        scheduler_(io_),
        random_(std::hash<std::string>{}(opts_.run_id) + index * 7919) {
    for (int c = 0; c < connections; ++c) {
      const auto& target =
          opts_.targets[(index + workers * static_cast<std::size_t>(c)) % opts_.targets.size()];
      connections_.push_back(std::make_unique<connection>(*this, io_, target));
      idle_.push_back(connections_.back().get());
    }
    // Buyers are split between workers so a checkout owns its buyer's basket.
    for (int b = static_cast<int>(index); b < opts_.buyers; b += static_cast<int>(workers))
      free_buyers_.push_back(b);
  }

  void run(scenario_kind only) {
    only_ = only;
    asio::post(io_, [this] { start(); });
    io_.run();
  }

  worker_stats& stats() { return stats_; }

  // Called by connections.
  void answered(connection& c, flow* f, int status, const std::string& body);
  void failed(connection& c, flow* f, const std::string& kind);
  void connection_free(connection& c);
  void connection_free_later(connection& c);
  const std::string& token() const { return shared_.token; }
  std::chrono::milliseconds request_timeout() const { return opts_.request_timeout; }

 private:
  void start() {
    if (rate_) {
      schedule_tick();
    } else {
      for (std::size_t i = 0; i < concurrency_; ++i) start_flow(clock_type::now());
    }
  }

  // Open loop: flow k of this worker is due at start + (k + phase) / rate.
  void schedule_tick() {
    auto now = clock_type::now();
    double per_worker = *rate_ / static_cast<double>(workers_);
    double phase = static_cast<double>(index_) / static_cast<double>(workers_);
    while (!shared_.stop_starting.load(std::memory_order_relaxed)) {
      auto due = shared_.start +
                 std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(
                     (static_cast<double>(next_due_) + phase) / per_worker));
      if (due > now) {
        scheduler_.expires_at(due);
        scheduler_.async_wait([this](const boost::system::error_code& ec) {
          if (!ec) schedule_tick();
        });
        return;
      }
      ++next_due_;
      if (active_ >= max_active_flows) {
        if (due >= shared_.measure_start) note_error("client-overloaded (flow not started)", true);
        continue;
      }
      start_flow(due);
    }
    maybe_finish();
  }

  bool window_open(clock_type::time_point intended) {
    if (shared_.stop_starting.load(std::memory_order_relaxed)) return false;
    if (shared_.by_count) {
      if (intended >= shared_.measure_start &&
          shared_.measured_flows_started.fetch_add(1) >= *opts_.flow_count) {
        shared_.stop_starting = true;
        return false;
      }
      return true;
    }
    if (intended >= shared_.measure_end) {
      shared_.stop_starting = true;
      return false;
    }
    return true;
  }

  scenario_kind pick_scenario() {
    if (shared_.mix.empty()) return only_;  // not a mixed run
    double x = std::uniform_real_distribution<double>(0, shared_.mix.back().second)(random_);
    for (const auto& [kind, upto] : shared_.mix)
      if (x < upto) return kind;
    return shared_.mix.back().first;
  }

  void start_flow(clock_type::time_point intended) {
    if (!window_open(intended)) return maybe_finish();
    flow* f = nullptr;
    if (spare_flows_.empty()) {
      storage_.push_back(std::make_unique<flow>());
      f = storage_.back().get();
    } else {
      f = spare_flows_.back();
      spare_flows_.pop_back();
      *f = flow{};
    }
    f->kind = pick_scenario();
    f->intended = intended;
    f->step_start = intended;
    f->measured = intended >= shared_.measure_start;
    ++active_;
    begin(f);
  }

  int random_book() { return std::uniform_int_distribution<int>(0, opts_.books - 1)(random_); }

  json::array order_lines() {
    json::array items;
    std::vector<int> chosen;
    while (static_cast<int>(chosen.size()) < opts_.items_per_order) {
      int b = random_book();
      if (std::find(chosen.begin(), chosen.end(), b) != chosen.end()) continue;
      chosen.push_back(b);
      items.push_back(
          json::object{{"book_id", opts_.prefix + "-book-" + std::to_string(b)}, {"quantity", 1}});
    }
    return items;
  }

  std::string new_order_id() {
    return opts_.prefix + "-" + opts_.run_id + "-" + std::to_string(index_) + "-" +
           std::to_string(++orders_);
  }

  std::string buyer_id(int b) const { return opts_.prefix + "-buyer-" + std::to_string(b); }

  // First request of a flow.
  void begin(flow* f) {
    auto& r = f->request;
    switch (f->kind) {
      case scenario_kind::place_complete: {
        f->order_id = new_order_id();
        r = {http::verb::post, std::string(api) + "/orders",
             json::serialize(json::object{{"order_id", f->order_id},
                                          {"buyer_id", buyer_id(std::uniform_int_distribution<int>(
                                                           0, opts_.buyers - 1)(random_))},
                                          {"items", order_lines()}}),
             "place", true};
        break;
      }
      case scenario_kind::checkout: {
        if (free_buyers_.empty()) {
          waiting_for_buyer_.push_back(f);  // its latency keeps running
          return;
        }
        f->buyer = free_buyers_.front();
        free_buyers_.pop_front();
        f->order_id = new_order_id();
        r = {http::verb::put, std::string(api) + "/baskets/" + buyer_id(f->buyer),
             json::serialize(json::object{{"items", order_lines()}}), "basket", true};
        break;
      }
      case scenario_kind::browse: {
        std::string q = std::string(api) + "/books?page_size=20";
        switch (std::uniform_int_distribution<int>(0, 3)(random_)) {
          case 0:
            q += "&category_id=" + opts_.prefix + "-category-" +
                 std::to_string(
                     std::uniform_int_distribution<int>(0, opts_.categories - 1)(random_));
            break;
          case 1:
            q += "&author_id=" + opts_.prefix + "-author-" +
                 std::to_string(std::uniform_int_distribution<int>(0, opts_.authors - 1)(random_));
            break;
          case 2:
            q += "&name=" + std::to_string(std::uniform_int_distribution<int>(1, 99)(random_));
            break;
          default: {
            int low = std::uniform_int_distribution<int>(500, 5000)(random_);
            q += "&min_price=" + std::to_string(low) + "&max_price=" + std::to_string(low + 500);
          }
        }
        q += "&page=" + std::to_string(std::uniform_int_distribution<int>(1, 3)(random_));
        r = {http::verb::get, std::move(q), "", "browse", false};
        break;
      }
      case scenario_kind::seed: {
        auto i = shared_.next_seed.fetch_add(1);
        if (i >= shared_.seed_requests.size()) {
          shared_.stop_starting = true;  // the list is done: no new flows
          return finish(f);
        }
        r = shared_.seed_requests[i];
        break;
      }
    }
    ready(f);
  }

  void ready(flow* f) {
    if (!idle_.empty()) {
      auto* c = idle_.front();
      idle_.pop_front();
      c->send(f);
    } else {
      waiting_.push_back(f);
    }
  }

  struct order_answer {
    std::string status;
    std::int64_t version = 0;
  };
  static order_answer order_fields(const std::string& body) {
    order_answer a;
    boost::system::error_code ec;
    auto v = json::parse(body, ec);
    if (ec || !v.is_object()) return a;
    const auto& o = v.as_object();
    if (const auto* s = o.if_contains("status"); s && s->is_string())
      a.status = std::string(s->as_string());
    if (const auto* n = o.if_contains("version"); n && n->is_int64()) a.version = n->as_int64();
    return a;
  }

  // The next order-status request of a checkout: a long poll past the
  // version seen so far (--status-wait), or a plain poll, which pauses
  // first. A long poll pauses too when the last one saw no change.
  void ask_status(flow* f, std::int64_t seen_version, bool moved) {
    bool pause = opts_.status_wait.count() == 0 || !moved;
    f->seen_version = seen_version;
    auto target = std::string(api) + "/orders/" + f->order_id;
    if (opts_.status_wait.count() > 0)
      target += "?after_version=" + std::to_string(seen_version) +
                "&wait_ms=" + std::to_string(opts_.status_wait.count());
    f->request = {http::verb::get, std::move(target), "", "order-status", false};
    if (!pause) {
      f->step_start = clock_type::now();
      return ready(f);
    }
    poll_later(f);
  }

  void poll_later(flow* f) {
    // Poll more rarely the longer the saga takes: a quarter of the time so
    // far, 5..100 ms, so the end-to-end figure is within ~25 % + 5 ms of
    // the truth without a poll storm.
    auto elapsed = clock_type::now() - f->intended;
    auto delay = std::clamp<clock_type::duration>(elapsed / 4, std::chrono::milliseconds{5},
                                                  std::chrono::milliseconds{100});
    auto timer = std::make_shared<asio::steady_timer>(io_, delay);
    timer->async_wait([this, f, timer](const boost::system::error_code&) {
      f->step_start = clock_type::now();
      ready(f);
    });
  }

  void record(flow* f, const char* kind, int status, bool ok, bool command,
              clock_type::time_point now, const std::string& error_kind, const endpoint& target) {
    if (!f->measured) return;
    auto micros = micros_between(f->step_start, now);
    std::lock_guard lock{stats_.mutex};
    auto& p = stats_.part;
    p.latency[kind].record(micros);
    p.latency["all"].record(micros);
    ++p.requests;
    if (command) {
      ++p.commands;
      if (ok) ++p.commands_ok;
    }
    ++p.status_counts[status];
    if (!ok) ++p.errors_by_kind[error_kind];
    auto& t = p.per_target[target.text];
    ++t.first;
    if (!ok) ++t.second;
    ++stats_.progress_requests;
    if (!ok) ++stats_.progress_errors;
    stats_.progress_latency.record(micros);
    if (now >= shared_.measure_start) {
      auto slice = static_cast<std::size_t>(
          std::chrono::duration_cast<std::chrono::seconds>(now - shared_.measure_start).count());
      if (slice < max_timeline_seconds) {
        while (p.timeline.size() <= slice) {
          p.timeline.emplace_back();
          p.timeline.back().start_seconds = static_cast<double>(p.timeline.size() - 1);
        }
        ++p.timeline[slice].requests;
        if (!ok) ++p.timeline[slice].errors;
        p.timeline[slice].latency.record(micros);
      }
    }
  }

  void note_error(const std::string& kind, bool measured) {
    if (!measured) return;
    std::lock_guard lock{stats_.mutex};
    ++stats_.part.errors_by_kind[kind];
    ++stats_.progress_errors;
  }

  void finish(flow* f) {
    if (f->measured && f->kind != scenario_kind::seed) {
      std::lock_guard lock{stats_.mutex};
      ++stats_.part.flows;
      if (f->failed) ++stats_.part.flows_failed;
      if (!f->failed)
        stats_.part.latency["flow"].record(micros_between(f->intended, clock_type::now()));
    }
    if (f->buyer >= 0) {
      free_buyers_.push_back(f->buyer);
      if (!waiting_for_buyer_.empty()) {
        auto* next = waiting_for_buyer_.front();
        waiting_for_buyer_.pop_front();
        asio::post(io_, [this, next] { begin(next); });
      }
    }
    --active_;
    spare_flows_.push_back(f);
    // Closed loop: the next flow takes this one's place.
    if (!rate_) start_flow(clock_type::now());
    maybe_finish();
  }

  void maybe_finish() {
    if (shared_.stop_starting.load(std::memory_order_relaxed) && active_ == 0) {
      scheduler_.cancel();
      io_.stop();  // sockets close with the connections
    }
  }

  // The scenario's next step after an answer.
  void advance(flow* f, int status, const std::string& body, const endpoint& target) {
    auto now = clock_type::now();
    const auto& r = f->request;
    bool ok = false;
    std::string error_kind;
    auto expect = [&](std::initializer_list<int> good) {
      for (int g : good)
        if (status == g) ok = true;
      if (!ok) {
        auto slug = status == 0 ? std::string() : problem_slug(body);
        error_kind =
            std::string(r.kind) + " " + std::to_string(status) + (slug.empty() ? "" : " " + slug);
      }
    };
    // Records the answer; a wrong status ends the flow as failed.
    auto answered_ok = [&](int good, bool command) {
      expect({good});
      record(f, r.kind, status, ok, command, now, error_kind, target);
      if (!ok) {
        f->failed = true;
        finish(f);
      }
      return ok;
    };
    // The flow's next request, due now.
    auto next_request = [&](http::verb method, std::string target_path, std::string request_body,
                            const char* kind, bool command) {
      ++f->step;
      f->step_start = now;
      f->request = {method, std::move(target_path), std::move(request_body), kind, command};
      ready(f);
    };
    switch (f->kind) {
      case scenario_kind::seed: {
        expect({200, 201, 409});
        if (!ok) {
          ++shared_.seed_failures;
          std::lock_guard lock{shared_.seed_error_mutex};
          if (shared_.seed_error.empty())
            shared_.seed_error =
                r.target + " answered " + std::to_string(status) + ": " + body.substr(0, 300);
        }
        f->step_start = now;
        begin(f);  // the next seed request, or the end
        return;
      }
      case scenario_kind::browse:
        if (answered_ok(200, false)) finish(f);
        return;
      case scenario_kind::place_complete:
        if (f->step == 0) {
          if (!answered_ok(201, true)) return;
          acknowledge(f);
          return next_request(http::verb::post,
                              std::string(api) + "/orders/" + f->order_id + "/complete", "",
                              "complete", true);
        }
        if (answered_ok(200, true)) finish(f);
        return;
      case scenario_kind::checkout:
        if (f->step == 0) {
          if (!answered_ok(200, true)) return;
          return next_request(http::verb::post, std::string(api) + "/orders",
                              json::serialize(json::object{{"order_id", f->order_id},
                                                           {"buyer_id", buyer_id(f->buyer)}}),
                              "place", true);
        }
        if (f->step == 1) {
          if (!answered_ok(201, true)) return;
          acknowledge(f);
          f->step = 2;
          auto placed = order_fields(body);
          return ask_status(f, placed.version, true);  // a first ask goes at once
        }
        {
          expect({200});
          record(f, r.kind, status, ok, false, now, error_kind, target);
          order_answer order;
          if (ok) order = order_fields(body);
          if (order.status == "completed" || order.status == "cancelled") {
            outcome(f, order.status);
            f->failed = order.status != "completed";
            return finish(f);
          }
          if (now - f->intended > opts_.saga_timeout) {
            outcome(f, "unfinished");
            f->failed = true;
            return finish(f);
          }
          // A long poll that came back with a newer version is asked again
          // at once; one that did not (its wait ran out, or the node could
          // not wait) pauses like a poll, so a node that answers at once is
          // not asked in a tight loop.
          bool moved = order.version > f->seen_version;
          return ask_status(f, std::max(order.version, f->seen_version), moved);
        }
    }
  }

  void acknowledge(flow* f) {
    std::lock_guard lock{stats_.mutex};
    stats_.acknowledged.push_back(f->order_id);
  }

  void outcome(flow* f, const std::string& what) {
    if (!f->measured) return;
    std::lock_guard lock{stats_.mutex};
    ++stats_.part.saga_outcomes[what];
  }

  shared_state& shared_;
  const load_options& opts_;
  std::size_t index_, workers_;
  std::optional<double> rate_;
  std::size_t concurrency_;
  scenario_kind only_ = scenario_kind::browse;
  asio::io_context io_;
  asio::steady_timer scheduler_;
  std::mt19937_64 random_;
  std::vector<std::unique_ptr<connection>> connections_;
  std::deque<connection*> idle_;
  std::deque<flow*> waiting_;
  std::deque<int> free_buyers_;
  std::deque<flow*> waiting_for_buyer_;
  // Flows are reused: storage_ only grows to the most flows ever active.
  std::vector<std::unique_ptr<flow>> storage_;
  std::vector<flow*> spare_flows_;
  std::size_t active_ = 0;
  std::int64_t next_due_ = 0;
  std::int64_t orders_ = 0;
  worker_stats stats_;

  friend class connection;
};

void worker::answered(connection& c, flow* f, int status, const std::string& body) {
  advance(f, status, body, c.target());
  connection_free(c);
}

void worker::failed(connection& c, flow* f, const std::string& kind) {
  auto now = clock_type::now();
  const auto& r = f->request;
  std::string error_kind = std::string(r.kind) + " " + kind;
  if (f->kind == scenario_kind::seed) {
    ++shared_.seed_failures;
    {
      std::lock_guard lock{shared_.seed_error_mutex};
      if (shared_.seed_error.empty()) shared_.seed_error = r.target + ": " + kind;
    }
    begin(f);
  } else {
    record(f, r.kind, 0, false, r.command, now, error_kind, c.target());
    if (f->kind == scenario_kind::checkout && f->step == 2) outcome(f, "unknown");
    f->failed = true;
    finish(f);
  }
  // A connection that could not connect rests a little before its next
  // request, so a node that is down is not hammered in a tight loop.
  connection_free_later(c);
}

void worker::connection_free(connection& c) {
  if (!waiting_.empty()) {
    auto* f = waiting_.front();
    waiting_.pop_front();
    return c.send(f);
  }
  idle_.push_back(&c);
}

void worker::connection_free_later(connection& c) {
  auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds{100});
  timer->async_wait([this, &c, timer](const boost::system::error_code&) { connection_free(c); });
}

void connection::send(flow* f) {
  flow_ = f;
  const auto& r = f->request;
  // Written by hand rather than through Beast's fields and serializer: the
  // generator shares the machine with the node it measures, so every
  // microsecond it spends per request is taken from the node.
  request_.clear();
  auto method = http::to_string(r.method);
  request_.append(method.data(), method.size());
  request_ += ' ';
  request_ += r.target;
  request_ += " HTTP/1.1\r\nHost: ";
  request_ += target_.host;
  if (!worker_.token().empty()) {
    request_ += "\r\nAuthorization: Bearer ";
    request_ += worker_.token();
  }
  if (!r.body.empty()) request_ += "\r\nContent-Type: application/json";
  if (!r.body.empty() || r.method == http::verb::post || r.method == http::verb::put) {
    request_ += "\r\nContent-Length: ";
    request_ += std::to_string(r.body.size());
  }
  request_ += "\r\n\r\n";
  request_ += r.body;
  if (connected_) return write();
  stream_.expires_after(worker_.request_timeout());
  stream_.async_connect(tcp::endpoint(asio::ip::make_address(target_.host), target_.port),
                        [this](const boost::system::error_code& ec) {
                          if (ec) return fail("connect", ec);
                          connected_ = true;
                          stream_.socket().set_option(tcp::no_delay(true));
                          write();
                        });
}

void connection::write() {
  stream_.expires_after(worker_.request_timeout());
  asio::async_write(stream_, asio::buffer(request_),
                    [this](const boost::system::error_code& ec, std::size_t) {
                      if (ec) return fail("write", ec);
                      read();
                    });
}

void connection::read() {
  parser_.emplace();
  parser_->body_limit(64 << 20);
  http::async_read(stream_, buffer_, *parser_,
                   [this](const boost::system::error_code& ec, std::size_t) {
                     if (ec) return fail("read", ec);
                     auto& res = parser_->get();
                     bool keep = res.keep_alive();
                     if (!keep) {
                       beast::error_code ignored;
                       stream_.socket().close(ignored);
                       connected_ = false;
                       buffer_.clear();
                     }
                     auto* f = flow_;
                     flow_ = nullptr;
                     worker_.answered(*this, f, res.result_int(), res.body());
                   });
}

void connection::fail(const std::string& stage, const boost::system::error_code& ec) {
  beast::error_code ignored;
  stream_.socket().close(ignored);
  connected_ = false;
  buffer_.clear();
  std::string kind;
  if (ec == beast::error::timeout)
    kind = "timeout (" + stage + ")";
  else if (ec == asio::error::connection_refused)
    kind = "connection refused";
  else if (ec == http::error::end_of_stream || ec == asio::error::eof ||
           ec == asio::error::connection_reset)
    kind = "connection closed (" + stage + ")";
  else
    kind = stage + ": " + ec.message();
  auto* f = flow_;
  flow_ = nullptr;
  worker_.failed(*this, f, kind);
}

void merge_into(run_report& into, const run_report& part) {
  into.flows += part.flows;
  into.flows_failed += part.flows_failed;
  into.requests += part.requests;
  into.commands += part.commands;
  into.commands_ok += part.commands_ok;
  for (const auto& [k, h] : part.latency) into.latency[k].merge(h);
  for (const auto& [k, n] : part.status_counts) into.status_counts[k] += n;
  for (const auto& [k, n] : part.errors_by_kind) into.errors_by_kind[k] += n;
  for (const auto& [k, n] : part.saga_outcomes) into.saga_outcomes[k] += n;
  for (const auto& [k, v] : part.per_target) {
    into.per_target[k].first += v.first;
    into.per_target[k].second += v.second;
  }
  if (into.timeline.size() < part.timeline.size()) {
    auto old = into.timeline.size();
    into.timeline.resize(part.timeline.size());
    for (auto i = old; i < into.timeline.size(); ++i)
      into.timeline[i].start_seconds = static_cast<double>(i);
  }
  for (std::size_t i = 0; i < part.timeline.size(); ++i) {
    into.timeline[i].requests += part.timeline[i].requests;
    into.timeline[i].errors += part.timeline[i].errors;
    into.timeline[i].latency.merge(part.timeline[i].latency);
  }
}

/// Samples the projections' lag from the first target's /metrics.
void sample_view_lag(const endpoint& target, const std::string& token,
                     std::map<std::string, double>& max_lag) {
  auto r = simple_request(target, http::verb::get, "/metrics", "", token,
                          std::chrono::milliseconds{2000});
  if (r.status != 200) return;
  constexpr std::string_view metric = "troupe_projection_lag_seconds{projection=\"";
  std::size_t at = 0;
  while ((at = r.body.find(metric, at)) != std::string::npos) {
    auto name_start = at + metric.size();
    auto name_end = r.body.find('"', name_start);
    auto value_start = r.body.find(' ', name_end);
    auto line_end = r.body.find('\n', name_start);
    if (name_end == std::string::npos || value_start == std::string::npos) break;
    try {
      double v = std::stod(r.body.substr(value_start + 1, line_end - value_start - 1));
      auto name = r.body.substr(name_start, name_end - name_start);
      max_lag[name] = std::max(max_lag[name], v);
    } catch (const std::exception&) {
    }
    at = name_end;
  }
}

std::string describe_progress(double seconds, std::int64_t requests, std::int64_t errors,
                              double rate, const histogram& latency) {
  char line[200];
  std::snprintf(line, sizeof line, "%6.0fs  %9.0f req/s  %8lld requests  %6lld errors  p99 %.2f ms",
                seconds, rate, static_cast<long long>(requests), static_cast<long long>(errors),
                static_cast<double>(latency.percentile(99)) / 1000.0);
  return line;
}

struct engine_run {
  shared_state shared;
  std::vector<std::unique_ptr<worker>> workers;
};

void run_workers(engine_run& run, scenario_kind kind, int connections, int threads,
                 std::optional<double> rate, const std::function<void()>& every_second) {
  for (int w = 0; w < threads; ++w) {
    int share = connections / threads + (w < connections % threads ? 1 : 0);
    run.workers.push_back(std::make_unique<worker>(run.shared, static_cast<std::size_t>(w),
                                                   static_cast<std::size_t>(threads), share, rate));
  }
  std::vector<std::thread> threads_running;
  std::atomic<int> done{0};
  for (auto& w : run.workers)
    threads_running.emplace_back([&w, kind, &done] {
      w->run(kind);
      ++done;
    });
  while (done.load() < threads) {
    std::this_thread::sleep_for(std::chrono::milliseconds{100});
    if (every_second) every_second();
  }
  for (auto& t : threads_running) t.join();
}

}  // namespace

token_result obtain_token(const load_options& options) {
  token_result out;
  if (!options.token.empty()) {
    out.token = options.token;
    return out;
  }
  auto r = simple_request(options.targets.front(), http::verb::post, "/api/v1/dev/tokens",
                          R"({"sub":"troupe-load","admin":true})", "");
  if (r.status == 0) {
    out.error = "cannot reach " + options.targets.front().text + ": " + r.error;
    return out;
  }
  if (r.status == 201) {
    boost::system::error_code ec;
    auto v = json::parse(r.body, ec);
    if (!ec && v.is_object() && v.as_object().contains("token"))
      out.token = std::string(v.at("token").as_string());
  }
  return out;  // 404: auth off or a real issuer (pass --token)
}

std::string seed_catalog(const load_options& o, const std::string& token,
                         const std::function<void(const std::string&)>& say) {
  engine_run run;
  run.shared.options = &o;
  run.shared.token = token;
  run.shared.start = run.shared.measure_start = clock_type::now();
  run.shared.measure_end = clock_type::time_point::max();
  auto add = [&](const std::string& path, json::object body) {
    run.shared.seed_requests.push_back(
        {http::verb::post, std::string(api) + path, json::serialize(body), "seed", true});
  };
  const auto& p = o.prefix;
  for (int i = 0; i < o.categories; ++i)
    add("/categories", {{"category_id", p + "-category-" + std::to_string(i)},
                        {"name", "Category " + std::to_string(i)}});
  for (int i = 0; i < o.publishers; ++i)
    add("/publishers", {{"publisher_id", p + "-publisher-" + std::to_string(i)},
                        {"name", "Publisher " + std::to_string(i)}});
  for (int i = 0; i < o.authors; ++i)
    add("/authors", {{"author_id", p + "-author-" + std::to_string(i)},
                     {"name", "Author " + std::to_string(i)}});
  for (int i = 0; i < o.books; ++i)
    add("/books", {{"book_id", p + "-book-" + std::to_string(i)},
                   {"name", "Book " + std::to_string(i)},
                   {"price", 500 + (i * 37) % 5000},
                   {"category_id", p + "-category-" + std::to_string(i % o.categories)},
                   {"publisher_id", p + "-publisher-" + std::to_string(i % o.publishers)},
                   {"author_ids", json::array{p + "-author-" + std::to_string(i % o.authors)}},
                   {"initial_stock", book_stock}});
  for (int i = 0; i < o.buyers; ++i)
    add("/accounts",
        {{"buyer_id", p + "-buyer-" + std::to_string(i)}, {"credit_limit", credit_limit}});
  if (say)
    say("seeding " + std::to_string(run.shared.seed_requests.size()) +
        " catalog entries and accounts (existing ones are kept)");
  // Closed loop, one flow per connection, each working through the list.
  int connections = std::min(32, static_cast<int>(run.shared.seed_requests.size()));
  run_workers(run, scenario_kind::seed, std::max(connections, 1), 1, std::nullopt, {});
  if (run.shared.seed_failures > 0)
    return std::to_string(run.shared.seed_failures.load()) + " of " +
           std::to_string(run.shared.seed_requests.size()) +
           " seeding requests failed; first: " + run.shared.seed_error;
  return {};
}

run_result run_load(const load_options& o, const std::string& token,
                    const std::function<void(const std::string&)>& progress) {
  engine_run run;
  auto& s = run.shared;
  s.options = &o;
  s.token = token;
  s.start = clock_type::now();
  s.measure_start = s.start + o.warmup;
  s.by_count = o.flow_count.has_value();
  s.measure_end = s.by_count ? clock_type::time_point::max() : s.measure_start + o.duration;
  scenario_kind kind = scenario_kind::browse;
  if (o.scenario == "place-complete") kind = scenario_kind::place_complete;
  if (o.scenario == "checkout") kind = scenario_kind::checkout;
  if (o.scenario == "mixed") {
    double upto = 0;
    for (const auto& [name, weight] : o.mix) {
      if (weight <= 0) continue;
      upto += weight;
      s.mix.emplace_back(name == "checkout"         ? scenario_kind::checkout
                         : name == "place-complete" ? scenario_kind::place_complete
                                                    : scenario_kind::browse,
                         upto);
    }
  }

  std::map<std::string, double> max_lag;
  auto last_tick = clock_type::now();
  std::int64_t last_requests = 0;
  auto every = [&] {
    auto now = clock_type::now();
    if (now - last_tick < std::chrono::seconds{1}) return;
    last_tick = now;
    sample_view_lag(o.targets.front(), token, max_lag);
    if (!progress) return;
    if (now < s.measure_start) {
      progress(
          "warming up, " +
          std::to_string(
              std::chrono::duration_cast<std::chrono::seconds>(s.measure_start - now).count()) +
          " s left");
      return;
    }
    std::int64_t requests = 0, errors = 0;
    histogram latency;
    for (auto& w : run.workers) {
      std::lock_guard lock{w->stats().mutex};
      requests += w->stats().progress_requests;
      errors += w->stats().progress_errors;
      latency.merge(w->stats().progress_latency);
    }
    double seconds = std::chrono::duration<double>(now - s.measure_start).count();
    progress(describe_progress(seconds, requests, errors,
                               static_cast<double>(requests - last_requests), latency));
    last_requests = requests;
  };
  run_workers(run, kind, o.connections, o.threads, o.rate, every);

  run_result out;
  auto& r = out.report;
  for (const auto& t : o.targets) r.target += (r.target.empty() ? "" : ",") + t.text;
  r.scenario = o.scenario;
  r.mode = o.rate ? "open" : "closed";
  r.target_rate = o.rate.value_or(0);
  r.connections = o.connections;
  r.warmup_seconds = std::chrono::duration<double>(o.warmup).count();
  auto end = clock_type::now();
  r.measured_seconds = std::chrono::duration<double>(
                           (s.by_count ? end : std::min(end, s.measure_end)) - s.measure_start)
                           .count();
  for (auto& w : run.workers) {
    merge_into(r, w->stats().part);
    auto& acked = w->stats().acknowledged;
    out.acknowledged_orders.insert(out.acknowledged_orders.end(), acked.begin(), acked.end());
  }
  r.max_view_lag_seconds = std::move(max_lag);
  return out;
}

}  // namespace troupe::load
