// HMAC-SHA256 keyed once per station key (hmac_sha256); CRYPTO_memcmp for the constant-time
// compare. The query is scanned by hand rather than with Boost.URL: the engine calls this per
// segment request and it only needs two parameters, whose values (digits, base64url) never need
// percent-decoding.
#include "auth/url_signer.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <charconv>
#include <stdexcept>

#include "auth/token.h"

namespace vodgrid::auth {

namespace {

std::string_view checked_key(std::string_view key) {
  if (key.size() < 16) {
    throw std::invalid_argument("a station key has at least 16 bytes");
  }
  return key;
}

}  // namespace

url_signer::url_signer(std::string key) : hmac_(checked_key(key)) {}

std::string new_station_key() {
  std::string s(station_key_bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(s.data()), int(s.size())) != 1) {
    throw std::runtime_error("RAND_bytes failed");
  }
  return s;
}

hmac_sha256::digest url_signer::mac(std::string_view path, std::string_view exp) const {
  return hmac_.mac({path, "\n", exp});
}

std::string url_signer::sign_query(std::string_view path, int64_t expires_at) const {
  std::string exp = std::to_string(expires_at);
  auto m = mac(path, exp);
  return "vg_exp=" + exp + "&vg_sig=" +
         base64url_encode(std::string_view(reinterpret_cast<const char*>(m.data()), m.size()));
}

std::string url_signer::sign(std::string_view path, int64_t expires_at) const {
  return std::string(path) + "?" + sign_query(path, expires_at);
}

status url_signer::verify(std::string_view target, int64_t now, int64_t max_ttl) const {
  auto q = target.find('?');
  if (q == std::string_view::npos) {
    return make_error(errc::unauthorized, "url signature missing");
  }
  std::string_view path = target.substr(0, q);
  std::string_view query = target.substr(q + 1);
  std::string_view exp, sig;
  int seen_exp = 0, seen_sig = 0;
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view p = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (p.starts_with("vg_exp=")) {
      exp = p.substr(7);
      ++seen_exp;
    } else if (p.starts_with("vg_sig=")) {
      sig = p.substr(7);
      ++seen_sig;
    }
  }
  if (seen_exp == 0 && seen_sig == 0) {
    return make_error(errc::unauthorized, "url signature missing");
  }
  if (seen_exp != 1 || seen_sig != 1 || exp.empty() || exp.size() > 12) {
    return make_error(errc::forbidden, "url signature malformed");
  }
  int64_t e = 0;
  auto [end, ec] = std::from_chars(exp.data(), exp.data() + exp.size(), e);
  if (ec != std::errc() || end != exp.data() + exp.size() || e < 0) {
    return make_error(errc::forbidden, "url signature malformed");
  }
  if (now >= e) {
    return make_error(errc::forbidden, "url signature expired");
  }
  if (e - now > max_ttl) {
    return make_error(errc::forbidden, "url signature expires too far ahead");
  }
  auto got = base64url_decode(sig);
  auto want = mac(path, exp);
  if (!got || got->size() != want.size() ||
      CRYPTO_memcmp(got->data(), want.data(), want.size()) != 0) {
    return make_error(errc::forbidden, "url signature does not match");
  }
  return {};
}

}  // namespace vodgrid::auth
