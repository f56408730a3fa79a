// What the server's files share and nothing else sees: a connection's session and the
// non-blocking write loop used by replies and by the "100 Continue" of a body read.
#pragma once

#include <array>
#include <chrono>
#include <list>
#include <memory>
#include <string>

#include <optional>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>

#include "net/http.h"
#include "net/tls_conn.h"
#include "net/use_tuple.h"

namespace vodgrid::net {

using steady = std::chrono::steady_clock;

struct http_server::session {
  tcp::socket* sock = nullptr;
  // On a TLS port: the TLS over `sock` every read and write goes through (tls_conn.h), and the
  // context it took (kept while it lives, whatever a reload swaps in); null on a plain port.
  std::unique_ptr<tls_conn> tls;
  std::shared_ptr<asio::ssl::context> tls_ctx;
  loop* on = nullptr;  // the loop serving the connection (its thread runs this coroutine)
  std::list<session*>::iterator self;  // its place in on->sessions (enlist)
  bool busy = false;      // a request is being handled; idle sessions are cut first at stop
  bool sniffing = false;  // the first request line is read before the parser sees it (foreign_)
  // When the socket operation in progress must have completed (checked by sweep_loop);
  // time_point::max() while the handler runs.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  std::string head;  // the reply's status line and header fields, reused from reply to reply
  std::string cors;  // the CORS lines of the reply in progress (cors_lines), "" when none
  boost::beast::flat_buffer buf;  // what was read of the socket and not yet parsed
  std::optional<http::request_parser<http::string_body>> parser;  // the request being read
  request_context ctx;  // reused from request to request: its strings keep their capacity
};

// The CORS lines of every viewer answer when `o` allows any origin, else "" (cors.cc).
std::string cors_any_lines(const cors_options& o);

// Writes `parts` (consumed as they are sent) with `flags`: at once if the socket takes them, else
// waiting for writability, `deadline` pushed back by `timeout` before each wait.
asio::awaitable<boost::system::error_code> write_rest(tcp::socket& sock,
                                                      std::array<asio::const_buffer, 2> parts,
                                                      size_t first, int flags,
                                                      steady::time_point& deadline,
                                                      std::chrono::milliseconds timeout);

}  // namespace vodgrid::net
