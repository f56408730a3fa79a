// The HTTP client: a small per-host pool of keep-alive Beast streams.
#include "net/client.h"

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>

#include "base/log.h"
#include "net/tls.h"
#include "net/use_tuple.h"

namespace vodgrid::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string client_response::header(std::string_view name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : std::string(it->value());
}

std::string parsed_url::origin() const {
  return fmt::format("{}://{}:{}", tls ? "https" : "http", host, port);
}

result<parsed_url> parse_http_url(std::string_view url) {
  auto u = boost::urls::parse_absolute_uri(url);
  if (!u) {
    return make_error(errc::invalid_argument, fmt::format("not a URL: {}", url));
  }
  if (u->scheme() != "http" && u->scheme() != "https") {
    return make_error(errc::invalid_argument,
                      fmt::format("only http:// and https:// URLs are supported, got {}", url));
  }
  parsed_url p;
  p.tls = u->scheme() == "https";
  p.port = p.tls ? 443 : 80;
  p.host = std::string(u->host_address());
  if (p.host.empty()) {
    return make_error(errc::invalid_argument, fmt::format("no host in {}", url));
  }
  if (u->has_port()) {
    auto port = u->port_number();
    if (port == 0) {
      return make_error(errc::invalid_argument, fmt::format("bad port in {}", url));
    }
    p.port = port;
  }
  p.target = std::string(u->encoded_target());
  if (p.target.empty() || p.target[0] != '/') {
    p.target = "/" + p.target;
  }
  return p;
}

result<std::string> resolve_url(std::string_view base, std::string_view ref) {
  auto b = boost::urls::parse_absolute_uri(base);
  auto r = boost::urls::parse_uri_reference(ref);
  if (!b || !r) {
    return make_error(errc::invalid_argument,
                      fmt::format("cannot resolve {} against {}", ref, base));
  }
  boost::urls::url out;
  auto rv = boost::urls::resolve(*b, *r, out);
  if (!rv) {
    return make_error(errc::invalid_argument,
                      fmt::format("cannot resolve {} against {}", ref, base));
  }
  return std::string(out.buffer());
}

using client_tls_stream = beast::ssl_stream<beast::tcp_stream>;

// One connection to a peer: plain, or TLS over TCP. The exchange code is the same for both; only
// the reads and writes branch (write_request, read_some), on Beast's operations of either stream.
// (Not in an unnamed namespace: http_client::pool and open_reply hold it.)
struct client_connection {
  client_connection() = default;
  client_connection(const client_connection&) = delete;
  client_connection& operator=(const client_connection&) = delete;
  ~client_connection() {
    if (tls) {
      keep_session_at_free(tls->native_handle());  // the pool offers it to the next connection
    }
  }
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<client_tls_stream> tls;
  beast::tcp_stream& tcp() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
};

namespace {

template <class Request>
asio::awaitable<std::pair<boost::system::error_code, size_t>> write_request(client_connection& c,
                                                                            Request& req) {
  if (c.tls) {
    auto [ec, n] = co_await http::async_write(*c.tls, req, use_tuple);
    co_return std::pair{ec, n};
  }
  auto [ec, n] = co_await http::async_write(*c.plain, req, use_tuple);
  co_return std::pair{ec, n};
}

template <class Parser>
asio::awaitable<std::pair<boost::system::error_code, size_t>> read_some(client_connection& c,
                                                                        beast::flat_buffer& buf,
                                                                        Parser& parser) {
  if (c.tls) {
    auto [ec, n] = co_await http::async_read_some(*c.tls, buf, parser, use_tuple);
    co_return std::pair{ec, n};
  }
  auto [ec, n] = co_await http::async_read_some(*c.plain, buf, parser, use_tuple);
  co_return std::pair{ec, n};
}

// The peer closed the connection (a keep-alive one it timed out, say): over TLS, a close without
// close_notify is OpenSSL's "stream truncated".
bool closed_by_peer(const boost::system::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::connection_reset ||
         ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
}

}  // namespace

// The idle keep-alive connections per origin, and how an exchange gets and returns one.
struct http_client::pool {
  struct idle_stream {
    std::unique_ptr<client_connection> stream;
    std::chrono::steady_clock::time_point since;
  };
  pool(asio::any_io_executor e, const client_options& o) : ex(std::move(e)), opts(o) {}
  http::request<http::string_body> make_request(http::verb method, const parsed_url& pu,
                                                std::string body, const header_list& headers) const;
  asio::awaitable<result<std::unique_ptr<client_connection>>> connect(const parsed_url& pu,
                                                                      bool fresh, bool& pooled);
  asio::awaitable<status> handshake(const parsed_url& pu, client_connection& c);
  // An exchange read to its end: its TLS session remembered, the connection kept if the reply
  // allows it.
  void finished(const parsed_url& pu, std::unique_ptr<client_connection> stream, bool keep_alive);

  struct session_free {
    void operator()(SSL_SESSION* s) const { SSL_SESSION_free(s); }
  };
  asio::any_io_executor ex;
  const client_options& opts;
  std::map<std::string, std::vector<idle_stream>> idle;
  // The last resumable TLS session of each https:// origin, offered by its next new connection:
  // a resumed handshake (no certificate chain, no signature), as a daemon reconnecting to a peer
  // or a console sampling an engine twice would otherwise make a full one each time. Only to the
  // origin that made it, whose certificate was checked then.
  std::map<std::string, std::unique_ptr<SSL_SESSION, session_free>> sessions;
  // When a refusal of each TLS peer was last logged: one line per peer per 10 s, however many
  // exchanges (heartbeats, copies) it refuses.
  std::map<std::string, std::chrono::steady_clock::time_point> tls_logged;
};

namespace {
// Servers close idle keep-alive connections (vodgrid's after 60 s): reuse only younger ones.
constexpr auto max_idle_age = std::chrono::seconds(20);
// TLS sessions remembered per client (a few KB each).
constexpr size_t max_sessions = 1024;
}  // namespace

http_client::http_client(asio::any_io_executor ex) : http_client(std::move(ex), client_options{}) {}

http_client::http_client(asio::any_io_executor ex, const client_options& opts)
    : ex_(ex), opts_(opts), pool_(std::make_unique<pool>(ex, opts_)) {}

http_client::~http_client() = default;

asio::awaitable<result<client_response>> http_client::send_json(http::verb method, std::string url,
                                                                std::string json) {
  return request(method, std::move(url), std::move(json), {{"Content-Type", "application/json"}});
}

http::request<http::string_body> http_client::pool::make_request(http::verb method,
                                                                 const parsed_url& pu,
                                                                 std::string body,
                                                                 const header_list& headers) const {
  http::request<http::string_body> req{method, pu.target, 11};
  req.set(http::field::host, fmt::format("{}:{}", pu.host, pu.port));
  req.set(http::field::user_agent, "vodgrid");
  for (auto& [k, v] : headers) {
    req.set(k, v);
  }
  if (opts.bearer && req.find(http::field::authorization) == req.end()) {
    if (auto t = opts.bearer(); !t.empty()) {
      req.set(http::field::authorization, "Bearer " + t);
    }
  }
  if (!body.empty() || method == http::verb::post || method == http::verb::put) {
    req.body() = std::move(body);
    req.prepare_payload();
  }
  req.keep_alive(true);
  return req;
}

// A pooled keep-alive stream to the URL's origin (unless `fresh`), or a new connection. `pooled`
// tells the caller whether a transport failure is worth one retry on a fresh connection.
asio::awaitable<result<std::unique_ptr<client_connection>>> http_client::pool::connect(
    const parsed_url& pu, bool fresh, bool& pooled) {
  auto& idle = this->idle[pu.origin()];
  std::erase_if(idle, [](const pool::idle_stream& s) {
    return std::chrono::steady_clock::now() - s.since > max_idle_age;
  });
  pooled = false;
  if (!idle.empty() && !fresh) {
    auto stream = std::move(idle.back().stream);
    idle.pop_back();
    pooled = true;
    co_return stream;
  }
  auto stream = std::make_unique<beast::tcp_stream>(ex);
  std::vector<tcp::endpoint> eps;
  boost::system::error_code aec;
  auto literal = asio::ip::make_address(pu.host, aec);
  if (!aec) {
    eps.emplace_back(literal, pu.port);  // an address needs no resolver round trip
  } else {
    tcp::resolver resolver(ex);
    auto [rec, found] =
        co_await resolver.async_resolve(pu.host, std::to_string(pu.port), use_tuple);
    if (rec) {
      co_return make_error(errc::unavailable,
                           fmt::format("cannot resolve {}: {}", pu.host, rec.message()));
    }
    for (auto& e : found) {
      eps.push_back(e.endpoint());
    }
  }
  stream->expires_after(opts.connect_timeout);
  auto [cec, ep] = co_await stream->async_connect(eps, use_tuple);
  if (cec) {
    co_return make_error(cec == beast::error::timeout ? errc::timeout : errc::unavailable,
                         fmt::format("cannot connect to {}: {}", pu.origin(), cec.message()));
  }
  boost::system::error_code ec;
  stream->socket().set_option(tcp::no_delay(true), ec);
  auto c = std::make_unique<client_connection>();
  if (!pu.tls) {
    c->plain = std::move(stream);
    co_return c;
  }
  auto ctx = client_context(opts.tls_ca.empty() ? default_tls_ca() : opts.tls_ca);
  if (!ctx) {
    co_return ctx.err();
  }
  c->tls = std::make_unique<client_tls_stream>(std::move(*stream), **ctx);
  if (auto st = co_await handshake(pu, *c); !st) {
    co_return st.err();
  }
  co_return c;
}

// The TLS handshake of a new connection, the peer's certificate checked against the CA and the
// URL's host (an address: the certificate's IP entries; a name: its DNS entries, sent as SNI).
asio::awaitable<status> http_client::pool::handshake(const parsed_url& pu, client_connection& c) {
  SSL* ssl = c.tls->native_handle();
  if (auto it = sessions.find(pu.origin()); it != sessions.end()) {
    SSL_set_session(ssl, it->second.get());
  }
  boost::system::error_code aec;
  asio::ip::make_address(pu.host, aec);
  if (!aec) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), pu.host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, pu.host.c_str());
    SSL_set1_host(ssl, pu.host.c_str());
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  }
  c.tcp().expires_after(opts.connect_timeout);
  auto [ec] = co_await c.tls->async_handshake(asio::ssl::stream_base::client, use_tuple);
  if (!ec) {
    co_return status{};
  }
  // The verification's own reason ("unable to get local issuer certificate", "hostname
  // mismatch", "certificate has expired") says more than the handshake's error.
  long v = SSL_get_verify_result(ssl);
  std::string why = v != X509_V_OK
                        ? fmt::format("certificate refused: {}", X509_verify_cert_error_string(v))
                    : ec == beast::error::timeout ? std::string("handshake timed out")
                                                  : "handshake failed: " + ec.message();
  sessions.erase(pu.origin());  // a peer that refuses it is offered no stale session again
  auto msg = fmt::format("tls: peer {} refused: {}", pu.origin(), why);
  auto now = std::chrono::steady_clock::now();
  auto [at, first] = tls_logged.try_emplace(pu.origin(), now);
  if (first || now - at->second >= std::chrono::seconds(10)) {
    at->second = now;
    log::get("net")->warn("{}", msg);
  }
  co_return make_error(ec == beast::error::timeout ? errc::timeout : errc::unavailable, msg);
}

void http_client::pool::finished(const parsed_url& pu, std::unique_ptr<client_connection> stream,
                                 bool keep_alive) {
  if (stream->tls) {
    // TLS 1.3 sends its tickets after the handshake: the session is resumable only once a reply
    // has been read, which is why it is taken here and not after the handshake.
    SSL_SESSION* s = SSL_get1_session(stream->tls->native_handle());
    if (s != nullptr && SSL_SESSION_is_resumable(s) == 1) {
      if (sessions.size() >= max_sessions && !sessions.contains(pu.origin())) {
        sessions.erase(sessions.begin());  // bounded: a client meeting ever new origins
      }
      sessions[pu.origin()].reset(s);
    } else if (s != nullptr) {
      SSL_SESSION_free(s);
    }
  }
  if (!keep_alive) {
    return;
  }
  auto& idle = this->idle[pu.origin()];
  if (idle.size() < opts.max_idle_per_host) {
    stream->tcp().expires_never();
    idle.push_back({std::move(stream), std::chrono::steady_clock::now()});
  }
}

namespace {

errc read_error_code(const boost::system::error_code& rec) {
  if (rec == beast::error::timeout) {
    return errc::timeout;
  }
  if (rec == http::error::body_limit) {
    return errc::too_large;
  }
  if (closed_by_peer(rec) || rec == http::error::partial_message) {
    return errc::unavailable;
  }
  return errc::protocol_error;
}

using steady = std::chrono::steady_clock;

// When the next read or write must be done by: the exchange's deadline, or sooner when the peer
// has been silent for `read_timeout`.
steady::time_point step_deadline(steady::time_point deadline,
                                 std::chrono::milliseconds read_timeout) {
  return std::min(deadline, steady::now() + read_timeout);
}

// Reads a reply (or only its head) with a deadline on every read, not only on the whole: Beast's
// async_read arms its timer once, so a peer that stops sending would hold the exchange until
// request_timeout. Returns the error and the bytes the parser took.
template <class Parser>
asio::awaitable<std::pair<boost::system::error_code, size_t>> read_until(
    client_connection& stream, beast::flat_buffer& buf, Parser& parser, bool head_only,
    steady::time_point deadline, std::chrono::milliseconds read_timeout) {
  size_t total = 0;
  while (!(head_only ? parser.is_header_done() : parser.is_done())) {
    stream.tcp().expires_at(step_deadline(deadline, read_timeout));
    auto [ec, n] = co_await read_some(stream, buf, parser);
    total += n;
    if (ec) {
      co_return std::pair{ec, total};
    }
  }
  co_return std::pair{boost::system::error_code{}, total};
}

template <class Message>
client_response head_of(const Message& res) {
  client_response out;
  out.status = res.result_int();
  for (auto& f : res) {
    out.headers.insert(f.name_string(), f.value());
  }
  return out;
}

}  // namespace

asio::awaitable<result<client_response>> http_client::request(http::verb method, std::string url,
                                                              std::string body,
                                                              header_list headers) {
  auto pu = parse_http_url(url);
  if (!pu) {
    co_return pu.err();
  }
  auto req = pool_->make_request(method, *pu, std::move(body), headers);
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool pooled = false;
    auto stream = co_await pool_->connect(*pu, attempt > 0, pooled);
    if (!stream) {
      co_return stream.err();
    }
    // The request is written within the exchange's deadline (a large upload takes its time; a
    // small one fits in the socket's buffer, so a hung peer is noticed by the read deadline).
    auto deadline = std::chrono::steady_clock::now() + opts_.request_timeout;
    (*stream)->tcp().expires_at(deadline);
    auto [wec, wn] = co_await write_request(**stream, req);
    if (wec) {
      if (pooled) {
        pool_->idle[pu->origin()].clear();  // the peer closed idle connections: its others too
        continue;                           // retry on a fresh one
      }
      co_return make_error(
          wec == beast::error::timeout ? errc::timeout : errc::unavailable,
          fmt::format("{} {}: {}", std::string(http::to_string(method)), url, wec.message()));
    }
    beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(opts_.max_body);
    parser.header_limit(64 * 1024);
    if (method == http::verb::head) {
      parser.skip(true);
    }
    auto [rec, rn] =
        co_await read_until(**stream, buf, parser, false, deadline, opts_.read_timeout);
    if (rec) {
      if (pooled && rn == 0 && closed_by_peer(rec)) {
        pool_->idle[pu->origin()].clear();
        continue;
      }
      co_return make_error(
          read_error_code(rec),
          fmt::format("{} {}: {}", std::string(http::to_string(method)), url, rec.message()));
    }
    auto res = parser.release();
    client_response out = head_of(res);
    out.body = std::move(res.body());
    pool_->finished(*pu, std::move(*stream), res.keep_alive());
    co_return out;
  }
  co_return make_error(errc::unavailable, fmt::format("{}: connection closed by peer", url));
}

struct http_client::open_reply {
  parsed_url pu;
  std::unique_ptr<client_connection> stream;
  beast::flat_buffer buf;
  http::response_parser<http::buffer_body> parser;
  steady::time_point deadline;
  client_response head;
};

asio::awaitable<result<std::unique_ptr<http_client::open_reply>>> http_client::open_get(
    const std::string& url, const header_list& headers) {
  auto pu = parse_http_url(url);
  if (!pu) {
    co_return pu.err();
  }
  auto req = pool_->make_request(http::verb::get, *pu, {}, headers);
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool pooled = false;
    auto stream = co_await pool_->connect(*pu, attempt > 0, pooled);
    if (!stream) {
      co_return stream.err();
    }
    auto r = std::make_unique<open_reply>();
    r->pu = *pu;
    r->stream = std::move(*stream);
    auto& st = *r->stream;
    r->deadline = steady::now() + opts_.request_timeout;
    st.tcp().expires_at(r->deadline);
    auto [wec, wn] = co_await write_request(st, req);
    if (wec) {
      if (pooled) {
        pool_->idle[pu->origin()].clear();
        continue;
      }
      co_return make_error(wec == beast::error::timeout ? errc::timeout : errc::unavailable,
                           fmt::format("GET {}: {}", url, wec.message()));
    }
    r->parser.body_limit(opts_.max_body);
    r->parser.header_limit(64 * 1024);
    auto [hec, hn] =
        co_await read_until(st, r->buf, r->parser, true, r->deadline, opts_.read_timeout);
    if (hec) {
      if (pooled && hn == 0 && closed_by_peer(hec)) {
        pool_->idle[pu->origin()].clear();
        continue;
      }
      co_return make_error(read_error_code(hec), fmt::format("GET {}: {}", url, hec.message()));
    }
    r->head = head_of(r->parser.get());
    co_return r;
  }
  co_return make_error(errc::unavailable, fmt::format("{}: connection closed by peer", url));
}

namespace {

// One read of a body into [data, data + size) (Beast's buffer_body reads into memory the caller
// owns): the error, if any, and how many body bytes arrived there.
template <class Reply>
asio::awaitable<std::pair<boost::system::error_code, size_t>> read_body_some(
    Reply& r, char* data, size_t size, std::chrono::milliseconds read_timeout) {
  auto& body = r.parser.get().body();
  body.data = data;
  body.size = size;
  // read_some: back after each read from the socket, so the caller sees every step.
  r.stream->tcp().expires_at(step_deadline(r.deadline, read_timeout));
  auto [ec, n] = co_await read_some(*r.stream, r.buf, r.parser);
  size_t got = size - r.parser.get().body().size;
  if (ec == http::error::need_buffer) {
    ec = {};  // the place given is full: the caller gives more
  }
  co_return std::pair{ec, got};
}

}  // namespace

// Beast's buffer_body reads into memory the caller owns, chunk by chunk, which is what a copy
// served while it arrives needs: no second buffer and a progress call after every read.
asio::awaitable<result<client_response>> http_client::get_into(std::string url, header_list headers,
                                                               body_sink sink) {
  auto r = co_await open_get(url, headers);
  if (!r) {
    co_return r.err();
  }
  auto& reply = **r;
  auto dest = sink.on_head(reply.head);
  if (!dest) {
    co_return std::move(reply.head);  // the connection is dropped with the unread body
  }
  // Beast sizes each socket read to the room in `buf`, which has only held the head: without
  // room a body arrives in reads of about 1 KB, each waking every console of the copy.
  reply.buf.reserve(256 * 1024);
  size_t filled = 0;
  while (!reply.parser.is_done()) {
    if (filled == dest->size()) {
      co_return make_error(errc::too_large, fmt::format("GET {}: more than the {} bytes expected",
                                                        url, dest->size()));
    }
    auto [rec, got] = co_await read_body_some(reply, dest->data() + filled, dest->size() - filled,
                                              opts_.read_timeout);
    if (got > 0) {
      filled += got;
      sink.on_data(filled);
    }
    if (rec) {
      co_return make_error(read_error_code(rec),
                           fmt::format("GET {}: {} after {} bytes", url, rec.message(), filled));
    }
  }
  pool_->finished(reply.pu, std::move(reply.stream), reply.parser.get().keep_alive());
  co_return std::move(reply.head);
}

// A streaming read of its own rather than get_into with a caller's buffer: get_into fills one
// place front to back (a copy keeps every byte), a piece sink is handed each piece and the window
// is reused.
asio::awaitable<result<client_response>> http_client::get_pieces(std::string url,
                                                                 header_list headers,
                                                                 piece_sink sink) {
  auto r = co_await open_get(url, headers);
  if (!r) {
    co_return r.err();
  }
  auto& reply = **r;
  if (!sink.on_head(reply.head)) {
    co_return std::move(reply.head);  // the connection is dropped with the unread body
  }
  size_t window = std::max<size_t>(sink.window, 4096);
  reply.buf.reserve(window);  // socket reads of up to the window, not of the head's leftover room
  auto piece = std::make_unique<char[]>(window);
  uint64_t total = 0;
  while (!reply.parser.is_done()) {
    auto [rec, got] = co_await read_body_some(reply, piece.get(), window, opts_.read_timeout);
    if (got > 0) {
      total += got;
      sink.on_piece(std::string_view(piece.get(), got));
    }
    if (rec) {
      co_return make_error(read_error_code(rec),
                           fmt::format("GET {}: {} after {} bytes", url, rec.message(), total));
    }
  }
  pool_->finished(reply.pu, std::move(reply.stream), reply.parser.get().keep_alive());
  co_return std::move(reply.head);
}

}  // namespace vodgrid::net
