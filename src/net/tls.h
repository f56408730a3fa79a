// TLS for the HTTP server and client (issue 17): a server's certificate and private key loaded into
// an OpenSSL context through Asio's ssl::context, checked at start with one line naming what is
// wrong. One context is shared read-only by every event loop of a server; a reload (SIGHUP) makes a
// new one that new connections take, while the connections already open keep theirs.
#pragma once

#include <filesystem>
#include <memory>

#include <boost/asio/ssl/context.hpp>

#include "base/result.h"
#include "net/http.h"

namespace vodgrid::net {

// A server context for `f`: TLS 1.2 and 1.3 only; for 1.2, ECDHE with AES-GCM or ChaCha20-Poly1305
// (Mozilla's "intermediate" list), no renegotiation, no compression. Refused with one line naming
// the file when a file is missing or unreadable, the key readable by group or others, not a key or
// not the certificate's, or the certificate expired or not valid yet.
result<std::shared_ptr<boost::asio::ssl::context>> make_server_context(const tls_files& f);

// A client context: TLS 1.2 and 1.3 only, the same 1.2 ciphers, peers verified (SSL_VERIFY_PEER)
// against the PEM certificates in `ca`, or the system's trust store when `ca` is empty. The host
// name is checked per connection (http_client). Refused with one line when `ca` is missing,
// unreadable or holds no certificate.
result<std::shared_ptr<boost::asio::ssl::context>> make_client_context(
    const std::filesystem::path& ca);
// make_client_context, made once per CA path in the process and shared (read-only after it is
// made; OpenSSL's contexts are safe to use from several threads): every client of a daemon uses
// the same one rather than parsing the CA per client.
result<std::shared_ptr<boost::asio::ssl::context>> client_context(const std::filesystem::path& ca);

// The CA of the clients whose client_options::tls_ca is empty: the grid's [tls] ca, set once by
// each `vodgrid` command that loads the grid's config (its daemons, `up`, `station`), before any
// client runs. Empty (the default): the system's trust store.
void set_default_tls_ca(std::filesystem::path ca);
std::filesystem::path default_tls_ca();

// The 1.2 cipher list of make_server_context (also for the benchmark's nginx).
extern const char* const tls12_ciphers;

}  // namespace vodgrid::net
