// Issue 13's browser acceptance tests: headless Chromium (Debian's chromium, driven from node with
// puppeteer-core: tests/browser/*.mjs) plays programs through the edge director with hls.js on a
// page of another origin. play.mjs: a program for 10 s, then on the director's watch page after
// logging in with its form; no fatal hls.js error, and the bytes come from the edge's engines.
// The same over HTTPS (issue 17): the grid's every daemon and the page of another origin on HTTPS,
// Chromium trusting the test CA through an NSS database (certutil), every URL loaded https://.
// abr.mjs: a ladder of three renditions on a throttled, then open link: down and up on segment
// boundaries, no stall. tracks.mjs: two audio languages, both listed, the second selected and
// played; subtitles listed and shown.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "support/support.h"

namespace vodgrid::test {
namespace {

using namespace std::chrono_literals;

// What a daemon has sent in reply bodies so far; -1 when it did not answer.
double body_bytes_sent(const std::string& url) {
  auto r = http_get(url + "/metrics");
  std::smatch m;
  std::regex re("vodgrid_http_body_bytes_sent_total ([0-9.e+]+)");
  return r && std::regex_search(r->body, m, re) ? std::stod(m[1]) : -1;
}

// play.mjs against the edge of a grid (over HTTPS when `tls`), asserting what its report says.
void play_through_the_edge(bool tls) {
  grid_fixture g({{"home", 2}, {"edge", 2, 100}}, {}, false, true, {}, tls);
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

  std::vector<std::string> argv{"/usr/bin/env",
                                "node",
                                VODGRID_BROWSER_DIR "/play.mjs",
                                "--playlist",
                                playlist,
                                "--watch",
                                edge + "/watch/film",
                                "--engines",
                                engines,
                                "--hls",
                                VODGRID_WEB_DIR "/node_modules/hls.js/dist/hls.min.js",
                                "--user",
                                "demo",
                                "--password",
                                "demo",
                                "--seconds",
                                "10"};
  if (tls) {
    ASSERT_EQ(edge.rfind("https://", 0), 0u);
    argv.insert(argv.end(), {"--ca", g.ca().string(), "--cert", g.leaf_cert().string(), "--key",
                             g.leaf_key().string()});
  }
  auto r = run(argv, std::chrono::seconds(150));
  ASSERT_EQ(r.status, 0) << "play.mjs: " << r.err << "\n" << r.out << "\n" << g.log_of("edge");
  auto report = boost::json::parse(r.out).as_object();
  auto& other = report.at("other_origin").as_object();
  auto& watch = report.at("watch_page").as_object();
  EXPECT_GE(other.at("advanced").to_number<double>(), 8.0) << r.out;
  EXPECT_GE(watch.at("advanced").to_number<double>(), 8.0) << r.out;
  EXPECT_TRUE(watch.at("loggedIn").as_bool()) << r.out;
  EXPECT_GT(other.at("segments").as_int64(), 0) << r.out;
  EXPECT_GT(watch.at("segments").as_int64(), 0) << r.out;
  EXPECT_EQ(report.at("failed").as_array().size(), 0u) << r.out;  // with --ca: every URL https
  if (tls) {
    EXPECT_EQ(other.at("page").as_string().subview().rfind("https://localhost:", 0), 0u) << r.out;
    for (auto* o : {&other, &watch}) {
      EXPECT_GT(o->at("https").to_number<double>(), 0) << r.out;  // responses, each https://
      for (auto& e : o->at("engines").as_array()) {
        EXPECT_EQ(e.as_string().subview().rfind("https://127.0.0.1:", 0), 0u) << r.out;
      }
    }
  }

  // The segments' bytes came from the edge's engines (the home's only fill them).
  double after = 0;
  for (auto& e : g.engines_of("edge")) {
    after += body_bytes_sent(g.engine_url(e));
  }
  double played = other.at("bytes").to_number<double>() + watch.at("bytes").to_number<double>();
  EXPECT_GT(played, 0) << r.out;
  EXPECT_GE(after - before, played) << r.out;
}

TEST(Browser, ChromiumPlaysThroughTheEdgeFromAnotherOriginAndOnTheWatchPage) {
  play_through_the_edge(false);
}

TEST(Browser, ChromiumPlaysWithThePageAndTheMediaOnHttpsTrustingTheGridsCa) {
  play_through_the_edge(true);
}

// Makes `out` with ffmpeg from lavfi sources: `inputs` are -i arguments, `extra` what follows
// (maps, codecs, metadata), separated by spaces.
void make_source(const std::filesystem::path& out, const std::vector<std::string>& inputs,
                 const std::string& extra) {
  std::vector<std::string> argv{"/usr/bin/ffmpeg", "-nostdin", "-loglevel", "error", "-y"};
  for (auto& i : inputs) {
    argv.insert(argv.end(), {"-f", "lavfi", "-i", i});
  }
  for (size_t i = 0; i < extra.size();) {
    size_t j = std::min(extra.find(' ', i), extra.size());
    argv.push_back(extra.substr(i, j - i));
    i = j + 1;
  }
  argv.push_back(out.string());
  auto r = run(argv, 120s);
  ASSERT_EQ(r.status, 0) << r.err;
}

// Ingests `source` into the ladder (`renditions`: "" for the default), segments of 2 s, for the
// edge; waits until the edge serves its multivariant playlist, and returns its URL with a token.
std::string ingest_ladder(grid_fixture& g, const std::filesystem::path& source,
                          const std::string& id, const std::string& renditions) {
  std::vector<std::string> argv{
      vodgrid_binary(), "ingest", source.string(),     "--title", "Test " + id,
      "--id",           id,       "--segment-seconds", "2",       "--stations",
      "edge",           "--grid", g.registry_url(),    "--token", g.operator_token()};
  if (!renditions.empty()) {
    argv.insert(argv.end(), {"--renditions", renditions});
  }
  auto in = run(argv, 300s);
  EXPECT_EQ(in.status, 0) << in.err << g.log_of("content");
  std::string playlist =
      g.director_url("edge") + "/v1/programs/" + id + "/index.m3u8?token=" + g.viewer_token();
  EXPECT_TRUE(eventually([&] {
    auto r = http_get(playlist);
    return r && r->status == 200 && r->body.find("#EXT-X-STREAM-INF") != std::string::npos;
  }));
  return playlist;
}

std::string edge_engines(grid_fixture& g) {
  std::string engines;
  for (auto& e : g.engines_of("edge")) {
    engines += (engines.empty() ? "" : ",") + g.engine_url(e);
  }
  return engines;
}

// Runs tests/browser/NAME with `args` and the common ones; its JSON report.
boost::json::object run_browser(const std::string& name, std::vector<std::string> args,
                                grid_fixture& g) {
  std::vector<std::string> argv{"/usr/bin/env", "node", VODGRID_BROWSER_DIR "/" + name, "--hls",
                                VODGRID_WEB_DIR "/node_modules/hls.js/dist/hls.min.js"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run(argv, 150s);
  EXPECT_EQ(r.status, 0) << name << ": " << r.err << "\n" << r.out << "\n" << g.log_of("edge");
  auto v = boost::json::parse(r.out.empty() ? "{}" : r.out);
  return v.is_object() ? v.as_object() : boost::json::object{};
}

double num(const boost::json::object& o, const char* key) {
  auto* v = o.if_contains(key);
  return v && v->is_number() ? v->to_number<double>() : -1;
}

// The level indexes of hls.js are in ascending bitrate. A 720p source of 40 s (noise in it, so
// that each rung's encoder runs at its cap and the rungs' rates stand apart) makes the default
// ladder 720p, 480p, 360p. The link is throttled by Chrome itself (abr.mjs says why), below the
// second rung and then opened.
TEST(Browser, TheLadderGoesDownAndUpOnSegmentBoundariesWithoutStalling) {
  grid_fixture g({{"home", 2}, {"edge", 2, 100}}, {}, true, true);
  temp_dir src;
  auto mp4 = src.path() / "ladder.mp4";
  make_source(mp4, {"testsrc2=size=1280x720:rate=25:d=40,noise=alls=8:allf=t", "sine=f=440:d=40"},
              "-c:v libx264 -preset ultrafast -crf 30 -c:a aac -shortest");
  auto playlist = ingest_ladder(g, mp4, "ladder", "");
  ASSERT_FALSE(HasFailure());

  auto report = run_browser("abr.mjs", {"--playlist", playlist, "--engines", edge_engines(g)}, g);
  ASSERT_TRUE(report.contains("levels")) << boost::json::serialize(report);
  auto text = boost::json::serialize(report);
  EXPECT_EQ(report.at("levels").as_array().size(), 3u) << text;
  // Down, then up: LEVEL_SWITCHED, the levels as they played.
  EXPECT_TRUE(report.at("down").is_object()) << text;
  EXPECT_TRUE(report.at("up").is_object()) << text;
  EXPECT_EQ(report.at("down").as_object().at("level").as_int64(), 0) << text;
  // Each change of level among the fragments buffered starts where the last one ended (a frame).
  auto& switches = report.at("switches").as_array();
  EXPECT_GE(switches.size(), 2u) << text;
  for (auto& s : switches) {
    EXPECT_LE(std::abs(num(s.as_object(), "gap")), num(report, "frame") + 1e-3) << text;
  }
  EXPECT_LE(num(report, "worst_gap"), num(report, "frame") + 1e-3) << text;
  // No stall: no bufferStalledError, no `waiting` after the first `playing`, currentTime never
  // still for a second.
  EXPECT_EQ(num(report, "stalled_errors"), 0) << text;
  EXPECT_TRUE(report.at("waiting").as_array().empty()) << text;
  EXPECT_LT(num(report, "longest_still"), 1.0) << text;
  EXPECT_TRUE(report.at("fatal").is_null()) << text;
  // Every rung was fetched from the edge's engines through the director's redirects.
  auto& renditions = report.at("renditions").as_array();
  for (const char* r : {"ladder--720p", "ladder--480p", "ladder--360p"}) {
    EXPECT_NE(std::find(renditions.begin(), renditions.end(), boost::json::value(r)),
              renditions.end())
        << r << ": " << text;
  }
  EXPECT_EQ(num(report, "redirected"), num(report, "segments")) << text;
}

// A source with two audio tracks, English (the default) and French, and English subtitles: two
// audio renditions that hls.js lists with their languages, selecting French loads its fragments
// from the edge's engines while playback goes on; the subtitle rendition is listed, and once
// selected one of the source's cues is shown, its WebVTT segments from the engines.
TEST(Browser, TwoAudioLanguagesAndSubtitlesAreSelectableAndShown) {
  grid_fixture g({{"home", 2}, {"edge", 2, 100}}, {}, true, true);
  temp_dir src;
  const std::vector<std::string> cues{"The first cue", "A second cue", "The third and last cue"};
  auto srt = src.path() / "en.srt";
  {
    std::ofstream f(srt);
    f << "1\n00:00:00,500 --> 00:00:06,000\n"
      << cues[0] << "\n\n"
      << "2\n00:00:06,500 --> 00:00:13,000\n"
      << cues[1] << "\n\n"
      << "3\n00:00:13,500 --> 00:00:19,500\n"
      << cues[2] << "\n";
  }
  auto mp4 = src.path() / "tracks.mp4";
  make_source(mp4, {"testsrc2=size=640x360:rate=25:d=20", "sine=f=440:d=20", "sine=f=880:d=20"},
              "-i " + srt.string() +
                  " -map 0:v -map 1:a -map 2:a -map 3:s -c:v libx264 -preset ultrafast -c:a aac "
                  "-c:s mov_text -metadata:s:a:0 language=eng -metadata:s:a:1 language=fra "
                  "-metadata:s:s:0 language=eng -disposition:a:0 default -disposition:a:1 0");
  auto playlist = ingest_ladder(g, mp4, "tracks", "360p");
  ASSERT_FALSE(HasFailure());

  auto report = run_browser("tracks.mjs",
                            {"--playlist", playlist, "--engines", edge_engines(g), "--audio",
                             "en,fr", "--subtitles", "en"},
                            g);
  ASSERT_TRUE(report.contains("audio_tracks")) << boost::json::serialize(report);
  auto text = boost::json::serialize(report);
  auto& tracks = report.at("audio_tracks").as_array();
  ASSERT_EQ(tracks.size(), 2u) << text;
  EXPECT_EQ(tracks[0].at("lang").as_string(), "en") << text;
  EXPECT_TRUE(tracks[0].at("default").as_bool()) << text;
  EXPECT_EQ(tracks[1].at("lang").as_string(), "fr") << text;
  EXPECT_EQ(report.at("audio_before"), boost::json::array{"audio-en"}) << text;
  // AUDIO_TRACK_SWITCHED to French, its fragments from the engines, and playback went on.
  auto& switched = report.at("audio_switched").as_array();
  ASSERT_FALSE(switched.empty()) << text;
  EXPECT_EQ(switched.back().at("id").as_int64(), tracks[1].at("id").as_int64()) << text;
  EXPECT_GT(num(report, "other_audio_segments"), 0) << text;
  EXPECT_GE(num(report, "advanced_after_switch"), num(report, "wall_after_switch") - 1.5) << text;
  // The subtitles: listed, and a cue of the source on screen.
  ASSERT_TRUE(report.contains("subtitle_tracks")) << text;
  auto& subs = report.at("subtitle_tracks").as_array();
  ASSERT_EQ(subs.size(), 1u) << text;
  EXPECT_EQ(subs[0].at("lang").as_string(), "en") << text;
  ASSERT_TRUE(report.at("cue").is_string()) << text;
  EXPECT_NE(std::find(cues.begin(), cues.end(), std::string(report.at("cue").as_string())),
            cues.end())
      << text;
  EXPECT_GT(num(report, "subtitle_segments"), 0) << text;
}

}  // namespace
}  // namespace vodgrid::test
