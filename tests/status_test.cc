// `vodgrid status --grid REGISTRY` against a real grid: a row per station with every input of the
// cost model, as the registry has them, and each station's engines.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <boost/json/parse.hpp>

#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "support/support.h"

namespace vodgrid::test {
namespace {

namespace json = boost::json;

struct station_row {
  bool home = false;
  bool up = false;
  int x_km = 0, y_km = 0;
  double uplink_mb_s = 0, sending_mb_s = 0, load = 0, copy_mb_s = 0;
  std::string director;
};

struct engine_row {
  bool up = false;
  uint64_t segments = 0;
  uint64_t max_streams = 0;
  std::string url;
};

struct status_output {
  std::string registry;
  std::map<std::string, station_row> stations;
  // station → engine → row, from each station's section.
  std::map<std::string, std::map<std::string, engine_row>> engines;
  std::map<std::string, std::string> directors;  // station → the URL its section names
};

// Reads the text `vodgrid status` prints; rows it does not recognise are left out (and so fail
// the expectations that look for them).
status_output parse_status(const std::string& out) {
  static const std::regex registry_line(R"(^registry (\S+)$)");
  static const std::regex station_line(
      R"(^(\S+)\s+(?:(yes)\s+)?(yes|NO)\s+(-?\d+),(-?\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\S+)$)");
  static const std::regex section_line(R"(^station (\S+) \(director (\S+)\)$)");
  static const std::regex engine_line(
      R"(^(\S+)\s+(yes|NO)\s+(\d+)\s+(\d+)/(\d+)\s+(\d+)\s+([\d.]+)\s+(\S+)$)");
  status_output s;
  std::istringstream in(out);
  std::string line, section;
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_match(line, m, registry_line)) {
      s.registry = m[1];
    } else if (std::regex_match(line, m, section_line)) {
      section = m[1];
      s.directors[section] = m[2];
    } else if (section.empty() && std::regex_match(line, m, station_line)) {
      station_row r;
      r.home = m[2].matched;
      r.up = m[3] == "yes";
      r.x_km = std::stoi(m[4]);
      r.y_km = std::stoi(m[5]);
      r.uplink_mb_s = std::stod(m[6]);
      r.sending_mb_s = std::stod(m[7]);
      r.load = std::stod(m[8]);
      r.copy_mb_s = std::stod(m[9]);
      r.director = m[10];
      s.stations[m[1]] = r;
    } else if (!section.empty() && std::regex_match(line, m, engine_line)) {
      engine_row r;
      r.up = m[2] == "yes";
      r.segments = std::stoull(m[3]);
      r.max_streams = std::stoull(m[5]);
      r.url = m[8];
      s.engines[section][m[1]] = r;
    }
  }
  return s;
}

TEST(Status, ShowsEachStationsCostInputsAndEngines) {
  grid_fixture g({{"home", 2, 0, 1000}, {"a", 3, 120, 400, -35}});
  // A program copied from home to a gives the registry a measured copy throughput from home.
  temp_dir src;
  make_sample(src.path(), 4, 1);
  auto in = g.ingest(src.path().string(), "film", "a");
  ASSERT_EQ(in.status, 0) << in.err;
  // station → copy throughput from it (MB/s, as status prints it), as the registry has it now.
  auto copy_rates = [&] {
    std::map<std::string, std::string> out;
    auto r = http_get(g.registry_url() + "/v1/stations");
    if (r && r->status == 200) {
      auto o = json::parse(r->body);
      for (auto& s : o.at("stations").as_array()) {
        out[std::string(s.at("name").as_string())] =
            fmt::format("{:.1f}", s.at("copy_bits_per_second").to_number<double>() / 8e6);
      }
    }
    return out;
  };
  auto held_at_a = [&] {
    auto r = http_get(g.registry_url() + "/v1/programs/film");
    if (!r || r->status != 200) {
      return int64_t{-1};
    }
    auto held = json::parse(r->body).at("held");
    return held.as_object().contains("a") ? held.at("a").to_number<int64_t>() : 0;
  };
  ASSERT_TRUE(eventually([&] { return held_at_a() == 4 && copy_rates()["home"] != "0.0"; },
                         std::chrono::seconds(20)))
      << g.log_of("a");

  auto before = copy_rates();
  auto r = run({vodgrid_binary(), "status", "--grid", g.registry_url()});
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  auto st = parse_status(r.out);
  EXPECT_EQ(st.registry, g.registry_url()) << r.out;
  ASSERT_EQ(st.stations.size(), 2u) << r.out;
  ASSERT_TRUE(st.stations.count("home") && st.stations.count("a")) << r.out;

  // The configured inputs, exactly; the measured ones as the registry has them.
  auto& home = st.stations["home"];
  auto& a = st.stations["a"];
  EXPECT_TRUE(home.home);
  EXPECT_FALSE(a.home);
  EXPECT_TRUE(home.up);
  EXPECT_TRUE(a.up);
  EXPECT_EQ(home.x_km, 0);
  EXPECT_EQ(home.y_km, 0);
  EXPECT_EQ(a.x_km, 120);
  EXPECT_EQ(a.y_km, -35);
  EXPECT_DOUBLE_EQ(home.uplink_mb_s, 125.0);  // 1000 Mbit/s
  EXPECT_DOUBLE_EQ(a.uplink_mb_s, 50.0);      // 400 Mbit/s
  EXPECT_EQ(home.director, g.director_url("home"));
  EXPECT_EQ(a.director, g.director_url("a"));
  // The measured inputs as the registry has them, just before or just after.
  auto after = copy_rates();
  for (auto& [name, row] : st.stations) {
    auto shown = fmt::format("{:.1f}", row.copy_mb_s);
    EXPECT_TRUE(shown == before[name] || shown == after[name])
        << name << ": " << shown << ", registry " << before[name] << " then " << after[name];
    EXPECT_GE(row.sending_mb_s, 0) << name;
    EXPECT_GE(row.load, 0) << name;
    EXPECT_LT(row.load, 1) << name;
  }
  EXPECT_GT(home.copy_mb_s, 0);

  // Each station's section: its director and a row per engine, up, with its URL.
  for (auto* station : {"home", "a"}) {
    EXPECT_EQ(st.directors[station], g.director_url(station)) << r.out;
    auto& engines = st.engines[station];
    EXPECT_EQ(engines.size(), g.engines_of(station).size()) << r.out;
    for (auto& name : g.engines_of(station)) {
      ASSERT_TRUE(engines.count(name)) << name << " missing:\n" << r.out;
      EXPECT_TRUE(engines[name].up) << name;
      EXPECT_EQ(engines[name].url, g.engine_url(name)) << name;
      EXPECT_EQ(engines[name].max_streams, 1000u) << name;
    }
  }
  // The home holds the program twice over its two engines; a holds every segment at least once.
  uint64_t at_home = 0, at_a = 0;
  for (auto& [name, e] : st.engines["home"]) {
    at_home += e.segments;
  }
  for (auto& [name, e] : st.engines["a"]) {
    at_a += e.segments;
  }
  EXPECT_EQ(at_home, 8u) << r.out;
  EXPECT_GE(at_a, 4u) << r.out;
}

// `vodgrid programs --grid REGISTRY` on a grid without a content manager: the registry's listing,
// each program's availability (it printed "vodgrid: out of range", asking for a "state" the
// registry does not give).
TEST(Programs, AGridWithoutAContentManagerListsTheRegistrysPrograms) {
  grid_fixture g({{"home", 2}});
  temp_dir src;
  make_sample(src.path(), 3, 1);
  ASSERT_EQ(g.ingest(src.path().string(), "film").status, 0);
  auto r = run({vodgrid_binary(), "programs", "--grid", g.registry_url()});
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"((^|\n)film\s+published\s+3\s+3\.0\s+)")))
      << r.out;
}

// An answer lacking a field the command needs: one line naming the field and the answer.
TEST(Programs, AnAnswerLackingAFieldIsOneLineNamingIt) {
  temp_dir dir;
  auto port = free_port();
  auto url = fmt::format("http://127.0.0.1:{}", port);
  auto script = dir.path() / "registry.py";
  std::ofstream(script)
      << "import http.server, sys\n"
         "ANSWERS = {'/healthz': '{\"role\":\"registry\"}',\n"
         "           '/v1/grid': '{\"registry\":\""
      << url
      << "\",\"content\":null}',\n"
         "           '/v1/programs': '{\"programs\":[{\"id\":\"film\",\"title\":\"A\"}]}',\n"
         "           '/v1/stations': '{\"stations\":[{\"name\":\"home\"}]}'}\n"
         "class H(http.server.BaseHTTPRequestHandler):\n"
         "    def do_GET(self):\n"
         "        body = ANSWERS.get(self.path.split('?')[0], '{}').encode()\n"
         "        self.send_response(200)\n"
         "        self.send_header('Content-Type', 'application/json')\n"
         "        self.send_header('Content-Length', str(len(body)))\n"
         "        self.end_headers()\n"
         "        self.wfile.write(body)\n"
         "    def log_message(self, *a):\n"
         "        pass\n"
         "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n";
  auto fake = child_process::spawn({"/usr/bin/python3", script.string(), std::to_string(port)});
  ASSERT_TRUE(fake);
  ASSERT_TRUE(eventually([&] { return port_is_listening(port); }));
  auto programs = run({vodgrid_binary(), "programs", "--grid", url});
  EXPECT_EQ(programs.status, 1);
  EXPECT_EQ(programs.err,
            "vodgrid programs: a program of the registry's /v1/programs has no \"availability\" "
            "(text)\n")
      << programs.out;
  EXPECT_EQ(programs.out, "");
  auto status = run({vodgrid_binary(), "status", "--grid", url});
  EXPECT_EQ(status.status, 1);
  EXPECT_NE(status.err.find("has no \"home\" (true or false)"), std::string::npos) << status.err;
}

// Prometheus HTTP service discovery: the registry lists every daemon of the grid with its role and
// station, and each target it names answers /metrics (what Prometheus would scrape).
TEST(Discovery, TheRegistryListsEveryDaemonAsAPrometheusTarget) {
  grid_fixture g({{"home", 2}, {"edge", 3, 100}});
  auto r = http_get(g.registry_url() + "/v1/prometheus/targets");
  ASSERT_TRUE(r && r->status == 200) << (r ? r->body : r.err().detail);
  EXPECT_NE(r->header("Content-Type").find("application/json"), std::string::npos);
  std::map<std::string, int> roles;
  std::map<std::string, std::string> station_of;
  auto groups = json::parse(r->body);
  for (auto& v : groups.as_array()) {
    auto& group = v.as_object();
    ASSERT_EQ(group.at("targets").as_array().size(), 1u);
    std::string target(group.at("targets").as_array()[0].as_string());
    auto& labels = group.at("labels").as_object();
    std::string role(labels.at("role").as_string());
    ++roles[role];
    station_of[std::string(labels.at("daemon").as_string())] = labels.at("station").as_string();
    auto metrics = http_get("http://" + target + "/metrics");
    ASSERT_TRUE(metrics) << target;
    EXPECT_EQ(metrics->status, 200u) << role << " " << target;
    EXPECT_NE(metrics->body.find("vodgrid_http_requests_total"), std::string::npos) << target;
  }
  EXPECT_EQ(roles["registry"], 1);
  EXPECT_EQ(roles["director"], 2);
  EXPECT_EQ(roles["engine"], 5);
  EXPECT_EQ(station_of["home"], "home");
  EXPECT_EQ(station_of["registry"], "");
  int edge_engines = 0;
  for (auto& [daemon, station] : station_of) {
    edge_engines += station == "edge" && daemon != "edge" ? 1 : 0;
  }
  EXPECT_EQ(edge_engines, 3);
}

}  // namespace
}  // namespace vodgrid::test
