// HMAC-SHA256 keyed once per station key (hmac_sha256); CRYPTO_memcmp for the constant-time
// compare. The query is scanned by hand rather than with Boost.URL: the engine calls this per
// segment request and it only needs two parameters, whose values (digits, base64url) never need
// percent-decoding.
#include "auth/url_signer.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
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

// base64url without padding by table lookup, written at `p`; returns the end. A signature is
// public, the URL carries it, so it needs none of the constant-time care of token.h's
// base64url_encode, which cost the director more than the HMAC itself.
char* put_base64url(char* p, const hmac_sha256::digest& d) {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  static_assert(hmac_sha256::digest_bytes % 3 == 2);
  size_t i = 0;
  for (; i + 3 <= d.size(); i += 3) {
    uint32_t v = uint32_t(d[i]) << 16 | uint32_t(d[i + 1]) << 8 | d[i + 2];
    *p++ = alphabet[v >> 18];
    *p++ = alphabet[(v >> 12) & 63];
    *p++ = alphabet[(v >> 6) & 63];
    *p++ = alphabet[v & 63];
  }
  uint32_t v = uint32_t(d[i]) << 16 | uint32_t(d[i + 1]) << 8;
  *p++ = alphabet[v >> 18];
  *p++ = alphabet[(v >> 12) & 63];
  *p++ = alphabet[(v >> 6) & 63];
  return p;
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

// sign_query into `buf`; returns its end.
char* url_signer::put_query(char* buf, std::string_view path, int64_t expires_at) const {
  constexpr std::string_view exp_key = "vg_exp=", sig_key = "&vg_sig=";
  static_assert(query_max ==
                exp_key.size() + 20 + sig_key.size() + (hmac_sha256::digest_bytes * 4 + 2) / 3);
  char* p = std::copy(exp_key.begin(), exp_key.end(), buf);
  char* exp = p;
  p = std::to_chars(p, p + 20, expires_at).ptr;
  auto m = mac(path, std::string_view(exp, size_t(p - exp)));
  p = std::copy(sig_key.begin(), sig_key.end(), p);
  return put_base64url(p, m);
}

std::string url_signer::sign_query(std::string_view path, int64_t expires_at) const {
  char buf[query_max];
  return std::string(buf, put_query(buf, path, expires_at));
}

void url_signer::append_signed_query(std::string& url, size_t path_from, int64_t expires_at) const {
  char buf[query_max];
  char* end = put_query(buf, std::string_view(url).substr(path_from), expires_at);
  url += '?';
  url.append(buf, end);
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
