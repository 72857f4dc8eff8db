#include "tools/load/report.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <cstdio>
#include <string_view>

namespace troupe::load {
namespace {

namespace json = boost::json;

// Reports must never carry NaN or infinity: JSON has no spelling for them
// and an SVG coordinate "nan" makes the whole plot invalid.
double finite_or_zero(double value) { return std::isfinite(value) ? value : 0.0; }

double per_second(std::int64_t amount, double seconds) {
  if (!(seconds > 0) || !std::isfinite(seconds)) return 0.0;
  return static_cast<double>(amount) / seconds;
}

double to_ms(std::int64_t micros) { return static_cast<double>(micros) / 1000.0; }
double to_ms(double micros) { return finite_or_zero(micros) / 1000.0; }

std::string fixed(double value, int decimals) {
  char text[512];  // the widest finite double in %f is about 310 characters
  std::snprintf(text, sizeof text, "%.*f", decimals, finite_or_zero(value));
  return text;
}

/// Shortest readable spelling for axis labels (1, 0.1, 2500).
std::string compact(double value) {
  char text[64];
  std::snprintf(text, sizeof text, "%g", finite_or_zero(value));
  return text;
}

std::string pad_right(std::string text, std::size_t width) {
  if (text.size() < width) text.append(width - text.size(), ' ');
  return text;
}

std::string pad_left(const std::string& text, std::size_t width) {
  return text.size() < width ? std::string(width - text.size(), ' ') + text : text;
}

// "flow" and "all" summarise the other kinds, so they close the latency
// table instead of sitting alphabetically among them.
std::vector<std::string> latency_kinds_in_table_order(const run_report& report) {
  std::vector<std::string> kinds;
  for (const auto& [kind, ignored] : report.latency)
    if (kind != "flow" && kind != "all") kinds.push_back(kind);
  for (const char* summary : {"flow", "all"})
    if (report.latency.contains(summary)) kinds.emplace_back(summary);
  return kinds;
}

template <class Map>
std::size_t widest_key(const Map& map, std::size_t at_least) {
  std::size_t width = at_least;
  for (const auto& [key, ignored] : map) width = std::max(width, std::string_view(key).size());
  return width;
}

void append_counts(std::string& out, std::string_view title,
                   const std::map<std::string, std::int64_t>& counts) {
  if (counts.empty()) return;
  const auto key_width = widest_key(counts, 16) + 2;
  out.append("\n").append(title).append("\n");
  for (const auto& [key, count] : counts)
    out += "  " + pad_right(key, key_width) + pad_left(std::to_string(count), 10) + "\n";
}

// ---- table -----------------------------------------------------------------

void append_header(std::string& out, const run_report& report) {
  auto line = [&](std::string_view label, const std::string& value) {
    out += "  " + pad_right(std::string(label), 14) + value + "\n";
  };
  out += "troupe-load report\n";
  line("target", report.target);
  line("scenario", report.scenario);
  line("mode", report.mode);
  line("rate", report.target_rate > 0 ? fixed(report.target_rate, 2) + " flows/s" : "-");
  line("connections", std::to_string(report.connections));
  line("warm-up", fixed(report.warmup_seconds, 2) + " s");
  line("measured", fixed(report.measured_seconds, 2) + " s");
}

void append_throughput(std::string& out, const run_report& report) {
  auto line = [&](std::string_view label, double rate, const std::string& detail) {
    out += "  " + pad_right(std::string(label), 24) + pad_left(fixed(rate, 2), 12) + "  (" +
           detail + ")\n";
  };
  out += "\nThroughput\n";
  line("flows/s", report.flows_per_second(),
       std::to_string(report.flows) + " flows, " + std::to_string(report.flows_failed) + " failed");
  line("requests/s", report.requests_per_second(), std::to_string(report.requests) + " requests");
  line("successful commands/s", report.commands_per_second(),
       std::to_string(report.commands_ok) + " of " + std::to_string(report.commands) + " commands");
}

void append_latency(std::string& out, const run_report& report) {
  if (report.latency.empty()) return;
  const auto kinds = latency_kinds_in_table_order(report);
  const auto kind_width = widest_key(report.latency, 12) + 2;
  constexpr std::size_t number_width = 10;
  out += "\n" + pad_right("Latency (ms)", kind_width + 2);
  for (const char* column : {"count", "p50", "p90", "p99", "p99.9", "max", "mean"})
    out += pad_left(column, number_width);
  out += "\n";
  for (const auto& kind : kinds) {
    const histogram& h = report.latency.at(kind);
    out += "  " + pad_right(kind, kind_width) + pad_left(std::to_string(h.count()), number_width);
    if (h.count() == 0) {
      // Zeros would read as "instant"; a dash says "nothing measured".
      for (int column = 0; column < 6; ++column) out += pad_left("-", number_width);
    } else {
      for (double p : {50.0, 90.0, 99.0, 99.9})
        out += pad_left(fixed(to_ms(h.percentile(p)), 2), number_width);
      out += pad_left(fixed(to_ms(h.max()), 2), number_width);
      out += pad_left(fixed(to_ms(h.mean()), 2), number_width);
    }
    out += "\n";
  }
  for (const auto& kind : kinds) {
    const auto clamped = report.latency.at(kind).clamped();
    if (clamped > 0)
      out += "  (" + std::to_string(clamped) + " " + kind +
             " latencies exceeded the histogram range and count as its maximum)\n";
  }
}

void append_status_codes(std::string& out, const run_report& report) {
  if (report.status_counts.empty()) return;
  out += "\nStatus codes\n";
  for (const auto& [status, count] : report.status_counts) {
    const std::string label = status == 0 ? "no answer" : std::to_string(status);
    out += "  " + pad_right(label, 18) + pad_left(std::to_string(count), 10) + "\n";
  }
}

void append_view_lag(std::string& out, const run_report& report) {
  if (report.max_view_lag_seconds.empty()) return;
  const auto key_width = widest_key(report.max_view_lag_seconds, 16) + 2;
  out += "\nMax view lag (s)\n";
  for (const auto& [projection, lag] : report.max_view_lag_seconds)
    out += "  " + pad_right(projection, key_width) + pad_left(fixed(lag, 3), 10) + "\n";
}

void append_per_target(std::string& out, const run_report& report) {
  if (report.per_target.empty()) return;
  const auto key_width = widest_key(report.per_target, 24) + 2;
  out += "\n" + pad_right("Per target", key_width + 2) + pad_left("requests", 10) +
         pad_left("failures", 10) + "\n";
  for (const auto& [target, counts] : report.per_target)
    out += "  " + pad_right(target, key_width) + pad_left(std::to_string(counts.first), 10) +
           pad_left(std::to_string(counts.second), 10) + "\n";
}

void append_audit(std::string& out, const run_report& report) {
  if (!report.audit) return;
  const auto& checks = *report.audit;
  const auto failed = std::count_if(checks.begin(), checks.end(),
                                    [](const audit_check& check) { return !check.passed; });
  std::size_t name_width = 20;
  for (const auto& check : checks) name_width = std::max(name_width, check.name.size());
  name_width += 2;
  out += "\nAudit: " + std::string(failed == 0 ? "PASSED" : "FAILED") + " (" +
         std::to_string(failed) + " of " + std::to_string(checks.size()) + " checks failed)\n";
  const std::string continuation = "\n" + std::string(2 + 6 + name_width, ' ');
  for (const auto& check : checks) {
    // A multi-line detail stays under its column, not under the names.
    std::string detail;
    for (char c : check.detail) {
      if (c == '\n')
        detail += continuation;
      else
        detail += c;
    }
    out += "  " + std::string(check.passed ? "PASS  " : "FAIL  ") +
           pad_right(check.name, name_width) + detail + "\n";
  }
}

// ---- JSON ------------------------------------------------------------------

json::object latency_json(const histogram& h) {
  json::object o;
  o["count"] = h.count();
  o["min_ms"] = to_ms(h.min());
  o["p50_ms"] = to_ms(h.percentile(50));
  o["p90_ms"] = to_ms(h.percentile(90));
  o["p99_ms"] = to_ms(h.percentile(99));
  o["p99_9_ms"] = to_ms(h.percentile(99.9));
  o["max_ms"] = to_ms(h.max());
  o["mean_ms"] = to_ms(h.mean());
  o["clamped"] = h.clamped();
  return o;
}

json::object counts_json(const std::map<std::string, std::int64_t>& counts) {
  json::object o;
  for (const auto& [key, count] : counts) o[key] = count;
  return o;
}

// ---- SVG -------------------------------------------------------------------

/// Text and attribute values; characters XML 1.0 forbids become '?'.
std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r')
          out += '?';
        else
          out += c;
    }
  }
  return out;
}

std::string coordinate(double value) { return fixed(value, 1); }

/// The smallest 1, 2 or 5 times a power of ten that is >= value.
double nice_ceiling(double value) {
  if (!(value > 0) || !std::isfinite(value)) return 1;
  const double decade = std::pow(10.0, std::floor(std::log10(value)));
  for (double multiple : {1.0, 2.0, 5.0})
    if (multiple * decade >= value * (1 - 1e-12)) return multiple * decade;
  return 10 * decade;
}

struct plot_area {
  static constexpr double width = 900, height = 420;
  static constexpr double left = 70, right = 820, top = 56, bottom = 360;

  double duration_seconds = 1;
  int lowest_decade = 0, highest_decade = 2;  // latency axis, log10(ms)
  double throughput_top = 1;                  // right axis, requests/s

  double x(double seconds) const {
    const double share = std::clamp(seconds / duration_seconds, 0.0, 1.0);
    return left + share * (right - left);
  }
  double y_latency(double ms) const {
    const double lowest = std::pow(10.0, lowest_decade);
    const double decades = std::log10(std::max(ms, lowest)) - lowest_decade;
    const double share = std::clamp(decades / (highest_decade - lowest_decade), 0.0, 1.0);
    return bottom - share * (bottom - top);
  }
  double y_throughput(double per_second) const {
    const double share = std::clamp(per_second / throughput_top, 0.0, 1.0);
    return bottom - share * (bottom - top);
  }
};

constexpr double slice_seconds = 1.0;

plot_area scale_for(const run_report& report) {
  plot_area area;
  const auto& timeline = report.timeline;
  double end = finite_or_zero(report.measured_seconds);
  if (!timeline.empty())
    end = std::max(end, finite_or_zero(timeline.back().start_seconds) + slice_seconds);
  area.duration_seconds = end > 0 ? end : 1;

  double smallest_ms = 0, largest_ms = 0;
  std::int64_t most_requests = 0;
  for (const auto& slice : timeline) {
    most_requests = std::max(most_requests, slice.requests);
    if (slice.latency.count() == 0) continue;
    for (double ms : {to_ms(slice.latency.percentile(50)), to_ms(slice.latency.max())}) {
      if (!(ms > 0)) continue;
      smallest_ms = smallest_ms > 0 ? std::min(smallest_ms, ms) : ms;
      largest_ms = std::max(largest_ms, ms);
    }
  }
  if (largest_ms > 0) {
    // Whole decades, never below 1 µs (the histogram's resolution).
    area.lowest_decade = std::max(-3, static_cast<int>(std::floor(std::log10(smallest_ms))));
    area.highest_decade = static_cast<int>(std::ceil(std::log10(largest_ms)));
    if (area.highest_decade <= area.lowest_decade) area.highest_decade = area.lowest_decade + 1;
  }
  // A round top that the largest second fits under, in steps of 1-2-5.
  const double step = nice_ceiling(static_cast<double>(most_requests) / 5);
  area.throughput_top = std::max(step, std::ceil(static_cast<double>(most_requests) / step) * step);
  return area;
}

void append_axes(std::string& out, const plot_area& area) {
  const std::string left = coordinate(area.left), right = coordinate(area.right);
  // Latency decades: gridlines across, labels on the left.
  out += "<g stroke=\"#c8c8c8\" stroke-width=\"1\">\n";
  for (int decade = area.lowest_decade; decade <= area.highest_decade; ++decade) {
    const auto y = coordinate(area.y_latency(std::pow(10.0, decade)));
    out += "<line x1=\"" + left + "\" y1=\"" + y + "\" x2=\"" + right + "\" y2=\"" + y + "\"/>\n";
  }
  out += "</g>\n<g text-anchor=\"end\" fill=\"#333333\">\n";
  for (int decade = area.lowest_decade; decade <= area.highest_decade; ++decade) {
    const auto y = area.y_latency(std::pow(10.0, decade));
    out += "<text x=\"" + coordinate(area.left - 6) + "\" y=\"" + coordinate(y + 4) + "\">" +
           compact(std::pow(10.0, decade)) + "</text>\n";
  }
  out += "</g>\n";

  // Throughput: labels on the right, no gridlines (they would fight the
  // latency grid).
  out += "<g text-anchor=\"start\" fill=\"#41ab5d\">\n";
  const double throughput_step = area.throughput_top / 5;
  for (int tick = 0; tick <= 5; ++tick) {
    const double value = tick * throughput_step;
    out += "<text x=\"" + coordinate(area.right + 6) + "\" y=\"" +
           coordinate(area.y_throughput(value) + 4) + "\">" + compact(value) + "</text>\n";
  }
  out += "</g>\n";

  // Seconds along the bottom, at most about ten labels.
  const double time_step = nice_ceiling(area.duration_seconds / 10);
  out += "<g text-anchor=\"middle\" fill=\"#333333\">\n";
  for (int tick = 0; tick * time_step <= area.duration_seconds * (1 + 1e-9); ++tick) {
    const double x = area.x(tick * time_step);
    out += "<line x1=\"" + coordinate(x) + "\" y1=\"" + coordinate(area.bottom) + "\" x2=\"" +
           coordinate(x) + "\" y2=\"" + coordinate(area.bottom + 5) + "\" stroke=\"#333333\"/>\n";
    out += "<text x=\"" + coordinate(x) + "\" y=\"" + coordinate(area.bottom + 18) + "\">" +
           compact(tick * time_step) + "</text>\n";
  }
  out += "</g>\n";

  out += "<rect x=\"" + left + "\" y=\"" + coordinate(area.top) + "\" width=\"" +
         coordinate(area.right - area.left) + "\" height=\"" + coordinate(area.bottom - area.top) +
         "\" fill=\"none\" stroke=\"#333333\"/>\n";
  out += "<text x=\"" + coordinate((area.left + area.right) / 2) + "\" y=\"" +
         coordinate(area.bottom + 40) +
         "\" text-anchor=\"middle\" fill=\"#333333\">seconds since the end of the warm-up</text>\n";
  const auto middle = coordinate((area.top + area.bottom) / 2);
  out += "<text x=\"20\" y=\"" + middle + "\" transform=\"rotate(-90 20 " + middle +
         ")\" text-anchor=\"middle\" fill=\"#333333\">latency (ms, log scale)</text>\n";
  out += "<text x=\"885\" y=\"" + middle + "\" transform=\"rotate(90 885 " + middle +
         ")\" text-anchor=\"middle\" fill=\"#41ab5d\">requests/s</text>\n";
}

void append_throughput_area(std::string& out, const plot_area& area,
                            const std::vector<time_slice>& timeline) {
  if (timeline.empty()) return;
  // A step outline: each second is a flat top as wide as the second.
  std::string points =
      coordinate(area.x(timeline.front().start_seconds)) + "," + coordinate(area.bottom);
  for (const auto& slice : timeline) {
    const auto y = coordinate(area.y_throughput(static_cast<double>(slice.requests)));
    points += " " + coordinate(area.x(slice.start_seconds)) + "," + y;
    points += " " + coordinate(area.x(slice.start_seconds + slice_seconds)) + "," + y;
  }
  points += " " + coordinate(area.x(timeline.back().start_seconds + slice_seconds)) + "," +
            coordinate(area.bottom);
  out += "<polygon points=\"" + points +
         "\" fill=\"#c7e9c0\" fill-opacity=\"0.6\" stroke=\"none\"/>\n";
}

/// One latency series; seconds without answers break the line rather than
/// drawing a slope through them.
void append_latency_series(std::string& out, const plot_area& area,
                           const std::vector<time_slice>& timeline, const std::string& colour,
                           double (*value_ms)(const histogram&)) {
  std::vector<std::string> run;
  auto flush = [&] {
    if (run.size() == 1) {
      const auto comma = run.front().find(',');
      out += "<circle cx=\"" + run.front().substr(0, comma) + "\" cy=\"" +
             run.front().substr(comma + 1) + "\" r=\"2.5\" fill=\"" + colour + "\"/>\n";
    } else if (run.size() > 1) {
      out += "<polyline fill=\"none\" stroke=\"" + colour + "\" stroke-width=\"1.5\" points=\"";
      for (std::size_t i = 0; i < run.size(); ++i) out += (i ? " " : "") + run[i];
      out += "\"/>\n";
    }
    run.clear();
  };
  for (const auto& slice : timeline) {
    if (slice.latency.count() == 0) {
      flush();
      continue;
    }
    run.push_back(coordinate(area.x(slice.start_seconds + slice_seconds / 2)) + "," +
                  coordinate(area.y_latency(value_ms(slice.latency))));
  }
  flush();
}

void append_error_ticks(std::string& out, const plot_area& area,
                        const std::vector<time_slice>& timeline) {
  for (const auto& slice : timeline) {
    if (slice.errors <= 0) continue;
    const auto x = coordinate(area.x(slice.start_seconds + slice_seconds / 2));
    out += "<line x1=\"" + x + "\" y1=\"" + coordinate(area.bottom) + "\" x2=\"" + x + "\" y2=\"" +
           coordinate(area.bottom - 10) + "\" stroke=\"#d62728\" stroke-width=\"2\"><title>" +
           std::to_string(slice.errors) + " errors in second " + compact(slice.start_seconds) +
           "</title></line>\n";
  }
}

struct legend_entry {
  std::string label;
  std::string colour;
  bool area;
};

void append_legend(std::string& out) {
  const legend_entry entries[] = {{"p50", "#1f77b4", false},
                                  {"p99", "#ff7f0e", false},
                                  {"max", "#9467bd", false},
                                  {"requests/s (right axis)", "#c7e9c0", true},
                                  {"seconds with errors", "#d62728", false}};
  double x = plot_area::left;
  constexpr double y = 42;
  for (const auto& entry : entries) {
    if (entry.area)
      out += "<rect x=\"" + coordinate(x) + "\" y=\"" + coordinate(y - 8) +
             "\" width=\"18\" height=\"10\" fill=\"" + entry.colour + "\"/>\n";
    else
      out += "<line x1=\"" + coordinate(x) + "\" y1=\"" + coordinate(y - 3) + "\" x2=\"" +
             coordinate(x + 18) + "\" y2=\"" + coordinate(y - 3) + "\" stroke=\"" + entry.colour +
             "\" stroke-width=\"2\"/>\n";
    out += "<text x=\"" + coordinate(x + 24) + "\" y=\"" + coordinate(y + 1) + "\">" +
           xml_escape(entry.label) + "</text>\n";
    x += 24 + 6.2 * static_cast<double>(entry.label.size()) + 20;  // ~6 px a glyph at 11 px
  }
}

std::string svg_title(const run_report& report) {
  // Only what is known: a report built by hand may lack any of it.
  std::vector<std::string> parts;
  if (!report.scenario.empty()) parts.push_back(report.scenario);
  if (!report.mode.empty()) parts.push_back(report.mode + " loop");
  if (report.target_rate > 0) parts.push_back(compact(report.target_rate) + " flows/s");
  if (report.connections > 0) parts.push_back(std::to_string(report.connections) + " connections");
  std::string title = "troupe-load";
  for (std::size_t i = 0; i < parts.size(); ++i) title += (i == 0 ? ": " : ", ") + parts[i];
  return title;
}

}  // namespace

double run_report::flows_per_second() const { return per_second(flows, measured_seconds); }

double run_report::requests_per_second() const { return per_second(requests, measured_seconds); }

double run_report::commands_per_second() const { return per_second(commands_ok, measured_seconds); }

bool run_report::audit_passed() const {
  if (!audit) return true;
  return std::all_of(audit->begin(), audit->end(),
                     [](const audit_check& check) { return check.passed; });
}

std::string render_table(const run_report& report) {
  std::string out;
  append_header(out, report);
  append_throughput(out, report);
  append_latency(out, report);
  append_status_codes(out, report);
  append_counts(out, "Errors", report.errors_by_kind);
  append_counts(out, "Saga outcomes", report.saga_outcomes);
  append_view_lag(out, report);
  append_per_target(out, report);
  append_audit(out, report);
  return out;
}

json::object to_json(const run_report& report) {
  json::object o;
  o["target"] = report.target;
  o["scenario"] = report.scenario;
  o["mode"] = report.mode;
  o["target_rate"] = finite_or_zero(report.target_rate);
  o["connections"] = report.connections;
  o["warmup_seconds"] = finite_or_zero(report.warmup_seconds);
  o["measured_seconds"] = finite_or_zero(report.measured_seconds);

  o["flows"] = report.flows;
  o["flows_failed"] = report.flows_failed;
  o["requests"] = report.requests;
  o["commands"] = report.commands;
  o["commands_ok"] = report.commands_ok;
  o["flows_per_second"] = report.flows_per_second();
  o["requests_per_second"] = report.requests_per_second();
  o["commands_per_second"] = report.commands_per_second();

  json::object latency;
  for (const auto& [kind, h] : report.latency) latency[kind] = latency_json(h);
  o["latency"] = std::move(latency);

  json::object status_counts;  // JSON keys are strings; "0" is "no answer"
  for (const auto& [status, count] : report.status_counts)
    status_counts[std::to_string(status)] = count;
  o["status_counts"] = std::move(status_counts);
  o["errors_by_kind"] = counts_json(report.errors_by_kind);
  o["saga_outcomes"] = counts_json(report.saga_outcomes);

  json::object view_lag;
  for (const auto& [projection, lag] : report.max_view_lag_seconds)
    view_lag[projection] = finite_or_zero(lag);
  o["max_view_lag_seconds"] = std::move(view_lag);

  json::object per_target;
  for (const auto& [target, counts] : report.per_target)
    per_target[target] = json::object{{"requests", counts.first}, {"failures", counts.second}};
  o["per_target"] = std::move(per_target);

  json::array timeline;
  timeline.reserve(report.timeline.size());
  for (const auto& slice : report.timeline) {
    // Seconds without answers report 0 ms, keeping every field a number.
    timeline.push_back(json::object{{"t", finite_or_zero(slice.start_seconds)},
                                    {"requests", slice.requests},
                                    {"errors", slice.errors},
                                    {"p50_ms", to_ms(slice.latency.percentile(50))},
                                    {"p99_ms", to_ms(slice.latency.percentile(99))},
                                    {"max_ms", to_ms(slice.latency.max())}});
  }
  o["timeline"] = std::move(timeline);

  if (report.audit) {
    json::array checks;
    for (const auto& check : *report.audit)
      checks.push_back(
          json::object{{"name", check.name}, {"passed", check.passed}, {"detail", check.detail}});
    o["audit"] = json::object{{"passed", report.audit_passed()}, {"checks", std::move(checks)}};
  }
  return o;
}

std::string render_svg(const run_report& report) {
  const plot_area area = scale_for(report);
  const auto& timeline = report.timeline;
  std::string out;
  out +=
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"900\" height=\"420\" "
      "viewBox=\"0 0 900 420\" font-family=\"sans-serif\" font-size=\"11\">\n";
  out += "<rect x=\"0\" y=\"0\" width=\"900\" height=\"420\" fill=\"#ffffff\"/>\n";
  out += "<text x=\"" + coordinate(plot_area::left) +
         "\" y=\"20\" font-size=\"14\" font-weight=\"bold\" fill=\"#222222\">" +
         xml_escape(svg_title(report)) + "</text>\n";
  append_legend(out);
  // Throughput first so the latency lines are drawn over it.
  append_throughput_area(out, area, timeline);
  append_axes(out, area);
  append_latency_series(out, area, timeline, "#1f77b4",
                        [](const histogram& h) { return to_ms(h.percentile(50)); });
  append_latency_series(out, area, timeline, "#ff7f0e",
                        [](const histogram& h) { return to_ms(h.percentile(99)); });
  append_latency_series(out, area, timeline, "#9467bd",
                        [](const histogram& h) { return to_ms(h.max()); });
  append_error_ticks(out, area, timeline);
  if (timeline.empty())
    out += "<text x=\"" + coordinate((area.left + area.right) / 2) + "\" y=\"" +
           coordinate((area.top + area.bottom) / 2) +
           "\" text-anchor=\"middle\" fill=\"#777777\">no measured seconds</text>\n";
  out += "</svg>\n";
  return out;
}

}  // namespace troupe::load
