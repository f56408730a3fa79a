// A server connection's TLS (issue 17): OpenSSL reads and writes the connection's non-blocking
// socket itself, through a BIO over its descriptor, as nginx does; when OpenSSL wants to read or
// write and the socket is not ready, the coroutine waits for the socket (async_wait) and calls
// OpenSSL again. It replaces Asio's ssl::stream on the server side, which runs OpenSSL over a BIO
// pair and per connection allocates and zeroes two 17 KiB buffers, makes the pair's two buffers and
// composes each handshake, read, write and shutdown of several Asio operations: a resumed TLS 1.2
// connection cost about a fifth more CPU through it (docs/performance.md, "New connections
// resuming across two engines"). Not a general Asio stream: the server's own coroutines use it.
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <string>
#include <tuple>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

namespace vodgrid::net {

// What the connection's BIO works on: the socket's descriptor, and errno of its last failed send
// or recv (0 after an end of stream).
struct tls_conn_io {
  int fd = -1;
  int error = 0;
};

// One read and one write may be awaited at once (OpenSSL allows a read and a write interleaved on
// one thread), never two of the same kind, and only on the thread of the socket's loop. Errors are
// those Asio's stream gives: asio::error::eof at the peer's close_notify,
// asio::ssl::error::stream_truncated at an end without it, OpenSSL's own error in
// asio::error::get_ssl_category(), a system error of the socket, operation_aborted when the
// socket's wait is cancelled (the server's deadline sweep).
class tls_conn {
 public:
  using io_result = std::tuple<boost::system::error_code, size_t>;
  // The socket must stay open, and non-blocking, while this lives.
  tls_conn(boost::asio::ip::tcp::socket& sock, SSL_CTX* ctx);
  ~tls_conn();
  tls_conn(const tls_conn&) = delete;
  tls_conn& operator=(const tls_conn&) = delete;

  SSL* native_handle() const { return ssl_; }
  // The server's side of the handshake.
  boost::asio::awaitable<boost::system::error_code> handshake();
  // At least one byte into `b` (not empty), or an error.
  boost::asio::awaitable<io_result> read_some(boost::asio::mutable_buffer b);
  // All of `parts`, or an error; two parts of 16 KiB or less together go as one record.
  boost::asio::awaitable<io_result> write(std::array<boost::asio::const_buffer, 2> parts);
  boost::asio::awaitable<io_result> write(boost::asio::const_buffer b) {
    return write(std::array<boost::asio::const_buffer, 2>{b, {}});
  }
  // Sends close_notify (once written, done: the peer's is not awaited when the caller has marked
  // it received with SSL_set_shutdown).
  boost::asio::awaitable<boost::system::error_code> shutdown();

 private:
  enum class next { done, wait_read, wait_write, failed };
  // What to do after an OpenSSL call that returned `ret` (<= 0); sets `ec` when failed.
  next after(int ret, boost::system::error_code& ec);
  boost::asio::awaitable<io_result> write_one(const char* data, size_t size);

  boost::asio::ip::tcp::socket& sock_;
  tls_conn_io io_;
  SSL* ssl_ = nullptr;
  std::string joined_;  // two parts of a write joined into one record (reused)
};

}  // namespace vodgrid::net
