#include "http/router.hpp"

#include "http/problem.hpp"

namespace troupe::http {

namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t start = 1;  // paths start with '/'
  while (start <= path.size()) {
    auto slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    out.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return out;
}

bool is_parameter(std::string_view segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

}  // namespace

void router::add(route r) {
  compiled c;
  for (auto s : split_path(r.pattern)) c.segments.emplace_back(s);
  routes_.push_back(std::move(r));
  compiled_.push_back(std::move(c));
}

std::variant<router::match, response> router::find(const request& r) const {
  if (r.path.empty() || r.path.front() != '/')
    return problem(400, "malformed-request", "the request target must be an absolute path");
  auto segments = split_path(r.path);
  std::string allowed;
  for (std::size_t i = 0; i < routes_.size(); ++i) {
    const auto& pattern = compiled_[i].segments;
    if (pattern.size() != segments.size()) continue;
    match m;
    bool fits = true;
    for (std::size_t s = 0; s < pattern.size() && fits; ++s) {
      if (is_parameter(pattern[s])) {
        if (segments[s].empty())
          fits = false;
        else
          m.params.emplace_back(pattern[s].substr(1, pattern[s].size() - 2),
                                percent_decode(segments[s], false));
      } else {
        fits = pattern[s] == segments[s];
      }
    }
    if (!fits) continue;
    // HEAD is GET without the body (the server drops it).
    if (routes_[i].method == r.method || (r.method == "HEAD" && routes_[i].method == "GET")) {
      m.found = &routes_[i];
      return m;
    }
    if (allowed.find(routes_[i].method) == std::string::npos)
      allowed += (allowed.empty() ? "" : ", ") + routes_[i].method;
  }
  if (!allowed.empty()) {
    auto p = problem(405, "method-not-allowed",
                     "method " + r.method + " is not allowed here; allowed: " + allowed);
    p.headers.push_back({"allow", allowed});
    return p;
  }
  return problem(404, "not-found", "no route for " + r.path);
}

}  // namespace troupe::http
