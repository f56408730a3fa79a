// The content manager end to end (issue 4, claims 2 and 11): real daemons on free ports, media made
// by ffmpeg, programs checked by ffprobe. A program ingested with a publish time ahead is refused
// before it and served after it at the edge; bad sources fail with a reason and leave nothing in a
// station; a dropped download is resumed; an HLS playlist is packaged again; the lifecycle
// survives a restart of the content manager.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <boost/json.hpp>

#include <csignal>
#include <fstream>
#include <thread>

#include "base/fs.h"
#include "base/process.h"
#include "base/time.h"
#include "support/support.h"

#ifndef VODGRID_TEST_HTTP
#define VODGRID_TEST_HTTP "test_http.py"
#endif

namespace vodgrid::test {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

const std::string ffmpeg = "/usr/bin/ffmpeg";
const std::string ffprobe = "/usr/bin/ffprobe";

// seconds of 320x180 test pattern at 25 fps (a keyframe each second) with AAC audio.
fs::path make_mp4(const fs::path& dir, const std::string& name, int seconds = 6,
                  std::vector<std::string> extra = {}) {
  auto out = dir / name;
  std::vector<std::string> argv{ffmpeg,
                                "-nostdin",
                                "-loglevel",
                                "error",
                                "-y",
                                "-f",
                                "lavfi",
                                "-i",
                                fmt::format("testsrc2=size=320x180:rate=25:d={}", seconds),
                                "-f",
                                "lavfi",
                                "-i",
                                fmt::format("sine=d={}", seconds),
                                "-c:v",
                                "libx264",
                                "-preset",
                                "ultrafast",
                                "-g",
                                "25",
                                "-c:a",
                                "aac"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(out.string());
  auto r = run(argv, 60s);
  EXPECT_EQ(r.status, 0) << r.err;
  return out;
}

struct probed {
  long frames = -1;
  double duration = -1;
};

// Decodes every video frame of a file or URL and reads the container's duration.
probed probe(const std::string& what) {
  auto r = run({ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                "stream=nb_read_frames:format=duration", "-of", "default=nw=1", what},
               120s);
  probed p;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("nb_read_frames=")) {
      p.frames = std::stol(line.substr(15));
    } else if (line.starts_with("duration=") && line != "duration=N/A") {
      p.duration = std::stod(line.substr(9));
    }
  }
  return p;
}

json::object content_program(grid_fixture& g, const std::string& id) {
  auto r = http_get(g.content_url() + "/v1/programs/" + id, g.operator_headers());
  if (!r || r->status != 200) {
    return {};
  }
  return json::parse(r->body).as_object();
}

std::string state_of(grid_fixture& g, const std::string& id) {
  auto o = content_program(g, id);
  return o.contains("state") ? std::string(o.at("state").as_string()) : std::string();
}

run_result ingest(grid_fixture& g, const std::string& source, const std::string& id,
                  std::vector<std::string> more = {}) {
  // These tests are about the remux path: the packager's own checks, the segments it cuts.
  std::vector<std::string> argv{vodgrid_binary(), "ingest", source, "--title",
                                "Test " + id,     "--id",   id,     "--grid",
                                g.registry_url(), "--remux"};
  argv.insert(argv.end(), more.begin(), more.end());
  return run(argv, 180s);
}

// No station holds anything of the program: no director knows it, no engine has a segment of it.
void expect_nothing_left(grid_fixture& g, const std::string& id) {
  for (auto& s : g.config().stations) {
    auto r = http_get(s.director.listen.url() + "/v1/programs/" + id, g.operator_headers());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404u) << s.name.str() << " knows " << id;
    for (auto& e : s.engines) {
      auto inv = http_get(e.listen.url() + "/v1/segments", g.operator_headers());
      ASSERT_TRUE(inv);
      EXPECT_EQ(inv->body.find("\"" + id + "\""), std::string::npos) << e.name.str();
    }
  }
}

std::string playlist_url(grid_fixture& g, const std::string& station, const std::string& id) {
  return g.director_url(station) + "/v1/programs/" + id + "/index.m3u8";
}

TEST(ContentIngest, AnMp4IsRefusedBeforeItsPublishTimeAndPlaysAfterItAtTheEdge) {
  grid_fixture g({{"home", 2, 0}, {"edge", 2, 100}}, {}, true);
  temp_dir src;
  auto mp4 = make_mp4(src.path(), "film.mp4", 6);
  auto at = wall_clock::now() + 8s;
  auto in = ingest(g, mp4.string(), "film", {"--publish-at", format_rfc3339(at)});
  ASSERT_EQ(in.status, 0) << in.err << g.log_of("content");
  EXPECT_NE(in.out.find("inactive"), std::string::npos) << in.out;
  ASSERT_LT(wall_clock::now(), at) << "the ingest took longer than the test allows for";
  // Before: every station refuses it with the reason, and the edge already holds it (pre-position).
  EXPECT_TRUE(eventually([&] {
    auto r = http_get(g.director_url("edge") + "/v1/programs/film");
    return r && r->status == 200;
  }));
  for (auto station : {"home", "edge"}) {
    auto r = http_get(playlist_url(g, station, "film"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404u) << station;
    EXPECT_NE(r->body.find("publishes at " + format_rfc3339(at)), std::string::npos) << r->body;
    auto seg = http_get(g.director_url(station) + "/v1/programs/film/segments/0.ts");
    EXPECT_EQ(seg->status, 404u);
  }
  EXPECT_EQ(state_of(g, "film"), "inactive");
  // After: published, and the stream at the edge decodes to the source's frames and duration.
  ASSERT_TRUE(eventually(
      [&] {
        auto r = http_get(playlist_url(g, "edge", "film"));
        return r && r->status == 200;
      },
      20s));
  EXPECT_GE(wall_clock::now(), at - 100ms);
  EXPECT_EQ(state_of(g, "film"), "published");
  auto want = probe(mp4.string());
  auto got = probe(playlist_url(g, "edge", "film"));
  EXPECT_EQ(got.frames, 150);
  EXPECT_EQ(got.frames, want.frames);
  EXPECT_NEAR(got.duration, want.duration, 0.1);
  // Its I-frame playlist at the edge (learned from the registry): the six key frames, each a byte
  // range of its segment through the same redirects, and nothing else.
  auto iframes_url = g.director_url("edge") + "/v1/programs/film/iframes.m3u8";
  auto iframes = http_get(iframes_url);
  ASSERT_TRUE(iframes && iframes->status == 200);
  EXPECT_NE(iframes->body.find("#EXT-X-I-FRAMES-ONLY"), std::string::npos) << iframes->body;
  auto keys = run({ffprobe, "-v", "error", "-select_streams", "v:0", "-show_entries",
                   "frame=key_frame", "-of", "csv=p=0", iframes_url},
                  60s);
  EXPECT_EQ(keys.status, 0) << keys.err;
  int key_frames = 0, others = 0;
  std::istringstream frames(keys.out);
  for (std::string line; std::getline(frames, line);) {
    key_frames += line.starts_with("1") ? 1 : 0;
    others += line.starts_with("0") ? 1 : 0;
  }
  EXPECT_EQ(key_frames, 6) << keys.out << iframes->body;
  EXPECT_EQ(others, 0) << keys.out;
  // ffprobe's only complaint: its HTTP connection is not reused across the engines' redirects.
  std::istringstream complaints(keys.err);
  for (std::string line; std::getline(complaints, line);) {
    EXPECT_NE(line.find("Cannot reuse HTTP connection for different host"), std::string::npos)
        << line;
  }
  // The catalog has what the packager found and the history of the program.
  auto p = content_program(g, "film");
  EXPECT_EQ(p.at("video_codec").as_string(), "h264");
  EXPECT_EQ(p.at("audio_codec").as_string(), "aac");
  EXPECT_EQ(p.at("width").to_number<int>(), 320);
  EXPECT_EQ(p.at("video_frames").to_number<int>(), 150);
  EXPECT_GE(p.at("segments").as_array().size(), 2u);
  EXPECT_EQ(p.at("segments").as_array()[0].at("sha256").as_string().size(), 64u);
  std::vector<std::string> states;
  for (auto& h : p.at("history").as_array()) {
    states.emplace_back(h.at("state").as_string());
  }
  EXPECT_EQ(states, (std::vector<std::string>{"ingesting", "inactive", "published"}));
  auto list = run({vodgrid_binary(), "programs", "--grid", g.registry_url()});
  EXPECT_EQ(list.status, 0);
  EXPECT_NE(list.out.find("published"), std::string::npos) << list.out;
}

TEST(ContentIngest, BadSourcesFailWithTheirReasonAndLeaveNothingInAnyStation) {
  grid_fixture g({{"home", 2, 0}, {"edge", 2, 100}}, {}, true);
  temp_dir src;
  auto text = src.path() / "notes.mp4";
  std::ofstream(text) << "these are not the frames you are looking for\n";
  auto good = make_mp4(src.path(), "good.mp4", 4);
  auto cut = src.path() / "cut.mp4";
  fs::copy_file(good, cut);
  fs::resize_file(cut, fs::file_size(good) / 2);
  auto nokey = src.path() / "nokey.ts";
  auto r = run({ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", good.string(), "-c", "copy",
                "-bsf:v", "noise=drop=key", "-f", "mpegts", nokey.string()});
  ASSERT_EQ(r.status, 0) << r.err;
  struct bad_case {
    std::string id, source, reason;
  };
  for (auto& c : std::vector<bad_case>{
           {"text", text.string(), "not a media file"},
           {"cut", cut.string(), "moov atom not found"},
           {"nokey", nokey.string(), "no video keyframe"},
           {"gone", fmt::format("http://127.0.0.1:{}/film.mp4", free_port()), "127.0.0.1"}}) {
    SCOPED_TRACE(c.id);
    auto in = ingest(g, c.source, c.id);
    EXPECT_EQ(in.status, 1) << in.out;
    EXPECT_NE(in.err.find(c.reason), std::string::npos) << in.err;
    // Progress lines, then one line with the reason.
    EXPECT_TRUE(in.err.ends_with("\n") &&
                in.err.find("vodgrid ingest: ") == in.err.rfind('\n', in.err.size() - 2) + 1)
        << in.err;
    auto p = content_program(g, c.id);
    ASSERT_TRUE(p.contains("state"));
    EXPECT_EQ(p.at("state").as_string(), "failed");
    EXPECT_NE(std::string(p.at("error").as_string()).find(c.reason), std::string::npos);
    expect_nothing_left(g, c.id);
  }
  // Nothing was left in the content manager's work folder either.
  auto work = g.config().content->work_dir;
  EXPECT_TRUE(fs::is_empty(work)) << fs::begin(fs::directory_iterator(work))->path();
  // A failed program's id can be used again.
  auto again = ingest(g, good.string(), "cut");
  EXPECT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(state_of(g, "cut"), "published");
  // The catalog by state, as Prometheus reads it: three failed, one published, none overdue.
  auto programs = [&](const char* state) {
    return metric(g.content_url(),
                  fmt::format("vodgrid_content_programs\\{{state=\"{}\"\\}}", state));
  };
  EXPECT_TRUE(eventually([&] { return programs("failed") == 3 && programs("published") == 1; }))
      << programs("failed") << " failed, " << programs("published") << " published";
  EXPECT_EQ(programs("ingesting"), 0);
  EXPECT_EQ(metric(g.content_url(), "vodgrid_content_publish_overdue"), 0);
}

TEST(ContentIngest, BadRequestsAreRefusedAndRecordNothing) {
  grid_fixture g({{"home", 2, 0}, {"edge", 2, 100}}, {}, true);
  temp_dir src;
  auto mp4 = make_mp4(src.path(), "film.mp4", 3);
  ASSERT_EQ(ingest(g, mp4.string(), "film").status, 0);
  struct bad_case {
    std::string id;
    std::vector<std::string> args;
    std::string reason;
  };
  for (auto& c :
       std::vector<bad_case>{{"film", {}, "already exists"},
                             {"past", {"--publish-at", "2020-01-01T00:00:00Z"}, "in the past"},
                             {"garbled", {"--publish-at", "tomorrow"}, "RFC 3339"},
                             {"nowhere", {"--stations", "atlantis"}, "no station atlantis"}}) {
    SCOPED_TRACE(c.id);
    auto in = ingest(g, mp4.string(), c.id, c.args);
    EXPECT_EQ(in.status, 1);
    EXPECT_NE(in.err.find(c.reason), std::string::npos) << in.err;
    if (c.id != "film") {
      EXPECT_EQ(http_get(g.content_url() + "/v1/programs/" + c.id)->status, 404u);
    }
  }
  EXPECT_EQ(state_of(g, "film"), "published");  // the duplicate changed nothing
  // Straight to the content manager: what the command line cannot send.
  for (std::string body :
       {std::string("not json"), std::string(R"({"id":"x","title":"x"})"),
        std::string(R"({"id":"../x","title":"x","source":"/tmp/x.mp4"})"),
        fmt::format(R"({{"id":"x","title":"x","source":"relative/{}"}})", "film.mp4"),
        std::string(R"({"id":"x","title":"x","source":"ftp://example.com/x.mp4"})"),
        fmt::format(R"({{"id":"x","title":"x","source":"{}","target_seconds":1000}})",
                    mp4.string()),
        fmt::format(R"({{"id":"x","title":"x","source":"{}","publish_at":17}})", mp4.string())}) {
    SCOPED_TRACE(body);
    auto r = http(boost::beast::http::verb::post, g.content_url() + "/v1/programs", body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400u) << r->body;
    EXPECT_NE(r->body.find("\"detail\""), std::string::npos);
  }
  EXPECT_EQ(http_get(g.content_url() + "/v1/programs/x")->status, 404u);
  // Publishing or withdrawing what does not exist.
  auto pub = run({vodgrid_binary(), "publish", "nosuch", "--grid", g.registry_url()});
  EXPECT_EQ(pub.status, 1);
  EXPECT_NE(pub.err.find("no such program"), std::string::npos) << pub.err;
}

TEST(ContentIngest, ADroppedDownloadIsResumedWhereItStopped) {
  grid_fixture g({{"home", 2, 0}, {"edge", 2, 100}}, {}, true);
  temp_dir src, logs;
  auto mp4 = make_mp4(src.path(), "film.mp4", 6);
  uint16_t port = free_port();
  auto server = child_process::spawn({"/usr/bin/python3", VODGRID_TEST_HTTP, std::to_string(port),
                                      src.path().string(), "--drop-first-at-half"},
                                     logs.path() / "http.log");
  ASSERT_TRUE(server) << server.err().detail;
  ASSERT_TRUE(eventually([&] { return port_is_listening(port); }));
  auto in = ingest(g, fmt::format("http://127.0.0.1:{}/film.mp4", port), "film");
  ASSERT_EQ(in.status, 0) << in.err << g.log_of("content");
  auto log = read_file(logs.path() / "http.log");
  ASSERT_TRUE(log);
  // The first request got half the file; the second asked for the rest only.
  auto half = fs::file_size(mp4) / 2;
  EXPECT_NE(log->find("GET /film.mp4 range=\n"), std::string::npos) << *log;
  EXPECT_NE(log->find(fmt::format("GET /film.mp4 range=bytes={}-", half)), std::string::npos)
      << *log;
  EXPECT_NE(g.log_of("content").find("resumed"), std::string::npos);
  auto got = probe(playlist_url(g, "edge", "film"));
  EXPECT_EQ(got.frames, probe(mp4.string()).frames);
  server->stop(2s);
}

TEST(ContentIngest, AnHlsPlaylistIsPackagedAgainFromAFolderAndFromAUrl) {
  grid_fixture g({{"home", 2, 0}, {"edge", 2, 100}}, {}, true);
  temp_dir src, logs;
  auto playlist = make_sample(src.path(), 6, 2);
  auto in = ingest(g, src.path().string(), "folder");
  ASSERT_EQ(in.status, 0) << in.err;
  auto want = probe(playlist.string());
  ASSERT_GT(want.frames, 0);
  EXPECT_EQ(probe(playlist_url(g, "edge", "folder")).frames, want.frames);
  // The same playlist from a provider's web server (whose first answers are cut short).
  uint16_t port = free_port();
  auto server = child_process::spawn({"/usr/bin/python3", VODGRID_TEST_HTTP, std::to_string(port),
                                      src.path().string(), "--drop-first-at-half"},
                                     logs.path() / "http.log");
  ASSERT_TRUE(server);
  ASSERT_TRUE(eventually([&] { return port_is_listening(port); }));
  auto url = fmt::format("http://127.0.0.1:{}/{}", port, playlist.filename().string());
  auto web = ingest(g, url, "web");
  ASSERT_EQ(web.status, 0) << web.err << g.log_of("content");
  EXPECT_EQ(probe(playlist_url(g, "edge", "web")).frames, want.frames);
  server->stop(2s);
  // A live playlist (no end) is refused.
  auto live = src.path() / "live.m3u8";
  auto text = *read_file(playlist);
  text.erase(text.find("#EXT-X-ENDLIST"));
  std::ofstream(live) << text;
  auto l = ingest(g, live.string(), "live");
  EXPECT_EQ(l.status, 1);
  EXPECT_NE(l.err.find("not a VOD playlist"), std::string::npos) << l.err;
}

TEST(ContentLifecycle, WithdrawPublishAgainAndAScheduleThatOutlivesARestart) {
  grid_fixture g({{"home", 2, 0}, {"edge", 2, 100}}, {}, true);
  temp_dir src;
  auto mp4 = make_mp4(src.path(), "film.mp4", 3);
  ASSERT_EQ(ingest(g, mp4.string(), "film").status, 0);
  ASSERT_TRUE(eventually([&] { return http_get(playlist_url(g, "edge", "film"))->status == 200; }));
  auto w = run({vodgrid_binary(), "withdraw", "film", "--grid", g.registry_url()});
  ASSERT_EQ(w.status, 0) << w.err;
  for (auto station : {"home", "edge"}) {
    auto r = http_get(playlist_url(g, station, "film"));
    EXPECT_EQ(r->status, 404u);
    EXPECT_NE(r->body.find("withdrawn"), std::string::npos) << r->body;
  }
  auto again = run({vodgrid_binary(), "withdraw", "film", "--grid", g.registry_url()});
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.err.find("cannot become withdrawn"), std::string::npos) << again.err;
  ASSERT_EQ(run({vodgrid_binary(), "publish", "film", "--grid", g.registry_url()}).status, 0);
  EXPECT_EQ(http_get(playlist_url(g, "edge", "film"))->status, 200u);

  // A program whose publish time comes while the content manager is down is published when it
  // is back; one withdrawn while a director was down reaches that director when it returns.
  auto at = wall_clock::now() + 6s;
  ASSERT_EQ(ingest(g, mp4.string(), "later", {"--publish-at", format_rfc3339(at)}).status, 0);
  g.kill("content", SIGKILL);
  g.kill("edge", SIGKILL);
  std::this_thread::sleep_for(at - wall_clock::now() + 500ms);
  g.start("content");
  ASSERT_EQ(run({vodgrid_binary(), "withdraw", "film", "--grid", g.registry_url()}).status, 0);
  EXPECT_TRUE(eventually([&] { return state_of(g, "later") == "published"; }, 10s));
  EXPECT_TRUE(
      eventually([&] { return http_get(playlist_url(g, "home", "later"))->status == 200; }, 5s));
  g.start("edge");
  EXPECT_TRUE(
      eventually([&] { return http_get(playlist_url(g, "edge", "later"))->status == 200; }, 15s));
  EXPECT_TRUE(
      eventually([&] { return http_get(playlist_url(g, "edge", "film"))->status == 404; }, 15s));
}

}  // namespace
}  // namespace vodgrid::test

namespace vodgrid::test {
namespace {

// Item 5 of issue 5 at the content manager: ingest, publish and withdraw need an operator token.
TEST(ContentAuth, IngestPublishAndWithdrawNeedAnOperatorToken) {
  grid_fixture g({{"home", 2, 0}, {"edge", 2, 100}}, {}, true, true);
  temp_dir src;
  auto mp4 = make_mp4(src.path(), "film.mp4", 3);
  // No token: 401; a viewer's: 403; and nothing is recorded.
  auto none = ingest(g, mp4.string(), "film");
  EXPECT_EQ(none.status, 1);
  EXPECT_NE(none.err.find("token"), std::string::npos) << none.err;
  auto viewer = ingest(g, mp4.string(), "film", {"--token", g.viewer_token()});
  EXPECT_EQ(viewer.status, 1);
  EXPECT_NE(viewer.err.find("token"), std::string::npos) << viewer.err;
  auto direct = http(boost::beast::http::verb::post, g.content_url() + "/v1/programs",
                     fmt::format(R"({{"id":"film","title":"x","source":"{}"}})", mp4.string()),
                     {{"Authorization", "Bearer " + g.viewer_token()}});
  ASSERT_TRUE(direct);
  EXPECT_EQ(direct->status, 403u) << direct->body;
  EXPECT_EQ(http_get(g.content_url() + "/v1/programs/film", g.operator_headers())->status, 404u);
  // The operator's token does it; a viewer can then play it, and cannot withdraw it.
  auto op = g.operator_token();
  auto in = ingest(g, mp4.string(), "film", {"--token", op});
  ASSERT_EQ(in.status, 0) << in.err << g.log_of("content");
  auto w = run({vodgrid_binary(), "withdraw", "film", "--grid", g.registry_url(), "--token",
                g.viewer_token()});
  EXPECT_EQ(w.status, 1);
  EXPECT_EQ(state_of(g, "film"), "published");
  auto play =
      run({vodgrid_binary(), "play", playlist_url(g, "edge", "film"), "--token", g.viewer_token()},
          60s);
  EXPECT_EQ(play.status, 0) << play.out << play.err;
  auto ok = run({vodgrid_binary(), "withdraw", "film", "--grid", g.registry_url()},
                30s);  // from $VODGRID_TOKEN? not set here: refused
  EXPECT_EQ(ok.status, 1);
  ::setenv("VODGRID_TOKEN", op.c_str(), 1);
  auto env = run({vodgrid_binary(), "withdraw", "film", "--grid", g.registry_url()});
  ::unsetenv("VODGRID_TOKEN");
  EXPECT_EQ(env.status, 0) << env.err;
  EXPECT_EQ(state_of(g, "film"), "withdrawn");
}

}  // namespace
}  // namespace vodgrid::test
