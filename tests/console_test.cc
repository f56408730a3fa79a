// The HTTP console (issue 15): segment bodies streamed in bounded pieces and hashed as they arrive
// (a corrupt one still caught), viewers over several threads whose merged report matches what the
// server saw, and `vodgrid play --threads` refused when bad. Against a small station in-process: a
// "director" that answers the playlist, the manifest and 302s, and an "engine" serving the bytes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "api/api.h"
#include "api/hls.h"
#include "console/player.h"
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
  std::optional<size_t> corrupt;  // this segment is served with its last byte changed
  std::atomic<uint64_t> redirects{0};
  std::atomic<uint64_t> segment_gets{0};
  std::atomic<uint64_t> bytes_sent{0};
};

class fake_station {
 public:
  // `count` segments of `size` bytes, 4 s each, of program "film".
  fake_station(size_t count, size_t size) {
    st_->manifest.id = *program_id::parse("film");
    st_->manifest.title = "Film";
    st_->manifest.state = "ready";
    for (size_t i = 0; i < count; ++i) {
      st_->segments.push_back(segment_bytes(size, static_cast<uint32_t>(i)));
      api::segment_entry e;
      e.index.v = static_cast<uint32_t>(i);
      e.duration = 4;
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
                     net::reply r;
                     r.content_type = "video/mp2t";
                     r.body = st->segments[n->v];
                     if (st->corrupt == n->v) {
                       r.body.back() = static_cast<char>(r.body.back() ^ 0x01);
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
  a.merge(b);
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
  EXPECT_EQ(r.media_seconds, 16);
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

}  // namespace
}  // namespace vodgrid::console
