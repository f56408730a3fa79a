// `vodgrid station`, the station supervisor (claims 6-8), as real processes with real signals: a
// killed or stopped blade is restarted, a crash-looping blade is given up while the others run, a
// SIGTERM stops every blade; and `vodgrid up` names a blade that cannot start.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/types.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <boost/json/parse.hpp>

#include "base/fs.h"
#include "support/support.h"

namespace vodgrid::test {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

constexpr const char* station = "s";  // the station, and so its director blade, is named "s"

std::string text_of(const fs::path& file) {
  auto t = read_file(file);
  return t ? *t : std::string();
}

// Whether `pid` has ended (gone, or a zombie nobody has reaped yet).
bool gone(pid_t pid) {
  if (::kill(pid, 0) != 0) {
    return errno == ESRCH;
  }
  auto stat = read_file(fmt::format("/proc/{}/stat", pid));
  if (!stat) {
    return true;
  }
  auto close = stat->rfind(')');
  return close != std::string::npos && close + 2 < stat->size() && (*stat)[close + 2] == 'Z';
}

// One station, a director and engines e0.., with its supervisor on free ports; engine `broken` (if
// >= 0) has a regular file for its data directory, so it exits at once every time it starts.
grid_config make_grid(const fs::path& dir, int engines, int broken) {
  grid_config g;
  g.heartbeat_interval = 100ms;
  g.heartbeat_timeout = 1000ms;
  station_config s;
  s.name = *station_id::parse(station);
  s.director.listen = {"127.0.0.1", free_port()};
  s.director.data_dir = dir / "director";
  s.director.copies = 1;
  s.supervisor = {"127.0.0.1", free_port()};
  for (int i = 0; i < engines; ++i) {
    engine_config e;
    e.name = *engine_id::parse(fmt::format("e{}", i));
    e.listen = {"127.0.0.1", free_port()};
    e.data_dirs = {dir / e.name.str()};
    if (i == broken) {
      std::ofstream(e.data_dirs[0]) << "not a directory\n";
    }
    s.engines.push_back(e);
  }
  g.stations.push_back(s);
  return g;
}

// `vodgrid station --name s` on a config of make_grid, its output in DIR/station.out and the blade
// logs in DIR/logs. Ready once every blade but the broken one is up and the director sees them.
class supervised_station {
 public:
  explicit supervised_station(int engines = 2, int broken = -1)
      : grid_(make_grid(dir_.path(), engines, broken)), config_(dir_.path() / "grid.toml") {
    if (!write_file_durably(config_, grid_.to_toml())) {
      throw std::runtime_error("cannot write the config");
    }
    auto p = child_process::spawn({vodgrid_binary(), "station", "--config", config_.string(),
                                   "--name", station, "--logs", logs().string()},
                                  dir_.path() / "station.out");
    if (!p) {
      throw std::runtime_error(p.err().detail);
    }
    process_ = std::move(*p);
    size_t healthy = static_cast<size_t>(engines - (broken >= 0 ? 1 : 0));
    bool ready = eventually(
        [&] {
          auto h = health();
          return h.contains("blades_up") && h.at("blades_up").to_number<size_t>() == healthy + 1 &&
                 director_engines_up() == static_cast<int>(healthy);
        },
        20s);
    if (!ready) {
      throw std::runtime_error("the station did not come up:\n" + output());
    }
  }
  ~supervised_station() {
    process_.signal(SIGTERM);
    process_.wait(10s);
  }

  child_process& process() { return process_; }
  const fs::path& config() const { return config_; }
  fs::path logs() const { return dir_.path() / "logs"; }
  std::string supervisor_url() const { return grid_.stations[0].supervisor.url(); }
  std::string director_url() const { return grid_.stations[0].director.listen.url(); }
  std::string engine_url(int i) const {
    return grid_.stations[0].engines.at(static_cast<size_t>(i)).listen.url();
  }
  std::string output() const { return text_of(dir_.path() / "station.out"); }

  // The supervisor's /healthz; {} when it does not answer.
  json::object health() const {
    auto r = http_get(supervisor_url() + "/healthz");
    if (!r || r->status != 200) {
      return {};
    }
    return json::parse(r->body).as_object();
  }
  json::object blade(const std::string& name) const {
    auto h = health();
    for (auto& b : h.contains("blades") ? h.at("blades").as_array() : json::array{}) {
      if (b.at("name").as_string() == name) {
        return b.as_object();
      }
    }
    return {};
  }
  pid_t pid_of(const std::string& name) const {
    auto b = blade(name);
    return b.contains("pid") && b.at("pid").is_int64() ? static_cast<pid_t>(b.at("pid").as_int64())
                                                       : -1;
  }
  double restarts(const std::string& name, const std::string& reason) const {
    return metric(
        supervisor_url(),
        fmt::format(R"(vodgrid_station_restarts_total\{{blade="{}",reason="{}"\}})", name, reason));
  }
  // The director's engines_up; -1 when it does not answer.
  int director_engines_up() const {
    auto r = http_get(director_url() + "/healthz");
    if (!r || r->status != 200) {
      return -1;
    }
    return json::parse(r->body).at("engines_up").to_number<int>();
  }
  // The director's entry of engine `name` in /v1/engines; {} if none.
  json::object engine_entry(const std::string& name) const {
    auto r = http_get(director_url() + "/v1/engines");
    if (!r || r->status != 200) {
      return {};
    }
    auto list = json::parse(r->body);
    for (auto& e : list.at("engines").as_array()) {
      if (e.at("name").as_string() == name) {
        return e.as_object();
      }
    }
    return {};
  }

 private:
  temp_dir dir_;
  grid_config grid_;
  fs::path config_;
  child_process process_;
};

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++n;
  }
  return n;
}

TEST(Supervisor, RestartsAKilledDirectorWithinThreeSeconds) {
  supervised_station st;
  pid_t old = st.pid_of(station);
  ASSERT_GT(old, 0);
  auto killed_at = steady::now();
  ASSERT_EQ(::kill(old, SIGKILL), 0);
  // Back means: a new director, answering /healthz, that sees both engines again.
  bool back = eventually(
      [&] {
        pid_t now = st.pid_of(station);
        return now > 0 && now != old && st.director_engines_up() == 2;
      },
      10s);
  auto took = steady::now() - killed_at;
  ASSERT_TRUE(back) << st.output();
  EXPECT_LT(took, 3s) << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                      << " ms";
  std::cerr << "director back in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms\n";
  EXPECT_TRUE(gone(old));
  EXPECT_EQ(st.restarts(station, "killed"), 1);
  EXPECT_EQ(st.restarts(station, "exited"), 0);
  EXPECT_EQ(st.restarts("e0", "killed"), 0);  // the engines were left alone
  EXPECT_EQ(st.blade(station).at("restarts").to_number<int>(), 1);
  EXPECT_NE(st.output().find("director s was killed by signal 9"), std::string::npos)
      << st.output();
}

TEST(Supervisor, RestartsAKilledEngineBackIntoTheDirectorsRotation) {
  supervised_station st;
  pid_t old = st.pid_of("e1");
  ASSERT_GT(old, 0);
  auto killed_at = steady::now();
  ASSERT_EQ(::kill(old, SIGKILL), 0);
  ASSERT_TRUE(eventually(
      [&] {
        pid_t now = st.pid_of("e1");
        return now > 0 && now != old && st.blade("e1").at("up").as_bool();
      },
      10s))
      << st.output();
  // Past the heartbeat timeout of the killed process, the director still counts e1 up: the new
  // one heartbeats.
  std::this_thread::sleep_until(killed_at + 1200ms);
  EXPECT_TRUE(eventually(
      [&] {
        auto e = st.engine_entry("e1");
        return !e.empty() && e.at("up").as_bool() && e.at("last_seen_ms").to_number<int>() < 500;
      },
      5s))
      << st.output();
  EXPECT_EQ(st.director_engines_up(), 2);
  EXPECT_TRUE(gone(old));
  EXPECT_EQ(st.restarts("e1", "killed"), 1);
  EXPECT_EQ(st.restarts("e0", "killed"), 0);
  EXPECT_EQ(st.restarts(station, "killed"), 0);
}

TEST(Supervisor, KillsAndRestartsAStoppedEngine) {
  supervised_station st;
  pid_t old = st.pid_of("e1");
  ASSERT_GT(old, 0);
  auto stopped_at = steady::now();
  ASSERT_EQ(::kill(old, SIGSTOP), 0);
  // Its process lives on, stopped: only /healthz tells.
  bool replaced = eventually(
      [&] {
        pid_t now = st.pid_of("e1");
        return now > 0 && now != old;
      },
      10s);
  auto took = steady::now() - stopped_at;
  ASSERT_TRUE(replaced) << st.output();
  // Killed after about two seconds of failed checks, not at the first one.
  EXPECT_GE(took, 1900ms);
  EXPECT_LT(took, 5s);
  EXPECT_TRUE(eventually([&] { return gone(old); }, 2s));
  EXPECT_EQ(st.restarts("e1", "unhealthy"), 1);
  EXPECT_EQ(st.restarts("e1", "killed"), 0);
  EXPECT_TRUE(eventually([&] { return st.blade("e1").at("up").as_bool(); }, 5s)) << st.output();
  auto h = http_get(st.engine_url(1) + "/healthz");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200u);
  EXPECT_NE(st.output().find("engine e1 did not answer /healthz"), std::string::npos)
      << st.output();
}

TEST(Supervisor, GivesUpOnACrashLoopingBladeAndKeepsTheOthers) {
  supervised_station st(2, 1);  // e1 exits at once, every time
  ASSERT_TRUE(eventually([&] { return st.blade("e1").at("state").as_string() == "failed"; }, 20s))
      << st.output();
  auto h = st.health();
  EXPECT_EQ(h.at("status").as_string(), "degraded");
  EXPECT_EQ(h.at("blades_failed").to_number<int>(), 1);
  EXPECT_EQ(h.at("blades_up").to_number<int>(), 2);
  auto b = st.blade("e1");
  EXPECT_FALSE(b.at("up").as_bool());
  EXPECT_TRUE(b.at("pid").is_null());
  EXPECT_EQ(b.at("restarts").to_number<int>(), 5);
  EXPECT_EQ(st.restarts("e1", "exited"), 5);
  EXPECT_EQ(metric(st.supervisor_url(), "vodgrid_station_blades_failed"), 1);
  EXPECT_EQ(metric(st.supervisor_url(), "vodgrid_station_blades_up"), 2);
  // It does not spin: no more starts of e1 (its first start and five restarts, each one line of
  // its log), and the others are still served.
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(st.restarts("e1", "exited"), 5);
  auto log = text_of(st.logs() / "e1.log");
  EXPECT_EQ(count_of(log, "Not a directory"), 6u) << log;
  EXPECT_TRUE(st.process().running());
  EXPECT_EQ(st.director_engines_up(), 1);
  EXPECT_TRUE(st.blade("e0").at("up").as_bool());
  EXPECT_EQ(st.restarts("e0", "exited") + st.restarts(station, "exited"), 0);
  EXPECT_NE(st.output().find("giving up on it"), std::string::npos) << st.output();
}

TEST(Supervisor, StopsEveryBladeOnSigtermAndExitsZero) {
  supervised_station st;
  std::vector<pid_t> blades{st.pid_of(station), st.pid_of("e0"), st.pid_of("e1")};
  for (auto p : blades) {
    ASSERT_GT(p, 0);
  }
  auto t0 = steady::now();
  st.process().signal(SIGTERM);
  auto status = st.process().wait(10s);
  auto took = steady::now() - t0;
  ASSERT_TRUE(status) << "the supervisor did not exit";
  EXPECT_EQ(*status, 0) << st.output();
  EXPECT_LT(took, 4s);
  for (auto p : blades) {
    EXPECT_TRUE(gone(p)) << p;
  }
  EXPECT_FALSE(http_get(st.director_url() + "/healthz"));
  EXPECT_FALSE(http_get(st.engine_url(0) + "/healthz"));
}

TEST(Supervisor, BladesDieWithAKilledSupervisor) {
  supervised_station st;
  std::vector<pid_t> blades{st.pid_of(station), st.pid_of("e0"), st.pid_of("e1")};
  st.process().signal(SIGKILL);
  ASSERT_TRUE(st.process().wait(5s));
  for (auto p : blades) {
    EXPECT_TRUE(eventually([&] { return gone(p); }, 5s)) << p;
  }
}

TEST(Supervisor, RefusesAnUnknownStationOrABadConfigInOneLine) {
  temp_dir d;
  auto config = d.path() / "grid.toml";
  ASSERT_TRUE(write_file_durably(config, make_grid(d.path(), 1, -1).to_toml()));
  auto r =
      run({vodgrid_binary(), "station", "--config", config.string(), "--name", "nowhere"}, 30s);
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(count_of(r.err, "\n"), 1u) << r.err;
  EXPECT_NE(r.err.find("no station 'nowhere'"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(d.path() / "logs"));  // nothing was started

  auto bad = d.path() / "bad.toml";
  ASSERT_TRUE(write_file_durably(bad, "[[station]]\nname = \"s\"\nbogus = 1\n"));
  auto b = run({vodgrid_binary(), "station", "--config", bad.string(), "--name", "s"}, 30s);
  EXPECT_NE(b.status, 0);
  EXPECT_EQ(count_of(b.err, "\n"), 1u) << b.err;
  EXPECT_EQ(b.err.rfind("vodgrid station: ", 0), 0u) << b.err;

  auto help = run({vodgrid_binary(), "station", "--help"}, 30s);
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("--logs"), std::string::npos) << help.out;
  EXPECT_NE(help.out.find("/healthz"), std::string::npos) << help.out;
}

// Issue 11, strict config: a misspelt key stops a daemon at start with one line naming it, rather
// than leaving the default in force in silence.
TEST(Supervisor, ADaemonWithAMisspeltKeyStopsAtStartNamingIt) {
  temp_dir d;
  auto text = make_grid(d.path(), 1, -1).to_toml();
  auto at = text.find("max_streams");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, std::string("max_streams").size(), "max_stream");
  auto config = d.path() / "grid.toml";
  ASSERT_TRUE(write_file_durably(config, text));
  auto r = run({vodgrid_binary(), "engine", "--config", config.string(), "--name", "e0"}, 30s);
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(count_of(r.err, "\n"), 1u) << r.err;
  EXPECT_NE(r.err.find("unknown key 'max_stream' (did you mean 'max_streams'?)"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find(config.string()), std::string::npos) << r.err;
}

TEST(Supervisor, UpNamesABladeItsStationGaveUpOn) {
  temp_dir d;
  auto config = d.path() / "grid.toml";
  auto grid = make_grid(d.path(), 2, 1);
  ASSERT_TRUE(write_file_durably(config, grid.to_toml()));
  auto t0 = steady::now();
  auto r = run(
      {vodgrid_binary(), "up", "--config", config.string(), "--data", (d.path() / "data").string()},
      60s);
  auto took = steady::now() - t0;
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("engine e1 keeps exiting"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find((d.path() / "data" / "logs" / "e1.log").string()), std::string::npos)
      << r.err;
  EXPECT_LT(took, 15s);  // as soon as the supervisor gave up, not after up's 20 s wait
  // Nothing is left running.
  EXPECT_FALSE(http_get(grid.stations[0].supervisor.url() + "/healthz"));
  EXPECT_FALSE(http_get(grid.stations[0].director.listen.url() + "/healthz"));
  EXPECT_FALSE(http_get(grid.stations[0].engines[0].listen.url() + "/healthz"));
}

TEST(Supervisor, UpIsNotFooledByAnotherGridOnItsPorts) {
  supervised_station st;  // holds every port of the config
  pid_t director = st.pid_of(station);
  temp_dir d;
  auto r = run(
      {vodgrid_binary(), "up", "--config", st.config().string(), "--data", d.path().string()}, 60s);
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(r.out.find("ready"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("station s exited"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("station-s.log"), std::string::npos) << r.err;
  EXPECT_NE(text_of(d.path() / "logs" / "station-s.log").find("cannot listen"), std::string::npos);
  // The station that was there first is untouched.
  EXPECT_EQ(st.pid_of(station), director);
  EXPECT_EQ(st.restarts(station, "killed") + st.restarts(station, "exited"), 0);
  EXPECT_EQ(st.director_engines_up(), 2);
}

}  // namespace
}  // namespace vodgrid::test
