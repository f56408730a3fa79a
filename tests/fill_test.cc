// The engine's copies with bounded memory (issue 16, item 4): bytes go to the segment's file as
// they arrive and cut-through consoles read them from it; at most max_fills copies run at once, the
// rest queued, all completing; a source dying mid-copy still fails the consoles cleanly.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <thread>

#include "api/api.h"
#include "base/fs.h"
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
  uint32_t x = 88172645u + static_cast<uint32_t>(seed) * 104729u;
  for (size_t i = 0; i < s.size(); ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    s[i] = static_cast<char>(i % 188 == 0 ? 0x47 : x & 0xff);
  }
  return s;
}

// The files under the tmp/ folders of engine `name`'s data directories, with their sizes.
std::vector<uint64_t> temp_files(const station_fixture& st, const std::string& name) {
  std::vector<uint64_t> sizes;
  std::error_code ec;
  for (auto& d : fs::directory_iterator(st.data() / name, ec)) {
    for (auto& f : fs::directory_iterator(d.path() / "tmp", ec)) {
      sizes.push_back(fs::file_size(f.path(), ec));
    }
  }
  return sizes;
}

std::string order_of(const std::string& program, uint32_t index, const std::string& data,
                     const std::string& source, bool wait) {
  return fetch_order(program, index, data, {source}, wait);
}

// A console reading a segment arriving from a slow source gets exactly the source's bytes, whole
// and as a range; meanwhile the copy is a file of the segment's size in the engine's tmp/ (where
// the consoles read it), and at the end it is held and the temp file gone.
TEST(FillFromFile, ConsolesReadingWhileItArrivesGetExactlyTheSourceBytes) {
  station_fixture st(station_fixture::options{.engines = 1, .copies = 1});
  temp_dir folder;
  std::string data = ts_bytes(12000, 1);  // 2.2 MB, about 2 s at 1 MB/s
  ASSERT_TRUE(write_file_durably(folder.path() / "seg.ts", data));
  slow_source src(folder.path(), {"--rate", "1000000"});
  auto order = http(verb::post, st.engine_url(0) + "/v1/orders/fetch",
                    order_of("film", 0, data, src.url("seg.ts"), false));
  ASSERT_TRUE(order);
  ASSERT_EQ(order->status, 202u) << order->body;
  std::thread whole_console([&] {
    auto r = http_get(st.engine_url(0) + "/v1/segments/film/0.ts");
    ASSERT_TRUE(r) << r.err().detail;
    EXPECT_EQ(r->status, 200u);
    EXPECT_TRUE(r->body == data) << r->body.size() << " bytes";
  });
  std::thread range_console([&] {
    auto r = http_get(st.engine_url(0) + "/v1/segments/film/0.ts", {{"Range", "bytes=1000-"}});
    ASSERT_TRUE(r) << r.err().detail;
    EXPECT_EQ(r->status, 206u);
    EXPECT_TRUE(r->body == data.substr(1000)) << r->body.size() << " bytes";
  });
  EXPECT_TRUE(eventually([&] {
    auto t = temp_files(st, st.engine_name(0));
    return t.size() == 1 && t[0] == data.size();
  }));
  whole_console.join();
  range_console.join();
  EXPECT_GE(metric(st.engine_url(0), "vodgrid_engine_cut_through_streams_total"), 2);
  ASSERT_TRUE(eventually([&] {
    return metric(st.engine_url(0), "vodgrid_engine_fetches_total\\{result=\"ok\"\\}") == 1;
  }));
  EXPECT_TRUE(temp_files(st, st.engine_name(0)).empty());
  auto after = http_get(st.engine_url(0) + "/v1/segments/film/0.ts");
  ASSERT_TRUE(after);
  EXPECT_TRUE(after->body == data);
  EXPECT_EQ(src.requests("seg.ts"), 1);
}

// A source that dies mid-copy, with no other source: the console reading it cut-through gets a
// reply cut short (never a whole one), the copy counts as failed, nothing is held or left in tmp/.
TEST(FillFromFile, ASourceDyingMidCopyCutsTheConsoleShortAndLeavesNothing) {
  station_fixture st(station_fixture::options{.engines = 1, .copies = 1});
  temp_dir folder;
  std::string data = ts_bytes(6000, 2);
  ASSERT_TRUE(write_file_durably(folder.path() / "seg.ts", data));
  slow_source dying(folder.path(), {"--rate", "1000000", "--die-after", "300000"});
  auto order = http(verb::post, st.engine_url(0) + "/v1/orders/fetch",
                    order_of("film", 1, data, dying.url("seg.ts"), false));
  ASSERT_EQ(order->status, 202u) << order->body;
  int fd = connect_loopback(
      static_cast<uint16_t>(std::stoi(st.engine_url(0).substr(st.engine_url(0).rfind(':') + 1))));
  ASSERT_GE(fd, 0);
  std::string req = "GET /v1/segments/film/1.ts HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(::send(fd, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
  std::string got;
  char buf[65536];
  timeval tv{20, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      break;
    }
    got.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  ASSERT_EQ(status_of(got), 200) << got.substr(0, 200);
  auto body = got.substr(got.find("\r\n\r\n") + 4);
  EXPECT_EQ(body.size(), 300000u);  // what arrived, and not a byte more
  EXPECT_TRUE(body == data.substr(0, body.size()));
  EXPECT_TRUE(eventually([&] {
    return metric(st.engine_url(0), "vodgrid_engine_fetches_total\\{result=\"failed\"\\}") == 1;
  }));
  EXPECT_TRUE(eventually([&] { return temp_files(st, st.engine_name(0)).empty(); }));
  EXPECT_EQ(http_get(st.engine_url(0) + "/v1/segments/film/1.ts")->status, 404u);
}

// With max_fills 2, six copies ordered at once: never more than two run, the others queue (their
// consoles with them), and all six complete with the source's bytes.
TEST(FillLimit, CopiesBeyondMaxFillsQueueAndAllComplete) {
  station_fixture st(station_fixture::options{.engines = 1, .copies = 1, .max_fills = 2});
  temp_dir folder;
  std::vector<std::string> data;
  for (int i = 0; i < 6; ++i) {
    data.push_back(ts_bytes(2500, 10 + i));  // 470 KB, about 0.5 s each at 1 MB/s
    ASSERT_TRUE(write_file_durably(folder.path() / fmt::format("s{}.ts", i), data.back()));
  }
  slow_source src(folder.path(), {"--rate", "1000000"});
  for (int i = 0; i < 6; ++i) {
    auto order = http(verb::post, st.engine_url(0) + "/v1/orders/fetch",
                      order_of("film", static_cast<uint32_t>(i), data[static_cast<size_t>(i)],
                               src.url(fmt::format("s{}.ts", i)), false));
    ASSERT_TRUE(order);
    ASSERT_EQ(order->status, 202u) << order->body;  // never refused for the limit
  }
  // A console on the last one, queued behind four others: it waits, then gets it all.
  std::thread console([&] {
    auto r = http_get(st.engine_url(0) + "/v1/segments/film/5.ts");
    ASSERT_TRUE(r) << r.err().detail;
    EXPECT_EQ(r->status, 200u);
    EXPECT_TRUE(r->body == data[5]) << r->body.size() << " bytes";
  });
  double most_running = 0, most_queued = 0;
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    most_running =
        std::max(most_running, metric(st.engine_url(0), "vodgrid_engine_copies_running"));
    most_queued = std::max(most_queued, metric(st.engine_url(0), "vodgrid_engine_copies_queued"));
    if (metric(st.engine_url(0), "vodgrid_engine_fetches_total\\{result=\"ok\"\\}") == 6) {
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  console.join();
  EXPECT_EQ(metric(st.engine_url(0), "vodgrid_engine_fetches_total\\{result=\"ok\"\\}"), 6);
  EXPECT_LE(most_running, 2);
  EXPECT_GE(most_queued, 3);  // six ordered at once, two running
  for (int i = 0; i < 6; ++i) {
    auto r = http_get(st.engine_url(0) + fmt::format("/v1/segments/film/{}.ts", i));
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->body == data[static_cast<size_t>(i)]) << i;
    EXPECT_EQ(src.requests(fmt::format("s{}.ts", i)), 1);
  }
  EXPECT_EQ(metric(st.engine_url(0), "vodgrid_engine_copies_queued"), 0);
}

#ifdef VODGRID_RSS_TEST
// The engine's peak resident memory (VmHWM), in bytes.
uint64_t peak_rss(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      return std::stoull(line.substr(6)) * 1024;
    }
  }
  return 0;
}

// Four 24 MiB copies at once, each read cut-through by two consoles: the engine's peak resident
// memory grows by far less than one of them (the old copies held each segment whole: 96 MiB).
TEST(FillMemory, FourLargeCopiesAtOnceKeepTheEngineSmall) {
  station_fixture st(station_fixture::options{.engines = 1, .copies = 1});
  temp_dir folder;
  std::vector<std::string> data;
  for (int i = 0; i < 4; ++i) {
    data.push_back(ts_bytes(24 * 1024 * 1024 / 188, 20 + i));
    ASSERT_TRUE(write_file_durably(folder.path() / fmt::format("b{}.ts", i), data.back()));
  }
  slow_source src(folder.path(), {"--rate", "16000000"});
  uint64_t before = peak_rss(st.engine_pid(0));
  ASSERT_GT(before, 0u);
  std::vector<std::thread> consoles;
  std::atomic<int> good{0};
  for (int i = 0; i < 4; ++i) {
    auto order = http(verb::post, st.engine_url(0) + "/v1/orders/fetch",
                      order_of("big", static_cast<uint32_t>(i), data[static_cast<size_t>(i)],
                               src.url(fmt::format("b{}.ts", i)), false));
    ASSERT_EQ(order->status, 202u) << order->body;
    for (int c = 0; c < 2; ++c) {
      consoles.emplace_back([&, i] {
        auto r = http_get(st.engine_url(0) + fmt::format("/v1/segments/big/{}.ts", i));
        if (r && r->status == 200 && r->body == data[static_cast<size_t>(i)]) {
          ++good;
        }
      });
    }
  }
  for (auto& t : consoles) {
    t.join();
  }
  EXPECT_EQ(good.load(), 8);
  ASSERT_TRUE(eventually(
      [&] {
        return metric(st.engine_url(0), "vodgrid_engine_fetches_total\\{result=\"ok\"\\}") == 4;
      },
      60s));
  uint64_t after = peak_rss(st.engine_pid(0));
  EXPECT_LT(after - before, 16u << 20) << "peak went from " << before << " to " << after;
}
#endif

// A station (a director, one engine) whose daemons run two event loops each.
std::unique_ptr<station_fixture> two_loop_station() {
  const char* was = std::getenv("VODGRID_THREADS");
  std::string saved = was ? was : "";
  ::setenv("VODGRID_THREADS", "2", 1);
  auto st = std::make_unique<station_fixture>(station_fixture::options{.engines = 1, .copies = 1});
  if (was) {
    ::setenv("VODGRID_THREADS", saved.c_str(), 1);
  } else {
    ::unsetenv("VODGRID_THREADS");
  }
  return st;
}

// Issue 16, item 1: an engine on two loops serves held segments from either loop with no hop to the
// home loop, while the home loop removes segments, copies them back (cut-through meanwhile) and
// beats every 100 ms. Every answer is right: a held segment's exact bytes (whole or the range asked
// for), a segment being copied the source's bytes, a removed one 404; nothing else; and some of
// them were sent by the further loop.
TEST(EngineLoops, SegmentGetsOnTwoLoopsStayRightWhileTheHomeLoopRemovesAndCopies) {
  auto st = two_loop_station();
  constexpr int stable = 6, churned = 4;
  temp_dir folder;
  std::vector<std::string> data;
  for (int i = 0; i < stable + churned; ++i) {
    data.push_back(ts_bytes(1000 + 400 * static_cast<size_t>(i), 100 + i));  // 188 KB .. 865 KB
    ASSERT_TRUE(write_file_durably(folder.path() / fmt::format("{}.ts", i), data.back()));
    auto put = http(verb::put, st->engine_url(0) + fmt::format("/v1/segments/film/{}.ts", i),
                    data.back(), {{std::string(api::sha256_header), to_hex(sha256(data.back()))}});
    ASSERT_TRUE(put && put->status == 201u) << (put ? put->body : put.err().detail);
  }
  // Copies back at 20 MB/s: consoles meet them arriving.
  slow_source src(folder.path(), {"--rate", "20000000"});
  std::atomic<bool> done{false};
  std::atomic<int> removed{0}, copied{0};
  std::thread churn([&] {
    for (int round = 0; !done; ++round) {
      int i = stable + round % churned;
      auto url = st->engine_url(0) + fmt::format("/v1/segments/film/{}.ts", i);
      auto del = http(verb::delete_, url + "?if_idle=1");
      if (!del || del->status != 204u) {
        continue;  // streamed now (409): another round
      }
      ++removed;
      auto order = http(verb::post, st->engine_url(0) + "/v1/orders/fetch",
                        order_of("film", static_cast<uint32_t>(i), data[static_cast<size_t>(i)],
                                 src.url(fmt::format("{}.ts", i)), true));
      if (order && order->status == 201u) {
        ++copied;  // copied back whole (a wait order answers once the copy is held)
      }
    }
  });
  std::atomic<int> whole{0}, ranges{0}, missing{0};
  std::vector<std::string> wrong(4);
  std::vector<std::thread> consoles;
  for (int c = 0; c < 4; ++c) {
    consoles.emplace_back([&, c] {
      uint32_t x = 2463534242u + static_cast<uint32_t>(c);
      for (int n = 0; n < 250 && wrong[static_cast<size_t>(c)].empty(); ++n) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        size_t i = x % data.size();
        auto& want = data[i];
        auto url = st->engine_url(0) + fmt::format("/v1/segments/film/{}.ts", i);
        bool ranged = n % 2 == 1;
        size_t first = ranged ? (x >> 8) % want.size() : 0;
        size_t length = ranged ? std::min<size_t>(65536, want.size() - first) : want.size();
        auto r =
            ranged
                ? http_get(url, {{"Range", fmt::format("bytes={}-{}", first, first + length - 1)}})
                : http_get(url);
        std::string why;
        if (!r) {
          why = r.err().detail;
        } else if (r->status == (ranged ? 206u : 200u)) {
          if (r->body != want.substr(first, length)) {
            why = fmt::format("{} bytes, not the segment's", r->body.size());
          }
          ++(ranged ? ranges : whole);
        } else if (r->status == 404u && i >= static_cast<size_t>(stable)) {
          ++missing;  // removed, not yet ordered back
        } else {
          why = fmt::format("status {}: {}", r->status, r->body);
        }
        if (!why.empty()) {
          wrong[static_cast<size_t>(c)] = fmt::format("GET {} {}-{}: {}", url, first, length, why);
        }
      }
    });
  }
  for (auto& t : consoles) {
    t.join();
  }
  done = true;
  churn.join();
  for (auto& w : wrong) {
    EXPECT_EQ(w, "");
  }
  EXPECT_GT(metric(st->engine_url(0), "vodgrid_engine_segments_served_off_home_total"), 0);
  EXPECT_GT(whole, 200);
  EXPECT_GT(ranges, 200);
  EXPECT_GT(removed, 0);
  EXPECT_GT(copied, 0);
  // Every stream was let go: nothing counts as streamed any more.
  EXPECT_TRUE(
      eventually([&] { return metric(st->engine_url(0), "vodgrid_engine_active_streams") == 0; }));
}

// A segment streamed by the further loop (a console reading slowly, so that its reply stays in
// flight) is not idle: DELETE ?if_idle, which the home loop answers, refuses it (409) and it stays
// held, while an idle segment goes (204); once that console is gone, it goes too.
TEST(EngineLoops, ASegmentStreamedByTheOtherLoopIsNotIdle) {
  auto st = two_loop_station();
  auto url = st->engine_url(0);
  auto port = static_cast<uint16_t>(std::stoi(url.substr(url.rfind(':') + 1)));
  // Larger than what the sockets' buffers take: its reply stays in flight while nobody reads.
  std::string big = ts_bytes((16u << 20) / 188, 3), idle = ts_bytes(1000, 4);
  for (auto [n, data] : {std::pair{0, &big}, std::pair{1, &idle}}) {
    auto put = http(verb::put, url + fmt::format("/v1/segments/film/{}.ts", n), *data,
                    {{std::string(api::sha256_header), to_hex(sha256(*data))}});
    ASSERT_TRUE(put && put->status == 201u) << (put ? put->body : put.err().detail);
  }
  auto streams = [&] { return metric(url, "vodgrid_engine_active_streams"); };
  auto off_home = [&] { return metric(url, "vodgrid_engine_segments_served_off_home_total"); };
  // Consoles one at a time until one is served by the further loop (which loop accepts a
  // connection is the kernel's choice); the others are closed before the next.
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    double before = off_home();
    fd = connect_loopback(port, 4096);
    ASSERT_GE(fd, 0);
    std::string req = "GET /v1/segments/film/0.ts HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_EQ(::send(fd, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
    ASSERT_TRUE(eventually([&] { return streams() == 1; }));
    // Counted on the further loop a few instructions before its reply starts.
    if (!eventually([&] { return off_home() > before; }, 300ms)) {
      ::close(fd);
      fd = -1;
      ASSERT_TRUE(eventually([&] { return streams() == 0; }));
    }
  }
  ASSERT_GE(fd, 0) << "no connection of 100 was served by the further loop";
  auto del = http(verb::delete_, url + "/v1/segments/film/0.ts?if_idle=1");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 409u) << del->body;
  auto listed = http_get(url + "/v1/segments");
  ASSERT_TRUE(listed);
  EXPECT_NE(listed->body.find(to_hex(sha256(big))), std::string::npos) << listed->body;
  del = http(verb::delete_, url + "/v1/segments/film/1.ts?if_idle=1");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 204u) << del->body;
  ::close(fd);
  EXPECT_TRUE(eventually([&] { return streams() == 0; }));
  del = http(verb::delete_, url + "/v1/segments/film/0.ts?if_idle=1");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 204u) << del->body;
}

}  // namespace
}  // namespace vodgrid::test
