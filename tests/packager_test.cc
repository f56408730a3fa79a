// The packager against real media made by the ffmpeg command line (MP4, MKV and MPEG-TS; H.264
// and H.265): segments cut at keyframes near the target, each playable on its own, all of them
// together decoding to the source's frames and duration; bad inputs refused with nothing left.
#include "content/packager.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "api/hls.h"
#include "base/fs.h"
#include "support/support.h"

namespace vodgrid::content {
namespace {

namespace fs = std::filesystem;
using test::run;
using test::temp_dir;

const std::string ffmpeg = "/usr/bin/ffmpeg";
const std::string ffprobe = "/usr/bin/ffprobe";
constexpr int fps = 25;

// ---------------------------------------------------------------------------------------------
// Inputs made with the real ffmpeg: a test pattern and a tone.

struct media_spec {
  std::string video = "libx264";  // libx264, libx265, libvpx-vp9, mpeg4
  std::string audio = "aac";      // "" for none
  int seconds = 10;
  int gop = fps;                     // frames from keyframe to keyframe
  std::string preset = "ultrafast";  // x264's: "veryfast" makes B-frames
  std::vector<std::string> extra;    // more output options
};

void append(std::vector<std::string>& v, std::initializer_list<std::string> more) {
  v.insert(v.end(), more);
}

// Writes `dir/name` (the extension picks the container) and returns its path.
fs::path make_media(const fs::path& dir, const std::string& name, const media_spec& s) {
  auto path = dir / name;
  std::vector<std::string> argv = {
      ffmpeg,  "-nostdin", "-loglevel",
      "error", "-y",       "-f",
      "lavfi", "-i",       fmt::format("testsrc2=size=320x180:rate={}", fps)};
  if (!s.audio.empty()) {
    append(argv, {"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"});
  }
  std::string gop = std::to_string(s.gop);
  append(argv, {"-t", std::to_string(s.seconds), "-pix_fmt", "yuv420p", "-c:v", s.video});
  if (s.video == "libx264") {
    append(argv, {"-preset", s.preset, "-g", gop, "-keyint_min", gop, "-sc_threshold", "0"});
  } else if (s.video == "libx265") {
    append(argv,
           {"-preset", "ultrafast", "-x265-params",
            fmt::format("keyint={0}:min-keyint={0}:scenecut=0:open-gop=0:log-level=error", s.gop)});
  } else if (s.video == "libvpx-vp9") {
    append(argv, {"-deadline", "realtime", "-cpu-used", "8", "-g", gop});
  } else {
    append(argv, {"-g", gop});
  }
  if (!s.audio.empty()) {
    append(argv, {"-c:a", s.audio, "-b:a", "64k"});
  }
  argv.insert(argv.end(), s.extra.begin(), s.extra.end());
  argv.push_back(path.string());
  auto r = run(argv);
  EXPECT_EQ(r.status, 0) << name << ": " << r.err;
  return path;
}

bool have_encoder(const std::string& name) {
  static std::map<std::string, bool> known;
  if (!known.count(name)) {
    auto r = run({ffmpeg, "-hide_banner", "-encoders"});
    known[name] = r.out.find(" " + name + " ") != std::string::npos;
  }
  return known[name];
}

// Sources shared by the tests of this process (each made once).
fs::path shared_source(const std::string& name, const media_spec& s) {
  static temp_dir dir;
  static std::map<std::string, fs::path> made;
  auto it = made.find(name);
  if (it == made.end()) {
    it = made.emplace(name, make_media(dir.path(), name, s)).first;
  }
  return it->second;
}

fs::path h264_mp4() {
  return shared_source("h264.mp4", {});
}

// ---------------------------------------------------------------------------------------------
// Probing with the real ffprobe.

std::string probe(std::vector<std::string> args) {
  args.insert(args.begin(), {ffprobe, "-v", "error"});
  auto r = run(args);
  EXPECT_EQ(r.status, 0) << r.err;
  while (!r.out.empty() && (r.out.back() == '\n' || r.out.back() == '\r')) {
    r.out.pop_back();
  }
  return r.out;
}

// Decoded video frames: the acceptance measure.
int64_t frames_of(const fs::path& p) {
  auto s = probe({"-count_frames", "-select_streams", "v:0", "-show_entries",
                  "stream=nb_read_frames", "-of", "csv=p=0", p.string()});
  return s.empty() ? -1 : std::stoll(s);
}

double duration_of(const fs::path& p) {
  auto s = probe({"-show_entries", "format=duration", "-of", "csv=p=0", p.string()});
  return s.empty() ? -1 : std::stod(s);
}

double video_start_of(const fs::path& p) {
  auto s = probe({"-select_streams", "v:0", "-show_entries", "stream=start_time", "-of", "csv=p=0",
                  p.string()});
  return s.empty() ? -1 : std::stod(s);
}

// "key_frame,pict_type" of the first decoded video frame: "1,I" for a keyframe.
std::string first_frame_of(const fs::path& p) {
  auto s = probe({"-select_streams", "v:0", "-read_intervals", "%+#1", "-show_entries",
                  "frame=key_frame,pict_type", "-of", "csv=p=0", p.string()});
  while (!s.empty() && s.back() == ',') {
    s.pop_back();  // an empty side-data column
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Checks on a packaged folder.

std::set<std::string> files_in(const fs::path& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(dir, ec)) {
    out.insert(e.path().filename().string());
  }
  return out;
}

// The folder holds exactly the playlist and the segments, the playlist parses and lists every
// segment with its duration, and every file is whole MPEG-TS matching its size and SHA-256.
void expect_folder_matches(const package_result& res, const fs::path& out) {
  EXPECT_EQ(res.playlist, out / "index.m3u8");
  auto text = read_file(res.playlist);
  ASSERT_TRUE(text) << text.err().detail;
  auto pl = api::parse_media_playlist(*text);
  ASSERT_TRUE(pl) << pl.err().detail << "\n" << *text;
  EXPECT_TRUE(pl->endlist);
  EXPECT_NE(text->find("#EXT-X-PLAYLIST-TYPE:VOD\n"), std::string::npos);
  EXPECT_NE(text->find("#EXT-X-VERSION:3\n"), std::string::npos);
  ASSERT_EQ(pl->segments.size(), res.segments.size());
  ASSERT_FALSE(res.segments.empty());

  std::set<std::string> expected = {"index.m3u8"};
  double longest = 0;
  double total = 0;
  for (size_t i = 0; i < res.segments.size(); ++i) {
    const auto& s = res.segments[i];
    EXPECT_EQ(s.index, i);
    EXPECT_EQ(s.file, fmt::format("seg{:05d}.ts", i));
    EXPECT_EQ(pl->segments[i].uri, s.file);
    EXPECT_NEAR(pl->segments[i].duration, s.duration, 1e-5);
    expected.insert(s.file);
    longest = std::max(longest, s.duration);
    total += s.duration;

    auto data = read_file(out / s.file);
    ASSERT_TRUE(data) << data.err().detail;
    EXPECT_EQ(data->size(), s.size) << s.file;
    EXPECT_EQ(sha256(*data), s.sha256) << s.file;
    // What the loader checks: whole 188-byte packets, each opening with the sync byte.
    ASSERT_EQ(data->size() % 188, 0u) << s.file;
    for (size_t off = 0; off < data->size(); off += 188) {
      ASSERT_EQ((*data)[off], 0x47) << s.file << " at " << off;
    }
  }
  EXPECT_EQ(pl->target_duration, std::ceil(longest - 1e-6));
  EXPECT_NEAR(res.duration, total, 1e-6);
  EXPECT_EQ(files_in(out), expected) << "temporary files left behind?";
}

// Every segment opens with a keyframe, plays on its own (its frames add up to the whole), and
// starts where the one before it ended (timestamps carried over, not reset).
void expect_segments_independent_and_continuous(const package_result& res, const fs::path& out) {
  int64_t frames = 0;
  double prev_start = -1;
  for (size_t i = 0; i < res.segments.size(); ++i) {
    auto seg = out / res.segments[i].file;
    EXPECT_EQ(first_frame_of(seg), "1,I") << seg;
    frames += frames_of(seg);
    double start = video_start_of(seg);
    if (i > 0) {
      EXPECT_NEAR(start - prev_start, res.segments[i - 1].duration, 0.002) << seg;
    }
    prev_start = start;
  }
  EXPECT_EQ(frames, res.video_frames);
}

// The acceptance criterion: the packaged program decodes to the source's frame count and,
// within 0.1 s, its duration.
void expect_same_program(const package_result& res, const fs::path& source) {
  int64_t source_frames = frames_of(source);
  EXPECT_GT(source_frames, 0);
  EXPECT_EQ(frames_of(res.playlist), source_frames);
  EXPECT_EQ(res.video_frames, source_frames);
  EXPECT_NEAR(duration_of(res.playlist), duration_of(source), 0.1);
  EXPECT_NEAR(res.duration, duration_of(source), 0.1);
}

// Durations between the target and the target plus one GOP; the last may be shorter.
void expect_cut_near_target(const package_result& res, double target, double gop_seconds) {
  for (size_t i = 0; i < res.segments.size(); ++i) {
    double d = res.segments[i].duration;
    if (i + 1 < res.segments.size()) {
      EXPECT_GE(d, target - 1e-6) << "segment " << i;
    }
    EXPECT_GT(d, 0) << "segment " << i;
    EXPECT_LT(d, target + gop_seconds + 1e-6) << "segment " << i;
  }
}

result<package_result> package_into(const fs::path& input, const fs::path& out, double target = 4) {
  package_options o;
  o.input = input.string();
  o.out_dir = out;
  o.target_seconds = target;
  return package(o);
}

// ---------------------------------------------------------------------------------------------
// Packaging

TEST(Packager, H264Mp4IsCutAtTheKeyframeThatReachesTheTarget) {
  temp_dir dir;
  auto out = dir.path() / "out";
  auto res = package_into(h264_mp4(), out);
  ASSERT_TRUE(res) << res.err().detail;

  // Keyframes every second, target 4 s, 10 s of video: 4 + 4 + 2.
  ASSERT_EQ(res->segments.size(), 3u);
  EXPECT_NEAR(res->segments[0].duration, 4.0, 1e-6);
  EXPECT_NEAR(res->segments[1].duration, 4.0, 1e-6);
  EXPECT_NEAR(res->segments[2].duration, 2.0, 1e-6);
  EXPECT_EQ(res->video_codec, "h264");
  EXPECT_EQ(res->audio_codec, "aac");
  EXPECT_EQ(res->width, 320);
  EXPECT_EQ(res->height, 180);
  EXPECT_EQ(res->video_frames, 10 * fps);
  EXPECT_NEAR(res->duration, 10.0, 1e-6);
  uint64_t bytes = 0;
  for (auto& s : res->segments) {
    bytes += s.size;
  }
  EXPECT_EQ(res->bitrate, static_cast<uint64_t>(static_cast<double>(bytes) * 8 / 10.0));

  expect_folder_matches(*res, out);
  expect_segments_independent_and_continuous(*res, out);
  expect_same_program(*res, h264_mp4());
}

TEST(Packager, CutsAtTheFirstKeyframeAtOrPastTheTarget) {
  // Keyframes every 1.4 s: 0, 1.4, 2.8, 4.2, 5.6, 7.0, 8.4, 9.8. With a 4 s target the cuts fall
  // at 4.2 and 8.4.
  auto src = shared_source("gop35.mp4", {.gop = 35});
  temp_dir dir;
  auto out = dir.path() / "out";
  auto res = package_into(src, out);
  ASSERT_TRUE(res) << res.err().detail;
  ASSERT_EQ(res->segments.size(), 3u);
  EXPECT_NEAR(res->segments[0].duration, 4.2, 1e-6);
  EXPECT_NEAR(res->segments[1].duration, 4.2, 1e-6);
  EXPECT_NEAR(res->segments[2].duration, 1.6, 1e-6);
  expect_cut_near_target(*res, 4, 1.4);
  expect_folder_matches(*res, out);
  expect_segments_independent_and_continuous(*res, out);
  expect_same_program(*res, src);
}

TEST(Packager, ShortTargetGivesOneSegmentPerGop) {
  temp_dir dir;
  auto out = dir.path() / "out";
  auto res = package_into(h264_mp4(), out, 1);
  ASSERT_TRUE(res) << res.err().detail;
  ASSERT_EQ(res->segments.size(), 10u);
  for (auto& s : res->segments) {
    EXPECT_NEAR(s.duration, 1.0, 1e-6);
  }
  expect_folder_matches(*res, out);
  expect_same_program(*res, h264_mp4());
}

struct container_case {
  std::string name;  // the source's file name
  media_spec spec;
  double gop_seconds = 1;
};

void PrintTo(const container_case& c, std::ostream* os) {
  *os << c.name;
}

class PackagerContainers : public testing::TestWithParam<container_case> {};

TEST_P(PackagerContainers, DecodesToTheSourceFramesAndDuration) {
  const auto& c = GetParam();
  if (c.spec.video == "libx265" && !have_encoder("libx265")) {
    GTEST_SKIP() << "this ffmpeg has no libx265 encoder: H.265 not tested";
  }
  auto src = shared_source(c.name, c.spec);
  temp_dir dir;
  auto out = dir.path() / "out";
  auto res = package_into(src, out);
  ASSERT_TRUE(res) << res.err().detail;
  EXPECT_EQ(res->video_codec, c.spec.video == "libx265" ? "hevc" : "h264");
  EXPECT_EQ(res->audio_codec, c.spec.audio);
  EXPECT_EQ(res->width, 320);
  EXPECT_EQ(res->height, 180);
  expect_cut_near_target(*res, 4, c.gop_seconds);
  expect_folder_matches(*res, out);
  expect_segments_independent_and_continuous(*res, out);
  expect_same_program(*res, src);
}

std::string case_name(const testing::TestParamInfo<container_case>& info) {
  std::string s;
  for (char ch : info.param.name) {
    s += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  }
  return s;
}

INSTANTIATE_TEST_SUITE_P(
    Inputs, PackagerContainers,
    testing::Values(container_case{"h264.mkv", {}}, container_case{"h264.ts", {}},
                    container_case{"h264_bframes.mp4", {.preset = "veryfast"}},
                    container_case{"h264_bframes.mkv", {.gop = 30, .preset = "veryfast"}, 1.2},
                    container_case{"h264_faststart.mp4", {.extra = {"-movflags", "+faststart"}}},
                    container_case{"h264_silent.mp4", {.audio = ""}},
                    container_case{"h265.mp4", {.video = "libx265"}},
                    container_case{"h265.mkv", {.video = "libx265"}},
                    container_case{"h265.ts", {.video = "libx265"}}),
    case_name);

TEST(Packager, MpegTsStartingMidGopIsPackagedFromItsFirstKeyframe) {
  // A transport stream cut out of a broadcast starts wherever the cut fell.
  auto src = shared_source("long_gop.ts", {.gop = 50});
  auto whole = read_file(src);
  ASSERT_TRUE(whole);
  size_t from = (whole->size() / 3) / 188 * 188;
  temp_dir dir;
  auto cut = dir.path() / "cut.ts";
  ASSERT_TRUE(write_file_durably(cut, whole->substr(from)));

  auto out = dir.path() / "out";
  auto res = package_into(cut, out);
  ASSERT_TRUE(res) << res.err().detail;
  EXPECT_LT(res->video_frames, 10 * fps);
  EXPECT_GT(res->video_frames, 5 * fps);
  expect_folder_matches(*res, out);
  expect_segments_independent_and_continuous(*res, out);
  EXPECT_EQ(frames_of(res->playlist), res->video_frames);
}

TEST(Packager, ReportsProgressAfterEachSegment) {
  temp_dir dir;
  std::vector<std::pair<double, double>> calls;
  package_options o;
  o.input = h264_mp4().string();
  o.out_dir = dir.path() / "out";
  o.progress = [&](double done, double total) { calls.emplace_back(done, total); };
  auto res = package(o);
  ASSERT_TRUE(res) << res.err().detail;
  ASSERT_EQ(calls.size(), res->segments.size());
  double prev = 0;
  for (auto& [done, total] : calls) {
    EXPECT_GT(done, prev);
    EXPECT_NEAR(total, 10.0, 0.1);
    prev = done;
  }
  EXPECT_NEAR(calls.back().first, res->duration, 1e-9);
}

TEST(Packager, PackagesIntoAnExistingEmptyFolder) {
  temp_dir dir;
  auto res = package_into(h264_mp4(), dir.path());
  ASSERT_TRUE(res) << res.err().detail;
  expect_folder_matches(*res, dir.path());
}

TEST(Packager, TheStationLoaderLoadsThePackagedFolder) {
  temp_dir dir;
  auto out = dir.path() / "movie";
  auto res = package_into(h264_mp4(), out);
  ASSERT_TRUE(res) << res.err().detail;

  test::station_fixture st;
  auto in = st.ingest(out.string(), "movie");
  ASSERT_EQ(in.status, 0) << in.err;
  auto url = st.director_url() + "/v1/programs/movie/index.m3u8";
  auto r = run({ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                "stream=nb_read_frames", "-of", "csv=p=0", url});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(std::stoll(r.out), frames_of(h264_mp4()));
}

// A plain HTTP server (Python's, which knows no ranges) serving `dir` on a free port.
class http_folder {
 public:
  explicit http_folder(const fs::path& dir) : port_(test::free_port()) {
    auto p = child_process::spawn({"/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1",
                                   std::to_string(port_), "--directory", dir.string()},
                                  log_.path() / "http.log");
    EXPECT_TRUE(p) << p.err().detail;
    if (p) {
      proc_ = std::move(*p);
    }
    EXPECT_TRUE(test::eventually([&] { return test::port_is_listening(port_); }));
  }
  std::string url(const std::string& name) const {
    return fmt::format("http://127.0.0.1:{}/{}", port_, name);
  }

 private:
  temp_dir log_;
  uint16_t port_;
  child_process proc_;
};

TEST(Packager, ReadsAnHttpUrl) {
  // The index first: this server cannot serve the ranges that an index at the end needs.
  auto src = shared_source("h264_faststart.mp4", {.extra = {"-movflags", "+faststart"}});
  http_folder server(src.parent_path());
  temp_dir dir;
  package_options o;
  o.input = server.url(src.filename().string());
  o.out_dir = dir.path() / "out";
  auto res = package(o);
  ASSERT_TRUE(res) << res.err().detail;
  expect_folder_matches(*res, o.out_dir);
  expect_same_program(*res, src);
}

TEST(Packager, AMissingUrlIsABadInputAndAnUnreachableOneUnavailable) {
  temp_dir dir;
  http_folder server(dir.path());
  package_options o;
  o.input = server.url("nothing-here.mp4");
  o.out_dir = dir.path() / "out1";
  auto r = package(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::invalid_argument) << r.err().detail;
  EXPECT_NE(r.err().detail.find("404"), std::string::npos) << r.err().detail;
  EXPECT_FALSE(fs::exists(o.out_dir));

  o.input = fmt::format("http://127.0.0.1:{}/movie.mp4", test::free_port());
  o.out_dir = dir.path() / "out2";
  r = package(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::unavailable) << r.err().detail;
  EXPECT_FALSE(fs::exists(o.out_dir));
}

// ---------------------------------------------------------------------------------------------
// Refusals: each a clear invalid_argument (unless said), and no playlist, no segment, no folder.

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) {
    c = static_cast<char>(rng() & 0xff);
  }
  return s;
}

class PackagerRefuses : public testing::Test {
 protected:
  // Packages `input` into a folder that does not exist yet; expects a refusal whose detail holds
  // `words`, and the folder not created.
  void expect_refused(const std::string& input, std::string_view words,
                      errc code = errc::invalid_argument) {
    auto out = dir.path() / fmt::format("out{}", ++runs);
    package_options o;
    o.input = input;
    o.out_dir = out;
    auto r = package(o);
    ASSERT_FALSE(r) << input << " was packaged";
    EXPECT_EQ(r.err().code, code) << r.err().detail;
    EXPECT_NE(r.err().detail.find(words), std::string::npos) << r.err().detail;
    EXPECT_FALSE(fs::exists(out / "index.m3u8"));
    EXPECT_FALSE(fs::exists(out)) << "left behind: " << fmt::format("{}", files_in(out).size())
                                  << " files";
  }

  temp_dir dir;
  int runs = 0;
};

TEST_F(PackagerRefuses, ANonexistentFile) {
  expect_refused((dir.path() / "no-such.mp4").string(), "no such file");
}

TEST_F(PackagerRefuses, AFolder) {
  expect_refused(dir.path().string(), "a folder, not a media file");
}

TEST_F(PackagerRefuses, RandomBytes) {
  auto p = dir.path() / "noise.mp4";
  ASSERT_TRUE(write_file_durably(p, random_bytes(200'000, 7)));
  expect_refused(p.string(), "not a media file");
}

TEST_F(PackagerRefuses, AnEmptyFile) {
  auto p = dir.path() / "empty.mp4";
  ASSERT_TRUE(write_file_durably(p, ""));
  expect_refused(p.string(), "not a media file");
}

TEST_F(PackagerRefuses, AnMp4CutInTheMiddleWithoutItsIndex) {
  // ffmpeg writes the moov (the index) after the media data: half the file has none.
  auto whole = read_file(h264_mp4());
  ASSERT_TRUE(whole);
  auto p = dir.path() / "half.mp4";
  ASSERT_TRUE(write_file_durably(p, whole->substr(0, whole->size() / 2)));
  expect_refused(p.string(), "moov atom not found");
}

TEST_F(PackagerRefuses, AnMp4WhoseMediaDataIsCutShort) {
  // With the index first (faststart), the demuxer reads the first half and then fails.
  auto src = shared_source("h264_faststart.mp4", {.extra = {"-movflags", "+faststart"}});
  auto whole = read_file(src);
  ASSERT_TRUE(whole);
  auto p = dir.path() / "half.mp4";
  ASSERT_TRUE(write_file_durably(p, whole->substr(0, whole->size() / 2)));
  expect_refused(p.string(), "truncated or damaged");
}

TEST_F(PackagerRefuses, AnMp4CutInsideAFrame) {
  // The demuxer hands out the last frame short, and stops there.
  auto src = shared_source("h264_faststart.mp4", {.extra = {"-movflags", "+faststart"}});
  auto whole = read_file(src);
  ASSERT_TRUE(whole);
  auto p = dir.path() / "short.mp4";
  ASSERT_TRUE(write_file_durably(p, whole->substr(0, whole->size() * 7 / 10)));
  expect_refused(p.string(), "truncated or damaged");
}

TEST_F(PackagerRefuses, AnMkvCutInTheMiddle) {
  // Matroska's demuxer only warns ("File ended prematurely") and ends cleanly: the packager sees
  // the video stop halfway through the duration the header states.
  auto whole = read_file(shared_source("h264.mkv", {}));
  ASSERT_TRUE(whole);
  auto p = dir.path() / "half.mkv";
  ASSERT_TRUE(write_file_durably(p, whole->substr(0, whole->size() / 2)));
  expect_refused(p.string(), "but the container says 10.0");
}

TEST_F(PackagerRefuses, AStreamWithoutKeyframes) {
  // The noise filter drops every keyframe packet: what is left are P-frames that no player can
  // start from.
  auto src = shared_source("h264.ts", {});
  auto p = dir.path() / "nokey.ts";
  auto r = run({ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", src.string(), "-c", "copy",
                "-bsf:v", "noise=drop=key", p.string()});
  ASSERT_EQ(r.status, 0) << r.err;
  expect_refused(p.string(), "no video keyframe");
}

TEST_F(PackagerRefuses, AStreamWhoseFirstKeyframeComesTooLate) {
  // 12 s of P-frames before the first keyframe: more than the packager waits for.
  auto src = shared_source("late_key.ts", {.seconds = 14, .gop = 12 * fps + 10});
  auto p = dir.path() / "late.ts";
  auto r = run({ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", src.string(), "-c", "copy",
                "-bsf:v", "noise=drop=eq(n\\,0)", p.string()});
  ASSERT_EQ(r.status, 0) << r.err;
  expect_refused(p.string(), "no video keyframe in the first 10 s");
}

TEST_F(PackagerRefuses, Vp9Video) {
  auto p = make_media(dir.path(), "vp9.webm", {.video = "libvpx-vp9", .audio = "", .seconds = 2});
  expect_refused(p.string(), "video codec vp9 is not supported: H.264 or H.265 only");
}

TEST_F(PackagerRefuses, Mpeg4Part2Video) {
  auto p = make_media(dir.path(), "mpeg4.mkv", {.video = "mpeg4", .seconds = 2});
  expect_refused(p.string(), "video codec mpeg4 is not supported: H.264 or H.265 only");
}

TEST_F(PackagerRefuses, AnAviContainer) {
  auto p = make_media(dir.path(), "mpeg4.avi", {.video = "mpeg4", .seconds = 2});
  expect_refused(p.string(), "container AVI (Audio Video Interleaved) is not supported");
}

TEST_F(PackagerRefuses, Mp3Audio) {
  if (!have_encoder("libmp3lame")) {
    GTEST_SKIP() << "this ffmpeg has no MP3 encoder";
  }
  auto p = make_media(dir.path(), "mp3.mkv", {.audio = "libmp3lame", .seconds = 2});
  expect_refused(p.string(), "audio codec mp3 is not supported: AAC only");
}

TEST_F(PackagerRefuses, AudioWithoutVideo) {
  auto p = dir.path() / "tone.mp4";
  auto r = run({ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                "sine=frequency=440:sample_rate=48000", "-t", "2", "-c:a", "aac", p.string()});
  ASSERT_EQ(r.status, 0) << r.err;
  expect_refused(p.string(), "no video stream");
}

TEST_F(PackagerRefuses, ASegmentLargerThanTheLimit) {
  package_options o;
  o.input = h264_mp4().string();
  o.out_dir = dir.path() / "out";
  o.max_segment_bytes = 50'000;
  auto r = package(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::too_large);
  EXPECT_NE(r.err().detail.find("segment 0 would exceed 50000 bytes"), std::string::npos)
      << r.err().detail;
  EXPECT_FALSE(fs::exists(o.out_dir));
}

TEST_F(PackagerRefuses, AProgramLargerThanTheLimitAfterSomeSegments) {
  package_options o;
  o.input = h264_mp4().string();
  o.out_dir = dir.path() / "out";
  o.target_seconds = 1;
  o.max_bytes = 300'000;  // a few one-second segments fit, not ten
  auto r = package(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::too_large) << r.err().detail;
  EXPECT_FALSE(fs::exists(o.out_dir)) << "finished segments must be removed too";
}

TEST_F(PackagerRefuses, AFolderThatIsNotEmpty) {
  auto out = dir.path() / "busy";
  ASSERT_TRUE(write_file_durably(out / "keep.txt", "mine"));
  package_options o;
  o.input = h264_mp4().string();
  o.out_dir = out;
  auto r = package(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::conflict);
  EXPECT_EQ(files_in(out), std::set<std::string>{"keep.txt"});
  EXPECT_EQ(*read_file(out / "keep.txt"), "mine");
}

TEST_F(PackagerRefuses, BadInputLeavesAnExistingFolderEmpty) {
  auto out = dir.path() / "mine";
  fs::create_directories(out);
  auto whole =
      read_file(shared_source("h264_faststart.mp4", {.extra = {"-movflags", "+faststart"}}));
  ASSERT_TRUE(whole);
  auto p = dir.path() / "half.mp4";
  ASSERT_TRUE(write_file_durably(p, whole->substr(0, whole->size() / 2)));
  auto r = package_into(p, out);
  ASSERT_FALSE(r);
  EXPECT_TRUE(fs::is_directory(out)) << "a folder the caller made stays";
  EXPECT_TRUE(files_in(out).empty());
}

TEST_F(PackagerRefuses, BadOptions) {
  package_options o;
  o.input = h264_mp4().string();
  o.out_dir = dir.path() / "out";
  o.target_seconds = 0;
  auto r = package(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::invalid_argument);
  EXPECT_NE(r.err().detail.find("target_seconds"), std::string::npos);
  o.target_seconds = 4;
  o.input.clear();
  EXPECT_FALSE(package(o));
  EXPECT_FALSE(fs::exists(o.out_dir));
}

}  // namespace
}  // namespace vodgrid::content
