#include "http/problem.hpp"

#include <boost/json.hpp>

namespace troupe::http {

std::string_view status_title(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Error";
  }
}

response problem(int status, std::string_view slug, std::string_view detail,
                 const std::vector<field_error>& errors) {
  boost::json::object body;
  body["type"] = "https://troupe.dev/problems/" + std::string(slug);
  body["title"] = status_title(status);
  body["status"] = status;
  body["detail"] = detail;
  if (!errors.empty()) {
    boost::json::array list;
    for (const auto& e : errors)
      list.push_back(boost::json::object{{"field", e.field}, {"message", e.message}});
    body["errors"] = std::move(list);
  }
  response r;
  r.status = status;
  r.content_type = "application/problem+json";
  r.body = boost::json::serialize(body);
  if (status == 503 || status == 429) r.headers.push_back({"retry-after", "1"});
  return r;
}

std::string json_escape(std::string_view text) {
  auto quoted = boost::json::serialize(boost::json::string(text));
  return quoted.substr(1, quoted.size() - 2);
}

}  // namespace troupe::http
