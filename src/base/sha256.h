// SHA-256 digests (OpenSSL EVP): the identity check of every segment byte a console or engine gets.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace vodgrid {

using sha256_digest = std::array<uint8_t, 32>;

sha256_digest sha256(std::string_view data);
std::string to_hex(const sha256_digest& d);
// Lowercase or uppercase hex of exactly 64 characters; nullopt otherwise.
std::optional<sha256_digest> parse_sha256_hex(std::string_view hex);

// Incremental hashing for bytes that arrive in pieces.
class sha256_hasher {
 public:
  sha256_hasher();
  ~sha256_hasher();
  sha256_hasher(const sha256_hasher&) = delete;
  sha256_hasher& operator=(const sha256_hasher&) = delete;
  void update(std::string_view data);
  sha256_digest finish();

 private:
  struct ctx_deleter {
    void operator()(void* p) const;
  };
  std::unique_ptr<void, ctx_deleter> ctx_;
};

}  // namespace vodgrid
