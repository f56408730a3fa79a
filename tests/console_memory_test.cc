// Issue 15's memory acceptance: `vodgrid play --viewers 1000 --realtime` of a ~4 Mb/s program of
// 4 s segments at a real station keeps the console's peak RSS under 300 MB (it read each segment
// whole before: 2.2 GB). The peak is the child's own, from wait4's rusage.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <boost/json/parse.hpp>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "base/fs.h"
#include "support/support.h"

extern char** environ;

namespace vodgrid::test {
namespace {

using namespace std::chrono_literals;

// `seconds` of 640x360 video at a constant ~3.9 Mb/s plus 128 kb/s of audio, as an HLS VOD of
// `segment_seconds` segments in `dir`.
bool make_4mbps_sample(const std::filesystem::path& dir, int seconds, int segment_seconds) {
  auto gop = std::to_string(25 * segment_seconds);
  auto r = run({"/usr/bin/ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=640x360:rate=25",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                std::to_string(seconds),
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-b:v",
                "3900k",
                "-minrate",
                "3900k",
                "-maxrate",
                "3900k",
                "-bufsize",
                "2000k",
                "-x264-params",
                "nal-hrd=cbr",
                "-g",
                gop,
                "-keyint_min",
                gop,
                "-sc_threshold",
                "0",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-b:a",
                "128k",
                "-f",
                "hls",
                "-hls_time",
                std::to_string(segment_seconds),
                "-hls_playlist_type",
                "vod",
                "-hls_segment_filename",
                (dir / "seg%d.ts").string(),
                (dir / "index.m3u8").string()});
  EXPECT_EQ(r.status, 0) << r.err;
  return r.status == 0;
}

struct measured_run {
  int status = -1;       // exit code, or 128 + signal
  long max_rss_kb = -1;  // the child's peak resident set (ru_maxrss)
};

// Runs argv with stdout into `out`, waiting up to `timeout` (then SIGKILL), and returns its exit
// status and its own peak RSS: wait4 reports the child's rusage alone, not this process's other
// children (the station's daemons, ffmpeg).
measured_run run_measured(const std::vector<std::string>& argv, const std::filesystem::path& out,
                          std::chrono::seconds timeout) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  std::vector<char*> args;
  for (auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  measured_run m;
  if (rc != 0) {
    ADD_FAILURE() << "cannot start " << argv[0];
    return m;
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  rusage ru{};
  for (;;) {
    pid_t got = wait4(pid, &status, WNOHANG, &ru);
    if (got == pid) {
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "the console ran past " << timeout.count() << " s";
      kill(pid, SIGKILL);
      wait4(pid, &status, 0, &ru);
      break;
    }
    std::this_thread::sleep_for(50ms);
  }
  m.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  m.max_rss_kb = ru.ru_maxrss;
  return m;
}

TEST(ConsoleMemory, AThousandRealTimeViewersStayUnder300MB) {
  station_fixture::options so;
  so.copies = 3;  // every engine holds every segment: the load spreads over all three
  station_fixture st(so);
  temp_dir src;
  ASSERT_TRUE(make_4mbps_sample(src.path(), 12, 4));
  ASSERT_EQ(st.ingest(src.path().string(), "film").status, 0);
  uint64_t program_bytes = 0;
  for (auto& e : std::filesystem::directory_iterator(src.path())) {
    if (e.path().extension() == ".ts") {
      program_bytes += std::filesystem::file_size(e.path());
    }
  }
  ASSERT_GT(program_bytes, 5'000'000u) << "the program should be about 4 Mb/s";

  constexpr int viewers = 1000;
  auto out = st.data() / "play.json";
  auto m =
      run_measured({vodgrid_binary(), "play", st.director_url() + "/v1/programs/film/index.m3u8",
                    "--viewers", std::to_string(viewers), "--realtime", "--json"},
                   out, 180s);
  auto text = read_file(out);
  ASSERT_TRUE(text);
  EXPECT_EQ(m.status, 0) << *text;
  auto report = boost::json::parse(*text).as_object();
  EXPECT_EQ(report.at("segments").to_number<uint64_t>(), viewers * 3u) << *text;
  EXPECT_EQ(report.at("digest_mismatches").to_number<uint64_t>(), 0u) << *text;
  // The station repackages the program: its segments' sizes are near, not equal, the source's.
  EXPECT_GT(report.at("bytes").to_number<uint64_t>(), viewers * program_bytes * 9 / 10) << *text;
  std::cout << fmt::format("console peak RSS {} MB for {} viewers; {}", m.max_rss_kb / 1024,
                           viewers, *text)
            << std::endl;
  EXPECT_GT(m.max_rss_kb, 0);
  EXPECT_LT(m.max_rss_kb, 300 * 1024) << "peak RSS " << m.max_rss_kb << " KB";
}

}  // namespace
}  // namespace vodgrid::test
