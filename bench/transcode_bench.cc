// Transcoding speed: the content engine's transcoder (content::package_ladder, src/content/
// transcode.h) against the ffmpeg command line making the same ladder with the same settings, in
// the same run: one decode, split, a scale per rung, libx264 at the same preset, CRF and caps, the
// same forced keyframes (and no scene cuts), the default audio encoded once to AAC and muxed into
// every rung plus an audio-only rendition (ffmpeg's tee muxer), HLS segments of the same target.
// Prints both wall times, the CPU each used and the ratio (ffmpeg's wall over ours: above 1, the
// transcoder is faster). bench/transcode_vs_ffmpeg makes the input and runs it.
#include <sys/resource.h>
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "base/process.h"
#include "content/transcode.h"

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;
namespace content = vodgrid::content;

namespace {

double cpu_seconds(int who) {
  rusage u{};
  ::getrusage(who, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

struct sample {
  double wall = 0, cpu = 0;
};

// The ffmpeg command line of the same ladder as `ours` made (its rungs' sizes and caps).
std::vector<std::string> ffmpeg_ladder(const std::string& ffmpeg, const std::string& input,
                                       const content::ladder_result& ours,
                                       const content::ladder_options& l, double target,
                                       const fs::path& out) {
  std::vector<std::string> argv = {ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", input};
  std::vector<const content::rendition_info*> videos;
  bool audio = false;
  for (auto& r : ours.renditions) {
    if (r.kind == content::rendition_kind::video) {
      videos.push_back(&r);
    }
    audio = audio || r.kind == content::rendition_kind::audio;
  }
  std::string graph = fmt::format("[0:v:0]split={}", videos.size());
  for (size_t i = 0; i < videos.size(); ++i) {
    graph += fmt::format("[s{}]", i);
  }
  for (size_t i = 0; i < videos.size(); ++i) {
    graph += fmt::format(";[s{0}]scale={1}:{2},format=yuv420p,setsar=1[o{0}]", i, videos[i]->width,
                         videos[i]->height);
  }
  argv.insert(argv.end(), {"-filter_complex", graph});
  int keyint = static_cast<int>(std::ceil(target * videos.front()->frame_rate)) * 2;
  for (size_t i = 0; i < videos.size(); ++i) {
    uint64_t cap = content::rung_for_height(videos[i]->height).max_bitrate;
    argv.insert(argv.end(),
                {"-map", fmt::format("[o{}]", i), fmt::format("-maxrate:v:{}", i),
                 std::to_string(cap), fmt::format("-bufsize:v:{}", i), std::to_string(cap * 2)});
  }
  argv.insert(argv.end(),
              {"-c:v", "libx264", "-preset", l.preset, "-crf", std::to_string(l.crf), "-g",
               std::to_string(keyint), "-forced-idr", "1", "-x264-params", "scenecut=0",
               "-force_key_frames:v", fmt::format("expr:gte(t,n_forced*{})", target)});
  if (audio) {
    argv.insert(argv.end(), {"-map", "0:a:0", "-c:a", "aac", "-b:a",
                             std::to_string(l.audio_bitrate), "-ac", "2", "-ar", "48000"});
  }
  std::string tee;
  auto slave = [&](const std::string& select, const std::string& name) {
    fs::create_directories(out / name);
    return fmt::format(
        "[select=\\'{}\\':f=hls:hls_time={}:hls_playlist_type=vod:hls_segment_filename={}]{}",
        select, target, (out / name / "seg%05d.ts").string(), (out / name / "index.m3u8").string());
  };
  for (size_t i = 0; i < videos.size(); ++i) {
    tee += (tee.empty() ? "" : "|") +
           slave(audio ? fmt::format("v:{},a", i) : fmt::format("v:{}", i), videos[i]->name);
  }
  if (audio) {
    tee += "|" + slave("a", "audio");
  }
  argv.insert(argv.end(), {"-f", "tee", tee});
  return argv;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vodgrid's transcoder against the ffmpeg command line making the same ladder"};
  std::string input;
  std::string ffmpeg = "/usr/bin/ffmpeg";
  std::string renditions;
  double target = 4;
  fs::path tmp = fs::temp_directory_path();
  bool only_ours = false;
  bool keep = false;
  content::ladder_options l;
  app.add_option("INPUT", input, "A media file with video and audio")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--renditions", renditions, "Rungs, e.g. 720p,360p (default: from the source)");
  app.add_option("--preset", l.preset, "x264's preset")->capture_default_str();
  app.add_option("--crf", l.crf, "x264's CRF under each rung's cap")->capture_default_str();
  app.add_option("--target", target, "Target segment seconds")->capture_default_str();
  app.add_option("--tmp", tmp, "Where the outputs go (removed at the end)");
  app.add_option("--ffmpeg", ffmpeg, "The ffmpeg binary")->capture_default_str();
  app.add_flag("--only-ours", only_ours, "Run the transcoder alone and print its renditions");
  app.add_flag("--keep", keep, "Keep the outputs");
  CLI11_PARSE(app, argc, argv);
  if (!renditions.empty()) {
    auto r = content::parse_renditions(renditions);
    if (!r) {
      std::cerr << "transcode_bench: " << r.err().detail << "\n";
      return 1;
    }
    l.rungs = *r;
  }

  auto out = tmp / fmt::format("vodgrid-transcode-bench-{}-ours", ::getpid());
  fs::remove_all(out);
  content::package_options o;
  o.input = input;
  o.out_dir = out;
  o.target_seconds = target;
  o.durable = false;  // as the content manager runs it: a scratch folder
  double cpu0 = cpu_seconds(RUSAGE_SELF);
  auto t0 = clock_type::now();
  auto res = content::package_ladder(o, l);
  auto t1 = clock_type::now();
  if (!res) {
    std::cerr << "transcode_bench: " << res.err().detail << "\n";
    return 1;
  }
  sample ours{std::chrono::duration<double>(t1 - t0).count(), cpu_seconds(RUSAGE_SELF) - cpu0};
  double media = res->renditions.front().media.duration;
  for (auto& r : res->renditions) {
    std::cout << fmt::format(
        "{}: {} segments, {:.3f} s, {}x{} at {:.3f} fps, bandwidth {} average {} b/s, {}\n", r.name,
        r.media.segments.size(), r.media.duration, r.width, r.height, r.frame_rate, r.bandwidth,
        r.average_bandwidth, r.codecs);
  }
  for (auto& d : res->dropped) {
    std::cout << "dropped: " << d << "\n";
  }
  std::cout << fmt::format("vodgrid transcoder: {:.3f} s wall, {:.3f} s cpu ({:.2f}x real time)\n",
                           ours.wall, ours.cpu, media / ours.wall)
            << std::flush;
  if (!keep) {
    fs::remove_all(out);
  }
  if (only_ours) {
    return 0;
  }

  auto fo = tmp / fmt::format("vodgrid-transcode-bench-{}-ffmpeg", ::getpid());
  fs::remove_all(fo);
  fs::create_directories(fo);
  auto cmd = ffmpeg_ladder(ffmpeg, input, *res, l, target, fo);
  std::string shown;
  for (auto& a : cmd) {
    shown += (shown.empty() ? "" : " ") +
             (a.find_first_of(" ;[|") == std::string::npos ? a : "'" + a + "'");
  }
  std::cout << "ffmpeg: " << shown << "\n" << std::flush;
  double ccpu0 = cpu_seconds(RUSAGE_CHILDREN);
  auto t2 = clock_type::now();
  auto p = vodgrid::child_process::spawn(cmd, fo / "ffmpeg.log");
  if (!p) {
    std::cerr << "transcode_bench: " << p.err().detail << "\n";
    return 1;
  }
  auto st = p->wait(std::chrono::hours(2));
  auto t3 = clock_type::now();
  if (!st || *st != 0) {
    std::cerr << "transcode_bench: ffmpeg failed (see " << (fo / "ffmpeg.log").string() << ")\n";
    return 1;
  }
  sample theirs{std::chrono::duration<double>(t3 - t2).count(),
                cpu_seconds(RUSAGE_CHILDREN) - ccpu0};
  std::cout << fmt::format("ffmpeg command line: {:.3f} s wall, {:.3f} s cpu ({:.2f}x real time)\n",
                           theirs.wall, theirs.cpu, media / theirs.wall);
  std::cout << fmt::format("ratio vodgrid/ffmpeg (speed, ffmpeg's wall over ours): {:.3f}\n",
                           theirs.wall / ours.wall);
  std::cout << fmt::format("ratio vodgrid/ffmpeg (cpu seconds, below 1 is better): {:.3f}\n",
                           ours.cpu / theirs.cpu);
  if (!keep) {
    fs::remove_all(fo);
  }
  return 0;
}
