#include "net/tls.h"

// Asio's SSL part, compiled here once (BOOST_ASIO_SEPARATE_COMPILATION; base/asio_impl.cc has the
// rest): only vodgrid_net links OpenSSL's libssl.
#include <boost/asio/ssl/impl/src.hpp>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>

#include "base/fs.h"

namespace vodgrid::net {

namespace ssl = boost::asio::ssl;

const char* const tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

namespace {

// OpenSSL's reason for the last failure (its error queue emptied), "" if none.
std::string openssl_reason() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    if (const char* r = ERR_reason_error_string(e)) {
      out = r;  // the last: the most specific of the chain OpenSSL kept
    }
  }
  return out;
}

error tls_error(std::string detail) {
  return error{errc::invalid_argument, "tls: " + std::move(detail)};
}

// A context of either side that speaks only TLS 1.2 and 1.3, with the modern cipher list, no
// renegotiation and no compression: what servers and clients have in common.
result<std::shared_ptr<ssl::context>> modern_context(ssl::context::method method) {
  ERR_clear_error();
  auto ctx = std::make_shared<ssl::context>(method);
  SSL_CTX* c = ctx->native_handle();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  if (SSL_CTX_set_cipher_list(c, tls12_ciphers) != 1) {
    return tls_error("the cipher list is refused: " + openssl_reason());
  }
  return ctx;
}

// The ticket_keyring a server context makes its tickets with: an owning pointer in the context's
// own ex_data slot (Asio keeps its verify callback in the app data), freed with the context.
void free_ring(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<std::shared_ptr<ticket_keyring>*>(ptr);
}

int ring_slot() {
  static const int slot = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_ring);
  return slot;
}

// OpenSSL's session-ticket callback (SSL_CTX_set_tlsext_ticket_key_evp_cb(3)): with `enc`, set up
// a new ticket with the key in use (0: none, no ticket is sent); else find the ticket's key by
// name (0: unknown, a full handshake) and ask for a renewal (2) when it is not the one in use.
int ticket_key_cb(SSL* s, unsigned char name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                  EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int enc) {
  auto* ring = static_cast<std::shared_ptr<ticket_keyring>*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(s), ring_slot()));
  if (!ring || !*ring) {
    return 0;
  }
  auto now = (*ring)->get();  // held until the keys are copied into the contexts
  const ticket_key* key = nullptr;
  size_t at = 0;
  if (enc) {
    if (now->keys.empty()) {
      return 0;  // no keys yet (an engine before its director's): full handshakes
    }
    key = &now->keys[now->in_use];
    if (RAND_bytes(iv, 16) != 1) {
      return -1;
    }
    std::memcpy(name, key->name.data(), key->name.size());
  } else {
    for (; at < now->keys.size(); ++at) {
      if (std::memcmp(name, now->keys[at].name.data(), 16) == 0) {
        key = &now->keys[at];
        break;
      }
    }
    if (!key) {
      return 0;
    }
  }
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(
          OSSL_MAC_PARAM_KEY, const_cast<unsigned char*>(key->hmac.data()), key->hmac.size()),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
      OSSL_PARAM_construct_end()};
  if (EVP_MAC_CTX_set_params(mac, params) != 1 ||
      EVP_CipherInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key->aes.data(), iv, enc) != 1) {
    return -1;
  }
  return enc || at <= now->in_use ? 1 : 2;
}

}  // namespace

ticket_key ticket_key::random() {
  ticket_key k;
  if (RAND_bytes(k.name.data(), static_cast<int>(k.name.size())) != 1 ||
      RAND_bytes(k.aes.data(), static_cast<int>(k.aes.size())) != 1 ||
      RAND_bytes(k.hmac.data(), static_cast<int>(k.hmac.size())) != 1) {
    throw std::runtime_error("tls: OpenSSL's random generator failed");  // a broken invariant
  }
  return k;
}

std::string ticket_key::bytes() const {
  std::string out;
  out.append(reinterpret_cast<const char*>(name.data()), name.size());
  out.append(reinterpret_cast<const char*>(aes.data()), aes.size());
  out.append(reinterpret_cast<const char*>(hmac.data()), hmac.size());
  return out;
}

std::optional<ticket_key> ticket_key::from_bytes(std::string_view b) {
  ticket_key k;
  if (b.size() != k.name.size() + k.aes.size() + k.hmac.size()) {
    return std::nullopt;
  }
  std::memcpy(k.name.data(), b.data(), k.name.size());
  std::memcpy(k.aes.data(), b.data() + k.name.size(), k.aes.size());
  std::memcpy(k.hmac.data(), b.data() + k.name.size() + k.aes.size(), k.hmac.size());
  return k;
}

ticket_keyring::snapshot::~snapshot() {
  if (!keys.empty()) {
    OPENSSL_cleanse(keys.data(), keys.size() * sizeof(ticket_key));
  }
}

void ticket_keyring::set(std::vector<ticket_key> newest_first, size_t in_use) {
  auto next = std::make_shared<snapshot>();
  next->keys = std::move(newest_first);
  next->in_use = next->keys.empty() ? 0 : std::min(in_use, next->keys.size() - 1);
  bool changed = !next->keys.empty();
  auto before = now_.exchange(next);
  if (changed && !before->keys.empty()) {
    changed = before->keys[before->in_use].name != next->keys[next->in_use].name;
  }
  if (changed) {
    changes_.fetch_add(1, std::memory_order_relaxed);
  }
}

result<std::shared_ptr<ssl::context>> make_server_context(const tls_files& f,
                                                          std::shared_ptr<ticket_keyring> tickets) {
  if (f.cert.empty() || f.key.empty()) {
    return tls_error("needs both 'cert' and 'key'");
  }
  // The key is a secret: the same rule as every secret file of the grid (base/fs.h).
  if (auto st = check_private_file(f.key); !st) {
    return tls_error(fmt::format("key {}", st.err().detail));
  }
  auto cert = read_file(f.cert, 1 << 20);
  if (!cert) {
    return tls_error(fmt::format("certificate {}", cert.err().detail));
  }
  auto key = read_file(f.key, 1 << 20);
  if (!key) {
    return tls_error(fmt::format("key {}", key.err().detail));
  }
  auto made = modern_context(ssl::context::tls_server);
  if (!made) {
    return made;
  }
  auto ctx = *made;
  SSL_CTX* c = ctx->native_handle();
  boost::system::error_code ec;
  ctx->use_certificate_chain(boost::asio::buffer(*cert), ec);
  if (ec) {
    return tls_error(fmt::format("{} is not a PEM certificate: {}", f.cert.string(), ec.message()));
  }
  // Parsed apart from its use, so that "not a key" and "not this certificate's key" are told apart.
  BIO* bio = BIO_new_mem_buf(key->data(), static_cast<int>(key->size()));
  EVP_PKEY* pkey = bio ? PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr) : nullptr;
  BIO_free(bio);
  if (!pkey) {
    return tls_error(
        fmt::format("{} is not a PEM private key: {}", f.key.string(), openssl_reason()));
  }
  int used = SSL_CTX_use_PrivateKey(c, pkey);
  EVP_PKEY_free(pkey);
  if (used != 1 || SSL_CTX_check_private_key(c) != 1) {
    ERR_clear_error();
    return tls_error(
        fmt::format("the key {} is not the certificate {}'s", f.key.string(), f.cert.string()));
  }
  X509* x = SSL_CTX_get0_certificate(c);
  if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
    return tls_error(fmt::format("the certificate {} has expired", f.cert.string()));
  }
  if (X509_cmp_current_time(X509_get0_notBefore(x)) >= 0) {
    return tls_error(fmt::format("the certificate {} is not valid yet", f.cert.string()));
  }
  if (tickets) {
    auto* owner = new std::shared_ptr<ticket_keyring>(std::move(tickets));
    if (SSL_CTX_set_ex_data(c, ring_slot(), owner) != 1) {
      delete owner;
      return tls_error("the session-ticket keys cannot be attached: " + openssl_reason());
    }
    SSL_CTX_set_tlsext_ticket_key_evp_cb(c, ticket_key_cb);
  }
  ERR_clear_error();
  return ctx;
}

result<std::shared_ptr<ssl::context>> make_client_context(const std::filesystem::path& ca) {
  auto made = modern_context(ssl::context::tls_client);
  if (!made) {
    return made;
  }
  auto ctx = *made;
  SSL_CTX* c = ctx->native_handle();
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
  if (ca.empty()) {
    if (SSL_CTX_set_default_verify_paths(c) != 1) {
      return tls_error("the system's trust store cannot be loaded: " + openssl_reason());
    }
    ERR_clear_error();
    return ctx;
  }
  auto pem = read_file(ca, 16 << 20);
  if (!pem) {
    return tls_error(fmt::format("ca {}", pem.err().detail));
  }
  // Every certificate of the file, so that a bundle (several CAs) works as a single one.
  BIO* bio = BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size()));
  X509_STORE* store = SSL_CTX_get_cert_store(c);
  int added = 0;
  while (bio) {
    X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    if (!x) {
      break;
    }
    if (X509_STORE_add_cert(store, x) == 1) {
      ++added;
    }
    X509_free(x);
  }
  BIO_free(bio);
  ERR_clear_error();  // the end of the file reads as an error
  if (added == 0) {
    return tls_error(fmt::format("ca {} holds no PEM certificate", ca.string()));
  }
  return ctx;
}

namespace {
std::mutex default_ca_mu;
std::filesystem::path default_ca;  // guarded by default_ca_mu
}  // namespace

void set_default_tls_ca(std::filesystem::path ca) {
  std::lock_guard lock(default_ca_mu);
  default_ca = std::move(ca);
}

std::filesystem::path default_tls_ca() {
  std::lock_guard lock(default_ca_mu);
  return default_ca;
}

result<std::shared_ptr<ssl::context>> client_context(const std::filesystem::path& ca) {
  static std::mutex mu;
  static std::map<std::filesystem::path, std::shared_ptr<ssl::context>> made;
  std::lock_guard lock(mu);
  if (auto it = made.find(ca); it != made.end()) {
    return it->second;
  }
  auto ctx = make_client_context(ca);
  if (!ctx) {
    return ctx.err();
  }
  made.emplace(ca, *ctx);
  return *ctx;
}

void keep_session_at_free(SSL* ssl) {
  SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_SENT_SHUTDOWN);
}

}  // namespace vodgrid::net
