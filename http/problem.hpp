#pragma once
// Errors as application/problem+json (RFC 9457). Every kind of error has a
// stable `type` URI (https://troupe.dev/problems/<slug>) that clients can
// switch on; `detail` is for people and may change.

#include <string>
#include <string_view>
#include <vector>

#include "http/server.hpp"

namespace troupe::http {

/// One wrong input field, named by its JSON path ("items[2].quantity").
struct field_error {
  std::string field;
  std::string message;
};

/// A problem response: `slug` becomes the type URI, the title comes from
/// the status. `errors` adds an "errors" member listing bad fields.
response problem(int status, std::string_view slug, std::string_view detail,
                 const std::vector<field_error>& errors = {});

/// The reason phrase of a status ("Not Found").
std::string_view status_title(int status);

/// Escapes text for inclusion inside a JSON string literal.
std::string json_escape(std::string_view text);

}  // namespace troupe::http
