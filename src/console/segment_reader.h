// A viewer's GETs of segment bodies from engines, read for throughput: the head parsed by Beast,
// then a body of known length read straight from the socket into the play's one read buffer and
// handed over while it is still in cache (hashed there), with no parser copy between.
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
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "base/result.h"

namespace vodgrid::console {

// The size of a play's read buffer: reads of up to this much cost less per byte than 64 KiB ones
// (docs/performance.md, "Console"), and one buffer serves every viewer of the thread.
inline constexpr size_t read_buffer_bytes = 256 * 1024;

struct segment_reader_options {
  std::chrono::milliseconds connect_timeout{2'000};
  std::chrono::milliseconds exchange_timeout{20'000};  // the whole GET: connect, write, read
  std::chrono::milliseconds read_timeout{4'000};       // no byte for this long: errc::timeout
  uint64_t max_body = 256ull << 20;                    // a longer reply is errc::too_large
  // https:// engines: the CA (PEM) their certificates must chain to, as net::client_options's
  // tls_ca: empty, net::default_tls_ca() (`vodgrid play --ca`), else the system's trust store
  // (SSL_CERT_FILE). The URL's host is checked against the certificate.
  std::filesystem::path tls_ca;
  // https://: idle connections kept, one per engine (origin), the least recently used dropped past
  // this: a viewer hopping between a station's engines goes back to one without a new handshake.
  // Plain http:// keeps only the last exchange's connection (a connect costs one round trip).
  size_t max_idle_tls = 4;
};

// One viewer's reader. It keeps the connection of its last complete exchange (keep-alive) and
// reuses it for the next GET to the same origin; over TLS, one per origin (max_idle_tls), and the
// TLS session of each origin, offered again (resumed: no full handshake) when a connection to it
// must be made afresh; a new origin is offered the last session made, which the engines of the
// station that made it resume (they share ticket keys): one full handshake per station.
// Threading: the reader and every reader sharing its buffer run on one thread (the play's
// io_context). The buffer is written only between a wake-up and the next suspension, and each
// piece is handed to `on_piece` before the reader suspends again, so readers of one thread may
// share it.
class segment_reader {
 public:
  segment_reader(boost::asio::any_io_executor ex, segment_reader_options opts,
                 std::span<char> buffer);
  ~segment_reader();
  segment_reader(const segment_reader&) = delete;
  segment_reader& operator=(const segment_reader&) = delete;

  // GET `url` (http:// or https://host:port/path). `on_head` sees the status and returns whether to
  // read the body (if not, the connection is dropped with it); `on_piece` sees each piece of the
  // body in order, valid only during the call. Returns the status once the body is read whole.
  // Errors: errc::unavailable (connect failed, the peer closed early, a TLS peer refused: its
  // certificate not verified, with the verification's reason), errc::timeout,
  // errc::too_large, errc::protocol_error (a malformed reply), errc::invalid_argument (the URL).
  boost::asio::awaitable<result<unsigned>> get(std::string url,
                                               std::function<bool(unsigned status)> on_head,
                                               std::function<void(std::string_view)> on_piece);

 private:
  struct connection;
  struct watchdog;
  struct session_ref;
  boost::asio::awaitable<result<std::unique_ptr<connection>>> connect(std::string origin,
                                                                      std::string host,
                                                                      uint16_t port, bool tls);
  boost::asio::awaitable<status> handshake(connection& c, const std::string& host);
  std::unique_ptr<connection> take_idle(const std::string& origin);
  void keep_idle(std::unique_ptr<connection> c);
  boost::asio::any_io_executor ex_;
  segment_reader_options opts_;
  std::span<char> buffer_;
  // Connections kept alive, the most recently used last: the last exchange's (http://), or one per
  // origin (https://).
  std::vector<std::unique_ptr<connection>> idle_;
  std::map<std::string, std::shared_ptr<session_ref>> sessions_;  // by origin: TLS sessions
  std::shared_ptr<session_ref> last_session_;  // the most recent of them, offered to a new origin
  std::shared_ptr<watchdog> watchdog_;
};

}  // namespace vodgrid::console
