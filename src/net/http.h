// The HTTP/1.1 server every daemon runs: Beast with C++20 coroutines, a router, JSON errors, file
// bodies sent with sendfile(2), deadlines and size limits on every read, and a two-phase stop.
// Threading: a server runs on one or more event loops (listen's `extra`). The first, the "home"
// loop (the executor given to the constructor), owns the daemon's state: a handler runs there
// unless its route is marked loop_affinity::any, so daemon state touched by home handlers needs no
// lock unless other threads touch it too. A connection stays on the loop that accepted it.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/value.hpp>
#include <boost/system/error_code.hpp>

namespace boost::asio::ssl {
class context;
}

#include "base/cidr.h"
#include "base/result.h"
#include "net/metrics.h"

namespace vodgrid::net {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

using request = http::request<http::string_body>;

// A slice of an open file to send as the body; `owner` keeps the descriptor open until sent. What
// is in the page cache goes with sendfile from the loop; what is not, with sendfile on a pool of
// disk threads (reply.cc), so that a cold disk never stalls the loop's other connections.
struct file_slice {
  std::shared_ptr<void> owner;
  int fd = -1;
  uint64_t offset = 0;
  uint64_t length = 0;
};

// A body still arriving while it is sent (cut-through: an engine streams a segment it is receiving
// from the file it writes it to). Bytes [0, available()) of the file fd() may be sent (sendfile, as
// file_slice); they never change once available, and the count only grows. The descriptor stays
// open while the body lives. Implementations belong to the server's executor.
class growing_body {
 public:
  virtual ~growing_body() = default;
  virtual uint64_t available() const = 0;
  virtual int fd() const = 0;  // meaningful once available() > 0
  // Completes once more than `have` bytes are available, or the body has failed (then available()
  // stays at `have` or below and the reply ends with its connection).
  virtual asio::awaitable<void> wait_beyond(uint64_t have) = 0;
};

struct stream_slice {
  std::shared_ptr<growing_body> body;
  uint64_t offset = 0;
  uint64_t length = 0;
  std::shared_ptr<void> owner;  // released with the reply (e.g. what counts the stream)
};

struct reply {
  http::status status = http::status::ok;
  const char* content_type = "application/json";  // a string literal (not copied, never freed)
  std::string body;
  // Written as given; not Server, Content-Type, Content-Length or Connection, which the server
  // sets.
  std::vector<std::pair<std::string, std::string>> headers;
  // A redirect's target, when not empty: a Location line before `headers` (a 302 needs no
  // allocation for `headers`).
  std::string location;
  bool no_store = false;               // a "Cache-Control: no-store" line before `headers`
  std::optional<file_slice> file;      // when set, the body is this file slice (sendfile)
  std::optional<stream_slice> stream;  // when set, the body is this slice of a growing body
  bool close = false;                  // close the connection after this reply
};

// sendfile calls made off the loop, on the disk threads, because their bytes were not in the page
// cache: a count of page-cache misses met by the replies of this process.
uint64_t file_loads_off_loop();
// Tests only: called on a disk thread before each such sendfile (e.g. to hold it, showing that the
// loop serves others meanwhile); empty: none.
void set_file_load_hook(std::function<void()> hook);

// Maps an error onto its HTTP status with body {"error": "<errc>", "detail": "..."}.
reply error_reply(const error& e);
reply error_reply(http::status s, std::string_view code, std::string_view detail);
reply json_reply(const boost::json::value& v, http::status s = http::status::ok);
http::status status_of(errc e);

// What a handler sees of one request. Valid until the handler's coroutine completes (the connection
// reuses it for its next request).
struct request_context {
  request req;
  tcp::endpoint remote;
  std::string path;                 // the target without its query
  std::vector<std::string> params;  // captured `{}` parts of the route pattern, in order
  // Decoded query parameters in their order, repeats included: views into req's target when
  // nothing needed decoding (the usual case, no copy), else into `decoded`.
  std::vector<std::pair<std::string_view, std::string_view>> query;
  // The keys and values `query` points to when they had to be decoded (or were added); a deque,
  // so that adding one moves none of the others.
  std::deque<std::string> decoded;
  // The value of the last query parameter named `k`, or "" if there is none.
  std::string_view query_param(std::string_view k) const;
  // Adds a parameter, copied into `decoded`.
  void add_query(std::string_view k, std::string_view v);
};

// Handlers are called with a context owned by the connection's coroutine, which awaits them at
// once.
using handler = std::function<asio::awaitable<reply>(request_context&)>;

// The bytes of a foreign connection: the socket itself, or on a TLS port the TLS stream over it
// (the foreign protocol then travels inside TLS: RTSPS). Called from the handler's coroutine; one
// read and one write may be in flight at once, never two of the same kind.
class foreign_stream {
 public:
  using io_result = std::tuple<boost::system::error_code, size_t>;
  virtual ~foreign_stream() = default;
  // At least one byte into `b`, or an error (eof when the peer closed).
  virtual asio::awaitable<io_result> read_some(asio::mutable_buffer b) = 0;
  // All of `b`, or an error.
  virtual asio::awaitable<io_result> write(asio::const_buffer b) = 0;
};

// A connection of another protocol that shares the port (RTSP 1.0 on a director's, DESIGN.md flow
// 8), handed over by the server: it belongs to the handler until the handler completes, then the
// server closes it. Valid while the handler runs, which runs on the home loop.
struct foreign_connection {
  foreign_stream& stream;
  bool tls = false;  // the port serves TLS: `stream` is encrypted (rtsps://)
  tcp::endpoint remote;
  std::string already_read;  // the bytes the server read to tell the protocol: the first request's
  // The server's deadline sweep cancels the socket's operations once `t` passes (max: never). The
  // handler sets one around each read and write, as the server does for HTTP.
  std::function<void(std::chrono::steady_clock::time_point t)> set_deadline;
};
using foreign_handler = std::function<asio::awaitable<void>(foreign_connection& c)>;

// Who reads a route's answers, for the browsers' cross-origin rules (CORS, docs/configuration.md
// [web]).
enum class audience {
  // Daemons and operators: no CORS headers, no preflight; a request a browser sends from a page of
  // another origin (Origin or Sec-Fetch-Site says so) is refused with 403 before its handler runs.
  control,
  // Consoles and web pages (playlists, redirects, segments, the watch page): every answer carries
  // the CORS headers for an allowed origin, and OPTIONS on the route's path is its preflight.
  viewer,
};

// How viewer routes answer web pages of other origins.
struct cors_options {
  // Origins as browsers send them ("https://tv.example.com", "http://127.0.0.1:8080"); "*" alone:
  // any origin (then no credentials, which viewer routes never use: tokens travel in the URL).
  std::vector<std::string> allowed_origins{"*"};
  // Also allow the origin "null": what a browser sends to the engine after a director's redirect
  // from a page of a third origin (Fetch's tainted origin). For engines, whose URLs are signed.
  bool allow_null = false;
  std::chrono::seconds max_age{600};  // how long a browser may reuse a preflight's answer
};

// Where a route's handler runs when its connection belongs to another loop than the home loop.
enum class loop_affinity {
  // On the home loop (the default): the connection's coroutine awaits the handler run there (two
  // posts), so the handler may touch the daemon's state like any code of the home loop.
  home,
  // On the connection's own loop, with no hop: the handler touches only what is safe from any
  // thread (atomics, snapshots published by the home loop, its own locals).
  any,
};

class ticket_keyring;  // net/tls.h

struct server_options {
  std::chrono::milliseconds header_timeout{10'000};  // to receive a whole request header
  std::chrono::milliseconds body_timeout{60'000};    // to receive a request body
  std::chrono::milliseconds idle_timeout{60'000};    // keep-alive between requests
  std::chrono::milliseconds write_timeout{60'000};   // per progress of a reply write
  uint32_t header_limit = 8 * 1024;                  // bytes of request line + headers
  uint64_t default_body_limit = 1 << 20;             // routes may raise it
  uint32_t max_connections = 10'000;                 // beyond: accepted then closed at once
  cors_options cors;                                 // for the routes of audience::viewer
  // Client addresses whose GET /metrics is answered ([grid] metrics_from); others get 403 with a
  // JSON reason (an empty list: none). Unset: every client (a server of no grid, as tests make).
  std::optional<std::vector<address_range>> metrics_from;
  // With TLS: the session-ticket keys its contexts make and accept tickets with (net/tls.h), shared
  // with other servers (a station's director and engines) so that a session made with one resumes
  // on another; kept across reload_tls. Unset: OpenSSL's own keys, made per context.
  std::shared_ptr<ticket_keyring> tickets;
};

// A server's `tls = { cert = "...", key = "..." }` (net/tls.h checks and loads them).
struct tls_files {
  std::filesystem::path cert;  // PEM: the certificate, then any intermediates
  std::filesystem::path key;  // PEM private key: a secret, refused when group or others may read it
};

// The timeouts are checked by one timer per server that ticks at a quarter of the shortest of
// them (between 5 ms and 1 s), so each may run over by up to one tick.

class http_server {
 public:
  http_server(asio::any_io_executor ex, std::string name, server_options opts = {});
  ~http_server();

  // A pattern is a path whose parts may be "{}" or "{}<suffix>" (e.g. "{}.ts"), each capturing
  // a part (the suffix stripped). HEAD is routed to GET handlers; the body is then dropped.
  // `who`: see audience (a pattern may have a viewer GET and control PUT, DELETE...).
  // `where`: see loop_affinity.
  void route(http::verb method, std::string pattern, handler h, uint64_t body_limit = 0,
             audience who = audience::control, loop_affinity where = loop_affinity::home);

  // Binds and starts accepting; returns the bound port (useful with port 0). `extra`: executors
  // of further event loops (each run by its own thread) that accept on the same listening socket
  // (not SO_REUSEPORT, which would let another process bind the port in silence) and serve the
  // connections they accept. Called on the home loop's thread, before that loop runs.
  result<uint16_t> listen(const std::string& host, uint16_t port,
                          std::vector<asio::any_io_executor> extra = {});

  // Two-phase stop: stop accepting and let idle connections go, then wait up to `drain` for
  // requests in flight, then cut what remains. Completes when every connection is gone.
  asio::awaitable<void> stop(std::chrono::milliseconds drain);

  // For a daemon destroyed without stop(), once the further loops' threads have ended: drops
  // their share of the server (acceptors, sweep timers), which must go before their io_contexts.
  void forget_further_loops() { loops_.resize(1); }

  metrics_registry& metrics() { return metrics_; }
  // Extra fields for /healthz (e.g. the daemon's role and name); called on each request.
  void set_health(std::function<boost::json::object()> fn) { health_ = std::move(fn); }
  size_t connections() const { return connections_.load(std::memory_order_relaxed); }
  // Whether the calling thread runs the home loop (tests, assertions).
  bool on_home_loop() const;
  // A connection whose first request line ends in " <version>" (e.g. "RTSP/1.0") goes to `h`. Such
  // connections count as idle at stop: they are cut at once.
  void set_foreign_protocol(std::string version, foreign_handler h) {
    foreign_version_ = " " + std::move(version);
    foreign_ = std::move(h);
  }
  const std::string& name() const { return name_; }

  // TLS on the port (net/tls.h): every connection is TLS from its first byte, its handshake done
  // within header_timeout; a plain-HTTP request, garbage or a handshake cut short is refused and
  // logged (at most one line a second). Before listen; an error (one line) changes nothing.
  status set_tls(tls_files f);
  // Loads the files again (SIGHUP): new connections get the new certificate, open ones keep theirs.
  // On an error the certificate in use stays.
  status reload_tls();
  bool tls() const { return tls_files_.has_value(); }

 private:
  // One part of a route pattern: a literal, or a capture `{}` followed by `text` (its suffix).
  struct route_part {
    std::string text;
    bool capture = false;
  };
  struct route_entry {
    http::verb method;
    std::vector<route_part> parts;
    handler h;
    uint64_t body_limit;
    audience who;
    loop_affinity where;
    histogram* duration;  // vodgrid_http_request_duration_seconds of this route
    // No earlier route's pattern matches a path this one matches: when it matches, it is the
    // route, without looking at the others (a session tries its last route first).
    bool unshadowed = true;
  };
  struct session;
  // One event loop's share of the server: its acceptor (on the shared listening socket), the
  // connections it serves and their deadline sweep. Touched only by that loop's thread, but for
  // stop (posted there) and the atomics.
  struct loop {
    loop(asio::any_io_executor e, bool h) : ex(e), home(h), acceptor(e), sweep_timer(e) {}
    asio::any_io_executor ex;
    bool home;
    tcp::acceptor acceptor;
    std::list<session*> sessions;
    std::atomic<size_t> count{0};  // sessions.size(), for stop on the home loop
    // Connections the acceptors gave this loop that have not ended (least_busy): counted when
    // accepted, before the loop's own thread has started them, so that a burst of connections
    // accepted by one loop is spread over all of them.
    std::atomic<size_t> assigned{0};
    std::atomic<bool> sweeping{false};  // sweep_loop runs (while there are sessions)
    // Its acceptor is open: stop() returns only once every loop has closed its own (a duplicate
    // left open would take connections into its backlog after stop, where they would hang).
    std::atomic<bool> listening{false};
    asio::steady_timer sweep_timer;
  };
  asio::awaitable<void> accept_loop(loop& l);
  // The loop the next connection that `l` accepts goes to: the one with the fewest (assigned),
  // if it has at least two fewer than `l`; else `l`.
  loop& least_busy(loop& l);
  asio::awaitable<void> sweep_loop(loop& l);
  asio::awaitable<void> run_session(loop& l, tcp::socket sock);
  // TLS (server.cc, reply.cc): the handshake (false: refused, logged); the header read through
  // the TLS stream (the error, as pull_header's `rec`); writes of `parts`; a file slice read in
  // bounded chunks and written through TLS (no sendfile over TLS without kernel TLS).
  asio::awaitable<bool> handshake(session& s);
  asio::awaitable<boost::system::error_code> pull_header_tls(session& s, bool& foreign) const;
  asio::awaitable<boost::system::error_code> write_out(session& s,
                                                       std::array<asio::const_buffer, 2> parts,
                                                       int flags);
  asio::awaitable<boost::system::error_code> send_file_tls(session& s, int fd, uint64_t offset,
                                                           uint64_t length, uint64_t& sent);
  // Puts a connection on loop `l` (its list, for the sweep and stop; its count) and starts the
  // loop's sweep if idle. `counted`: connections_ counts it already (moved from another loop).
  void enlist(loop& l, session& s, bool counted);
  // Takes a connection off its loop; `moving`: connections_ keeps counting it for the loop it
  // moves to, whose enlist takes the count over.
  void delist(session& s, bool moving);
  // Sends a reply's file or stream owner to the home loop to be released there (an owner may
  // count a stream in the daemon's state); nothing for a connection of the home loop.
  void release_on_home(session& s, reply& r);
  // A connection of the foreign protocol accepted by another loop, moved to the home loop.
  asio::awaitable<void> run_adopted(tcp::socket sock, std::string already_read);
  // The handler of route `r` (or the built-in answer) for the request in `ctx`, on the loop the
  // route's affinity asks for.
  asio::awaitable<reply> handle(session& s, const route_entry* r, bool plain);
  // The steps of a request in run_session (server.cc).
  enum class header_pull { done, would_block, foreign };
  // Parses what the session's buffer holds, then reads what the socket has without blocking,
  // until the header is complete or malformed or the read fails (done; `rec` says which) or the
  // socket is empty (would_block), or the first request line is of the foreign protocol (foreign).
  // `got_bytes` is set when something was read.
  header_pull pull_header(session& s, boost::system::error_code& rec, bool& got_bytes) const;
  // With a foreign protocol, on a connection's first request: whether its first line (once read)
  // is of that protocol; nullopt: the line is not complete yet.
  std::optional<bool> sniff(session& s) const;
  asio::awaitable<void> run_foreign(session& s);
  struct admission {
    const route_entry* route = nullptr;  // none: a built-in resource, a 404 or a 405
    uint64_t body_limit = 0;
    std::optional<reply> refusal;  // when set, the request is refused with it
  };
  admission admit(session& s, size_t& last_route) const;
  asio::awaitable<bool> read_body(session& s, uint64_t limit, bool head);
  asio::awaitable<boost::system::error_code> read_body_tls(session& s);
  // `last`: the index of the route the session matched before, tried first; updated.
  const route_entry* match(http::verb method, std::string_view path,
                           std::vector<std::string>& params, size_t& last) const;
  std::string allowed_methods(std::string_view path) const;
  bool start_reply(session& s, const reply& r, bool head, bool keep_alive);
  asio::awaitable<bool> finish_reply(session& s, reply r, bool head);
  asio::awaitable<bool> send_stream(session& s, const stream_slice& st);
  asio::awaitable<bool> write_reply(session& s, reply r, bool head, bool keep_alive);
  asio::awaitable<reply> builtin(request_context& ctx, const route_entry* r);
  static const char* framing_error(const http::request_header<>& h, bool chunked);
  // CORS (cors.cc). Whether a browser sent the request from a page of another origin.
  static bool from_another_origin(const http::request_header<>& h);
  // Whether the origin a request names may read viewer answers; "" (no Origin) may not.
  bool origin_allowed(std::string_view origin) const;
  // The CORS header lines ("Name: value\r\n"...) of a viewer answer to `h`, into `out` (cleared
  // first; left empty for an origin not allowed).
  void cors_lines(const http::request_header<>& h, std::string& out) const;
  bool viewer_path(std::string_view path) const;  // some viewer route matches the path
  reply preflight(const request_context& ctx) const;

  asio::any_io_executor ex_;
  std::string name_;
  server_options opts_;
  std::vector<std::unique_ptr<loop>> loops_;    // [0]: the home loop
  std::atomic<size_t> connections_{0};          // over every loop
  std::atomic<std::thread::id> home_thread_{};  // the home loop's, once it runs accept_loop
  std::vector<route_entry> routes_;
  std::atomic<bool> stopping_{false};
  std::chrono::milliseconds sweep_tick_;
  metrics_registry metrics_;
  std::function<boost::json::object()> health_;
  std::string foreign_version_;
  foreign_handler foreign_;
  std::string cors_any_;  // cors_lines' answer when every origin is allowed
  metric_value* requests_total_[6]{};
  // Durations of the requests no route takes: /healthz, /metrics, and the rest (404, 405, OPTIONS).
  histogram* healthz_duration_ = nullptr;
  histogram* metrics_duration_ = nullptr;
  histogram* unmatched_duration_ = nullptr;
  metric_value* bytes_sent_ = nullptr;
  metric_value* file_bytes_sent_ = nullptr;
  metric_value* stream_bytes_sent_ = nullptr;
  std::optional<tls_files> tls_files_;
  // The context new connections take; each keeps the one it took (a reload swaps this one).
  std::atomic<std::shared_ptr<asio::ssl::context>> tls_ctx_;
  metric_value* tls_full_ = nullptr;  // handshakes by result
  metric_value* tls_resumed_ = nullptr;
  metric_value* tls_failed_ = nullptr;
  std::atomic<int64_t> tls_logged_at_{0};  // steady seconds of the last refusal logged
  std::atomic<uint64_t> tls_unlogged_{0};  // refusals not logged since (one line a second)
};

}  // namespace vodgrid::net
