// Per-segment URL signatures for the director → engine redirect (claim 23): the director signs the
// engine path with its station's key and a near expiry; the engine checks with one HMAC-SHA256 and
// a constant-time compare, no token and no round trip.
//
//   <path>?vg_exp=<unix seconds>&vg_sig=<base64url(HMAC-SHA256(key, path "\n" vg_exp))>
//
// Only the path is signed (not other query parameters), so a signature cannot be moved to another
// segment; the expiry bounds how long a leaked URL works.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "auth/hmac.h"
#include "base/result.h"

namespace vodgrid::auth {

inline constexpr size_t station_key_bytes = 32;

class url_signer {
 public:
  // `key`: the station key, at least 16 bytes (station_key_bytes from the auth daemon).
  explicit url_signer(std::string key);

  // The query string (without '?') that signs `path` until unix time `expires_at`.
  std::string sign_query(std::string_view path, int64_t expires_at) const;
  // The longest sign_query.
  static constexpr size_t query_max = 7 + 20 + 8 + (hmac_sha256::digest_bytes * 4 + 2) / 3;
  // Appends '?' and sign_query(url.substr(path_from), expires_at) to `url`: with room reserved
  // (query_max + 1), no string is allocated (the director's redirect, every request).
  void append_signed_query(std::string& url, size_t path_from, int64_t expires_at) const;
  // path + "?" + sign_query(path, expires_at).
  std::string sign(std::string_view path, int64_t expires_at) const;

  // Checks a request target (path and query, as received) at unix time `now`: errc::unauthorized
  // when the signature parameters are missing, errc::forbidden when they are malformed, expired,
  // or do not match the path. `max_ttl`: an expiry further ahead than this is refused too.
  status verify(std::string_view target, int64_t now, int64_t max_ttl = 3600) const;

 private:
  hmac_sha256::digest mac(std::string_view path, std::string_view exp) const;
  char* put_query(char* buf, std::string_view path, int64_t expires_at) const;
  hmac_sha256 hmac_;
};

// A fresh random station key.
std::string new_station_key();

}  // namespace vodgrid::auth
