// The key-encryption key of the auth database (issue 17, item 5): the signing-key seeds and the
// stations' URL-signing keys are stored sealed with it (XChaCha20-Poly1305 from libsodium), and it
// lives in a separate 0600 file, so a copy of the database alone (a backup, a PostgreSQL dump)
// yields no usable key. Threading: immutable after construction; any thread.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "base/result.h"

namespace vodgrid::auth {

class key_sealer {
 public:
  static constexpr size_t key_bytes = 32;

  // Reads the key file (its mode checked: errc::forbidden when group or others may read it).
  // errc::not_found when it does not exist.
  static result<key_sealer> load(const std::filesystem::path& file);
  // Makes a new random key and writes it, 0600 in a 0700 folder.
  static result<key_sealer> create(const std::filesystem::path& file);
  // For tests: a key of exactly key_bytes bytes.
  explicit key_sealer(std::string key);

  // `plain` sealed under this key, bound to `context` (the row it belongs to, so that a sealed
  // value moved to another row does not open): "vgs1", a random nonce, the ciphertext and its tag.
  std::string seal(std::string_view plain, std::string_view context) const;
  // The plaintext of `sealed`; errc::forbidden when it was sealed under another key or context or
  // was altered, errc::invalid_argument when it is not a sealed value at all.
  result<std::string> open(std::string_view sealed, std::string_view context) const;
  // Whether `blob` has the sealed form (its magic and length); plaintext rows of older databases
  // do not.
  static bool is_sealed(std::string_view blob);

 private:
  std::string key_;
};

}  // namespace vodgrid::auth
