// End-to-end tests of claims 19-22 and the engine's disk budget: cut-through copies (served while
// they arrive, one upstream transfer per segment per engine), consoles sent elsewhere when a copy
// fails, a seek past the filled part, replicas of a hot segment, and evictions that never take the
// last copy in the grid.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/socket.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <latch>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include "api/api.h"
#include "base/fs.h"
#include "base/process.h"
#include "base/sha256.h"
#include "support/orders.h"
#include "support/support.h"

namespace vodgrid::test {
namespace {

namespace fs = std::filesystem;
using boost::beast::http::verb;
using namespace std::chrono_literals;

// MPEG-TS-shaped bytes (a sync byte every 188), different for each `seed`.
std::string ts_bytes(size_t packets, int seed) {
  std::string s(188 * packets, '\0');
  uint32_t x = 2463534242u + static_cast<uint32_t>(seed) * 7919u;
  for (size_t i = 0; i < s.size(); ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    s[i] = static_cast<char>(i % 188 == 0 ? 0x47 : x & 0xff);
  }
  return s;
}

result<net::client_response> put_segment(const std::string& engine, const std::string& path,
                                         const std::string& data) {
  return http(verb::put, engine + "/v1/segments/" + path, data,
              {{api::sha256_header, to_hex(sha256(data))}});
}

// Segments an engine lists, as "program/index".
std::set<std::string> listed(const std::string& engine) {
  std::set<std::string> out;
  auto r = http_get(engine + "/v1/segments");
  if (!r || r->status != 200) {
    return out;
  }
  auto v = boost::json::parse(r->body);
  for (auto& s : v.at("segments").as_array()) {
    out.insert(fmt::format("{}/{}", s.at("program").as_string().c_str(),
                           s.at("index").to_number<int64_t>()));
  }
  return out;
}

// Follows one redirect (307 or 302) with the same headers.
result<net::client_response> get_following(const std::string& url,
                                           net::http_client::header_list headers = {},
                                           std::string* went = nullptr) {
  auto r = http_get(url, headers);
  if (r && (r->status == 307 || r->status == 302)) {
    if (went) {
      *went = r->header("Location");
    }
    return http_get(r->header("Location"), headers);
  }
  return r;
}

// A console that reads slowly through a small receive window, as a viewer watching in real time
// does: its stream stays open at the engine for seconds. Follows redirects (an engine at its stream
// limit hands the console on) and returns the final reply's status, body and URL.
// With `together`, the reader counts it down at its first body bytes and reads on only when every
// reader has: all their streams are open at once, however slowly the machine starts them.
struct slow_reply {
  int status = 0;
  std::string body;  // or what went wrong, when status is 0
  std::string url;
  std::vector<std::string> went;  // the redirects' Locations, in order (as a player, at most 5)
};

slow_reply slow_get(std::string url, size_t bytes_per_10ms, std::latch* together = nullptr) {
  std::vector<std::string> went;
  for (int hops = 0; hops < 5; ++hops) {
    auto u = net::parse_http_url(url);
    if (!u) {
      return {0, u.err().detail, url};
    }
    int fd = connect_loopback(u->port, 65536);
    if (fd < 0) {
      return {0, "connect failed", url};
    }
    std::string req = fmt::format("GET {} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\n\r\n",
                                  u->target, u->host, u->port);
    if (::send(fd, req.data(), req.size(), 0) != static_cast<ssize_t>(req.size())) {
      ::close(fd);
      return {0, "send failed", url};
    }
    std::string got;
    std::vector<char> buf(bytes_per_10ms);
    size_t head_end = std::string::npos;
    bool counted = false;
    for (;;) {
      ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
      if (n > 0) {
        got.append(buf.data(), static_cast<size_t>(n));
      }
      if (head_end == std::string::npos) {
        head_end = got.find("\r\n\r\n");
      }
      if (head_end != std::string::npos && status_of(got) / 100 == 3) {
        break;  // followed below
      }
      if (together && !counted && (head_end != std::string::npos || n <= 0)) {
        counted = true;
        together->count_down();
        together->wait();
      }
      if (n <= 0) {
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
    ::close(fd);
    if (head_end == std::string::npos) {
      if (together && !counted) {
        together->count_down();
      }
      return {0, "no reply head", url};
    }
    int status = status_of(got);
    if (status / 100 == 3) {
      std::smatch m;
      std::string head = got.substr(0, head_end + 2);
      if (!std::regex_search(head, m, std::regex("\r\nLocation: ([^\r]*)\r\n"))) {
        if (together && !counted) {
          together->count_down();
        }
        return {status, "a redirect without Location", url};
      }
      url = m[1];
      went.push_back(url);
      continue;
    }
    return {status, got.substr(head_end + 4), url, std::move(went)};
  }
  if (together) {
    together->count_down();
  }
  return {0, "too many redirects", url, std::move(went)};
}

// Ingests a program `id` of one 4-second segment `data` into the grid.
testing::AssertionResult ingest_one_segment(grid_fixture& g, const std::string& id,
                                            const std::string& data) {
  temp_dir folder;
  if (!write_file_durably(folder.path() / "seg0.ts", data) ||
      !write_file_durably(folder.path() / "index.m3u8",
                          "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n"
                          "#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:4.000,\nseg0.ts\n#EXT-X-ENDLIST\n")) {
    return testing::AssertionFailure() << "cannot write the program's files";
  }
  auto in = g.ingest((folder.path() / "index.m3u8").string(), id);
  if (in.status != 0) {
    return testing::AssertionFailure() << in.out << in.err;
  }
  return testing::AssertionSuccess();
}

// Engines of `station` the registry lists as holding segment `index` of `program` whole.
size_t engines_known(const grid_fixture& g, const std::string& program, int index) {
  auto r = http_get(
      fmt::format("{}/v1/programs/{}/segments/{}/locations", g.registry_url(), program, index));
  if (!r || r->status != 200) {
    return 0;
  }
  auto v = boost::json::parse(r->body);
  size_t n = 0;
  for (auto& st : v.at("stations").as_array()) {
    n += st.at("engines").as_array().size();
  }
  return n;
}

// (a) Fifty consoles ask an engine for a segment while it arrives from a slow source: each gets
// 200 and the whole segment, verified; the source was asked once.
TEST(CutThrough, FiftyConsolesOnASegmentArrivingFromASlowSourceShareOneUpstreamCopy) {
  station_fixture st(station_fixture::options{.engines = 2, .copies = 1});
  temp_dir folder;
  std::string data = ts_bytes(8000, 1);  // 1.5 MB, about 1.5 s at 1 MB/s
  ASSERT_TRUE(write_file_durably(folder.path() / "seg.ts", data));
  slow_source src(folder.path(), {"--rate", "1000000"});
  auto order = http(verb::post, st.engine_url(1) + "/v1/orders/fetch",
                    fetch_order("film", 0, data, {src.url("seg.ts")}, false));
  ASSERT_TRUE(order);
  ASSERT_EQ(order->status, 202u) << order->body;

  std::atomic<int> good{0}, early{0};
  std::vector<std::string> problems(50);
  std::vector<std::thread> consoles;
  for (int i = 0; i < 50; ++i) {
    consoles.emplace_back([&, i] {
      auto r = http_get(st.engine_url(1) + "/v1/segments/film/0.ts");
      if (!r) {
        problems[i] = r.err().detail;
      } else if (r->status != 200 || r->body.size() != data.size() ||
                 sha256(r->body) != sha256(data)) {
        problems[i] = fmt::format("status {} with {} bytes", r->status, r->body.size());
      } else {
        ++good;
        early += r->header(api::sha256_header) == to_hex(sha256(data)) ? 1 : 0;
      }
    });
  }
  // A second order for the same segment shares the copy in progress.
  auto again = http(verb::post, st.engine_url(1) + "/v1/orders/fetch",
                    fetch_order("film", 0, data, {src.url("seg.ts")}, true));
  for (auto& t : consoles) {
    t.join();
  }
  for (auto& p : problems) {
    EXPECT_EQ(p, "");
  }
  EXPECT_EQ(good.load(), 50);
  EXPECT_EQ(early.load(), 50);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 201u) << again->body;
  EXPECT_EQ(src.requests("seg.ts"), 1);
  // They were served while it arrived, and the copy is now held whole.
  EXPECT_GE(metric(st.engine_url(1), "vodgrid_engine_cut_through_streams_total"), 50);
  EXPECT_EQ(listed(st.engine_url(1)).count("film/0"), 1u);
  auto after = http_get(st.engine_url(1) + "/v1/segments/film/0.ts");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->body, data);
  EXPECT_EQ(src.requests("seg.ts"), 1);
}

// A copy cut short by its source resumes from the next source with a range: one whole copy.
TEST(CutThrough, ACopyCutShortResumesFromTheNextSource) {
  station_fixture st(station_fixture::options{.engines = 2, .copies = 1});
  temp_dir folder;
  std::string data = ts_bytes(4000, 2);
  ASSERT_TRUE(write_file_durably(folder.path() / "seg.ts", data));
  ASSERT_EQ(put_segment(st.engine_url(0), "film/1.ts", data)->status, 201u);
  slow_source dying(folder.path(), {"--rate", "2000000", "--die-after", "300000"});
  std::thread console([&] {
    std::this_thread::sleep_for(50ms);
    auto r = http_get(st.engine_url(1) + "/v1/segments/film/1.ts");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200u);
    EXPECT_TRUE(r->body == data) << r->body.size();
  });
  auto order =
      http(verb::post, st.engine_url(1) + "/v1/orders/fetch",
           fetch_order("film", 1, data,
                       {dying.url("seg.ts"), st.engine_url(0) + "/v1/segments/film/1.ts"}, true));
  console.join();
  ASSERT_TRUE(order);
  EXPECT_EQ(order->status, 201u) << order->body;
  EXPECT_EQ(dying.requests("seg.ts"), 1);
  EXPECT_EQ(http_get(st.engine_url(1) + "/v1/segments/film/1.ts")->body, data);
  // The second source sent only what was missing.
  EXPECT_EQ(metric(st.engine_url(0), "vodgrid_http_file_bytes_sent_total"),
            static_cast<double>(data.size() - 300000));
}

// A copy that fails before its first byte leaves nothing, and the consoles waiting on it are sent
// to an engine that holds the segment.
TEST(CutThrough, ConsolesWaitingOnAFailedCopyAreSentElsewhere) {
  station_fixture st(station_fixture::options{.engines = 3, .copies = 1});
  temp_dir folder;
  std::string data = ts_bytes(2000, 3);
  ASSERT_TRUE(write_file_durably(folder.path() / "seg.ts", data));
  ASSERT_EQ(put_segment(st.engine_url(0), "film/2.ts", data)->status, 201u);
  ASSERT_TRUE(eventually([&] {
    auto r = http_get(st.director_url() + "/v1/engines");
    return r && r->body.find("\"segments\":1") != std::string::npos;
  }));
  slow_source dead(folder.path(), {"--delay-ms", "700", "--die-after", "0"});
  auto order = http(verb::post, st.engine_url(1) + "/v1/orders/fetch",
                    fetch_order("film", 2, data, {dead.url("seg.ts")}, false));
  ASSERT_EQ(order->status, 202u) << order->body;
  std::vector<std::thread> consoles;
  std::atomic<int> moved{0}, good{0};
  for (int i = 0; i < 5; ++i) {
    consoles.emplace_back([&] {
      std::string went;
      auto r = get_following(st.engine_url(1) + "/v1/segments/film/2.ts", {}, &went);
      if (went.rfind(st.engine_url(0), 0) == 0) {
        ++moved;
      }
      if (r && r->status == 200 && r->body == data) {
        ++good;
      }
    });
  }
  for (auto& t : consoles) {
    t.join();
  }
  EXPECT_EQ(moved.load(), 5);
  EXPECT_EQ(good.load(), 5);
  EXPECT_EQ(listed(st.engine_url(1)).count("film/2"), 0u);
  // A console asking again is sent to the holder at once (StaleView below).
  auto again = http_get(st.engine_url(1) + "/v1/segments/film/2.ts");
  EXPECT_EQ(again->status, 307u);
  EXPECT_EQ(again->header("Location"), st.engine_url(0) + "/v1/segments/film/2.ts");
  EXPECT_EQ(metric(st.engine_url(1), "vodgrid_engine_fetches_total\\{result=\"failed\"\\}"), 1);
}

// (c) Claim 21: a range past what a filling engine has is redirected to an engine with the whole
// segment, and served there; a range within it is served by the filling engine.
TEST(Seek, ARangePastTheFilledPartIsRedirectedToAWholeCopy) {
  station_fixture st(station_fixture::options{.engines = 2, .copies = 1});
  temp_dir folder;
  std::string data = ts_bytes(10000, 4);  // 1.9 MB at 400 kB/s: about 5 s to fill
  ASSERT_TRUE(write_file_durably(folder.path() / "seg.ts", data));
  ASSERT_EQ(put_segment(st.engine_url(0), "film/3.ts", data)->status, 201u);
  ASSERT_TRUE(eventually([&] {
    auto r = http_get(st.director_url() + "/v1/engines");
    return r && r->body.find("\"segments\":1") != std::string::npos;
  }));
  slow_source src(folder.path(), {"--rate", "400000"});
  auto order = http(verb::post, st.engine_url(1) + "/v1/orders/fetch",
                    fetch_order("film", 3, data, {src.url("seg.ts")}, false));
  ASSERT_EQ(order->status, 202u) << order->body;
  // The start: served by the filling engine as it arrives.
  auto head = http_get(st.engine_url(1) + "/v1/segments/film/3.ts", {{"Range", "bytes=0-999"}});
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 206u);
  EXPECT_EQ(head->header(api::engine_header), st.engine_name(1));
  EXPECT_EQ(head->body, data.substr(0, 1000));
  // Near the end: not there yet, so sent to engine 0.
  size_t from = data.size() - 5000;
  auto seek = http_get(st.engine_url(1) + "/v1/segments/film/3.ts",
                       {{"Range", fmt::format("bytes={}-", from)}});
  ASSERT_TRUE(seek);
  ASSERT_EQ(seek->status, 307u) << seek->body;
  EXPECT_EQ(seek->header("Location"), st.engine_url(0) + "/v1/segments/film/3.ts");
  auto there = http_get(seek->header("Location"), {{"Range", fmt::format("bytes={}-", from)}});
  ASSERT_TRUE(there);
  EXPECT_EQ(there->status, 206u);
  EXPECT_EQ(there->body, data.substr(from));
  EXPECT_EQ(src.requests("seg.ts"), 1);
}

// A console sent to an engine that does not hold the segment (the director's view was older than
// an eviction, a drop or a lost file) goes on to an engine that does, and the director no longer
// names the first for it; a segment no engine holds is still a 404 at an engine, and another
// engine's copy is told 404 at once (it tries its next source).
TEST(StaleView, AConsoleAtAnEngineThatLacksTheSegmentIsSentToOneThatHoldsIt) {
  station_fixture st(station_fixture::options{.engines = 3, .copies = 1});
  std::string x = ts_bytes(1000, 40);
  for (int e : {0, 1}) {
    ASSERT_EQ(put_segment(st.engine_url(e), "film/0.ts", x)->status, 201u);
  }
  auto named = [&] {
    std::set<std::string> out;
    for (int i = 0; i < 8; ++i) {
      auto r = http_get(st.director_url() + "/v1/programs/film/segments/0/holder");
      if (r && r->status == 200) {
        out.insert(boost::json::parse(r->body).at("engine").as_string().c_str());
      }
    }
    return out;
  };
  ASSERT_TRUE(eventually([&] { return named().size() == 2; }));
  // Engine 2 never had it: a console asking it goes to a holder, with its query.
  auto r = http_get(st.engine_url(2) + "/v1/segments/film/0.ts?t=1");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 307u) << r->body;
  auto location = r->header("Location");
  EXPECT_TRUE(location == st.engine_url(0) + "/v1/segments/film/0.ts?t=1" ||
              location == st.engine_url(1) + "/v1/segments/film/0.ts?t=1")
      << location;
  EXPECT_TRUE(get_following(st.engine_url(2) + "/v1/segments/film/0.ts")->body == x);
  EXPECT_EQ(http_get(st.engine_url(2) + "/v1/segments/film/1.ts")->status, 404u);
  EXPECT_EQ(
      http_get(st.engine_url(2) + "/v1/segments/film/0.ts", {{api::copy_header, "e0"}})->status,
      404u);
  // Engine 0 loses its file behind its store's back: its heartbeats still list the segment. The
  // first console sent there goes on to engine 1, and from then on the director names engine 1.
  size_t removed = 0;
  for (auto& f : fs::recursive_directory_iterator(st.data() / st.engine_name(0))) {
    if (f.is_regular_file() && f.file_size() == x.size()) {
      removed += fs::remove(f.path()) ? 1 : 0;
    }
  }
  ASSERT_EQ(removed, 1u);
  r = http_get(st.engine_url(0) + "/v1/segments/film/0.ts");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 307u) << r->body;
  EXPECT_EQ(r->header("Location"), st.engine_url(1) + "/v1/segments/film/0.ts");
  EXPECT_EQ(named(), std::set<std::string>{st.engine_name(1)});
}

// (d) An engine at its disk budget evicts the least recently used copies that exist elsewhere and
// keeps every last copy: when only last copies are left, a new copy is refused (507).
TEST(Eviction, AnEngineAtItsBudgetKeepsEveryLastCopy) {
  const size_t seg = 188 * 5000;  // 940 kB
  station_fixture st(station_fixture::options{
      .engines = 2, .copies = 1, .dirs_per_engine = 1, .max_disk_bytes = 3 * seg + seg / 2});
  std::vector<std::string> s;
  for (int i = 0; i < 8; ++i) {
    s.push_back(ts_bytes(5000, 10 + i));
  }
  // Engine 0: s0 and s1 only there; s2 also at engine 1, which holds s3 and s4 as well.
  for (int i : {0, 1, 2}) {
    ASSERT_EQ(put_segment(st.engine_url(0), fmt::format("film/{}.ts", i), s[i])->status, 201u);
  }
  for (int i : {2, 3, 4}) {
    ASSERT_EQ(put_segment(st.engine_url(1), fmt::format("film/{}.ts", i), s[i])->status, 201u);
  }
  auto both_hold = [&](int a, int b) {
    return eventually([&] {
      auto r = http_get(st.director_url() + "/v1/engines");
      if (!r) {
        return false;
      }
      auto v = boost::json::parse(r->body);
      std::vector<int64_t> n;
      for (auto& e : v.at("engines").as_array()) {
        n.push_back(e.at("segments").to_number<int64_t>());
      }
      return n.size() == 2 && ((n[0] == a && n[1] == b) || (n[0] == b && n[1] == a));
    });
  };
  ASSERT_TRUE(both_hold(3, 3));
  auto copy = [&](int i) {
    return http(verb::post, st.engine_url(0) + "/v1/orders/fetch",
                fetch_order("film", static_cast<uint32_t>(i), s[i],
                            {st.engine_url(1) + fmt::format("/v1/segments/film/{}.ts", i)}, true));
  };
  // s3 needs room: s2 is the only copy engine 1 also holds, so it goes.
  auto r = copy(3);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201u) << r->body;
  EXPECT_EQ(listed(st.engine_url(0)), (std::set<std::string>{"film/0", "film/1", "film/3"}));
  ASSERT_TRUE(both_hold(3, 3));
  // s4: s3 is held at engine 1 too.
  r = copy(4);
  EXPECT_EQ(r->status, 201u) << r->body;
  EXPECT_EQ(listed(st.engine_url(0)), (std::set<std::string>{"film/0", "film/1", "film/4"}))
      << st.log_of("e0");
  // Engine 1 drops s4 and takes s5: the copy of s4 at engine 0 is now the last one, like s0, s1.
  ASSERT_EQ(http(verb::delete_, st.engine_url(1) + "/v1/segments/film/4.ts")->status, 204u);
  ASSERT_TRUE(both_hold(3, 2)) << http_get(st.director_url() + "/v1/engines")->body
                               << fmt::format("{}", fmt::join(listed(st.engine_url(0)), ","));
  ASSERT_EQ(put_segment(st.engine_url(1), "film/5.ts", s[5])->status, 201u);
  ASSERT_TRUE(both_hold(3, 3));
  r = copy(5);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 507u) << r->body;
  EXPECT_NE(r->body.find("no room"), std::string::npos) << r->body;
  auto put = put_segment(st.engine_url(0), "film/7.ts", s[7]);
  EXPECT_EQ(put->status, 507u) << put->body;
  EXPECT_EQ(listed(st.engine_url(0)), (std::set<std::string>{"film/0", "film/1", "film/4"}));
  for (int i : {0, 1, 4}) {
    EXPECT_EQ(http_get(st.engine_url(0) + fmt::format("/v1/segments/film/{}.ts", i))->body, s[i]);
  }
  EXPECT_EQ(metric(st.engine_url(0), "vodgrid_engine_evictions_total"), 2);
  EXPECT_GE(metric(st.director_url(), "vodgrid_director_evictions_total\\{result=\"refused\"\\}"),
            3);
}

// A segment being streamed is never evicted, even when it is the least recently used.
TEST(Eviction, ASegmentBeingStreamedIsNotEvicted) {
  const size_t packets = 32000;  // 6 MB: more than a socket's send buffer takes, so it streams
  station_fixture st(station_fixture::options{
      .engines = 3, .copies = 1, .dirs_per_engine = 1, .max_disk_bytes = 188 * packets * 5 / 2});
  std::string x = ts_bytes(packets, 20), y = ts_bytes(packets, 21), z = ts_bytes(packets, 22);
  for (int e : {0, 1}) {
    ASSERT_EQ(put_segment(st.engine_url(e), "film/0.ts", x)->status, 201u);
    ASSERT_EQ(put_segment(st.engine_url(e), "film/1.ts", y)->status, 201u);
  }
  ASSERT_EQ(put_segment(st.engine_url(2), "film/2.ts", z)->status, 201u);
  ASSERT_TRUE(eventually([&] {
    auto r = http_get(st.director_url() + "/v1/engines");
    if (!r) {
      return false;
    }
    int64_t total = 0;
    auto v = boost::json::parse(r->body);
    for (auto& e : v.at("engines").as_array()) {
      total += e.at("segments").to_number<int64_t>();
    }
    return total == 5;
  }));
  // A viewer reads x slowly; y is asked for after it, so x is the least recently used.
  std::pair<int, std::string> got;
  std::thread viewer([&] {
    auto r = slow_get(st.engine_url(0) + "/v1/segments/film/0.ts", 16384);
    got = {r.status, r.body};
  });
  ASSERT_TRUE(
      eventually([&] { return metric(st.engine_url(0), "vodgrid_engine_active_streams") == 1; }));
  ASSERT_EQ(http_get(st.engine_url(0) + "/v1/segments/film/1.ts")->status, 200u);
  auto r = http(verb::post, st.engine_url(0) + "/v1/orders/fetch",
                fetch_order("film", 2, z, {st.engine_url(2) + "/v1/segments/film/2.ts"}, true));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201u) << r->body;
  EXPECT_EQ(listed(st.engine_url(0)), (std::set<std::string>{"film/0", "film/2"}));
  viewer.join();
  EXPECT_EQ(got.first, 200);
  EXPECT_TRUE(got.second == x) << got.second.size();
}

// Evictions reach the registry: a station whose engine has room for half a program plays it
// whole (evicting as it goes), and the registry lists at the station only what its engine holds.
TEST(Eviction, EvictionsReachTheRegistry) {
  const size_t packets = 5000;  // 940 kB
  grid_fixture g(
      {{.name = "home", .engines = 2},
       {.name = "edge", .engines = 1, .x_km = 100, .max_disk_bytes = 188 * packets * 7 / 2}});
  temp_dir folder;
  std::string playlist =
      "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n";
  std::vector<std::string> segs;
  for (int i = 0; i < 7; ++i) {
    segs.push_back(ts_bytes(packets, 30 + i));
    ASSERT_TRUE(write_file_durably(folder.path() / fmt::format("s{}.ts", i), segs.back()));
    playlist += fmt::format("#EXTINF:1.000,\ns{}.ts\n", i);
  }
  playlist += "#EXT-X-ENDLIST\n";
  ASSERT_TRUE(write_file_durably(folder.path() / "index.m3u8", playlist));
  auto in = g.ingest((folder.path() / "index.m3u8").string(), "big", "edge", "0");
  ASSERT_EQ(in.status, 0) << in.out << in.err;
  ASSERT_TRUE(eventually(
      [&] { return http_get(g.director_url("edge") + "/v1/programs/big").value().status == 200; }));
  auto edge_engine = g.engine_url(g.engines_of("edge").at(0));
  for (int i = 0; i < 7; ++i) {
    std::string went;
    auto r = get_following(
        g.director_url("edge") + fmt::format("/v1/programs/big/segments/{}.ts", i), {}, &went);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200u) << i << ": " << r->body;
    EXPECT_TRUE(r->body == segs[i]) << i;
    EXPECT_EQ(went.rfind(edge_engine, 0), 0u) << went;
  }
  EXPECT_GE(metric(edge_engine, "vodgrid_engine_evictions_total"), 4);
  // The registry's view of the edge is what its engine holds, per engine and for the station.
  auto held = listed(edge_engine);
  EXPECT_LE(held.size(), 3u);
  EXPECT_TRUE(eventually([&] {
    auto r = http_get(g.registry_url() + "/v1/programs/big");
    if (!r || r->status != 200) {
      return false;
    }
    auto v = boost::json::parse(r->body);
    auto& h = v.at("held").as_object();
    size_t at_edge = h.contains("edge") ? h.at("edge").to_number<size_t>() : 0;
    size_t engine_rows = 0;
    for (int i = 0; i < 7; ++i) {
      engine_rows += engines_known(g, "big", i) - 2;  // the home's two engines hold each
    }
    return at_edge == held.size() && engine_rows == held.size();
  })) << fmt::format("{}", fmt::join(held, ","));
}

// Bad input to the new orders and endpoints: a 4xx with the reason, and nothing changes.
TEST(HotBadInput, OrdersEvictionsAndRangesOnACopyInProgress) {
  station_fixture st(station_fixture::options{.engines = 2, .copies = 1});
  std::string data = ts_bytes(3000, 6);
  auto order = [&](const std::string& body) {
    return http(verb::post, st.engine_url(1) + "/v1/orders/fetch", body);
  };
  std::string key = R"("program":"film","index":0,"sha256":")" + to_hex(sha256(data)) + "\"";
  for (auto body :
       {"{" + key + "}", "{" + key + R"(,"sources":"http://a/"})", "{" + key + R"(,"sources":[1]})",
        "{" + key + R"(,"sources":[]})", "{" + key + R"(,"sources":["http://a/"],"wait":"yes"})",
        "{" + key + R"(,"sources":["ftp://a/b"]})",
        "{" + key + ",\"sources\":[" + std::string(17 * 15, ' ') + "]}",
        std::string("{\"program\":\"../x\"}"), std::string("[")}) {
    auto r = order(body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400u) << body << " -> " << r->body;
    EXPECT_NE(r->body.find("\"error\""), std::string::npos) << r->body;
  }
  std::string many = "[";
  for (int i = 0; i < 17; ++i) {
    many += fmt::format("{}\"http://127.0.0.1:1/{}\"", i ? "," : "", i);
  }
  auto r = order("{" + key + ",\"sources\":" + many + "]}");
  EXPECT_EQ(r->status, 400u) << r->body;
  r = order(fetch_order("film", 0, std::string(65u << 20, 'x'), {"http://127.0.0.1:1/x"}, false));
  EXPECT_EQ(r->status, 413u) << r->body;
  EXPECT_EQ(listed(st.engine_url(1)).size(), 0u);
  EXPECT_EQ(metric(st.engine_url(1), "vodgrid_engine_copies_in_progress"), 0);

  // Evictions: only an engine of the station, and a well-formed list.
  auto ev = [&](const std::string& engine, const std::string& body) {
    return http(verb::post, st.director_url() + "/v1/engines/" + engine + "/evictions", body);
  };
  EXPECT_EQ(ev(st.engine_name(0), "{").value().status, 400u);
  EXPECT_EQ(ev(st.engine_name(0), R"({"bytes":1,"segments":{}})").value().status, 400u);
  EXPECT_EQ(ev(st.engine_name(0), R"({"bytes":-1,"segments":[]})").value().status, 400u);
  EXPECT_EQ(ev("nobody", R"({"bytes":1,"segments":[]})").value().status, 404u);
  auto none = ev(st.engine_name(0), R"({"bytes":1,"segments":[{"program":"film","index":0}]})");
  ASSERT_EQ(none->status, 200u) << none->body;
  EXPECT_EQ(boost::json::parse(none->body).at("segments").as_array().size(), 0u);

  // Ranges on a copy in progress: unsatisfiable is 416, as on a held segment.
  temp_dir folder;
  ASSERT_TRUE(write_file_durably(folder.path() / "seg.ts", data));
  slow_source src(folder.path(), {"--rate", "300000"});
  ASSERT_EQ(order(fetch_order("film", 0, data, {src.url("seg.ts")}, false))->status, 202u);
  auto bad = http_get(st.engine_url(1) + "/v1/segments/film/0.ts",
                      {{"Range", fmt::format("bytes={}-", data.size() + 10)}});
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 416u) << bad->body;
  EXPECT_EQ(bad->header("Content-Range"), fmt::format("bytes */{}", data.size()));
  // Another digest for the segment arriving is a conflict; the copy goes on.
  r = order(fetch_order("film", 0, ts_bytes(3000, 7), {src.url("seg.ts")}, false));
  EXPECT_EQ(r->status, 409u) << r->body;
  auto whole = http_get(st.engine_url(1) + "/v1/segments/film/0.ts");
  ASSERT_TRUE(whole);
  EXPECT_EQ(whole->body, data);
  EXPECT_EQ(src.requests("seg.ts"), 1);
}

// The director's count of consoles at an engine is an estimate between heartbeats. An engine a
// console reaches at its stream limit hands it on: to another holder under its limits, else to an
// engine that receives a replica (claim 19); it refuses only when none can take it. A replica
// being streamed is not dropped as idle.
TEST(HotSegment, AnEngineAtItsStreamLimitHandsTheConsoleOn) {
  grid_fixture g({{.name = "home", .engines = 3, .max_streams = 1, .replica_idle_seconds = 1}});
  std::string data = ts_bytes(32000, 9);  // 6 MB: more than a socket's send buffer takes
  ASSERT_TRUE(ingest_one_segment(g, "lim", data));
  auto engines = g.engines_of("home");
  std::vector<std::string> holders, other;
  for (auto& e : engines) {
    auto r = http_get(g.engine_url(e) + "/v1/segments/lim/0.ts", {{"Range", "bytes=0-0"}});
    ASSERT_TRUE(r);
    (r->status == 206 ? holders : other).push_back(e);
  }
  ASSERT_EQ(holders.size(), 2u);
  ASSERT_EQ(other.size(), 1u);
  auto path = "/v1/segments/lim/0.ts";
  // Streams the director has heard of from the engines' heartbeats.
  auto director_sees = [&](const std::string& engine) -> int64_t {
    auto r = http_get(g.director_url("home") + "/v1/engines");
    if (!r || r->status != 200) {
      return -1;
    }
    auto v = boost::json::parse(r->body);
    for (auto& e : v.at("engines").as_array()) {
      if (e.at("name").as_string() == engine) {
        return e.at("load").at("active_streams").to_number<int64_t>();
      }
    }
    return -1;
  };
  // A viewer holding a stream open at an engine until released (at the latest when the test ends).
  struct held_stream {
    std::latch gate{2};
    std::thread viewer;
    void release() {
      if (viewer.joinable()) {
        gate.count_down();
        viewer.join();
      }
    }
    ~held_stream() { release(); }
  };
  std::vector<std::unique_ptr<held_stream>> held;
  auto hold_stream = [&](const std::string& engine) {
    held.push_back(std::make_unique<held_stream>());
    held.back()->viewer = std::thread([&, engine, gate = &held.back()->gate] {
      auto r = slow_get(g.engine_url(engine) + path, 65536, gate);
      EXPECT_EQ(r.status, 200) << r.body;
      EXPECT_TRUE(r.body == data) << r.body.size();
    });
  };
  // The first holder's one stream is taken: a console sent there anyway goes to the second.
  hold_stream(holders[0]);
  ASSERT_TRUE(eventually([&] { return director_sees(holders[0]) == 1; }));
  auto r = http_get(g.engine_url(holders[0]) + path);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 307u) << r->body;
  EXPECT_EQ(r->header("Location"), g.engine_url(holders[1]) + path);
  EXPECT_EQ(metric(g.engine_url(holders[0]), "vodgrid_engine_handoffs_total"), 1);
  // Both holders full: the third engine receives a replica and the console goes there.
  hold_stream(holders[1]);
  ASSERT_TRUE(eventually([&] { return director_sees(holders[1]) == 1; }));
  r = http_get(g.engine_url(holders[0]) + path);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 307u) << r->body;
  EXPECT_EQ(r->header("Location"), g.engine_url(other[0]) + path);
  EXPECT_EQ(metric(g.director_url("home"), "vodgrid_director_replicas_total\\{event=\"made\"\\}"),
            1);
  // That console watches there (its bytes checked when it ends). All three full: refused.
  hold_stream(other[0]);
  ASSERT_TRUE(eventually([&] { return director_sees(other[0]) == 1; }));
  r = http_get(g.engine_url(holders[1]) + path);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503u) << r->body;
  EXPECT_NE(r->body.find("stream limit"), std::string::npos) << r->body;
  EXPECT_EQ(r->header("Retry-After"), "1");
  // The replica is idle by the director's clock (no console sent there for a second) but
  // streamed: it stays until the stream ends, then goes.
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(listed(g.engine_url(other[0])).count("lim/0"), 1u);
  auto idle = http(verb::delete_, g.engine_url(other[0]) + path + "?if_idle=1");
  ASSERT_TRUE(idle);
  EXPECT_EQ(idle->status, 409u) << idle->body;
  EXPECT_EQ(listed(g.engine_url(other[0])).count("lim/0"), 1u);
  for (auto& h : held) {
    h->release();
  }
  EXPECT_TRUE(eventually([&] { return listed(g.engine_url(other[0])).count("lim/0") == 0; }, 10s));
  EXPECT_EQ(listed(g.engine_url(holders[0])).count("lim/0"), 1u);
  EXPECT_EQ(listed(g.engine_url(holders[1])).count("lim/0"), 1u);
  // The director counts the drop when the engine's answer to its DELETE comes back, a moment
  // after the engine stops listing the segment.
  EXPECT_TRUE(eventually([&] {
    return metric(g.director_url("home"),
                  "vodgrid_director_replicas_total\\{event=\"dropped\"\\}") >= 1;
  }));
}

// (b) Claims 19, 20: one program gets ten times the viewers one engine allows. No console is
// refused, nor handed from engine to engine more than twice (a player follows only a few
// redirects): the director counts the consoles it sent until the engines report them arrived,
// however slowly they connect. Replicas appear at other engines and the registry learns of them;
// when the viewers are gone the replicas beyond the station's placement are deleted, and the
// registry learns that too.
TEST(HotSegment, TenTimesTheViewersOneEngineAllowsAreAllServedFromReplicas) {
  constexpr int viewers = 20, per_engine = 2;
  grid_fixture g(
      {{.name = "home", .engines = 11, .max_streams = per_engine, .replica_idle_seconds = 8}});
  // 12 MB: more than an engine's socket send buffer (at most 4 MB here) takes, so each viewer's
  // stream stays open at its engine for about a second and a half at 6 MB/s.
  std::string data = ts_bytes(64000, 5);
  ASSERT_TRUE(ingest_one_segment(g, "hot", data));
  ASSERT_TRUE(eventually([&] { return engines_known(g, "hot", 0) == 2; }))
      << engines_known(g, "hot", 0);

  std::vector<std::thread> consoles;
  std::vector<std::string> problems(viewers);
  std::set<std::string> served_by;
  std::mutex mu;
  // Every viewer's stream stays open until all have begun: twenty at once, on a slow machine too.
  std::latch streaming(viewers);
  for (int i = 0; i < viewers; ++i) {
    consoles.emplace_back([&, i] {
      auto r = http_get(g.director_url("home") + "/v1/programs/hot/segments/0.ts");
      if (!r || r->status != 302) {
        problems[i] = r ? fmt::format("director: {} {}", r->status, r->body) : r.err().detail;
        streaming.count_down();
        return;
      }
      auto s = slow_get(r->header("Location"), 65536, &streaming);
      if (s.status != 200 || sha256(s.body) != sha256(data)) {
        problems[i] = fmt::format("engine: {} with {} bytes", s.status, s.body.size());
      }
      if (s.went.size() > 2) {
        problems[i] += fmt::format(" handed on {} times: {} then {}", s.went.size(),
                                   r->header("Location"), fmt::join(s.went, ", "));
      }
      std::lock_guard lock(mu);
      served_by.insert(s.url.substr(0, s.url.find("/v1/")));
    });
    std::this_thread::sleep_for(30ms);
  }
  // The registry learns of the replicas while the viewers watch: its count is sampled throughout.
  // (A replica idle for 8 s is dropped: on a slow host, with 3 s, the first replicas, their viewers
  // gone, were dropped before the last copy was whole, and the registry never listed ten at once.)
  std::atomic<bool> watching = true;
  std::atomic<size_t> peak = 0;
  std::thread sampler([&] {
    while (watching) {
      size_t n = engines_known(g, "hot", 0);
      if (n > peak) {
        peak = n;
      }
      std::this_thread::sleep_for(50ms);
    }
  });
  for (auto& t : consoles) {
    t.join();
  }
  for (int i = 0; i < viewers; ++i) {
    EXPECT_EQ(problems[i], "") << "viewer " << i;
  }
  // Two engines could take four viewers at a time: the rest went to replicas.
  EXPECT_GE(served_by.size(), static_cast<size_t>(viewers / per_engine)) << served_by.size();
  EXPECT_GE(metric(g.director_url("home"), "vodgrid_director_replicas_total\\{event=\"made\"\\}"),
            viewers / per_engine - 2);
  EXPECT_TRUE(eventually([&] { return peak >= static_cast<size_t>(viewers / per_engine); }))
      << peak;
  watching = false;
  sampler.join();
  // Idle replicas go; the placement's two copies stay.
  EXPECT_TRUE(eventually([&] { return engines_known(g, "hot", 0) == 2; }, 30s))
      << engines_known(g, "hot", 0);
  EXPECT_GE(
      metric(g.director_url("home"), "vodgrid_director_replicas_total\\{event=\"dropped\"\\}"), 1);
  auto after = http_get(g.director_url("home") + "/v1/programs/hot/segments/0.ts");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 302u);
}

}  // namespace
}  // namespace vodgrid::test
