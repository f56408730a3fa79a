// The HTTP server: the accept loop, one coroutine per connection reading requests and calling
// their handlers, the deadline sweep and the two-phase stop.
#include <openssl/ssl.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "base/log.h"
#include "base/thread_slot.h"
#include "net/server_internal.h"
#include "net/target.h"
#include "net/tls.h"

namespace vodgrid::net {

namespace beast = boost::beast;
using asio::use_awaitable;

// RFC 9112 §6.1 and §3.2: a request whose Transfer-Encoding does not end in chunked cannot be
// framed (Beast would read it as bodiless, a request-smuggling vector), and HTTP/1.1 needs a Host.
// Returns why the request is refused, or nullptr.
const char* http_server::framing_error(const http::request_header<>& h, bool chunked) {
  bool transfer_encoding = false;
  bool host = false;
  for (auto& f : h) {  // one pass over a few fields: cheaper than two lookups by name
    transfer_encoding = transfer_encoding || f.name() == http::field::transfer_encoding;
    host = host || f.name() == http::field::host;
  }
  if (transfer_encoding && !chunked) {
    return "Transfer-Encoding must end in chunked";
  }
  if (h.version() >= 11 && !host) {
    return "an HTTP/1.1 request needs a Host header";
  }
  return nullptr;
}

http_server::http_server(asio::any_io_executor ex, std::string name, server_options opts)
    : ex_(ex), name_(std::move(name)), opts_(opts), cors_any_(cors_any_lines(opts_.cors)) {
  loops_.push_back(std::make_unique<loop>(ex, true));
  auto shortest =
      std::min({opts_.header_timeout, opts_.body_timeout, opts_.idle_timeout, opts_.write_timeout});
  sweep_tick_ = std::clamp<std::chrono::milliseconds>(shortest / 4, std::chrono::milliseconds(5),
                                                      std::chrono::milliseconds(1000));
  for (int i = 1; i <= 5; ++i) {
    requests_total_[i] = &metrics_.counter("vodgrid_http_requests_total", "HTTP requests answered",
                                           fmt::format("code=\"{}xx\"", i));
  }
  bytes_sent_ = &metrics_.counter("vodgrid_http_body_bytes_sent_total", "Reply body bytes sent");
  file_bytes_sent_ = &metrics_.counter("vodgrid_http_file_bytes_sent_total",
                                       "Reply body bytes sent from files (segments) with sendfile");
  auto builtin = [this](const char* labels) {
    return &metrics_.histogram_of("vodgrid_http_request_duration_seconds",
                                  "Time from a request's header to the end of its reply, by route",
                                  labels);
  };
  healthz_duration_ = builtin("method=\"GET\",route=\"/healthz\"");
  metrics_duration_ = builtin("method=\"GET\",route=\"/metrics\"");
  unmatched_duration_ = builtin("route=\"unmatched\"");
  stream_bytes_sent_ =
      &metrics_.counter("vodgrid_http_stream_bytes_sent_total",
                        "Reply body bytes sent as they arrived (segments still being received)");
  metrics_.gauge_fn("vodgrid_http_connections", "Open HTTP connections",
                    [this] { return static_cast<double>(connections()); });
}

http_server::~http_server() = default;

status http_server::set_tls(tls_files f) {
  auto ctx = make_server_context(f, opts_.tickets);
  if (!ctx) {
    return ctx.err();
  }
  tls_files_ = std::move(f);
  tls_ctx_.store(std::move(*ctx));
  if (!tls_full_) {
    auto handshakes = [this](const char* labels) {
      return &metrics_.counter("vodgrid_tls_handshakes_total",
                               "TLS handshakes of the server's connections, by result", labels);
    };
    tls_full_ = handshakes("result=\"full\"");
    tls_resumed_ = handshakes("result=\"resumed\"");
    tls_failed_ = handshakes("result=\"failed\"");
    if (auto ring = opts_.tickets) {
      metrics_.gauge_fn("vodgrid_tls_ticket_keys",
                        "Session-ticket keys the server accepts tickets of (shared by its station)",
                        [ring] { return static_cast<double>(ring->get()->keys.size()); });
      metrics_.counters_fn("vodgrid_tls_ticket_key_changes_total",
                           "Times the session-ticket key that new tickets are made with changed",
                           [ring]() -> metrics_registry::labelled_values {
                             return {{"", static_cast<double>(ring->changes())}};
                           });
    }
  }
  return {};
}

status http_server::reload_tls() {
  if (!tls_files_) {
    return {};
  }
  auto ctx = make_server_context(*tls_files_, opts_.tickets);  // the same keys: sessions go on
  if (!ctx) {
    return ctx.err();
  }
  tls_ctx_.store(std::move(*ctx));
  return {};
}

bool http_server::on_home_loop() const {
  return std::this_thread::get_id() == home_thread_.load(std::memory_order_relaxed);
}

result<uint16_t> http_server::listen(const std::string& host, uint16_t port,
                                     std::vector<asio::any_io_executor> extra) {
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) {
    return make_error(errc::invalid_argument, fmt::format("bad listen address {}", host));
  }
  tcp::endpoint ep(addr, port);
  tcp::acceptor opener(ex_);
  opener.open(ep.protocol(), ec);
  if (!ec) {
    opener.set_option(asio::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    opener.bind(ep, ec);
  }
  if (!ec) {
    opener.listen(asio::socket_base::max_listen_connections, ec);
  }
  uint16_t bound = ec ? 0 : opener.local_endpoint(ec).port();
  // Out of the home loop's epoll (release() deletes its entry), for every loop, the home loop
  // included, accepts on a duplicate of its own: an acceptor Asio opened itself is not deleted
  // from epoll when closed, and while a duplicate keeps the socket open its stale entry would still
  // report connections to the home loop for a descriptor it no longer has. One assigned from a
  // duplicate is (Asio's possible_dup).
  int listening = ec ? -1 : opener.release(ec);
  if (ec) {
    return make_error(errc::unavailable,
                      fmt::format("cannot listen on {}:{}: {}", host, port, ec.message()));
  }
  for (auto& e : extra) {
    loops_.push_back(std::make_unique<loop>(e, false));
  }
  // Each loop accepts on a duplicate of the listening descriptor: the same socket, so the kernel
  // hands each connection to one of the loops waiting on it.
  for (auto& l : loops_) {
    int fd = ::dup(listening);
    if (fd < 0) {
      ec.assign(errno, boost::system::system_category());
    } else if (l->acceptor.assign(ep.protocol(), fd, ec); ec) {
      ::close(fd);
    }
    if (ec) {
      auto why = fmt::format("cannot share {}:{}: {}", host, port, ec.message());
      ::close(listening);
      loops_.resize(1);
      loops_[0]->acceptor.close(ec);
      return make_error(errc::unavailable, why);
    }
  }
  ::close(listening);
  for (auto& l : loops_) {
    l->listening = true;
    asio::co_spawn(l->ex, accept_loop(*l), asio::detached);
  }
  return bound;
}

asio::awaitable<void> http_server::accept_loop(loop& l) {
  if (l.home) {
    home_thread_ = std::this_thread::get_id();
    set_thread_slot(0);  // the further loops' threads are numbered by daemon_base
  }
  auto logger = log::get("net");
  while (!stopping_) {
    // Accepted straight into the socket of the loop with the fewest connections (Asio registers
    // it with that loop's reactor): whichever loop is awake when connections arrive accepts
    // every one pending, so that a burst of them (a client's pool opening at once) landed mostly
    // on one loop (at 2 threads under wrk's 64 connections: one loop did 99% of the requests in a
    // run, 70% in another, docs/performance.md).
    loop& to = least_busy(l);
    auto [ec, sock] = co_await l.acceptor.async_accept(to.ex, use_tuple);
    if (ec) {
      if (stopping_ || ec == asio::error::operation_aborted || !l.acceptor.is_open()) {
        break;
      }
      logger->warn("{}: accept failed: {}", name_, ec.message());
      asio::steady_timer t(l.ex, std::chrono::milliseconds(50));  // EMFILE and friends: back off
      co_await t.async_wait(use_tuple);
      continue;
    }
    if (connections() >= opts_.max_connections) {
      sock.close();
      continue;
    }
    sock.set_option(tcp::no_delay(true), ec);
    // Counted here, not when `to` starts it: the next choice sees it, and stop() waits for it.
    to.assigned.fetch_add(1, std::memory_order_relaxed);
    connections_.fetch_add(1, std::memory_order_relaxed);
    asio::co_spawn(to.ex, run_session(to, std::move(sock)), asio::detached);
  }
}

http_server::loop& http_server::least_busy(loop& l) {
  loop* fewest = &l;
  for (auto& o : loops_) {
    if (o->assigned.load(std::memory_order_relaxed) <
        fewest->assigned.load(std::memory_order_relaxed)) {
      fewest = o.get();
    }
  }
  // Only for two fewer: a choice is made before the accept waits, and a connection just closed may
  // still be counted; a difference of one is not worth a hop to another thread.
  return fewest->assigned.load(std::memory_order_relaxed) + 1 <
                 l.assigned.load(std::memory_order_relaxed)
             ? *fewest
             : l;
}

// One timer for the deadlines of all connections, instead of a timer armed and cancelled around
// every read and write (what beast::tcp_stream does, which with its composed operations cost more
// than the rest of a redirect). Runs while there are sessions.
asio::awaitable<void> http_server::sweep_loop(loop& l) {
  while (!l.sessions.empty()) {
    l.sweep_timer.expires_after(sweep_tick_);
    co_await l.sweep_timer.async_wait(use_tuple);
    auto now = steady::now();
    for (auto* s : l.sessions) {
      if (s->deadline < now) {
        boost::system::error_code ec;
        s->sock->cancel(ec);
        s->deadline = steady::time_point::max();
      }
    }
  }
  l.sweeping = false;
}

namespace {

bool is_parse_error(const boost::system::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_target).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message;
}

reply too_large(uint64_t limit) {
  return error_reply(http::status::payload_too_large, "too_large",
                     fmt::format("the body is limited to {} bytes", limit));
}

// The reply to a request whose header could not be read, if it gets one: a header over the limit
// or malformed; nothing when the connection ended or timed out.
std::optional<reply> header_refusal(const boost::system::error_code& rec) {
  if (rec == http::error::header_limit) {
    return error_reply(http::status::request_header_fields_too_large, "header_too_large",
                       "the request header is too large");
  }
  if (is_parse_error(rec)) {
    return error_reply(http::status::bad_request, "bad_request",
                       "malformed request: " + rec.message());
  }
  return std::nullopt;
}

}  // namespace

// Reads straight from the socket (see sweep_loop for why not through beast::tcp_stream).
std::optional<bool> http_server::sniff(session& s) const {
  std::string_view in(static_cast<const char*>(s.buf.data().data()), s.buf.size());
  auto eol = in.find('\n');
  if (eol == std::string_view::npos) {
    if (in.size() < opts_.header_limit) {
      return std::nullopt;
    }
    s.sniffing = false;
    return false;  // the parser refuses the line as too long
  }
  s.sniffing = false;
  auto line = in.substr(0, eol);
  if (line.ends_with('\r')) {
    line.remove_suffix(1);
  }
  return line.ends_with(foreign_version_);
}

http_server::header_pull http_server::pull_header(session& s, boost::system::error_code& rec,
                                                  bool& got_bytes) const {
  while (true) {
    bool undecided = false;
    if (s.sniffing && s.buf.size() > 0) {
      auto foreign = sniff(s);
      if (foreign && *foreign) {
        return header_pull::foreign;
      }
      undecided = !foreign;
    }
    if (s.buf.size() > 0 && !undecided) {
      size_t used = s.parser->put(s.buf.data(), rec);
      s.buf.consume(used);
      if (rec != http::error::need_more) {
        return header_pull::done;  // the header is complete, or malformed
      }
      rec = {};
    }
    boost::system::error_code r_ec;
    size_t n = s.sock->read_some(s.buf.prepare(4096), r_ec);  // non-blocking
    if (r_ec == asio::error::would_block || r_ec == asio::error::try_again) {
      return header_pull::would_block;
    }
    if (r_ec) {
      if (r_ec == asio::error::eof) {
        rec = s.parser->got_some() ? http::error::partial_message : http::error::end_of_stream;
      } else {
        rec = r_ec;
      }
      return header_pull::done;
    }
    s.buf.commit(n);
    got_bytes = true;
  }
}

// pull_header through TLS: the stream's reads complete from what OpenSSL holds decrypted before
// they wait for the socket, so there is no non-blocking step to take first. The first request line
// is sniffed inside TLS as pull_header does on a plain port (RTSPS); `foreign` says it was foreign.
asio::awaitable<boost::system::error_code> http_server::pull_header_tls(session& s,
                                                                        bool& foreign) const {
  boost::system::error_code rec;
  while (true) {
    bool undecided = false;
    if (s.sniffing && s.buf.size() > 0) {
      auto is = sniff(s);
      if (is && *is) {
        foreign = true;
        co_return rec;
      }
      undecided = !is;
    }
    if (s.buf.size() > 0 && !undecided) {
      size_t used = s.parser->put(s.buf.data(), rec);
      s.buf.consume(used);
      if (rec != http::error::need_more) {
        co_return rec;
      }
      rec = {};
    }
    auto [ec, n] = co_await s.tls->read_some(s.buf.prepare(4096));
    if (ec) {
      // A peer that closes without TLS's close_notify (stream_truncated) has closed all the same.
      if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
        co_return s.parser->got_some() ? http::error::partial_message : http::error::end_of_stream;
      }
      co_return ec;
    }
    s.buf.commit(n);
  }
}

// The TLS handshake of a new connection, within header_timeout (the sweep cuts it). A refusal (a
// plain-HTTP request, garbage, a handshake cut short or too slow) is logged, at most one line a
// second with the count of those not logged, so that a flood of them cannot fill the log.
asio::awaitable<bool> http_server::handshake(session& s) {
  s.tls_ctx = tls_ctx_.load();
  s.tls = std::make_unique<tls_conn>(*s.sock, s.tls_ctx->native_handle());
  s.deadline = steady::now() + opts_.header_timeout;
  auto ec = co_await s.tls->handshake();
  s.deadline = steady::time_point::max();
  if (!ec) {
    (SSL_session_reused(s.tls->native_handle()) ? tls_resumed_ : tls_full_)->inc();
    co_return true;
  }
  tls_failed_->inc();
  if (stopping_) {
    co_return false;
  }
  auto now = std::chrono::duration_cast<std::chrono::seconds>(steady::now().time_since_epoch());
  auto last = tls_logged_at_.load(std::memory_order_relaxed);
  if (now.count() > last &&
      tls_logged_at_.compare_exchange_strong(last, now.count(), std::memory_order_relaxed)) {
    std::string why = ec == asio::error::operation_aborted ? "not finished in time"
                      : ec == asio::error::eof || ec == asio::ssl::error::stream_truncated
                          ? "the client closed the connection"
                          : ec.message();
    if (ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_HTTP_REQUEST &&
        ec.category() == asio::error::get_ssl_category()) {
      why = "a plain-HTTP request on a TLS port";
    }
    auto skipped = tls_unlogged_.exchange(0, std::memory_order_relaxed);
    log::get("net")->warn(
        "{}: TLS handshake from {} refused: {}{}", name_, s.ctx.remote.address().to_string(), why,
        skipped ? fmt::format(" ({} more refused since the last line)", skipped) : std::string());
  } else {
    tls_unlogged_.fetch_add(1, std::memory_order_relaxed);
  }
  co_return false;
}

// The route of a request whose header is read, its body limit, or the reply refusing it.
http_server::admission http_server::admit(session& s, size_t& last_route) const {
  auto& hdr = s.parser->get();
  admission a;
  if (const char* why = framing_error(hdr, s.parser->chunked())) {
    a.refusal = error_reply(http::status::bad_request, "bad_request", why);
    return a;
  }
  if (!parse_target(hdr.target(), s.ctx)) {
    a.refusal = error_reply(http::status::bad_request, "bad_request", "malformed request target");
    return a;
  }
  a.route = match(hdr.method(), s.ctx.path, s.ctx.params, last_route);
  if (!a.route) {
    s.ctx.params.clear();
  } else if (a.route->who == audience::control && from_another_origin(hdr)) {
    // A page elsewhere must not drive a control endpoint through a viewer's browser, even in a
    // grid without tokens (a form's POST needs no preflight).
    a.refusal = error_reply(http::status::forbidden, "forbidden",
                            "a control endpoint refuses requests from web pages of other origins");
    return a;
  }
  a.body_limit = a.route ? a.route->body_limit : opts_.default_body_limit;
  if (auto cl = s.parser->content_length(); cl && *cl > a.body_limit) {
    a.refusal = too_large(a.body_limit);
  }
  return a;
}

// http::async_read through TLS: what is read handed to the parser until the message is complete.
asio::awaitable<boost::system::error_code> http_server::read_body_tls(session& s) {
  boost::system::error_code ec;
  while (!s.parser->is_done()) {
    if (s.buf.size() > 0) {
      size_t used = s.parser->put(s.buf.data(), ec);
      s.buf.consume(used);
      if (ec == http::error::need_more) {
        ec = {};
      }
      if (ec) {
        co_return ec;
      }
      if (used > 0) {
        continue;
      }
    }
    auto [rec, n] = co_await s.tls->read_some(s.buf.prepare(64 * 1024));
    if (rec == asio::error::eof || rec == asio::ssl::error::stream_truncated) {
      s.parser->put_eof(ec);  // a request's body ends by its length: cut short
      co_return ec ? ec : http::error::partial_message;
    }
    if (rec) {
      co_return rec;
    }
    s.buf.commit(n);
  }
  co_return ec;
}

// Reads the body of an admitted request, answering "100 Continue" first when asked. False if the
// connection must end (a refusal, if any, is sent).
asio::awaitable<bool> http_server::read_body(session& s, uint64_t limit, bool head) {
  s.parser->body_limit(limit);
  if (beast::iequals(s.parser->get()[http::field::expect], "100-continue")) {
    s.deadline = steady::now() + opts_.write_timeout;
    std::array<asio::const_buffer, 2> cont{
        asio::buffer(std::string_view("HTTP/1.1 100 Continue\r\n\r\n")), {}};
    auto cec = co_await write_out(s, cont, 0);
    if (cec) {
      co_return false;
    }
  }
  s.deadline = steady::now() + opts_.body_timeout;
  boost::system::error_code bec;
  if (s.tls) {
    bec = co_await read_body_tls(s);
  } else {
    std::tie(bec, std::ignore) = co_await http::async_read(*s.sock, s.buf, *s.parser, use_tuple);
  }
  s.deadline = steady::time_point::max();
  if (bec == http::error::body_limit) {
    co_await write_reply(s, too_large(limit), head, false);
    co_return false;
  }
  if (bec) {
    if (is_parse_error(bec)) {
      co_await write_reply(s,
                           error_reply(http::status::bad_request, "bad_request",
                                       "malformed request body: " + bec.message()),
                           head, false);
    }
    co_return false;  // cut short or timed out: nothing was handled
  }
  co_return true;
}

// One connection: requests read, handled and answered in turn. The steps that await on the hot
// path (the header read, the handler, the reply) stay inline here: a step of its own would be one
// more coroutine frame per request. Long for that reason.
asio::awaitable<void> http_server::run_session(loop& l, tcp::socket sock) {
  session s;
  s.sock = &sock;
  enlist(l, s, true);  // accept_loop counted it
  bool moved_home = false;
  boost::system::error_code ec;
  // Non-blocking for the synchronous sends and sendfile: one ioctl per connection, not per reply.
  sock.non_blocking(true, ec);
  request_context& ctx = s.ctx;
  ctx.remote = sock.remote_endpoint(ec);
  bool tls_up = false;  // a TLS handshake completed: a close_notify ends the connection
  if (tls_files_ && !ec) {
    tls_up = co_await handshake(s);
    if (!tls_up) {
      ec = asio::error::connection_refused;  // no request is read
    }
  }

  bool first = true;
  // Whether to look for the next request after the other ready connections have been served,
  // rather than ask epoll for it at once: see below.
  int plain_waits = 0;
  size_t last_route = SIZE_MAX;  // a console mostly asks for the same kind of thing again
  steady::time_point replied;    // when the last reply was sent (observe())
  while (!stopping_ && !ec) {
    s.busy = false;
    s.cors.clear();
    s.parser.emplace();
    s.parser->header_limit(opts_.header_limit);
    s.parser->body_limit(boost::none);  // the route's limit is set once the header names the route
    // After a reply, the time observe() took as it ended: no clock read between them.
    s.deadline = (first ? steady::now() + opts_.header_timeout : replied + opts_.idle_timeout);
    bool wait_first = !first && s.buf.size() == 0;
    s.sniffing = first && foreign_ != nullptr;
    first = false;
    boost::system::error_code rec;
    // Right after a reply the next request has seldom arrived yet. async_read_some would read at
    // once (Boost 1.81's epoll_reactor reads speculatively until a read returns 0 bytes) and mostly
    // get EAGAIN; async_wait costs an epoll_ctl instead (measured cheaper, docs/performance.md).
    // Both are a system call per request that nginx does not make: it remembers that a short read
    // drained the socket and waits for the next edge. Asio keeps no such state, so under load the
    // read is deferred until the connections that are ready now have been served; by then the
    // console has mostly sent its next request, and the read finds it. When it does not, the
    // next two requests of the connection wait at once (a connection at low rate gains nothing).
    // Measured: director/nginx 0.99 -> 1.03 (medians of the alternated runs, docs/performance.md).
    bool deferred = false;
    bool foreign = false;
    if (s.tls) {
      rec = co_await pull_header_tls(s, foreign);
    }
    while (!s.tls) {
      if (wait_first) {
        wait_first = false;
        if (plain_waits == 0) {
          co_await asio::post(l.ex, asio::use_awaitable);
          if (stopping_) {
            rec = asio::error::operation_aborted;  // idle, as if waiting: a stop cuts it
            break;
          }
          deferred = true;
        } else {
          --plain_waits;
          auto [w_ec] = co_await sock.async_wait(tcp::socket::wait_read, use_tuple);
          if (w_ec) {
            rec = w_ec;
            break;
          }
        }
      }
      bool got_bytes = false;
      auto pulled = pull_header(s, rec, got_bytes);
      if (pulled == header_pull::foreign) {
        foreign = true;
        break;
      }
      if (pulled == header_pull::done) {
        break;
      }
      if (deferred && !got_bytes) {
        plain_waits = 2;  // the deferral did not pay
      }
      deferred = false;
      auto [w_ec] = co_await sock.async_wait(tcp::socket::wait_read, use_tuple);
      if (w_ec) {
        rec = w_ec;
        break;
      }
    }
    if (foreign && !l.home && !s.tls) {
      // The foreign protocol's handler belongs to the home loop: the connection moves there.
      // (A TLS connection cannot move: its stream's state is this loop's. It stays, and its
      // handler runs on the home loop, its reads and writes posted back here: run_foreign.)
      // It stays counted in connections_ on its way (run_adopted takes the count over), so that
      // stop() cannot end while it is between the loops.
      auto proto = sock.local_endpoint(ec).protocol();
      int fd = ec ? -1 : sock.release(ec);
      if (fd >= 0) {
        tcp::socket moved(ex_);
        moved.assign(proto, fd, ec);
        if (ec) {
          ::close(fd);
          break;
        }
        moved_home = true;
        asio::co_spawn(
            ex_,
            run_adopted(std::move(moved),
                        std::string(static_cast<const char*>(s.buf.data().data()), s.buf.size())),
            asio::detached);
      }
      break;
    }
    if (foreign) {
      co_await run_foreign(s);
      break;
    }
    if (rec) {
      if (auto refusal = header_refusal(rec)) {
        co_await write_reply(s, std::move(*refusal), false, false);
      }
      break;
    }
    s.busy = true;
    s.deadline = steady::time_point::max();
    bool head = s.parser->get().method() == http::verb::head;
    auto began = steady::now();
    auto a = admit(s, last_route);
    auto* duration = a.route                    ? a.route->duration
                     : s.ctx.path == "/healthz" ? healthz_duration_
                     : s.ctx.path == "/metrics" ? metrics_duration_
                                                : unmatched_duration_;
    auto observe = [&] {
      replied = steady::now();
      duration->observe(std::chrono::duration<double>(replied - began).count());
    };
    if (a.refusal) {
      co_await write_reply(s, std::move(*a.refusal), head, false);
      observe();
      break;
    }
    if (!s.parser->is_done() && !co_await read_body(s, a.body_limit, head)) {
      break;
    }
    ctx.req = s.parser->release();
    bool keep_alive = ctx.req.keep_alive();
    bool get = ctx.req.method() == http::verb::get || ctx.req.method() == http::verb::head;
    const route_entry* r = a.route;
    bool plain = r && !(get && (ctx.path == "/healthz" || ctx.path == "/metrics"));
    reply rep;
    if (plain && (l.home || r->where == loop_affinity::any)) {
      try {
        rep = co_await r->h(ctx);
      } catch (const std::exception& e) {
        log::get("net")->error("{}: handler for {} threw: {}", name_, ctx.path, e.what());
        rep = error_reply(http::status::internal_server_error, "internal", e.what());
      }
    } else if (l.home) {
      rep = co_await builtin(ctx, r);
    } else {
      // The daemon's state is the home loop's: the handler (or /healthz, /metrics, whose
      // computed values read it) runs there while this connection waits.
      rep = co_await asio::co_spawn(ex_, builtin(ctx, r), asio::use_awaitable);
    }
    if (r && r->who == audience::viewer) {
      cors_lines(ctx.req, s.cors);
    }
    keep_alive = keep_alive && !rep.close && !stopping_;
    // start_reply does not wait (a reply the socket takes at once, the usual case, needs no
    // deadline nor the clock read that sets it); finish_reply may.
    if (!start_reply(s, rep, head, keep_alive)) {
      s.deadline = steady::now() + opts_.write_timeout;
      bool sent = co_await finish_reply(s, std::move(rep), head);
      if (!sent) {
        break;
      }
    }
    release_on_home(s, rep);
    observe();
    if (!keep_alive) {
      break;
    }
  }
  if (tls_up) {
    // Every end of a TLS connection after its handshake (Connection: close, the idle timeout, a
    // deadline, a refusal, stop) sends TLS's close_notify: without it OpenSSL's clients (curl,
    // openssl s_client, ffmpeg) see an unexpected EOF and drop the session instead of resuming
    // it. The write waits for room in the socket (a reply's end may have filled it) for a second
    // at most, which the sweep enforces, so that a peer that does not read cannot hold the
    // connection. The peer's own close_notify is not awaited (RFC 8446 §6.1 does not ask for
    // it): marked as received, SSL_shutdown is complete once ours is written.
    constexpr std::chrono::milliseconds close_notify_bound{1'000};
    SSL* ssl = s.tls->native_handle();
    SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_RECEIVED_SHUTDOWN);
    s.busy = false;  // a stop cuts it at once
    s.deadline = steady::now() + std::min(opts_.write_timeout, close_notify_bound);
    co_await s.tls->shutdown();
    s.deadline = steady::time_point::max();
  }
  sock.shutdown(tcp::socket::shutdown_send, ec);
  sock.close(ec);
  delist(s, moved_home);
  l.assigned.fetch_sub(1, std::memory_order_relaxed);
}

void http_server::enlist(loop& l, session& s, bool counted) {
  s.on = &l;
  l.sessions.push_front(&s);
  s.self = l.sessions.begin();
  l.count.fetch_add(1, std::memory_order_relaxed);
  if (!counted) {
    connections_.fetch_add(1, std::memory_order_relaxed);
  }
  if (!l.sweeping) {
    l.sweeping = true;
    asio::co_spawn(l.ex, sweep_loop(l), asio::detached);
  }
}

void http_server::delist(session& s, bool moving) {
  s.on->sessions.erase(s.self);
  s.on->count.fetch_sub(1, std::memory_order_relaxed);
  if (!moving) {
    connections_.fetch_sub(1, std::memory_order_relaxed);
  }
}

asio::awaitable<void> http_server::run_adopted(tcp::socket sock, std::string already_read) {
  session s;
  s.sock = &sock;
  enlist(*loops_[0], s, true);
  boost::system::error_code ec;
  sock.non_blocking(true, ec);
  s.ctx.remote = sock.remote_endpoint(ec);
  auto room = s.buf.prepare(already_read.size());
  std::memcpy(room.data(), already_read.data(), already_read.size());
  s.buf.commit(already_read.size());
  if (!stopping_) {
    co_await run_foreign(s);
  }
  sock.shutdown(tcp::socket::shutdown_send, ec);
  sock.close(ec);
  delist(s, false);
}

void http_server::release_on_home(session& s, reply& r) {
  if (s.on->home) {
    return;
  }
  std::shared_ptr<void> file_owner, stream_owner;
  std::shared_ptr<growing_body> body;
  if (r.file) {
    file_owner = std::move(r.file->owner);
  }
  if (r.stream) {
    stream_owner = std::move(r.stream->owner);
    body = std::move(r.stream->body);
  }
  if (file_owner || stream_owner || body) {
    asio::post(ex_, [a = std::move(file_owner), b = std::move(stream_owner),
                     c = std::move(body)]() mutable {
      a.reset();
      b.reset();
      c.reset();
    });
  }
}

namespace {

// A foreign connection's bytes straight from its socket (non-blocking: Asio's operations wait).
class plain_foreign_stream final : public foreign_stream {
 public:
  explicit plain_foreign_stream(tcp::socket& sock) : sock_(sock) {}
  asio::awaitable<io_result> read_some(asio::mutable_buffer b) override {
    co_return co_await sock_.async_read_some(b, use_tuple);
  }
  asio::awaitable<io_result> write(asio::const_buffer b) override {
    co_return co_await asio::async_write(sock_, b, use_tuple);
  }

 private:
  tcp::socket& sock_;
};

// ... through the connection's TLS stream (RTSPS). The handler runs on the home loop; when the
// connection is another loop's, each operation runs there (the stream's state is that loop's).
class tls_foreign_stream final : public foreign_stream {
 public:
  tls_foreign_stream(tls_conn& tls, asio::any_io_executor ex, bool hop)
      : tls_(tls), ex_(std::move(ex)), hop_(hop) {}
  asio::awaitable<io_result> read_some(asio::mutable_buffer b) override {
    if (!hop_) {
      co_return co_await tls_.read_some(b);
    }
    co_return co_await asio::co_spawn(
        ex_, [this, b]() -> asio::awaitable<io_result> { co_return co_await read_here(b); },
        use_awaitable);
  }
  asio::awaitable<io_result> write(asio::const_buffer b) override {
    if (!hop_) {
      co_return co_await tls_.write(b);
    }
    co_return co_await asio::co_spawn(
        ex_, [this, b]() -> asio::awaitable<io_result> { co_return co_await write_here(b); },
        use_awaitable);
  }

 private:
  asio::awaitable<io_result> read_here(asio::mutable_buffer b) {
    co_return co_await tls_.read_some(b);
  }
  asio::awaitable<io_result> write_here(asio::const_buffer b) { co_return co_await tls_.write(b); }
  tls_conn& tls_;
  asio::any_io_executor ex_;  // the connection's loop
  bool hop_;                  // that loop is not the home loop
};

}  // namespace

// The connection is the foreign protocol's from here; it counts as idle (cut at once at stop).
asio::awaitable<void> http_server::run_foreign(session& s) {
  s.busy = false;
  s.deadline = steady::time_point::max();
  bool hop = !s.on->home;  // a TLS connection of another loop (plain ones moved home)
  plain_foreign_stream plain(*s.sock);
  std::optional<tls_foreign_stream> tls;
  if (s.tls) {
    tls.emplace(*s.tls, s.on->ex, hop);
  }
  auto set_deadline = [&s, hop](steady::time_point t) {
    if (hop) {
      asio::post(s.on->ex, [&s, t] { s.deadline = t; });  // the sweep reads it on that loop
    } else {
      s.deadline = t;
    }
  };
  foreign_connection c{
      tls ? static_cast<foreign_stream&>(*tls) : plain, s.tls != nullptr, s.ctx.remote,
      std::string(static_cast<const char*>(s.buf.data().data()), s.buf.size()), set_deadline};
  s.buf.consume(s.buf.size());
  try {
    if (hop) {
      co_await asio::co_spawn(ex_, foreign_(c), use_awaitable);
    } else {
      co_await foreign_(c);
    }
  } catch (const std::exception& e) {
    log::get("net")->error("{}: {} connection handler threw: {}", name_, foreign_version_,
                           e.what());
  }
}

// Runs on the home loop; what touches another loop's connections is posted to that loop, and the
// waits read the loops' atomic counts.
asio::awaitable<void> http_server::stop(std::chrono::milliseconds drain) {
  stopping_ = true;
  auto on_each = [this](auto f) {
    for (auto& l : loops_) {
      if (l->home) {
        f(*l);
      } else {
        asio::post(l->ex, [f, lp = l.get()] { f(*lp); });
      }
    }
  };
  on_each([](loop& l) {
    boost::system::error_code ec;
    l.acceptor.close(ec);
    l.listening = false;
    for (auto* s : l.sessions) {
      if (!s->busy) {
        s->sock->cancel(ec);
      }
    }
  });
  asio::steady_timer t(ex_);
  auto deadline = std::chrono::steady_clock::now() + drain;
  while (connections() > 0 && std::chrono::steady_clock::now() < deadline) {
    t.expires_after(std::chrono::milliseconds(10));
    co_await t.async_wait(use_tuple);
  }
  on_each([](loop& l) {
    boost::system::error_code ec;
    for (auto* s : l.sessions) {
      s->sock->cancel(ec);
      s->sock->shutdown(tcp::socket::shutdown_both, ec);
    }
  });
  while (connections() > 0) {
    t.expires_after(std::chrono::milliseconds(5));
    co_await t.async_wait(use_tuple);
  }
  on_each([](loop& l) { l.sweep_timer.cancel(); });
  auto sweeping = [this] {
    return std::any_of(loops_.begin(), loops_.end(), [](auto& l) { return l->sweeping.load(); });
  };
  auto listening = [this] {
    return std::any_of(loops_.begin(), loops_.end(), [](auto& l) { return l->listening.load(); });
  };
  while (sweeping() || listening()) {
    t.expires_after(std::chrono::milliseconds(5));
    co_await t.async_wait(use_tuple);
  }
}

}  // namespace vodgrid::net
