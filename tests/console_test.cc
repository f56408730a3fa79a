// The HTTP console (issue 15): segment bodies streamed in bounded pieces and hashed as they arrive
// (a corrupt one still caught), viewers over several threads whose merged report matches what the
// server saw, and `vodgrid play --threads` refused when bad. Against a small station in-process: a
// "director" that answers the playlist, the manifest and 302s, and an "engine" serving the bytes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/parse.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "api/api.h"
#include "api/hls.h"
#include "console/limits.h"
#include "console/player.h"
#include "console/segment_reader.h"
#include "net/client.h"
#include "net/http.h"
#include "support/support.h"

namespace vodgrid::console {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

// Deterministic bytes, different for every segment and offset.
std::string segment_bytes(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (char& c : s) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

// What the station serves and what it saw; the counters are written on the server's thread.
struct station_state {
  api::program_manifest manifest;
  std::vector<std::string> segments;
  std::optional<size_t> corrupt;              // this segment is served with one byte changed:
  size_t corrupt_offset = std::string::npos;  // this one (npos: its last)
  std::map<size_t, std::chrono::milliseconds> delays;  // these segments answer this late
  std::atomic<uint64_t> redirects{0};
  std::atomic<uint64_t> segment_gets{0};
  std::atomic<uint64_t> bytes_sent{0};
};

class fake_station {
 public:
  // `count` segments of `size` bytes, `seconds` each, of program "film", served under any program
  // id; the catalog lists "film" and "trailer" to play (and a withdrawn program and a rendition).
  fake_station(size_t count, size_t size, double seconds = 4) {
    st_->manifest.id = *program_id::parse("film");
    st_->manifest.title = "Film";
    st_->manifest.state = "ready";
    for (size_t i = 0; i < count; ++i) {
      st_->segments.push_back(segment_bytes(size, static_cast<uint32_t>(i)));
      api::segment_entry e;
      e.index.v = static_cast<uint32_t>(i);
      e.duration = seconds;
      e.size = size;
      e.sha256 = sha256(st_->segments.back());
      st_->manifest.segments.push_back(e);
    }
    server_.emplace(io_.get_executor(), "fake-station");
    auto st = st_;
    server_->route(http::verb::get, "/v1/programs/{}/index.m3u8",
                   [st](net::request_context&) -> asio::awaitable<net::reply> {
                     net::reply r;
                     r.content_type = "application/vnd.apple.mpegurl";
                     r.body = api::write_vod_playlist(st->manifest, "");
                     co_return r;
                   });
    server_->route(http::verb::get, "/v1/programs",
                   [](net::request_context&) -> asio::awaitable<net::reply> {
                     co_return net::json_reply(boost::json::parse(
                         R"({"programs":[{"id":"film","state":"ready","availability":"published"},
                             {"id":"gone","state":"ready","availability":"withdrawn"},
                             {"id":"film--360p","state":"ready","availability":"published"},
                             {"id":"trailer","state":"ready","availability":"published"}]})"));
                   });
    server_->route(http::verb::get, "/v1/programs/{}",
                   [st](net::request_context&) -> asio::awaitable<net::reply> {
                     co_return net::json_reply(api::to_json(st->manifest));
                   });
    server_->route(http::verb::get, "/v1/programs/{}/segments/{}.ts",
                   [st](net::request_context& c) -> asio::awaitable<net::reply> {
                     ++st->redirects;
                     net::reply r;
                     r.status = http::status::found;
                     r.headers.emplace_back("Location", "/engine/" + c.params[1] + ".ts");
                     co_return r;
                   });
    server_->route(http::verb::get, "/engine/{}.ts",
                   [st](net::request_context& c) -> asio::awaitable<net::reply> {
                     auto n = segment_index::parse(c.params[0]);
                     if (!n || n->v >= st->segments.size()) {
                       co_return net::error_reply(http::status::not_found, "not_found", "none");
                     }
                     ++st->segment_gets;
                     if (auto d = st->delays.find(n->v); d != st->delays.end()) {
                       asio::steady_timer t(co_await asio::this_coro::executor, d->second);
                       co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
                     }
                     net::reply r;
                     r.content_type = "video/mp2t";
                     r.body = st->segments[n->v];
                     if (st->corrupt == n->v) {
                       char& c = st->corrupt_offset < r.body.size() ? r.body[st->corrupt_offset]
                                                                    : r.body.back();
                       c = static_cast<char>(c ^ 0x01);
                     }
                     st->bytes_sent += r.body.size();
                     co_return r;
                   });
    port_ = *server_->listen("127.0.0.1", 0);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~fake_station() {
    asio::co_spawn(io_, server_->stop(0ms), asio::use_future).wait();
    thread_.join();
  }

  std::string origin() const { return fmt::format("http://127.0.0.1:{}", port_); }
  std::string host_port() const { return fmt::format("127.0.0.1:{}", port_); }
  std::string playlist() const { return origin() + "/v1/programs/film/index.m3u8"; }
  station_state& state() { return *st_; }

 private:
  std::shared_ptr<station_state> st_ = std::make_shared<station_state>();
  asio::io_context io_;
  std::optional<net::http_server> server_;
  std::thread thread_;
  uint16_t port_ = 0;
};

play_report play_here(play_options o) {
  asio::io_context io;
  auto f = asio::co_spawn(io, play(std::move(o)), asio::use_future);
  io.run();
  return f.get();
}

// A GET through get_pieces: each piece's size and the pieces joined.
asio::awaitable<result<net::client_response>> get_in_pieces(std::string url, size_t window,
                                                            std::vector<size_t>* sizes,
                                                            std::string* joined) {
  net::http_client client(co_await asio::this_coro::executor);
  net::http_client::piece_sink sink;
  sink.on_head = [](const net::client_response& h) { return h.status == 200; };
  sink.on_piece = [sizes, joined](std::string_view p) {
    sizes->push_back(p.size());
    joined->append(p);
  };
  sink.window = window;
  co_return co_await client.get_pieces(std::move(url), {}, std::move(sink));
}

TEST(Console, PiecesOfABodyAreBoundedByTheWindowAndMakeTheWholeBody) {
  fake_station s(1, 1'000'000);
  asio::io_context io;
  std::vector<size_t> sizes;
  std::string joined;
  auto f = asio::co_spawn(
      io, get_in_pieces(s.origin() + "/engine/0.ts", 16 * 1024, &sizes, &joined), asio::use_future);
  io.run();
  auto res = f.get();
  ASSERT_TRUE(res) << res.err().detail;
  EXPECT_EQ(res->status, 200u);
  EXPECT_TRUE(res->body.empty());
  EXPECT_EQ(joined, s.state().segments[0]);
  ASSERT_GT(sizes.size(), 1'000'000u / (16 * 1024));
  EXPECT_LE(*std::max_element(sizes.begin(), sizes.end()), 16u * 1024);
}

TEST(Console, ACorruptSegmentIsCaughtWhileItStreams) {
  fake_station s(3, 700'000);  // each segment many 64 KiB pieces
  s.state().corrupt = 1;       // its last byte: only a hash of every piece sees it
  play_options o;
  o.url = s.playlist();
  o.max_attempts = 2;
  auto r = play_here(o);
  EXPECT_EQ(r.digest_mismatches, 2u) << r.to_text();
  EXPECT_EQ(r.segments, 2u) << r.to_text();
  EXPECT_EQ(r.segments_failed, 1u) << r.to_text();
  EXPECT_EQ(r.bytes, 2u * 700'000) << r.to_text();
  EXPECT_FALSE(r.ok());
  ASSERT_FALSE(r.errors.empty());
  EXPECT_THAT(r.errors.front(), HasSubstr("segment 1"));
  EXPECT_THAT(r.errors.front(), HasSubstr("does not match its SHA-256"));
}

TEST(Console, ACorruptByteInTheMiddleOfALargeSegmentIsCaught) {
  fake_station s(3, 3'000'000);  // many reads of the console's buffer each
  s.state().corrupt = 1;
  s.state().corrupt_offset = 1'500'001;
  play_options o;
  o.url = s.playlist();
  o.max_attempts = 2;
  auto r = play_here(o);
  EXPECT_EQ(r.digest_mismatches, 2u) << r.to_text();
  EXPECT_EQ(r.segments, 2u) << r.to_text();
  EXPECT_EQ(r.bytes, 2u * 3'000'000) << r.to_text();
  ASSERT_FALSE(r.errors.empty());
  EXPECT_THAT(r.errors.front(), HasSubstr("segment 1 from " + s.origin() + " does not match"));
}

TEST(Console, WithoutVerificationTheCorruptSegmentPasses) {
  fake_station s(3, 700'000);
  s.state().corrupt = 1;
  play_options o;
  o.url = s.playlist();
  o.verify = false;
  auto r = play_here(o);
  EXPECT_TRUE(r.ok()) << r.to_text();
  EXPECT_EQ(r.segments, 3u);
  EXPECT_EQ(r.digest_mismatches, 0u);
}

// A server that answers every request with the bytes `answer` gives for it (the requests counted
// from 1, over all connections), then keeps the connection, closes it, or holds it silent.
struct raw_answer {
  std::string bytes;
  enum class then { keep, close, hang } after = then::keep;
};
class raw_server {
 public:
  explicit raw_server(std::function<raw_answer(int request)> answer) : answer_(std::move(answer)) {
    listen_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(listen_, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(listen_, 8) != 0 ||
        ::getsockname(listen_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error("raw_server: cannot listen");
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~raw_server() {
    stopping_ = true;
    ::shutdown(listen_, SHUT_RDWR);  // wakes accept()
    {
      std::lock_guard lock(mu_);
      if (conn_ >= 0) {
        ::shutdown(conn_, SHUT_RDWR);  // wakes a read()
      }
    }
    thread_.join();
    ::close(listen_);
  }
  std::string url(const std::string& path) const {
    return fmt::format("http://127.0.0.1:{}{}", port_, path);
  }
  int connections() const { return connections_; }

 private:
  void serve() {
    int request = 0;
    while (!stopping_) {
      int fd = ::accept(listen_, nullptr, nullptr);
      if (fd < 0) {
        return;
      }
      ++connections_;
      {
        std::lock_guard lock(mu_);
        conn_ = fd;
      }
      std::string in;
      char buf[4096];
      bool open = true;
      while (open && !stopping_) {
        auto end = in.find("\r\n\r\n");
        if (end == std::string::npos) {
          ssize_t n = ::read(fd, buf, sizeof buf);
          if (n <= 0) {
            break;
          }
          in.append(buf, static_cast<size_t>(n));
          continue;
        }
        in.erase(0, end + 4);
        auto a = answer_(++request);
        for (size_t off = 0; off < a.bytes.size();) {
          ssize_t n = ::send(fd, a.bytes.data() + off, a.bytes.size() - off, MSG_NOSIGNAL);
          if (n <= 0) {
            break;
          }
          off += static_cast<size_t>(n);
        }
        if (a.after == raw_answer::then::close) {
          open = false;
        } else if (a.after == raw_answer::then::hang) {
          while (::read(fd, buf, sizeof buf) > 0) {  // until the client or the test gives up
          }
          open = false;
        }
      }
      {
        std::lock_guard lock(mu_);
        conn_ = -1;
      }
      ::close(fd);
    }
  }
  std::function<raw_answer(int)> answer_;
  int listen_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::mutex mu_;
  int conn_ = -1;  // the connection being served, guarded by mu_
  std::thread thread_;
};

struct read_outcome {
  result<unsigned> status;
  std::string body;
  std::vector<size_t> pieces;  // their sizes
};

// GETs `urls` in turn through one segment_reader with a buffer of `buffer` bytes.
std::vector<read_outcome> read_with_reader(std::vector<std::string> urls, size_t buffer,
                                           segment_reader_options ro = {}) {
  asio::io_context io;
  std::vector<char> mem(buffer);
  std::vector<read_outcome> out;
  auto run = [&]() -> asio::awaitable<void> {
    segment_reader reader(co_await asio::this_coro::executor, ro, mem);
    for (auto& u : urls) {
      read_outcome o;
      o.status = co_await reader.get(
          u, [](unsigned) { return true; },
          [&o](std::string_view p) {
            o.body.append(p);
            o.pieces.push_back(p.size());
          });
      out.push_back(std::move(o));
    }
  };
  auto f = asio::co_spawn(io, run(), asio::use_future);
  io.run();
  f.get();
  return out;
}

TEST(ConsoleReader, ABodyOfKnownLengthComesWholeInPiecesOfTheBufferOverOneConnection) {
  auto body = segment_bytes(1'000'000, 7);
  raw_server srv([&](int) {
    return raw_answer{fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.size()) +
                      body};
  });
  auto out = read_with_reader({srv.url("/a.ts"), srv.url("/b.ts")}, 16 * 1024);
  ASSERT_EQ(out.size(), 2u);
  for (auto& o : out) {
    ASSERT_TRUE(o.status) << o.status.err().detail;
    EXPECT_EQ(*o.status, 200u);
    EXPECT_EQ(o.body, body);
    // The first piece came with the head; every other is one read into the 16 KiB buffer.
    ASSERT_GT(o.pieces.size(), 2u);
    EXPECT_LE(*std::max_element(o.pieces.begin() + 1, o.pieces.end()), 16u * 1024);
  }
  EXPECT_EQ(srv.connections(), 1);  // kept alive between the two
}

TEST(ConsoleReader, AChunkedBodyComesWhole) {
  auto body = segment_bytes(300'000, 9);
  raw_server srv([&](int) {
    std::string r = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (size_t off = 0; off < body.size(); off += 70'000) {
      auto piece = body.substr(off, 70'000);
      r += fmt::format("{:x}\r\n", piece.size()) + piece + "\r\n";
    }
    return raw_answer{r + "0\r\n\r\n"};
  });
  auto out = read_with_reader({srv.url("/a.ts"), srv.url("/b.ts")}, read_buffer_bytes);
  ASSERT_EQ(out.size(), 2u);
  for (auto& o : out) {
    ASSERT_TRUE(o.status) << o.status.err().detail;
    EXPECT_EQ(o.body, body);
  }
  EXPECT_EQ(srv.connections(), 1);
}

TEST(ConsoleReader, ABodyCutShortIsAnErrorAndTheNextGetConnectsAgain) {
  auto body = segment_bytes(1000, 3);
  raw_server srv([&](int request) {
    if (request == 1) {
      return raw_answer{"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + body.substr(0, 500),
                        raw_answer::then::close};
    }
    return raw_answer{"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + body};
  });
  auto out = read_with_reader({srv.url("/a.ts"), srv.url("/a.ts")}, read_buffer_bytes);
  ASSERT_EQ(out.size(), 2u);
  ASSERT_FALSE(out[0].status);
  EXPECT_EQ(out[0].status.err().code, errc::unavailable);
  EXPECT_THAT(out[0].status.err().detail, HasSubstr("after 500 bytes"));
  EXPECT_EQ(out[0].body, body.substr(0, 500));
  ASSERT_TRUE(out[1].status) << out[1].status.err().detail;
  EXPECT_EQ(out[1].body, body);
  EXPECT_EQ(srv.connections(), 2);
}

TEST(ConsoleReader, APeerThatFallsSilentMidBodyTimesOut) {
  raw_server srv([&](int) {
    return raw_answer{"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + std::string(4000, 'x'),
                      raw_answer::then::hang};
  });
  segment_reader_options ro;
  ro.read_timeout = 300ms;
  auto t0 = std::chrono::steady_clock::now();
  auto out = read_with_reader({srv.url("/a.ts")}, read_buffer_bytes, ro);
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(out.size(), 1u);
  ASSERT_FALSE(out[0].status);
  EXPECT_EQ(out[0].status.err().code, errc::timeout);
  EXPECT_EQ(out[0].body.size(), 4000u);
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 3s);
}

// A TLS server that answers one request per connection, keep-alive by its head, then closes the
// socket without TLS's close_notify, as a server that ends idle connections abruptly does.
// Self-signed for 127.0.0.1 (the certificate is its own CA).
class tls_closing_server {
 public:
  tls_closing_server() : ctx_(asio::ssl::context::tls_server) {
    auto r = test::run(
        {"/bin/bash", "-c",
         fmt::format("cd '{}' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                     "-nodes -keyout key.pem -out cert.pem -days 2 -subj /CN=t "
                     "-addext subjectAltName=IP:127.0.0.1 2>&1 && chmod 600 key.pem",
                     dir_.path().string())});
    if (r.status != 0) {
      throw std::runtime_error("certificate: " + r.out + r.err);
    }
    ctx_.use_certificate_chain_file((dir_.path() / "cert.pem").string());
    ctx_.use_private_key_file((dir_.path() / "key.pem").string(), asio::ssl::context::pem);
    acceptor_.open(asio::ip::tcp::v4());
    acceptor_.bind({asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    thread_ = std::thread([this] { serve(); });
  }
  ~tls_closing_server() {
    stopping_ = true;
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);  // wakes accept()
    thread_.join();
  }
  std::string url(const std::string& path) const {
    return fmt::format("https://127.0.0.1:{}{}", acceptor_.local_endpoint().port(), path);
  }
  std::filesystem::path ca() const { return dir_.path() / "cert.pem"; }
  int connections() const { return connections_; }
  const std::string body = segment_bytes(50'000, 5);

 private:
  void serve() {
    while (!stopping_) {
      boost::system::error_code ec;
      asio::ip::tcp::socket sock(io_);
      acceptor_.accept(sock, ec);
      if (ec || stopping_) {
        return;
      }
      ++connections_;
      asio::ssl::stream<asio::ip::tcp::socket&> tls(sock, ctx_);
      tls.handshake(asio::ssl::stream_base::server, ec);
      std::string in;
      char buf[4096];
      while (!ec && in.find("\r\n\r\n") == std::string::npos) {
        in.append(buf, tls.read_some(asio::buffer(buf), ec));
      }
      if (!ec) {
        asio::write(
            tls,
            asio::buffer(fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.size()) +
                         body),
            ec);
      }
      sock.close(ec);  // no close_notify
    }
  }
  test::temp_dir dir_;
  asio::io_context io_;
  asio::ssl::context ctx_;
  asio::ip::tcp::acceptor acceptor_{io_};
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

// A kept TLS connection that its server closed while idle without close_notify (the reader's
// next read on it: stream_truncated) is found dead on first use and the GET goes on a fresh
// connection to the same server, as over plain HTTP, rather than failing the segment.
TEST(ConsoleReader, AKeptTlsConnectionClosedWithoutCloseNotifyIsReplacedOnFirstUse) {
  tls_closing_server srv;
  asio::io_context io;
  std::vector<char> mem(read_buffer_bytes);
  segment_reader_options ro;
  ro.tls_ca = srv.ca();
  std::vector<result<unsigned>> got;
  std::vector<std::string> bodies;
  auto run = [&]() -> asio::awaitable<void> {
    segment_reader reader(co_await asio::this_coro::executor, ro, mem);
    for (int i = 0; i < 3; ++i) {
      std::string body;
      got.push_back(co_await reader.get(
          srv.url("/a.ts"), [](unsigned) { return true; },
          [&body](std::string_view p) { body.append(p); }));
      bodies.push_back(std::move(body));
      asio::steady_timer t(co_await asio::this_coro::executor, 200ms);  // the server closes
      co_await t.async_wait(asio::use_awaitable);
    }
  };
  auto f = asio::co_spawn(io, run(), asio::use_future);
  io.run();
  f.get();
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(got[i]) << i << ": " << got[i].err().detail;
    EXPECT_EQ(*got[i], 200u);
    EXPECT_EQ(bodies[i], srv.body) << i;
  }
  EXPECT_EQ(srv.connections(), 3);
}

TEST(Console, ReportsOfThreadsMergeAsOne) {
  play_report a, b;
  a.viewers = 2;
  a.segments = 10;
  a.bytes = 1000;
  a.stalls = 1;
  a.longest_stall = 0.5;
  a.engines = {{"http://e1", 6}, {"http://e2", 4}};
  a.errors = {"x"};
  b.viewers = 1;
  b.segments = 5;
  b.segments_failed = 1;
  b.bytes = 500;
  b.retries = 3;
  b.stalls = 2;
  b.longest_stall = 1.25;
  b.digest_mismatches = 1;
  b.media_seconds = 8;
  b.engines = {{"http://e2", 1}, {"http://e3", 4}};
  b.errors = {"y"};
  a.startup.add(0.1);
  b.startup.add(0.3);
  b.startup.add(0.2);
  a.needed_bytes = 100;
  b.needed_bytes = 50;
  a.viewer_records.push_back({.viewer = 2});
  b.viewer_records.push_back({.viewer = 1});
  b.stations = {{"edge", 5}};
  a.merge(b);
  EXPECT_EQ(a.startup.count(), 3u);
  EXPECT_NEAR(a.startup.at(0.5), 0.2, 0.002);
  EXPECT_EQ(a.needed_bytes, 150);
  ASSERT_EQ(a.viewer_records.size(), 2u);
  EXPECT_EQ(a.viewer_records[0].viewer, 1u);  // by viewer, whichever thread played it
  EXPECT_EQ(a.stations, (std::map<std::string, uint64_t>{{"edge", 5}}));
  EXPECT_EQ(a.viewers, 3u);
  EXPECT_EQ(a.segments, 15u);
  EXPECT_EQ(a.segments_failed, 1u);
  EXPECT_EQ(a.bytes, 1500u);
  EXPECT_EQ(a.retries, 3u);
  EXPECT_EQ(a.stalls, 3u);
  EXPECT_EQ(a.longest_stall, 1.25);
  EXPECT_EQ(a.digest_mismatches, 1u);
  EXPECT_EQ(a.media_seconds, 8);
  EXPECT_EQ(a.engines, (std::map<std::string, uint64_t>{
                           {"http://e1", 6}, {"http://e2", 5}, {"http://e3", 4}}));
  EXPECT_EQ(a.errors, (std::vector<std::string>{"x", "y"}));
}

TEST(Console, TwoThreadsReportWhatTheServerSaw) {
  fake_station s(4, 300'000);
  play_options o;
  o.url = s.playlist();
  o.viewers = 7;  // odd: the threads' shares differ
  o.threads = 2;
  auto r = play_on_threads(o);
  EXPECT_TRUE(r.ok()) << r.to_text();
  EXPECT_EQ(r.viewers, 7u);
  EXPECT_EQ(r.segments, 7u * 4);
  EXPECT_EQ(r.segments, s.state().segment_gets.load());
  EXPECT_EQ(r.segments, s.state().redirects.load());
  EXPECT_EQ(r.bytes, s.state().bytes_sent.load());
  EXPECT_EQ(r.engines, (std::map<std::string, uint64_t>{{s.origin(), 7u * 4}}));
  EXPECT_EQ(r.stations, (std::map<std::string, uint64_t>{{s.host_port(), 7u * 4}}));
  EXPECT_EQ(r.media_seconds, 16);
  EXPECT_EQ(r.ttfb.count(), 7u * 4);
  EXPECT_EQ(r.startup.count(), 7u);
  EXPECT_EQ(r.stall_seconds.at(1), 0);
  // Measured around the play: the console's own CPU, and the "director"'s from its /metrics.
  EXPECT_GE(r.limits.console_cpu, 0);
  EXPECT_GE(r.limits.director_cpu, 0);
  EXPECT_EQ(r.limits.verdict, "none (no stall, no failure)");
}

TEST(Console, PlayWithThreadsFromTheCommandLineReportsWhatTheServerSaw) {
  fake_station s(2, 200'000);
  auto p = test::run(
      {test::vodgrid_binary(), "play", s.playlist(), "--viewers", "5", "--threads", "2", "--json"});
  ASSERT_EQ(p.status, 0) << p.out << p.err;
  auto report = boost::json::parse(p.out).as_object();
  EXPECT_EQ(report.at("viewers").to_number<uint64_t>(), 5u);
  EXPECT_EQ(report.at("segments").to_number<uint64_t>(), s.state().segment_gets.load());
  EXPECT_EQ(report.at("segments").to_number<uint64_t>(), 10u);
  EXPECT_EQ(report.at("bytes").to_number<uint64_t>(), s.state().bytes_sent.load());
}

// A director that cannot be reached (nothing listens on its port) is asked as often over https://
// as over http:// (play_options::max_attempts), and the play ends with the same one line, the
// scheme aside, and an exit status that says it failed.
TEST(Console, AnUnreachableDirectorIsRetriedAlikeOverHttpAndHttps) {
  uint16_t port = test::free_port();
  std::map<std::string, std::pair<std::string, uint64_t>> seen;  // scheme: last line, retries
  for (std::string scheme : {"http", "https"}) {
    auto url = fmt::format("{}://127.0.0.1:{}/v1/programs/film/index.m3u8", scheme, port);
    auto p = test::run({test::vodgrid_binary(), "play", url, "--json"});
    EXPECT_NE(p.status, 0) << scheme;
    auto err = p.err;
    while (!err.empty() && err.back() == '\n') {
      err.pop_back();
    }
    auto last = err.substr(err.rfind('\n') == std::string::npos ? 0 : err.rfind('\n') + 1);
    EXPECT_THAT(last, HasSubstr(fmt::format("cannot connect to {}://127.0.0.1:{}", scheme, port)))
        << scheme << ": " << p.err;
    auto shape = last;
    shape.replace(shape.find(scheme + "://"), scheme.size(), "SCHEME");
    uint64_t retries = 0;
    try {
      retries = boost::json::parse(p.out).as_object().at("retries").to_number<uint64_t>();
    } catch (const std::exception& e) {
      ADD_FAILURE() << scheme << ": no JSON report: " << p.out << p.err;
    }
    seen[scheme] = {shape, retries};
  }
  EXPECT_EQ(seen["http"].second, play_options{}.max_attempts - 1);
  EXPECT_EQ(seen["https"], seen["http"]);
}

TEST(Console, BadThreadCountsAreRefusedWithOneLine) {
  fake_station s(1, 1000);
  for (std::string bad : {"0", "257", "two", "-1"}) {
    auto p = test::run({test::vodgrid_binary(), "play", s.playlist(), "--threads", bad});
    EXPECT_NE(p.status, 0) << bad;
    EXPECT_THAT(p.err, HasSubstr("--threads")) << bad;
    EXPECT_EQ(std::count(p.err.begin(), p.err.end(), '\n'), 1) << p.err;
    EXPECT_TRUE(p.out.empty()) << p.out;
  }
  EXPECT_EQ(s.state().redirects.load(), 0u);  // nothing was played
  auto rtsp = test::run(
      {test::vodgrid_binary(), "play", "rtsp://127.0.0.1:1/v1/programs/film", "--threads", "2"});
  EXPECT_NE(rtsp.status, 0);
  EXPECT_THAT(rtsp.err, HasSubstr("--threads is for http://"));
}

// Real time from here on (RESOURCE_LOCK realtime): a few short segments each.

TEST(Console, ALateSegmentStallsAOneSegmentBufferButNotAThreeSegmentOne) {
  fake_station s(4, 50'000, 1.0);
  s.state().delays[3] = 1500ms;  // asked at 2 s with one segment of buffer, due at 3 s
  play_options o;
  o.url = s.playlist();
  o.realtime = true;
  o.buffer = 1;
  auto r = play_here(o);
  EXPECT_TRUE(r.ok()) << r.to_text();
  EXPECT_EQ(r.stalls, 1u) << r.to_text();
  EXPECT_EQ(r.viewers_stalled, 1u);
  EXPECT_GT(r.stalled_seconds, 0.3) << r.to_text();
  EXPECT_LT(r.stalled_seconds, 3) << r.to_text();
  EXPECT_EQ(r.stall_seconds.count(), 1u);
  EXPECT_EQ(r.startup.count(), 1u);
  EXPECT_GE(r.seconds, 4.3);  // the viewer stays until it has watched the last segment
  // With three segments ahead, segment 3 is asked for when segment 0 starts: 1.5 s late is early.
  o.buffer = 3;
  r = play_here(o);
  EXPECT_TRUE(r.ok()) << r.to_text();
  EXPECT_EQ(r.stalls, 0u) << r.to_text();
  EXPECT_EQ(r.stalled_seconds, 0);
  EXPECT_GE(r.ttfb.max(), 1.4);  // the late segment's first byte
}

// The decisions of a --model play's viewers, as its report lists them.
struct decision {
  std::string program;
  double arrival, watch;
  uint32_t seeks, pauses;
  bool operator==(const decision&) const = default;
};
std::vector<decision> decisions(const play_report& r) {
  std::vector<decision> out;
  for (auto& v : r.viewer_records) {
    out.push_back({v.program, v.arrival, v.watch_seconds, v.seeks, v.pauses});
  }
  return out;
}

TEST(Console, AModelPlayIsDecidedByItsSeedWhateverTheThreads) {
  fake_station s(8, 20'000, 0.25);  // a 2 s program
  play_options o;
  o.url = s.origin();  // the director: the programs come from its catalog
  o.viewers = 10;
  o.threads = 1;
  o.model.enabled = true;
  o.model.arrival_rate = 20;
  o.model.watch_mean_seconds = 1;
  o.model.seeks_per_minute = 30;
  o.model.pauses_per_minute = 30;
  o.model.pause_mean_seconds = 0.2;
  o.model.seed = 5;
  auto a = play_on_threads(o);
  EXPECT_TRUE(a.ok()) << a.to_text();
  ASSERT_EQ(a.viewer_records.size(), 10u);
  for (uint32_t v = 0; v < 10; ++v) {
    EXPECT_EQ(a.viewer_records[v].viewer, v);
    EXPECT_GE(a.viewer_records[v].startup, 0);
  }
  // The catalog's playable programs only; every viewer picked one.
  uint64_t picked = 0;
  for (auto& [p, n] : a.programs) {
    EXPECT_TRUE(p == "film" || p == "trailer") << p;
    picked += n;
  }
  EXPECT_EQ(picked, 10u);
  EXPECT_EQ(a.segments, s.state().segment_gets.load());
  EXPECT_EQ(a.startup.count(), 10u);
  o.threads = 2;
  auto b = play_on_threads(o);
  EXPECT_TRUE(b.ok()) << b.to_text();
  EXPECT_EQ(decisions(a), decisions(b));
  o.model.seed = 6;
  auto c = play_on_threads(o);
  EXPECT_TRUE(c.ok()) << c.to_text();
  EXPECT_NE(decisions(a), decisions(c));
}

TEST(Console, AModelPlayFromTheCommandLinePrintsItsWholeReportAsJson) {
  fake_station s(4, 20'000, 0.25);
  auto p = test::run({test::vodgrid_binary(), "play", s.origin(), "--model", "--programs",
                      "film,trailer", "--viewers", "4", "--arrival-rate", "40", "--seed", "9",
                      "--buffer", "2", "--json"});
  ASSERT_EQ(p.status, 0) << p.out << p.err;
  EXPECT_TRUE(p.err.empty()) << p.err;  // no progress line when stderr is not a terminal
  auto r = boost::json::parse(p.out).as_object();
  EXPECT_EQ(r.at("viewers").to_number<uint64_t>(), 4u);
  EXPECT_EQ(r.at("viewer_records").as_array().size(), 4u);
  EXPECT_EQ(r.at("startup").at("count").to_number<uint64_t>(), 4u);
  for (auto* k : {"p50", "p95", "p99", "max"}) {
    EXPECT_TRUE(r.at("ttfb").as_object().contains(k)) << k;
  }
  EXPECT_GT(r.at("bytes_per_second").at("achieved").to_number<double>(), 0);
  EXPECT_GT(r.at("bytes_per_second").at("needed").to_number<double>(), 0);
  EXPECT_EQ(r.at("engines").at(s.origin()).to_number<uint64_t>(), s.state().segment_gets.load());
  EXPECT_EQ(r.at("saturation").at("verdict").as_string(), "none (no stall, no failure)");
}

TEST(Console, BadModelKnobsAreRefusedWithOneLine) {
  fake_station s(1, 1000);
  std::vector<std::vector<std::string>> bad = {{"--buffer", "0"},
                                               {"--model", "--zipf", "-1"},
                                               {"--model", "--arrival-rate", "-3"},
                                               {"--model", "--programs", "a b"},
                                               {"--programs", "film"}};
  for (auto& args : bad) {
    std::vector<std::string> argv = {test::vodgrid_binary(), "play", s.playlist()};
    argv.insert(argv.end(), args.begin(), args.end());
    auto p = test::run(argv);
    EXPECT_NE(p.status, 0) << args[0];
    EXPECT_THAT(p.err, HasSubstr(args[args.size() == 2 && args[0] != "--model" ? 0 : 1]));
    EXPECT_EQ(std::count(p.err.begin(), p.err.end(), '\n'), 1) << p.err;
  }
  EXPECT_EQ(s.state().redirects.load(), 0u);  // nothing was played
}

TEST(Console, TheVerdictNamesTheSideThatWasSaturated) {
  play_report r;
  saturation sat;
  EXPECT_EQ(saturation_verdict(r, sat), "none (no stall, no failure)");
  r.stalls = 3;
  r.seconds = 10;
  r.bytes = 1e9;
  r.needed_bytes = 2e9;
  sat.console_cpu = 0.97;
  EXPECT_THAT(saturation_verdict(r, sat), HasSubstr("console CPU"));
  sat.console_cpu = 0.4;
  sat.engine_cpu = {{"127.0.0.1:1", 0.2}, {"127.0.0.1:2", 0.95}};
  EXPECT_THAT(saturation_verdict(r, sat), HasSubstr("engine CPU (127.0.0.1:2"));
  sat.engine_cpu = {{"127.0.0.1:1", 0.2}};
  EXPECT_THAT(saturation_verdict(r, sat), HasSubstr("bandwidth (100.0 MB/s achieved of 200.0"));
  sat.machine_cpu = 0.99;
  EXPECT_THAT(saturation_verdict(r, sat), HasSubstr("the machine's CPU"));
}

}  // namespace
}  // namespace vodgrid::console
