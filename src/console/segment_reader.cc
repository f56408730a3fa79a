// Segment bodies read for throughput. Written here rather than through net::http_client's
// get_pieces: Beast's parser reads the socket 64 KiB at a time into the connection's buffer and
// copies each piece out of it into the caller's, two passes over every byte before it is hashed;
// here the parser reads only the head, and a body of known length goes from the socket into one
// buffer per thread, up to 256 KiB a read, and is hashed from there (docs/performance.md,
// "Console"). A body without a length (chunked, or up to the close) is left to the parser.
// Over TLS the same path reads through OpenSSL (Asio's ssl::stream over the socket, its
// synchronous read_some on the non-blocking socket: would_block when a record is still incomplete).
#include "console/segment_reader.h"

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "net/client.h"
#include "net/tls.h"
#include "net/use_tuple.h"

namespace vodgrid::console {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using tls_stream = asio::ssl::stream<tcp::socket&>;
using steady = std::chrono::steady_clock;
using net::use_tuple;

namespace {
// Servers close idle keep-alive connections (vodgrid's after 60 s): reuse only younger ones.
constexpr auto max_idle_age = std::chrono::seconds(20);
// TLS sessions remembered per reader (one per engine seen; a viewer sees a station's few).
constexpr size_t max_sessions = 16;
// A body read without a pause is handed back to the loop after this many bytes, so that one
// viewer whose bytes keep coming does not hold the other viewers of its thread.
constexpr uint64_t bytes_between_yields = 1 << 20;
}  // namespace

struct segment_reader::connection {
  explicit connection(asio::any_io_executor ex) : sock(ex) {}
  ~connection() {
    if (tls) {
      net::keep_session_at_free(tls->native_handle());  // sessions_ offers it again
    }
  }
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  tcp::socket sock;
  std::unique_ptr<tls_stream> tls;  // https://: over `sock` (declared after it: destroyed first)
  beast::flat_buffer buf;           // the head, and whatever of the body came with it
  std::string origin;
  steady::time_point since;  // kept idle since
};

// An origin's TLS session (OpenSSL counts its references; this holds one).
struct segment_reader::session_ref {
  explicit session_ref(SSL_SESSION* s) : session(s) {}
  ~session_ref() { SSL_SESSION_free(session); }
  session_ref(const session_ref&) = delete;
  session_ref& operator=(const session_ref&) = delete;
  SSL_SESSION* session;
};

// The deadlines of the exchange under way, without a timer per read: the timer wakes when the
// exchange's deadline or the silence bound would pass, and closes the socket if no byte came in
// the meantime (the pending operation then fails). Owned by the reader; its handler holds it.
struct segment_reader::watchdog {
  explicit watchdog(asio::any_io_executor ex) : timer(ex) {}
  asio::steady_timer timer;
  tcp::socket* sock = nullptr;  // the exchange's; null between exchanges
  steady::time_point deadline;
  steady::time_point last;  // the last byte read
  std::chrono::milliseconds silence{0};
  bool fired = false;
  uint64_t generation = 0;

  static void arm(const std::shared_ptr<watchdog>& w) {
    w->timer.expires_at(std::min(w->deadline, w->last + w->silence));
    w->timer.async_wait([w, gen = w->generation](boost::system::error_code ec) {
      if (ec || gen != w->generation || w->sock == nullptr) {
        return;
      }
      auto now = steady::now();
      if (now >= w->deadline || now - w->last >= w->silence) {
        w->fired = true;
        boost::system::error_code ignored;
        w->sock->close(ignored);
        return;
      }
      arm(w);
    });
  }
  static void start(const std::shared_ptr<watchdog>& w, tcp::socket& s, steady::time_point deadline,
                    std::chrono::milliseconds silence) {
    w->sock = &s;
    w->deadline = deadline;
    w->silence = silence;
    w->last = steady::now();
    w->fired = false;
    ++w->generation;
    arm(w);
  }
  void stop() {
    sock = nullptr;
    ++generation;
    timer.cancel();
  }
};

segment_reader::segment_reader(asio::any_io_executor ex, segment_reader_options opts,
                               std::span<char> buffer)
    : ex_(ex), opts_(opts), buffer_(buffer), watchdog_(std::make_shared<watchdog>(ex)) {}

segment_reader::~segment_reader() {
  watchdog_->stop();
}

namespace {

errc error_code_of(const boost::system::error_code& ec, bool timed_out) {
  if (timed_out) {
    return errc::timeout;
  }
  if (ec == http::error::body_limit) {
    return errc::too_large;
  }
  if (ec == http::error::end_of_stream || ec == http::error::partial_message ||
      ec == asio::error::connection_reset || ec == asio::error::eof ||
      ec == asio::error::broken_pipe || ec == asio::ssl::error::stream_truncated) {
    return errc::unavailable;
  }
  return errc::protocol_error;
}

// How a kept connection that its server closed while it was idle ends its first exchange: the
// end of the stream (over TLS after the server's close_notify), a reset, or over TLS from a
// server that sent no close_notify, stream_truncated (OpenSSL's unexpected EOF).
bool closed_while_idle(const boost::system::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::connection_reset ||
         ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
}

}  // namespace

asio::awaitable<result<std::unique_ptr<segment_reader::connection>>> segment_reader::connect(
    std::string origin, std::string host, uint16_t port, bool tls) {
  auto c = std::make_unique<connection>(ex_);
  c->origin = std::move(origin);
  std::vector<tcp::endpoint> eps;
  boost::system::error_code aec;
  auto literal = asio::ip::make_address(host, aec);
  if (!aec) {
    eps.emplace_back(literal, port);  // an address needs no resolver round trip
  } else {
    tcp::resolver resolver(ex_);
    auto [rec, found] = co_await resolver.async_resolve(host, std::to_string(port), use_tuple);
    if (rec) {
      co_return make_error(errc::unavailable,
                           fmt::format("cannot resolve {}: {}", host, rec.message()));
    }
    for (auto& e : found) {
      eps.push_back(e.endpoint());
    }
  }
  watchdog::start(watchdog_, c->sock, steady::now() + opts_.connect_timeout, opts_.connect_timeout);
  auto [cec, ep] = co_await asio::async_connect(c->sock, eps, use_tuple);
  bool timed_out = watchdog_->fired;
  watchdog_->stop();
  if (cec || timed_out) {
    co_return make_error(timed_out ? errc::timeout : errc::unavailable,
                         fmt::format("cannot connect to {}: {}", c->origin,
                                     timed_out ? "timed out" : cec.message()));
  }
  boost::system::error_code ec;
  c->sock.set_option(tcp::no_delay(true), ec);
  c->sock.non_blocking(true, ec);  // the body is read by hand: a read says when it would block
  if (tls) {
    auto ctx = net::client_context(opts_.tls_ca.empty() ? net::default_tls_ca() : opts_.tls_ca);
    if (!ctx) {
      co_return ctx.err();
    }
    c->tls = std::make_unique<tls_stream>(c->sock, **ctx);
    if (auto st = co_await handshake(*c, host); !st) {
      co_return st.err();
    }
  }
  co_return c;
}

// The TLS handshake of a new connection, as net::http_client's (the certificate checked against
// the CA and the URL's host: an address against its IP names, a name against its DNS names, also
// sent as SNI), offering the origin's last session so that the engine may resume it.
asio::awaitable<status> segment_reader::handshake(connection& c, const std::string& host) {
  SSL* ssl = c.tls->native_handle();
  boost::system::error_code aec;
  asio::ip::make_address(host, aec);
  if (!aec) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, host.c_str());
    SSL_set1_host(ssl, host.c_str());
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  }
  // The origin's own session, else the last one made with any: the engines of a station share
  // their ticket keys (and their director's), so a session of one resumes on the next engine the
  // director names; an engine of another station answers it with a full handshake.
  auto it = sessions_.find(c.origin);
  if (auto& offer = it != sessions_.end() ? it->second : last_session_) {
    SSL_set_session(ssl, offer->session);
  }
  watchdog::start(watchdog_, c.sock, steady::now() + opts_.connect_timeout, opts_.connect_timeout);
  auto [ec] = co_await c.tls->async_handshake(asio::ssl::stream_base::client, use_tuple);
  bool timed_out = watchdog_->fired;
  watchdog_->stop();
  if (!ec && !timed_out) {
    co_return status{};
  }
  long v = SSL_get_verify_result(ssl);
  std::string why = v != X509_V_OK
                        ? fmt::format("certificate refused: {}", X509_verify_cert_error_string(v))
                    : timed_out ? std::string("handshake timed out")
                                : "handshake failed: " + ec.message();
  co_return make_error(timed_out ? errc::timeout : errc::unavailable,
                       fmt::format("tls: peer {} refused: {}", c.origin, why));
}

std::unique_ptr<segment_reader::connection> segment_reader::take_idle(const std::string& origin) {
  auto now = steady::now();
  std::erase_if(idle_, [now](const auto& c) { return now - c->since >= max_idle_age; });
  for (auto it = idle_.begin(); it != idle_.end(); ++it) {
    if ((*it)->origin == origin) {
      auto c = std::move(*it);
      idle_.erase(it);
      return c;
    }
  }
  return nullptr;
}

void segment_reader::keep_idle(std::unique_ptr<connection> c) {
  c->since = steady::now();
  size_t cap = 1;
  if (c->tls) {
    cap = std::max<size_t>(opts_.max_idle_tls, 1);
    // The session as it stands after an exchange (TLS 1.3 sends its tickets after the handshake).
    if (SSL_SESSION* s = SSL_get1_session(c->tls->native_handle())) {
      if (SSL_SESSION_is_resumable(s)) {
        if (sessions_.size() >= max_sessions && !sessions_.contains(c->origin)) {
          sessions_.erase(sessions_.begin());
        }
        last_session_ = std::make_shared<session_ref>(s);
        sessions_[c->origin] = last_session_;
      } else {
        SSL_SESSION_free(s);
      }
    }
  }
  idle_.push_back(std::move(c));
  while (idle_.size() > cap) {
    idle_.erase(idle_.begin());
  }
}

asio::awaitable<result<unsigned>> segment_reader::get(
    std::string url, std::function<bool(unsigned status)> on_head,
    std::function<void(std::string_view)> on_piece) {
  auto pu = net::parse_http_url(url);
  if (!pu) {
    co_return pu.err();
  }
  http::request<http::empty_body> req{http::verb::get, pu->target, 11};
  req.set(http::field::host, fmt::format("{}:{}", pu->host, pu->port));
  req.set(http::field::user_agent, "vodgrid");
  auto exchange_deadline = steady::now() + opts_.exchange_timeout;
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_ptr<connection> c;
    if (attempt == 0) {
      c = take_idle(pu->origin());
    }
    bool pooled = c != nullptr;
    if (!c) {
      auto fresh = co_await connect(pu->origin(), pu->host, pu->port, pu->tls);
      if (!fresh) {
        co_return fresh.err();
      }
      c = std::move(*fresh);
    }
    auto& w = *watchdog_;
    watchdog::start(watchdog_, c->sock, exchange_deadline, opts_.read_timeout);
    auto fail = [&](const boost::system::error_code& ec, uint64_t got) {
      bool timed_out = w.fired;
      w.stop();
      return make_error(error_code_of(ec, timed_out),
                        fmt::format("GET {}: {} after {} bytes", url,
                                    timed_out ? "timed out" : ec.message(), got));
    };
    // (Each stream's call on its own line: no co_await inside a conditional expression, GCC 12.)
    boost::system::error_code wec;
    if (c->tls) {
      std::tie(wec, std::ignore) = co_await http::async_write(*c->tls, req, use_tuple);
    } else {
      std::tie(wec, std::ignore) = co_await http::async_write(c->sock, req, use_tuple);
    }
    if (wec || w.fired) {
      if (pooled && !w.fired) {
        w.stop();
        continue;  // the peer closed the idle connection: retry on a fresh one
      }
      co_return fail(wec, 0);
    }
    http::response_parser<http::empty_body> head;
    head.body_limit(opts_.max_body);
    head.header_limit(64 * 1024);
    boost::system::error_code hec;
    size_t hn = 0;
    if (c->tls) {
      std::tie(hec, hn) = co_await http::async_read_header(*c->tls, c->buf, head, use_tuple);
    } else {
      std::tie(hec, hn) = co_await http::async_read_header(c->sock, c->buf, head, use_tuple);
    }
    if (hec || w.fired) {
      if (pooled && !w.fired && hn == 0 && closed_while_idle(hec)) {
        w.stop();
        continue;
      }
      co_return fail(hec, 0);
    }
    unsigned status = head.get().result_int();
    if (!on_head(status)) {
      w.stop();
      co_return status;  // the connection is dropped with the unread body
    }
    auto length = head.content_length();
    bool keep_alive = head.keep_alive();
    uint64_t got = 0;
    if (head.is_done()) {
      // No body (a length of 0, or a status that has none).
    } else if (length && !head.chunked()) {
      // The body's bytes that came with the head, then the socket read straight into the buffer.
      uint64_t left = *length;
      auto lead = c->buf.data();
      size_t take = static_cast<size_t>(std::min<uint64_t>(lead.size(), left));
      if (take > 0) {
        on_piece(std::string_view(static_cast<const char*>(lead.data()), take));
        c->buf.consume(take);
        left -= take;
        got += take;
      }
      c->buf.shrink_to_fit();  // empty now: a viewer holds no memory of its own while it reads
      uint64_t since_yield = 0;
      while (left > 0) {
        boost::system::error_code ec;
        auto into = asio::buffer(buffer_.data(),
                                 static_cast<size_t>(std::min<uint64_t>(buffer_.size(), left)));
        // TLS: a record at a time (up to 16 KiB); would_block when the next is not whole yet.
        size_t n = c->tls ? c->tls->read_some(into, ec) : c->sock.read_some(into, ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) {
          since_yield = 0;
          auto [rec] = co_await c->sock.async_wait(tcp::socket::wait_read, use_tuple);
          if (rec || w.fired) {
            co_return fail(rec ? rec : make_error_code(asio::error::timed_out), got);
          }
          continue;
        }
        if (ec) {
          co_return fail(ec, got);
        }
        w.last = steady::now();
        on_piece(std::string_view(buffer_.data(), n));
        left -= n;
        got += n;
        since_yield += n;
        if (since_yield >= bytes_between_yields) {
          since_yield = 0;
          co_await asio::post(ex_, asio::use_awaitable);
          if (w.fired) {
            co_return fail(asio::error::timed_out, got);
          }
        }
      }
    } else {
      // Chunked, or up to the close: Beast's parser reads it, into a window of this exchange's
      // own (the thread's buffer cannot be lent across a suspension).
      http::response_parser<http::buffer_body> body(std::move(head));
      std::vector<char> window(64 * 1024);
      while (!body.is_done()) {
        body.get().body().data = window.data();
        body.get().body().size = window.size();
        boost::system::error_code rec;
        if (c->tls) {
          std::tie(rec, std::ignore) =
              co_await http::async_read_some(*c->tls, c->buf, body, use_tuple);
        } else {
          std::tie(rec, std::ignore) =
              co_await http::async_read_some(c->sock, c->buf, body, use_tuple);
        }
        size_t n = window.size() - body.get().body().size;
        if (n > 0) {
          w.last = steady::now();
          on_piece(std::string_view(window.data(), n));
          got += n;
        }
        if (rec == http::error::need_buffer) {
          continue;
        }
        if (rec || w.fired) {
          co_return fail(rec ? rec : make_error_code(asio::error::timed_out), got);
        }
      }
      keep_alive = body.keep_alive();
    }
    w.stop();
    if (keep_alive && c->buf.size() == 0) {
      keep_idle(std::move(c));
    }
    co_return status;
  }
  co_return make_error(errc::unavailable, fmt::format("{}: connection closed by peer", url));
}

}  // namespace vodgrid::console
