// Issue 13's first acceptance test: headless Chromium (Debian's chromium, driven from node with
// puppeteer-core: tests/browser/play.mjs) plays a program through the edge director for 10 s, first
// with hls.js on a page of another origin, then on the director's watch page after logging in with
// its form; no fatal hls.js error, and the bytes come from the edge's engines.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include <regex>
#include <string>

#include "support/support.h"

namespace vodgrid::test {
namespace {

// What a daemon has sent in reply bodies so far; -1 when it did not answer.
double body_bytes_sent(const std::string& url) {
  auto r = http_get(url + "/metrics");
  std::smatch m;
  std::regex re("vodgrid_http_body_bytes_sent_total ([0-9.e+]+)");
  return r && std::regex_search(r->body, m, re) ? std::stod(m[1]) : -1;
}

TEST(Browser, ChromiumPlaysThroughTheEdgeFromAnotherOriginAndOnTheWatchPage) {
  grid_fixture g({{"home", 2}, {"edge", 2, 100}}, {}, false, true);
  temp_dir src;
  make_sample(src.path(), 16, 2);
  auto in = g.ingest(src.path().string(), "film", "edge");
  ASSERT_EQ(in.status, 0) << in.err;
  std::string edge = g.director_url("edge");
  std::string token = g.viewer_token();
  std::string playlist = edge + "/v1/programs/film/index.m3u8?token=" + token;
  ASSERT_TRUE(eventually([&] {
    auto r = http_get(playlist);
    return r && r->status == 200;
  }));
  std::string engines;
  double before = 0;
  for (auto& e : g.engines_of("edge")) {
    engines += (engines.empty() ? "" : ",") + g.engine_url(e);
    before += body_bytes_sent(g.engine_url(e));
  }

  auto r = run({"/usr/bin/env", "node", VODGRID_BROWSER_DIR "/play.mjs", "--playlist", playlist,
                "--watch", edge + "/watch/film", "--engines", engines, "--hls",
                VODGRID_WEB_DIR "/node_modules/hls.js/dist/hls.min.js", "--user", "demo",
                "--password", "demo", "--seconds", "10"},
               std::chrono::seconds(150));
  ASSERT_EQ(r.status, 0) << "play.mjs: " << r.err << "\n" << r.out << "\n" << g.log_of("edge");
  auto report = boost::json::parse(r.out).as_object();
  auto& other = report.at("other_origin").as_object();
  auto& watch = report.at("watch_page").as_object();
  EXPECT_GE(other.at("advanced").to_number<double>(), 8.0) << r.out;
  EXPECT_GE(watch.at("advanced").to_number<double>(), 8.0) << r.out;
  EXPECT_TRUE(watch.at("loggedIn").as_bool()) << r.out;
  EXPECT_GT(other.at("segments").as_int64(), 0) << r.out;
  EXPECT_GT(watch.at("segments").as_int64(), 0) << r.out;

  // The segments' bytes came from the edge's engines (the home's only fill them).
  double after = 0;
  for (auto& e : g.engines_of("edge")) {
    after += body_bytes_sent(g.engine_url(e));
  }
  double played = other.at("bytes").to_number<double>() + watch.at("bytes").to_number<double>();
  EXPECT_GT(played, 0) << r.out;
  EXPECT_GE(after - before, played) << r.out;
}

}  // namespace
}  // namespace vodgrid::test
