// SHA-256 through OpenSSL's EVP interface, plus the hex form used in file names and on the wire.
#include "base/sha256.h"

#include <openssl/evp.h>

#include <new>
#include <stdexcept>

namespace vodgrid {

namespace {

EVP_MD_CTX* new_sha256_ctx() {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr) {
    throw std::bad_alloc();
  }
  if (EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(ctx);
    throw std::runtime_error("EVP_DigestInit_ex(sha256) failed");
  }
  return ctx;
}

void update_ctx(EVP_MD_CTX* ctx, std::string_view data) {
  if (data.empty()) {
    return;
  }
  if (EVP_DigestUpdate(ctx, data.data(), data.size()) != 1) {
    throw std::runtime_error("EVP_DigestUpdate failed");
  }
}

sha256_digest finish_ctx(EVP_MD_CTX* ctx) {
  sha256_digest d{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx, d.data(), &len) != 1 || len != d.size()) {
    throw std::runtime_error("EVP_DigestFinal_ex failed");
  }
  return d;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

}  // namespace

sha256_digest sha256(std::string_view data) {
  sha256_digest d{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr) != 1 ||
      len != d.size()) {
    throw std::runtime_error("EVP_Digest(sha256) failed");
  }
  return d;
}

std::string to_hex(const sha256_digest& d) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(d.size() * 2, '0');
  for (size_t i = 0; i < d.size(); ++i) {
    out[2 * i] = digits[d[i] >> 4];
    out[2 * i + 1] = digits[d[i] & 0x0f];
  }
  return out;
}

std::optional<sha256_digest> parse_sha256_hex(std::string_view hex) {
  sha256_digest d{};
  if (hex.size() != d.size() * 2) {
    return std::nullopt;
  }
  for (size_t i = 0; i < d.size(); ++i) {
    int hi = hex_value(hex[2 * i]);
    int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return std::nullopt;
    }
    d[i] = static_cast<uint8_t>((hi << 4) | lo);
  }
  return d;
}

sha256_hasher::sha256_hasher() : ctx_(new_sha256_ctx()) {}

sha256_hasher::~sha256_hasher() = default;

void sha256_hasher::update(std::string_view data) {
  update_ctx(static_cast<EVP_MD_CTX*>(ctx_.get()), data);
}

// Returns the digest of everything fed so far and starts over, so the hasher can be reused.
sha256_digest sha256_hasher::finish() {
  auto* ctx = static_cast<EVP_MD_CTX*>(ctx_.get());
  sha256_digest d = finish_ctx(ctx);
  if (EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("EVP_DigestInit_ex(sha256) failed");
  }
  return d;
}

void sha256_hasher::ctx_deleter::operator()(void* p) const {
  EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(p));
}

}  // namespace vodgrid
