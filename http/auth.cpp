#include "http/auth.hpp"

#include <jwt.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <stdexcept>

namespace troupe::http {

namespace {

struct jwt_deleter {
  void operator()(jwt_t* j) const { jwt_free(j); }
};
using jwt_ptr = std::unique_ptr<jwt_t, jwt_deleter>;

struct text_deleter {
  void operator()(char* p) const { std::free(p); }
};

bool lists_role(const boost::json::value& v, const std::string& role) {
  if (const auto* s = v.if_string()) return *s == role;
  if (const auto* a = v.if_array()) {
    for (const auto& item : *a)
      if (const auto* s = item.if_string(); s && *s == role) return true;
  }
  return false;
}

}  // namespace

authenticator::authenticator(auth_options options) : options_(std::move(options)) {
  const auto& m = options_.mode;
  if (m != "off" && m != "dev" && m != "hs256" && m != "rs256")
    throw std::invalid_argument("http.auth.mode must be off, dev, hs256 or rs256, not '" + m + "'");
  if ((m == "dev" || m == "hs256") && options_.secret.size() < 32)
    throw std::invalid_argument("http.auth.secret must be at least 32 bytes for HS256");
  if (m == "rs256" && options_.public_key_pem.empty())
    throw std::invalid_argument("http.auth.public_key_file is required for RS256");
}

std::expected<principal, std::string> authenticator::identify(
    std::string_view authorization) const {
  principal who;
  if (!enabled()) {
    who.auth_disabled = true;
    who.admin = true;
    who.authenticated = true;
    return who;
  }
  if (authorization.empty()) return who;  // anonymous
  constexpr std::string_view scheme = "Bearer ";
  if (authorization.size() <= scheme.size() || authorization.substr(0, scheme.size()) != scheme)
    return std::unexpected("the Authorization header must be 'Bearer <token>'");
  std::string token(authorization.substr(scheme.size()));
  bool rsa = options_.mode == "rs256";
  const std::string& key = rsa ? options_.public_key_pem : options_.secret;
  jwt_t* raw = nullptr;
  if (jwt_decode(&raw, token.c_str(), reinterpret_cast<const unsigned char*>(key.data()),
                 static_cast<int>(key.size())) != 0 ||
      raw == nullptr)
    return std::unexpected("the bearer token is malformed or its signature does not verify");
  jwt_ptr jwt{raw};
  // The algorithm is ours to choose, not the token's ("alg": "none" or an
  // HS256 token signed with the RSA public key must not pass).
  if (jwt_get_alg(jwt.get()) != (rsa ? JWT_ALG_RS256 : JWT_ALG_HS256))
    return std::unexpected("the bearer token uses an algorithm this node does not accept");
  errno = 0;
  long exp = jwt_get_grant_int(jwt.get(), "exp");
  if (errno != 0) return std::unexpected("the bearer token has no exp claim");
  if (exp <= static_cast<long>(std::time(nullptr)))
    return std::unexpected("the bearer token has expired");
  if (!options_.issuer.empty()) {
    const char* iss = jwt_get_grant(jwt.get(), "iss");
    if (iss == nullptr || options_.issuer != iss)
      return std::unexpected("the bearer token's issuer is not accepted");
  }
  if (!options_.audience.empty()) {
    const char* aud = jwt_get_grant(jwt.get(), "aud");
    if (aud == nullptr || options_.audience != aud)
      return std::unexpected("the bearer token is not meant for this audience");
  }
  const char* sub = jwt_get_grant(jwt.get(), "sub");
  if (sub == nullptr || *sub == '\0') return std::unexpected("the bearer token has no sub claim");
  who.subject = sub;
  who.authenticated = true;
  for (const char* claim : {"roles", "role"}) {
    std::unique_ptr<char, text_deleter> json{jwt_get_grants_json(jwt.get(), claim)};
    if (!json) continue;
    boost::system::error_code ec;
    auto v = boost::json::parse(json.get(), ec);
    if (!ec && lists_role(v, options_.admin_role)) who.admin = true;
  }
  return who;
}

std::string authenticator::issue(const std::string& subject, bool admin, long ttl_seconds) const {
  if (!issues_tokens()) return {};
  jwt_t* raw = nullptr;
  if (jwt_new(&raw) != 0) throw std::runtime_error("jwt_new failed");
  jwt_ptr jwt{raw};
  auto now = static_cast<long>(std::time(nullptr));
  jwt_add_grant(jwt.get(), "sub", subject.c_str());
  jwt_add_grant_int(jwt.get(), "iat", now);
  jwt_add_grant_int(jwt.get(), "exp", now + ttl_seconds);
  if (!options_.issuer.empty()) jwt_add_grant(jwt.get(), "iss", options_.issuer.c_str());
  if (!options_.audience.empty()) jwt_add_grant(jwt.get(), "aud", options_.audience.c_str());
  boost::json::object roles{{"roles", boost::json::array{}}};
  if (admin) roles["roles"].as_array().emplace_back(options_.admin_role);
  jwt_add_grants_json(jwt.get(), boost::json::serialize(roles).c_str());
  jwt_set_alg(jwt.get(), JWT_ALG_HS256,
              reinterpret_cast<const unsigned char*>(options_.secret.data()),
              static_cast<int>(options_.secret.size()));
  std::unique_ptr<char, text_deleter> token{jwt_encode_str(jwt.get())};
  if (!token) throw std::runtime_error("jwt_encode_str failed");
  return token.get();
}

}  // namespace troupe::http
