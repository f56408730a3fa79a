// The HTTP/1.1 client daemons and consoles use to talk to each other: keep-alive connections pooled
// per host, a deadline on every exchange, a size limit on every reply, no redirect following (the
// console wants to see the director's 302s). https:// URLs go over TLS 1.2/1.3, the peer verified
// against `client_options::tls_ca` (else the system's trust store) and the URL's host.
// Threading: one client belongs to one executor; do not share it across threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/verb.hpp>

#include "base/result.h"

namespace vodgrid::net {

struct client_options {
  std::chrono::milliseconds connect_timeout{3'000};
  std::chrono::milliseconds request_timeout{30'000};  // whole exchange: write + read
  // No byte read for this long ends the exchange with errc::timeout: a peer that hangs (stopped,
  // or its host gone) is given up on long before request_timeout. The request itself is written
  // within request_timeout.
  std::chrono::milliseconds read_timeout{15'000};
  uint64_t max_body = 256ull << 20;  // larger replies are cut with errc::too_large
  size_t max_idle_per_host = 16;
  // When set and it returns a token, every request without an Authorization header of its own
  // carries "Authorization: Bearer <token>": how a daemon presents its service token.
  std::function<std::string()> bearer;
  // The CA (PEM) an https:// peer's certificate must chain to ([tls] ca); empty: the system's
  // trust store (OpenSSL's default paths, which SSL_CERT_FILE overrides). A peer that fails the
  // check (unknown issuer, another host's name, expired) is refused with errc::unavailable and one
  // log line naming it and the reason.
  std::filesystem::path tls_ca;
};

struct client_response {
  unsigned status = 0;
  std::string body;
  boost::beast::http::fields headers;
  std::string header(std::string_view name) const;
};

struct parsed_url {
  std::string host;
  uint16_t port = 80;
  std::string target;          // path and query, at least "/"
  bool tls = false;            // https://
  std::string origin() const;  // "http://host:port" or "https://host:port"
};
// http:// and https:// URLs with an explicit or default port (80, 443); errc::invalid_argument
// otherwise.
result<parsed_url> parse_http_url(std::string_view url);
// Resolves `ref` (absolute, absolute-path or relative) against `base`, as a browser would.
result<std::string> resolve_url(std::string_view base, std::string_view ref);

class http_client {
 public:
  // The options by reference, and no default argument: callers write `http_client c(co_await
  // this_coro::executor, opts)`, and GCC 12 copies a temporary of such a full-expression into the
  // coroutine frame bit by bit, which breaks a std::string's (a path's) pointer to its own buffer.
  explicit http_client(boost::asio::any_io_executor ex);
  http_client(boost::asio::any_io_executor ex, const client_options& opts);
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  using header_list = std::vector<std::pair<std::string, std::string>>;
  // One exchange. A transport failure on a pooled connection is retried once on a fresh one.
  // Errors: errc::unavailable (connect failed), errc::timeout, errc::too_large,
  // errc::protocol_error (a malformed reply). An HTTP error status is not an error here.
  boost::asio::awaitable<result<client_response>> request(boost::beast::http::verb method,
                                                          std::string url, std::string body = {},
                                                          header_list headers = {});
  boost::asio::awaitable<result<client_response>> get(std::string url) {
    return request(boost::beast::http::verb::get, std::move(url));
  }
  // POST/PUT a JSON body with Content-Type application/json.
  boost::asio::awaitable<result<client_response>> send_json(boost::beast::http::verb method,
                                                            std::string url, std::string json);

  // A GET whose body is read straight into memory the caller owns, as it arrives. `on_head` sees
  // the status and headers and returns where the body goes, or an error to leave the body unread
  // (the reply is then returned without it); `on_data` is called after every read with the number
  // of body bytes written so far. A body longer than the place given is errc::too_large.
  struct body_sink {
    std::function<result<std::span<char>>(const client_response& head)> on_head;
    std::function<void(size_t written)> on_data;
  };
  boost::asio::awaitable<result<client_response>> get_into(std::string url, header_list headers,
                                                           body_sink sink);

  // A GET whose body is handed over piece by piece as it arrives, through a buffer of `window`
  // bytes reused for every piece: for a body looked at once (hashed, counted) and never held whole,
  // so that memory stays a window per exchange however large the body. `on_head` sees the status
  // and headers and returns whether to read the body (if not, the reply is returned without it);
  // `on_piece` sees each piece in order, valid only during the call.
  struct piece_sink {
    std::function<bool(const client_response& head)> on_head;
    std::function<void(std::string_view piece)> on_piece;
    size_t window = 64 * 1024;
  };
  boost::asio::awaitable<result<client_response>> get_pieces(std::string url, header_list headers,
                                                             piece_sink sink);

  const client_options& options() const { return opts_; }

 private:
  struct pool;
  // A GET sent and its reply's head read, the body not yet: what get_into and get_pieces read on.
  struct open_reply;
  boost::asio::awaitable<result<std::unique_ptr<open_reply>>> open_get(const std::string& url,
                                                                       const header_list& headers);
  boost::asio::any_io_executor ex_;
  client_options opts_;
  std::unique_ptr<pool> pool_;
};

}  // namespace vodgrid::net
