// The keyed states are copied into a per-thread context for each MAC (EVP_MD_CTX_copy_ex): OpenSSL
// 3's one-shot HMAC() fetches the digest, allocates its contexts and hashes both key blocks on
// every call, several times the cost of the MAC itself.
#include "auth/hmac.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

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

void hmac_sha256::ctx_free::operator()(evp_md_ctx_st* c) const {
  EVP_MD_CTX_free(c);
}

hmac_sha256::hmac_sha256(std::string_view key)
    : inner_(EVP_MD_CTX_new()), outer_(EVP_MD_CTX_new()) {
  if (!inner_ || !outer_) {
    throw std::bad_alloc();
  }
  std::array<unsigned char, block_bytes> k{};
  if (key.size() > block_bytes) {
    check(EVP_Digest(key.data(), key.size(), k.data(), nullptr, EVP_sha256(), nullptr),
          "hashing the key");
  } else {
    std::copy(key.begin(), key.end(), k.begin());
  }
  std::array<unsigned char, block_bytes> pad;
  auto keyed = [&](EVP_MD_CTX* c, unsigned char x) {
    for (size_t i = 0; i < block_bytes; ++i) {
      pad[i] = k[i] ^ x;
    }
    check(EVP_DigestInit_ex2(c, EVP_sha256(), nullptr), "EVP_DigestInit_ex2");
    check(EVP_DigestUpdate(c, pad.data(), pad.size()), "EVP_DigestUpdate");
  };
  keyed(inner_.get(), 0x36);
  keyed(outer_.get(), 0x5c);
  OPENSSL_cleanse(k.data(), k.size());
  OPENSSL_cleanse(pad.data(), pad.size());
}

hmac_sha256::digest hmac_sha256::mac(std::initializer_list<std::string_view> parts) const {
  thread_local ctx_ptr work(EVP_MD_CTX_new());
  if (!work) {
    throw std::bad_alloc();
  }
  EVP_MD_CTX* c = work.get();
  digest inner;
  check(EVP_MD_CTX_copy_ex(c, inner_.get()), "EVP_MD_CTX_copy_ex");
  for (auto p : parts) {
    check(EVP_DigestUpdate(c, p.data(), p.size()), "EVP_DigestUpdate");
  }
  check(EVP_DigestFinal_ex(c, inner.data(), nullptr), "EVP_DigestFinal_ex");
  digest out;
  check(EVP_MD_CTX_copy_ex(c, outer_.get()), "EVP_MD_CTX_copy_ex");
  check(EVP_DigestUpdate(c, inner.data(), inner.size()), "EVP_DigestUpdate");
  check(EVP_DigestFinal_ex(c, out.data(), nullptr), "EVP_DigestFinal_ex");
  return out;
}

}  // namespace vodgrid::auth
