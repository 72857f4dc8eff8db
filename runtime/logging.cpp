#include "runtime/logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <unistd.h>

#include <chrono>
#include <mutex>

namespace troupe {

namespace {

/// Formats each record as one JSON object per line, escaping the message so
/// any log text stays valid JSON.
class json_formatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    using namespace std::chrono;
    auto t = msg.time;
    auto secs = time_point_cast<seconds>(t);
    auto micros = duration_cast<microseconds>(t - secs).count();
    std::time_t tt = system_clock::to_time_t(t);
    std::tm utc{};
    gmtime_r(&tt, &utc);
    char stamp[40];
    auto n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
    append(dest, "{\"time\":\"");
    append(dest, std::string_view(stamp, n));
    fmt::format_to(std::back_inserter(dest), ".{:06}Z\",\"level\":\"", micros);
    auto level = spdlog::level::to_string_view(msg.level);
    append(dest, std::string_view(level.data(), level.size()));
    append(dest, "\",\"logger\":\"");
    escape(dest, std::string_view(msg.logger_name.data(), msg.logger_name.size()));
    fmt::format_to(std::back_inserter(dest), "\",\"thread\":{},\"msg\":\"", msg.thread_id);
    escape(dest, std::string_view(msg.payload.data(), msg.payload.size()));
    append(dest, "\"}\n");
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<json_formatter>();
  }

 private:
  static void append(spdlog::memory_buf_t& dest, std::string_view s) {
    dest.append(s.data(), s.data() + s.size());
  }
  static void escape(spdlog::memory_buf_t& dest, std::string_view s) {
    for (char c : s) {
      switch (c) {
        case '"': append(dest, "\\\""); break;
        case '\\': append(dest, "\\\\"); break;
        case '\n': append(dest, "\\n"); break;
        case '\r': append(dest, "\\r"); break;
        case '\t': append(dest, "\\t"); break;
        default:
          if (static_cast<unsigned char>(c) < 0x20)
            fmt::format_to(std::back_inserter(dest), "\\u{:04x}", static_cast<int>(c));
          else
            dest.push_back(c);
      }
    }
  }
};

std::mutex setup_mutex;
spdlog::sink_ptr shared_sink;
spdlog::level::level_enum shared_level = spdlog::level::info;

spdlog::sink_ptr make_sink(std::string_view format) {
  spdlog::sink_ptr sink;
  if (format == "json") {
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    sink->set_formatter(std::make_unique<json_formatter>());
  } else {
    // Colours only on a terminal; the colour sink checks isatty itself.
    sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>(spdlog::color_mode::automatic);
    sink->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [%n] %v");
  }
  return sink;
}

}  // namespace

void setup_logging(std::string_view level, std::string_view format) {
  std::lock_guard lock{setup_mutex};
  shared_sink = make_sink(format);
  shared_level = spdlog::level::from_str(std::string(level));
  auto root = std::make_shared<spdlog::logger>("troupe", shared_sink);
  root->set_level(shared_level);
  spdlog::set_default_logger(root);
  // Loggers created before set-up keep working with the new sink and level.
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) {
    l->sinks().assign(1, shared_sink);
    l->set_level(shared_level);
  });
}

std::shared_ptr<spdlog::logger> logger(const std::string& name) {
  std::lock_guard lock{setup_mutex};
  if (auto existing = spdlog::get(name)) return existing;
  if (!shared_sink) shared_sink = make_sink("text");
  auto l = std::make_shared<spdlog::logger>(name, shared_sink);
  l->set_level(shared_level);
  spdlog::register_logger(l);
  return l;
}

}  // namespace troupe
