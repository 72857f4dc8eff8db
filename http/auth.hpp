#pragma once
// Bearer-token authentication with libjwt: HS256 (shared secret) or RS256
// (public key). The token's `sub` is the caller (a buyer's id); `roles`
// (array) or `role` (string) containing the admin role makes an admin.
// `exp` is required and checked, as are `iss`/`aud` when configured.

#include <expected>
#include <string>

#include "http/api.hpp"
#include "http/router.hpp"

namespace troupe::http {

class authenticator {
 public:
  /// Throws std::invalid_argument on an unusable configuration (unknown
  /// mode, missing key).
  explicit authenticator(auth_options options);

  bool enabled() const { return options_.mode != "off"; }
  bool issues_tokens() const { return options_.mode == "dev"; }

  /// The caller of a request from its Authorization header; an anonymous
  /// principal when there is none; the reason when the token is invalid.
  std::expected<principal, std::string> identify(std::string_view authorization_header) const;

  /// A signed HS256 token (dev mode), valid for `ttl_seconds`.
  std::string issue(const std::string& subject, bool admin, long ttl_seconds) const;

 private:
  auth_options options_;
};

}  // namespace troupe::http
