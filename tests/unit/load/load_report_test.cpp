// The pure parts of troupe-load: the latency histogram and the three
// renderings of a run report (text table, JSON, SVG plot).

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tools/load/histogram.hpp"
#include "tools/load/report.hpp"

namespace troupe::load {
namespace {

namespace json = boost::json;

constexpr std::int64_t largest_trackable = (std::int64_t{1} << 32) - 1;

void expect_within_one_percent(std::int64_t reported, std::int64_t exact, const std::string& what) {
  const double allowed = 0.01 * static_cast<double>(exact);
  EXPECT_LE(std::abs(static_cast<double>(reported - exact)), allowed)
      << what << ": reported " << reported << ", exact " << exact;
}

// ---- histogram -------------------------------------------------------------

TEST(LoadHistogram, PercentilesOfSkewedDataAreWithinOnePercentOfTheExactValues) {
  // Log-normal around 2 ms with a long tail, like real request latencies.
  std::mt19937_64 random(20240611);
  std::lognormal_distribution<double> latency(std::log(2000.0), 1.2);
  constexpr std::int64_t n = 100'000;
  std::vector<std::int64_t> values;
  histogram h;
  for (std::int64_t i = 0; i < n; ++i) {
    const auto micros = static_cast<std::int64_t>(std::llround(latency(random)));
    values.push_back(micros);
    h.record(micros);
  }
  std::sort(values.begin(), values.end());

  // The exact p-th percentile: the value at rank ceil(p/100 * n), 1-based.
  const std::pair<double, std::int64_t> percentile_ranks[] = {
      {50, n / 2}, {90, n * 9 / 10}, {99, n * 99 / 100}, {99.9, n * 999 / 1000}, {100, n}};
  for (const auto& [p, rank] : percentile_ranks)
    expect_within_one_percent(h.percentile(p), values[rank - 1], "p" + std::to_string(p));
  EXPECT_EQ(h.max(), values.back());
  EXPECT_EQ(h.min(), values.front());
  EXPECT_EQ(h.count(), n);
}

TEST(LoadHistogram, EveryMagnitudeUpToTheLimitIsResolvedWithinOnePercent) {
  // Just above a power of two is where a bucket is widest relative to its
  // values; a coarser split (64 sub-buckets) would miss by ~1.6 % there.
  for (int power = 0; power < 32; ++power) {
    for (std::int64_t value : {(std::int64_t{1} << power) + 1, (std::int64_t{3} << power) / 2}) {
      if (value > largest_trackable) continue;
      histogram h;
      h.record(value);
      h.record(largest_trackable);  // so that max() does not hide the bucket's width
      const auto reported = h.percentile(50);
      EXPECT_GE(reported, value);
      expect_within_one_percent(reported, value, "value " + std::to_string(value));
    }
  }
}

TEST(LoadHistogram, SmallValuesAreExact) {
  histogram h;
  for (std::int64_t micros = 1; micros <= 100; ++micros) h.record(micros);
  EXPECT_EQ(h.percentile(50), 50);
  EXPECT_EQ(h.percentile(90), 90);
  EXPECT_EQ(h.percentile(99), 99);
  EXPECT_EQ(h.percentile(99.9), 100);
  EXPECT_EQ(h.percentile(0), 1);
  EXPECT_EQ(h.percentile(100), 100);
}

TEST(LoadHistogram, PercentileRanksSurviveDecimalRounding) {
  // 99.9 / 100 * 1000 is 999.0000000000001 in doubles: the 999th value,
  // not the 1000th, is the p99.9 of a thousand.
  histogram h;
  for (int i = 0; i < 999; ++i) h.record(10);
  h.record(100);
  EXPECT_EQ(h.percentile(99.9), 10);
  EXPECT_EQ(h.percentile(99.95), 100);
}

TEST(LoadHistogram, MergingEqualsRecordingIntoOne) {
  std::mt19937_64 random(7);
  std::lognormal_distribution<double> latency(std::log(500.0), 1.5);
  histogram whole, first_half, second_half;
  for (int i = 0; i < 20'000; ++i) {
    const auto micros = static_cast<std::int64_t>(latency(random));
    whole.record(micros);
    (i % 3 == 0 ? first_half : second_half).record(micros);
  }
  histogram merged;
  merged.merge(first_half);
  merged.merge(second_half);
  merged.merge(histogram{});  // an empty one changes nothing, min included

  EXPECT_EQ(merged.count(), whole.count());
  EXPECT_EQ(merged.min(), whole.min());
  EXPECT_EQ(merged.max(), whole.max());
  EXPECT_DOUBLE_EQ(merged.mean(), whole.mean());
  for (double p : {0.0, 10.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0})
    EXPECT_EQ(merged.percentile(p), whole.percentile(p)) << "p" << p;
  // The halves really were different (so the merge had work to do).
  EXPECT_NE(first_half.count(), second_half.count());
}

TEST(LoadHistogram, ValuesBeyondTheRangeAreClampedAndCounted) {
  histogram h;
  h.record(1023);  // the top of its bucket, so reported exactly
  h.record(std::int64_t{1} << 40);
  h.record(largest_trackable + 1);
  h.record(largest_trackable);  // the limit itself is tracked, not clamped
  EXPECT_EQ(h.count(), 4);
  EXPECT_EQ(h.clamped(), 2);
  EXPECT_EQ(h.max(), largest_trackable);
  EXPECT_EQ(h.percentile(100), largest_trackable);
  EXPECT_EQ(h.percentile(25), 1023);

  histogram negative;
  negative.record(-5);
  EXPECT_EQ(negative.min(), 0);
  EXPECT_EQ(negative.max(), 0);
  EXPECT_EQ(negative.clamped(), 0);
}

TEST(LoadHistogram, EmptyAndResetHistogramsReportZeros) {
  histogram h;
  auto expect_empty = [](const histogram& empty) {
    EXPECT_EQ(empty.count(), 0);
    EXPECT_EQ(empty.min(), 0);
    EXPECT_EQ(empty.max(), 0);
    EXPECT_EQ(empty.mean(), 0.0);
    EXPECT_EQ(empty.clamped(), 0);
    EXPECT_EQ(empty.percentile(50), 0);
    EXPECT_EQ(empty.percentile(100), 0);
  };
  expect_empty(h);
  h.record(12345);
  h.record(largest_trackable * 2);
  h.reset();
  expect_empty(h);
  // After a reset the old minimum must not linger.
  h.record(777);
  EXPECT_EQ(h.min(), 777);
  EXPECT_EQ(h.percentile(50), 777);
}

TEST(LoadHistogram, MeanAndMinAreExact) {
  histogram h;
  for (std::int64_t micros : {600, 100, 200}) h.record(micros);
  EXPECT_EQ(h.min(), 100);
  EXPECT_EQ(h.max(), 600);
  EXPECT_DOUBLE_EQ(h.mean(), 300.0);
}

// ---- report fixtures -------------------------------------------------------

// 2^k - 1 microseconds is the top of its bucket, so these come back exactly:
// p50 = p90 = 2.047 ms, p99 = 8.191 ms, p99.9 = max = 32.767 ms,
// mean = (90 * 2047 + 9 * 8191 + 32767) / 100 µs = 2.90716 ms.
histogram known_place_latencies() {
  histogram h;
  for (int i = 0; i < 90; ++i) h.record(2047);
  for (int i = 0; i < 9; ++i) h.record(8191);
  h.record(32767);
  return h;
}

run_report minimal_report() {
  run_report r;
  r.target = "http://127.0.0.1:8080";
  r.scenario = "checkout";
  r.mode = "open";
  r.target_rate = 200;
  r.connections = 64;
  r.warmup_seconds = 5;
  r.measured_seconds = 60;
  r.flows = 1200;
  r.flows_failed = 3;
  r.requests = 6000;
  r.commands = 2400;
  r.commands_ok = 1800;
  r.latency["place"] = known_place_latencies();
  return r;
}

run_report full_report() {
  run_report r = minimal_report();
  r.status_counts = {{200, 5990}, {409, 7}, {0, 3}};
  r.errors_by_kind = {{"timeout", 3}, {"409 conflict", 7}};
  r.saga_outcomes = {{"completed", 1150}, {"cancelled", 47}, {"unfinished", 3}};
  r.max_view_lag_seconds = {{"order_summary", 0.25}};
  r.per_target = {{"http://127.0.0.1:8080", {6000, 10}}};
  r.audit = std::vector<audit_check>{{"orders-placed-once", true, "1200 orders, each once"},
                                     {"stock-balanced", false, "book 17: reserved 5 != 4"}};
  return r;
}

std::vector<std::string> words_of_line_starting_with(const std::string& text,
                                                     const std::string& first_word) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::vector<std::string> tokens;
    for (std::string word; words >> word;) tokens.push_back(word);
    if (!tokens.empty() && tokens.front() == first_word) return tokens;
  }
  return {};
}

// ---- table -----------------------------------------------------------------

TEST(LoadReportTable, ShowsTheLatencyRowOfEachKindInMilliseconds) {
  auto report = minimal_report();
  report.latency["all"] = known_place_latencies();
  report.latency["all"].record(1'000'000);
  const auto table = render_table(report);

  const std::vector<std::string> place = {"place", "100",   "2.05",  "2.05",
                                          "8.19",  "32.77", "32.77", "2.91"};
  EXPECT_EQ(words_of_line_starting_with(table, "place"), place) << table;
  const auto all = words_of_line_starting_with(table, "all");
  ASSERT_EQ(all.size(), 8u) << table;
  EXPECT_EQ(all[1], "101");
  EXPECT_EQ(all[6], "1000.00");  // max
  EXPECT_NE(table.find("p99.9"), std::string::npos);
}

TEST(LoadReportTable, ShowsHeaderAndThroughput) {
  const auto table = render_table(minimal_report());
  EXPECT_NE(table.find("http://127.0.0.1:8080"), std::string::npos);
  EXPECT_NE(table.find("checkout"), std::string::npos);
  EXPECT_EQ(words_of_line_starting_with(table, "rate"),
            (std::vector<std::string>{"rate", "200.00", "flows/s"}));
  EXPECT_EQ(words_of_line_starting_with(table, "connections"),
            (std::vector<std::string>{"connections", "64"}));
  // 1200 flows, 6000 requests and 1800 good commands over 60 s.
  EXPECT_EQ(words_of_line_starting_with(table, "flows/s").at(1), "20.00");
  EXPECT_EQ(words_of_line_starting_with(table, "requests/s").at(1), "100.00");
  const auto commands = words_of_line_starting_with(table, "successful");
  ASSERT_GE(commands.size(), 3u) << table;
  EXPECT_EQ(commands[1], "commands/s");
  EXPECT_EQ(commands[2], "30.00");
}

TEST(LoadReportTable, OmitsEmptySectionsAndShowsFilledOnes) {
  const std::vector<std::string> sections = {"Status codes", "Errors",     "Saga outcomes",
                                             "view lag",     "Per target", "Audit"};
  const auto sparse = render_table(minimal_report());
  for (const auto& section : sections)
    EXPECT_EQ(sparse.find(section), std::string::npos) << section << " in\n" << sparse;

  const auto full = render_table(full_report());
  for (const auto& section : sections)
    EXPECT_NE(full.find(section), std::string::npos) << section << " missing from\n" << full;
  EXPECT_EQ(words_of_line_starting_with(full, "409"), (std::vector<std::string>{"409", "7"}));
  EXPECT_EQ(words_of_line_starting_with(full, "no"),
            (std::vector<std::string>{"no", "answer", "3"}));
  EXPECT_EQ(words_of_line_starting_with(full, "cancelled"),
            (std::vector<std::string>{"cancelled", "47"}));
  EXPECT_EQ(words_of_line_starting_with(full, "order_summary"),
            (std::vector<std::string>{"order_summary", "0.250"}));
  EXPECT_NE(full.find("Audit: FAILED"), std::string::npos);
  EXPECT_NE(full.find("PASS  orders-placed-once"), std::string::npos);
  EXPECT_NE(full.find("FAIL  stock-balanced"), std::string::npos);
  EXPECT_NE(full.find("book 17: reserved 5 != 4"), std::string::npos);
}

// ---- JSON ------------------------------------------------------------------

TEST(LoadReportJson, CarriesLatenciesInMillisecondsAndRates) {
  auto report = minimal_report();
  histogram& all = report.latency["all"];
  for (std::int64_t ms = 1; ms <= 1000; ++ms) all.record(ms * 1000);
  report.timeline.resize(2);
  report.timeline[1].start_seconds = 1;
  report.timeline[1].requests = 250;
  report.timeline[1].errors = 4;
  report.timeline[1].latency.record(1023);
  report.status_counts = {{200, 5990}, {0, 10}};

  const json::object o = to_json(report);
  // Through text and back, as a tool would see it.
  const json::object parsed = json::parse(json::serialize(o)).as_object();

  const auto& all_json = parsed.at("latency").at("all").as_object();
  EXPECT_EQ(all_json.at("count").to_number<std::int64_t>(), 1000);
  const double p99 = all_json.at("p99_ms").to_number<double>();
  EXPECT_GE(p99, 990.0);  // the exact p99 of 1..1000 ms
  EXPECT_LE(p99, 990.0 * 1.01);
  EXPECT_DOUBLE_EQ(all_json.at("max_ms").to_number<double>(), 1000.0);
  EXPECT_DOUBLE_EQ(all_json.at("mean_ms").to_number<double>(), 500.5);
  EXPECT_DOUBLE_EQ(all_json.at("min_ms").to_number<double>(), 1.0);
  const auto& place = parsed.at("latency").at("place").as_object();
  EXPECT_DOUBLE_EQ(place.at("p99_9_ms").to_number<double>(), 32.767);
  EXPECT_DOUBLE_EQ(place.at("p50_ms").to_number<double>(), 2.047);

  EXPECT_DOUBLE_EQ(parsed.at("requests_per_second").to_number<double>(), 100.0);
  EXPECT_DOUBLE_EQ(parsed.at("flows_per_second").to_number<double>(), 20.0);
  EXPECT_DOUBLE_EQ(parsed.at("commands_per_second").to_number<double>(), 30.0);
  EXPECT_EQ(parsed.at("scenario").as_string(), "checkout");
  EXPECT_EQ(parsed.at("connections").to_number<int>(), 64);
  EXPECT_EQ(parsed.at("status_counts").at("0").to_number<std::int64_t>(), 10);

  const auto& timeline = parsed.at("timeline").as_array();
  ASSERT_EQ(timeline.size(), 2u);
  const auto& second = timeline[1].as_object();
  EXPECT_DOUBLE_EQ(second.at("t").to_number<double>(), 1.0);
  EXPECT_EQ(second.at("requests").to_number<std::int64_t>(), 250);
  EXPECT_EQ(second.at("errors").to_number<std::int64_t>(), 4);
  EXPECT_DOUBLE_EQ(second.at("p50_ms").to_number<double>(), 1.023);
  EXPECT_DOUBLE_EQ(second.at("max_ms").to_number<double>(), 1.023);
  EXPECT_DOUBLE_EQ(timeline[0].at("p99_ms").to_number<double>(), 0.0);

  EXPECT_FALSE(parsed.contains("audit"));  // no audit ran
}

TEST(LoadReportJson, AuditFailsWhenOneCheckFails) {
  auto report = full_report();
  EXPECT_FALSE(report.audit_passed());
  const json::object failing = to_json(report);
  EXPECT_EQ(failing.at("audit").at("passed").as_bool(), false);
  const auto& checks = failing.at("audit").at("checks").as_array();
  ASSERT_EQ(checks.size(), 2u);
  EXPECT_EQ(checks[1].at("name").as_string(), "stock-balanced");
  EXPECT_EQ(checks[1].at("passed").as_bool(), false);
  EXPECT_EQ(checks[0].at("passed").as_bool(), true);
  EXPECT_EQ(checks[1].at("detail").as_string(), "book 17: reserved 5 != 4");

  (*report.audit)[1].passed = true;
  EXPECT_TRUE(report.audit_passed());
  EXPECT_EQ(to_json(report).at("audit").at("passed").as_bool(), true);
  EXPECT_EQ(to_json(full_report()).at("per_target").at("http://127.0.0.1:8080").at("failures"), 10);
}

TEST(LoadReportJson, NoRatesOutOfAZeroLengthRun) {
  run_report empty;
  empty.requests = 5;
  const json::object o = to_json(empty);
  EXPECT_EQ(o.at("requests_per_second").to_number<double>(), 0.0);
  EXPECT_TRUE(o.at("timeline").as_array().empty());
  EXPECT_TRUE(o.at("latency").as_object().empty());
}

// ---- SVG -------------------------------------------------------------------

// A small XML checker, enough for what render_svg writes: tags nest and
// close, attribute values are quoted, '&' only starts the five predefined
// entities and '<' never appears in text or attributes.
std::string entity_problem(const std::string& text) {
  for (std::size_t at = text.find('&'); at != std::string::npos; at = text.find('&', at + 1)) {
    const auto semicolon = text.find(';', at);
    if (semicolon == std::string::npos) return "unterminated entity";
    const auto name = text.substr(at + 1, semicolon - at - 1);
    if (name != "amp" && name != "lt" && name != "gt" && name != "quot" && name != "apos")
      return "unknown entity &" + name + ";";
  }
  return {};
}

std::string xml_problem(const std::string& xml) {
  std::vector<std::string> open;
  int roots = 0;
  std::size_t i = 0;
  auto is_name_char = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == ':' || c == '_';
  };
  while (i < xml.size()) {
    const auto tag_start = xml.find('<', i);
    const auto text =
        xml.substr(i, tag_start == std::string::npos ? std::string::npos : tag_start - i);
    if (auto problem = entity_problem(text); !problem.empty()) return problem;
    if (open.empty() && text.find_first_not_of(" \n") != std::string::npos)
      return "text outside the root: " + text;
    if (tag_start == std::string::npos) break;
    std::size_t j = tag_start + 1;
    const bool closing = j < xml.size() && xml[j] == '/';
    if (closing) ++j;
    const auto name_start = j;
    while (j < xml.size() && is_name_char(xml[j])) ++j;
    const auto name = xml.substr(name_start, j - name_start);
    if (name.empty()) return "tag without a name at " + std::to_string(tag_start);
    bool self_closing = false;
    for (;;) {
      while (j < xml.size() && std::isspace(static_cast<unsigned char>(xml[j]))) ++j;
      if (j >= xml.size()) return "unterminated tag " + name;
      if (xml[j] == '>') break;
      if (xml.compare(j, 2, "/>") == 0 && !closing) {
        self_closing = true;
        ++j;
        break;
      }
      if (closing) return "attributes on a closing tag " + name;
      const auto attribute_start = j;
      while (j < xml.size() && is_name_char(xml[j])) ++j;
      if (j == attribute_start || j + 1 >= xml.size() || xml[j] != '=' || xml[j + 1] != '"')
        return "malformed attribute in " + name;
      const auto value_end = xml.find('"', j + 2);
      if (value_end == std::string::npos) return "unterminated attribute in " + name;
      const auto value = xml.substr(j + 2, value_end - j - 2);
      if (value.find('<') != std::string::npos) return "'<' in an attribute of " + name;
      if (auto problem = entity_problem(value); !problem.empty()) return problem;
      j = value_end + 1;
    }
    if (closing) {
      if (open.empty() || open.back() != name) return "unbalanced </" + name + ">";
      open.pop_back();
    } else {
      if (open.empty() && ++roots > 1) return "more than one root element";
      if (!self_closing) open.push_back(name);
    }
    i = j + 1;
  }
  if (!open.empty()) return "unclosed <" + open.back() + ">";
  if (roots != 1) return "no root element";
  return {};
}

std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t count = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++count;
  return count;
}

void expect_well_formed_svg(const std::string& svg) {
  EXPECT_EQ(svg.rfind("<svg", 0), 0u) << svg.substr(0, 80);
  auto end = svg.find_last_not_of(" \n");
  ASSERT_NE(end, std::string::npos);
  EXPECT_EQ(svg.substr(0, end + 1).ends_with("</svg>"), true);
  EXPECT_EQ(xml_problem(svg), "") << svg;
  EXPECT_EQ(occurrences(svg, "<text"), occurrences(svg, "</text>"));
  // Every polyline closes itself before the next tag opens.
  for (auto at = svg.find("<polyline"); at != std::string::npos;
       at = svg.find("<polyline", at + 1)) {
    const auto closes = svg.find("/>", at);
    EXPECT_NE(closes, std::string::npos);
    EXPECT_LT(closes, svg.find('<', at + 1));
  }
  for (const char* bad : {"nan", "NaN", "inf", "INF"})
    EXPECT_EQ(svg.find(bad), std::string::npos) << bad << " in\n" << svg;
  EXPECT_EQ(svg.find("http://", svg.find("xmlns") + 40), std::string::npos)
      << "an external reference";
}

time_slice slice_at(double start, std::int64_t requests, std::int64_t errors,
                    std::initializer_list<std::int64_t> latencies) {
  time_slice slice;
  slice.start_seconds = start;
  slice.requests = requests;
  slice.errors = errors;
  for (auto micros : latencies) slice.latency.record(micros);
  return slice;
}

TEST(LoadReportSvg, IsWellFormedWithoutAnyMeasuredSecond) {
  run_report report;  // everything empty or zero
  const auto svg = render_svg(report);
  expect_well_formed_svg(svg);
  EXPECT_EQ(occurrences(svg, "<polyline"), 0u);
  EXPECT_NE(svg.find(">troupe-load</text>"), std::string::npos);  // no ", loop" from nothing
}

TEST(LoadReportSvg, IsWellFormedWithOneSecond) {
  auto report = minimal_report();
  report.measured_seconds = 1;
  report.timeline.push_back(slice_at(0, 180, 2, {900, 1500, 40'000}));
  const auto svg = render_svg(report);
  expect_well_formed_svg(svg);
  // A single point cannot be a line: each series shows as a dot.
  EXPECT_EQ(occurrences(svg, "<circle"), 3u);
  EXPECT_EQ(occurrences(svg, "stroke=\"#d62728\" stroke-width=\"2\"><title>"), 1u);
}

TEST(LoadReportSvg, PlotsSixtySecondsWithAxesSeriesAndErrorTicks) {
  auto report = minimal_report();
  report.measured_seconds = 60;
  int seconds_with_errors = 0;
  for (int second = 0; second < 60; ++second) {
    const std::int64_t errors = second % 7 == 3 ? 5 : 0;
    seconds_with_errors += errors > 0;
    report.timeline.push_back(slice_at(second, 100 + second * 10, errors,
                                       {800 + second, 2'000, 15'000, 120'000 + second * 1000}));
  }
  const auto svg = render_svg(report);
  expect_well_formed_svg(svg);
  EXPECT_EQ(occurrences(svg, "<polyline"), 3u);  // p50, p99, max
  EXPECT_EQ(occurrences(svg, "<polygon"), 1u);   // throughput
  EXPECT_EQ(occurrences(svg, "errors in second"), static_cast<std::size_t>(seconds_with_errors));
  // The plotted values span 2 ms (p50) .. 179 ms (max): decades 1 to 1000 ms.
  for (const char* label : {">1</text>", ">10</text>", ">100</text>", ">1000</text>"})
    EXPECT_NE(svg.find(label), std::string::npos) << label;
  EXPECT_EQ(svg.find(">0.1</text>"), std::string::npos);
  // Throughput peaks at 690/s: the right axis runs to 800 in steps of 200.
  EXPECT_NE(svg.find(">800</text>"), std::string::npos);
  EXPECT_NE(svg.find(">60</text>"), std::string::npos);  // the last second label
  EXPECT_NE(svg.find("checkout, open loop, 200 flows/s"), std::string::npos);
}

TEST(LoadReportSvg, SkipsSecondsWithoutAnswersInTheLines) {
  auto report = minimal_report();
  for (int second = 0; second < 6; ++second)
    report.timeline.push_back(second == 3 ? slice_at(second, 0, 9, {})
                                          : slice_at(second, 50, 0, {1000, 3000}));
  const auto svg = render_svg(report);
  expect_well_formed_svg(svg);
  EXPECT_EQ(occurrences(svg, "<polyline"), 6u);  // each series broken in two
}

TEST(LoadReportSvg, EscapesText) {
  auto report = minimal_report();
  report.scenario = "a<b&c\"d";
  report.timeline.push_back(slice_at(0, 10, 0, {1000}));
  const auto svg = render_svg(report);
  expect_well_formed_svg(svg);
  EXPECT_NE(svg.find("a&lt;b&amp;c&quot;d"), std::string::npos);
  EXPECT_EQ(svg.find("a<b"), std::string::npos);
}

}  // namespace
}  // namespace troupe::load
