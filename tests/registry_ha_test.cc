// The highly available registry (issue 18, item 3, acceptance "HA test"): two registry daemons over
// a three-member Patroni cluster (synchronous replication), directors reporting at full rate and a
// console playing at the edge while the primary's PostgreSQL is SIGKILLed, or its whole member
// (Patroni, PostgreSQL and etcd), or one registry daemon. Every report acknowledged before or after
// must be in the database afterwards; the console must see no failed segment.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <boost/json/parse.hpp>

#include <csignal>
#include <fstream>
#include <sstream>

#include "support/patroni.h"
#include "support/report_load.h"
#include "support/support.h"

namespace vodgrid {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

// A console running, and the file its output goes to.
struct console_run {
  child_process proc;
  std::filesystem::path out;
};

class RegistryHa : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster = std::make_unique<test::patroni_cluster>();
    grid = std::make_unique<test::grid_fixture>(
        std::vector<test::grid_fixture::station_spec>{{"home", 2}, {"edge", 1, 100}},
        cluster->url(), false, false, test::grid_fixture::replicas{.registries = 2});
    sample = test::make_sample(src.path(), 12, 1);
    auto list = grid->registry_url(0) + "," + grid->registry_url(1);
    auto in = test::run({test::vodgrid_binary(), "ingest", sample.string(), "--title", "Film",
                         "--id", "film", "--grid", list});
    ASSERT_EQ(in.status, 0) << in.err;
    // Pre-positioned at the edge: what it serves needs no registry.
    ASSERT_TRUE(
        test::eventually([&] { return held("edge") > 0 && held("edge") == held("home"); }, 60s))
        << held("edge") << " of " << held("home");
  }

  // Segments of the film the registry records at `station`.
  int64_t held(const std::string& station) const {
    auto r = test::http_get(grid->registry_url(0) + "/v1/stations/" + station + "/held");
    if (!r || r->status != 200) {
      return -1;
    }
    auto v = json::parse(r->body);  // kept: if_contains points into it
    auto* n = v.at("programs").as_object().if_contains("film");
    return n ? n->to_number<int64_t>() : 0;
  }

  test::report_load::options load_options() const {
    test::report_load::options o;
    o.registries = {grid->registry_url(0), grid->registry_url(1)};
    o.station = "home";
    o.director_url = grid->director_url("home");
    o.home = true;
    o.writers = 8;
    o.prefix = "ha";
    return o;
  }

  // A console at the edge, in real time, its JSON report written to a file.
  console_run play_at_edge() {
    auto out = src.path() / "play.out";
    auto p = child_process::spawn({test::vodgrid_binary(), "play",
                                   grid->director_url("edge") + "/v1/programs/film/index.m3u8",
                                   "--viewers", "2", "--realtime", "--json"},
                                  out);
    if (!p) {
      throw std::runtime_error(p.err().detail);
    }
    return {std::move(*p), out};
  }

  void expect_no_failed_segment(console_run& play) {
    auto st = play.proc.wait(120s);
    EXPECT_EQ(st.value_or(-1), 0);
    std::ifstream in(play.out);
    std::stringstream ss;
    ss << in.rdbuf();
    json::value report;
    std::istringstream lines(ss.str());
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty() && line[0] == '{') {
        report = json::parse(line);
      }
    }
    ASSERT_TRUE(report.is_object()) << ss.str();
    EXPECT_EQ(report.at("segments_failed").to_number<int>(), 0) << ss.str();
    EXPECT_GE(report.at("segments").to_number<int>(), 20) << ss.str();  // 2 viewers, 12 s
  }

  // Every writer's acknowledged segments are held at the registry (no more than were sent).
  void expect_every_acknowledged_report(const test::report_load& load) {
    auto r = test::http_get(grid->registry_url(1) + "/v1/stations/home/held");
    if (!r || r->status != 200) {
      r = test::http_get(grid->registry_url(0) + "/v1/stations/home/held");
    }
    ASSERT_TRUE(r && r->status == 200);
    auto programs = json::parse(r->body).at("programs").as_object();
    uint64_t acked = 0;
    for (auto& w : load.writers()) {
      auto* held = programs.if_contains(w.program);
      uint64_t n = held ? held->to_number<uint64_t>() : 0;
      EXPECT_GE(n, w.acked) << w.program << ": acknowledged reports lost";
      EXPECT_LE(n, w.sent) << w.program;
      acked += w.acked;
    }
    EXPECT_GT(acked, 0u);
  }

  // Sends reports until `outage` has happened and writes have been acknowledged again for a while;
  // prints the longest write outage.
  void report_through(const std::function<void()>& outage, const std::string& what) {
    test::report_load load(load_options());
    ASSERT_TRUE(test::eventually([&] { return load.acknowledged() > 100; }, 20s));
    auto play = play_at_edge();
    std::this_thread::sleep_for(2s);
    auto before = load.acknowledged();
    auto t0 = std::chrono::steady_clock::now();
    outage();
    ASSERT_TRUE(test::eventually([&] { return load.acknowledged() > before + 200; }, 90s))
        << cluster->log(0) << cluster->log(1) << cluster->log(2);
    std::this_thread::sleep_for(1s);
    load.stop();
    auto took = std::chrono::steady_clock::now() - t0;
    auto gap = load.longest_gap();
    std::cout << fmt::format(
        "{}: {} reports acknowledged, {} attempts failed, writes stopped for "
        "{} ms at most (outage to 200 more acknowledged: {} ms)\n",
        what, load.acknowledged(), load.failed(), gap.count(),
        std::chrono::duration_cast<std::chrono::milliseconds>(took).count());
    RecordProperty("write_outage_ms", static_cast<int>(gap.count()));
    expect_every_acknowledged_report(load);
    expect_no_failed_segment(play);
  }

  test::temp_dir src;
  std::filesystem::path sample;
  std::unique_ptr<test::patroni_cluster> cluster;
  std::unique_ptr<test::grid_fixture> grid;
};

TEST_F(RegistryHa, EveryAcknowledgedReportSurvivesTheKillOfThePrimarysPostgres) {
  int primary = cluster->leader();
  ASSERT_GE(primary, 0);
  report_through([&] { cluster->kill_postgres(primary); }, "primary's PostgreSQL SIGKILLed");
  int now = cluster->wait_writable(60s);
  EXPECT_NE(now, primary) << "the synchronous standby was to take over";
}

TEST_F(RegistryHa, EveryAcknowledgedReportSurvivesTheLossOfThePrimarysWholeMember) {
  int primary = cluster->leader();
  ASSERT_GE(primary, 0);
  report_through([&] { cluster->kill_member(primary); },
                 "primary's member (Patroni, PostgreSQL, etcd) SIGKILLed");
  EXPECT_NE(cluster->wait_writable(60s), primary);
}

TEST_F(RegistryHa, ARegistryDaemonKilledTheDirectorsAndReportsUseTheOther) {
  report_through([&] { grid->kill("registry"); }, "registry daemon SIGKILLed");
  EXPECT_TRUE(test::eventually(
      [&] {
        return grid->log_of("home").find("now using " + grid->registry_url(1)) !=
                   std::string::npos &&
               grid->log_of("edge").find("now using " + grid->registry_url(1)) != std::string::npos;
      },
      10s))
      << grid->log_of("home");
  auto r = test::http_get(grid->registry_url(1) + "/healthz");
  ASSERT_TRUE(r);
  EXPECT_NE(r->body.find("\"stations_up\":2"), std::string::npos) << r->body;
}

}  // namespace
}  // namespace vodgrid
