// Replies: errors as JSON, the head written by hand, small bodies in one send, files with
// sendfile(2) (what is not in the page cache read into it off the loop), growing bodies from their
// files as they arrive.
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <boost/json/serialize.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <functional>
#include <memory>
#include <mutex>
#include <span>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "net/run_on.h"
#include "net/server_internal.h"

namespace vodgrid::net {

namespace json = boost::json;

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

namespace {

// --- Files not in the page cache ----------------------------------------------------------------
// sendfile(2) on a page-cache miss blocks the thread until the disk answers, and with it every
// console of the loop. Before sending, the range is looked up with cachestat(2) (Linux 6.5, one
// system call that counts the range's pages in the cache, no copy): resident, it goes with sendfile
// from the loop as it always did; not, that sendfile call (at most load_chunk bytes, and no more
// than the non-blocking socket takes) is made on disk_pool instead, where it may wait on the disk,
// while the coroutine and so the socket wait for it; then the loop looks again. Zero copy either
// way, as nginx's `aio threads` with sendfile. Chosen over reading the range into the cache on the
// pool (a copy to user space per byte: measured, its CPU starved the loop on a shared core), over
// io_uring, which has no sendfile (a splice through a pipe per connection instead, and a ring per
// loop), and over preadv2(RWF_NOWAIT), which can only tell by copying the bytes out. Pages of the
// kernel's readahead count as cached while their read is in flight, so a sendfile from the loop
// may wait for a read already under way, never for one not yet started.

constexpr uint64_t load_chunk = 2 << 20;  // bytes a sendfile on the pool may send at most
constexpr int disk_threads = 32;  // sendfiles waiting on the disk at once, process-wide (nginx's)

std::atomic<uint64_t> loads_total{0};
std::mutex hook_mu;
std::function<void()> load_hook;  // guarded by hook_mu; tests only

asio::thread_pool& disk_pool() {
  static asio::thread_pool pool(disk_threads);
  return pool;
}

struct cachestat_range {
  uint64_t off;
  uint64_t len;
};
struct cachestat_counts {
  uint64_t nr_cache;
  uint64_t nr_dirty;
  uint64_t nr_writeback;
  uint64_t nr_evicted;
  uint64_t nr_recently_evicted;
};
#ifndef SYS_cachestat
constexpr long sys_cachestat = 451;  // the same number on every architecture
#else
constexpr long sys_cachestat = SYS_cachestat;
#endif

// Whether every page of [off, off + len) is in the page cache. A kernel without cachestat, or a
// file it does not know, answers yes: sendfile from the loop, as before.
bool resident(int fd, uint64_t off, uint64_t len) {
  static std::atomic<bool> unsupported{false};
  if (len == 0 || unsupported.load(std::memory_order_relaxed)) {
    return true;
  }
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  uint64_t first = off / page * page;
  uint64_t pages = (off + len - first + page - 1) / page;
  cachestat_range r{first, pages * page};
  cachestat_counts c{};
  if (::syscall(sys_cachestat, fd, &r, &c, 0) != 0) {
    if (errno == ENOSYS) {
      unsupported.store(true, std::memory_order_relaxed);
    }
    return true;
  }
  return c.nr_cache >= pages;
}

// On the pool: one sendfile of up to `len` bytes from `off`. Returns the bytes sent, or -errno.
int64_t sendfile_on_pool(int sock, int fd, uint64_t off, uint64_t len) {
  {
    std::function<void()> hook;
    {
      std::lock_guard lock(hook_mu);
      hook = load_hook;
    }
    if (hook) {
      hook();
    }
  }
  loads_total.fetch_add(1, std::memory_order_relaxed);
  for (;;) {
    off_t o = static_cast<off_t>(off);
    ssize_t n = ::sendfile(sock, fd, &o, len);
    if (n >= 0) {
      return n;
    }
    if (errno != EINTR) {
      return -errno;
    }
  }
}

// Sends [offset, offset + length) of `fd` with sendfile(2) on the non-blocking socket, waiting for
// writability when the socket buffer is full; `deadline` is pushed back by `timeout` before each
// wait (sweep_loop cuts the wait when it passes). What is not in the page cache is sent from the
// pool (above). Returns the error, or none when every byte is sent.
asio::awaitable<boost::system::error_code> send_file(tcp::socket& sock, int fd, uint64_t offset,
                                                     uint64_t length, steady::time_point& deadline,
                                                     std::chrono::milliseconds timeout,
                                                     uint64_t& sent) {
  uint64_t pos = offset;
  uint64_t end = offset + length;
  // Bytes before `ready` were found in the cache. The whole range is looked up once; after a miss
  // it goes chunk by chunk, each looked up on its turn.
  uint64_t ready = resident(fd, offset, length) ? end : offset;
  while (pos < end) {
    int64_t n = 0;  // bytes sent, or -errno
    if (pos >= ready && !resident(fd, pos, std::min(end - pos, load_chunk))) {
      deadline = steady::time_point::max();  // the disk's time, not the console's
      int sockfd = sock.native_handle();
      uint64_t len = std::min(end - pos, load_chunk);
      auto r = co_await run_on(disk_pool(), [sockfd, fd, pos, len] {
        return result<int64_t>(sendfile_on_pool(sockfd, fd, pos, len));
      });
      deadline = steady::now() + timeout;
      n = r ? *r : -EIO;
    } else {
      if (pos >= ready) {
        ready = pos + std::min(end - pos, load_chunk);
      }
      off_t off = static_cast<off_t>(pos);
      ssize_t k =
          ::sendfile(sock.native_handle(), fd, &off, std::min<uint64_t>(ready - pos, 1u << 30));
      n = k >= 0 ? k : -errno;
    }
    if (n > 0) {
      pos += static_cast<uint64_t>(n);
      sent += static_cast<uint64_t>(n);
      continue;
    }
    if (n == 0) {
      co_return make_error_code(asio::error::eof);  // the file is shorter than promised
    }
    if (n == -EINTR) {
      continue;
    }
    if (n != -EAGAIN) {
      co_return boost::system::error_code(static_cast<int>(-n), boost::system::system_category());
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

}  // namespace

uint64_t file_loads_off_loop() {
  return loads_total.load(std::memory_order_relaxed);
}

void set_file_load_hook(std::function<void()> hook) {
  std::lock_guard lock(hook_mu);
  load_hook = std::move(hook);
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
  if (!r.location.empty()) {
    h += "Location: "sv;
    h += r.location;
    h += "\r\n"sv;
  }
  if (r.no_store) {
    h += "Cache-Control: no-store\r\n"sv;
  }
  for (auto& [k, v] : r.headers) {
    h += k;
    h += ": "sv;
    h += v;
    h += "\r\n"sv;
  }
  h += s.cors;
  h += "Content-Length: "sv;
  append_number(h, r.file ? r.file->length : r.stream ? r.stream->length : r.body.size());
  h += keep_alive ? "\r\n\r\n"sv : "\r\nConnection: close\r\n\r\n"sv;
  if ((r.file || r.stream) && !head) {
    return false;  // finish_reply sends the head and the file or stream
  }
  if (s.tls) {
    // Through TLS nothing goes without awaiting: finish_reply sends the head with the body.
    if (!head) {
      h += r.body;
      bytes_sent_->inc(static_cast<double>(r.body.size()));
    }
    return false;
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
  // A growing body is the home loop's: another loop does not ask it (the head goes alone).
  int flags =
      (file && r.file->length > 0) || (r.stream && !head && r.stream->length > 0 && s.on->home &&
                                       r.stream->body->available() > r.stream->offset)
          ? MSG_MORE
          : 0;  // the head leaves with the file's start
  std::array<asio::const_buffer, 2> rest{asio::buffer(s.head), asio::const_buffer()};
  auto ec = co_await write_out(s, rest, flags);
  // A reply's owners go back to the home loop to be released (release_on_home).
  auto done = [&](bool ok) {
    release_on_home(s, r);
    return ok;
  };
  if (ec) {
    co_return done(false);
  }
  if (file) {
    uint64_t sent = 0;
    auto fec = s.tls ? co_await send_file_tls(s, r.file->fd, r.file->offset, r.file->length, sent)
                     : co_await send_file(*s.sock, r.file->fd, r.file->offset, r.file->length,
                                          s.deadline, opts_.write_timeout, sent);
    bytes_sent_->inc(static_cast<double>(sent));
    file_bytes_sent_->inc(static_cast<double>(sent));
    if (fec) {
      co_return done(false);
    }
  }
  if (r.stream && !head) {
    bool sent = co_await send_stream(s, *r.stream);
    co_return done(sent);
  }
  co_return done(true);
}

namespace {

// What a connection of another loop needs of a growing body, read on the home loop (the body's).
struct body_view {
  uint64_t available = 0;
  int fd = -1;
};
asio::awaitable<body_view> view_of(std::shared_ptr<growing_body> b,
                                   std::optional<uint64_t> beyond) {
  if (beyond) {
    co_await b->wait_beyond(*beyond);
  }
  co_return body_view{b->available(), b->fd()};
}

// The body's state, once more than `beyond` bytes are available (or it failed) when given: asked
// directly on the home loop, else on the home loop through `home`.
asio::awaitable<body_view> look(bool on_home, asio::any_io_executor home,
                                const std::shared_ptr<growing_body>& b,
                                std::optional<uint64_t> beyond) {
  if (on_home) {
    if (beyond) {
      co_await b->wait_beyond(*beyond);
    }
    co_return body_view{b->available(), b->fd()};
  }
  co_return co_await asio::co_spawn(home, view_of(b, beyond), asio::use_awaitable);
}

}  // namespace

// Sends a slice of a growing body as its bytes arrive, from its file as file bodies go (what is not
// in the page cache read into it off the loop). While it waits for them the write deadline is held
// off: how long a body takes to arrive is its producer's business (an engine's copy has its own
// timeout), and the connection ends when the body fails.
asio::awaitable<bool> http_server::send_stream(session& s, const stream_slice& st) {
  uint64_t pos = st.offset;
  uint64_t end = st.offset + st.length;
  while (pos < end) {
    auto v = co_await look(s.on->home, ex_, st.body, std::nullopt);
    if (v.available <= pos) {
      s.deadline = steady::time_point::max();
      v = co_await look(s.on->home, ex_, st.body, pos);
      if (stopping_) {
        co_return false;
      }
      if (v.available <= pos) {
        co_return false;  // the body failed: the console sees a short reply and asks again
      }
      s.deadline = steady::now() + opts_.write_timeout;
    }
    uint64_t n = std::min(end, v.available) - pos;
    uint64_t sent = 0;
    boost::system::error_code ec;
    if (s.tls) {
      ec = co_await send_file_tls(s, v.fd, pos, n, sent);
    } else {
      ec = co_await send_file(*s.sock, v.fd, pos, n, s.deadline, opts_.write_timeout, sent);
    }
    bytes_sent_->inc(static_cast<double>(sent));
    stream_bytes_sent_->inc(static_cast<double>(sent));
    if (ec) {
      co_return false;
    }
    pos += n;
  }
  co_return true;
}

// A plain connection's writes go straight to the socket (write_rest); a TLS connection's through
// its stream, whose write completes once OpenSSL has handed every record to the socket.
asio::awaitable<boost::system::error_code> http_server::write_out(
    session& s, std::array<asio::const_buffer, 2> parts, int flags) {
  if (!s.tls) {
    co_return co_await write_rest(*s.sock, parts, 0, flags, s.deadline, opts_.write_timeout);
  }
  s.deadline = steady::now() + opts_.write_timeout;
  auto [ec, n] = co_await s.tls->write(parts);
  co_return ec;
}

// Without kernel TLS, sendfile cannot encrypt: the slice is read into a buffer of the connection
// (tls_chunk bytes at a time, so that a segment never sits whole in memory) and written through
// the stream, each chunk with its own write deadline. A chunk not in the page cache is read on the
// disk threads, as send_file's sendfile would be, so that a cold disk never stalls the loop.
asio::awaitable<boost::system::error_code> http_server::send_file_tls(session& s, int fd,
                                                                      uint64_t offset,
                                                                      uint64_t length,
                                                                      uint64_t& sent) {
  constexpr size_t tls_chunk = 64 * 1024;
  std::unique_ptr<char[]> chunk(new char[tls_chunk]);
  uint64_t pos = offset;
  uint64_t end = offset + length;
  while (pos < end) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(end - pos, tls_chunk));
    char* into = chunk.get();
    auto read = [fd, into, want, pos]() -> int64_t {
      for (;;) {
        ssize_t k = ::pread(fd, into, want, static_cast<off_t>(pos));
        if (k >= 0 || errno != EINTR) {
          return k >= 0 ? k : -errno;
        }
      }
    };
    int64_t n = 0;
    if (resident(fd, pos, want)) {
      n = read();
    } else {
      s.deadline = steady::time_point::max();  // the disk's time, not the console's
      loads_total.fetch_add(1, std::memory_order_relaxed);
      auto r = co_await run_on(disk_pool(), [&read] { return result<int64_t>(read()); });
      n = r ? *r : -EIO;
    }
    if (n == 0) {
      co_return make_error_code(asio::error::eof);  // the file is shorter than promised
    }
    if (n < 0) {
      co_return boost::system::error_code(static_cast<int>(-n), boost::system::system_category());
    }
    s.deadline = steady::now() + opts_.write_timeout;
    auto [ec, w] = co_await s.tls->write(asio::buffer(into, static_cast<size_t>(n)));
    sent += w;
    if (ec) {
      co_return ec;
    }
    pos += static_cast<uint64_t>(n);
  }
  co_return boost::system::error_code{};
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

}  // namespace vodgrid::net
