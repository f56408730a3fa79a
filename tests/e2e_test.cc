// End-to-end tests: real daemons, the real ffmpeg as a player, `vodgrid play` as a crowd of
// consoles.
#include <gtest/gtest.h>
#include <sstream>

#include <fmt/format.h>
#include <boost/json/parse.hpp>

#include <csignal>
#include <regex>
#include <set>

#include "api/api.h"
#include "base/fs.h"
#include "support/support.h"

namespace vodgrid::test {
namespace {

std::string streamhash(const std::string& input) {
  auto r = run({"/usr/bin/ffmpeg", "-nostdin", "-v", "error", "-i", input, "-map", "0", "-c",
                "copy", "-f", "streamhash", "-"});
  EXPECT_EQ(r.status, 0) << r.err;
  return r.out;
}

double body_bytes_sent(const std::string& engine_url) {
  auto r = http_get(engine_url + "/metrics");
  if (!r) {
    return -1;
  }
  std::smatch m;
  std::regex re("vodgrid_http_body_bytes_sent_total ([0-9.e+]+)");
  return std::regex_search(r->body, m, re) ? std::stod(m[1]) : -1;
}

TEST(EndToEnd, FfmpegReadsExactlyTheSourcePacketsThroughTheDirector) {
  station_fixture st;
  temp_dir src;
  auto playlist = make_sample(src.path(), 8, 1);
  auto in = st.ingest(src.path().string(), "movie");
  ASSERT_EQ(in.status, 0) << in.err;

  std::vector<double> before;
  for (int i = 0; i < 3; ++i) {
    before.push_back(body_bytes_sent(st.engine_url(i)));
  }
  std::string via_grid = streamhash(st.director_url() + "/v1/programs/movie/index.m3u8");
  std::string from_source = streamhash(playlist.string());
  ASSERT_FALSE(from_source.empty());
  EXPECT_EQ(via_grid, from_source);

  int engines_used = 0;
  for (int i = 0; i < 3; ++i) {
    engines_used += body_bytes_sent(st.engine_url(i)) > before[static_cast<size_t>(i)] ? 1 : 0;
  }
  EXPECT_GE(engines_used, 2) << "the redirects should spread the program over the engines";
}

TEST(EndToEnd, EveryViewerFinishesWhenAnEngineIsKilledMidStream) {
  station_fixture::options o;
  // Every engine holds every segment: the dead one is chosen (about a third of the time) until it
  // has missed two heartbeats, 1 to 2 s after the kill here, so that twenty viewers playing in real
  // time feel it (a shorter interval would pass it over before any of them asked).
  o.copies = 3;
  o.heartbeat_interval_ms = 1000;
  o.heartbeat_timeout_ms = 3000;
  station_fixture st(o);
  temp_dir src;
  make_sample(src.path(), 8, 1);
  ASSERT_EQ(st.ingest(src.path().string(), "live").status, 0);

  std::string url = st.director_url() + "/v1/programs/live/index.m3u8";
  auto out = st.data() / "play.json";
  auto player =
      child_process::spawn({"/bin/sh", "-c",
                            fmt::format("'{}' play '{}' --viewers 20 --realtime --json > '{}'",
                                        vodgrid_binary(), url, out.string())});
  ASSERT_TRUE(player);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  ASSERT_TRUE(player->running()) << "the play ended before the engine was killed";
  st.kill_engine(0, SIGKILL);
  auto status = player->wait(std::chrono::seconds(60));
  ASSERT_TRUE(status);
  auto text = read_file(out);
  ASSERT_TRUE(text);
  auto report = boost::json::parse(*text).as_object();
  EXPECT_EQ(*status, 0) << *text;
  EXPECT_EQ(report.at("segments").to_number<int64_t>(), 20 * 8) << *text;
  EXPECT_EQ(report.at("segments_failed").to_number<int64_t>(), 0) << *text;
  EXPECT_EQ(report.at("digest_mismatches").to_number<int64_t>(), 0) << *text;
  EXPECT_TRUE(report.at("ok").as_bool()) << *text;
  // The kill was felt: some segment went to the dead engine and was retried through the director.
  EXPECT_GT(report.at("retries").to_number<int64_t>(), 0) << *text;
}

TEST(EndToEnd, PlayExitsNonZeroWhenTheProgramCannotBePlayed) {
  station_fixture st;
  auto r = run({vodgrid_binary(), "play", st.director_url() + "/v1/programs/nothing/index.m3u8"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("vodgrid play:"), std::string::npos) << r.err;
  auto bad = run({vodgrid_binary(), "play", "not a url"});
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.err.find("vodgrid play:"), std::string::npos) << bad.err;
  auto hasty = run({vodgrid_binary(), "play", st.director_url() + "/v1/programs/x/index.m3u8",
                    "--silence-ms", "5"});
  EXPECT_EQ(hasty.status, 2);
  EXPECT_NE(hasty.err.find("--silence-ms"), std::string::npos) << hasty.err;
}

TEST(EndToEnd, DemoRunsTheGridAndPlaysTheSample) {
  temp_dir d;
  uint16_t base = free_base_port();
  auto r = run({vodgrid_binary(), "demo", "--data", d.path().string(), "--base-port",
                std::to_string(base), "--viewers", "3"},
               std::chrono::minutes(3));
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("ready"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("result: ok"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("segments 18"), std::string::npos) << r.out;  // 3 viewers x 6 segments
}

TEST(EndToEnd, UpRunsAGridFromAConfigUntilInterrupted) {
  temp_dir d;
  // A shape of our own: one station of two engines, no registry.
  grid_config g;
  station_config st;
  st.name = *station_id::parse("solo");
  st.director.listen = {"127.0.0.1", free_port()};
  st.director.data_dir = d.path() / "solo";
  for (int i = 1; i <= 2; ++i) {
    engine_config e;
    e.name = *engine_id::parse(fmt::format("solo-{}", i));
    e.listen = {"127.0.0.1", free_port()};
    e.data_dirs = {d.path() / e.name.str()};
    st.engines.push_back(e);
  }
  g.stations.push_back(st);
  g.log_format = "json";  // each daemon's log: one JSON object per line
  auto config = d.path() / "mine.toml";
  ASSERT_TRUE(write_file_durably(config, g.to_toml()));
  auto out = d.path() / "up.out";
  auto up = child_process::spawn(
      {"/bin/sh", "-c",
       fmt::format("exec '{}' up --config '{}' --data '{}' > '{}' 2>&1", vodgrid_binary(),
                   config.string(), (d.path() / "data").string(), out.string())});
  ASSERT_TRUE(up);
  ASSERT_TRUE(eventually(
      [&] {
        auto t = read_file(out);
        return t && t->find("ready\n") != std::string::npos;
      },
      std::chrono::seconds(30)))
      << read_file(out).value();
  auto director = g.stations[0].director.listen.url();
  // The browser's URL among the viewer URLs, and the watch page found in the build tree.
  ASSERT_TRUE(eventually([&] {
    auto t = read_file(out);
    return t && t->find("browser: " + director + "/watch/<id>\n") != std::string::npos;
  })) << read_file(out).value();
  // No registry here: no dashboard to point at.
  EXPECT_EQ(read_file(out).value().find("dashboard"), std::string::npos) << read_file(out).value();
  auto page = http_get(director + "/watch/anything");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200u) << page->body;
  auto engines = http_get(director + "/v1/engines");
  ASSERT_TRUE(engines);
  EXPECT_NE(engines->body.find("solo-1"), std::string::npos);
  EXPECT_NE(engines->body.find("solo-2"), std::string::npos);
  up->signal(SIGINT);
  auto status = up->wait(std::chrono::seconds(20));
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, 0);
  EXPECT_FALSE(http_get(director + "/healthz")) << "the director outlived vodgrid up";
  EXPECT_FALSE(http_get(g.stations[0].engines[0].listen.url() + "/healthz"))
      << "an engine outlived vodgrid up";
  // Every line each daemon logged is a JSON object with its message.
  size_t lines = 0;
  for (auto& f : std::filesystem::directory_iterator(d.path() / "data" / "logs")) {
    auto text = read_file(f.path(), 16 << 20);
    ASSERT_TRUE(text) << f.path();
    std::istringstream in(*text);
    for (std::string line; std::getline(in, line);) {
      boost::system::error_code ec;
      auto v = boost::json::parse(line, ec);
      ASSERT_TRUE(!ec && v.is_object() && v.as_object().contains("msg"))
          << f.path() << ": " << line;
      ++lines;
    }
  }
  EXPECT_GT(lines, 3u);
}

}  // namespace
}  // namespace vodgrid::test
