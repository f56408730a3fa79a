// HMAC-SHA256 (RFC 2104) keyed once: the hash states after the key's inner and outer pads are
// kept, so that a MAC of a short message costs two SHA-256 blocks rather than four. OpenSSL's
// SHA-256, which uses the CPU's SHA extensions where there are any.
#pragma once

#include <array>
#include <cstddef>
#include <initializer_list>
#include <memory>
#include <string_view>

struct SHA256state_st;  // OpenSSL's SHA256_CTX, opaque here

namespace vodgrid::auth {

class hmac_sha256 {
 public:
  static constexpr size_t digest_bytes = 32;
  using digest = std::array<unsigned char, digest_bytes>;

  // `key`: any length; one longer than SHA-256's 64-byte block is hashed first (RFC 2104).
  explicit hmac_sha256(std::string_view key);

  // The MAC of the concatenation of `parts`. Const and thread-safe: the working state is on the
  // stack; allocates nothing.
  digest mac(std::initializer_list<std::string_view> parts) const;

 private:
  struct ctx_free {
    void operator()(SHA256state_st* c) const;
  };
  using ctx_ptr = std::unique_ptr<SHA256state_st, ctx_free>;
  ctx_ptr inner_;  // SHA-256 after the block (key ^ ipad)
  ctx_ptr outer_;  // SHA-256 after the block (key ^ opad)
};

}  // namespace vodgrid::auth
