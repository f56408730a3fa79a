// What clients of the auth daemon share: finding a request's token, logging in, and the engine
// secret file that the local grid launcher provisions.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>

#include "auth/token.h"
#include "base/result.h"
#include "net/client.h"
#include "net/http.h"

namespace vodgrid::auth {

// The token of a request: "Authorization: Bearer <t>", else the query parameter `token`; empty
// when neither is there.
std::string_view token_of(const net::request_context& ctx);
// The client's IP address as a token's "addr" claim writes it (IPv4-mapped IPv6 as IPv4).
std::string client_address(const net::request_context& ctx);

// The reply to every login: POST /v1/login/{viewer,operator,engine} and POST /v1/token/renew.
struct login_reply {
  std::string token;
  token_kind kind = token_kind::viewer;
  std::string subject;
  int64_t expires_at = 0;
  std::string station;      // engine logins
  std::string station_key;  // engine logins: the raw key (base64url on the wire)
};
std::string encode_login_reply(const login_reply& r);
result<login_reply> decode_login_reply(std::string_view body);

// POST {auth_url}/v1/login/{viewer|operator} {"user","password"} or /v1/login/engine
// {"name","secret"}. A refusal (401/403/400) comes back as errc::unauthorized / forbidden /
// invalid_argument with the server's detail.
boost::asio::awaitable<result<login_reply>> login(net::http_client& client, std::string auth_url,
                                                  token_kind kind, std::string user,
                                                  std::string password);
// POST {auth_url}/v1/token/renew with the token as Bearer: the same claims, a new expiry.
boost::asio::awaitable<result<login_reply>> renew(net::http_client& client, std::string auth_url,
                                                  std::string token);

// An engine's (or director's) secret as the local grid keeps it: `<dir>/auth.secret`, 0600.
std::filesystem::path secret_file(const std::filesystem::path& dir);
// Reads the secret in `dir`, or makes a random one (43 base64url characters) and writes it durably
// (0600 in a 0700 folder). errc::forbidden when the file is readable by group or others.
result<std::string> read_or_create_secret(const std::filesystem::path& dir);

}  // namespace vodgrid::auth
