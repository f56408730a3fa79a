// The transcoder (content/transcode.h) against real media made by the ffmpeg command line: every
// rendition of a ladder has the same duration, segments starting at the same pts with a keyframe,
// its rung's resolution and a bitrate under its cap; every audio track an audio rendition with its
// language; an MPEG-2/AC-3 transport stream transcoded; bad input refused with nothing left.
#include "content/transcode.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "support/support.h"

namespace vodgrid::content {
namespace {
// Its own namespace: the unity build compiles it with packager_test.cc (tests/CMakeLists.txt).
namespace transcode_test {

namespace fs = std::filesystem;
using test::run;
using test::temp_dir;

const std::string ffmpeg = "/usr/bin/ffmpeg";
const std::string ffprobe = "/usr/bin/ffprobe";
constexpr double frame = 1.0 / 25;

// Writes `dir/name` with ffmpeg: `args` between the lavfi inputs and the output.
fs::path make(const fs::path& dir, const std::string& name, std::vector<std::string> args) {
  std::vector<std::string> argv = {ffmpeg, "-nostdin", "-loglevel", "error", "-y"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back((dir / name).string());
  auto r = run(argv);
  EXPECT_EQ(r.status, 0) << name << ": " << r.err;
  return dir / name;
}

const fs::path& sources() {
  static temp_dir dir;
  return dir.path();
}

// 8 s of 640x360 H.264 (keyframes every 37 frames: nowhere near the ladder's) and AAC, in MP4.
fs::path h264_source() {
  static fs::path p = make(sources(), "src.mp4",
                           {"-f",   "lavfi",   "-i",       "testsrc2=size=640x360:rate=25",
                            "-f",   "lavfi",   "-i",       "sine=frequency=440:sample_rate=44100",
                            "-t",   "8",       "-pix_fmt", "yuv420p",
                            "-c:v", "libx264", "-preset",  "ultrafast",
                            "-g",   "37",      "-c:a",     "aac",
                            "-b:a", "64k"});
  return p;
}

std::string probe(std::vector<std::string> args) {
  args.insert(args.begin(), {ffprobe, "-v", "error"});
  auto r = run(args);
  EXPECT_EQ(r.status, 0) << r.err;
  // A transport stream's streams are listed twice, under its program and on their own.
  if (std::any_of(args.begin(), args.end(), [](auto& a) { return a.starts_with("stream="); })) {
    r.out = r.out.substr(0, r.out.find("\n\n"));
  }
  while (!r.out.empty() && (r.out.back() == '\n' || r.out.back() == '\r')) {
    r.out.pop_back();
  }
  return r.out;
}

double duration_of(const fs::path& p) {
  auto s = probe({"-show_entries", "format=duration", "-of", "csv=p=0", p.string()});
  return s.empty() ? -1 : std::stod(s);
}

// The first packet of the stream kind `sel` ("v:0", "a:0") in a segment: "pts_time,flags".
std::string first_packet(const fs::path& seg, const std::string& sel) {
  auto s = probe({"-select_streams", sel, "-show_entries", "packet=pts_time,flags",
                  "-read_intervals", "%+#1", "-of", "csv=p=0", seg.string()});
  return s.substr(0, s.find('\n'));
}

const rendition_info* find(const ladder_result& r, const std::string& name) {
  for (auto& x : r.renditions) {
    if (x.name == name) {
      return &x;
    }
  }
  return nullptr;
}

bool left_nothing(const fs::path& out) {
  std::error_code ec;
  return !fs::exists(out, ec) || fs::is_empty(out, ec);
}

// ---------------------------------------------------------------------------------------------
// The ladder of an H.264 source: one run shared by the checks below.

struct ladder_run {
  temp_dir dir;
  fs::path out = dir.path() / "out";
  ladder_result res;
  std::vector<std::pair<double, double>> progress;
};

ladder_run& h264_ladder() {
  static ladder_run* r = [] {
    auto* run = new ladder_run;
    package_options o;
    o.input = h264_source().string();
    o.out_dir = run->out;
    o.target_seconds = 2;
    o.progress = [run](double done, double total) { run->progress.emplace_back(done, total); };
    ladder_options l;
    auto rungs = parse_renditions("360p,240p");
    EXPECT_TRUE(rungs) << rungs.err().detail;
    l.rungs = *rungs;
    auto got = package_ladder(o, l);
    EXPECT_TRUE(got) << got.err().detail;
    if (got) {
      run->res = std::move(*got);
    }
    return run;
  }();
  return *r;
}

TEST(Transcode, MakesEachRungAndTheAudioAsRenditions) {
  auto& r = h264_ladder();
  ASSERT_EQ(r.res.renditions.size(), 3u);
  EXPECT_EQ(r.res.renditions[0].name, "360p");
  EXPECT_EQ(r.res.renditions[1].name, "240p");
  const auto& a = r.res.renditions[2];
  EXPECT_EQ(a.kind, rendition_kind::audio);
  EXPECT_TRUE(a.is_default);
  EXPECT_EQ(a.codecs, "mp4a.40.2");
  EXPECT_TRUE(r.res.dropped.empty());
  for (auto& x : r.res.renditions) {
    EXPECT_TRUE(fs::exists(r.out / x.name / "index.m3u8")) << x.name;
    EXPECT_EQ(x.media.playlist, r.out / x.name / "index.m3u8");
  }
}

TEST(Transcode, EveryRenditionLastsAsLongWithinAFrame) {
  auto& r = h264_ladder();
  ASSERT_FALSE(r.res.renditions.empty());
  double first = duration_of(r.out / "360p" / "index.m3u8");
  EXPECT_NEAR(first, 8.0, 2 * frame);
  for (auto& x : r.res.renditions) {
    EXPECT_NEAR(duration_of(r.out / x.name / "index.m3u8"), first, frame) << x.name;
    EXPECT_NEAR(x.media.duration, 8.0, frame) << x.name;
  }
}

TEST(Transcode, SegmentsStartWithAKeyframeAtTheSamePtsInEveryRendition) {
  auto& r = h264_ladder();
  const auto* top = find(r.res, "360p");
  const auto* low = find(r.res, "240p");
  const auto* audio = find(r.res, "audio-1");
  ASSERT_TRUE(top && low && audio);
  // 8 s at a 2 s target, keyframes forced on the 2 s grid.
  ASSERT_EQ(top->media.segments.size(), 4u);
  ASSERT_EQ(low->media.segments.size(), top->media.segments.size());
  ASSERT_EQ(audio->media.segments.size(), top->media.segments.size());
  // No keyframe but the forced ones (no scene cuts, no GOP limit reached).
  for (auto* x : {top, low}) {
    auto flags = probe({"-select_streams", "v:0", "-show_entries", "packet=flags", "-of", "csv=p=0",
                        (r.out / x->name / "index.m3u8").string()});
    EXPECT_EQ(std::count(flags.begin(), flags.end(), 'K'), 4) << x->name;
  }
  for (size_t i = 0; i < top->media.segments.size(); ++i) {
    auto a = first_packet(r.out / "360p" / top->media.segments[i].file, "v:0");
    auto b = first_packet(r.out / "240p" / low->media.segments[i].file, "v:0");
    EXPECT_EQ(a, b) << "segment " << i;
    EXPECT_NE(a.find(",K"), std::string::npos) << "segment " << i << ": " << a;
    EXPECT_NEAR(top->media.segments[i].duration, low->media.segments[i].duration, 1e-9);
    // The audio rendition's segment starts at the first audio frame at or after the video's.
    double vpts = std::stod(a.substr(0, a.find(',')));
    auto ap = first_packet(r.out / "audio-1" / audio->media.segments[i].file, "a:0");
    double apts = std::stod(ap.substr(0, ap.find(',')));
    if (i > 0) {
      EXPECT_GE(apts, vpts - 1e-6) << "segment " << i;
      EXPECT_LT(apts - vpts, 1024.0 / 48000 + 1e-6) << "segment " << i;
    }
    if (i + 1 < top->media.segments.size()) {
      EXPECT_NEAR(top->media.segments[i].duration, 2.0, frame) << "segment " << i;
    }
  }
}

TEST(Transcode, EachRungHasItsResolutionBitrateAndCodecs) {
  auto& r = h264_ladder();
  struct want {
    std::string name;
    int w, h;
  };
  for (auto& [name, w, h] : {want{"360p", 640, 360}, want{"240p", 426, 240}}) {
    const auto* x = find(r.res, name);
    ASSERT_TRUE(x) << name;
    EXPECT_EQ(x->width, w);
    EXPECT_EQ(x->height, h);
    auto size = probe({"-select_streams", "v:0", "-show_entries", "stream=width,height", "-of",
                       "csv=p=0", (r.out / name / x->media.segments[1].file).string()});
    EXPECT_EQ(size, fmt::format("{},{}", w, h)) << name;
    EXPECT_NEAR(x->frame_rate, 25.0, 1e-9);
    EXPECT_EQ(x->codecs.substr(0, 5), "avc1.") << x->codecs;
    EXPECT_EQ(x->codecs.size(), std::string("avc1.64001e,mp4a.40.2").size()) << x->codecs;
    EXPECT_NE(x->codecs.find(",mp4a.40.2"), std::string::npos) << x->codecs;
    // Under the rung's cap (video) plus the audio and the transport stream's overhead.
    uint64_t cap = rung_for_height(h).max_bitrate + 128'000;
    EXPECT_GT(x->average_bandwidth, 100'000u) << name;
    EXPECT_LE(x->average_bandwidth, cap * 11 / 10) << name;
    EXPECT_GE(x->bandwidth, x->average_bandwidth) << name;
    EXPECT_LE(x->bandwidth, cap * 3 / 2) << name;
    EXPECT_EQ(x->media.video_frames, 200);
  }
  EXPECT_GT(find(r.res, "360p")->average_bandwidth, find(r.res, "240p")->average_bandwidth);
}

TEST(Transcode, ReportsProgressPerSegment) {
  auto& r = h264_ladder();
  ASSERT_EQ(r.progress.size(), 3u);  // after each cut of the top rung
  for (size_t i = 0; i < r.progress.size(); ++i) {
    EXPECT_NEAR(r.progress[i].first, 2.0 * static_cast<double>(i + 1), frame);
    EXPECT_NEAR(r.progress[i].second, 8.0, 0.1);
  }
}

// ---------------------------------------------------------------------------------------------
// Tracks.

bool have_encoder(const std::string& name) {
  auto r = run({ffmpeg, "-hide_banner", "-encoders"});
  return r.out.find(" " + name + " ") != std::string::npos;
}

// The case: an H.265 MKV whose second audio track is marked French.
// "eng" and the bibliographic "fre" become RFC 5646's "en" and "fr" (names and LANGUAGE).
TEST(Transcode, EveryAudioTrackIsARenditionWithItsLanguage) {
  temp_dir dir;
  std::string video = have_encoder("libx265") ? "libx265" : "libx264";
  auto src = make(dir.path(), "two.mkv",
                  {"-f",
                   "lavfi",
                   "-i",
                   "testsrc2=size=320x180:rate=25",
                   "-f",
                   "lavfi",
                   "-i",
                   "sine=frequency=440:sample_rate=48000",
                   "-f",
                   "lavfi",
                   "-i",
                   "sine=frequency=660:sample_rate=48000:duration=4",
                   "-t",
                   "4",
                   "-map",
                   "0:v",
                   "-map",
                   "1:a",
                   "-map",
                   "2:a",
                   "-c:v",
                   video,
                   "-preset",
                   "ultrafast",
                   "-x265-params",
                   "log-level=error",
                   "-pix_fmt",
                   "yuv420p",
                   "-c:a",
                   "aac",
                   "-ac",
                   "1",
                   "-metadata:s:a:0",
                   "language=eng",
                   "-metadata:s:a:1",
                   "language=fre",
                   "-disposition:a:0",
                   "default",
                   "-disposition:a:1",
                   "0"});
  package_options o;
  o.input = src.string();
  o.out_dir = dir.path() / "out";
  auto got = package_ladder(o, {});
  ASSERT_TRUE(got) << got.err().detail;
  ASSERT_EQ(got->renditions.size(), 3u);  // 180p, then the two audio tracks
  EXPECT_EQ(got->renditions[0].name, "180p");
  const auto& eng = got->renditions[1];
  const auto& fra = got->renditions[2];
  EXPECT_EQ(eng.name, "audio-en");
  EXPECT_EQ(eng.language, "en");
  EXPECT_EQ(eng.title, "English");
  EXPECT_TRUE(eng.is_default);
  EXPECT_EQ(fra.name, "audio-fr");
  EXPECT_EQ(fra.language, "fr");
  EXPECT_EQ(fra.title, "Français");
  EXPECT_FALSE(fra.is_default);
  // The default track is muxed into the video rendition, in stereo.
  auto seg = o.out_dir / "180p" / got->renditions[0].media.segments[0].file;
  EXPECT_EQ(probe({"-select_streams", "a:0", "-show_entries", "stream=codec_name,channels", "-of",
                   "csv=p=0", seg.string()}),
            "aac,2");
  auto fseg = o.out_dir / "audio-fr" / fra.media.segments[0].file;
  EXPECT_EQ(probe({"-show_entries", "stream=codec_type", "-of", "csv=p=0", fseg.string()}),
            "audio");
}

TEST(Transcode, TheTrackMarkedDefaultComesFirstAndIsMuxedIntoTheVideo) {
  temp_dir dir;
  auto src = make(dir.path(), "second.mkv",
                  {"-f",
                   "lavfi",
                   "-i",
                   "testsrc2=size=320x180:rate=25",
                   "-f",
                   "lavfi",
                   "-i",
                   "sine=frequency=440:sample_rate=48000",
                   "-f",
                   "lavfi",
                   "-i",
                   "sine=frequency=660:sample_rate=32000",
                   "-t",
                   "2",
                   "-map",
                   "0:v",
                   "-map",
                   "1:a",
                   "-map",
                   "2:a",
                   "-c:v",
                   "libx264",
                   "-preset",
                   "ultrafast",
                   "-pix_fmt",
                   "yuv420p",
                   "-c:a",
                   "aac",
                   "-metadata:s:a:1",
                   "language=fra",
                   "-metadata:s:a:1",
                   "title=VF",
                   "-disposition:a:0",
                   "0",
                   "-disposition:a:1",
                   "default"});
  package_options o;
  o.input = src.string();
  o.out_dir = dir.path() / "out";
  auto got = package_ladder(o, {});
  ASSERT_TRUE(got) << got.err().detail;
  ASSERT_EQ(got->renditions.size(), 3u);
  EXPECT_EQ(got->renditions[1].name, "audio-fr");
  EXPECT_EQ(got->renditions[1].title, "VF");
  EXPECT_TRUE(got->renditions[1].is_default);
  EXPECT_EQ(got->renditions[2].name, "audio-2");
  EXPECT_EQ(got->renditions[2].title, "Audio 2");
  EXPECT_FALSE(got->renditions[2].is_default);
  // The muxed track is the French one: the same AAC packets as its audio-only rendition's.
  auto sizes = [&](const fs::path& seg) {
    return probe(
        {"-select_streams", "a", "-show_entries", "packet=size", "-of", "csv=p=0", seg.string()});
  };
  auto muxed = sizes(o.out_dir / "180p" / got->renditions[0].media.segments[0].file);
  EXPECT_FALSE(muxed.empty());
  EXPECT_EQ(muxed, sizes(o.out_dir / "audio-fr" / got->renditions[1].media.segments[0].file));
  EXPECT_NE(muxed, sizes(o.out_dir / "audio-2" / got->renditions[2].media.segments[0].file));
}

// A file of `text` in `dir`.
fs::path write_file(const fs::path& dir, const std::string& name, const std::string& text) {
  std::ofstream f(dir / name, std::ios::binary);
  f << text;
  return dir / name;
}

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// A PGS subtitle stream of `n` empty display sets, one a second (a .sup file: "PG", PTS and DTS
// at 90 kHz, the segment's type and size): enough for FFmpeg to mux and probe it.
std::string pgs_sup(int n) {
  std::string out;
  auto u16 = [&](unsigned v) {
    out += static_cast<char>(v >> 8);
    out += static_cast<char>(v & 0xff);
  };
  auto u32 = [&](uint32_t v) {
    u16(v >> 16);
    u16(v & 0xffff);
  };
  for (int i = 0; i < n; ++i) {
    // A presentation composition segment (640x360, composition i, epoch start, no object)...
    out += "PG";
    u32(static_cast<uint32_t>(i) * 90'000);
    u32(0);
    out += '\x16';
    u16(11);
    u16(640);
    u16(360);
    out += '\x10';
    u16(static_cast<unsigned>(i));
    out += '\x80';
    out += std::string(3, '\0');
    // ...and the end of the display set.
    out += "PG";
    u32(static_cast<uint32_t>(i) * 90'000);
    u32(0);
    out += '\x80';
    u16(0);
  }
  return out;
}

// A text subtitle track becomes a WebVTT rendition; a bitmap one (PGS) is named in `dropped`.
TEST(Transcode, NamesTheTracksItDrops) {
  temp_dir dir;
  auto srt = write_file(dir.path(), "subs.srt", "1\n00:00:00,500 --> 00:00:01,500\nHello\n");
  auto sup = write_file(dir.path(), "subs.sup", pgs_sup(2));
  auto src = make(dir.path(), "subs.mkv",
                  {"-f",
                   "lavfi",
                   "-i",
                   "testsrc2=size=320x180:rate=25",
                   "-i",
                   srt.string(),
                   "-i",
                   sup.string(),
                   "-t",
                   "2",
                   "-map",
                   "0:v",
                   "-map",
                   "1:s",
                   "-map",
                   "2:s",
                   "-c:v",
                   "libx264",
                   "-preset",
                   "ultrafast",
                   "-pix_fmt",
                   "yuv420p",
                   "-c:s:0",
                   "srt",
                   "-c:s:1",
                   "copy",
                   "-metadata:s:s:0",
                   "language=eng",
                   "-metadata:s:s:1",
                   "language=deu"});
  package_options o;
  o.input = src.string();
  o.out_dir = dir.path() / "out";
  auto got = package_ladder(o, {});
  ASSERT_TRUE(got) << got.err().detail;
  ASSERT_EQ(got->renditions.size(), 2u);  // no audio: the video and the subrip track
  EXPECT_EQ(got->renditions[0].codecs.find(','), std::string::npos);
  EXPECT_EQ(got->renditions[1].name, "subs-en");
  EXPECT_EQ(got->renditions[1].kind, rendition_kind::subtitles);
  ASSERT_EQ(got->dropped.size(), 1u);
  EXPECT_NE(got->dropped[0].find("stream 2 (subtitle hdmv_pgs_subtitle, de)"), std::string::npos)
      << got->dropped[0];
  EXPECT_NE(got->dropped[0].find("bitmap subtitles"), std::string::npos) << got->dropped[0];
  EXPECT_FALSE(fs::exists(o.out_dir / "subs-deu"));
  auto vtt = read_all(o.out_dir / "subs-en" / got->renditions[1].media.segments[0].file);
  EXPECT_NE(vtt.find("00:00:00.500 --> 00:00:01.500\nHello\n"), std::string::npos) << vtt;
}

// The case: two audio tracks and a mov_text subtitle track in MP4. The subtitles become a
// WebVTT rendition cut as the video is, each segment tied to the video's MPEG-TS timestamps.
TEST(Transcode, TextSubtitlesBecomeWebVttSegmentsAlignedWithTheVideo) {
  temp_dir dir;
  auto srt = write_file(dir.path(), "fr.srt",
                        "1\n00:00:00,500 --> 00:00:01,500\nBonjour\n\n"
                        "2\n00:00:01,800 --> 00:00:02,400\n<i>À cheval</i> sur la coupe\n\n"
                        "3\n00:00:04,500 --> 00:00:05,500\nAu revoir\n");
  auto src = make(dir.path(), "tracks.mp4",
                  {"-f",
                   "lavfi",
                   "-i",
                   "testsrc2=size=320x180:rate=25",
                   "-f",
                   "lavfi",
                   "-i",
                   "sine=frequency=440:sample_rate=48000",
                   "-f",
                   "lavfi",
                   "-i",
                   "sine=frequency=660:sample_rate=48000",
                   "-i",
                   srt.string(),
                   "-t",
                   "6",
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
                   "-pix_fmt",
                   "yuv420p",
                   "-c:a",
                   "aac",
                   "-c:s",
                   "mov_text",
                   "-metadata:s:a:0",
                   "language=eng",
                   "-metadata:s:a:1",
                   "language=fra",
                   "-metadata:s:s:0",
                   "language=fra"});
  package_options o;
  o.input = src.string();
  o.out_dir = dir.path() / "out";
  o.target_seconds = 2;
  auto got = package_ladder(o, {});
  ASSERT_TRUE(got) << got.err().detail;
  EXPECT_TRUE(got->dropped.empty()) << got->dropped.front();
  const auto* video = find(*got, "180p");
  const auto* subs = find(*got, "subs-fr");
  ASSERT_TRUE(video && subs && find(*got, "audio-en") && find(*got, "audio-fr"));
  EXPECT_EQ(&got->renditions.back(), subs);
  EXPECT_EQ(subs->kind, rendition_kind::subtitles);
  EXPECT_EQ(subs->language, "fr");
  EXPECT_EQ(subs->title, "Français");
  EXPECT_GT(subs->bandwidth, 0u);
  ASSERT_EQ(video->media.segments.size(), 3u);
  ASSERT_EQ(subs->media.segments.size(), video->media.segments.size());
  EXPECT_NEAR(subs->media.duration, video->media.duration, 1e-9);
  // X-TIMESTAMP-MAP names the MPEG-TS timestamp of the video's first frame, at 90 kHz.
  auto first_pts =
      probe({"-select_streams", "v:0", "-show_entries", "packet=pts", "-read_intervals", "%+#1",
             "-of", "csv=p=0", (o.out_dir / "180p" / video->media.segments[0].file).string()});
  first_pts = first_pts.substr(0, first_pts.find_first_of(",\n"));
  std::vector<std::string> text;
  for (size_t i = 0; i < subs->media.segments.size(); ++i) {
    auto& s = subs->media.segments[i];
    EXPECT_EQ(s.file, fmt::format("seg{:05d}.vtt", i));
    EXPECT_NEAR(s.duration, video->media.segments[i].duration, 1e-9) << i;
    text.push_back(read_all(o.out_dir / "subs-fr" / s.file));
    EXPECT_EQ(text.back().rfind(
                  "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:" + first_pts + ",LOCAL:00:00:00.000\n", 0),
              0u)
        << text.back();
  }
  // Each cue in the segments it overlaps, at its time in the program; the markup kept.
  EXPECT_NE(text[0].find("00:00:00.500 --> 00:00:01.500\nBonjour\n"), std::string::npos) << text[0];
  EXPECT_EQ(text[1].find("Bonjour"), std::string::npos) << text[1];
  for (int i : {0, 1}) {
    EXPECT_NE(text[i].find("00:00:01.800 --> 00:00:02.400\n<i>À cheval</i> sur la coupe"),
              std::string::npos)
        << text[i];
  }
  EXPECT_EQ(text[2].find("cheval"), std::string::npos) << text[2];
  EXPECT_NE(text[2].find("00:00:04.500 --> 00:00:05.500\nAu revoir\n"), std::string::npos)
      << text[2];
  auto playlist = read_all(subs->media.playlist);
  EXPECT_NE(playlist.find("seg00002.vtt"), std::string::npos) << playlist;
  EXPECT_NE(playlist.find("#EXT-X-ENDLIST"), std::string::npos) << playlist;
}

TEST(Transcode, AnInterlacedMpeg2Ac3TransportStreamBecomesALadder) {
  temp_dir dir;
  auto src = make(dir.path(), "cable.ts",
                  {"-f",
                   "lavfi",
                   "-i",
                   "testsrc2=size=480x270:rate=25",
                   "-f",
                   "lavfi",
                   "-i",
                   "sine=frequency=440:sample_rate=48000",
                   "-f",
                   "lavfi",
                   "-i",
                   "sine=frequency=660:sample_rate=48000",
                   "-t",
                   "4",
                   "-map",
                   "0:v",
                   "-map",
                   "1:a",
                   "-map",
                   "2:a",
                   "-c:v",
                   "mpeg2video",
                   "-flags",
                   "+ildct+ilme",
                   "-top",
                   "1",
                   "-b:v",
                   "2M",
                   "-c:a:0",
                   "ac3",
                   "-c:a:1",
                   "eac3",
                   "-b:a",
                   "192k",
                   "-metadata:s:a:1",
                   "language=fra",
                   "-f",
                   "mpegts"});
  package_options o;
  o.input = src.string();
  o.out_dir = dir.path() / "out";
  o.target_seconds = 2;
  ladder_options l;
  l.rungs = *parse_renditions("240p");
  auto got = package_ladder(o, l);
  ASSERT_TRUE(got) << got.err().detail;
  ASSERT_EQ(got->renditions.size(), 3u);  // 240p, the AC-3 track, the E-AC-3 one
  const auto& v = got->renditions[0];
  EXPECT_EQ(v.name, "240p");
  EXPECT_EQ(v.width, 426);
  EXPECT_EQ(v.media.segments.size(), 2u);
  auto seg = o.out_dir / "240p" / v.media.segments[1].file;
  EXPECT_EQ(probe({"-show_entries", "stream=codec_name", "-of", "csv=p=0", seg.string()}),
            "h264\naac");
  EXPECT_NEAR(duration_of(o.out_dir / "240p" / "index.m3u8"), 4.0, 2 * frame);
  EXPECT_EQ(got->renditions[1].name, "audio-1");
  EXPECT_EQ(got->renditions[2].name, "audio-fr");
  auto fseg = o.out_dir / "audio-fr" / got->renditions[2].media.segments[0].file;
  EXPECT_EQ(probe({"-show_entries", "stream=codec_name,channels", "-of", "csv=p=0", fseg.string()}),
            "aac,2");
  EXPECT_TRUE(got->dropped.empty());
}

TEST(Transcode, RemuxKeepsTheSourceAsOneRendition) {
  temp_dir dir;
  package_options o;
  o.input = h264_source().string();
  o.out_dir = dir.path() / "out";
  ladder_options l;
  l.remux = true;
  auto got = package_ladder(o, l);
  ASSERT_TRUE(got) << got.err().detail;
  ASSERT_EQ(got->renditions.size(), 1u);
  const auto& r = got->renditions[0];
  EXPECT_EQ(r.name, "source");
  EXPECT_EQ(r.width, 640);
  EXPECT_EQ(r.media.video_codec, "h264");
  EXPECT_TRUE(fs::exists(o.out_dir / "source" / "index.m3u8"));
  EXPECT_EQ(r.codecs.substr(0, 5), "avc1.") << r.codecs;
  EXPECT_NE(r.codecs.find(",mp4a.40.2"), std::string::npos) << r.codecs;
  EXPECT_NEAR(r.frame_rate, 25.0, 1e-9);
  EXPECT_GE(r.bandwidth, r.average_bandwidth);
}

// ---------------------------------------------------------------------------------------------
// Bad input: a clear error, nothing left behind.

class TranscodeRefuses : public ::testing::Test {
 protected:
  error refused(const fs::path& src, const ladder_options& l = {}) {
    package_options o;
    o.input = src.string();
    o.out_dir = dir_.path() / "out";
    auto got = package_ladder(o, l);
    EXPECT_FALSE(got);
    EXPECT_TRUE(left_nothing(o.out_dir));
    return got ? error{} : got.err();
  }
  temp_dir dir_;
};

TEST_F(TranscodeRefuses, ARungAboveTheSource) {
  ladder_options l;
  l.rungs = *parse_renditions("480p,360p");
  auto e = refused(h264_source(), l);
  EXPECT_EQ(e.code, errc::invalid_argument);
  EXPECT_NE(e.detail.find("the rendition 480p is above the source's 360 lines"), std::string::npos)
      << e.detail;
}

TEST_F(TranscodeRefuses, ASourceWithoutVideo) {
  auto src =
      make(dir_.path(), "audio.m4a",
           {"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "2", "-c:a", "aac"});
  auto e = refused(src);
  EXPECT_EQ(e.code, errc::invalid_argument);
  EXPECT_NE(e.detail.find("no video stream"), std::string::npos) << e.detail;
}

TEST_F(TranscodeRefuses, AnUnsupportedVideoCodec) {
  auto src =
      make(dir_.path(), "mpeg4.mkv",
           {"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-t", "2", "-c:v", "mpeg4"});
  auto e = refused(src);
  EXPECT_EQ(e.code, errc::invalid_argument);
  EXPECT_NE(e.detail.find("video codec mpeg4 is not supported: H.264, H.265 or MPEG-2 only"),
            std::string::npos)
      << e.detail;
}

TEST_F(TranscodeRefuses, ATruncatedSourceRemovesEveryRendition) {
  // Cut after the header and a few frames: transcoding starts, then fails with folders written.
  auto whole = make(dir_.path(), "whole.mkv",
                    {"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-t", "6", "-c:v",
                     "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"});
  auto cut = dir_.path() / "cut.mkv";
  fs::copy_file(whole, cut);
  fs::resize_file(cut, fs::file_size(whole) / 2);
  auto e = refused(cut);
  EXPECT_NE(e.detail.find("truncated"), std::string::npos) << e.detail;
}

TEST_F(TranscodeRefuses, CancellationGivesUpAndRemovesEverything) {
  int calls = 0;
  ladder_options l;
  l.cancelled = [&] { return ++calls > 60; };
  auto e = refused(h264_source(), l);
  EXPECT_EQ(e.code, errc::conflict);
  EXPECT_NE(e.detail.find("cancelled"), std::string::npos) << e.detail;
}

TEST_F(TranscodeRefuses, ANonEmptyOutputFolderIsLeftAlone) {
  auto out = dir_.path() / "out";
  fs::create_directories(out);
  std::ofstream(out / "keep").put('x');
  package_options o;
  o.input = h264_source().string();
  o.out_dir = out;
  auto got = package_ladder(o, {});
  ASSERT_FALSE(got);
  EXPECT_EQ(got.err().code, errc::conflict);
  EXPECT_TRUE(fs::exists(out / "keep"));
  EXPECT_EQ(std::distance(fs::directory_iterator(out), fs::directory_iterator{}), 1);
}

// ---------------------------------------------------------------------------------------------
// The ladder's plan.

TEST(Ladder, ParsesRenditionNamesHighestFirst) {
  auto r = parse_renditions("360p, 720,1080P");
  ASSERT_TRUE(r) << r.err().detail;
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].name, "1080p");
  EXPECT_EQ((*r)[1].name, "720p");
  EXPECT_EQ((*r)[2].name, "360p");
  EXPECT_EQ((*r)[1].max_bitrate, 2'800'000u);
}

TEST(Ladder, RefusesUnknownRepeatedOrNoNames) {
  for (std::string_view bad : {"hd", "720p,720", "", "720p,,360p", "576p", "-1p", "99999p"}) {
    auto r = parse_renditions(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.err().code, errc::invalid_argument);
  }
  EXPECT_NE(parse_renditions("hd").err().detail.find(
                "the rendition 'hd' is not one of 1080p, 720p, 480p, 360p, 240p"),
            std::string::npos);
}

TEST(Ladder, DefaultsFromTheSourceHeightNeverAbove) {
  auto names = [](int h) {
    std::string s;
    for (auto& r : default_ladder(h)) {
      s += r.name + " ";
    }
    return s;
  };
  EXPECT_EQ(names(1080), "1080p 720p 480p 360p ");
  EXPECT_EQ(names(2160), "1080p 720p 480p 360p ");
  EXPECT_EQ(names(720), "720p 480p 360p ");
  EXPECT_EQ(names(576), "576p 480p 360p ");
  EXPECT_EQ(names(181), "180p ");
  EXPECT_GT(rung_for_height(576).max_bitrate, rung_for_height(480).max_bitrate);
  EXPECT_LT(rung_for_height(576).max_bitrate, rung_for_height(720).max_bitrate);
}

}  // namespace transcode_test
}  // namespace
}  // namespace vodgrid::content
