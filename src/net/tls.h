// TLS for the HTTP server and client (issue 17): a server's certificate and private key loaded into
// an OpenSSL context through Asio's ssl::context, checked at start with one line naming what is
// wrong. One context is shared read-only by every event loop of a server; a reload (SIGHUP) makes a
// new one that new connections take, while the connections already open keep theirs.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ssl/context.hpp>

#include "base/result.h"
#include "net/http.h"

namespace vodgrid::net {

// One session-ticket key (RFC 5077, section 4): its name travels in the clear in each ticket and
// picks the key; the ticket's session state is encrypted with AES-256-CBC and authenticated with
// HMAC-SHA256 (what OpenSSL's own tickets use).
struct ticket_key {
  std::array<unsigned char, 16> name{};
  std::array<unsigned char, 32> aes{};
  std::array<unsigned char, 32> hmac{};
  bool operator==(const ticket_key&) const = default;
  static ticket_key random();  // from OpenSSL's CSPRNG
  // Its 80 bytes (name, AES key, HMAC key), as the director hands it to its engines.
  std::string bytes() const;
  static std::optional<ticket_key> from_bytes(std::string_view b);  // nullopt unless 80 bytes
};

// The session-ticket keys of servers that share sessions (issue 17, item 2: a station's director
// and engines, so that a console's session made with one resumes on the others). Tickets are made
// with keys()[in_use]; a ticket of any key of the ring is accepted, and one made with a key older
// than the one in use is renewed (a new ticket with it). Keys newer than in_use are known before
// they are used, so that every server can read a ticket as soon as one makes it. Empty: no ticket
// is made or accepted (full handshakes). Kept in memory only, wiped when replaced.
// Thread-safe: set() from any thread (an engine's heartbeat, the director's rotation), read by the
// handshakes of every event loop.
class ticket_keyring {
 public:
  struct snapshot {
    std::vector<ticket_key> keys;  // newest first
    size_t in_use = 0;             // the key tickets are made with (< keys.size() unless empty)
    ~snapshot();
  };
  // `in_use` beyond the keys is taken as the last.
  void set(std::vector<ticket_key> newest_first, size_t in_use);
  std::shared_ptr<const snapshot> get() const { return now_.load(); }
  // Times the key in use changed to another (a rotation reached this server).
  uint64_t changes() const { return changes_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::shared_ptr<const snapshot>> now_{std::make_shared<const snapshot>()};
  std::atomic<uint64_t> changes_{0};
};

// A server context for `f`: TLS 1.2 and 1.3 only; for 1.2, ECDHE with AES-GCM or ChaCha20-Poly1305
// (Mozilla's "intermediate" list), no renegotiation, no compression. Refused with one line naming
// the file when a file is missing or unreadable, the key readable by group or others, not a key or
// not the certificate's, or the certificate expired or not valid yet. With `tickets`, session
// tickets are made and read with its keys (the context keeps it alive), else with OpenSSL's own.
result<std::shared_ptr<boost::asio::ssl::context>> make_server_context(
    const tls_files& f, std::shared_ptr<ticket_keyring> tickets = nullptr);

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

// For a client's TLS connection about to be freed without a close_notify sent (a kept connection
// dropped, one whose reply said Connection: close): SSL_free voids the session of a connection
// that was not shut down (OpenSSL marks it not resumable, a guard against truncation), which
// would throw away the ticket that the client's next connection to the peer offers. The ticket
// is the peer's promise, not the connection's: it stays good however the connection ends.
void keep_session_at_free(SSL* ssl);

// The CA of the clients whose client_options::tls_ca is empty: the grid's [tls] ca, set once by
// each `vodgrid` command that loads the grid's config (its daemons, `up`, `station`), before any
// client runs. Empty (the default): the system's trust store.
void set_default_tls_ca(std::filesystem::path ca);
std::filesystem::path default_tls_ca();

// The 1.2 cipher list of make_server_context (also for the benchmark's nginx).
extern const char* const tls12_ciphers;

}  // namespace vodgrid::net
