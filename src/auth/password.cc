// libsodium's crypto_pwhash_str: Argon2id with a random salt, encoded in the PHC string format.
#include "auth/password.h"

#include <sodium.h>

#include <stdexcept>

#include "auth/sodium.h"

namespace vodgrid::auth {

result<std::string> hash_password(std::string_view password, password_cost cost) {
  init_sodium();
  if (password.empty() || password.size() > max_password_bytes) {
    return make_error(errc::invalid_argument, "a password has 1 to 1024 bytes");
  }
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), cost.ops, cost.mem_bytes,
                            crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return make_error(errc::internal, "out of memory hashing a password");
  }
  return std::string(out);
}

bool verify_password(std::string_view stored, std::string_view password) {
  init_sodium();
  if (stored.empty() || stored.size() >= crypto_pwhash_STRBYTES ||
      password.size() > max_password_bytes) {
    return false;
  }
  std::string s(stored);  // NUL-terminated for libsodium
  return crypto_pwhash_str_verify(s.c_str(), password.data(), password.size()) == 0;
}

}  // namespace vodgrid::auth
