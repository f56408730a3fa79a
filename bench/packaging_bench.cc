// Packaging speed: vodgrid's packager (content::package, src/content/packager.h) against
// `ffmpeg -c copy -f hls` on the same file in the same run, rounds alternating. Both remux without
// transcoding into MPEG-TS segments cut at keyframes near the same target; vodgrid also hashes each
// segment (SHA-256) for the catalog. As the content manager runs it, it does not fsync (its output
// is a scratch folder); --durable measures the fsync of every segment as well. Prints seconds of
// media packaged per second of wall time, the CPU seconds each used, and the ratio vodgrid/ffmpeg
// (above 1: vodgrid is faster). Run it pinned to one core (bench script).
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <vector>

#include "base/process.h"
#include "content/packager.h"

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

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

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vodgrid packager against ffmpeg -c copy -f hls"};
  std::string input;
  std::string ffmpeg = "/usr/bin/ffmpeg";
  int rounds = 5;
  double target = 4;
  fs::path tmp = fs::temp_directory_path();
  app.add_option("INPUT", input, "A media file (MP4, MKV or MPEG-TS; H.264/H.265 + AAC)")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--rounds", rounds, "Rounds, each one run of both")->capture_default_str();
  app.add_option("--target", target, "Target segment seconds")->capture_default_str();
  app.add_option("--tmp", tmp, "Where the outputs go (removed after each run)");
  app.add_option("--ffmpeg", ffmpeg, "The ffmpeg binary")->capture_default_str();
  bool durable = false;
  app.add_flag("--durable", durable,
               "fsync each segment as a standalone packager would (the content manager does not: "
               "its output is a scratch folder)");
  CLI11_PARSE(app, argc, argv);

  std::vector<sample> ours, theirs;
  double media_seconds = 0;
  size_t our_segments = 0, their_segments = 0;
  for (int r = 0; r < rounds; ++r) {
    // vodgrid, in this process.
    auto out = tmp / fmt::format("vodgrid-pkg-bench-{}-ours", ::getpid());
    fs::remove_all(out);
    vodgrid::content::package_options o;
    o.input = input;
    o.out_dir = out;
    o.target_seconds = target;
    o.durable = durable;
    double cpu0 = cpu_seconds(RUSAGE_SELF);
    auto t0 = clock_type::now();
    auto res = vodgrid::content::package(o);
    auto t1 = clock_type::now();
    if (!res) {
      std::cerr << "packaging_bench: " << res.err().detail << "\n";
      return 1;
    }
    ours.push_back(
        {std::chrono::duration<double>(t1 - t0).count(), cpu_seconds(RUSAGE_SELF) - cpu0});
    media_seconds = res->duration;
    our_segments = res->segments.size();
    fs::remove_all(out);

    // ffmpeg, the same cut: a new segment at the first keyframe after `target` seconds.
    auto fo = tmp / fmt::format("vodgrid-pkg-bench-{}-ffmpeg", ::getpid());
    fs::remove_all(fo);
    fs::create_directories(fo);
    double ccpu0 = cpu_seconds(RUSAGE_CHILDREN);
    auto t2 = clock_type::now();
    auto p = vodgrid::child_process::spawn({ffmpeg,
                                            "-nostdin",
                                            "-loglevel",
                                            "error",
                                            "-i",
                                            input,
                                            "-map",
                                            "0:v:0",
                                            "-map",
                                            "0:a:0?",
                                            "-c",
                                            "copy",
                                            "-f",
                                            "hls",
                                            "-hls_time",
                                            fmt::format("{}", target),
                                            "-hls_playlist_type",
                                            "vod",
                                            "-hls_segment_filename",
                                            (fo / "seg%05d.ts").string(),
                                            (fo / "index.m3u8").string()},
                                           fo / "ffmpeg.log");
    if (!p) {
      std::cerr << "packaging_bench: " << p.err().detail << "\n";
      return 1;
    }
    auto st = p->wait(std::chrono::minutes(10));
    auto t3 = clock_type::now();
    if (!st || *st != 0) {
      std::cerr << "packaging_bench: ffmpeg failed (see " << (fo / "ffmpeg.log").string() << ")\n";
      return 1;
    }
    theirs.push_back(
        {std::chrono::duration<double>(t3 - t2).count(), cpu_seconds(RUSAGE_CHILDREN) - ccpu0});
    their_segments = 0;
    for (auto& e : fs::directory_iterator(fo)) {
      their_segments += e.path().extension() == ".ts" ? 1 : 0;
    }
    fs::remove_all(fo);
    std::cout << fmt::format(
                     "round {}: vodgrid {:.3f} s wall {:.3f} s cpu, ffmpeg {:.3f} s wall "
                     "{:.3f} s cpu\n",
                     r + 1, ours.back().wall, ours.back().cpu, theirs.back().wall,
                     theirs.back().cpu)
              << std::flush;
  }
  auto walls = [](const std::vector<sample>& v) {
    std::vector<double> w;
    for (auto& s : v) {
      w.push_back(s.wall);
    }
    return w;
  };
  auto cpus = [](const std::vector<sample>& v) {
    std::vector<double> w;
    for (auto& s : v) {
      w.push_back(s.cpu);
    }
    return w;
  };
  double ow = median(walls(ours)), fw = median(walls(theirs));
  double oc = median(cpus(ours)), fc = median(cpus(theirs));
  std::cout << fmt::format("input: {} ({:.1f} s of media, {:.1f} MB)\n", input, media_seconds,
                           static_cast<double>(fs::file_size(input)) / 1e6);
  std::cout << fmt::format(
      "vodgrid packager: {:.1f} s of media per second (median wall {:.3f} s, cpu {:.3f} s, {} "
      "segments)\n",
      media_seconds / ow, ow, oc, our_segments);
  std::cout << fmt::format(
      "ffmpeg -c copy -f hls: {:.1f} s of media per second (median wall {:.3f} s, cpu {:.3f} s, {} "
      "segments)\n",
      media_seconds / fw, fw, fc, their_segments);
  std::cout << fmt::format("ratio vodgrid/ffmpeg (media seconds per second): {:.2f}\n", fw / ow);
  std::cout << fmt::format(
      "ratio vodgrid/ffmpeg (cpu seconds per media second, below 1 is "
      "better): {:.2f}\n",
      oc / fc);
  return 0;
}
