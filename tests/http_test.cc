// Tests of net::http_server in-process: routing, keep-alive, malformed requests, file replies
// (sendfile), /healthz and /metrics, and the two-phase stop.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <boost/asio/executor_work_guard.hpp>

#include "net/daemon.h"
#include "net/http.h"
#include "support/support.h"

namespace vodgrid::net {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using test::raw_exchange;
using V = http::verb;

// Deterministic bytes that differ at every offset class, so a shifted slice is noticed.
std::string pattern_bytes(size_t n) {
  std::string s(n, '\0');
  uint32_t x = 12345;
  for (char& c : s) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

// The body of a raw HTTP response (after the blank line), "" if none.
std::string body_of(const std::string& raw) {
  auto p = raw.find("\r\n\r\n");
  return p == std::string::npos ? std::string() : raw.substr(p + 4);
}

// The header block of a raw HTTP response, lowercased for easy matching.
std::string headers_of(const std::string& raw) {
  std::string h = raw.substr(0, raw.find("\r\n\r\n"));
  for (char& c : h) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return h;
}

int count_of(const std::string& hay, const std::string& needle) {
  int n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) {
    ++n;
  }
  return n;
}

// Connects to 127.0.0.1:port, sends `bytes` and closes at once without reading.
void send_and_close(uint16_t port, const std::string& bytes) {
  int fd = test::connect_loopback(port);
  if (fd >= 0) {
    (void)::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    ::close(fd);
  }
}

// State the handlers share with the test thread.
struct shared_state {
  std::atomic<int> posts{0};  // calls of the POST /upload and /small handlers
  std::atomic<int> slow_started{0};
  std::atomic<int> slow_done{0};
  std::filesystem::path file;  // served by GET /file
};

asio::awaitable<reply> echo_params(request_context& ctx) {
  json::array a;
  for (auto& p : ctx.params) {
    a.push_back(json::value(p));
  }
  json::object q;
  for (auto& [k, v] : ctx.query) {
    q[k] = v;
  }
  co_return json_reply(json::object{{"params", a}, {"query", q}, {"path", ctx.path}});
}

asio::awaitable<reply> count_upload(std::shared_ptr<shared_state> st, request_context& ctx) {
  ++st->posts;
  co_return json_reply(json::object{{"received", ctx.req.body().size()}});
}

asio::awaitable<reply> slow(std::shared_ptr<shared_state> st, request_context&) {
  ++st->slow_started;
  asio::steady_timer t(co_await asio::this_coro::executor, 200ms);
  co_await t.async_wait(asio::use_awaitable);
  ++st->slow_done;
  reply r;
  r.content_type = "text/plain";
  r.body = "slow done";
  co_return r;
}

// GET /file?off=N&len=M: a slice of the shared file (the whole file by default).
asio::awaitable<reply> serve_file(std::shared_ptr<shared_state> st, request_context& ctx) {
  int fd = ::open(st->file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    co_return error_reply(http::status::internal_server_error, "io_error", "open failed");
  }
  auto owner = std::shared_ptr<void>(nullptr, [fd](void*) { ::close(fd); });
  uint64_t size = std::filesystem::file_size(st->file);
  auto off_arg = ctx.query_param("off");
  auto len_arg = ctx.query_param("len");
  uint64_t off = off_arg.empty() ? 0 : std::stoull(std::string(off_arg));
  uint64_t len = len_arg.empty() ? size - off : std::stoull(std::string(len_arg));
  reply r;
  r.content_type = "application/octet-stream";
  r.file = file_slice{owner, fd, off, len};
  co_return r;
}

// The foreign protocol of the harness: reads one RTSP request (the bytes the server read first,
// then the socket) and answers with its first line echoed in a header.
asio::awaitable<void> answer_rtsp(foreign_connection& c) {
  std::string in = c.already_read;
  char buf[1024];
  while (in.find("\r\n\r\n") == std::string::npos) {
    c.set_deadline(std::chrono::steady_clock::now() + 2s);
    auto [ec, n] = co_await c.stream.read_some(asio::buffer(buf));
    if (ec) {
      co_return;
    }
    in.append(buf, n);
  }
  std::string out =
      "RTSP/1.0 200 OK\r\nCSeq: 1\r\nX-Line: " + in.substr(0, in.find("\r\n")) + "\r\n\r\n";
  co_await c.stream.write(asio::buffer(out));
}

// A server on its own io_context thread, with a few routes; with VODGRID_THREADS=N, on N loops
// (the Threads2 entries of ctest run every test so).
class server_harness {
 public:
  explicit server_harness(server_options opts = short_timeouts()) {
    st_->file = dir_.path() / "data.bin";
    std::vector<asio::any_io_executor> extra;
    for (uint32_t i = 1; loop_count(1) && i < *loop_count(1); ++i) {
      extra_.push_back(std::make_unique<asio::io_context>(1));
      guards_.push_back(asio::make_work_guard(*extra_.back()));
      extra.push_back(extra_.back()->get_executor());
    }
    server_.emplace(io_.get_executor(), "test", opts);
    auto st = st_;
    server_->route(V::get, "/items/{}/{}.ts", [](request_context& c) { return echo_params(c); });
    server_->route(V::get, "/echo", [](request_context& c) { return echo_params(c); });
    // Patterns that overlap: the first registered takes what several match.
    server_->route(V::get, "/pick/{}/zero.ts", [](request_context& c) { return echo_params(c); });
    server_->route(V::get, "/pick/{}/{}.ts", [](request_context& c) { return echo_params(c); });
    server_->route(V::get, "/pick/{}/{}", [](request_context& c) { return echo_params(c); });
    server_->route(V::post, "/pick/{}/{}.ts", [](request_context& c) { return echo_params(c); });
    server_->route(
        V::post, "/upload", [st](request_context& c) { return count_upload(st, c); }, 4096);
    server_->route(
        V::post, "/small", [st](request_context& c) { return count_upload(st, c); }, 100);
    server_->route(V::get, "/slow", [st](request_context& c) { return slow(st, c); });
    server_->route(V::get, "/file", [st](request_context& c) { return serve_file(st, c); });
    server_->set_foreign_protocol("RTSP/1.0", [](foreign_connection& c) { return answer_rtsp(c); });
    auto port = server_->listen("127.0.0.1", 0, extra);
    if (!port) {
      throw std::runtime_error(port.err().detail);
    }
    port_ = *port;
    thread_ = std::thread([this] { io_.run(); });
    for (auto& l : extra_) {
      extra_threads_.emplace_back([ctx = l.get()] { ctx->run(); });
    }
  }

  ~server_harness() {
    if (!stopped_) {
      stop(0ms).wait();
    }
    thread_.join();
    guards_.clear();
    for (auto& l : extra_) {
      l->stop();
    }
    for (auto& t : extra_threads_) {
      t.join();
    }
    server_.reset();  // before the loops its acceptors belong to
  }

  static server_options short_timeouts() {
    server_options o;
    o.header_timeout = 2s;
    o.body_timeout = 1s;
    o.idle_timeout = 2s;
    return o;
  }

  // Starts the two-phase stop on the server's thread; the future is ready when it completes.
  std::future<void> stop(std::chrono::milliseconds drain) {
    stopped_ = true;
    return asio::co_spawn(io_, server_->stop(drain), asio::use_future);
  }

  // The server's open connections, read on its own thread.
  size_t connections() {
    auto f = asio::co_spawn(io_, count_connections(&*server_), asio::use_future);
    return f.get();
  }

  uint16_t port() const { return port_; }
  std::string url(const std::string& target) const {
    return fmt::format("http://127.0.0.1:{}{}", port_, target);
  }
  shared_state& state() { return *st_; }
  const std::filesystem::path& dir() const { return dir_.path(); }

 private:
  static asio::awaitable<size_t> count_connections(http_server* s) { co_return s->connections(); }

  test::temp_dir dir_;
  std::shared_ptr<shared_state> st_ = std::make_shared<shared_state>();
  asio::io_context io_;
  std::vector<std::unique_ptr<asio::io_context>> extra_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::vector<std::thread> extra_threads_;
  std::optional<http_server> server_;
  std::thread thread_;
  uint16_t port_ = 0;
  bool stopped_ = false;
};

// Sends raw bytes and reports the reply and whether the server closed the connection on its own
// (well before our read deadline).
struct raw_outcome {
  std::string reply;
  bool closed_by_server = false;
};
raw_outcome exchange_expecting_close(uint16_t port, const std::string& bytes) {
  auto t0 = std::chrono::steady_clock::now();
  raw_outcome o;
  o.reply = raw_exchange(port, bytes, 8s);
  o.closed_by_server = std::chrono::steady_clock::now() - t0 < 6s;
  return o;
}

// ---------------------------------------------------------------------------------------------
// Routing

TEST(HttpServerRouting, CapturesParamsAndStripsTheSuffix) {
  server_harness h;
  auto r = test::http_get(h.url("/items/abc-1/42.ts"));
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 200u);
  auto o = json::parse(r->body).as_object();
  ASSERT_EQ(o.at("params").as_array().size(), 2u);
  EXPECT_EQ(o.at("params").as_array()[0].as_string(), "abc-1");
  EXPECT_EQ(o.at("params").as_array()[1].as_string(), "42");
  EXPECT_EQ(o.at("path").as_string(), "/items/abc-1/42.ts");
}

TEST(HttpServerRouting, SuffixPatternRejectsOtherSuffixesAndEmptyCaptures) {
  server_harness h;
  for (std::string target : {"/items/abc/42.mp4", "/items/abc/.ts", "/items/abc/42", "/items/abc",
                             "/items/abc/42.ts/more"}) {
    SCOPED_TRACE(target);
    auto r = test::http_get(h.url(target));
    ASSERT_TRUE(r) << r.err().detail;
    EXPECT_EQ(r->status, 404u);
  }
}

TEST(HttpServerRouting, QueryParametersAreDecodedAndLastOneWins) {
  server_harness h;
  auto r = test::http_get(h.url("/echo?a=1&b=x%20y&a=2"));
  ASSERT_TRUE(r) << r.err().detail;
  ASSERT_EQ(r->status, 200u);
  auto o = json::parse(r->body).as_object();
  EXPECT_EQ(o.at("query").as_object().at("a").as_string(), "2");
  EXPECT_EQ(o.at("query").as_object().at("b").as_string(), "x y");
  EXPECT_EQ(o.at("path").as_string(), "/echo");
}

// A connection's requests each see their own query only (the parameters' strings are reused).
TEST(HttpServerRouting, EachRequestOnAConnectionSeesOnlyItsOwnQuery) {
  server_harness h;
  auto raw = raw_exchange(h.port(),
                          "GET /echo?a=1&b=22&c=333 HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /echo?d=4 HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /echo?e=x%20y&f HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /echo?g=7&&h= HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(count_of(raw, "HTTP/1.1 200 OK\r\n"), 5) << raw;
  std::vector<std::string> queries;
  for (size_t at = raw.find("\"query\":"); at != std::string::npos;
       at = raw.find("\"query\":", at + 1)) {
    queries.push_back(raw.substr(at + 8, raw.find('}', at) - at - 7));
  }
  EXPECT_EQ(queries,
            (std::vector<std::string>{R"({"a":"1","b":"22","c":"333"})", R"({"d":"4"})",
                                      R"({"e":"x y","f":""})", R"({"g":"7","h":""})", "{}"}))
      << raw;
}

TEST(HttpServerRouting, UnknownPathIs404WithJsonErrorBody) {
  server_harness h;
  auto r = test::http_get(h.url("/no/such/thing"));
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 404u);
  EXPECT_NE(r->header("Content-Type").find("application/json"), std::string::npos);
  auto o = json::parse(r->body).as_object();
  EXPECT_EQ(o.at("error").as_string(), "not_found");
  EXPECT_TRUE(o.at("detail").is_string());
  EXPECT_FALSE(o.at("detail").as_string().empty());
}

TEST(HttpServerBuiltins, MetricsAnswerOnlyTheConfiguredAddressesAndHealthzEveryone) {
  auto ranges = parse_ranges({"10.0.0.0/8"});
  ASSERT_TRUE(ranges);
  auto opts = server_harness::short_timeouts();
  opts.metrics_from = *ranges;  // not this test's 127.0.0.1
  server_harness h(opts);
  auto refused = test::http_get(h.url("/metrics"));
  ASSERT_TRUE(refused) << refused.err().detail;
  EXPECT_EQ(refused->status, 403u);
  auto o = json::parse(refused->body).as_object();
  EXPECT_EQ(o.at("error").as_string(), "forbidden");
  EXPECT_NE(o.at("detail").as_string().find("127.0.0.1"), std::string::npos) << refused->body;
  EXPECT_EQ(refused->body.find("vodgrid_http"), std::string::npos) << "no metric leaked";
  auto health = test::http_get(h.url("/healthz"));
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200u);

  auto loopback = server_harness::short_timeouts();
  loopback.metrics_from = parse_ranges({"127.0.0.0/8", "::1/128"}).value();
  server_harness local(loopback);
  auto ok = test::http_get(local.url("/metrics"));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200u);
  EXPECT_NE(ok->body.find("vodgrid_http_requests_total"), std::string::npos);
}

TEST(HttpServerRouting, KnownPathWithWrongMethodIs405) {
  server_harness h;
  auto r = test::http(V::delete_, h.url("/items/abc/1.ts"));
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 405u);
  auto o = json::parse(r->body).as_object();
  EXPECT_EQ(o.at("error").as_string(), "method_not_allowed");
  EXPECT_TRUE(o.at("detail").is_string());
  EXPECT_EQ(r->header("Allow"), "GET, HEAD");  // RFC 9110 §15.5.6
  EXPECT_EQ(h.state().posts.load(), 0);
}

TEST(HttpServerRouting, HeadOnGetRouteGivesContentLengthWithoutBody) {
  server_harness h;
  auto get = test::http_get(h.url("/items/abc/1.ts"));
  ASSERT_TRUE(get) << get.err().detail;
  ASSERT_FALSE(get->body.empty());
  auto raw = raw_exchange(h.port(),
                          "HEAD /items/abc/1.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(test::status_of(raw), 200);
  EXPECT_NE(headers_of(raw).find(fmt::format("content-length: {}", get->body.size())),
            std::string::npos)
      << raw;
  EXPECT_EQ(body_of(raw), "");
}

// A connection's requests are matched to the route its previous one took first (a cache), but
// never to another route than the first registered one that matches.
TEST(HttpServerRouting, TheFirstMatchingRouteWinsOnAConnectionThatUsedAnother) {
  server_harness h;
  auto raw = raw_exchange(h.port(),
                          "GET /pick/a/x HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /pick/b/2.ts HTTP/1.1\r\nHost: x\r\n\r\n"
                          "POST /pick/c/3.ts HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                          "GET /pick/d/4.ts HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /pick/f/zero.ts HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /pick/e/5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(count_of(raw, "HTTP/1.1 200 OK\r\n"), 6) << raw;
  EXPECT_NE(raw.find(R"("params":["f"])"), std::string::npos) << raw;
  EXPECT_NE(raw.find(R"("params":["a","x"])"), std::string::npos) << raw;
  EXPECT_NE(raw.find(R"("params":["b","2"])"), std::string::npos) << raw;
  EXPECT_NE(raw.find(R"("params":["c","3"])"), std::string::npos) << raw;
  EXPECT_NE(raw.find(R"("params":["d","4"])"), std::string::npos) << raw;
  EXPECT_NE(raw.find(R"("params":["e","5"])"), std::string::npos) << raw;
}

// ---------------------------------------------------------------------------------------------
// Keep-alive

TEST(HttpServerKeepAlive, TwoPipelinedRequestsOnOneConnectionAreBothAnswered) {
  server_harness h;
  auto raw = raw_exchange(h.port(),
                          "GET /items/a/1.ts HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /items/b/2.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(count_of(raw, "HTTP/1.1 200 OK\r\n"), 2) << raw;
  auto first = raw.find("\"a\"");
  auto second = raw.find("\"b\"");
  ASSERT_NE(first, std::string::npos);
  ASSERT_NE(second, std::string::npos);
  EXPECT_LT(first, second);  // answered in order
}

// Reads from `fd` until `end` has arrived, the peer closed, or 5 s passed.
std::string read_until(int fd, const std::string& end) {
  std::string got;
  char buf[4096];
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (got.find(end) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) {
      continue;
    }
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      break;
    }
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

// Requests whose pieces arrive after pauses, each after the server found the socket empty and
// waits for its next bytes, are all read whole and answered in turn.
TEST(HttpServerKeepAlive, RequestsArrivingInPiecesAfterPausesAreEachAnswered) {
  server_harness h;
  int fd = test::connect_loopback(h.port());
  ASSERT_GE(fd, 0);
  for (int i = 0; i < 6; ++i) {
    std::string req = fmt::format("GET /echo?n={}&pad={} HTTP/1.1\r\nHost: x\r\n\r\n", i,
                                  std::string(static_cast<size_t>(i) * 700, 'p'));
    // Cut in three at different places each time: in the request line, the query, the header.
    std::vector<size_t> cuts{static_cast<size_t>(3 + i), req.size() / 2, req.size() - 2};
    size_t from = 0;
    for (size_t cut : cuts) {
      std::this_thread::sleep_for(20ms);  // the server has read what came and waits
      ASSERT_EQ(::send(fd, req.data() + from, cut - from, MSG_NOSIGNAL),
                static_cast<ssize_t>(cut - from));
      from = cut;
    }
    std::this_thread::sleep_for(20ms);
    ASSERT_EQ(::send(fd, req.data() + from, req.size() - from, MSG_NOSIGNAL),
              static_cast<ssize_t>(req.size() - from));
    auto got = read_until(fd, "\"/echo\"}");
    EXPECT_EQ(test::status_of(got), 200) << i << ": " << got;
    EXPECT_NE(got.find(fmt::format("\"n\":\"{}\"", i)), std::string::npos) << i << ": " << got;
    EXPECT_EQ(count_of(got, "HTTP/1.1"), 1) << i << ": " << got;
  }
  ::close(fd);
}

// A connection silent in the middle of a header is cut at the header timeout, one silent after a
// reply at the idle timeout, both without a reply (the sweep cancels the read the server waits in).
TEST(HttpServerKeepAlive, SilentConnectionsAreClosedAtTheHeaderAndIdleTimeouts) {
  auto o = server_harness::short_timeouts();
  o.header_timeout = 300ms;
  o.idle_timeout = 300ms;
  server_harness h(o);
  int half = test::connect_loopback(h.port());
  int idle = test::connect_loopback(h.port());
  ASSERT_GE(half, 0);
  ASSERT_GE(idle, 0);
  std::string part = "GET /echo HTTP/1.1\r\nHo";
  ASSERT_EQ(::send(half, part.data(), part.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(part.size()));
  std::string req = "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(::send(idle, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  auto answered = read_until(idle, "\"/echo\"}");
  EXPECT_EQ(test::status_of(answered), 200) << answered;
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(read_until(half, "never sent"), "");  // read_until returns at the server's close
  EXPECT_EQ(read_until(idle, "never sent"), "");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);  // not our own 5 s bound
  EXPECT_TRUE(test::eventually([&] { return h.connections() == 0; }, 5s));
  ::close(half);
  ::close(idle);
}

// ---------------------------------------------------------------------------------------------
// Malformed requests: 4xx and the connection closed, nothing handled

TEST(HttpServerMalformed, GarbageRequestLineIs400AndCloses) {
  server_harness h;
  auto o = exchange_expecting_close(h.port(), "THIS IS NOT HTTP\r\n\r\n");
  EXPECT_EQ(test::status_of(o.reply), 400) << o.reply;
  EXPECT_TRUE(o.closed_by_server);
}

// A protocol sharing the port (RTSP on a director's): told by its first request line.

TEST(HttpServerForeign, AnRtspRequestGoesToTheForeignHandlerWithTheBytesReadSoFar) {
  server_harness h;
  auto o = exchange_expecting_close(
      h.port(), "OPTIONS rtsp://127.0.0.1/v1/programs/p RTSP/1.0\r\nCSeq: 1\r\n\r\n");
  EXPECT_EQ(o.reply.rfind("RTSP/1.0 200 OK\r\n", 0), 0u) << o.reply;
  EXPECT_NE(o.reply.find("X-Line: OPTIONS rtsp://127.0.0.1/v1/programs/p RTSP/1.0\r\n"),
            std::string::npos)
      << o.reply;
  EXPECT_TRUE(o.closed_by_server);
}

TEST(HttpServerForeign, HttpOnTheSamePortIsUntouchedAndALaterRtspLineIsNotHandedOver) {
  server_harness h;
  // The first request is HTTP: the connection stays HTTP, and a second request line in RTSP is a
  // malformed HTTP request, not a switch of protocol.
  auto raw = raw_exchange(h.port(),
                          "GET /echo?a=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                          "OPTIONS rtsp://x/ RTSP/1.0\r\nCSeq: 2\r\n\r\n");
  EXPECT_EQ(test::status_of(raw), 200) << raw;
  EXPECT_NE(raw.find("HTTP/1.1 400"), std::string::npos) << raw;
  EXPECT_EQ(raw.find("RTSP/1.0 200"), std::string::npos) << raw;
}

TEST(HttpServerForeign, AFirstLineWithoutItsEndOverTheHeaderLimitIsRefusedAsHttp) {
  server_harness h;
  auto o = exchange_expecting_close(h.port(), "GET /" + std::string(9000, 'a'));
  EXPECT_GE(test::status_of(o.reply), 400) << o.reply.substr(0, 200);
  EXPECT_TRUE(o.closed_by_server);
}

TEST(HttpServerMalformed, ContentLengthWithChunkedIs400AndNotHandled) {
  server_harness h;
  auto o = exchange_expecting_close(h.port(),
                                    "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                    "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
  EXPECT_EQ(test::status_of(o.reply), 400) << o.reply;
  EXPECT_TRUE(o.closed_by_server);
  EXPECT_EQ(h.state().posts.load(), 0);
}

TEST(HttpServerMalformed, DuplicateDifferingContentLengthIs400AndNotHandled) {
  server_harness h;
  auto o = exchange_expecting_close(h.port(),
                                    "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                    "Content-Length: 6\r\n\r\nhello!");
  EXPECT_EQ(test::status_of(o.reply), 400) << o.reply;
  EXPECT_TRUE(o.closed_by_server);
  EXPECT_EQ(h.state().posts.load(), 0);
}

TEST(HttpServerMalformed, NulByteInTargetIs400AndCloses) {
  server_harness h;
  std::string req = "GET /items/a";
  req += '\0';
  req += "b/1.ts HTTP/1.1\r\nHost: x\r\n\r\n";
  auto o = exchange_expecting_close(h.port(), req);
  EXPECT_EQ(test::status_of(o.reply), 400) << o.reply;
  EXPECT_TRUE(o.closed_by_server);
}

TEST(HttpServerMalformed, OversizedHeaderIs431AndCloses) {
  server_harness h;
  std::string req =
      "GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(9000, 'a') + "\r\n\r\n";
  auto o = exchange_expecting_close(h.port(), req);
  EXPECT_EQ(test::status_of(o.reply), 431) << o.reply.substr(0, 200);
  EXPECT_TRUE(o.closed_by_server);
}

TEST(HttpServerMalformed, BodyOverRouteLimitIs413AndNotHandled) {
  server_harness h;
  // 200 bytes to a route limited to 100 (below the server-wide largest limit of 4096).
  auto o = exchange_expecting_close(
      h.port(),
      "POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n" + std::string(200, 'x'));
  EXPECT_EQ(test::status_of(o.reply), 413) << o.reply;
  EXPECT_TRUE(o.closed_by_server);
  EXPECT_EQ(h.state().posts.load(), 0);
}

TEST(HttpServerMalformed, ChunkedBodyOverRouteLimitIs413AndNotHandled) {
  server_harness h;
  std::string chunk(150, 'x');
  auto o = exchange_expecting_close(
      h.port(),
      "POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "96\r\n" +
          chunk + "\r\n0\r\n\r\n");
  EXPECT_EQ(test::status_of(o.reply), 413) << o.reply;
  EXPECT_TRUE(o.closed_by_server);
  EXPECT_EQ(h.state().posts.load(), 0);
}

TEST(HttpServerMalformed, BodyOverEveryRouteLimitIs413AndNotHandled) {
  server_harness h;
  // Larger than the largest limit of any route (4096): Beast itself refuses it while reading the
  // header; the client must still learn why.
  auto o = exchange_expecting_close(
      h.port(),
      "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n"
      "tiny");
  EXPECT_EQ(test::status_of(o.reply), 413) << o.reply;
  EXPECT_TRUE(o.closed_by_server);
  EXPECT_EQ(h.state().posts.load(), 0);
}

TEST(HttpServerMalformed, TransferEncodingNotEndingInChunkedIs400AndNotHandled) {
  server_harness h;
  auto o =
      exchange_expecting_close(h.port(),
                               "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"
                               "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(test::status_of(o.reply), 400) << o.reply;
  EXPECT_TRUE(o.closed_by_server);
  EXPECT_EQ(h.state().posts.load(), 0);
}

TEST(HttpServerMalformed, Http11RequestWithoutHostIs400) {
  server_harness h;
  auto o = exchange_expecting_close(h.port(), "GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(test::status_of(o.reply), 400) << o.reply;
}

TEST(HttpServerMalformed, BodyCutShortByClientCloseIsNeverHandled) {
  server_harness h;
  send_and_close(h.port(),
                 "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789");
  // Once the server has let the connection go, the handler must not have run.
  EXPECT_TRUE(test::eventually([&] { return h.connections() == 0; }, 5s));
  EXPECT_EQ(h.state().posts.load(), 0);
  // The server still serves.
  auto r = test::http_get(h.url("/healthz"));
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(h.state().posts.load(), 0);
}

TEST(HttpServerMalformed, BodyCutShortByTimeoutIsNeverHandled) {
  server_harness h;  // body_timeout 1 s
  auto o = exchange_expecting_close(
      h.port(), "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789");
  EXPECT_TRUE(o.closed_by_server);  // the server gave up at its body deadline
  EXPECT_EQ(test::status_of(o.reply), 0) << o.reply;
  EXPECT_EQ(h.state().posts.load(), 0);
}

TEST(HttpServerMalformed, BodyWithinLimitIsHandled) {
  // The counterpart of the refusals above: the same route takes a proper body.
  server_harness h;
  auto r = test::http(V::post, h.url("/upload"), std::string(1000, 'y'));
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(json::parse(r->body).as_object().at("received").to_number<uint64_t>(), 1000u);
  EXPECT_EQ(h.state().posts.load(), 1);
}

TEST(HttpServerMalformed, ExpectContinueIsAnsweredBeforeTheBody) {
  // A client that waits for 100 Continue (curl does, for bodies over 1 KiB) gets it at once.
  server_harness h;
  int fd = test::connect_loopback(h.port());
  ASSERT_GE(fd, 0);
  std::string head =
      "POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
  ASSERT_EQ(::send(fd, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
  char buf[256];
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1) << "no 100 Continue";
  ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)).rfind("HTTP/1.1 100 Continue", 0), 0u);
  ASSERT_EQ(::send(fd, "abc", 3, MSG_NOSIGNAL), 3);
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  n = ::recv(fd, buf, sizeof buf, 0);
  ASSERT_GT(n, 0);
  EXPECT_EQ(test::status_of(std::string(buf, static_cast<size_t>(n))), 200);
  ::close(fd);
  EXPECT_EQ(h.state().posts.load(), 1);
}

// ---------------------------------------------------------------------------------------------
// File replies (sendfile)

TEST(HttpServerFile, WholeFileIsSentExactly) {
  server_harness h;
  auto data = pattern_bytes(3 * 1024 * 1024 + 17);  // beyond the socket buffers: EAGAIN path
  std::ofstream(h.state().file, std::ios::binary) << data;
  auto r = test::http_get(h.url("/file"));
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(r->header("Content-Length"), std::to_string(data.size()));
  EXPECT_TRUE(r->body == data) << "body of " << r->body.size() << " bytes differs";
}

TEST(HttpServerFile, SliceInTheMiddleIsSentExactly) {
  server_harness h;
  auto data = pattern_bytes(100'000);
  std::ofstream(h.state().file, std::ios::binary) << data;
  auto r = test::http_get(h.url("/file?off=12345&len=54321"));
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 200u);
  EXPECT_TRUE(r->body == data.substr(12345, 54321)) << "got " << r->body.size() << " bytes";
}

TEST(HttpServerFile, HeadOnFileGivesLengthWithoutBody) {
  server_harness h;
  auto data = pattern_bytes(5000);
  std::ofstream(h.state().file, std::ios::binary) << data;
  auto raw = raw_exchange(h.port(), "HEAD /file HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(test::status_of(raw), 200);
  EXPECT_NE(headers_of(raw).find("content-length: 5000"), std::string::npos) << raw;
  EXPECT_EQ(body_of(raw), "");
}

TEST(HttpServerFile, KeepAliveContinuesAfterAFileReply) {
  server_harness h;
  auto data = pattern_bytes(1000);
  std::ofstream(h.state().file, std::ios::binary) << data;
  auto raw = raw_exchange(h.port(),
                          "GET /file?off=10&len=20 HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /items/z/3.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(count_of(raw, "HTTP/1.1 200 OK\r\n"), 2) << raw;
  auto second = raw.find("HTTP/1.1 200 OK\r\n", 1);
  ASSERT_NE(second, std::string::npos);
  EXPECT_EQ(body_of(raw.substr(0, second)), data.substr(10, 20));
}

// A file whose pages the kernel may drop: written, made durable (only clean pages are dropped),
// then dropped from the page cache over [off, off + len) (len 0: to the end). False on tmpfs, whose
// pages are the file itself.
bool write_cold(const std::filesystem::path& p, const std::string& data, off_t off = 0,
                off_t len = 0) {
  std::ofstream(p, std::ios::binary) << data;
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  struct statfs fs {};
  bool ok = fd >= 0 && ::fstatfs(fd, &fs) == 0 && fs.f_type != TMPFS_MAGIC && ::fsync(fd) == 0 &&
            ::posix_fadvise(fd, off, len, POSIX_FADV_DONTNEED) == 0;
  ::close(fd);
  return ok;
}

// Holds every read of a file into the page cache (set_file_load_hook) until released.
struct held_loads {
  std::promise<void> entered_p, release_p;
  std::future<void> entered = entered_p.get_future();
  std::shared_future<void> release = release_p.get_future().share();
  std::atomic<bool> first{true};
  held_loads() {
    set_file_load_hook([this] {
      if (first.exchange(false)) {
        entered_p.set_value();
      }
      release.wait();
    });
  }
  ~held_loads() { set_file_load_hook({}); }
};

TEST(HttpServerFile, AFileNotInThePageCacheIsReadOffTheLoopWhileOthersAreServed) {
  server_harness h;
  auto data = pattern_bytes(5 * 1024 * 1024 + 5);
  if (!write_cold(h.state().file, data)) {
    GTEST_SKIP() << "the test directory's filesystem keeps its pages";
  }
  uint64_t loads_before = file_loads_off_loop();
  held_loads held;
  auto cold = std::async(std::launch::async, [&] { return test::http_get(h.url("/file")); });
  ASSERT_EQ(held.entered.wait_for(20s), std::future_status::ready) << "no read off the loop";
  // The cold reply waits on its (held) disk read; the loop answers others meanwhile.
  auto other = test::http_get(h.url("/echo?x=1"));
  ASSERT_TRUE(other) << other.err().detail;
  EXPECT_EQ(other->status, 200u);
  EXPECT_EQ(cold.wait_for(0s), std::future_status::timeout);
  held.release_p.set_value();
  auto r = cold.get();
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_TRUE(r->body == data) << "body of " << r->body.size() << " bytes differs";
  EXPECT_GE(file_loads_off_loop(), loads_before + 1);
}

TEST(HttpServerFile, ASliceHalfInTheCacheIsSentExactlyAcrossTheBoundaries) {
  server_harness h;
  auto data = pattern_bytes(8 * 1024 * 1024);
  // The middle dropped (whole 2 MiB folios: the kernel drops no folio partly outside the range),
  // the rest kept: cached, cold, cached.
  if (!write_cold(h.state().file, data, 2 << 20, 4 << 20)) {
    GTEST_SKIP() << "the test directory's filesystem keeps its pages";
  }
  uint64_t loads_before = file_loads_off_loop();
  auto r = test::http_get(h.url("/file?off=1000&len=8000000"));
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_TRUE(r->body == data.substr(1000, 8'000'000)) << "got " << r->body.size() << " bytes";
  EXPECT_GE(file_loads_off_loop(), loads_before + 1);
  // Now all of it is in the cache: no read off the loop.
  uint64_t loads_warm = file_loads_off_loop();
  r = test::http_get(h.url("/file"));
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_TRUE(r->body == data);
  EXPECT_EQ(file_loads_off_loop(), loads_warm);
}

// ---------------------------------------------------------------------------------------------
// /healthz and /metrics

TEST(HttpServerBuiltins, HealthzAnswersOk) {
  server_harness h;
  auto r = test::http_get(h.url("/healthz"));
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 200u);
  auto o = json::parse(r->body).as_object();
  EXPECT_EQ(o.at("status").as_string(), "ok");
  EXPECT_EQ(o.at("daemon").as_string(), "test");
}

TEST(HttpServerBuiltins, MetricsArePrometheusTextCountingRequests) {
  server_harness h;
  ASSERT_TRUE(test::http_get(h.url("/healthz")));
  ASSERT_TRUE(test::http_get(h.url("/nope")));
  auto r = test::http_get(h.url("/metrics"));
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(r->header("Content-Type").rfind("text/plain", 0), 0u) << r->header("Content-Type");
  EXPECT_NE(r->body.find("# TYPE vodgrid_http_requests_total counter\n"), std::string::npos)
      << r->body;
  EXPECT_NE(r->body.find("vodgrid_http_requests_total{code=\"2xx\"} 1\n"), std::string::npos)
      << r->body;
  EXPECT_NE(r->body.find("vodgrid_http_requests_total{code=\"4xx\"} 1\n"), std::string::npos)
      << r->body;
}

// ---------------------------------------------------------------------------------------------
// Two-phase stop

TEST(HttpServerStop, RequestInFlightCompletesAndStopWaitsForIt) {
  server_harness h;
  auto in_flight = std::async(std::launch::async, [&] {
    return raw_exchange(h.port(), "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", 5s);
  });
  ASSERT_TRUE(test::eventually([&] { return h.state().slow_started.load() == 1; }, 5s));
  auto stopped = h.stop(2s);
  auto raw = in_flight.get();
  EXPECT_EQ(test::status_of(raw), 200) << raw;
  EXPECT_EQ(body_of(raw), "slow done");
  // The reply tells the client the connection ends (the server is stopping).
  EXPECT_NE(headers_of(raw).find("connection: close"), std::string::npos) << raw;
  ASSERT_EQ(stopped.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(h.state().slow_done.load(), 1);
}

TEST(HttpServerStop, NewConnectionsAreRefusedAfterStop) {
  server_harness h;
  ASSERT_TRUE(test::port_is_listening(h.port()));
  ASSERT_EQ(h.stop(1s).wait_for(5s), std::future_status::ready);
  EXPECT_FALSE(test::port_is_listening(h.port()));
}

TEST(HttpServerStop, IdleKeepAliveConnectionIsClosedAtOnce) {
  server_harness h;
  // A keep-alive client that got its reply and stays idle must not hold up the stop until the
  // drain bound, and sees its connection closed.
  int fd = test::connect_loopback(h.port());
  ASSERT_GE(fd, 0);
  std::string req = "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  std::string got;
  char buf[4096];
  while (got.find("\"/echo\"}") == std::string::npos) {  // the end of the JSON body
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    ASSERT_GT(n, 0);
    got.append(buf, static_cast<size_t>(n));
  }
  EXPECT_EQ(test::status_of(got), 200);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(h.stop(3s).wait_for(5s), std::future_status::ready);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  EXPECT_EQ(::recv(fd, buf, sizeof buf, 0), 0);  // closed by the server, nothing more sent
  ::close(fd);
}

// ---------------------------------------------------------------------------------------------
// The client against a peer that stops sending (a SIGSTOPped engine, issue 10): every read has a
// deadline of its own, so the exchange ends long before the whole-request deadline.

namespace {

// A one-connection raw server on a thread: reads the request, writes `head_and_body` in `pieces`
// equal parts `gap` apart, then holds the connection open and silent until destroyed.
class trickling_peer {
 public:
  trickling_peer(std::string bytes, int pieces, std::chrono::milliseconds gap)
      : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    auto addr = test::loopback(0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, 4)) {
      throw std::runtime_error("trickling_peer: bind");
    }
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this, bytes = std::move(bytes), pieces, gap] {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) {
        return;
      }
      char buf[4096];
      (void)::recv(c, buf, sizeof buf, 0);  // the request: one small write
      size_t step = (bytes.size() + pieces - 1) / pieces;
      for (size_t off = 0; off < bytes.size() && !done_; off += step) {
        (void)::send(c, bytes.data() + off, std::min(step, bytes.size() - off), MSG_NOSIGNAL);
        std::this_thread::sleep_for(gap);
      }
      while (!done_) {
        std::this_thread::sleep_for(10ms);
      }
      ::close(c);
    });
  }
  ~trickling_peer() {
    done_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  std::string url() const { return fmt::format("http://127.0.0.1:{}/x", port_); }

 private:
  int fd_;
  uint16_t port_ = 0;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

std::string reply_of(size_t body_bytes) {
  return fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}", body_bytes,
                     std::string(body_bytes, 'v'));
}

struct timed_result {
  result<client_response> r;
  std::chrono::milliseconds took;
};

timed_result client_get(const std::string& url, client_options o, bool into) {
  asio::io_context io;
  auto t0 = std::chrono::steady_clock::now();
  auto f = asio::co_spawn(
      io,
      [](std::string u, client_options opts,
         bool into) -> asio::awaitable<result<client_response>> {
        http_client c(co_await asio::this_coro::executor, opts);
        if (!into) {
          co_return co_await c.get(u);
        }
        auto place = std::make_shared<std::string>(1 << 20, '\0');
        http_client::body_sink sink;
        sink.on_head = [place](const client_response&) -> result<std::span<char>> {
          return std::span<char>(place->data(), place->size());
        };
        sink.on_data = [](size_t) {};
        co_return co_await c.get_into(u, {}, std::move(sink));
      }(url, o, into),
      asio::use_future);
  io.run();
  auto r = f.get();
  return {std::move(r), std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - t0)};
}

}  // namespace

TEST(HttpClientDeadlines, APeerSilentMidBodyTimesOutAtTheReadDeadline) {
  // Half the body, then silence: the whole-request deadline (30 s) is far away.
  auto whole = reply_of(20000);
  client_options o;
  o.request_timeout = 30s;
  o.read_timeout = 300ms;
  for (bool into : {false, true}) {
    trickling_peer peer(whole.substr(0, whole.size() / 2), 1, 0ms);
    auto t = client_get(peer.url(), o, into);
    ASSERT_FALSE(t.r) << (into ? "get_into" : "get");
    EXPECT_EQ(t.r.err().code, errc::timeout) << t.r.err().detail;
    EXPECT_LT(t.took, 5s);
    EXPECT_GE(t.took, 250ms);
  }
}

TEST(HttpClientDeadlines, APeerSilentBeforeItsHeadTimesOutInGetInto) {
  trickling_peer peer("", 1, 0ms);  // reads the request, never answers
  client_options o;
  o.request_timeout = 30s;
  o.read_timeout = 300ms;
  auto t = client_get(peer.url(), o, true);
  ASSERT_FALSE(t.r);
  EXPECT_EQ(t.r.err().code, errc::timeout) << t.r.err().detail;
  EXPECT_LT(t.took, 5s);
}

TEST(HttpClientDeadlines, ASlowButSteadyPeerIsReadToTheEnd) {
  // Ten pieces 150 ms apart: 1.5 s in all, each gap well within the 600 ms read deadline.
  trickling_peer peer(reply_of(5000), 10, 150ms);
  client_options o;
  o.request_timeout = 30s;
  o.read_timeout = 600ms;
  auto t = client_get(peer.url(), o, false);
  ASSERT_TRUE(t.r) << t.r.err().detail;
  EXPECT_EQ(t.r->status, 200u);
  EXPECT_EQ(t.r->body, std::string(5000, 'v'));
  EXPECT_GE(t.took, 1s);
}

}  // namespace
}  // namespace vodgrid::net
