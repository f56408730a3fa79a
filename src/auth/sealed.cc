// XChaCha20-Poly1305 (libsodium's crypto_aead_xchacha20poly1305_ietf): a random 24-byte nonce per
// value is safe with one key for as many values as the database will ever hold.
#include "auth/sealed.h"

#include <sodium.h>

#include <stdexcept>

#include "auth/sodium.h"
#include "base/base64url.h"
#include "base/fs.h"

namespace vodgrid::auth {

namespace {

constexpr std::string_view magic = "vgs1";
constexpr size_t nonce_bytes = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t tag_bytes = crypto_aead_xchacha20poly1305_ietf_ABYTES;

const unsigned char* bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

key_sealer::key_sealer(std::string key) : key_(std::move(key)) {
  static_assert(key_bytes == crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
  if (key_.size() != key_bytes) {
    throw std::invalid_argument("a key-encryption key is 32 bytes");
  }
  init_sodium();
}

result<key_sealer> key_sealer::load(const std::filesystem::path& file) {
  VODGRID_TRY(check_private_file(file));
  VODGRID_TRY(auto text, read_file(file, 4096));
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) {
    text.pop_back();
  }
  auto key = base64url_decode(text);
  if (!key || key->size() != key_bytes) {
    return make_error(errc::invalid_argument,
                      file.string() + " does not hold a key (43 base64url characters)");
  }
  return key_sealer(std::move(*key));
}

result<key_sealer> key_sealer::create(const std::filesystem::path& file) {
  init_sodium();
  std::string key(key_bytes, '\0');
  randombytes_buf(key.data(), key.size());
  VODGRID_TRY(write_secret_durably(file, base64url_encode(key) + "\n"));
  return key_sealer(std::move(key));
}

bool key_sealer::is_sealed(std::string_view blob) {
  return blob.starts_with(magic) && blob.size() >= magic.size() + nonce_bytes + tag_bytes;
}

std::string key_sealer::seal(std::string_view plain, std::string_view context) const {
  std::string out(magic);
  out.resize(magic.size() + nonce_bytes + plain.size() + tag_bytes);
  auto* nonce = reinterpret_cast<unsigned char*>(out.data() + magic.size());
  randombytes_buf(nonce, nonce_bytes);
  unsigned long long len = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(nonce + nonce_bytes, &len, bytes(plain), plain.size(),
                                             bytes(context), context.size(), nullptr, nonce,
                                             bytes(key_));
  return out;
}

result<std::string> key_sealer::open(std::string_view sealed, std::string_view context) const {
  if (!is_sealed(sealed)) {
    return make_error(errc::invalid_argument, "not a sealed value");
  }
  auto nonce = sealed.substr(magic.size(), nonce_bytes);
  auto cipher = sealed.substr(magic.size() + nonce_bytes);
  std::string plain(cipher.size() - tag_bytes, '\0');
  unsigned long long len = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<unsigned char*>(plain.data()), &len, nullptr, bytes(cipher),
          cipher.size(), bytes(context), context.size(), bytes(nonce), bytes(key_)) != 0) {
    return make_error(errc::forbidden, "a sealed value does not open with this key");
  }
  plain.resize(len);
  return plain;
}

}  // namespace vodgrid::auth
