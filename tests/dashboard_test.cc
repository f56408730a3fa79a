// Issue 14's dashboard (item 4): the registry's GET /v1/dashboard/state and its page. First the
// state itself at a real grid with an auth server: who may read it, its shape, and a hung director
// said unreachable within the polls' deadline while the state still answers at once; then the
// acceptance test, headless Chromium on /dashboard (tests/browser/dashboard.mjs) while viewers
// play: every station, every engine with its stream count, a program's distribution, and an engine
// killed shown down within 3 s. The screenshot goes to $VODGRID_TEST_OUTPUT_DIR, else the working
// folder (build/*/tests under ctest), and its path is printed.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "support/support.h"

namespace vodgrid::test {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

net::http_client::header_list bearer(const std::string& token) {
  return {{"Authorization", "Bearer " + token}};
}

// The dashboard's state as an operator reads it; null when it is not a 200 JSON object.
json::object state_of(const grid_fixture& g, const std::string& token) {
  auto r = http_get(g.registry_url() + "/v1/dashboard/state", bearer(token));
  if (!r || r->status != 200) {
    return {};
  }
  return json::parse(r->body).as_object();
}

const json::object* station_in(const json::object& state, const std::string& name) {
  if (!state.contains("stations")) {
    return nullptr;
  }
  for (auto& s : state.at("stations").as_array()) {
    if (s.at("name").as_string() == name) {
      return &s.as_object();
    }
  }
  return nullptr;
}

// Whether the state says `station`'s director is reachable (`want`) and, when it is, every engine
// up.
bool director_is(const json::object& state, const std::string& station, bool want) {
  auto* s = station_in(state, station);
  if (!s || !s->at("director").at("reachable").is_bool() ||
      s->at("director").at("reachable").as_bool() != want) {
    return false;
  }
  if (!want) {
    return true;
  }
  for (auto& e : s->at("engines").as_array()) {
    if (e.at("status").as_string() != "up") {
      return false;
    }
  }
  return true;
}

bool has_event(const json::object& state, std::string_view kind, std::string_view subject) {
  for (auto& e : state.at("events").as_array()) {
    if (e.at("kind").as_string() == kind && e.at("subject").as_string() == subject) {
      return true;
    }
  }
  return false;
}

TEST(DashboardState, OnlyOperatorsOfThisOriginReadIt) {
  grid_fixture g({{"home", 1}, {"edge", 1, 100}}, {}, false, true);
  std::string url = g.registry_url() + "/v1/dashboard/state";
  auto none = http_get(url);
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401u) << none->body;
  auto viewer = http_get(url, bearer(g.viewer_token()));
  ASSERT_TRUE(viewer);
  EXPECT_EQ(viewer->status, 403u) << viewer->body;
  std::string op = g.operator_token();
  auto ok = http_get(url, bearer(op));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200u) << ok->body;
  EXPECT_EQ(ok->header("Cache-Control"), "no-store");
  // A page of another site cannot read it, token or not: a control route.
  auto headers = bearer(op);
  headers.emplace_back("Sec-Fetch-Site", "cross-site");
  auto cross = http_get(url, headers);
  ASSERT_TRUE(cross);
  EXPECT_EQ(cross->status, 403u) << cross->body;
  auto from_origin =
      http_get(url, {{"Authorization", "Bearer " + op}, {"Origin", "http://evil.example"}});
  ASSERT_TRUE(from_origin);
  EXPECT_EQ(from_origin->status, 403u) << from_origin->body;

  // The login relay: an operator's token for good credentials, the auth server's refusal else.
  auto login = [&](const std::string& body) {
    return http(boost::beast::http::verb::post, g.registry_url() + "/v1/login/operator", body,
                {{"Content-Type", "application/json"}});
  };
  auto good = login(R"({"user":"admin","password":"admin"})");
  ASSERT_TRUE(good);
  ASSERT_EQ(good->status, 200u) << good->body;
  std::string token(json::parse(good->body).at("token").as_string());
  EXPECT_EQ(http_get(url, bearer(token))->status, 200u);
  auto wrong = login(R"({"user":"admin","password":"nope"})");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401u) << wrong->body;
  auto subscriber = login(R"({"user":"demo","password":"demo"})");
  ASSERT_TRUE(subscriber);
  EXPECT_GE(subscriber->status, 400u) << subscriber->body;  // not an operator
  auto bad = login(R"({"user":"admin"})");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400u) << bad->body;
}

TEST(DashboardState, ThePageAndItsFilesAreServedAndNothingElse) {
  grid_fixture g({{"home", 1}});
  auto page = http_get(g.registry_url() + "/dashboard");
  ASSERT_TRUE(page);
  ASSERT_EQ(page->status, 200u) << page->body;
  EXPECT_EQ(page->header("Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(page->header("Content-Security-Policy").find("default-src 'self'"), std::string::npos);
  EXPECT_NE(page->body.find("/dashboard/dashboard.js"), std::string::npos);
  for (std::string f : {"dashboard.js", "dashboard.css"}) {
    auto r = http_get(g.registry_url() + "/dashboard/" + f);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200u) << f;
    EXPECT_GT(r->body.size(), 500u) << f;
  }
  for (std::string f : {"..%2Fwatch.html", "..", ".hidden.js", "dashboard.txt", "nope.js"}) {
    auto r = http_get(g.registry_url() + "/dashboard/" + f);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404u) << f << ": " << r->body;
  }
  // Without an auth server the state needs no token.
  auto state = http_get(g.registry_url() + "/v1/dashboard/state");
  ASSERT_TRUE(state);
  EXPECT_EQ(state->status, 200u) << state->body;
}

TEST(DashboardState, AHungDirectorIsUnreachableWithinTheDeadlineAndTheStateAnswersAtOnce) {
  grid_fixture g({{"home", 2}, {"edge", 2, 100, 1000, 50}}, {}, false, true);
  std::string op = g.operator_token();
  json::object s;
  ASSERT_TRUE(eventually(
      [&] {
        s = state_of(g, op);
        return director_is(s, "home", true) && director_is(s, "edge", true);
      },
      10s))
      << json::serialize(s);
  // The shape the page reads.
  for (auto* key : {"generated_at_ms", "poll_interval_ms", "stations", "links", "hot_segments",
                    "programs", "programs_total", "events"}) {
    EXPECT_TRUE(s.contains(key)) << key;
  }
  auto* edge = station_in(s, "edge");
  ASSERT_TRUE(edge);
  EXPECT_EQ(edge->at("x_km").to_number<double>(), 100);
  EXPECT_EQ(edge->at("y_km").to_number<double>(), 50);
  EXPECT_FALSE(edge->at("home").as_bool());
  ASSERT_EQ(edge->at("engines").as_array().size(), 2u);
  auto& e1 = edge->at("engines").as_array()[0].as_object();
  EXPECT_EQ(e1.at("name").as_string(), "edge-1");
  for (auto* key : {"status", "in_rotation", "answers", "streams", "bytes_per_second", "free_bytes",
                    "total_bytes", "segments"}) {
    EXPECT_TRUE(e1.contains(key)) << key;
  }
  EXPECT_GT(e1.at("total_bytes").to_number<double>(), 0);
  EXPECT_TRUE(edge->at("restarts").is_null());  // the fixture runs no supervisor
  // The home's link to the edge is drawn, with nothing copied yet.
  ASSERT_EQ(s.at("links").as_array().size(), 1u);
  EXPECT_EQ(s.at("links").as_array()[0].at("from").as_string(), "home");
  EXPECT_EQ(s.at("links").as_array()[0].at("to").as_string(), "edge");

  // A hung director (stopped, its socket still open): the polls give up on it at their deadline,
  // and the state answers at once meanwhile.
  g.signal("edge", SIGSTOP);
  auto stopped = steady::now();
  bool said = eventually(
      [&] {
        auto t0 = steady::now();
        s = state_of(g, op);
        EXPECT_LT(steady::now() - t0, 500ms) << "the state waited for a poll";
        return director_is(s, "edge", false);
      },
      5s);
  auto took = steady::now() - stopped;
  g.signal("edge", SIGCONT);
  ASSERT_TRUE(said) << json::serialize(s);
  EXPECT_LT(took, 3s);
  edge = station_in(s, "edge");
  EXPECT_FALSE(edge->at("director").at("error").as_string().empty());
  EXPECT_TRUE(director_is(s, "home", true)) << json::serialize(s);
  EXPECT_TRUE(has_event(s, "director_unreachable", "edge")) << json::serialize(s);
  // Back: reachable again, and said so.
  ASSERT_TRUE(eventually(
      [&] {
        s = state_of(g, op);
        return director_is(s, "edge", true);
      },
      10s))
      << json::serialize(s);
  EXPECT_TRUE(has_event(s, "director_reachable", "edge")) << json::serialize(s);
}

// A console on a slow line: asks the director for each segment in turn and reads it from the engine
// through a small receive window, so that one of its streams is open at an engine nearly all the
// time (a real-time player fetches a segment at once, then waits: its streams are short).
class slow_viewer {
 public:
  slow_viewer(std::string director, std::string program, int segments, std::string token)
      : thread_([=, this] { run(director, program, segments, token); }) {}
  ~slow_viewer() {
    stop_ = true;
    thread_.join();
  }
  std::string what() const {
    return fmt::format("last director status {}, {} bytes read", last_status_.load(),
                       bytes_.load());
  }

 private:
  void run(const std::string& director, const std::string& program, int segments,
           const std::string& token) {
    for (int i = 0; !stop_; i = (i + 1) % segments) {
      auto r = http_get(
          fmt::format("{}/v1/programs/{}/segments/{}.ts?token={}", director, program, i, token));
      last_status_ = r ? static_cast<int>(r->status) : -1;
      if (!r || r->status != 302) {
        std::this_thread::sleep_for(100ms);
        continue;
      }
      read_slowly(r->header("Location"));
    }
  }
  void read_slowly(const std::string& url) {
    auto u = net::parse_http_url(url);
    int fd = u ? connect_loopback(u->port, 8192) : -1;
    if (fd < 0) {
      return;
    }
    timeval tv{2, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    auto req = fmt::format("GET {} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\n\r\n", u->target,
                           u->host, u->port);
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[512];
      for (ssize_t n; !stop_ && (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) {
        bytes_ += n;
        std::this_thread::sleep_for(50ms);  // about 10 kB/s: seconds per segment
      }
    }
    ::close(fd);
  }
  std::atomic<bool> stop_{false};
  std::atomic<int> last_status_{0};
  std::atomic<int64_t> bytes_{0};
  std::thread thread_;
};

// A sample of 4 segments of 2 s, about 9 MB each (lossless noise): more than an engine's socket
// send buffer takes (at most 4 MB here), so a slow viewer's stream of one stays open at its engine
// for as long as it reads; the engine counts a stream until the kernel has taken its last byte.
fs::path make_large_sample(const fs::path& dir) {
  fs::create_directories(dir);
  auto playlist = dir / "index.m3u8";
  auto r = run({"/usr/bin/ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=480x270:rate=25",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                "8",
                "-vf",
                "noise=alls=20:allf=t",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-qp",
                "0",
                "-g",
                "50",
                "-keyint_min",
                "50",
                "-sc_threshold",
                "0",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-b:a",
                "64k",
                "-f",
                "hls",
                "-hls_time",
                "2",
                "-hls_playlist_type",
                "vod",
                "-hls_segment_filename",
                (dir / "seg%d.ts").string(),
                playlist.string()});
  if (r.status != 0) {
    throw std::runtime_error("ffmpeg: " + r.err);
  }
  return playlist;
}

fs::path output_dir() {
  const char* d = std::getenv("VODGRID_TEST_OUTPUT_DIR");
  return d && *d ? fs::path(d) : fs::current_path();
}

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(DashboardBrowser, ChromiumShowsTheGridWhileViewersPlayAndAKilledEngineDownWithin3s) {
  grid_fixture g({{"home", 2}, {"edge", 2, 300, 1000, 100}}, {}, false, true);
  temp_dir src;
  auto in = g.ingest(make_large_sample(src.path()).string(), "film", "edge");
  ASSERT_EQ(in.status, 0) << in.err;
  std::string edge = g.director_url("edge");
  std::string token = g.viewer_token();
  std::string playlist = edge + "/v1/programs/film/index.m3u8?token=" + token;
  ASSERT_TRUE(eventually([&] {
    auto r = http_get(playlist);
    return r && r->status == 200;
  }));

  temp_dir work;
  auto play = child_process::spawn(
      {vodgrid_binary(), "play", playlist, "--viewers", "3", "--realtime"}, work.path() / "play");
  ASSERT_TRUE(play) << play.err().detail;
  slow_viewer v1(edge, "film", 4, token), v2(edge, "film", 4, token);

  auto shot = output_dir() / "dashboard_test.png";
  auto handshake = work.path() / "handshake";
  fs::create_directories(handshake);
  std::string engines;
  for (auto* s : {"home", "edge"}) {
    for (auto& e : g.engines_of(s)) {
      engines += (engines.empty() ? "" : ",") + e;
    }
  }
  auto node = child_process::spawn({"/usr/bin/env",
                                    "node",
                                    VODGRID_BROWSER_DIR "/dashboard.mjs",
                                    "--url",
                                    g.registry_url() + "/dashboard",
                                    "--stations",
                                    "home,edge",
                                    "--engines",
                                    engines,
                                    "--program",
                                    "film",
                                    "--playing",
                                    "edge",
                                    "--kill",
                                    "edge-1",
                                    "--handshake",
                                    handshake.string(),
                                    "--screenshot",
                                    shot.string(),
                                    "--user",
                                    "admin",
                                    "--password",
                                    "admin",
                                    "--within-ms",
                                    "3000"},
                                   work.path() / "node");
  ASSERT_TRUE(node) << node.err().detail;
  // The page has found everything: kill the engine, noting when (before the kill: an upper bound).
  bool ready =
      eventually([&] { return fs::exists(handshake / "ready") || !node->running(); }, 120s);
  if (ready && fs::exists(handshake / "ready")) {
    auto at = unix_ms();
    g.kill("edge-1", SIGKILL);
    std::ofstream(handshake / "killed.tmp") << at << "\n";
    fs::rename(handshake / "killed.tmp", handshake / "killed");
  }
  auto status = node->wait(90s);
  std::string log = read_text(work.path() / "node");
  ASSERT_TRUE(status) << "dashboard.mjs did not end: " << log;
  EXPECT_EQ(*status, 0) << log;
  json::value report;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line[0] == '{') {
      report = json::parse(line);
    }
  }
  ASSERT_TRUE(report.is_object()) << log;
  EXPECT_TRUE(report.at("down").as_bool()) << log;
  EXPECT_LE(report.at("ms_to_down").to_number<double>(), 3000) << log;
  EXPECT_TRUE(report.at("event_listed").as_bool()) << log;
  EXPECT_GE(report.at("streams_seen").to_number<double>(), 1) << log << v1.what() << v2.what();
  ASSERT_TRUE(fs::exists(shot));
  EXPECT_GT(fs::file_size(shot), 10'000u);
  std::cout << "dashboard screenshot: " << shot.string() << std::endl;
  RecordProperty("screenshot", shot.string());

  // What the page drew came from here: the copies home → edge and the edge's hottest segments.
  auto s = state_of(g, g.operator_token());
  ASSERT_TRUE(s.contains("links")) << json::serialize(s);
  double copied = 0;
  for (auto& l : s.at("links").as_array()) {
    if (l.at("from").as_string() == "home" && l.at("to").as_string() == "edge") {
      copied = l.at("bytes_total").to_number<double>();
    }
  }
  EXPECT_GT(copied, 0) << json::serialize(s);
  EXPECT_FALSE(s.at("hot_segments").as_array().empty()) << json::serialize(s);
  EXPECT_TRUE(has_event(s, "engine_down", "edge-1")) << json::serialize(s);
}

}  // namespace
}  // namespace vodgrid::test
