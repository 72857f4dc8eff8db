#pragma once
// Routes: method + path pattern ("/api/v1/books/{book_id}") -> handler, with
// the documentation the OpenAPI document is generated from, so the served
// routes and the document cannot drift apart.

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "http/server.hpp"

namespace troupe::http {

/// Who may call a route. Ownership (a buyer's own basket and orders) is
/// checked by the handler, which knows whose resource it is.
enum class access { open, signed_in, admin };

/// The caller, from the bearer token (or everyone, with auth off).
struct principal {
  std::string subject;  // `sub`: the buyer id for buyers
  bool authenticated = false;
  bool admin = false;
  bool auth_disabled = false;  // auth.mode = off: every check passes

  /// May this caller act for `buyer_id`?
  bool may_act_for(std::string_view buyer_id) const {
    return auth_disabled || admin || (authenticated && subject == buyer_id);
  }
};

/// One request being handled: the request, its path parameters, the caller
/// and the one-shot reply. Shared so async completions can hold it.
struct call {
  request req;
  std::vector<std::pair<std::string, std::string>> params;  // decoded path parameters
  principal who;
  responder reply;

  std::string param(std::string_view name) const {
    for (const auto& [k, v] : params)
      if (k == name) return v;
    return {};
  }
};
using call_ptr = std::shared_ptr<call>;

struct parameter_doc {
  std::string name;
  std::string in = "query";     // path, query or header
  std::string type = "string";  // OpenAPI type: string, integer, number, boolean
  std::string description;
  bool required = false;
};

struct route_doc {
  std::string summary;
  std::string tag;
  std::vector<parameter_doc> parameters = {};  // query and header parameters
  std::string request_schema = {};             // components/schemas name, if a body is taken
  std::string response_schema = {};            // of the success response, if JSON
  std::vector<int> statuses = {};              // every status the route answers
  std::string response_type = "application/json";
};

struct route {
  std::string method;
  std::string pattern;
  access allowed = access::open;
  route_doc doc;
  std::function<void(call_ptr)> handle;
};

class router {
 public:
  void add(route r);
  const std::vector<route>& routes() const { return routes_; }

  struct match {
    const route* found = nullptr;
    std::vector<std::pair<std::string, std::string>> params;
  };
  /// The route for a request, or the 404/405 problem to answer.
  std::variant<match, response> find(const request& r) const;

 private:
  struct compiled {
    std::vector<std::string> segments;  // "{name}" segments are parameters
  };
  std::vector<route> routes_;
  std::vector<compiled> compiled_;
};

}  // namespace troupe::http
