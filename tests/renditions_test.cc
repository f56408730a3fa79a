// Programs of several renditions end to end (issue 13, DESIGN.md flow 9): a multivariant HLS source
// made by ffmpeg (two renditions, keyframes every 2 s) is ingested with the defaults, kept as its
// renditions, published, and played at the edge by ffprobe and `vodgrid play` with a viewer's
// token for the program; withdrawn, every rendition is refused. A source with one broken rendition
// fails with the reason and leaves nothing in any station.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <boost/json.hpp>

#include <fstream>
#include <regex>

#include "base/fs.h"
#include "base/process.h"
#include "support/support.h"

#ifndef VODGRID_TEST_HTTP
#define VODGRID_TEST_HTTP "test_http.py"
#endif

namespace vodgrid::test {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

// A multivariant HLS source in `dir`: master.m3u8 and v0 (640x360), v1 (320x180), each with its
// own AAC audio, `seconds` long, keyframes forced every 2 s, 2 s segments; each variant in a
// folder of its own (v0/index.m3u8, v0/seg000.ts) or, `flat`, beside master.m3u8 (v0.m3u8,
// v0_seg000.ts).
fs::path make_multivariant(const fs::path& dir, int seconds = 6, bool flat = false) {
  auto r = run({"/usr/bin/ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                fmt::format("testsrc2=size=640x360:rate=25:d={}", seconds),
                "-f",
                "lavfi",
                "-i",
                fmt::format("sine=d={}", seconds),
                "-filter_complex",
                "[0:v]split=2[a][b];[b]scale=320:180[b2]",
                "-map",
                "[a]",
                "-map",
                "[b2]",
                "-map",
                "1:a",
                "-map",
                "1:a",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-force_key_frames",
                "expr:gte(t,n_forced*2)",
                "-c:a",
                "aac",
                "-f",
                "hls",
                "-hls_time",
                "2",
                "-hls_playlist_type",
                "vod",
                "-master_pl_name",
                "master.m3u8",
                "-var_stream_map",
                "v:0,a:0 v:1,a:1",
                "-hls_segment_filename",
                (flat ? dir / "v%v_seg%03d.ts" : dir / "v%v" / "seg%03d.ts").string(),
                (flat ? dir / "v%v.m3u8" : dir / "v%v" / "index.m3u8").string()},
               120s);
  EXPECT_EQ(r.status, 0) << r.err;
  return dir / "master.m3u8";
}

run_result ingest(grid_fixture& g, const std::string& source, const std::string& id,
                  const std::string& token) {
  return run({vodgrid_binary(), "ingest", source, "--title", "Test " + id, "--id", id, "--grid",
              g.registry_url(), "--token", token},
             300s);
}

std::string playlist(grid_fixture& g, const std::string& station, const std::string& id) {
  return g.director_url(station) + "/v1/programs/" + id + "/index.m3u8";
}

// A subscriber entitled to `programs` only, and its viewer token.
std::string viewer_of(grid_fixture& g, const std::string& name, json::array programs) {
  auto r = http(boost::beast::http::verb::put, g.auth_url() + "/v1/accounts/subscribers/" + name,
                json::serialize(json::object{{"password", "pw-" + name}, {"programs", programs}}),
                {{"Authorization", "Bearer " + g.operator_token()}});
  EXPECT_TRUE(r && r->status < 300) << (r ? r->body : r.err().detail);
  return login_token(g.auth_url(), "viewer", name, "pw-" + name);
}

TEST(Renditions, AMultivariantSourcePlaysEveryRenditionAtTheEdgeAndWithdrawsWhole) {
  grid_fixture g({{"home", 2, 0}, {"edge", 3, 100}}, {}, true, true);
  temp_dir src, logs;
  make_multivariant(src.path());
  // Served by a provider's web server: the ingest reads the multivariant playlist by URL.
  uint16_t port = free_port();
  auto server = child_process::spawn(
      {"/usr/bin/python3", VODGRID_TEST_HTTP, std::to_string(port), src.path().string()},
      logs.path() / "http.log");
  ASSERT_TRUE(server) << server.err().detail;
  ASSERT_TRUE(eventually([&] { return port_is_listening(port); }));
  auto in =
      ingest(g, fmt::format("http://127.0.0.1:{}/master.m3u8", port), "film", g.operator_token());
  server->stop(2s);
  ASSERT_EQ(in.status, 0) << in.err << g.log_of("content");
  EXPECT_NE(in.out.find("rendition film--360p"), std::string::npos) << in.out;
  EXPECT_NE(in.out.find("rendition film--180p"), std::string::npos) << in.out;

  // The catalog: both renditions, the larger first, measured (the source states the same
  // BANDWIDTH for both: ffmpeg's guess).
  auto op = g.operator_token();
  auto p = json::parse(
               http_get(g.content_url() + "/v1/programs/film", {{"Authorization", "Bearer " + op}})
                   ->body)
               .as_object();
  ASSERT_TRUE(p.contains("renditions")) << json::serialize(p);
  auto& rs = p.at("renditions").as_array();
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0].at("program").as_string(), "film--360p");
  EXPECT_EQ(rs[0].at("width").to_number<int>(), 640);
  EXPECT_EQ(rs[1].at("height").to_number<int>(), 180);
  EXPECT_EQ(rs[0].at("codecs").as_string(), "avc1.42c01e,mp4a.40.2");
  EXPECT_GT(rs[0].at("average_bandwidth").to_number<uint64_t>(),
            rs[1].at("average_bandwidth").to_number<uint64_t>());
  EXPECT_GE(rs[0].at("bandwidth").to_number<uint64_t>(),
            rs[0].at("average_bandwidth").to_number<uint64_t>());
  auto list = run({vodgrid_binary(), "programs", "--grid", g.registry_url(), "--token", op});
  EXPECT_NE(list.out.find("rendition film--180p"), std::string::npos) << list.out;

  // A viewer entitled to the program (and nothing else) plays its renditions at the edge.
  auto viewer = viewer_of(g, "alice", json::array{"film"});
  auto stranger = viewer_of(g, "bob", json::array{"other"});
  auto mv = http_get(playlist(g, "edge", "film") + "?token=" + viewer);
  ASSERT_TRUE(mv);
  ASSERT_EQ(mv->status, 200u) << mv->body;
  EXPECT_NE(mv->body.find("RESOLUTION=640x360"), std::string::npos) << mv->body;
  EXPECT_NE(mv->body.find("../film--180p/index.m3u8?token=" + viewer), std::string::npos);
  auto probe = run({"/usr/bin/ffprobe", "-v", "error", "-show_entries", "stream=width,height",
                    "-of", "csv=p=0", playlist(g, "edge", "film") + "?token=" + viewer},
                   120s);
  EXPECT_EQ(probe.status, 0) << probe.err;
  EXPECT_NE(probe.out.find("640,360"), std::string::npos) << probe.out;
  EXPECT_NE(probe.out.find("320,180"), std::string::npos) << probe.out;
  auto play = run({vodgrid_binary(), "play", playlist(g, "edge", "film"), "--token", viewer}, 120s);
  EXPECT_EQ(play.status, 0) << play.out << play.err;
  EXPECT_NE(play.out.find("renditions: /v1/programs/film--360p/index.m3u8 "
                          "/v1/programs/film--180p/index.m3u8"),
            std::string::npos)
      << play.out;
  EXPECT_NE(play.out.find("digest mismatches 0"), std::string::npos) << play.out;
  auto refused = http_get(playlist(g, "edge", "film--360p") + "?token=" + stranger);
  EXPECT_EQ(refused->status, 403u) << refused->body;

  // RTSP on the program plays its top rendition (its duration, not the program's none).
  auto rtsp_port = g.config().find_station("edge")->director.listen.port;
  auto describe = raw_exchange(
      rtsp_port,
      fmt::format(
          "DESCRIBE rtsp://127.0.0.1:{}/v1/programs/film?token={} RTSP/1.0\r\nCSeq: 1\r\n\r\n",
          rtsp_port, viewer),
      2s);
  EXPECT_NE(describe.find("RTSP/1.0 200"), std::string::npos) << describe;
  EXPECT_NE(describe.find("a=range:npt=0-6."), std::string::npos) << describe;

  // Withdrawn: the program and every rendition, at every station.
  auto w = run({vodgrid_binary(), "withdraw", "film", "--grid", g.registry_url(), "--token",
                g.operator_token()});
  ASSERT_EQ(w.status, 0) << w.err;
  for (auto station : {"home", "edge"}) {
    for (auto id : {"film", "film--360p", "film--180p"}) {
      auto r = http_get(playlist(g, station, id) + "?token=" + viewer);
      EXPECT_EQ(r->status, 404u) << station << " " << id << ": " << r->body;
      EXPECT_NE(r->body.find("program film has been withdrawn"), std::string::npos) << r->body;
    }
    auto seg =
        http_get(g.director_url(station) + "/v1/programs/film--180p/segments/0.ts?token=" + viewer);
    EXPECT_EQ(seg->status, 404u) << station;
  }
  auto again = run({vodgrid_binary(), "play", playlist(g, "edge", "film"), "--token", viewer}, 60s);
  EXPECT_NE(again.status, 0) << again.out;
  // Published again: every rendition plays again.
  auto pub = run({vodgrid_binary(), "publish", "film", "--grid", g.registry_url(), "--token",
                  g.operator_token()});
  ASSERT_EQ(pub.status, 0) << pub.err;
  auto back = run({vodgrid_binary(), "play", playlist(g, "edge", "film"), "--token", viewer}, 120s);
  EXPECT_EQ(back.status, 0) << back.out << back.err;
}

TEST(Renditions, AMultivariantSourceWithOneBrokenRenditionFailsAndLeavesNothing) {
  grid_fixture g({{"home", 2, 0}, {"edge", 2, 100}}, {}, true);
  temp_dir src;
  make_multivariant(src.path(), 4, true);  // the folder holds three playlists: master.m3u8 is read
  fs::remove(src.path() / "v1_seg001.ts");
  auto in = run({vodgrid_binary(), "ingest", src.path().string(), "--title", "Broken", "--id",
                 "film", "--grid", g.registry_url()},
                300s);
  EXPECT_EQ(in.status, 1) << in.out;
  EXPECT_NE(in.err.find("variant 2 of the source (320x180)"), std::string::npos) << in.err;
  EXPECT_NE(in.err.find("seg001.ts"), std::string::npos) << in.err;
  for (auto id : {"film", "film--360p", "film--180p"}) {
    for (auto& s : g.config().stations) {
      auto r = http_get(s.director.listen.url() + "/v1/programs/" + id);
      EXPECT_EQ(r->status, 404u) << s.name.str() << " knows " << id;
      for (auto& e : s.engines) {
        auto inv = http_get(e.listen.url() + "/v1/segments");
        EXPECT_EQ(inv->body.find("\"film"), std::string::npos) << e.name.str() << inv->body;
      }
    }
  }
  EXPECT_TRUE(fs::is_empty(g.config().content->work_dir));
  // Ids with "--" name renditions: an operator cannot ingest one.
  auto bad = run({vodgrid_binary(), "ingest", src.path().string(), "--title", "X", "--id", "a--b",
                  "--grid", g.registry_url()});
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("reserved for renditions"), std::string::npos) << bad.err;
}

// The transcoder's ladder (content/transcode.h) goes the same way: `--renditions` makes the
// program's renditions, each played at the edge and checked against its manifest.
TEST(Renditions, ATranscodedLadderPlaysEveryRenditionAtTheEdge) {
  grid_fixture g({{"home", 2, 0}, {"edge", 2, 100}}, {}, true);
  temp_dir src;
  auto mp4 = src.path() / "film.mp4";
  auto made = run({"/usr/bin/ffmpeg",
                   "-nostdin",
                   "-loglevel",
                   "error",
                   "-y",
                   "-f",
                   "lavfi",
                   "-i",
                   "testsrc2=size=640x360:rate=25:d=6",
                   "-f",
                   "lavfi",
                   "-i",
                   "sine=d=6",
                   "-c:v",
                   "libx264",
                   "-preset",
                   "ultrafast",
                   "-c:a",
                   "aac",
                   mp4.string()},
                  60s);
  ASSERT_EQ(made.status, 0) << made.err;
  auto in = run({vodgrid_binary(), "ingest", mp4.string(), "--title", "Ladder", "--id", "ladder",
                 "--renditions", "360p,240p", "--grid", g.registry_url()},
                300s);
  ASSERT_EQ(in.status, 0) << in.err << g.log_of("content");
  EXPECT_NE(in.out.find("rendition ladder--360p"), std::string::npos) << in.out;
  EXPECT_NE(in.out.find("rendition ladder--240p"), std::string::npos) << in.out;
  // The parent's own segment list is empty: it is told as its renditions, not as "0 segments".
  EXPECT_NE(in.out.find(": 3 renditions, "), std::string::npos) << in.out;
  auto mv = http_get(playlist(g, "edge", "ladder"));
  ASSERT_EQ(mv->status, 200u) << mv->body;
  EXPECT_NE(mv->body.find("RESOLUTION=640x360"), std::string::npos) << mv->body;
  EXPECT_NE(mv->body.find("../ladder--240p/index.m3u8"), std::string::npos) << mv->body;
  auto play = run({vodgrid_binary(), "play", playlist(g, "edge", "ladder")}, 120s);
  EXPECT_EQ(play.status, 0) << play.out << play.err;
  EXPECT_NE(play.out.find("/v1/programs/ladder--240p/index.m3u8"), std::string::npos) << play.out;

  // Trick play (issue 13, item 4): the multivariant playlist lists each video rendition's I-frame
  // playlist, which the director serves; an entry's byte range, after its segment's PAT and PMT,
  // is a key frame that ffprobe reads as one.
  static const std::regex iframe_line(
      "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=([0-9]+),[^\n]*CODECS=\"avc1[^\"]*\","
      "RESOLUTION=[0-9x]+,URI=\"\\.\\./([^\"]+)\"\n");
  std::vector<std::string> iframe_uris;
  for (std::sregex_iterator it(mv->body.begin(), mv->body.end(), iframe_line), end; it != end;
       ++it) {
    EXPECT_GT(std::stoull((*it)[1]), 0u) << it->str();
    iframe_uris.push_back((*it)[2]);
  }
  ASSERT_EQ(iframe_uris.size(), 2u) << mv->body;
  EXPECT_EQ(iframe_uris[0], "ladder--360p/iframes.m3u8");
  std::string iframes;
  for (auto& uri : iframe_uris) {
    auto r = http_get(g.director_url("edge") + "/v1/programs/" + uri);
    ASSERT_EQ(r->status, 200u) << uri << " " << r->body;
    EXPECT_NE(r->body.find("\n#EXT-X-I-FRAMES-ONLY\n"), std::string::npos) << r->body;
    if (iframes.empty()) {
      iframes = r->body;
    }
  }
  std::smatch map, entry;
  ASSERT_TRUE(std::regex_search(
      iframes, map, std::regex("#EXT-X-MAP:URI=\"segments/0.ts\",BYTERANGE=\"([0-9]+)@0\"")))
      << iframes;
  ASSERT_TRUE(std::regex_search(iframes, entry,
                                std::regex("#EXT-X-BYTERANGE:([0-9]+)@([0-9]+)\nsegments/0.ts\n")))
      << iframes;
  auto redirect = http_get(g.director_url("edge") + "/v1/programs/ladder--360p/segments/0.ts");
  ASSERT_EQ(redirect->status, 302u) << redirect->body;
  auto range = [&](uint64_t from, uint64_t length) {
    auto r = http_get(redirect->header("Location"),
                      {{"Range", fmt::format("bytes={}-{}", from, from + length - 1)}});
    EXPECT_EQ(r->status, 206u) << r->body;
    return r->body;
  };
  auto frame_file = src.path() / "iframe.ts";
  {
    std::ofstream f(frame_file, std::ios::binary);
    f << range(0, std::stoull(map[1])) << range(std::stoull(entry[2]), std::stoull(entry[1]));
  }
  auto frame = run({"/usr/bin/ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                    "frame=key_frame,pict_type,width", "-of", "csv=p=0", frame_file.string()},
                   60s);
  EXPECT_EQ(frame.status, 0) << frame.err;
  EXPECT_EQ(frame.out.rfind("1,640,I", 0), 0u) << frame.out;  // key frame, its width, an I
  // No ladder without a content manager's transcoder, and none of an unknown rung.
  auto bad = run({vodgrid_binary(), "ingest", mp4.string(), "--title", "X", "--id", "x",
                  "--renditions", "hd", "--grid", g.registry_url()});
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("'hd'"), std::string::npos) << bad.err;
}

// The EXTINF durations of a media playlist, in order.
std::vector<double> durations_of(const std::string& playlist) {
  std::vector<double> out;
  static const std::regex extinf("#EXTINF:([0-9.]+),");
  for (std::sregex_iterator it(playlist.begin(), playlist.end(), extinf), end; it != end; ++it) {
    out.push_back(std::stod((*it)[1]));
  }
  return out;
}

// Every track of the source (issue 13, item 3): two audio tracks and a subtitle track in an MP4,
// transcoded through a real station; at the edge, the multivariant playlist names them, and the
// subtitles' playlist and segments come through the director and its redirect to an engine as
// WebVTT, cut as the video is.
TEST(Renditions, EveryTrackOfTheSourcePlaysThroughTheDirector) {
  grid_fixture g({{"home", 2, 0}, {"edge", 2, 100}}, {}, true);
  temp_dir src;
  auto srt = src.path() / "en.srt";
  {
    std::ofstream f(srt);
    f << "1\n00:00:00,500 --> 00:00:01,500\nGood morning\n\n"
         "2\n00:00:04,500 --> 00:00:05,500\nGood night\n";
  }
  auto mp4 = src.path() / "tracks.mp4";
  auto made = run({"/usr/bin/ffmpeg",
                   "-nostdin",
                   "-loglevel",
                   "error",
                   "-y",
                   "-f",
                   "lavfi",
                   "-i",
                   "testsrc2=size=640x360:rate=25:d=6",
                   "-f",
                   "lavfi",
                   "-i",
                   "sine=frequency=440:d=6",
                   "-f",
                   "lavfi",
                   "-i",
                   "sine=frequency=660:d=6",
                   "-i",
                   srt.string(),
                   "-map",
                   "0:v",
                   "-map",
                   "1:a",
                   "-map",
                   "2:a",
                   "-map",
                   "3:s",
                   "-c:v",
                   "libx264",
                   "-preset",
                   "ultrafast",
                   "-c:a",
                   "aac",
                   "-c:s",
                   "mov_text",
                   "-metadata:s:a:0",
                   "language=eng",
                   "-metadata:s:a:1",
                   "language=fra",
                   "-metadata:s:s:0",
                   "language=eng",
                   "-disposition:s:0",
                   "default",
                   mp4.string()},
                  60s);
  ASSERT_EQ(made.status, 0) << made.err;
  auto in = run({vodgrid_binary(), "ingest", mp4.string(), "--title", "Tracks", "--id", "tracks",
                 "--renditions", "240p", "--grid", g.registry_url()},
                300s);
  ASSERT_EQ(in.status, 0) << in.err << g.log_of("content");
  EXPECT_NE(in.out.find("rendition tracks--subs-en"), std::string::npos) << in.out;
  EXPECT_EQ(in.out.find("not kept"), std::string::npos) << in.out;

  auto mv = http_get(playlist(g, "edge", "tracks"));
  ASSERT_EQ(mv->status, 200u) << mv->body;
  EXPECT_NE(mv->body.find("#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",LANGUAGE=\"en\","
                          "NAME=\"English\",DEFAULT=YES,AUTOSELECT=YES,"
                          "URI=\"../tracks--subs-en/index.m3u8\""),
            std::string::npos)
      << mv->body;
  EXPECT_NE(mv->body.find("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",LANGUAGE=\"fr\""),
            std::string::npos)
      << mv->body;
  EXPECT_NE(mv->body.find("AUDIO=\"audio\",SUBTITLES=\"subs\"\n../tracks--240p/index.m3u8"),
            std::string::npos)
      << mv->body;

  // The subtitles' playlist: WebVTT segment URIs, the video's durations.
  auto subs = http_get(playlist(g, "edge", "tracks--subs-en"));
  ASSERT_EQ(subs->status, 200u) << subs->body;
  EXPECT_NE(subs->body.find("\nsegments/0.vtt\n"), std::string::npos) << subs->body;
  auto video = http_get(playlist(g, "edge", "tracks--240p"));
  ASSERT_EQ(video->status, 200u) << video->body;
  auto want = durations_of(video->body);
  auto got = durations_of(subs->body);
  ASSERT_EQ(got.size(), want.size()) << subs->body << video->body;
  ASSERT_GE(got.size(), 2u);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 1e-6) << i;
  }

  // A segment: the director's 302 to an engine, which answers text/vtt.
  auto segment = [&](size_t n) {
    auto url =
        fmt::format("{}/v1/programs/tracks--subs-en/segments/{}.vtt", g.director_url("edge"), n);
    auto r = http_get(url);
    EXPECT_EQ(r->status, 302u) << url << " " << r->body;
    auto location = r->header("Location");
    EXPECT_NE(location.find(fmt::format("/v1/segments/tracks--subs-en/{}.vtt", n)),
              std::string::npos)
        << location;
    auto at_engine = http_get(location);
    EXPECT_EQ(at_engine->status, 200u) << location;
    EXPECT_EQ(at_engine->header("Content-Type"), "text/vtt");
    return at_engine->body;
  };
  auto first = segment(0);
  auto last = segment(got.size() - 1);
  for (auto* vtt : {&first, &last}) {
    EXPECT_EQ(vtt->rfind("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:", 0), 0u) << *vtt;
    EXPECT_NE(vtt->find(",LOCAL:00:00:00.000\n"), std::string::npos) << *vtt;
  }
  EXPECT_NE(first.find("00:00:00.500 --> 00:00:01.500\nGood morning"), std::string::npos) << first;
  EXPECT_EQ(first.find("Good night"), std::string::npos) << first;
  EXPECT_NE(last.find("00:00:04.500 --> 00:00:05.500\nGood night"), std::string::npos) << last;
  // Its segments are WebVTT only: the .ts URL of one is not there.
  auto ts = http_get(g.director_url("edge") + "/v1/programs/tracks--subs-en/segments/0.ts");
  EXPECT_EQ(ts->status, 404u) << ts->body;
  // RTSP carries MPEG-TS: a subtitles rendition is refused with why.
  auto rtsp_port = g.config().find_station("edge")->director.listen.port;
  auto describe = raw_exchange(
      rtsp_port,
      fmt::format("DESCRIBE rtsp://127.0.0.1:{}/v1/programs/tracks--subs-en RTSP/1.0\r\nCSeq: "
                  "1\r\n\r\n",
                  rtsp_port),
      2s);
  EXPECT_NE(describe.find("RTSP/1.0 404"), std::string::npos) << describe;
  EXPECT_NE(describe.find("MPEG-TS only"), std::string::npos) << describe;

  // A rendition follows its program, whatever the station was told of the rendition itself: the
  // content manager's changes reach each separately, and a console that read the multivariant
  // playlist must find every rendition it names.
  auto set = [&](const std::string& id, std::string body) {
    auto r = http(boost::beast::http::verb::post,
                  g.director_url("edge") + "/v1/programs/" + id + "/availability", body);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200u) << r->body;
  };
  set("tracks--subs-en", R"({"availability":"inactive","publish_at":"2030-01-01T00:00:00Z"})");
  EXPECT_EQ(http_get(playlist(g, "edge", "tracks--subs-en"))->status, 200u);
  set("tracks", R"({"availability":"withdrawn"})");
  for (auto* id : {"tracks--subs-en", "tracks--240p"}) {
    auto r = http_get(playlist(g, "edge", id));
    EXPECT_EQ(r->status, 404u) << id;
    EXPECT_NE(r->body.find("program tracks has been withdrawn"), std::string::npos) << r->body;
  }
  // Published again: its renditions with it, in the director's own record of each too.
  set("tracks", R"({"availability":"published"})");
  EXPECT_EQ(http_get(playlist(g, "edge", "tracks--subs-en"))->status, 200u);
  auto rec = http_get(g.director_url("edge") + "/v1/programs/tracks--subs-en");
  ASSERT_EQ(rec->status, 200u) << rec->body;
  EXPECT_EQ(json::parse(rec->body).at("availability").as_string(), "published") << rec->body;
}

}  // namespace
}  // namespace vodgrid::test
