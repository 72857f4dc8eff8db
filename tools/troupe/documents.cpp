// `troupe openapi` and `troupe catalog`: the documents generated from the
// code's registrations, printed without starting a node.

#include <iostream>

#include "actors/event_catalog.hpp"
#include "http/api.hpp"
#include "tools/troupe/commands.hpp"

namespace troupe::cli {

int print_openapi(const config& cfg) {
  http::api_options o;
  o.postgres_url = cfg.string("postgres.url");  // never connected: no query runs
  o.query_threads = 1;
  o.auth.mode = "dev";  // documents the dev token route too
  o.auth.secret = std::string(32, 'x');
  http::bookstore_api api(http::api_parts{}, o);
  std::cout << api.openapi() << "\n";
  return 0;
}

int print_catalog(const std::string& format) {
  if (format == "json") {
    std::cout << bookstore::event_catalog_json() << "\n";
    return 0;
  }
  std::cout << bookstore::event_catalog_markdown();
  return 0;
}

}  // namespace troupe::cli
