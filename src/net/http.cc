// The HTTP server: accept loop, one coroutine per connection, routing, replies and sendfile.
#include "net/http.h"

#include <sys/sendfile.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <span>
#include <stdexcept>

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

std::string_view request_context::query_param(std::string_view k) const {
  for (auto it = query.rbegin(); it != query.rend(); ++it) {
    if (it->first == k) {
      return it->second;
    }
  }
  return {};
}

struct http_server::session {
  tcp::socket* sock = nullptr;
  bool busy = false;  // a request is being handled; idle sessions are cut first at stop
  // When the socket operation in progress must have completed (checked by sweep_loop);
  // time_point::max() while the handler runs.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  std::string head;  // the reply's status line and header fields, reused from reply to reply
};

namespace {

using steady = std::chrono::steady_clock;

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

// A path split at its '/'s (as split_path does), without copying; `n` > max_parts: too long for
// any route.
struct split_view {
  static constexpr size_t max_parts = 16;
  std::array<std::string_view, max_parts> part;
  size_t n = 0;
  explicit split_view(std::string_view path) {
    size_t i = 1;  // skip the leading '/'
    while (i <= path.size()) {
      size_t j = path.find('/', i);
      if (j == std::string_view::npos) {
        j = path.size();
      }
      if (n < max_parts) {
        part[n] = path.substr(i, j - i);
      }
      ++n;
      i = j + 1;
    }
  }
};

// A table of the ASCII letters and digits and the characters of `extra`, for checking text a
// character at a time by one lookup (a chain of comparisons cost 10 instructions a character).
constexpr std::array<bool, 256> char_table(std::string_view extra) {
  std::array<bool, 256> t{};
  for (int c = 'a'; c <= 'z'; ++c) {
    t[c] = true;
  }
  for (int c = 'A'; c <= 'Z'; ++c) {
    t[c] = true;
  }
  for (int c = '0'; c <= '9'; ++c) {
    t[c] = true;
  }
  for (char c : extra) {
    t[static_cast<unsigned char>(c)] = true;
  }
  return t;
}

bool only(const std::array<bool, 256>& table, std::string_view text) {
  for (char c : text) {
    if (!table[static_cast<unsigned char>(c)]) {
      return false;
    }
  }
  return true;
}

// True if `path` (a target without its query) is made of '/' and the pchar characters of RFC 3986
// only, without percent-escapes, and starts with '/' (origin-form, RFC 9112 §3.2.1): it is then
// the path itself. Checked by hand because it is the common case, and boost::urls's full parse cost
// about 2,600 instructions a request (callgrind); anything else still goes through boost::urls.
bool plain_path(std::string_view path) {
  static constexpr auto table = char_table("-._~!$&'()*+,;=:@/");
  return !path.empty() && path[0] == '/' && only(table, path);
}

// The parameters of a query made only of unreserved characters, '=' and '&' (a token, a segment
// signature): nothing to percent-decode, so it is split here rather than through Boost.URL, which
// showed as 5% of the director's CPU per redirect with a token in every request. False (and `out`
// untouched) for anything else, which goes through Boost.URL. The strings of `out` are assigned,
// not made anew: a connection's requests reuse their capacity (a token is some 300 bytes).
bool split_plain_query(std::string_view q, std::vector<std::pair<std::string, std::string>>& out) {
  static constexpr auto table = char_table("-._~=&");
  if (!only(table, q)) {
    return false;
  }
  size_t n = 0;
  auto put = [&](std::string_view k, std::string_view v) {
    if (n < out.size()) {
      out[n].first.assign(k);
      out[n].second.assign(v);
    } else {
      out.emplace_back(k, v);
    }
    ++n;
  };
  while (!q.empty()) {
    auto amp = q.find('&');
    std::string_view p = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    if (p.empty()) {
      continue;
    }
    auto eq = p.find('=');
    put(p.substr(0, eq), eq == std::string_view::npos ? std::string_view() : p.substr(eq + 1));
  }
  out.resize(n);
  return true;
}

// Sends a file slice with sendfile(2) on the non-blocking socket, waiting for writability when the
// socket buffer is full; `deadline` is pushed back by `timeout` before each wait (sweep_loop cuts
// the wait when it passes). Returns the error, or none when every byte is sent.
asio::awaitable<boost::system::error_code> send_file(tcp::socket& sock, const file_slice& f,
                                                     steady::time_point& deadline,
                                                     std::chrono::milliseconds timeout,
                                                     uint64_t& sent) {
  off_t off = static_cast<off_t>(f.offset);
  uint64_t left = f.length;
  while (left > 0) {
    ssize_t n = ::sendfile(sock.native_handle(), f.fd, &off, std::min<uint64_t>(left, 1u << 30));
    if (n > 0) {
      left -= static_cast<uint64_t>(n);
      sent += static_cast<uint64_t>(n);
      continue;
    }
    if (n == 0) {
      co_return make_error_code(asio::error::eof);  // the file is shorter than promised
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno != EAGAIN) {
      co_return boost::system::error_code(errno, boost::system::system_category());
    }
    deadline = steady::now() + timeout;
    auto [wec] = co_await sock.async_wait(tcp::socket::wait_write, use_tuple);
    if (wec) {
      co_return wec;
    }
  }
  co_return boost::system::error_code{};
}

void append_number(std::string& out, uint64_t v) {
  char digits[20];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, v);
  out.append(digits, end);
}

// Writes `parts` (consumed as they are sent) with `flags`: at once if the socket takes them, else
// waiting for writability, `deadline` pushed back by `timeout` before each wait.
asio::awaitable<boost::system::error_code> write_rest(tcp::socket& sock,
                                                      std::array<asio::const_buffer, 2> parts,
                                                      size_t first, int flags,
                                                      steady::time_point& deadline,
                                                      std::chrono::milliseconds timeout) {
  while (first < parts.size()) {
    boost::system::error_code ec;
    size_t n = sock.send(std::span(parts).subspan(first), flags, ec);
    if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
      co_return ec;
    }
    while (n > 0 && first < parts.size()) {
      size_t k = std::min(n, parts[first].size());
      parts[first] += k;
      n -= k;
      if (parts[first].size() == 0) {
        ++first;
      }
    }
    while (first < parts.size() && parts[first].size() == 0) {
      ++first;
    }
    if (first < parts.size() && ec) {
      deadline = steady::now() + timeout;
      auto [wec] = co_await sock.async_wait(tcp::socket::wait_write, use_tuple);
      if (wec) {
        co_return wec;
      }
    }
  }
  co_return boost::system::error_code{};
}

}  // namespace

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
    : ex_(ex), name_(std::move(name)), opts_(opts), acceptor_(ex), sweep_timer_(ex) {
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
  metrics_.gauge_fn("vodgrid_http_connections", "Open HTTP connections",
                    [this] { return static_cast<double>(sessions_.size()); });
}

http_server::~http_server() = default;

void http_server::route(http::verb method, std::string pattern, handler h, uint64_t body_limit) {
  std::vector<route_part> parts;
  auto split = split_path(pattern);
  if (split.size() > split_view::max_parts) {
    throw std::invalid_argument("a route pattern has at most 16 parts: " + pattern);
  }
  for (auto& p : split) {
    if (p.rfind("{}", 0) == 0) {
      parts.push_back(route_part{p.substr(2), true});
    } else {
      parts.push_back(route_part{std::move(p), false});
    }
  }
  // Whether some path matches both patterns: part by part, two texts are equal, a text ends with
  // a capture's suffix (and is longer), or of two captures' suffixes one ends the other. Only an
  // earlier route of the same method can take a request from this one (HEAD goes to GET routes).
  auto overlap = [](const std::vector<route_part>& a, const std::vector<route_part>& b) {
    if (a.size() != b.size()) {
      return false;
    }
    for (size_t k = 0; k < a.size(); ++k) {
      const route_part &x = a[k], &y = b[k];
      bool ok;
      if (x.capture == y.capture) {
        ok = x.capture ? x.text.ends_with(y.text) || y.text.ends_with(x.text) : x.text == y.text;
      } else {
        const std::string& text = x.capture ? y.text : x.text;
        const std::string& suffix = x.capture ? x.text : y.text;
        ok = text.size() > suffix.size() && text.ends_with(suffix);
      }
      if (!ok) {
        return false;
      }
    }
    return true;
  };
  bool unshadowed = std::none_of(routes_.begin(), routes_.end(), [&](const route_entry& r) {
    return r.method == method && overlap(r.parts, parts);
  });
  routes_.push_back(route_entry{method, std::move(parts), std::move(h),
                                body_limit ? body_limit : opts_.default_body_limit, unshadowed});
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

// One timer for the deadlines of all connections, instead of a timer armed and cancelled around
// every read and write (what beast::tcp_stream does, which with its composed operations cost more
// than the rest of a redirect). Runs while there are sessions.
asio::awaitable<void> http_server::sweep_loop() {
  while (!sessions_.empty()) {
    sweep_timer_.expires_after(sweep_tick_);
    co_await sweep_timer_.async_wait(use_tuple);
    auto now = steady::now();
    for (auto* s : sessions_) {
      if (s->deadline < now) {
        boost::system::error_code ec;
        s->sock->cancel(ec);
        s->deadline = steady::time_point::max();
      }
    }
  }
  sweeping_ = false;
}

namespace {

// Matches a split path against a pattern's parts, capturing into `params` if given.
template <class Part>
bool match_parts(const std::vector<Part>& parts, const split_view& path,
                 std::vector<std::string>* params) {
  if (parts.size() != path.n) {
    return false;
  }
  for (size_t k = 0; k < parts.size(); ++k) {
    std::string_view got = path.part[k];
    const Part& p = parts[k];
    if (p.capture) {
      if (got.size() <= p.text.size() || !got.ends_with(p.text)) {
        return false;
      }
      if (params) {
        params->emplace_back(got.substr(0, got.size() - p.text.size()));
      }
    } else if (got != p.text) {
      return false;
    }
  }
  return true;
}

}  // namespace

const http_server::route_entry* http_server::match(http::verb method, std::string_view path,
                                                   std::vector<std::string>& params,
                                                   size_t& last) const {
  split_view parts(path);
  auto accepts = [method](const route_entry& r) {
    return r.method == method || (method == http::verb::head && r.method == http::verb::get);
  };
  params.clear();
  if (last < routes_.size() && routes_[last].unshadowed && accepts(routes_[last])) {
    if (match_parts(routes_[last].parts, parts, &params)) {
      return &routes_[last];
    }
    params.clear();
  }
  for (size_t i = 0; i < routes_.size(); ++i) {
    auto& r = routes_[i];
    if (accepts(r) && match_parts(r.parts, parts, nullptr)) {
      match_parts(r.parts, parts, &params);
      last = i;
      return &r;
    }
  }
  return nullptr;
}

std::string http_server::allowed_methods(std::string_view path) const {
  std::string allow;
  split_view parts(path);
  for (auto& r : routes_) {
    if (match_parts(r.parts, parts, nullptr)) {
      auto verb = std::string(http::to_string(r.method));
      allow += (allow.empty() ? "" : ", ") + verb + (r.method == http::verb::get ? ", HEAD" : "");
    }
  }
  return allow;
}

// The built-in resources and the replies for requests no route takes.
asio::awaitable<reply> http_server::builtin(request_context& ctx, const route_entry* r) {
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
    if (auto allow = allowed_methods(ctx.path); !allow.empty()) {
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

// Formats the reply's head into s.head and sends as much of it (and of a small body) as the socket
// takes at once. The head is written here rather than by Beast's serializer: it is a status line
// and a handful of fields, and the serializer's buffer sequences cost about 18,000 instructions a
// reply (callgrind, a 302). Returns true if the reply is complete (nothing left to send).
bool http_server::start_reply(session& s, const reply& r, bool head, bool keep_alive) {
  int cls = static_cast<int>(r.status) / 100;
  if (cls >= 1 && cls <= 5) {
    requests_total_[cls]->inc();
  }
  using namespace std::string_view_literals;
  std::string& h = s.head;
  h.clear();
  h += "HTTP/1.1 "sv;
  append_number(h, static_cast<unsigned>(r.status));
  h += ' ';
  auto reason = http::obsolete_reason(r.status);
  h.append(reason.data(), reason.size());
  h += "\r\nServer: vodgrid\r\nContent-Type: "sv;
  h += r.content_type;
  h += "\r\n"sv;
  for (auto& [k, v] : r.headers) {
    h += k;
    h += ": "sv;
    h += v;
    h += "\r\n"sv;
  }
  h += "Content-Length: "sv;
  append_number(h, r.file ? r.file->length : r.stream ? r.stream->length : r.body.size());
  h += keep_alive ? "\r\n\r\n"sv : "\r\nConnection: close\r\n\r\n"sv;
  if ((r.file || r.stream) && !head) {
    return false;  // finish_reply sends the head and the file or stream
  }
  std::array<asio::const_buffer, 2> parts{asio::buffer(h),
                                          head ? asio::const_buffer() : asio::buffer(r.body)};
  size_t total = parts[0].size() + parts[1].size();
  boost::system::error_code ec;
  size_t n = s.sock->send(parts, 0, ec);
  if (!ec && n == total) {
    bytes_sent_->inc(static_cast<double>(parts[1].size()));
    return true;
  }
  // Leave what is unsent in s.head: finish_reply sends it.
  if (ec) {
    n = 0;
  }
  if (n < h.size()) {
    h.erase(0, n);
    h.append(static_cast<const char*>(parts[1].data()), parts[1].size());
  } else {
    std::string rest(static_cast<const char*>(parts[1].data()) + (n - h.size()), total - n);
    h = std::move(rest);
  }
  bytes_sent_->inc(static_cast<double>(parts[1].size()));
  return false;
}

// Sends what start_reply left: the rest of a reply, or the head and the file. False if it could
// not be sent.
asio::awaitable<bool> http_server::finish_reply(session& s, reply r, bool head) {
  bool file = r.file && !head;
  int flags =
      (file && r.file->length > 0) || (r.stream && !head && r.stream->length > 0 &&
                                       r.stream->body->available().size() > r.stream->offset)
          ? MSG_MORE
          : 0;  // the head leaves with the file's start
  std::array<asio::const_buffer, 2> rest{asio::buffer(s.head), asio::const_buffer()};
  auto ec = co_await write_rest(*s.sock, rest, 0, flags, s.deadline, opts_.write_timeout);
  if (ec) {
    co_return false;
  }
  if (file) {
    uint64_t sent = 0;
    auto fec = co_await send_file(*s.sock, *r.file, s.deadline, opts_.write_timeout, sent);
    bytes_sent_->inc(static_cast<double>(sent));
    file_bytes_sent_->inc(static_cast<double>(sent));
    if (fec) {
      co_return false;
    }
  }
  if (r.stream && !head) {
    co_return co_await send_stream(s, *r.stream);
  }
  co_return true;
}

// Sends a slice of a growing body as its bytes arrive. While it waits for them the write deadline
// is held off: how long a body takes to arrive is its producer's business (an engine's copy has its
// own timeout), and the connection ends when the body fails.
asio::awaitable<bool> http_server::send_stream(session& s, const stream_slice& st) {
  uint64_t pos = st.offset;
  uint64_t end = st.offset + st.length;
  while (pos < end) {
    auto have = st.body->available();
    if (have.size() <= pos) {
      s.deadline = steady::time_point::max();
      co_await st.body->wait_beyond(pos);
      if (stopping_) {
        co_return false;
      }
      have = st.body->available();
      if (have.size() <= pos) {
        co_return false;  // the body failed: the console sees a short reply and asks again
      }
    }
    size_t n = static_cast<size_t>(std::min<uint64_t>(end, have.size()) - pos);
    std::array<asio::const_buffer, 2> part{asio::buffer(have.data() + pos, n),
                                           asio::const_buffer()};
    auto ec = co_await write_rest(*s.sock, part, 0, 0, s.deadline, opts_.write_timeout);
    if (ec) {
      co_return false;
    }
    bytes_sent_->inc(static_cast<double>(n));
    pos += n;
  }
  co_return true;
}

// Writes one reply; false if the connection must end.
asio::awaitable<bool> http_server::write_reply(session& s, reply r, bool head, bool keep_alive) {
  keep_alive = keep_alive && !r.close && !stopping_;
  s.deadline = steady::now() + opts_.write_timeout;
  if (!start_reply(s, r, head, keep_alive)) {
    bool sent = co_await finish_reply(s, std::move(r), head);
    if (!sent) {
      co_return false;
    }
  }
  co_return keep_alive;
}

asio::awaitable<void> http_server::run_session(tcp::socket sock) {
  session s;
  s.sock = &sock;
  sessions_.push_back(&s);
  auto self = std::prev(sessions_.end());
  if (!sweeping_) {
    sweeping_ = true;
    asio::co_spawn(ex_, sweep_loop(), asio::detached);
  }
  boost::system::error_code ec;
  // Non-blocking for the synchronous sends and sendfile: one ioctl per connection, not per reply.
  sock.non_blocking(true, ec);
  beast::flat_buffer buf;
  request_context ctx;  // reused from request to request: its strings keep their capacity
  ctx.remote = sock.remote_endpoint(ec);
  std::optional<http::request_parser<http::string_body>> parser;

  bool first = true;
  // Whether to look for the next request after the other ready connections have been served,
  // rather than ask epoll for it at once: see below.
  int plain_waits = 0;
  size_t last_route = SIZE_MAX;  // a console mostly asks for the same kind of thing again
  while (!stopping_ && !ec) {
    s.busy = false;
    parser.emplace();
    parser->header_limit(opts_.header_limit);
    parser->body_limit(boost::none);  // the route's limit is set once the header names the route
    s.deadline = steady::now() + (first ? opts_.header_timeout : opts_.idle_timeout);
    bool wait_first = !first && buf.size() == 0;
    first = false;
    // The header, parsed by Beast's parser from what the buffer holds, reading more while it
    // needs more (Beast's parser keeps its place, so the buffer is not scanned again from the
    // start). Read straight from the socket: see sweep_loop for why not through beast::tcp_stream.
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
    while (true) {
      if (wait_first) {
        wait_first = false;
        if (plain_waits == 0) {
          co_await asio::post(ex_, asio::use_awaitable);
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
      if (buf.size() > 0) {
        size_t used = parser->put(buf.data(), rec);
        buf.consume(used);
        if (rec != http::error::need_more) {
          break;  // the header is complete, or malformed
        }
        rec = {};
      }
      boost::system::error_code r_ec;
      size_t n = sock.read_some(buf.prepare(4096), r_ec);  // non-blocking
      if (r_ec == asio::error::would_block || r_ec == asio::error::try_again) {
        if (deferred) {
          plain_waits = 2;  // the deferral did not pay
        }
        deferred = false;
        auto [w_ec] = co_await sock.async_wait(tcp::socket::wait_read, use_tuple);
        r_ec = w_ec;
        if (!r_ec) {
          continue;
        }
      }
      if (r_ec) {
        if (r_ec == asio::error::eof) {
          rec = parser->got_some() ? http::error::partial_message : http::error::end_of_stream;
        } else {
          rec = r_ec;
        }
        break;
      }
      buf.commit(n);
      deferred = false;
    }
    if (rec) {
      if (rec == http::error::header_limit) {
        co_await write_reply(s,
                             error_reply(http::status::request_header_fields_too_large,
                                         "header_too_large", "the request header is too large"),
                             false, false);
      } else if (rec.category() == http::make_error_code(http::error::bad_target).category() &&
                 rec != http::error::end_of_stream && rec != http::error::partial_message) {
        co_await write_reply(s,
                             error_reply(http::status::bad_request, "bad_request",
                                         "malformed request: " + rec.message()),
                             false, false);
      }
      break;
    }
    s.busy = true;
    s.deadline = steady::time_point::max();
    auto& hdr = parser->get();
    bool head = hdr.method() == http::verb::head;
    if (const char* why = framing_error(hdr, parser->chunked())) {
      co_await write_reply(s, error_reply(http::status::bad_request, "bad_request", why), head,
                           false);
      break;
    }
    std::string_view t = hdr.target();
    auto qmark = t.find('?');
    if (qmark == std::string_view::npos && plain_path(t)) {
      ctx.path.assign(t);
      ctx.query.clear();
    } else if (qmark != std::string_view::npos && plain_path(t.substr(0, qmark)) &&
               split_plain_query(t.substr(qmark + 1), ctx.query)) {
      ctx.path.assign(t.substr(0, qmark));
    } else {
      ctx.query.clear();
      auto target = boost::urls::parse_origin_form(t);
      if (!target) {
        co_await write_reply(
            s, error_reply(http::status::bad_request, "bad_request", "malformed request target"),
            head, false);
        break;
      }
      ctx.path = std::string(target->encoded_path());
      for (auto p : target->params()) {
        ctx.query.emplace_back(p.key, p.value);
      }
    }
    const route_entry* r = match(hdr.method(), ctx.path, ctx.params, last_route);
    if (!r) {
      ctx.params.clear();
    }
    uint64_t limit = r ? r->body_limit : opts_.default_body_limit;
    if (auto cl = parser->content_length(); cl && *cl > limit) {
      co_await write_reply(s,
                           error_reply(http::status::payload_too_large, "too_large",
                                       fmt::format("the body is limited to {} bytes", limit)),
                           head, false);
      break;
    }
    if (!parser->is_done()) {
      parser->body_limit(limit);
      if (beast::iequals(hdr[http::field::expect], "100-continue")) {
        s.deadline = steady::now() + opts_.write_timeout;
        std::array<asio::const_buffer, 2> cont{
            asio::buffer(std::string_view("HTTP/1.1 100 Continue\r\n\r\n")), {}};
        auto cec = co_await write_rest(sock, cont, 0, 0, s.deadline, opts_.write_timeout);
        if (cec) {
          break;
        }
      }
      s.deadline = steady::now() + opts_.body_timeout;
      auto [bec, bn] = co_await http::async_read(sock, buf, *parser, use_tuple);
      s.deadline = steady::time_point::max();
      if (bec == http::error::body_limit) {
        co_await write_reply(s,
                             error_reply(http::status::payload_too_large, "too_large",
                                         fmt::format("the body is limited to {} bytes", limit)),
                             head, false);
        break;
      }
      if (bec) {
        if (bec.category() == http::make_error_code(http::error::bad_target).category() &&
            bec != http::error::partial_message && bec != http::error::end_of_stream) {
          co_await write_reply(s,
                               error_reply(http::status::bad_request, "bad_request",
                                           "malformed request body: " + bec.message()),
                               head, false);
        }
        break;  // cut short or timed out: nothing was handled
      }
    }
    ctx.req = parser->release();
    bool keep_alive = ctx.req.keep_alive();
    bool get = ctx.req.method() == http::verb::get || ctx.req.method() == http::verb::head;
    bool plain = r && !(get && (ctx.path == "/healthz" || ctx.path == "/metrics"));
    reply rep;
    if (plain) {
      try {
        rep = co_await r->h(ctx);
      } catch (const std::exception& e) {
        log::get("net")->error("{}: handler for {} threw: {}", name_, ctx.path, e.what());
        rep = error_reply(http::status::internal_server_error, "internal", e.what());
      }
    } else {
      rep = co_await builtin(ctx, r);
    }
    keep_alive = keep_alive && !rep.close && !stopping_;
    s.deadline = steady::now() + opts_.write_timeout;
    if (!start_reply(s, rep, head, keep_alive)) {
      bool sent = co_await finish_reply(s, std::move(rep), head);
      if (!sent) {
        break;
      }
    }
    if (!keep_alive) {
      break;
    }
  }
  sock.shutdown(tcp::socket::shutdown_send, ec);
  sock.close(ec);
  sessions_.erase(self);
}

asio::awaitable<void> http_server::stop(std::chrono::milliseconds drain) {
  stopping_ = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
  for (auto* s : sessions_) {
    if (!s->busy) {
      s->sock->cancel(ec);
    }
  }
  asio::steady_timer t(ex_);
  auto deadline = std::chrono::steady_clock::now() + drain;
  while (!sessions_.empty() && std::chrono::steady_clock::now() < deadline) {
    t.expires_after(std::chrono::milliseconds(10));
    co_await t.async_wait(use_tuple);
  }
  for (auto* s : sessions_) {
    s->sock->cancel(ec);
    s->sock->shutdown(tcp::socket::shutdown_both, ec);
  }
  while (!sessions_.empty()) {
    t.expires_after(std::chrono::milliseconds(5));
    co_await t.async_wait(use_tuple);
  }
  sweep_timer_.cancel();
  while (sweeping_) {
    t.expires_after(std::chrono::milliseconds(5));
    co_await t.async_wait(use_tuple);
  }
}

}  // namespace vodgrid::net
