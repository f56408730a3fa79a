// Ed25519 through OpenSSL's EVP one-shot sign and verify; the keyring's rotation rules.
#include "auth/keys.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <stdexcept>
#include <tuple>

#include <fmt/format.h>

namespace vodgrid::auth {

namespace {

EVP_PKEY* as_pkey(void* p) {
  return static_cast<EVP_PKEY*>(p);
}

std::string random_bytes(size_t n) {
  std::string s(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(s.data()), int(n)) != 1) {
    throw std::runtime_error("RAND_bytes failed");  // no entropy: nothing safe to do
  }
  return s;
}

}  // namespace

std::string new_kid() {
  std::string r = random_bytes(8);
  std::string out = "k";
  for (unsigned char c : r) {
    out += fmt::format("{:02x}", c);
  }
  return out;
}

signing_key signing_key::generate(std::string kid) {
  auto k = from_seed(std::move(kid), random_bytes(32));
  if (!k) {
    throw std::runtime_error("cannot make an Ed25519 key: " + k.err().detail);
  }
  return std::move(*k);
}

result<signing_key> signing_key::from_seed(std::string kid, std::string_view seed) {
  if (seed.size() != 32) {
    return make_error(errc::invalid_argument, "an Ed25519 seed is 32 bytes");
  }
  EVP_PKEY* p = EVP_PKEY_new_raw_private_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(seed.data()), seed.size());
  if (!p) {
    return make_error(errc::invalid_argument, "OpenSSL refused the Ed25519 seed");
  }
  return signing_key(std::move(kid), p);
}

signing_key::signing_key(signing_key&& o) noexcept
    : kid_(std::move(o.kid_)), pkey_(std::exchange(o.pkey_, nullptr)) {}

signing_key& signing_key::operator=(signing_key&& o) noexcept {
  if (this != &o) {
    EVP_PKEY_free(as_pkey(pkey_));
    kid_ = std::move(o.kid_);
    pkey_ = std::exchange(o.pkey_, nullptr);
  }
  return *this;
}

signing_key::~signing_key() {
  EVP_PKEY_free(as_pkey(pkey_));
}

std::string signing_key::seed() const {
  std::string s(32, '\0');
  size_t len = s.size();
  EVP_PKEY_get_raw_private_key(as_pkey(pkey_), reinterpret_cast<unsigned char*>(s.data()), &len);
  return s;
}

public_key signing_key::public_part() const {
  std::string s(32, '\0');
  size_t len = s.size();
  EVP_PKEY_get_raw_public_key(as_pkey(pkey_), reinterpret_cast<unsigned char*>(s.data()), &len);
  return public_key{kid_, s};
}

std::string signing_key::sign(std::string_view message) const {
  std::string sig(64, '\0');
  size_t len = sig.size();
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok =
      ctx && EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, as_pkey(pkey_)) == 1 &&
      EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok || len != 64) {
    throw std::runtime_error("Ed25519 signing failed");  // a valid key always signs
  }
  return sig;
}

std::string signing_key::issue(const claims& c) const {
  std::string input = signing_input(kid_, c);
  return input + "." + base64url_encode(sign(input));
}

bool verify_signature(std::string_view public_raw, std::string_view message,
                      std::string_view signature) {
  if (public_raw.size() != 32 || signature.size() != 64) {
    return false;
  }
  EVP_PKEY* p = EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(public_raw.data()), 32);
  if (!p) {
    return false;
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok =
      ctx && EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, p) == 1 &&
      EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature.data()), 64,
                       reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(p);
  return ok;
}

status keyring::load(std::vector<key_entry> entries) {
  // Oldest first. Times are in seconds, so a rotation within the second of the key before it
  // ties: the key that stopped signing (signing_until set) is the older one.
  std::sort(entries.begin(), entries.end(), [](const key_entry& a, const key_entry& b) {
    auto rank = [](const key_entry& e) {
      return std::make_tuple(e.created_at, e.signing_until == 0 ? 1 : 0, e.kid);
    };
    return rank(a) < rank(b);
  });
  std::vector<signing_key> keys;
  for (auto& e : entries) {
    auto k = signing_key::from_seed(e.kid, e.seed);
    if (!k) {
      return make_error(errc::invalid_argument, "key " + e.kid + ": " + k.err().detail);
    }
    keys.push_back(std::move(*k));
  }
  // Two keys marked as signing (a crash mid-rotation): the older stopped when the newer began.
  for (size_t i = 0; i + 1 < entries.size(); ++i) {
    if (entries[i].signing_until == 0) {
      entries[i].signing_until = entries[i + 1].created_at;
    }
  }
  entries_ = std::move(entries);
  keys_ = std::move(keys);
  return {};
}

std::vector<key_entry> keyring::rotate(int64_t now) {
  std::vector<key_entry> changed;
  if (!entries_.empty() && entries_.back().signing_until == 0) {
    entries_.back().signing_until = now;
    changed.push_back(entries_.back());
  }
  auto k = signing_key::generate(new_kid());
  key_entry e{k.kid(), k.seed(), now, 0};
  entries_.push_back(e);
  keys_.push_back(std::move(k));
  changed.push_back(std::move(e));
  return changed;
}

std::vector<std::string> keyring::retire(int64_t now) {
  std::vector<std::string> gone;
  for (size_t i = 0; i + 1 < entries_.size();) {  // the newest key never retires
    auto& e = entries_[i];
    if (e.signing_until != 0 && e.signing_until + retire_after_ <= now) {
      gone.push_back(e.kid);
      entries_.erase(entries_.begin() + i);
      keys_.erase(keys_.begin() + i);
    } else {
      ++i;
    }
  }
  return gone;
}

const signing_key& keyring::signer() const {
  return keys_.back();
}

std::vector<public_key> keyring::published() const {
  std::vector<public_key> out;
  for (auto it = keys_.rbegin(); it != keys_.rend(); ++it) {
    out.push_back(it->public_part());
  }
  return out;
}

}  // namespace vodgrid::auth
