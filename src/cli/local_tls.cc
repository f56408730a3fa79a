// The embedded grid's local CA and daemon certificates (`vodgrid up --tls`), with OpenSSL's C API
// rather than the openssl command, which a machine running vodgrid need not have.
#include "cli/local_tls.h"

#include <arpa/inet.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fmt/format.h>

#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "base/fs.h"

namespace vodgrid::cli {

namespace {

namespace fs = std::filesystem;

struct free_x509 {
  void operator()(X509* x) const { X509_free(x); }
};
struct free_pkey {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct free_bio {
  void operator()(BIO* b) const { BIO_free(b); }
};
using x509_ptr = std::unique_ptr<X509, free_x509>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, free_pkey>;
using bio_ptr = std::unique_ptr<BIO, free_bio>;

constexpr long day = 24 * 3600;

error tls_error(std::string what) {
  std::string reason;
  while (unsigned long e = ERR_get_error()) {
    if (const char* r = ERR_reason_error_string(e)) {
      reason = r;
    }
  }
  return make_error(errc::internal,
                    "tls: " + what + (reason.empty() ? std::string() : ": " + reason));
}

// The certificate and key of `name` under `dir`, or nothing when either is missing or unreadable.
std::pair<x509_ptr, pkey_ptr> load_pair(const fs::path& dir, const std::string& name) {
  auto crt = read_file(dir / (name + ".crt"), 1 << 20);
  auto key = read_file(dir / (name + ".key"), 1 << 20);
  if (!crt || !key) {
    return {};
  }
  bio_ptr cb(BIO_new_mem_buf(crt->data(), static_cast<int>(crt->size())));
  bio_ptr kb(BIO_new_mem_buf(key->data(), static_cast<int>(key->size())));
  x509_ptr x(cb ? PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr) : nullptr);
  pkey_ptr k(kb ? PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr) : nullptr);
  ERR_clear_error();
  if (!x || !k || X509_check_private_key(x.get(), k.get()) != 1) {
    ERR_clear_error();
    return {};
  }
  return {std::move(x), std::move(k)};
}

// Valid now and for at least another day.
bool valid_a_day_more(X509* x) {
  time_t later = std::time(nullptr) + day;
  return X509_cmp_current_time(X509_get0_notBefore(x)) < 0 &&
         X509_cmp_time(X509_get0_notAfter(x), &later) > 0;
}

bool is_address(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

status add_ext(X509* x, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, x, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) {
    return tls_error(fmt::format("extension {}", value));
  }
  int ok = X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  if (ok != 1) {
    return tls_error(fmt::format("extension {}", value));
  }
  return {};
}

// A new certificate for `key`, named `cn`, valid `days` from an hour ago; signed by `issuer` and
// its key, or by itself when `issuer` is null (the CA). `extensions`: NID and value, in order.
result<x509_ptr> make_cert(EVP_PKEY* key, const std::string& cn, long days, X509* issuer,
                           EVP_PKEY* issuer_key,
                           const std::vector<std::pair<int, std::string>>& extensions) {
  x509_ptr x(X509_new());
  std::unique_ptr<BIGNUM, decltype(&BN_free)> serial(BN_new(), BN_free);
  if (!x || !serial || X509_set_version(x.get(), X509_VERSION_3) != 1 ||
      BN_rand(serial.get(), 63, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(x.get())) ||
      !X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600) ||
      !X509_gmtime_adj(X509_getm_notAfter(x.get()), days * day) ||
      X509_set_pubkey(x.get(), key) != 1 ||
      X509_NAME_add_entry_by_txt(X509_get_subject_name(x.get()), "CN", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                 0) != 1) {
    return tls_error("certificate for " + cn);
  }
  X509* signer = issuer ? issuer : x.get();
  if (X509_set_issuer_name(x.get(), X509_get_subject_name(signer)) != 1) {
    return tls_error("certificate for " + cn);
  }
  for (auto& [nid, value] : extensions) {
    if (auto st = add_ext(x.get(), signer, nid, value); !st) {
      return st.err();
    }
  }
  if (X509_sign(x.get(), issuer ? issuer_key : key, EVP_sha256()) <= 0) {
    return tls_error("signing the certificate for " + cn);
  }
  return x;
}

result<std::string> pem_of(X509* x, EVP_PKEY* k) {
  bio_ptr b(BIO_new(BIO_s_mem()));
  int ok = !b  ? 0
           : x ? PEM_write_bio_X509(b.get(), x)
               : PEM_write_bio_PrivateKey(b.get(), k, nullptr, nullptr, 0, nullptr, nullptr);
  if (ok != 1) {
    return tls_error("PEM encoding");
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(b.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

// Writes NAME.key (0600, written first: a certificate never stands without its key) and NAME.crt.
status write_pair(const fs::path& dir, const std::string& name, X509* x, EVP_PKEY* k) {
  auto key = pem_of(nullptr, k);
  auto crt = pem_of(x, nullptr);
  if (!key || !crt) {
    return key ? crt.err() : key.err();
  }
  if (auto st = write_secret_durably(dir / (name + ".key"), *key); !st) {
    return st;
  }
  return write_file_durably(dir / (name + ".crt"), *crt);
}

}  // namespace

status make_local_tls(grid_config& grid, const fs::path& dir) {
  if (auto st = make_private_dir(dir); !st) {
    return st;
  }
  ERR_clear_error();
  // The CA: kept across runs while valid, so that what trusts it (a browser, a script) still does.
  auto [ca, ca_key] = load_pair(dir, "ca");
  if (!ca || !valid_a_day_more(ca.get())) {
    ca_key.reset(EVP_EC_gen("P-256"));
    if (!ca_key) {
      return tls_error("a P-256 key for the CA");
    }
    auto made = make_cert(ca_key.get(), "vodgrid local CA", 3650, nullptr, nullptr,
                          {{NID_basic_constraints, "critical,CA:TRUE"},
                           {NID_key_usage, "critical,keyCertSign,cRLSign"},
                           {NID_subject_key_identifier, "hash"}});
    if (!made) {
      return made.err();
    }
    ca = std::move(*made);
    if (auto st = write_pair(dir, "ca", ca.get(), ca_key.get()); !st) {
      return st;
    }
  }

  // Every daemon: its name and its listen address, whose TLS is turned on.
  std::vector<std::pair<std::string, listen_address*>> daemons;
  if (grid.registry) {
    daemons.emplace_back("registry", &grid.registry->listen);
  }
  if (grid.auth) {
    daemons.emplace_back("auth", &grid.auth->listen);
  }
  if (grid.content) {
    daemons.emplace_back("content", &grid.content->listen);
  }
  for (auto& s : grid.stations) {
    daemons.emplace_back(s.name.str(), &s.director.listen);
    for (auto& e : s.engines) {
      daemons.emplace_back(e.name.str(), &e.listen);
    }
  }
  EVP_PKEY* ca_public = X509_get0_pubkey(ca.get());
  for (auto& [name, at] : daemons) {
    const std::string& host = at->host;
    auto [crt, key] = load_pair(dir, name);
    bool fits = crt && valid_a_day_more(crt.get()) && X509_verify(crt.get(), ca_public) == 1 &&
                (is_address(host) ? X509_check_ip_asc(crt.get(), host.c_str(), 0) == 1
                                  : X509_check_host(crt.get(), host.c_str(), 0, 0, nullptr) == 1);
    ERR_clear_error();
    if (!fits) {
      key.reset(EVP_EC_gen("P-256"));
      if (!key) {
        return tls_error("a P-256 key for " + name);
      }
      std::string san = (is_address(host) ? "IP:" : "DNS:") + host;
      if (host != "localhost") {
        san += ",DNS:localhost";
      }
      auto made = make_cert(key.get(), name, 365, ca.get(), ca_key.get(),
                            {{NID_basic_constraints, "critical,CA:FALSE"},
                             {NID_key_usage, "critical,digitalSignature"},
                             {NID_ext_key_usage, "serverAuth"},
                             {NID_subject_alt_name, san},
                             {NID_authority_key_identifier, "keyid:always"}});
      if (!made) {
        return made.err();
      }
      if (auto st = write_pair(dir, name, made->get(), key.get()); !st) {
        return st;
      }
    }
    at->tls_cert = dir / (name + ".crt");
    at->tls_key = dir / (name + ".key");
  }
  grid.tls.ca = dir / "ca.crt";
  return {};
}

}  // namespace vodgrid::cli
