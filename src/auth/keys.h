// Ed25519 signing keys (OpenSSL 3 EVP) and the keyring of the auth server with rotation: several
// public keys valid at once, the newest signs, an old one is retired once every token it signed has
// expired (max_token_lifetime after it stopped signing).
// Threading: a keyring is not synchronised; the auth daemon keeps it on its database thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "auth/token.h"
#include "base/result.h"

namespace vodgrid::auth {

// A public key as GET /v1/keys publishes it.
struct public_key {
  std::string kid;
  std::string raw;  // 32 bytes
  bool operator==(const public_key&) const = default;
};

// An Ed25519 private key. Movable, not copyable.
class signing_key {
 public:
  // A fresh key from the system's random source.
  static signing_key generate(std::string kid);
  // From its 32-byte seed (as stored); errc::invalid_argument otherwise.
  static result<signing_key> from_seed(std::string kid, std::string_view seed);
  signing_key(signing_key&&) noexcept;
  signing_key& operator=(signing_key&&) noexcept;
  ~signing_key();

  const std::string& kid() const { return kid_; }
  std::string seed() const;  // 32 bytes: what the keyring stores
  public_key public_part() const;
  std::string sign(std::string_view message) const;  // 64 bytes
  // The compact token text of `c` signed by this key.
  std::string issue(const claims& c) const;

 private:
  signing_key(std::string kid, void* pkey) : kid_(std::move(kid)), pkey_(pkey) {}
  std::string kid_;
  void* pkey_ = nullptr;  // EVP_PKEY*
};

// Checks an Ed25519 signature with a raw 32-byte public key. False for any malformed input.
bool verify_signature(std::string_view public_raw, std::string_view message,
                      std::string_view signature);

// A key as the keyring keeps (and persists) it.
struct key_entry {
  std::string kid;
  std::string seed;           // 32 bytes
  int64_t created_at = 0;     // unix seconds
  int64_t signing_until = 0;  // unix seconds; 0 while it is the signing key
};

class keyring {
 public:
  // `retire_after`: seconds a key stays published once it stopped signing (the longest lifetime
  // of a token it may have signed).
  explicit keyring(int64_t retire_after) : retire_after_(retire_after) {}

  // Loads persisted entries (any order). errc::invalid_argument for a bad seed.
  status load(std::vector<key_entry> entries);
  // Starts signing with a new key; the previous signing key keeps verifying until retired.
  // Returns the new entry and the changed previous one (what to persist).
  std::vector<key_entry> rotate(int64_t now);
  // Drops keys past their retirement; returns the kids dropped (to delete from storage).
  std::vector<std::string> retire(int64_t now);

  bool empty() const { return keys_.empty(); }
  const signing_key& signer() const;          // precondition: !empty()
  std::vector<public_key> published() const;  // every key not yet retired, newest first
  const std::vector<key_entry>& entries() const { return entries_; }
  int64_t retire_after() const { return retire_after_; }

 private:
  int64_t retire_after_;
  std::vector<key_entry> entries_;  // oldest first; the last one signs
  std::vector<signing_key> keys_;   // parallel to entries_
};

// A fresh key id: "k" followed by 16 hex digits from the system's random source.
std::string new_kid();

}  // namespace vodgrid::auth
