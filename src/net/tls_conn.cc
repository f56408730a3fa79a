#include "net/tls_conn.h"

#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/err.h>

#include <algorithm>
#include <cerrno>

#include <boost/asio/ssl/error.hpp>

#include "net/use_tuple.h"

namespace vodgrid::net {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;

namespace {

// The BIO OpenSSL reads and writes the socket through: BIO_s_socket's job, with send's
// MSG_NOSIGNAL (a peer gone must not raise SIGPIPE in a process that does not ignore it) and the
// outcome of the last call kept (errno is not reliable once OpenSSL has returned: an end of stream
// sets none). Its data is the connection's `tls_conn_io`.
using io_state = tls_conn_io;

int bio_write(BIO* b, const char* data, int len) {
  BIO_clear_retry_flags(b);
  auto* st = static_cast<io_state*>(BIO_get_data(b));
  for (;;) {
    ssize_t n = ::send(st->fd, data, static_cast<size_t>(len), MSG_NOSIGNAL);
    if (n >= 0) {
      return static_cast<int>(n);
    }
    if (errno == EINTR) {
      continue;
    }
    st->error = errno;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      BIO_set_retry_write(b);
    }
    return -1;
  }
}

int bio_read(BIO* b, char* out, int len) {
  BIO_clear_retry_flags(b);
  auto* st = static_cast<io_state*>(BIO_get_data(b));
  for (;;) {
    ssize_t n = ::recv(st->fd, out, static_cast<size_t>(len), 0);
    if (n > 0) {
      return static_cast<int>(n);
    }
    if (n == 0) {
      st->error = 0;
      return 0;
    }
    if (errno == EINTR) {
      continue;
    }
    st->error = errno;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      BIO_set_retry_read(b);
    }
    return -1;
  }
}

long bio_ctrl(BIO*, int cmd, long, void*) {
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;  // nothing is buffered here
}

const BIO_METHOD* socket_method() {
  static BIO_METHOD* const m = [] {
    BIO_METHOD* made =
        BIO_meth_new(BIO_TYPE_SOURCE_SINK | BIO_get_new_index(), "vodgrid server socket");
    if (made) {
      BIO_meth_set_write(made, bio_write);
      BIO_meth_set_read(made, bio_read);
      BIO_meth_set_ctrl(made, bio_ctrl);
    }
    return made;
  }();
  return m;
}

tcp::socket::wait_type direction(bool read) {
  return read ? tcp::socket::wait_read : tcp::socket::wait_write;
}

}  // namespace

tls_conn::tls_conn(tcp::socket& sock, SSL_CTX* ctx) : sock_(sock) {
  const BIO_METHOD* method = socket_method();
  BIO* bio = method ? BIO_new(method) : nullptr;
  ssl_ = bio ? SSL_new(ctx) : nullptr;
  if (!ssl_) {
    BIO_free(bio);
    return;  // handshake() fails
  }
  io_.fd = sock.native_handle();
  BIO_set_data(bio, &io_);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_, bio, bio);
  SSL_set_accept_state(ssl_);
  // What nginx sets: idle connections hold no record buffers; several records taken per recv.
  SSL_set_mode(ssl_, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_set_read_ahead(ssl_, 1);
}

tls_conn::~tls_conn() {
  SSL_free(ssl_);  // frees the BIO
}

tls_conn::next tls_conn::after(int ret, error_code& ec) {
  int e = SSL_get_error(ssl_, ret);
  if (e == SSL_ERROR_WANT_READ) {
    return next::wait_read;
  }
  if (e == SSL_ERROR_WANT_WRITE) {
    return next::wait_write;
  }
  if (e == SSL_ERROR_ZERO_RETURN) {
    ec = asio::error::eof;  // the peer's close_notify
  } else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
    ec = io_.error ? error_code(io_.error, boost::system::system_category())
                   : error_code(asio::ssl::error::stream_truncated);
  } else {
    unsigned long code = ERR_get_error();  // the first, as Asio's stream reports it
    if (ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      ec = asio::ssl::error::stream_truncated;  // the end of the stream without close_notify
    } else if (code != 0) {
      ec = error_code(static_cast<int>(code), asio::error::get_ssl_category());
    } else {
      ec = asio::ssl::error::unspecified_system_error;
    }
  }
  ERR_clear_error();
  return next::failed;
}

asio::awaitable<error_code> tls_conn::handshake() {
  if (!ssl_) {
    co_return make_error_code(boost::system::errc::not_enough_memory);
  }
  for (;;) {
    ERR_clear_error();
    int r = SSL_do_handshake(ssl_);
    if (r == 1) {
      co_return error_code{};
    }
    error_code ec;
    next n = after(r, ec);
    if (n == next::failed) {
      co_return ec;
    }
    auto [wec] = co_await sock_.async_wait(direction(n == next::wait_read), use_tuple);
    if (wec) {
      co_return wec;
    }
  }
}

asio::awaitable<tls_conn::io_result> tls_conn::read_some(asio::mutable_buffer b) {
  for (;;) {
    ERR_clear_error();
    size_t got = 0;
    int r = SSL_read_ex(ssl_, b.data(), b.size(), &got);
    if (r == 1) {
      co_return io_result{error_code{}, got};
    }
    error_code ec;
    next n = after(r, ec);
    if (n == next::failed) {
      co_return io_result{ec, 0};
    }
    auto [wec] = co_await sock_.async_wait(direction(n == next::wait_read), use_tuple);
    if (wec) {
      co_return io_result{wec, 0};
    }
  }
}

asio::awaitable<tls_conn::io_result> tls_conn::write_one(const char* data, size_t size) {
  for (;;) {
    ERR_clear_error();
    size_t put = 0;
    // Without SSL_MODE_ENABLE_PARTIAL_WRITE: done once all of it is written, else retried with
    // the same bytes.
    int r = SSL_write_ex(ssl_, data, size, &put);
    if (r == 1) {
      co_return io_result{error_code{}, put};
    }
    error_code ec;
    next n = after(r, ec);
    if (n == next::failed) {
      co_return io_result{ec, 0};
    }
    auto [wec] = co_await sock_.async_wait(direction(n == next::wait_read), use_tuple);
    if (wec) {
      co_return io_result{wec, 0};
    }
  }
}

asio::awaitable<tls_conn::io_result> tls_conn::write(std::array<asio::const_buffer, 2> parts) {
  constexpr size_t one_record = 16 * 1024;
  if (parts[0].size() > 0 && parts[1].size() > 0 &&
      parts[0].size() + parts[1].size() <= one_record) {
    joined_.assign(static_cast<const char*>(parts[0].data()), parts[0].size());
    joined_.append(static_cast<const char*>(parts[1].data()), parts[1].size());
    co_return co_await write_one(joined_.data(), joined_.size());
  }
  size_t total = 0;
  for (auto& p : parts) {
    if (p.size() == 0) {
      continue;
    }
    auto [ec, n] = co_await write_one(static_cast<const char*>(p.data()), p.size());
    total += n;
    if (ec) {
      co_return io_result{ec, total};
    }
  }
  co_return io_result{error_code{}, total};
}

asio::awaitable<error_code> tls_conn::shutdown() {
  for (;;) {
    ERR_clear_error();
    int r = SSL_shutdown(ssl_);
    if (r >= 0) {
      co_return error_code{};  // ours is written (1: the peer's marked received too)
    }
    error_code ec;
    next n = after(r, ec);
    if (n == next::failed) {
      co_return ec;
    }
    auto [wec] = co_await sock_.async_wait(direction(n == next::wait_read), use_tuple);
    if (wec) {
      co_return wec;
    }
  }
}

}  // namespace vodgrid::net
