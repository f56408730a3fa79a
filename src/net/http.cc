// The HTTP server: accept loop, one coroutine per connection, routing, replies and sendfile.
#include "net/http.h"

#include <sys/sendfile.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>

#include <cerrno>

#include "base/log.h"

namespace vodgrid::net {

namespace beast = boost::beast;
namespace json = boost::json;
using asio::use_awaitable;
constexpr auto use_tuple = asio::as_tuple(use_awaitable);

http::status status_of(errc e) {
  switch (e) {
    case errc::ok:
      return http::status::ok;
    case errc::invalid_argument:
      return http::status::bad_request;
    case errc::not_found:
      return http::status::not_found;
    case errc::conflict:
      return http::status::conflict;
    case errc::unauthorized:
      return http::status::unauthorized;
    case errc::forbidden:
      return http::status::forbidden;
    case errc::too_large:
      return http::status::payload_too_large;
    case errc::range_not_satisfiable:
      return http::status::range_not_satisfiable;
    case errc::unavailable:
      return http::status::service_unavailable;
    case errc::timeout:
      return http::status::gateway_timeout;
    case errc::digest_mismatch:
      return http::status::unprocessable_entity;
    case errc::io_error:
      return http::status::internal_server_error;
    case errc::no_space:
      return http::status::insufficient_storage;
    case errc::protocol_error:
      return http::status::bad_gateway;
    case errc::internal:
      return http::status::internal_server_error;
  }
  return http::status::internal_server_error;
}

reply error_reply(http::status s, std::string_view code, std::string_view detail) {
  reply r;
  r.status = s;
  r.body = json::serialize(json::object{{"error", code}, {"detail", detail}});
  r.body += '\n';
  return r;
}

reply error_reply(const error& e) {
  return error_reply(status_of(e.code), to_string(e.code), e.detail);
}

reply json_reply(const json::value& v, http::status s) {
  reply r;
  r.status = s;
  r.body = json::serialize(v);
  r.body += '\n';
  return r;
}

std::string_view request_context::query_param(const std::string& k) const {
  auto it = query.find(k);
  return it == query.end() ? std::string_view() : std::string_view(it->second);
}

struct http_server::session {
  beast::tcp_stream* stream = nullptr;
  bool busy = false;  // a request is being handled; idle sessions are cut first at stop
};

namespace {

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> parts;
  size_t i = 1;  // skip the leading '/'
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) {
      j = path.size();
    }
    parts.emplace_back(path.substr(i, j - i));
    i = j + 1;
  }
  return parts;
}

// Sends a file slice with sendfile(2) on the non-blocking socket, waiting for writability with a
// deadline on each wait. Returns the error, or none when every byte is sent.
asio::awaitable<boost::system::error_code> send_file(tcp::socket& sock, const file_slice& f,
                                                     std::chrono::milliseconds timeout,
                                                     uint64_t& sent) {
  boost::system::error_code ec;
  sock.native_non_blocking(true, ec);
  if (ec) {
    co_return ec;
  }
  off_t off = static_cast<off_t>(f.offset);
  uint64_t left = f.length;
  // The deadline's handler may run after this coroutine has moved on (or ended): it cancels the
  // socket only if the wait it was armed for is still the current one.
  struct deadline_state {
    tcp::socket* sock;
    uint64_t wait = 0;
  };
  auto state = std::make_shared<deadline_state>(deadline_state{&sock});
  asio::steady_timer timer(sock.get_executor());
  while (left > 0) {
    ssize_t n = ::sendfile(sock.native_handle(), f.fd, &off, std::min<uint64_t>(left, 1u << 30));
    if (n > 0) {
      left -= static_cast<uint64_t>(n);
      sent += static_cast<uint64_t>(n);
      continue;
    }
    if (n == 0) {
      state->sock = nullptr;
      co_return make_error_code(asio::error::eof);  // the file is shorter than promised
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno != EAGAIN) {
      state->sock = nullptr;
      co_return boost::system::error_code(errno, boost::system::system_category());
    }
    uint64_t this_wait = ++state->wait;
    timer.expires_after(timeout);
    timer.async_wait([state, this_wait](boost::system::error_code tec) {
      if (!tec && state->sock && state->wait == this_wait) {
        boost::system::error_code ec;
        state->sock->cancel(ec);
      }
    });
    auto [wec] = co_await sock.async_wait(tcp::socket::wait_write, use_tuple);
    ++state->wait;
    timer.cancel();
    if (wec) {
      state->sock = nullptr;
      co_return wec;
    }
  }
  state->sock = nullptr;
  co_return boost::system::error_code{};
}

}  // namespace

// RFC 9112 §6.1 and §3.2: a request whose Transfer-Encoding does not end in chunked cannot be
// framed (Beast would read it as bodiless, a request-smuggling vector), and HTTP/1.1 needs a Host.
// Returns why the request is refused, or "".
std::string http_server::framing_error(const http::request_header<>& h, bool chunked) {
  if (h.find(http::field::transfer_encoding) != h.end() && !chunked) {
    return "Transfer-Encoding must end in chunked";
  }
  if (h.version() >= 11 && h.find(http::field::host) == h.end()) {
    return "an HTTP/1.1 request needs a Host header";
  }
  return {};
}

http_server::http_server(asio::any_io_executor ex, std::string name, server_options opts)
    : ex_(ex), name_(std::move(name)), opts_(opts), acceptor_(ex) {
  for (int i = 1; i <= 5; ++i) {
    requests_total_[i] = &metrics_.counter("vodgrid_http_requests_total", "HTTP requests answered",
                                           fmt::format("code=\"{}xx\"", i));
  }
  bytes_sent_ = &metrics_.counter("vodgrid_http_body_bytes_sent_total", "Reply body bytes sent");
  file_bytes_sent_ = &metrics_.counter("vodgrid_http_file_bytes_sent_total",
                                       "Reply body bytes sent from files (segments) with sendfile");
  metrics_.gauge_fn("vodgrid_http_connections", "Open HTTP connections",
                    [this] { return static_cast<double>(sessions_.size()); });
}

http_server::~http_server() = default;

void http_server::route(http::verb method, std::string pattern, handler h, uint64_t body_limit) {
  routes_.push_back(route_entry{method, split_path(pattern), std::move(h),
                                body_limit ? body_limit : opts_.default_body_limit});
}

result<uint16_t> http_server::listen(const std::string& host, uint16_t port) {
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) {
    return make_error(errc::invalid_argument, fmt::format("bad listen address {}", host));
  }
  tcp::endpoint ep(addr, port);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) {
    acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    acceptor_.bind(ep, ec);
  }
  if (!ec) {
    acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return make_error(errc::unavailable,
                      fmt::format("cannot listen on {}:{}: {}", host, port, ec.message()));
  }
  uint16_t bound = acceptor_.local_endpoint().port();
  asio::co_spawn(ex_, accept_loop(), asio::detached);
  return bound;
}

asio::awaitable<void> http_server::accept_loop() {
  auto logger = log::get("net");
  while (!stopping_) {
    auto [ec, sock] = co_await acceptor_.async_accept(use_tuple);
    if (ec) {
      if (stopping_ || ec == asio::error::operation_aborted || !acceptor_.is_open()) {
        break;
      }
      logger->warn("{}: accept failed: {}", name_, ec.message());
      asio::steady_timer t(ex_, std::chrono::milliseconds(50));  // EMFILE and friends: back off
      co_await t.async_wait(use_tuple);
      continue;
    }
    if (sessions_.size() >= opts_.max_connections) {
      sock.close();
      continue;
    }
    sock.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(ex_, run_session(std::move(sock)), asio::detached);
  }
}

const http_server::route_entry* http_server::match(http::verb method, std::string_view path,
                                                   std::vector<std::string>& params,
                                                   std::string& allow) const {
  auto parts = split_path(path);
  allow.clear();
  const route_entry* found = nullptr;
  for (auto& r : routes_) {
    if (r.parts.size() != parts.size()) {
      continue;
    }
    std::vector<std::string> caught;
    bool ok = true;
    for (size_t i = 0; i < parts.size() && ok; ++i) {
      const std::string& p = r.parts[i];
      if (p.rfind("{}", 0) == 0) {
        std::string_view suffix = std::string_view(p).substr(2);
        const std::string& got = parts[i];
        if (got.size() <= suffix.size() ||
            got.compare(got.size() - suffix.size(), suffix.size(), suffix) != 0) {
          ok = false;
        } else {
          caught.push_back(got.substr(0, got.size() - suffix.size()));
        }
      } else {
        ok = p == parts[i];
      }
    }
    if (!ok) {
      continue;
    }
    auto verb = std::string(http::to_string(r.method));
    allow += (allow.empty() ? "" : ", ") + verb + (r.method == http::verb::get ? ", HEAD" : "");
    if (!found &&
        (r.method == method || (method == http::verb::head && r.method == http::verb::get))) {
      params = std::move(caught);
      found = &r;
    }
  }
  return found;
}

asio::awaitable<reply> http_server::dispatch(request_context& ctx, const route_entry* r,
                                             const std::string& allow) {
  auto method = ctx.req.method();
  bool get = method == http::verb::get || method == http::verb::head;
  if (get && ctx.path == "/healthz") {
    json::object o{{"status", "ok"}, {"daemon", name_}};
    if (health_) {
      for (auto& [k, v] : health_()) {
        o[k] = v;
      }
    }
    co_return json_reply(o);
  }
  if (get && ctx.path == "/metrics") {
    reply rep;
    rep.content_type = "text/plain; version=0.0.4";
    rep.body = metrics_.render();
    co_return rep;
  }
  if (!r) {
    if (!allow.empty()) {
      auto e = error_reply(
          http::status::method_not_allowed, "method_not_allowed",
          fmt::format("{} is not allowed on {}", std::string(ctx.req.method_string()), ctx.path));
      e.headers.emplace_back("Allow", allow);
      co_return e;
    }
    co_return error_reply(http::status::not_found, "not_found", "no such resource: " + ctx.path);
  }
  try {
    co_return co_await r->h(ctx);
  } catch (const std::exception& e) {
    log::get("net")->error("{}: handler for {} threw: {}", name_, ctx.path, e.what());
    co_return error_reply(http::status::internal_server_error, "internal", e.what());
  }
}

// Writes one reply; false if the connection must end.
asio::awaitable<bool> http_server::write_reply(beast::tcp_stream& stream, reply r, bool head,
                                               bool keep_alive) {
  int cls = static_cast<int>(r.status) / 100;
  if (cls >= 1 && cls <= 5) {
    requests_total_[cls]->inc();
  }
  keep_alive = keep_alive && !r.close && !stopping_;
  stream.expires_after(opts_.write_timeout);
  if (r.file || head) {
    http::response<http::empty_body> res{r.status, 11};
    res.set(http::field::server, "vodgrid");
    res.set(http::field::content_type, r.content_type);
    for (auto& [k, v] : r.headers) {
      res.set(k, v);
    }
    res.content_length(r.file ? r.file->length : r.body.size());
    res.keep_alive(keep_alive);
    http::response_serializer<http::empty_body> sr(res);
    auto [wec, n] = co_await http::async_write_header(stream, sr, use_tuple);
    if (wec) {
      co_return false;
    }
    if (r.file && !head) {
      uint64_t sent = 0;
      auto fec = co_await send_file(stream.socket(), *r.file, opts_.write_timeout, sent);
      bytes_sent_->inc(static_cast<double>(sent));
      file_bytes_sent_->inc(static_cast<double>(sent));
      if (fec) {
        co_return false;
      }
    }
    co_return keep_alive;
  }
  http::response<http::string_body> res{r.status, 11};
  res.set(http::field::server, "vodgrid");
  res.set(http::field::content_type, r.content_type);
  for (auto& [k, v] : r.headers) {
    res.set(k, v);
  }
  res.body() = std::move(r.body);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  bytes_sent_->inc(static_cast<double>(res.body().size()));
  auto [wec, n] = co_await http::async_write(stream, res, use_tuple);
  co_return !wec && keep_alive;
}

asio::awaitable<void> http_server::run_session(tcp::socket sock) {
  beast::tcp_stream stream(std::move(sock));
  session s;
  s.stream = &stream;
  sessions_.push_back(&s);
  auto self = std::prev(sessions_.end());
  beast::flat_buffer buf;
  boost::system::error_code ec;
  auto remote = stream.socket().remote_endpoint(ec);

  bool first = true;
  while (!stopping_) {
    s.busy = false;
    http::request_parser<http::string_body> parser;
    parser.header_limit(opts_.header_limit);
    parser.body_limit(boost::none);  // the route's limit is set once the header names the route
    stream.expires_after(first ? opts_.header_timeout : opts_.idle_timeout);
    first = false;
    auto [rec, rn] = co_await http::async_read_header(stream, buf, parser, use_tuple);
    if (rec) {
      if (rec == http::error::header_limit) {
        co_await write_reply(stream,
                             error_reply(http::status::request_header_fields_too_large,
                                         "header_too_large", "the request header is too large"),
                             false, false);
      } else if (rec.category() == http::make_error_code(http::error::bad_target).category() &&
                 rec != http::error::end_of_stream && rec != http::error::partial_message) {
        co_await write_reply(stream,
                             error_reply(http::status::bad_request, "bad_request",
                                         "malformed request: " + rec.message()),
                             false, false);
      }
      break;
    }
    s.busy = true;
    request_context ctx;
    ctx.remote = remote;
    auto& hdr = parser.get();
    bool head = hdr.method() == http::verb::head;
    if (auto why = framing_error(hdr, parser.chunked()); !why.empty()) {
      co_await write_reply(stream, error_reply(http::status::bad_request, "bad_request", why), head,
                           false);
      break;
    }
    auto target = boost::urls::parse_origin_form(hdr.target());
    if (!target) {
      co_await write_reply(
          stream, error_reply(http::status::bad_request, "bad_request", "malformed request target"),
          head, false);
      break;
    }
    ctx.path = std::string(target->encoded_path());
    for (auto p : target->params()) {
      ctx.query[p.key] = p.value;
    }
    std::string allow;
    const route_entry* r = match(hdr.method(), ctx.path, ctx.params, allow);
    uint64_t limit = r ? r->body_limit : opts_.default_body_limit;
    if (auto cl = parser.content_length(); cl && *cl > limit) {
      co_await write_reply(stream,
                           error_reply(http::status::payload_too_large, "too_large",
                                       fmt::format("the body is limited to {} bytes", limit)),
                           head, false);
      break;
    }
    if (!parser.is_done()) {
      parser.body_limit(limit);
      if (beast::iequals(hdr[http::field::expect], "100-continue")) {
        http::response<http::empty_body> cont{http::status::continue_, 11};
        stream.expires_after(opts_.write_timeout);
        auto [cec, cn] = co_await http::async_write(stream, cont, use_tuple);
        if (cec) {
          break;
        }
      }
      stream.expires_after(opts_.body_timeout);
      auto [bec, bn] = co_await http::async_read(stream, buf, parser, use_tuple);
      if (bec == http::error::body_limit) {
        co_await write_reply(stream,
                             error_reply(http::status::payload_too_large, "too_large",
                                         fmt::format("the body is limited to {} bytes", limit)),
                             head, false);
        break;
      }
      if (bec) {
        if (bec.category() == http::make_error_code(http::error::bad_target).category() &&
            bec != http::error::partial_message && bec != http::error::end_of_stream) {
          co_await write_reply(stream,
                               error_reply(http::status::bad_request, "bad_request",
                                           "malformed request body: " + bec.message()),
                               head, false);
        }
        break;  // cut short or timed out: nothing was handled
      }
    }
    ctx.req = parser.release();
    bool keep_alive = ctx.req.keep_alive();
    reply rep = co_await dispatch(ctx, r, allow);
    if (!co_await write_reply(stream, std::move(rep), head, keep_alive)) {
      break;
    }
  }
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream.close();
  sessions_.erase(self);
}

asio::awaitable<void> http_server::stop(std::chrono::milliseconds drain) {
  stopping_ = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
  for (auto* s : sessions_) {
    if (!s->busy) {
      s->stream->socket().cancel(ec);
    }
  }
  asio::steady_timer t(ex_);
  auto deadline = std::chrono::steady_clock::now() + drain;
  while (!sessions_.empty() && std::chrono::steady_clock::now() < deadline) {
    t.expires_after(std::chrono::milliseconds(10));
    co_await t.async_wait(use_tuple);
  }
  for (auto* s : sessions_) {
    s->stream->socket().cancel(ec);
    s->stream->socket().shutdown(tcp::socket::shutdown_both, ec);
  }
  while (!sessions_.empty()) {
    t.expires_after(std::chrono::milliseconds(5));
    co_await t.async_wait(use_tuple);
  }
}

}  // namespace vodgrid::net
