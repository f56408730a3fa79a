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

}  // namespace
}  // namespace vodgrid::test
