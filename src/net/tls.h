// TLS for the HTTP server (issue 17): a server's certificate and private key loaded into an
// OpenSSL context through Asio's ssl::context, checked at start with one line naming what is wrong.
// One context is shared read-only by every event loop of a server; a reload (SIGHUP) makes a new
// one that new connections take, while the connections already open keep theirs.
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

// The 1.2 cipher list of make_server_context (also for the benchmark's nginx).
extern const char* const tls12_ciphers;

}  // namespace vodgrid::net
