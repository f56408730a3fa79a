// vodgrid tokens: a JWS-like compact text form signed with Ed25519 (claims 5, 23-25).
//
//   base64url(header JSON) "." base64url(payload JSON) "." base64url(64-byte signature)
//
// header  {"alg":"EdDSA","typ":"vodgrid","kid":"<key id>"}
// payload {"iss":..,"sub":..,"kind":"viewer|engine|operator","ent":"*"|[program ids],
//          "iat":unix s,"exp":unix s[,"addr":"client IP"][,"stn":"station"]}
// The signature covers the ASCII bytes before the second dot, as in RFC 7515. base64url has no
// padding (RFC 4648 §5). Parsing is total: any byte string gives a token or a clear error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/base64url.h"
#include "base/ids.h"
#include "base/result.h"

namespace vodgrid::auth {

enum class token_kind { viewer, engine, operator_ };

std::string_view to_string(token_kind k);
std::optional<token_kind> parse_kind(std::string_view s);

inline constexpr size_t max_token_bytes = 4096;  // longer texts are refused before decoding
inline constexpr size_t max_entitlements = 256;  // programs listed in one token
inline constexpr int64_t max_token_lifetime = 86400 * 30;  // exp - iat, seconds

// What a token says. `programs` is empty when `all_programs` (ent "*").
struct claims {
  std::string issuer;
  std::string subject;  // an account name (valid_name)
  token_kind kind = token_kind::viewer;
  bool all_programs = false;
  std::vector<program_id> programs;
  int64_t issued_at = 0;   // unix seconds
  int64_t expires_at = 0;  // unix seconds; the token is valid while now < expires_at
  std::string address;     // the client's IP address the token is bound to; empty: any
  std::string station;     // engine tokens: the station of the engine or director; else empty
  bool entitled_to(const program_id& p) const;
  bool operator==(const claims&) const = default;
};

// A token taken apart but not yet checked against a key.
struct parsed_token {
  std::string kid;
  claims body;
  std::string_view signing_input;  // points into the text given to parse_token
  std::string signature;           // 64 bytes
};

// Splits, decodes and validates the structure of `text` (no signature check):
// errc::invalid_argument with the part at fault otherwise. The result's signing_input refers to
// `text`.
result<parsed_token> parse_token(std::string_view text);

// Only the key id, for a verifier deciding whether it must fetch keys.
result<std::string> token_kid(std::string_view text);

// The signing input of a token: base64url(header).base64url(payload).
std::string signing_input(std::string_view kid, const claims& c);

// base64url without padding, in constant time (base/base64url.h).
using vodgrid::base64url_decode;
using vodgrid::base64url_encode;

}  // namespace vodgrid::auth
