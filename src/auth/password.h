// Password and engine-secret hashing: Argon2id from libsodium (crypto_pwhash_str), a memory-hard
// KDF whose string form carries its own salt and cost parameters.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace vodgrid::auth {

struct password_cost {
  uint64_t ops = 2;               // crypto_pwhash_OPSLIMIT_INTERACTIVE
  uint64_t mem_bytes = 64 << 20;  // crypto_pwhash_MEMLIMIT_INTERACTIVE
};

inline constexpr size_t max_password_bytes = 1024;

// The "$argon2id$..." string to store. errc::invalid_argument for an empty or over-long password,
// errc::internal when libsodium runs out of memory.
result<std::string> hash_password(std::string_view password, password_cost cost = {});
// True when `password` matches `stored`; false for any malformed input. Takes as long as hashing.
bool verify_password(std::string_view stored, std::string_view password);

}  // namespace vodgrid::auth
