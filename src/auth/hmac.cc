// The keyed states are plain SHA256_CTX structures, copied onto the stack for each MAC. OpenSSL 3
// deprecates this low-level API for EVP, but through EVP each copy (EVP_MD_CTX_copy_ex) frees and
// allocates a provider context, two per MAC, and the one-shot HMAC() fetches the digest, allocates
// its contexts and hashes both key blocks on every call: at the director's rate (a signed redirect
// per request) EVP's copies cost more than the two SHA-256 blocks themselves (profile,
// docs/performance.md). The block function is the same (the CPU's SHA extensions where there are
// any); tests/auth_test.cc checks the MACs against OpenSSL's HMAC().
#define OPENSSL_SUPPRESS_DEPRECATED  // SHA256_Init/Update/Final: see above
#include "auth/hmac.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <new>
#include <stdexcept>
#include <string>

namespace vodgrid::auth {

namespace {

constexpr size_t block_bytes = 64;  // SHA-256's

void check(int ok, const char* what) {
  if (ok != 1) {
    throw std::runtime_error(std::string("hmac_sha256: ") + what + " failed");
  }
}

}  // namespace

void hmac_sha256::ctx_free::operator()(SHA256state_st* c) const {
  OPENSSL_cleanse(c, sizeof(SHA256_CTX));
  delete c;
}

hmac_sha256::hmac_sha256(std::string_view key) : inner_(new SHA256_CTX), outer_(new SHA256_CTX) {
  std::array<unsigned char, block_bytes> k{};
  if (key.size() > block_bytes) {
    check(EVP_Digest(key.data(), key.size(), k.data(), nullptr, EVP_sha256(), nullptr),
          "hashing the key");
  } else {
    std::copy(key.begin(), key.end(), k.begin());
  }
  std::array<unsigned char, block_bytes> pad;
  auto keyed = [&](SHA256_CTX* c, unsigned char x) {
    for (size_t i = 0; i < block_bytes; ++i) {
      pad[i] = k[i] ^ x;
    }
    check(SHA256_Init(c), "SHA256_Init");
    check(SHA256_Update(c, pad.data(), pad.size()), "SHA256_Update");
  };
  keyed(inner_.get(), 0x36);
  keyed(outer_.get(), 0x5c);
  OPENSSL_cleanse(k.data(), k.size());
  OPENSSL_cleanse(pad.data(), pad.size());
}

hmac_sha256::digest hmac_sha256::mac(std::initializer_list<std::string_view> parts) const {
  SHA256_CTX c = *inner_;
  digest inner;
  for (auto p : parts) {
    SHA256_Update(&c, p.data(), p.size());
  }
  SHA256_Final(inner.data(), &c);
  digest out;
  c = *outer_;
  SHA256_Update(&c, inner.data(), inner.size());
  SHA256_Final(out.data(), &c);
  return out;
}

}  // namespace vodgrid::auth
