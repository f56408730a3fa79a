// Integration tests of one station of real daemons (a director and its engines as child processes
// on free loopback ports): the engine's segment API and ranges, hostile paths, the loader, the
// director's playlists and redirects, selection by load, heartbeats, restarts and bad input.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "api/api.h"
#include "base/fs.h"
#include "base/sha256.h"
#include "support/support.h"

namespace vodgrid::test {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using V = boost::beast::http::verb;
using opts = station_fixture::options;

// ---------------------------------------------------------------------------------------------
// Helpers

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) {
    c = static_cast<char>(rng() & 0xff);
  }
  return s;
}

std::string hex_of(std::string_view data) {
  return to_hex(sha256(data));
}

uint16_t port_of(const std::string& url) {
  return static_cast<uint16_t>(std::stoi(url.substr(url.rfind(':') + 1)));
}

std::string seg_url(const std::string& engine, const std::string& program, const std::string& n) {
  return fmt::format("{}/v1/segments/{}/{}.ts", engine, program, n);
}

result<net::client_response> put(const std::string& url, const std::string& body,
                                 const std::string& digest_hex) {
  return http(V::put, url, body, {{api::sha256_header, digest_hex}});
}

// The body of a raw HTTP response (after the blank line), "" if none.
std::string body_of(const std::string& raw) {
  auto p = raw.find("\r\n\r\n");
  return p == std::string::npos ? std::string() : raw.substr(p + 4);
}

std::string lower(std::string s) {
  for (char& c : s) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return s;
}

std::vector<fs::path> files_under(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    return out;
  }
  for (auto& e : fs::recursive_directory_iterator(dir, ec)) {
    if (!e.is_directory()) {
      out.push_back(e.path());
    }
  }
  return out;
}

// Files of `program` under seg/ and any file under tmp/ in every data directory of engine `e`.
std::vector<fs::path> stored_files(const station_fixture& st, int e, const std::string& program) {
  std::vector<fs::path> out;
  for (auto& d : fs::directory_iterator(st.data() / st.engine_name(e))) {
    if (!d.is_directory()) {
      continue;
    }
    for (auto& f : files_under(d.path() / "seg" / program)) {
      out.push_back(f);
    }
    for (auto& f : files_under(d.path() / "tmp")) {
      out.push_back(f);
    }
  }
  return out;
}

json::object get_object(const std::string& url) {
  auto r = http_get(url);
  if (!r) {
    throw std::runtime_error(url + ": " + r.err().detail);
  }
  if (r->status != 200) {
    throw std::runtime_error(fmt::format("{}: {} {}", url, r->status, r->body));
  }
  return json::parse(r->body).as_object();
}

// An engine's open HTTP connections, from its /metrics (the asking connection included).
int open_connections(const std::string& url) {
  auto r = http_get(url + "/metrics");
  if (!r || r->status != 200) {
    return -1;
  }
  auto p = r->body.find("\nvodgrid_http_connections ");
  if (p == std::string::npos) {
    return -1;
  }
  return std::stoi(r->body.substr(p + 26));
}

// Sends `request` to 127.0.0.1:port, reads at least `want` bytes of the reply (or until 5 s pass),
// then closes the connection with the rest unread.
std::string read_some_then_close(uint16_t port, const std::string& request, size_t want) {
  int fd = connect_loopback(port);
  std::string out;
  if (fd >= 0 && ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
                     static_cast<ssize_t>(request.size())) {
    char buf[4096];
    while (out.size() < want) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) {
        break;
      }
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) {
        break;
      }
      out.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  return out;
}

bool healthy(const std::string& url) {
  auto r = http_get(url + "/healthz");
  return r && r->status == 200;
}

// A sample program made by ffmpeg: the playlist and each segment's bytes, in order.
struct sample {
  fs::path playlist;
  std::vector<std::string> segments;
};

sample make_program(const fs::path& dir, int seconds = 4) {
  sample s;
  s.playlist = make_sample(dir, seconds, 1);
  std::ifstream in(s.playlist);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != '#') {
      s.segments.push_back(*read_file(dir / line));
    }
  }
  return s;
}

// Makes a sample and ingests it as `id`; fails the test if the ingest fails.
sample ingest_sample(station_fixture& st, const fs::path& dir, const std::string& id,
                     int seconds = 4) {
  auto s = make_program(dir, seconds);
  auto r = st.ingest(s.playlist.parent_path().string(), id);
  EXPECT_EQ(r.status, 0) << r.err << "\ndirector log:\n" << st.log_of("st");
  return s;
}

struct redirect_result {
  unsigned status = 0;
  std::string location;
  std::string retry_after;
};

redirect_result ask_segment(const station_fixture& st, const std::string& id, size_t n) {
  auto r = http_get(fmt::format("{}/v1/programs/{}/segments/{}.ts", st.director_url(), id, n));
  if (!r) {
    return {};
  }
  return {r->status, r->header("Location"), r->header("Retry-After")};
}

// The index of the engine a Location points at, -1 if none.
int engine_of(const station_fixture& st, int engines, const std::string& location) {
  for (int i = 0; i < engines; ++i) {
    if (location.rfind(st.engine_url(i) + "/", 0) == 0) {
      return i;
    }
  }
  return -1;
}

// The entry of engine `name` in the director's GET /v1/engines, empty if absent.
json::object engine_entry(const station_fixture& st, const std::string& name) {
  auto o = get_object(st.director_url() + "/v1/engines");
  for (auto& e : o.at("engines").as_array()) {
    if (e.as_object().at("name").as_string() == name) {
      return e.as_object();
    }
  }
  return {};
}

std::set<std::string> engine_names_listed(const station_fixture& st) {
  std::set<std::string> out;
  auto o = get_object(st.director_url() + "/v1/engines");
  for (auto& e : o.at("engines").as_array()) {
    out.insert(std::string(e.as_object().at("name").as_string()));
  }
  return out;
}

// "program/index" of every segment engine `e` says it holds.
std::set<std::string> inventory(const station_fixture& st, int e) {
  std::set<std::string> out;
  auto o = get_object(st.engine_url(e) + "/v1/segments");
  for (auto& s : o.at("segments").as_array()) {
    auto& so = s.as_object();
    out.insert(fmt::format("{}/{}", std::string(so.at("program").as_string()),
                           so.at("index").to_number<uint64_t>()));
  }
  return out;
}

// The director's program list entry for `id`, empty if absent.
json::object program_entry(const station_fixture& st, const std::string& id) {
  auto o = get_object(st.director_url() + "/v1/programs");
  for (auto& p : o.at("programs").as_array()) {
    if (p.as_object().at("id").as_string() == id) {
      return p.as_object();
    }
  }
  return {};
}

int lines_in(const std::string& s) {
  int n = 0;
  for (char c : s) {
    n += c == '\n' ? 1 : 0;
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// Engine: PUT, GET, HEAD, DELETE of a segment

class StationEngineSegment : public ::testing::Test {
 protected:
  station_fixture st{opts{.engines = 1, .copies = 1}};
  std::string data = random_bytes(1000, 7);
  std::string url = seg_url(st.engine_url(0), "prog", "3");
};

TEST_F(StationEngineSegment, PutWithoutDigestHeaderIs400AndStoresNothing) {
  auto r = http(V::put, url, data);
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 400u) << r->body;
  EXPECT_EQ(json::parse(r->body).as_object().at("error").as_string(), "invalid_argument");
  auto g = http_get(url);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->status, 404u);
  EXPECT_TRUE(stored_files(st, 0, "prog").empty());
}

TEST_F(StationEngineSegment, PutWithMalformedDigestHeaderIs400) {
  for (std::string bad :
       {hex_of(data).substr(1), hex_of(data) + "0", std::string(64, 'g'), std::string("")}) {
    SCOPED_TRACE(bad);
    auto r = put(url, data, bad);
    ASSERT_TRUE(r) << r.err().detail;
    EXPECT_EQ(r->status, 400u) << r->body;
  }
  EXPECT_TRUE(stored_files(st, 0, "prog").empty());
}

TEST_F(StationEngineSegment, PutWithWrongDigestIs422AndLeavesNothing) {
  auto r = put(url, data, hex_of("something else"));
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 422u) << r->body;
  EXPECT_EQ(json::parse(r->body).as_object().at("error").as_string(), "digest_mismatch");
  auto g = http_get(url);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->status, 404u);
  EXPECT_TRUE(stored_files(st, 0, "prog").empty());
  EXPECT_TRUE(inventory(st, 0).empty());
}

TEST_F(StationEngineSegment, PutThenGetReturnsTheSameBytesAndDigest) {
  auto r = put(url, data, hex_of(data));
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 201u) << r->body;
  auto g = http_get(url);
  ASSERT_TRUE(g) << g.err().detail;
  EXPECT_EQ(g->status, 200u);
  EXPECT_TRUE(g->body == data);
  EXPECT_EQ(g->header(api::sha256_header), hex_of(data));
  EXPECT_EQ(g->header("Content-Type"), "video/mp2t");
  EXPECT_EQ(inventory(st, 0), std::set<std::string>{"prog/3"});
}

TEST_F(StationEngineSegment, SecondPutOfTheSameSegmentIs200) {
  ASSERT_EQ(put(url, data, hex_of(data))->status, 201u);
  auto r = put(url, data, hex_of(data));
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 200u) << r->body;
}

TEST_F(StationEngineSegment, PutOfOtherBytesAtAHeldKeyIs409AndKeepsTheFirst) {
  ASSERT_EQ(put(url, data, hex_of(data))->status, 201u);
  std::string other = random_bytes(1000, 8);
  auto r = put(url, other, hex_of(other));
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 409u) << r->body;
  auto g = http_get(url);
  ASSERT_TRUE(g);
  EXPECT_TRUE(g->body == data);
}

TEST_F(StationEngineSegment, HeadGivesContentLengthWithoutBody) {
  ASSERT_EQ(put(url, data, hex_of(data))->status, 201u);
  auto raw =
      raw_exchange(port_of(st.engine_url(0)),
                   "HEAD /v1/segments/prog/3.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_of(raw), 200) << raw;
  EXPECT_NE(lower(raw).find("\r\ncontent-length: 1000\r\n"), std::string::npos) << raw;
  EXPECT_NE(lower(raw).find("\r\nx-vodgrid-sha256: " + hex_of(data) + "\r\n"), std::string::npos)
      << raw;
  EXPECT_EQ(body_of(raw), "");
}

TEST_F(StationEngineSegment, DeleteIs204ThenGetIs404) {
  ASSERT_EQ(put(url, data, hex_of(data))->status, 201u);
  auto d = http(V::delete_, url);
  ASSERT_TRUE(d) << d.err().detail;
  EXPECT_EQ(d->status, 204u);
  auto g = http_get(url);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->status, 404u);
  EXPECT_TRUE(stored_files(st, 0, "prog").empty());
  auto again = http(V::delete_, url);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 404u);
}

TEST_F(StationEngineSegment, PutCutShortStoresNothing) {
  uint16_t port = port_of(st.engine_url(0));
  // 10 bytes of a promised 1000, then the client gives up and closes.
  raw_exchange(
      port,
      fmt::format("PUT /v1/segments/prog/3.ts HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                  "{}: {}\r\n\r\n{}",
                  api::sha256_header, hex_of(data), data.substr(0, 10)),
      300ms);
  // Once the engine has let that connection go (only ours to /metrics is left), nothing is held.
  EXPECT_TRUE(eventually([&] { return open_connections(st.engine_url(0)) == 1; }, 5s));
  auto g = http_get(url);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->status, 404u);
  EXPECT_TRUE(stored_files(st, 0, "prog").empty());
  EXPECT_TRUE(inventory(st, 0).empty());
}

TEST_F(StationEngineSegment, OversizedPutIs413AndStoresNothing) {
  auto raw = raw_exchange(port_of(st.engine_url(0)),
                          fmt::format("PUT /v1/segments/prog/3.ts HTTP/1.1\r\nHost: x\r\n"
                                      "Content-Length: 999999999999\r\n{}: {}\r\n\r\ntiny",
                                      api::sha256_header, hex_of(data)));
  EXPECT_EQ(status_of(raw), 413) << raw;
  auto g = http_get(url);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->status, 404u);
  EXPECT_TRUE(stored_files(st, 0, "prog").empty());
}

TEST_F(StationEngineSegment, OversizedChunkedPutIs413AndStoresNothing) {
  // A chunk larger than max_segment_bytes (64 MiB) announced up front.
  auto raw = raw_exchange(port_of(st.engine_url(0)),
                          fmt::format("PUT /v1/segments/prog/3.ts HTTP/1.1\r\nHost: x\r\n"
                                      "Transfer-Encoding: chunked\r\n{}: {}\r\n\r\n"
                                      "10000000\r\n{}",
                                      api::sha256_header, hex_of(data), data));
  EXPECT_EQ(status_of(raw), 413) << raw;
  auto g = http_get(url);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->status, 404u);
  EXPECT_TRUE(stored_files(st, 0, "prog").empty());
}

// ---------------------------------------------------------------------------------------------
// Engine: ranges on GET

class StationEngineRange : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = put(url, data, hex_of(data));
    ASSERT_TRUE(r) << r.err().detail;
    ASSERT_EQ(r->status, 201u) << r->body;
  }
  result<net::client_response> get_range(const std::string& range) {
    return http_get(url, {{"Range", range}});
  }
  station_fixture st{opts{.engines = 1, .copies = 1}};
  std::string data = random_bytes(1000, 11);
  std::string url = seg_url(st.engine_url(0), "prog", "0");
};

TEST_F(StationEngineRange, FirstHundredBytes) {
  auto r = get_range("bytes=0-99");
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 206u);
  EXPECT_EQ(r->header("Content-Range"), "bytes 0-99/1000");
  EXPECT_TRUE(r->body == data.substr(0, 100));
}

TEST_F(StationEngineRange, MiddleSlice) {
  auto r = get_range("bytes=500-749");
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 206u);
  EXPECT_EQ(r->header("Content-Range"), "bytes 500-749/1000");
  EXPECT_TRUE(r->body == data.substr(500, 250));
}

TEST_F(StationEngineRange, SuffixGivesTheLastBytes) {
  auto r = get_range("bytes=-10");
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 206u);
  EXPECT_EQ(r->header("Content-Range"), "bytes 990-999/1000");
  EXPECT_TRUE(r->body == data.substr(990));
}

TEST_F(StationEngineRange, OpenEndedGivesTheRest) {
  auto r = get_range("bytes=10-");
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 206u);
  EXPECT_EQ(r->header("Content-Range"), "bytes 10-999/1000");
  EXPECT_TRUE(r->body == data.substr(10));
}

TEST_F(StationEngineRange, LargestLastPositionGivesTheWhole) {
  auto r = get_range("bytes=0-18446744073709551615");
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 206u);
  EXPECT_EQ(r->header("Content-Range"), "bytes 0-999/1000");
  EXPECT_TRUE(r->body == data);
}

TEST_F(StationEngineRange, BeyondTheEndIs416WithTheSize) {
  auto r = get_range("bytes=99999999-");
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 416u);
  EXPECT_EQ(r->header("Content-Range"), "bytes */1000");
}

TEST_F(StationEngineRange, ReversedRangeIsIgnored) {
  auto r = get_range("bytes=5-1");
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(r->header("Content-Range"), "");
  EXPECT_TRUE(r->body == data);
}

TEST_F(StationEngineRange, ManyRangesAreServedWhole) {
  std::string h = "bytes=";
  for (int i = 0; i < 60; ++i) {
    h += fmt::format("{}{}-{}", i ? "," : "", 2 * i, 2 * i + 1);
  }
  auto r = get_range(h);
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 200u);
  EXPECT_TRUE(r->body == data);
}

TEST_F(StationEngineRange, IfRangeWithAnotherValidatorGivesTheWhole) {
  auto r = http_get(url, {{"Range", "bytes=0-99"}, {"If-Range", "\"not-our-etag\""}});
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 200u);
  EXPECT_TRUE(r->body == data);
  auto same = http_get(url, {{"Range", "bytes=0-99"}, {"If-Range", "\"" + hex_of(data) + "\""}});
  ASSERT_TRUE(same) << same.err().detail;
  EXPECT_EQ(same->status, 206u);
}

TEST_F(StationEngineRange, HostileRangeHeadersNeverCrashTheEngine) {
  for (std::string h : std::vector<std::string>{
           "bytes=", "bytes=-", "bytes=--1", "bytes=-0", "bytes=0--1", "bytes=1-2-3", "bytes=a-b",
           "bytes=-18446744073709551616", "bytes=18446744073709551615-18446744073709551615",
           "bytes=99999999999999999999999999-", "bytes=0-0,-1", "items=0-10", "bytes 0-10",
           std::string(4000, '-'), "bytes=" + std::string(4000, '9') + "-"}) {
    SCOPED_TRACE(h.substr(0, 60));
    auto r = get_range(h);
    ASSERT_TRUE(r) << r.err().detail;
    EXPECT_TRUE(r->status == 200 || r->status == 206 || r->status == 416) << r->status;
    if (r->status == 200) {
      EXPECT_TRUE(r->body == data);
    }
  }
  EXPECT_TRUE(healthy(st.engine_url(0)));
}

TEST_F(StationEngineRange, StreamsAreCountedBackAfterEveryKindOfReply) {
  for (std::string h : {"bytes=0-99", "bytes=99999999-", "bytes=5-1", ""}) {
    auto r = h.empty() ? http_get(url) : get_range(h);
    ASSERT_TRUE(r) << r.err().detail;
  }
  raw_exchange(port_of(st.engine_url(0)),
               "HEAD /v1/segments/prog/0.ts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(eventually(
      [&] {
        return get_object(st.engine_url(0) + "/healthz").at("active_streams").to_number<int>() == 0;
      },
      5s));
}

TEST(StationEngineStreams, ClientLeavingMidSegmentReleasesTheStream) {
  station_fixture st(opts{.engines = 1, .copies = 1});
  std::string big = random_bytes(24 << 20, 9);  // far beyond the socket buffers
  auto url = seg_url(st.engine_url(0), "prog", "0");
  auto r = put(url, big, hex_of(big));
  ASSERT_TRUE(r) << r.err().detail;
  ASSERT_EQ(r->status, 201u);
  uint16_t port = port_of(st.engine_url(0));
  for (int i = 0; i < 3; ++i) {
    // Read the first bytes of the reply, then go away.
    auto got =
        read_some_then_close(port, "GET /v1/segments/prog/0.ts HTTP/1.1\r\nHost: x\r\n\r\n", 4096);
    EXPECT_EQ(status_of(got), 200);
    EXPECT_LT(got.size(), big.size());
  }
  EXPECT_TRUE(eventually(
      [&] {
        return get_object(st.engine_url(0) + "/healthz").at("active_streams").to_number<int>() == 0;
      },
      5s));
  EXPECT_TRUE(healthy(st.engine_url(0)));
}

// ---------------------------------------------------------------------------------------------
// Hostile paths

std::vector<std::string> hostile_engine_targets() {
  return {"/v1/segments/../etc/passwd",
          "/v1/segments/../../../../etc/passwd",
          "/v1/segments/%2e%2e/1.ts",
          "/v1/segments/%2e%2e/%2e%2e/etc/passwd",
          "/v1/segments/..%2f..%2fetc/1.ts",
          "/v1/segments/prog/..%2f..%2fetc%2fpasswd.ts",
          "/v1/segments/a%00b/1.ts",
          "/v1/segments/a\\b/1.ts",
          "/v1/segments/..\\..\\etc/1.ts",
          "/v1/segments/prog/01.ts",
          "/v1/segments/prog/-1.ts",
          "/v1/segments/prog/99999999999999999999.ts",
          "/v1/segments/prog/1000000.ts",
          "/v1/segments/prog/%31.ts",
          "/v1/segments/prog/+1.ts",
          "/v1/segments/-prog/1.ts",
          "/v1/segments/" + std::string(65, 'a') + "/1.ts",
          "/v1/segments//1.ts",
          "/v1/segments/prog/.ts"};
}

TEST(StationHostilePaths, EngineRefusesThemAndStaysUp) {
  station_fixture st(opts{.engines = 1, .copies = 1});
  std::string data = random_bytes(500, 3);
  ASSERT_EQ(put(seg_url(st.engine_url(0), "prog", "1"), data, hex_of(data))->status, 201u);
  uint16_t port = port_of(st.engine_url(0));
  for (auto& target : hostile_engine_targets()) {
    for (std::string method : {"GET", "HEAD", "DELETE"}) {
      SCOPED_TRACE(method + " " + target);
      auto raw = raw_exchange(
          port, method + " " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
      int s = status_of(raw);
      EXPECT_TRUE(s == 400 || s == 404) << raw.substr(0, 300);
      EXPECT_EQ(raw.find("root:"), std::string::npos);
    }
  }
  EXPECT_TRUE(healthy(st.engine_url(0)));
  // The real segment is untouched by the hostile DELETEs.
  auto g = http_get(seg_url(st.engine_url(0), "prog", "1"));
  ASSERT_TRUE(g);
  EXPECT_EQ(g->status, 200u);
  EXPECT_TRUE(g->body == data);
}

TEST(StationHostilePaths, EngineRefusesHostilePuts) {
  station_fixture st(opts{.engines = 1, .copies = 1});
  std::string data = random_bytes(500, 4);
  uint16_t port = port_of(st.engine_url(0));
  for (auto& target : hostile_engine_targets()) {
    SCOPED_TRACE(target);
    auto raw = raw_exchange(
        port, fmt::format("PUT {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{}: {}\r\n"
                          "Content-Length: {}\r\n\r\n{}",
                          target, api::sha256_header, hex_of(data), data.size(), data));
    int s = status_of(raw);
    EXPECT_TRUE(s == 400 || s == 404 || s == 405) << raw.substr(0, 300);
  }
  EXPECT_TRUE(healthy(st.engine_url(0)));
  EXPECT_TRUE(inventory(st, 0).empty());
  // Nothing was written anywhere under the test's folder outside the data directories' layout.
  for (auto& f : files_under(st.data())) {
    auto rel = fs::relative(f, st.data()).string();
    EXPECT_TRUE(rel.find("/seg/") == std::string::npos) << rel;
  }
}

TEST(StationHostilePaths, DirectorRefusesThemAndStaysUp) {
  station_fixture st(opts{.engines = 2, .copies = 1});
  temp_dir dir;
  auto s = ingest_sample(st, dir.path(), "prog", 2);
  ASSERT_FALSE(HasFailure());
  uint16_t port = port_of(st.director_url());
  std::vector<std::string> targets = {"/v1/programs/../etc/passwd",
                                      "/v1/programs/../../../../etc/passwd",
                                      "/v1/programs/%2e%2e/index.m3u8",
                                      "/v1/programs/%2e%2e/segments/1.ts",
                                      "/v1/programs/..%2f..%2fetc/index.m3u8",
                                      "/v1/programs/a%00b/index.m3u8",
                                      "/v1/programs/a%00b/segments/1.ts",
                                      "/v1/programs/a\\b/segments/1.ts",
                                      "/v1/programs/prog/segments/01.ts",
                                      "/v1/programs/prog/segments/-1.ts",
                                      "/v1/programs/prog/segments/99999999999999999999.ts",
                                      "/v1/programs/prog/segments/%30.ts",
                                      "/v1/programs/prog/segments/..%2f0.ts",
                                      "/v1/programs/prog/segments/0.ts/..",
                                      "/v1/programs/" + std::string(65, 'a') + "/index.m3u8",
                                      "/v1/engines/../programs",
                                      "/v1/engines/%2e%2e"};
  for (auto& target : targets) {
    SCOPED_TRACE(target);
    auto raw =
        raw_exchange(port, "GET " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    int code = status_of(raw);
    EXPECT_TRUE(code == 400 || code == 404) << raw.substr(0, 300);
    EXPECT_EQ(raw.find("root:"), std::string::npos);
  }
  EXPECT_TRUE(healthy(st.director_url()));
  // The real program still plays.
  EXPECT_EQ(ask_segment(st, "prog", 0).status, 302u);
  EXPECT_EQ(program_entry(st, "prog").at("state").as_string(), "ready");
}

// ---------------------------------------------------------------------------------------------
// Director: ingest, playlist, redirects

TEST(StationDirector, IngestLoadsTheProgramAndThePlaylistListsEverySegment) {
  station_fixture st;
  temp_dir dir;
  auto s = ingest_sample(st, dir.path(), "movie");
  ASSERT_FALSE(HasFailure());
  ASSERT_GE(s.segments.size(), 2u);
  auto r = http_get(st.director_url() + "/v1/programs/movie/index.m3u8");
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(r->header("Content-Type"), "application/vnd.apple.mpegurl");
  EXPECT_EQ(r->body.rfind("#EXTM3U\n", 0), 0u) << r->body;
  EXPECT_NE(r->body.find("#EXT-X-PLAYLIST-TYPE:VOD\n"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("#EXT-X-ENDLIST"), std::string::npos) << r->body;
  std::vector<std::string> uris;
  std::istringstream in(r->body);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != '#') {
      uris.push_back(line);
    }
  }
  ASSERT_EQ(uris.size(), s.segments.size()) << r->body;
  for (size_t i = 0; i < uris.size(); ++i) {
    EXPECT_EQ(uris[i], fmt::format("segments/{}.ts", i));
  }
  auto entry = program_entry(st, "movie");
  ASSERT_FALSE(entry.empty());
  EXPECT_EQ(entry.at("state").as_string(), "ready");
  EXPECT_EQ(entry.at("segments").to_number<uint64_t>(), s.segments.size());
}

TEST(StationDirector, RedirectsLeadToEnginesServingTheManifestBytes) {
  station_fixture st;  // 3 engines, 2 copies
  temp_dir dir;
  auto s = ingest_sample(st, dir.path(), "movie");
  ASSERT_FALSE(HasFailure());
  auto manifest = get_object(st.director_url() + "/v1/programs/movie");
  auto& segs = manifest.at("segments").as_array();
  ASSERT_EQ(segs.size(), s.segments.size());
  std::set<int> engines_used;
  for (size_t n = 0; n < segs.size(); ++n) {
    SCOPED_TRACE(n);
    auto red = ask_segment(st, "movie", n);
    ASSERT_EQ(red.status, 302u);
    int e = engine_of(st, 3, red.location);
    ASSERT_GE(e, 0) << red.location;
    EXPECT_EQ(red.location, seg_url(st.engine_url(e), "movie", std::to_string(n)));
    engines_used.insert(e);
    auto g = http_get(red.location);
    ASSERT_TRUE(g) << g.err().detail;
    ASSERT_EQ(g->status, 200u);
    std::string want = std::string(segs[n].as_object().at("sha256").as_string());
    EXPECT_EQ(hex_of(g->body), want);
    EXPECT_EQ(g->header(api::sha256_header), want);
    EXPECT_TRUE(g->body == s.segments[n]);
  }
  EXPECT_GE(engines_used.size(), 2u);
}

TEST(StationDirector, UnknownProgramIs404Json) {
  station_fixture st(opts{.engines = 2, .copies = 1});
  for (std::string target : {"/v1/programs/nosuch", "/v1/programs/nosuch/index.m3u8",
                             "/v1/programs/nosuch/segments/0.ts"}) {
    SCOPED_TRACE(target);
    auto r = http_get(st.director_url() + target);
    ASSERT_TRUE(r) << r.err().detail;
    EXPECT_EQ(r->status, 404u);
    auto o = json::parse(r->body).as_object();
    EXPECT_EQ(o.at("error").as_string(), "not_found");
    EXPECT_TRUE(o.at("detail").is_string());
  }
}

TEST(StationDirector, ConsolesAreRefusedBeforePublishAndAfterWithdrawal) {
  station_fixture st(opts{.engines = 2, .copies = 1});
  temp_dir dir;
  auto s = ingest_sample(st, dir.path(), "movie", 2);
  ASSERT_FALSE(HasFailure());
  auto set = [&](std::string body) {
    return http(boost::beast::http::verb::post,
                st.director_url() + "/v1/programs/movie/availability", body);
  };
  auto refused = [&](std::string_view reason) {
    for (std::string target : {"/index.m3u8", "/segments/0.ts"}) {
      auto r = http_get(st.director_url() + "/v1/programs/movie" + target);
      ASSERT_TRUE(r);
      EXPECT_EQ(r->status, 404u) << target;
      EXPECT_NE(r->body.find(reason), std::string::npos) << r->body;
    }
  };
  // A program loaded without a content manager is published at once.
  EXPECT_EQ(ask_segment(st, "movie", 0).status, 302u);
  auto r = set(R"({"availability":"inactive","publish_at":"2030-01-01T00:00:00Z"})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200u) << r->body;
  refused("it publishes at 2030-01-01T00:00:00Z");
  // The operator's view still lists it, with its state.
  auto info = http_get(st.director_url() + "/v1/programs/movie");
  EXPECT_EQ(json::parse(info->body).at("availability").as_string(), "inactive");
  // Bad changes are refused and change nothing.
  for (std::string bad :
       {R"({"availability":"live"})", R"({})", "not json", R"({"availability":7})"}) {
    auto b = set(bad);
    ASSERT_TRUE(b);
    EXPECT_EQ(b->status, 400u) << bad;
  }
  auto none =
      http(boost::beast::http::verb::post, st.director_url() + "/v1/programs/nosuch/availability",
           R"({"availability":"published"})");
  EXPECT_EQ(none->status, 404u);
  refused("publishes at");
  // The state survives a restart of the director.
  st.kill_director(SIGKILL);
  st.start_director();
  refused("publishes at");
  ASSERT_EQ(set(R"({"availability":"published"})")->status, 200u);
  EXPECT_TRUE(eventually([&] { return ask_segment(st, "movie", 0).status == 302u; }));
  EXPECT_EQ(http_get(st.director_url() + "/v1/programs/movie/index.m3u8")->status, 200u);
  ASSERT_EQ(set(R"({"availability":"withdrawn"})")->status, 200u);
  refused("withdrawn");
}

TEST(StationDirector, SegmentPastTheEndIs404) {
  station_fixture st(opts{.engines = 2, .copies = 1});
  temp_dir dir;
  auto s = ingest_sample(st, dir.path(), "movie", 2);
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(ask_segment(st, "movie", s.segments.size() - 1).status, 302u);
  EXPECT_EQ(ask_segment(st, "movie", s.segments.size()).status, 404u);
  EXPECT_EQ(ask_segment(st, "movie", 999999).status, 404u);
}

TEST(StationDirector, RedirectsForOneSegmentSpreadOverAllItsHolders) {
  station_fixture st(opts{.engines = 3, .copies = 3});
  temp_dir dir;
  ingest_sample(st, dir.path(), "movie", 2);
  ASSERT_FALSE(HasFailure());
  std::map<int, int> per_engine;
  const int n = 60;
  for (int i = 0; i < n; ++i) {
    auto red = ask_segment(st, "movie", 0);
    ASSERT_EQ(red.status, 302u);
    per_engine[engine_of(st, 3, red.location)]++;
  }
  EXPECT_EQ(per_engine.count(-1), 0u);
  for (int e = 0; e < 3; ++e) {
    SCOPED_TRACE(e);
    // Consoles are counted against the chosen engine until its next heartbeat: equal engines
    // share the work, each getting a fair part of it.
    EXPECT_GE(per_engine[e], n / 6);
  }
}

TEST(StationDirector, EveryDaemonAnswersHealthzAndMetrics) {
  station_fixture st(opts{.engines = 2, .copies = 1});
  std::vector<std::pair<std::string, std::string>> daemons = {
      {st.director_url(), "director"}, {st.engine_url(0), "engine"}, {st.engine_url(1), "engine"}};
  for (auto& [url, role] : daemons) {
    SCOPED_TRACE(url);
    auto h = get_object(url + "/healthz");
    EXPECT_EQ(h.at("status").as_string(), "ok");
    EXPECT_EQ(h.at("role").as_string(), role);
    auto m = http_get(url + "/metrics");
    ASSERT_TRUE(m) << m.err().detail;
    EXPECT_EQ(m->status, 200u);
    EXPECT_EQ(m->header("Content-Type").rfind("text/plain", 0), 0u);
    EXPECT_NE(m->body.find("# TYPE vodgrid_http_requests_total counter\n"), std::string::npos)
        << m->body;
    EXPECT_NE(m->body.find("vodgrid_http_requests_total{code=\"2xx\"} "), std::string::npos);
  }
  auto m = http_get(st.director_url() + "/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("\nvodgrid_director_engines_up 2\n"), std::string::npos) << m->body;
}

// What an operator's Prometheus reads (docs/operations.md): request durations by route, an
// engine's hits and misses, the bytes it served, and its disk per data directory.
TEST(StationDirector, MetricsShowRouteDurationsHitsMissesBytesAndDiskPerDirectory) {
  station_fixture st(opts{.engines = 2, .copies = 1});
  temp_dir dir;
  auto s = ingest_sample(st, dir.path(), "movie", 3);
  ASSERT_FALSE(HasFailure());
  const std::string redirects =
      "vodgrid_http_request_duration_seconds_count\\{method=\"GET\",route=\"/v1/programs/\\{\\}/"
      "segments/\\{\\}.ts\"\\}";
  const std::string served =
      "vodgrid_http_request_duration_seconds_count\\{method=\"GET\",route=\"/v1/segments/\\{\\}/"
      "\\{\\}.ts\"\\}";
  const std::string hits = "vodgrid_engine_segment_requests_total\\{result=\"hit\"\\}";
  const std::string misses = "vodgrid_engine_segment_requests_total\\{result=\"miss\"\\}";
  double before = metric(st.director_url(), redirects);
  uint64_t bytes = 0;
  std::map<int, int> got_by;
  for (size_t n = 0; n < s.segments.size(); ++n) {
    auto red = ask_segment(st, "movie", n);
    ASSERT_EQ(red.status, 302u);
    int e = engine_of(st, 2, red.location);
    ASSERT_GE(e, 0);
    auto g = http_get(red.location);
    ASSERT_TRUE(g && g->status == 200u);
    bytes += g->body.size();
    ++got_by[e];
  }
  // Every redirect timed under its route's pattern, not its path.
  EXPECT_EQ(metric(st.director_url(), redirects) - before, static_cast<double>(s.segments.size()));
  EXPECT_EQ(metric(st.director_url(),
                   "vodgrid_http_request_duration_seconds_bucket\\{method="
                   "\"GET\",route=\"/v1/programs/\\{\\}/segments/\\{\\}.ts\","
                   "le=\"\\+Inf\"\\}") -
                before,
            static_cast<double>(s.segments.size()));
  double served_total = 0;
  for (int e = 0; e < 2; ++e) {
    SCOPED_TRACE(e);
    auto url = st.engine_url(e);
    EXPECT_EQ(metric(url, hits), got_by[e]);
    EXPECT_EQ(metric(url, served), got_by[e]);
    served_total += metric(url, "vodgrid_engine_served_bytes_total\\{via=\"http\"\\}");
    // Each data directory: its filesystem's size and free bytes, and what its segments take.
    auto text = http_get(url + "/metrics");
    ASSERT_TRUE(text);
    auto per_dir = [&](const std::string& name) {
      std::map<std::string, double> out;
      std::regex re(name + "\\{dir=\"([^\"]+)\"\\} ([0-9.e+]+)");
      for (std::sregex_iterator it(text->body.begin(), text->body.end(), re), end; it != end;
           ++it) {
        out[(*it)[1]] = std::stod((*it)[2]);
      }
      return out;
    };
    auto size = per_dir("vodgrid_engine_disk_size_bytes");
    auto free = per_dir("vodgrid_engine_disk_free_bytes");
    auto used = per_dir("vodgrid_engine_disk_used_bytes");
    ASSERT_EQ(size.size(), 2u);  // the fixture's two directories per engine
    double used_total = 0;
    for (auto& [d, bytes] : size) {
      EXPECT_TRUE(d.starts_with(st.data().string())) << d;
      EXPECT_GT(bytes, 0);
      EXPECT_GT(free[d], 0);
      EXPECT_LE(free[d], bytes);
      ASSERT_TRUE(used.contains(d));
      used_total += used[d];
    }
    uint64_t held = 0;
    for (auto& k : inventory(st, e)) {
      auto n = std::stoul(k.substr(k.find('/') + 1));
      held += s.segments[n].size();
    }
    EXPECT_EQ(used_total, static_cast<double>(held));
  }
  EXPECT_EQ(served_total, static_cast<double>(bytes));  // segments only: no JSON, no /metrics
  // A segment asked of the engine that lacks it is a miss (the console is sent on to the
  // holder), not a hit.
  auto red = ask_segment(st, "movie", 0);
  int holder = engine_of(st, 2, red.location);
  ASSERT_GE(holder, 0);
  auto other = st.engine_url(1 - holder);
  double hits_before = metric(other, hits);
  auto g = http_get(seg_url(other, "movie", "0"));
  ASSERT_TRUE(g);
  EXPECT_EQ(g->status, 307u);
  EXPECT_EQ(g->header("Location"), seg_url(st.engine_url(holder), "movie", "0"));
  EXPECT_EQ(metric(other, misses), 1);
  EXPECT_EQ(metric(other, hits), hits_before);
  // A path no route takes is timed as unmatched.
  ASSERT_TRUE(http_get(st.director_url() + "/no/such/thing"));
  EXPECT_GE(metric(st.director_url(),
                   "vodgrid_http_request_duration_seconds_count\\{route=\"unmatched\"\\}"),
            1);
}

// ---------------------------------------------------------------------------------------------
// Heartbeats and restarts

TEST(StationHeartbeat, KilledEngineLeavesRotation) {
  station_fixture st;  // 3 engines, 2 copies, heartbeat timeout 1 s
  temp_dir dir;
  auto s = ingest_sample(st, dir.path(), "movie");
  ASSERT_FALSE(HasFailure());
  ASSERT_FALSE(inventory(st, 0).empty());
  st.kill_engine(0);
  EXPECT_TRUE(eventually([&] { return engine_entry(st, "e0").at("up").as_bool() == false; }, 2s));
  for (int round = 0; round < 10; ++round) {
    for (size_t n = 0; n < s.segments.size(); ++n) {
      auto red = ask_segment(st, "movie", n);
      ASSERT_EQ(red.status, 302u) << n;
      EXPECT_NE(engine_of(st, 3, red.location), 0) << red.location;
    }
  }
  auto health = get_object(st.director_url() + "/healthz");
  EXPECT_EQ(health.at("engines_up").to_number<int>(), 2);
}

TEST(StationHeartbeat, RestartedEngineReturnsWithItsSegments) {
  station_fixture st;
  temp_dir dir;
  auto s = ingest_sample(st, dir.path(), "movie");
  ASSERT_FALSE(HasFailure());
  auto before = inventory(st, 0);
  ASSERT_FALSE(before.empty());
  st.kill_engine(0);
  ASSERT_TRUE(eventually([&] { return !engine_entry(st, "e0").at("up").as_bool(); }, 2s));
  st.start_engine(0);
  EXPECT_TRUE(eventually([&] { return engine_entry(st, "e0").at("up").as_bool(); }, 5s));
  EXPECT_EQ(inventory(st, 0), before);  // the index rebuilt from disk
  EXPECT_EQ(engine_entry(st, "e0").at("segments").to_number<size_t>(), before.size());
  // Redirects reach it again.
  size_t held = std::stoul(before.begin()->substr(before.begin()->find('/') + 1));
  EXPECT_TRUE(eventually(
      [&] {
        for (int i = 0; i < 10; ++i) {
          if (engine_of(st, 3, ask_segment(st, "movie", held).location) == 0) {
            return true;
          }
        }
        return false;
      },
      5s));
}

TEST(StationHeartbeat, NoHolderUpGives503WithRetryAfter) {
  station_fixture st(opts{.engines = 2, .copies = 1});
  temp_dir dir;
  auto s = ingest_sample(st, dir.path(), "movie", 2);
  ASSERT_FALSE(HasFailure());
  auto red = ask_segment(st, "movie", 0);
  ASSERT_EQ(red.status, 302u);
  int holder = engine_of(st, 2, red.location);
  ASSERT_GE(holder, 0);
  st.kill_engine(holder);
  redirect_result last;
  EXPECT_TRUE(eventually(
      [&] {
        last = ask_segment(st, "movie", 0);
        return last.status == 503;
      },
      3s));
  EXPECT_FALSE(last.retry_after.empty());
  EXPECT_EQ(last.location, "");
  auto r = http_get(st.director_url() + "/v1/programs/movie/segments/0.ts");
  ASSERT_TRUE(r);
  EXPECT_EQ(json::parse(r->body).as_object().at("error").as_string(), "unavailable");
  // Each 503 counted under its reason (no engine here; the station has no registry to ask).
  EXPECT_GE(
      metric(st.director_url(), "vodgrid_director_unavailable_total\\{reason=\"no_engine\"\\}"), 2);
  EXPECT_EQ(metric(st.director_url(), "vodgrid_director_unavailable_total\\{reason=\"signing\"\\}"),
            0);
}

TEST(StationHeartbeat, DirectorRestartKeepsTheCatalogAndRedirectsResume) {
  station_fixture st;
  temp_dir dir;
  auto s = ingest_sample(st, dir.path(), "movie");
  ASSERT_FALSE(HasFailure());
  st.kill_director();
  st.start_director();
  auto entry = program_entry(st, "movie");
  ASSERT_FALSE(entry.empty());
  EXPECT_EQ(entry.at("state").as_string(), "ready");
  auto manifest = get_object(st.director_url() + "/v1/programs/movie");
  EXPECT_TRUE(eventually(
      [&] {
        for (size_t n = 0; n < s.segments.size(); ++n) {
          if (ask_segment(st, "movie", n).status != 302) {
            return false;
          }
        }
        return true;
      },
      5s));
  for (size_t n = 0; n < s.segments.size(); ++n) {
    auto red = ask_segment(st, "movie", n);
    ASSERT_EQ(red.status, 302u);
    auto g = http_get(red.location);
    ASSERT_TRUE(g);
    ASSERT_EQ(g->status, 200u);
    EXPECT_EQ(
        hex_of(g->body),
        std::string(manifest.at("segments").as_array()[n].as_object().at("sha256").as_string()));
  }
}

// ---------------------------------------------------------------------------------------------
// Loader: bad input

class StationLoaderBadInput : public ::testing::Test {
 protected:
  // The ingest failed with one line on stderr, and the station holds no such program.
  void expect_refused(const run_result& r, const std::string& id) {
    EXPECT_NE(r.status, 0);
    EXPECT_EQ(lines_in(r.err), 1) << r.err;
    EXPECT_EQ(r.err.rfind("vodgrid ingest: ", 0), 0u) << r.err;
    EXPECT_TRUE(program_entry(st, id).empty());
    EXPECT_TRUE(inventory(st, 0).empty());
    EXPECT_TRUE(inventory(st, 1).empty());
  }
  station_fixture st{opts{.engines = 2, .copies = 1}};
  temp_dir dir;
};

TEST_F(StationLoaderBadInput, FolderWithoutPlaylist) {
  auto folder = dir.path() / "empty";
  fs::create_directories(folder);
  ASSERT_TRUE(write_file_durably(folder / "seg000.ts", random_bytes(188 * 4, 1)));
  expect_refused(st.ingest(folder.string(), "nolist"), "nolist");
}

TEST_F(StationLoaderBadInput, FileThatIsNotAPlaylist) {
  auto file = dir.path() / "notes.m3u8";
  ASSERT_TRUE(write_file_durably(file, "hello, this is not a playlist\n"));
  expect_refused(st.ingest(file.string(), "notpl"), "notpl");
}

TEST_F(StationLoaderBadInput, SegmentThatIsNotMpegTs) {
  auto folder = dir.path() / "random";
  ASSERT_TRUE(write_file_durably(folder / "seg000.ts", random_bytes(10000, 2)));
  ASSERT_TRUE(write_file_durably(
      folder / "index.m3u8",
      "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nseg000.ts\n"
      "#EXT-X-ENDLIST\n"));
  expect_refused(st.ingest(folder.string(), "random"), "random");
}

TEST_F(StationLoaderBadInput, SegmentWithSyncBytesOnlyAtItsEndsIsNotMpegTs) {
  // check_ts must look at every packet, not only the first and the last.
  auto folder = dir.path() / "random";
  std::string bytes = random_bytes(188 * 50, 5);
  bytes[0] = 0x47;
  bytes[188 * 49] = 0x47;
  bytes[188] = 0x00;  // a packet in the middle without its sync byte
  ASSERT_TRUE(write_file_durably(folder / "seg000.ts", bytes));
  ASSERT_TRUE(write_file_durably(
      folder / "index.m3u8",
      "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nseg000.ts\n"
      "#EXT-X-ENDLIST\n"));
  expect_refused(st.ingest(folder.string(), "sync"), "sync");
}

TEST_F(StationLoaderBadInput, NonexistentPath) {
  expect_refused(st.ingest((dir.path() / "no" / "such" / "thing").string(), "ghost"), "ghost");
}

TEST_F(StationLoaderBadInput, PlaylistNamingAMissingSegment) {
  auto folder = dir.path() / "missing";
  ASSERT_TRUE(write_file_durably(
      folder / "index.m3u8",
      "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nseg000.ts\n"
      "#EXT-X-ENDLIST\n"));
  expect_refused(st.ingest(folder.string(), "missing"), "missing");
}

// ---------------------------------------------------------------------------------------------
// Heartbeat endpoint: bad input

class StationHeartbeatBadInput : public ::testing::Test {
 protected:
  // A well-formed heartbeat as engine `name` would send it.
  std::string heartbeat_body(const std::string& name) {
    api::heartbeat hb;
    hb.engine = *engine_id::parse(name);
    hb.url = "http://127.0.0.1:1";
    hb.epoch = 42;
    hb.seq = 1;
    hb.full = true;
    hb.load.max_streams = 10;
    return json::serialize(api::to_json(hb));
  }
  result<net::client_response> post_heartbeat(const std::string& path_name,
                                              const std::string& body) {
    return http(V::post, fmt::format("{}/v1/engines/{}/heartbeat", st.director_url(), path_name),
                body, {{"Content-Type", "application/json"}});
  }
  // Only the real engines are listed, at their real URLs.
  void expect_engine_table_untouched() {
    EXPECT_EQ(engine_names_listed(st), (std::set<std::string>{"e0", "e1"}));
    for (int i = 0; i < 2; ++i) {
      EXPECT_EQ(engine_entry(st, st.engine_name(i)).at("url").as_string(), st.engine_url(i));
    }
  }
  station_fixture st{opts{.engines = 2, .copies = 1}};
};

TEST_F(StationHeartbeatBadInput, MalformedJsonIs400) {
  for (std::string body : std::vector<std::string>{"{not json", "", "[]", "{\"engine\": \"e0\"}",
                                                   "null", std::string(1000, '{')}) {
    SCOPED_TRACE(body.substr(0, 40));
    auto r = post_heartbeat("e0", body);
    ASSERT_TRUE(r) << r.err().detail;
    EXPECT_EQ(r->status, 400u) << r->body;
  }
  expect_engine_table_untouched();
}

TEST_F(StationHeartbeatBadInput, EngineNotInTheStationIs403) {
  auto r = post_heartbeat("zz", heartbeat_body("zz"));
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 403u) << r->body;
  EXPECT_EQ(json::parse(r->body).as_object().at("error").as_string(), "forbidden");
  expect_engine_table_untouched();
}

TEST_F(StationHeartbeatBadInput, BodyEngineOtherThanPathEngineIs400) {
  auto r = post_heartbeat("e0", heartbeat_body("e1"));
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 400u) << r->body;
  expect_engine_table_untouched();
}

TEST_F(StationHeartbeatBadInput, HostileEngineNameInThePathIsRefused) {
  for (std::string name : {"..", "%2e%2e", "e0%00", "-e0"}) {
    SCOPED_TRACE(name);
    auto r = post_heartbeat(name, heartbeat_body("e0"));
    ASSERT_TRUE(r) << r.err().detail;
    EXPECT_TRUE(r->status == 400u || r->status == 403u || r->status == 404u) << r->status;
  }
  expect_engine_table_untouched();
}

// Issue 16, item 1: the redirect runs on the connection's loop, reading what the director's home
// loop publishes. Consoles on new connections (spread over the director's two loops) while
// heartbeats move every segment from engine to engine: each redirect must name an engine that held
// the segment at some moment while the redirect was in flight. Tables stale or torn on another
// loop would name an engine that gave the segment up long before, or one that never held it.
TEST(StationThreads, RedirectsOnTwoLoopsNameOnlyHoldersWhileHeartbeatsMoveSegments) {
  opts o;
  o.engines = 4;
  o.copies = 1;
  o.start_engines = false;          // this test speaks for the engines
  o.director_threads = 2;           // (VODGRID_THREADS, when set, says the same or more)
  o.heartbeat_timeout_ms = 30'000;  // every engine up all along, however busy the machine
  station_fixture st(o);
  using clock = std::chrono::steady_clock;
  const auto& engines = st.config().stations.at(0).engines;
  const size_t n_engines = engines.size();
  const program_id film = *program_id::parse("film");
  constexpr uint32_t n_segments = 8;

  // When each engine holds each segment: from before the heartbeat adding it was sent until the
  // reply to the one removing it came back.
  struct holding {
    size_t engine;
    uint32_t segment;
    clock::time_point from;
    std::optional<clock::time_point> until;
  };
  std::mutex mu;
  std::vector<holding> held;
  std::vector<uint64_t> seq(n_engines, 0);
  auto beat = [&](size_t e, std::optional<uint32_t> add, std::optional<uint32_t> remove) {
    api::heartbeat hb;
    hb.engine = engines[e].name;
    hb.url = engines[e].listen.url();
    hb.epoch = 1;
    hb.seq = ++seq[e];
    hb.full = hb.seq == 1;
    hb.load.max_streams = 1'000'000;  // never near its limits: no replicas
    hb.load.free_bytes = hb.load.total_bytes = 1ull << 40;
    if (add) {
      hb.added.push_back({{film, segment_index{*add}}, 1000, {}});
      std::lock_guard lock(mu);
      held.push_back({e, *add, clock::now(), std::nullopt});
    }
    if (remove) {
      hb.removed.push_back({film, segment_index{*remove}});
    }
    auto r =
        http(V::post,
             fmt::format("{}/v1/engines/{}/heartbeat", st.director_url(), engines[e].name.str()),
             json::serialize(api::to_json(hb)));
    if (remove) {
      std::lock_guard lock(mu);
      for (auto& h : held) {
        if (h.engine == e && h.segment == *remove && !h.until) {
          h.until = clock::now();
        }
      }
    }
    return r && r->status == 200 && r->body.find("true") == std::string::npos;
  };
  // Segment i starts at engine i mod 4.
  for (size_t e = 0; e < n_engines; ++e) {
    ASSERT_TRUE(beat(e, std::nullopt, std::nullopt));
  }
  for (uint32_t i = 0; i < n_segments; ++i) {
    ASSERT_TRUE(beat(i % n_engines, i, std::nullopt));
  }
  api::program_manifest m;
  m.id = film;
  m.title = "film";
  for (uint32_t i = 0; i < n_segments; ++i) {
    api::segment_entry s;
    s.index = segment_index{i};
    s.duration = 2;
    s.size = 1000;
    m.segments.push_back(s);
  }
  auto created =
      http(V::post, st.director_url() + "/v1/programs", json::serialize(api::to_json(m)));
  ASSERT_TRUE(created);
  ASSERT_EQ(created->status, 201u) << created->body;
  auto committed = http(V::post, st.director_url() + "/v1/programs/film/commit", "");
  ASSERT_TRUE(committed);
  ASSERT_EQ(committed->status, 200u) << committed->body;

  // The mover: round after round, each segment to the next engine (the new holder told first, so
  // that some engine holds it at every moment).
  std::atomic<bool> done{false};
  std::atomic<int> moves{0};
  std::atomic<bool> beats_ok{true};
  std::thread mover([&] {
    for (uint32_t round = 1; !done; ++round) {
      for (uint32_t i = 0; i < n_segments && !done; ++i) {
        size_t from = (i + round - 1) % n_engines;
        size_t to = (i + round) % n_engines;
        if (!beat(to, i, std::nullopt) || !beat(from, std::nullopt, i)) {
          beats_ok = false;
        }
        ++moves;
      }
    }
  });
  struct redirect {
    uint32_t segment;
    unsigned status;
    std::string location;
    clock::time_point sent, answered;
  };
  std::vector<std::vector<redirect>> seen(6);
  std::vector<std::thread> consoles;
  // Until the segments have moved round the engines eight times and the consoles have had 1000
  // answers (a bound of work, not of time: a busy machine takes longer); 120 s at most.
  std::atomic<int> answers{0};
  constexpr int enough_moves = 8 * static_cast<int>(n_segments);
  constexpr int enough_answers = 1000;
  auto until = clock::now() + 120s;
  for (size_t c = 0; c < seen.size(); ++c) {
    consoles.emplace_back([&, c] {
      std::mt19937 rng(static_cast<uint32_t>(c));
      while ((moves < enough_moves || answers < enough_answers) && clock::now() < until) {
        uint32_t i = rng() % n_segments;
        auto sent = clock::now();
        // A new connection each time: the kernel hands them to either loop.
        auto r = http_get(fmt::format("{}/v1/programs/film/segments/{}.ts", st.director_url(), i));
        auto answered = clock::now();
        seen[c].push_back({i, r ? r->status : 0u, r ? r->header("Location") : "", sent, answered});
        ++answers;
      }
    });
  }
  for (auto& t : consoles) {
    t.join();
  }
  done = true;
  mover.join();
  EXPECT_TRUE(beats_ok);
  EXPECT_GE(moves.load(), enough_moves);

  size_t total = 0;
  size_t wrong = 0;
  std::string first_wrong;
  for (auto& list : seen) {
    for (auto& r : list) {
      ++total;
      std::optional<size_t> engine;
      for (size_t e = 0; e < n_engines; ++e) {
        if (r.location ==
            fmt::format("{}/v1/segments/film/{}.ts", engines[e].listen.url(), r.segment)) {
          engine = e;
        }
      }
      bool ok = r.status == 302 && engine;
      if (ok) {
        ok = std::any_of(held.begin(), held.end(), [&](const holding& h) {
          return h.engine == *engine && h.segment == r.segment && h.from <= r.answered &&
                 (!h.until || *h.until >= r.sent);
        });
      }
      if (!ok && ++wrong == 1) {
        first_wrong = fmt::format("segment {}: {} {}", r.segment, r.status, r.location);
      }
    }
  }
  EXPECT_GE(total, static_cast<size_t>(enough_answers));
  EXPECT_EQ(wrong, 0u) << "of " << total << " redirects; the first: " << first_wrong;
  EXPECT_EQ(metric(st.director_url(), "vodgrid_director_redirects_total"),
            static_cast<double>(total));
}

// Issue 16, item 5: an engine's heartbeats wait only for that engine's. While one engine's whole
// inventory (large) is applied in slices, another engine's small heartbeat is answered: after a
// director restart every engine sends its whole inventory, and one queued behind the others' would
// leave rotation.
TEST(StationThreads, AHeartbeatDoesNotWaitForAnotherEnginesLargeInventory) {
  opts o;
  o.engines = 2;
  o.copies = 1;
  o.start_engines = false;          // this test speaks for the engines
  o.heartbeat_timeout_ms = 30'000;  // however busy the machine
  station_fixture st(o);
  const auto& engines = st.config().stations.at(0).engines;
  std::vector<uint64_t> seq(engines.size(), 0);
  auto make = [&](size_t e, uint32_t segments) {
    api::heartbeat hb;
    hb.engine = engines[e].name;
    hb.url = engines[e].listen.url();
    hb.epoch = 1;
    hb.seq = ++seq[e];
    hb.full = true;
    hb.load.max_streams = 10;
    hb.load.free_bytes = hb.load.total_bytes = 1ull << 40;
    for (uint32_t i = 0; i < segments; ++i) {
      hb.added.push_back(
          {{*program_id::parse("p" + std::to_string(e)), segment_index{i}}, 1000, {}});
    }
    return json::serialize(api::to_json(hb));
  };
  auto post = [&](size_t e, const std::string& body) {
    auto r = http(
        V::post,
        fmt::format("{}/v1/engines/{}/heartbeat", st.director_url(), engines[e].name.str()), body);
    return r && r->status == 200;
  };
  ASSERT_TRUE(post(0, make(0, 0)));
  ASSERT_TRUE(post(1, make(1, 0)));
  const std::string slices = "vodgrid_director_heartbeat_slices_total";
  const std::string pieces = "vodgrid_director_heartbeat_hold_seconds_count";
  double before = metric(st.director_url(), slices);
  double pieces_before = metric(st.director_url(), pieces);
  // Thousands of slices either way; under ASan (several times slower) a tenth, so that the large
  // one's own request stays within the client's deadline with the suite running beside it.
#if defined(__SANITIZE_ADDRESS__)
  auto large = make(0, 30'000);
#else
  auto large = make(0, 300'000);
#endif
  std::atomic<bool> large_answered{false};
  std::atomic<bool> large_ok{false};
  std::thread sender([&] {
    large_ok = post(0, large);
    large_answered = true;
  });
  // Once the large one is being applied (its first slice given back), engine 1's small heartbeat.
  while (!large_answered && metric(st.director_url(), slices) == before) {
    std::this_thread::sleep_for(1ms);
  }
  bool small_ok = false;
  bool small_first = false;
  if (!large_answered) {
    small_ok = post(1, make(1, 10));
    small_first = !large_answered;
  }
  sender.join();
  EXPECT_TRUE(large_ok);
  EXPECT_TRUE(small_ok) << "the large inventory was applied before its slices were seen";
  EXPECT_TRUE(small_first) << "engine 1's heartbeat waited for engine 0's inventory";
  // Each heartbeat's pieces are timed: one more than the slices it gave the loop back after, and
  // the small one's decoding on the loop (the large one is decoded on a thread of its own).
  EXPECT_EQ(metric(st.director_url(), pieces) - pieces_before,
            metric(st.director_url(), slices) - before + 3);
}

}  // namespace
}  // namespace vodgrid::test
