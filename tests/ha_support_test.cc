// The HA tests' own support (issue 18): a Patroni cluster whose start fails leaves no process
// behind, and the report load counts a write outage still going on when it stops.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <stdexcept>

#include "support/patroni.h"
#include "support/report_load.h"
#include "support/support.h"

namespace vodgrid {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// The processes whose command line names `path`.
std::vector<std::string> processes_naming(const std::string& path) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto& e : fs::directory_iterator("/proc", ec)) {
    auto name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    std::ifstream in(e.path() / "cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(path) != std::string::npos) {
      out.push_back(name + ": " + cmdline);
    }
  }
  return out;
}

// Started up to a running primary and standbys, then failing (a database it cannot create): the
// constructor throws, and no etcd, Patroni or PostgreSQL of it is left running.
TEST(PatroniCluster, AStartThatFailsLeavesNoProcessBehind) {
  test::patroni_cluster::options o;
  o.database = "bad name";  // a syntax error, once every member runs
  std::string error;
  try {
    test::patroni_cluster cluster(o);
  } catch (const std::runtime_error& e) {
    error = e.what();
  }
  std::smatch m;
  ASSERT_TRUE(std::regex_search(error, m, std::regex(R"(\(cluster in (\S+)\))"))) << error;
  std::string dir = m[1];
  EXPECT_TRUE(test::eventually([&] { return processes_naming(dir).empty(); }, 10s))
      << fmt::format("{}", fmt::join(processes_naming(dir), "\n"));
}

// Reports that no registry acknowledges from the start to stop(): the outage is that long.
TEST(ReportLoad, AnOutageStillGoingOnAtStopCounts) {
  test::report_load::options o;
  o.registries = {fmt::format("http://127.0.0.1:{}", test::free_port())};
  o.station = "home";
  o.director_url = "http://127.0.0.1:1";
  o.writers = 2;
  test::report_load load(o);
  std::this_thread::sleep_for(600ms);
  EXPECT_GE(load.longest_gap(), 500ms);  // while it runs
  load.stop();
  EXPECT_GE(load.longest_gap(), 600ms);
  EXPECT_EQ(load.acknowledged(), 0u);
  EXPECT_GT(load.failed(), 0u);
}

}  // namespace
}  // namespace vodgrid
