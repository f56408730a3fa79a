// The registry daemon as a real process (`vodgrid registry --config grid.toml`) on both database
// backends, driven through its HTTP API: source ranking by the cost model, bad input, SIGKILL in
// the middle of a stream of location updates, and restarts. No director or engine runs: the test
// plays the directors.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <csignal>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include "api/api.h"
#include "base/fs.h"
#include "db/db.h"
#include "net/http.h"
#include "support/postgres.h"
#include "support/support.h"

namespace vodgrid::test {
namespace {

namespace json = boost::json;
using verb = boost::beast::http::verb;

struct reply {
  unsigned status = 0;  // 0: no reply (transport failure)
  std::string body;
  json::object obj;  // the body, when it is a JSON object
};

std::string hex_digest() {
  return std::string(64, 'a');
}

// A manifest of `segments` segments of 1 s and `bytes` bytes each.
json::object manifest(const std::string& id, uint32_t segments, uint64_t bytes = 1'000'000) {
  json::array segs;
  for (uint32_t i = 0; i < segments; ++i) {
    segs.push_back(
        json::object{{"index", i}, {"duration", 1.0}, {"size", bytes}, {"sha256", hex_digest()}});
  }
  return json::object{{"id", id}, {"title", "Title of " + id}, {"segments", segs}};
}

struct change {
  std::string program;
  int64_t index;
  bool held = true;
  std::string engine;  // empty: a station-level change
  bool filling = false;
};

std::string report_body(const std::vector<change>& changes, double load = 0,
                        json::array copies = {}) {
  json::array list;
  for (auto& c : changes) {
    json::object o{{"program", c.program}, {"index", c.index}, {"held", c.held}};
    if (!c.engine.empty()) {
      o["engine"] = c.engine;
    }
    if (c.filling) {
      o["filling"] = true;
    }
    list.push_back(std::move(o));
  }
  return json::serialize(json::object{{"load", load},
                                      {"sending_bits_per_second", 0},
                                      {"engines_up", 1},
                                      {"changes", list},
                                      {"copies", copies}});
}

// A grid of four stations, `home` (x = 0, the home), `a` (x = 100), `b` (x = 5000) and the seeker
// `s` (x = 0), each with engines `<station>-1` and `<station>-2`, with a registry in front of a
// database. Nothing listens at the directors' and
// engines' addresses: the test talks to the registry itself.
class RegistryTest : public ::testing::Test {
 protected:
  virtual bool postgresql() const { return false; }

  void SetUp() override {
    std::string db_url = postgresql() ? test::fresh_postgres_schema("api")
                                      : "sqlite://" + (dir_.path() / "registry.db").string();
    grid_.registry = registry_config{{"127.0.0.1", free_port()}, db_url};
    add_station("home", true, 0);
    add_station("a", false, 100);
    add_station("b", false, 5000);
    add_station("s", false, 0);
    config_file_ = dir_.path() / "grid.toml";
    if (!write_file_durably(config_file_, grid_.to_toml())) {
      throw std::runtime_error("cannot write the config");
    }
    start_registry();
  }

  void TearDown() override {
    if (registry_.running()) {
      registry_.signal(SIGKILL);
      registry_.wait(std::chrono::seconds(10));
    }
    if (HasFailure()) {
      std::cerr << "registry log:\n" << log() << "\n";
    }
  }

  void add_station(const std::string& name, bool home, double x_km) {
    station_config s;
    s.name = *station_id::parse(name);
    s.home = home;
    s.x_km = x_km;
    s.director.listen = {"127.0.0.1", free_port()};
    s.director.data_dir = dir_.path() / name;
    s.director.copies = 1;
    for (auto* n : {"-1", "-2"}) {
      engine_config e;
      e.name = *engine_id::parse(name + n);
      e.listen = {"127.0.0.1", free_port()};
      e.data_dirs = {dir_.path() / (name + n)};
      s.engines.push_back(e);
    }
    grid_.stations.push_back(s);
  }

  void start_registry() {
    auto p = child_process::spawn({vodgrid_binary(), "registry", "--config", config_file_.string()},
                                  dir_.path() / "registry.log");
    if (!p) {
      throw std::runtime_error(p.err().detail);
    }
    registry_ = std::move(*p);
    if (!eventually([&] {
          auto r = http_get(url() + "/healthz");
          return r && r->status == 200;
        })) {
      throw std::runtime_error("the registry did not start:\n" + log());
    }
  }

  void kill_registry() {
    registry_.signal(SIGKILL);
    ASSERT_TRUE(registry_.wait(std::chrono::seconds(10)).has_value());
  }

  std::string url() const { return grid_.registry->listen.url(); }
  std::string log() const {
    auto t = read_file(dir_.path() / "registry.log");
    return t ? *t : std::string();
  }
  const station_config& station(const std::string& name) const { return *grid_.find_station(name); }

  reply call(verb method, const std::string& path, const std::string& body = {}) {
    reply out;
    auto r = http(method, url() + path, body);
    if (!r) {
      return out;
    }
    out.status = r->status;
    out.body = r->body;
    if (auto o = api::parse_object(r->body)) {
      out.obj = std::move(*o);
    }
    return out;
  }
  reply get(const std::string& path) { return call(verb::get, path); }

  // Registers a station as its director would, with the location and uplink of the config.
  reply register_station(const std::string& name) {
    auto& s = station(name);
    return call(verb::put, "/v1/stations/" + name,
                json::serialize(json::object{{"name", name},
                                             {"director_url", s.director.listen.url()},
                                             {"home", s.home},
                                             {"x_km", s.x_km},
                                             {"y_km", s.y_km},
                                             {"uplink_bits_per_second", 1'000'000'000}}));
  }
  reply report(const std::string& station, const std::vector<change>& changes, double load = 0,
               json::array copies = {}) {
    return call(verb::post, "/v1/stations/" + station + "/report",
                report_body(changes, load, std::move(copies)));
  }
  reply put_program(const std::string& id, uint32_t segments,
                    std::vector<std::string> targets = {}) {
    json::array t;
    for (auto& s : targets) {
      t.push_back(json::value(s));
    }
    return call(
        verb::put, "/v1/programs/" + id,
        json::serialize(json::object{{"manifest", manifest(id, segments)}, {"targets", t}}));
  }
  reply sources(const std::string& program, const std::string& index, const std::string& seeker) {
    return get(fmt::format("/v1/programs/{}/segments/{}/sources?for={}", program, index, seeker));
  }
  reply locations(const std::string& program, const std::string& index) {
    return get(fmt::format("/v1/programs/{}/segments/{}/locations", program, index));
  }
  // A locations reply as "station:complete|partial engines|filling" per station, in its order.
  static std::vector<std::string> where(const reply& r) {
    std::vector<std::string> out;
    auto names = [](const json::value& v) {
      std::vector<std::string> n;
      for (auto& e : v.as_array()) {
        n.emplace_back(e.as_string());
      }
      return fmt::format("{}", fmt::join(n, ","));
    };
    if (auto* list = r.obj.if_contains("stations"); list && list->is_array()) {
      for (auto& s : list->as_array()) {
        auto& o = s.as_object();
        out.push_back(fmt::format("{}:{} {}|{}", std::string(o.at("station").as_string()),
                                  o.at("complete").as_bool() ? "complete" : "partial",
                                  names(o.at("engines")), names(o.at("filling"))));
      }
    }
    return out;
  }
  // The stations named by a sources reply, in its order.
  static std::vector<std::string> names_of(const reply& r) {
    std::vector<std::string> out;
    if (auto* list = r.obj.if_contains("sources"); list && list->is_array()) {
      for (auto& s : list->as_array()) {
        out.emplace_back(s.as_object().at("station").as_string());
      }
    }
    return out;
  }
  // GET /v1/programs/{id} "held": station -> segments held.
  std::map<std::string, int64_t> held(const std::string& program) {
    std::map<std::string, int64_t> out;
    auto r = get("/v1/programs/" + program);
    EXPECT_EQ(r.status, 200u) << r.body;
    if (auto* h = r.obj.if_contains("held"); h && h->is_object()) {
      for (auto& [k, v] : h->as_object()) {
        out[std::string(k)] = v.to_number<int64_t>();
      }
    }
    return out;
  }

  temp_dir dir_;
  grid_config grid_;
  std::filesystem::path config_file_;
  child_process registry_;
};

class RegistryOnBoth : public RegistryTest, public ::testing::WithParamInterface<std::string> {
 protected:
  bool postgresql() const override { return GetParam() == "postgresql"; }
};

INSTANTIATE_TEST_SUITE_P(Backends, RegistryOnBoth, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

#define EXPECT_STATUS(r, code) EXPECT_EQ((r).status, code##u) << (r).body
#define ASSERT_STATUS(r, code)                        \
  do {                                                \
    auto reply_ = (r);                                \
    ASSERT_EQ(reply_.status, code##u) << reply_.body; \
  } while (0)

// --- programs of several renditions (flow 9) ---

json::object parent_manifest(const std::string& id, const std::vector<std::string>& names) {
  json::array rs;
  for (auto& n : names) {
    rs.push_back(json::object{{"name", n},
                              {"kind", "video"},
                              {"bandwidth", 500'000},
                              {"average_bandwidth", 400'000},
                              {"codecs", "avc1.64001e"},
                              {"width", 640},
                              {"height", 360},
                              {"frame_rate", 25}});
  }
  return json::object{
      {"id", id}, {"title", "Film"}, {"segments", json::array{}}, {"renditions", rs}};
}

TEST_P(RegistryOnBoth, AProgramOfRenditionsKeepsItsListAndDistributesEachRendition) {
  auto put_parent = [&](json::array targets) {
    return call(
        verb::put, "/v1/programs/film",
        json::serialize(json::object{{"manifest", parent_manifest("film", {"360p", "180p"})},
                                     {"targets", targets}}));
  };
  // Its renditions come first: a program naming one the registry does not have changes nothing.
  ASSERT_STATUS(put_program("film--360p", 2, {"a"}), 200);
  auto early = put_parent({"b"});
  EXPECT_EQ(early.status, 409u) << early.body;
  EXPECT_NE(early.body.find("rendition film--180p of program film is not registered"),
            std::string::npos)
      << early.body;
  EXPECT_STATUS(get("/v1/programs/film"), 404);
  ASSERT_STATUS(put_program("film--180p", 2, {"a"}), 200);
  ASSERT_STATUS(put_parent({"b"}), 200);

  auto check = [&] {
    auto r = get("/v1/programs/film");
    ASSERT_STATUS(r, 200);
    auto m = api::from_json<api::program_manifest>(r.obj);
    ASSERT_TRUE(m) << m.err().detail;
    ASSERT_EQ(m->renditions.size(), 2u);
    EXPECT_EQ(m->renditions[1].name, "180p");
    EXPECT_EQ(m->renditions[0].width, 640);
    EXPECT_TRUE(m->segments.empty());
    // The program's targets are its renditions' now: distributing it distributes them.
    auto list = get("/v1/programs");
    ASSERT_STATUS(list, 200);
    std::map<std::string, std::string> targets, renditions;
    for (auto& p : list.obj.at("programs").as_array()) {
      auto& o = p.as_object();
      auto& t = o.at("targets").as_array();
      targets[std::string(o.at("id").as_string())] =
          t.empty() ? "" : std::string(t.at(0).as_string());
      renditions[std::string(o.at("id").as_string())] = json::serialize(o.at("renditions"));
    }
    EXPECT_EQ(targets["film--360p"], "b");
    EXPECT_EQ(targets["film--180p"], "b");
    EXPECT_EQ(renditions["film"], "2");
    EXPECT_EQ(renditions["film--360p"], "0");
  };
  check();
  // Kept durably with the program.
  kill_registry();
  start_registry();
  check();
}

// --- sources ranked by the cost model ---

TEST_P(RegistryOnBoth, SourcesRankedByCostHomeLast) {
  for (auto* s : {"home", "a", "b", "s"}) {
    auto r = register_station(s);
    ASSERT_EQ(r.status, 200u) << r.body;
  }
  ASSERT_EQ(put_program("movie", 3).status, 200u);
  for (auto* s : {"home", "a", "b"}) {
    auto r = report(s, {{"movie", 0}});
    ASSERT_EQ(r.status, 200u) << r.body;
  }
  auto r = sources("movie", "0", "s");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(names_of(r), (std::vector<std::string>{"a", "b", "home"}));
  auto& list = r.obj.at("sources").as_array();
  ASSERT_EQ(list.size(), 3u);
  double last = -1;
  for (auto& v : list) {
    auto& e = v.as_object();
    auto name = std::string(e.at("station").as_string());
    EXPECT_EQ(std::string(e.at("director_url").as_string()), station(name).director.listen.url());
    double cost = e.at("cost").to_number<double>();
    EXPECT_GT(cost, last) << name;
    last = cost;
    auto& in = e.at("inputs").as_object();
    EXPECT_DOUBLE_EQ(in.at("distance_km").to_number<double>(), station(name).x_km);
    EXPECT_DOUBLE_EQ(in.at("home_penalty_seconds").to_number<double>(), name == "home" ? 30 : 0);
    EXPECT_GT(in.at("available_bits_per_second").to_number<double>(), 0);
    EXPECT_GT(in.at("transfer_seconds").to_number<double>(), 0);
  }
  // The wire type of the directors decodes it too.
  auto decoded = api::decode<std::vector<api::source>>(r.body);
  ASSERT_TRUE(decoded) << decoded.err().detail;
  ASSERT_EQ(decoded->size(), 3u);
  EXPECT_EQ((*decoded)[0].station.str(), "a");
  EXPECT_EQ(r.obj.at("program").as_string(), "movie");
  EXPECT_EQ(r.obj.at("index").to_number<int64_t>(), 0);
}

TEST_P(RegistryOnBoth, SourcesLeaveOutTheSeekerAndNonHolders) {
  for (auto* s : {"home", "a", "b", "s"}) {
    ASSERT_EQ(register_station(s).status, 200u);
  }
  ASSERT_EQ(put_program("movie", 3).status, 200u);
  ASSERT_EQ(report("s", {{"movie", 1}}).status, 200u);
  ASSERT_EQ(report("b", {{"movie", 1}}).status, 200u);
  ASSERT_EQ(report("a", {{"movie", 2}}).status, 200u);
  EXPECT_EQ(names_of(sources("movie", "1", "s")), (std::vector<std::string>{"b"}));
  EXPECT_EQ(names_of(sources("movie", "1", "a")), (std::vector<std::string>{"s", "b"}));
  auto none = sources("movie", "0", "s");
  EXPECT_STATUS(none, 200);
  EXPECT_TRUE(names_of(none).empty());
  // A station that stops holding it is no source any more.
  ASSERT_EQ(report("b", {{"movie", 1, false}}).status, 200u);
  EXPECT_TRUE(names_of(sources("movie", "1", "s")).empty());
}

TEST_P(RegistryOnBoth, ReportedLoadRanksASourceLower) {
  for (auto* s : {"home", "a", "b", "s"}) {
    ASSERT_EQ(register_station(s).status, 200u);
  }
  ASSERT_EQ(put_program("movie", 3).status, 200u);
  ASSERT_EQ(report("a", {{"movie", 0}}, 0.99).status, 200u);
  ASSERT_EQ(report("b", {{"movie", 0}}).status, 200u);
  ASSERT_EQ(report("home", {{"movie", 0}}).status, 200u);
  auto r = sources("movie", "0", "s");
  EXPECT_EQ(names_of(r), (std::vector<std::string>{"b", "a", "home"})) << r.body;
  ASSERT_EQ(r.obj.at("sources").as_array().size(), 3u);
  EXPECT_GT(r.obj.at("sources")
                .as_array()[1]
                .as_object()
                .at("inputs")
                .as_object()
                .at("load_factor")
                .to_number<double>(),
            10);
}

TEST_P(RegistryOnBoth, MeasuredCopyThroughputRanksASourceLower) {
  for (auto* s : {"home", "a", "b", "s"}) {
    ASSERT_EQ(register_station(s).status, 200u);
  }
  ASSERT_EQ(put_program("movie", 3).status, 200u);
  for (auto* s : {"home", "a", "b"}) {
    ASSERT_EQ(report(s, {{"movie", 0}}).status, 200u);
  }
  // s copied 1000 bytes from a in 1 s: 8 kbit/s, so 1 MB from a takes 1000 s.
  ASSERT_EQ(report("s", {}, 0,
                   json::array{json::object{{"source", "a"}, {"bytes", 1000}, {"seconds", 1.0}}})
                .status,
            200u);
  auto r = sources("movie", "0", "s");
  EXPECT_EQ(names_of(r), (std::vector<std::string>{"b", "home", "a"})) << r.body;
}

// --- locations per engine ---

TEST_P(RegistryOnBoth, EngineLocationsAreListedPerStation) {
  for (auto* s : {"home", "a", "b", "s"}) {
    ASSERT_EQ(register_station(s).status, 200u);
  }
  ASSERT_EQ(put_program("movie", 3).status, 200u);
  // Each station's report mixes station and engine changes, as a director sends them.
  ASSERT_STATUS(report("a", {{"movie", 0, true, "a-1"},
                             {"movie", 0},
                             {"movie", 0, true, "a-2"},
                             {"movie", 1, true, "a-2"}}),
                200);
  ASSERT_STATUS(report("home", {{"movie", 0}, {"movie", 0, true, "home-1"}}), 200);
  auto r = locations("movie", "0");
  ASSERT_STATUS(r, 200);
  EXPECT_EQ(r.obj.at("program").as_string(), "movie");
  EXPECT_EQ(r.obj.at("segment").to_number<int64_t>(), 0);
  EXPECT_EQ(where(r), (std::vector<std::string>{"a:complete a-1,a-2|", "home:complete home-1|"}));
  // An engine's copy without the station's says nothing to source lookups.
  EXPECT_EQ(where(locations("movie", "1")), (std::vector<std::string>{"a:partial a-2|"}));
  EXPECT_TRUE(names_of(sources("movie", "1", "s")).empty());
  EXPECT_EQ(where(locations("movie", "2")), std::vector<std::string>{});
  EXPECT_EQ(held("movie"), (std::map<std::string, int64_t>{{"a", 1}, {"home", 1}}));
}

TEST_P(RegistryOnBoth, AnEngineRemovalOrEvictionIsRecorded) {
  ASSERT_EQ(register_station("a").status, 200u);
  ASSERT_EQ(put_program("movie", 3).status, 200u);
  ASSERT_STATUS(report("a", {{"movie", 2}, {"movie", 2, true, "a-1"}, {"movie", 2, true, "a-2"}}),
                200);
  ASSERT_STATUS(report("a", {{"movie", 2, false, "a-1"}}), 200);
  EXPECT_EQ(where(locations("movie", "2")), (std::vector<std::string>{"a:complete a-2|"}));
  ASSERT_STATUS(report("a", {{"movie", 2, false, "a-2"}, {"movie", 2, false}}), 200);
  EXPECT_EQ(where(locations("movie", "2")), std::vector<std::string>{});
  EXPECT_EQ(held("movie")["a"], 0);
}

TEST_P(RegistryOnBoth, AFillingCopyIsListedButIsNoSource) {
  for (auto* s : {"home", "a", "s"}) {
    ASSERT_EQ(register_station(s).status, 200u);
  }
  ASSERT_EQ(put_program("movie", 3).status, 200u);
  ASSERT_STATUS(report("home", {{"movie", 1}, {"movie", 1, true, "home-1"}}), 200);
  ASSERT_STATUS(report("a", {{"movie", 1, true, "a-1", true}}), 200);
  EXPECT_EQ(where(locations("movie", "1")),
            (std::vector<std::string>{"a:partial |a-1", "home:complete home-1|"}));
  EXPECT_EQ(names_of(sources("movie", "1", "s")), (std::vector<std::string>{"home"}));
  // The copy finishes: whole at the engine, the station's first copy, the filling ended.
  ASSERT_STATUS(
      report("a", {{"movie", 1, true, "a-1"}, {"movie", 1}, {"movie", 1, false, "a-1", true}}),
      200);
  EXPECT_EQ(where(locations("movie", "1")),
            (std::vector<std::string>{"a:complete a-1|", "home:complete home-1|"}));
  EXPECT_EQ(names_of(sources("movie", "1", "s")), (std::vector<std::string>{"a", "home"}));
}

// A station silent for more than 5 s is down: no source. Takes ~5.5 s, so on one backend only.
TEST_F(RegistryTest, SilentStationIsLeftOutOfSources) {
  // The silence is [timing] station_silence_ms: 2 s here, not the default 5 s.
  kill_registry();
  grid_.timing.station_silence = std::chrono::milliseconds(2000);
  ASSERT_TRUE(write_file_durably(config_file_, grid_.to_toml()));
  start_registry();
  for (auto* s : {"home", "a", "b", "s"}) {
    ASSERT_EQ(register_station(s).status, 200u);
  }
  ASSERT_EQ(put_program("movie", 3).status, 200u);
  for (auto* s : {"home", "a", "b"}) {
    ASSERT_EQ(report(s, {{"movie", 0}}).status, 200u);
  }
  ASSERT_EQ(names_of(sources("movie", "0", "s")), (std::vector<std::string>{"a", "b", "home"}));
  auto b_silent_since = std::chrono::steady_clock::now();
  // home and a keep reporting; b says nothing more.
  std::vector<std::string> seen;
  bool left_out = eventually(
      [&] {
        EXPECT_EQ(report("home", {}).status, 200u);
        EXPECT_EQ(report("a", {}).status, 200u);
        seen = names_of(sources("movie", "0", "s"));
        return seen == std::vector<std::string>{"a", "home"};
      },
      std::chrono::seconds(8));
  auto after = std::chrono::steady_clock::now() - b_silent_since;
  EXPECT_TRUE(left_out) << "last seen: " << fmt::format("{}", fmt::join(seen, ","));
  EXPECT_GE(after, std::chrono::milliseconds(1900));  // not before the 2 s of silence
  EXPECT_LT(after, std::chrono::milliseconds(4900));  // nor after the default's 5 s
  auto stations = get("/v1/stations");
  for (auto& v : stations.obj.at("stations").as_array()) {
    auto& o = v.as_object();
    if (o.at("name").as_string() == "b") {
      EXPECT_FALSE(o.at("up").as_bool());
    }
    if (o.at("name").as_string() == "a") {
      EXPECT_TRUE(o.at("up").as_bool());
    }
  }
  // Reporting again brings it back.
  ASSERT_EQ(report("b", {}).status, 200u);
  EXPECT_EQ(names_of(sources("movie", "0", "s")), (std::vector<std::string>{"a", "b", "home"}));
}

// --- bad input ---

class RegistryBadInput : public RegistryOnBoth {
 protected:
  void SetUp() override {
    RegistryOnBoth::SetUp();
    ASSERT_EQ(register_station("home").status, 200u);
    ASSERT_EQ(register_station("a").status, 200u);
    ASSERT_EQ(put_program("movie", 3, {"a"}).status, 200u);
    ASSERT_EQ(report("a", {{"movie", 1}, {"movie", 1, true, "a-1"}}, 0.25).status, 200u);
    before_stations_ = get("/v1/stations").body;
    before_locations_ = locations("movie", "1").body + locations("movie", "0").body;
    before_program_ = get("/v1/programs/movie").body;
    before_programs_ = get("/v1/programs").body;
  }

  // The reply is `code` with a JSON error body, and nothing changed.
  void expect_refused(const reply& r, unsigned code, const std::string& what) {
    EXPECT_EQ(r.status, code) << what << ": " << r.body;
    expect_error_body(r.obj, what);
    expect_unchanged(what);
  }
  void expect_error_body(const json::object& o, const std::string& what) {
    auto* e = o.if_contains("error");
    auto* d = o.if_contains("detail");
    ASSERT_TRUE(e && e->is_string() && !e->as_string().empty()) << what;
    ASSERT_TRUE(d && d->is_string() && !d->as_string().empty()) << what;
  }
  void expect_unchanged(const std::string& what) {
    EXPECT_EQ(get("/v1/stations").body, before_stations_) << what;
    EXPECT_EQ(get("/v1/programs/movie").body, before_program_) << what;
    EXPECT_EQ(get("/v1/programs").body, before_programs_) << what;
    EXPECT_EQ(locations("movie", "1").body + locations("movie", "0").body, before_locations_)
        << what;
  }
  // A request with a Content-Length over the limit and no body: 413 before the body is read.
  void expect_too_large(const std::string& method, const std::string& path, uint64_t length) {
    std::string raw = raw_exchange(grid_.registry->listen.port,
                                   fmt::format("{} {} HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                               "application/json\r\nContent-Length: {}\r\n\r\n",
                                               method, path, length));
    std::string what = method + " " + path;
    EXPECT_EQ(status_of(raw), 413) << what << ": " << raw;
    auto at = raw.find("\r\n\r\n");
    ASSERT_NE(at, std::string::npos) << what;
    auto o = api::parse_object(raw.substr(at + 4));
    ASSERT_TRUE(o) << what << ": " << raw;
    expect_error_body(*o, what);
    expect_unchanged(what);
  }

  std::string before_stations_, before_program_, before_programs_, before_locations_;
};

INSTANTIATE_TEST_SUITE_P(Backends, RegistryBadInput, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

TEST_P(RegistryBadInput, MalformedJsonOnEveryWriteEndpoint) {
  for (std::string body : {"{\"name\": ", "not json", "[]", "", "{\"name\":\"a\"} trailing"}) {
    expect_refused(call(verb::put, "/v1/stations/a", body), 400, "PUT station: " + body);
    expect_refused(call(verb::post, "/v1/stations/a/report", body), 400, "report: " + body);
    expect_refused(call(verb::put, "/v1/programs/movie", body), 400, "PUT program: " + body);
  }
  // Well-formed JSON of the wrong shape.
  expect_refused(call(verb::put, "/v1/stations/a", R"({"name":"a","director_url":7})"), 400,
                 "director_url a number");
  expect_refused(call(verb::post, "/v1/stations/a/report", R"({"load":0.5,"changes":{}})"), 400,
                 "changes an object");
  expect_refused(call(verb::post, "/v1/stations/a/report", R"({"load":-1})"), 400, "negative load");
  expect_refused(call(verb::put, "/v1/programs/movie", R"({"manifest":{"id":"movie"}})"), 400,
                 "manifest without segments");
}

TEST_P(RegistryBadInput, StationNotInTheGridIsForbidden) {
  auto body = json::serialize(json::object{{"name", "zz"}, {"director_url", "http://127.0.0.1:1"}});
  expect_refused(call(verb::put, "/v1/stations/zz", body), 403, "PUT unknown station");
  expect_refused(call(verb::post, "/v1/stations/zz/report", report_body({{"movie", 0}})), 403,
                 "report of unknown station");
}

TEST_P(RegistryBadInput, BodyAndPathMustAgree) {
  auto body = json::serialize(
      json::object{{"name", "b"}, {"director_url", station("b").director.listen.url()}});
  expect_refused(call(verb::put, "/v1/stations/a", body), 400, "station b at a's path");
  auto prog = json::serialize(json::object{{"manifest", manifest("other", 2)}});
  expect_refused(call(verb::put, "/v1/programs/movie", prog), 400, "program other at movie");
  EXPECT_EQ(get("/v1/programs/other").status, 404u);
}

TEST_P(RegistryBadInput, OtherBadRegistrationsAndDistributions) {
  auto bad_url = json::serialize(json::object{{"name", "a"}, {"director_url", "ftp://x/"}});
  expect_refused(call(verb::put, "/v1/stations/a", bad_url), 400, "bad director URL");
  auto far = json::serialize(
      json::object{{"name", "a"}, {"director_url", "http://127.0.0.1:1"}, {"x_km", 1e9}});
  expect_refused(call(verb::put, "/v1/stations/a", far), 400, "x_km out of range");
  auto prog = json::serialize(
      json::object{{"manifest", manifest("movie", 2)}, {"targets", json::array{"nowhere"}}});
  auto r = call(verb::put, "/v1/programs/movie", prog);
  EXPECT_GE(r.status, 400u) << r.body;
  EXPECT_LT(r.status, 500u) << r.body;
  expect_error_body(r.obj, "target not in the grid");
  expect_unchanged("target not in the grid");
}

TEST_P(RegistryBadInput, ReportBeforeRegistrationIsConflict) {
  auto r = call(verb::post, "/v1/stations/b/report", report_body({{"movie", 0}}));
  expect_refused(r, 409, "report of unregistered b");
  EXPECT_EQ(std::string(r.obj.at("error").as_string()), "conflict");
}

TEST_P(RegistryBadInput, OutOfRangeIndicesInReports) {
  for (int64_t index : {int64_t{1'000'000}, int64_t{-1}, int64_t{4'294'967'296}}) {
    // A valid change beside the bad one is not applied either.
    expect_refused(report("a", {{"movie", 0}, {"movie", index}}, 0.75), 400,
                   fmt::format("index {}", index));
  }
  expect_refused(call(verb::post, "/v1/stations/a/report",
                      R"({"changes":[{"program":"movie","index":1.5,"held":true}]})"),
                 400, "fractional index");
  expect_refused(call(verb::post, "/v1/stations/a/report",
                      R"({"changes":[{"program":"../etc","index":0,"held":true}]})"),
                 400, "bad program name");
  // Past the end of a program the registry knows (movie has 3 segments), whatever the kind.
  for (auto c : std::vector<change>{
           {"movie", 3}, {"movie", 3, true, "a-1"}, {"movie", 999'999, true, "a-2", true}}) {
    auto r = report("a", {{"movie", 0}, {"movie", 2, true, "a-1"}, c});
    expect_refused(r, 400, fmt::format("index {} of movie", c.index));
    EXPECT_NE(r.obj.at("detail").as_string().find("3 segments"), std::string::npos) << r.body;
  }
  // A loss past the end only clears what a longer program of that id left: accepted.
  EXPECT_STATUS(report("a", {{"movie", 3, false}, {"movie", 7, false, "a-1"}}, 0.25), 200);
  expect_unchanged("losses past the end");
  EXPECT_STATUS(report("a", {{"movie", 2}}), 200);
  // A program the registry does not know yet: its largest index there is, is fine.
  EXPECT_STATUS(report("a", {{"other", 999'999}}), 200);
}

TEST_P(RegistryBadInput, BadAvailabilityChanges) {
  for (std::string body : {"{\"availability\": ", "not json", "[]", "", "{} trailing"}) {
    expect_refused(call(verb::post, "/v1/programs/movie/availability", body), 400,
                   "availability: " + body);
  }
  expect_refused(call(verb::post, "/v1/programs/movie/availability", R"({"availability":"gone"})"),
                 400, "unknown availability");
  expect_refused(call(verb::post, "/v1/programs/movie/availability", R"({"availability":7})"), 400,
                 "availability a number");
  expect_refused(
      call(verb::post, "/v1/programs/unknown/availability", R"({"availability":"published"})"), 404,
      "unknown program");
  expect_refused(
      call(verb::post, "/v1/programs/..%2Fx/availability", R"({"availability":"published"})"), 404,
      "bad program id");
  expect_too_large("POST", "/v1/programs/movie/availability", 2u << 20);
  // A good one still goes through.
  auto ok = call(verb::post, "/v1/programs/movie/availability", R"({"availability":"withdrawn"})");
  EXPECT_STATUS(ok, 200);
  EXPECT_EQ(get("/v1/programs/movie").obj.at("availability").as_string(), "withdrawn");
}

TEST_P(RegistryBadInput, BadSourceLookups) {
  expect_refused(sources("movie", "3", "s"), 404, "index past the end");
  expect_refused(sources("movie", "999999", "s"), 404, "index 999999 past the end");
  expect_refused(sources("unknown", "0", "s"), 404, "unknown program");
  expect_refused(sources("movie", "0", "zz"), 400, "unknown seeker");
  expect_refused(get("/v1/programs/movie/segments/0/sources"), 400, "no seeker");
  for (auto* index : {"1000000", "-1", "x", "01"}) {
    auto r = sources("movie", index, "s");
    EXPECT_GE(r.status, 400u) << index << ": " << r.body;
    EXPECT_LT(r.status, 500u) << index << ": " << r.body;
    expect_error_body(r.obj, index);
  }
}

TEST_P(RegistryBadInput, EnginesNotOfTheReportingStation) {
  // Another station's engine, an engine of no station, beside a valid change that is not applied.
  for (auto* engine : {"b-1", "zz-1", "a-3"}) {
    auto r = report("a", {{"movie", 0}, {"movie", 0, true, "a-2"}, {"movie", 0, true, engine}});
    expect_refused(r, 400, std::string("engine ") + engine);
    EXPECT_NE(r.obj.at("detail").as_string().find(engine), std::string::npos) << r.body;
  }
  expect_refused(
      call(verb::post, "/v1/stations/a/report",
           R"({"changes":[{"program":"movie","index":0,"held":true,"engine":"../a-1"}]})"),
      400, "bad engine name");
  expect_refused(call(verb::post, "/v1/stations/a/report",
                      R"({"changes":[{"program":"movie","index":0,"held":true,"filling":true}]})"),
                 400, "filling without an engine");
  expect_refused(
      call(
          verb::post, "/v1/stations/a/report",
          R"({"changes":[{"program":"movie","index":0,"held":true,"engine":"a-1","filling":"yes"}]})"),
      400, "filling a string");
}

TEST_P(RegistryBadInput, BadLocationLookups) {
  expect_refused(locations("movie", "3"), 404, "index past the end");
  expect_refused(locations("unknown", "0"), 404, "unknown program");
  for (auto* index : {"1000000", "-1", "x", "01"}) {
    auto r = locations("movie", index);
    EXPECT_GE(r.status, 400u) << index << ": " << r.body;
    EXPECT_LT(r.status, 500u) << index << ": " << r.body;
    expect_error_body(r.obj, index);
  }
}

TEST_P(RegistryBadInput, OversizedBodies) {
  expect_too_large("PUT", "/v1/stations/a", 2u << 20);
  expect_too_large("POST", "/v1/stations/a/report", 300ull << 20);
  expect_too_large("PUT", "/v1/programs/movie", 300ull << 20);
  // The server still answers afterwards.
  EXPECT_STATUS(get("/v1/stations"), 200);
}

// The grid's config says where a station is and what its uplink carries; a registration's body
// does not move it.
TEST_F(RegistryTest, ConfiguredLocationAndUplinkWinOverTheRegistration) {
  kill_registry();
  auto& a = grid_.stations[1];
  ASSERT_EQ(a.name.str(), "a");
  a.y_km = 42;
  a.uplink_bits_per_second = 123'000'000;
  ASSERT_TRUE(write_file_durably(config_file_, grid_.to_toml()));
  start_registry();
  auto r = call(verb::put, "/v1/stations/a",
                json::serialize(json::object{{"name", "a"},
                                             {"director_url", "http://127.0.0.1:1"},
                                             {"home", true},
                                             {"x_km", 7},
                                             {"y_km", 8},
                                             {"uplink_bits_per_second", 9}}));
  ASSERT_STATUS(r, 200);
  ASSERT_STATUS(register_station("s"), 200);
  auto list = get("/v1/stations");
  ASSERT_STATUS(list, 200);
  bool seen = false;
  for (auto& v : list.obj.at("stations").as_array()) {
    auto& o = v.as_object();
    if (o.at("name").as_string() != "a") {
      continue;
    }
    seen = true;
    EXPECT_DOUBLE_EQ(o.at("x_km").to_number<double>(), 100);
    EXPECT_DOUBLE_EQ(o.at("y_km").to_number<double>(), 42);
    EXPECT_EQ(o.at("uplink_bits_per_second").to_number<uint64_t>(), 123'000'000u);
    EXPECT_FALSE(o.at("home").as_bool());
    EXPECT_EQ(o.at("director_url").as_string(), a.director.listen.url());
  }
  EXPECT_TRUE(seen) << list.body;
  // The cost model reads the same: a's distance from s (0, 0) and its uplink.
  ASSERT_STATUS(put_program("movie", 1), 200);
  ASSERT_STATUS(report("a", {{"movie", 0}}), 200);
  auto src = sources("movie", "0", "s");
  ASSERT_EQ(names_of(src), std::vector<std::string>{"a"}) << src.body;
  auto& in = src.obj.at("sources").as_array()[0].as_object().at("inputs").as_object();
  EXPECT_NEAR(in.at("distance_km").to_number<double>(), std::hypot(100.0, 42.0), 1e-9);
  EXPECT_DOUBLE_EQ(in.at("available_bits_per_second").to_number<double>(), 123e6);
}

// A director that takes only distributions, on a station's port: it answers 503 to the first
// `refusals` and 200 after, keeping the bodies it accepted. Runs on a thread of its own.
class fake_director {
 public:
  fake_director(uint16_t port, int refusals) : refusals_(refusals) {
    server_.emplace(io_.get_executor(), "fake-director");
    server_->route(verb::post, "/v1/programs/{}/distribute",
                   [this](net::request_context& c) { return distribute(this, c); });
    if (auto p = server_->listen("127.0.0.1", port); !p) {
      throw std::runtime_error(p.err().detail);
    }
    thread_ = std::thread([this] { io_.run(); });
  }
  ~fake_director() {
    boost::asio::co_spawn(io_, server_->stop(std::chrono::milliseconds(0)), boost::asio::use_future)
        .wait();
    thread_.join();
  }
  int attempts() {
    std::lock_guard lock(mu_);
    return attempts_;
  }
  std::vector<std::string> told() {
    std::lock_guard lock(mu_);
    return told_;
  }

 private:
  static boost::asio::awaitable<net::reply> distribute(fake_director* self,
                                                       net::request_context& c) {
    std::lock_guard lock(self->mu_);
    if (++self->attempts_ <= self->refusals_) {
      co_return net::error_reply(make_error(errc::unavailable, "not now"));
    }
    self->told_.push_back(c.req.body());
    co_return net::json_reply(json::object{{"program", c.params[0]}});
  }

  int refusals_;
  std::mutex mu_;
  int attempts_ = 0;
  std::vector<std::string> told_;
  boost::asio::io_context io_;
  std::optional<net::http_server> server_;
  std::thread thread_;
};

// A target station that answers 503 to its first five notifications still gets the program: the
// registry retries with a growing wait for as long as the station stays registered and reports.
TEST_F(RegistryTest, ATargetThatRefusesAtFirstIsToldLater) {
  fake_director director(station("a").director.listen.port, 5);
  ASSERT_STATUS(register_station("a"), 200);
  ASSERT_STATUS(put_program("movie", 3, {"a"}), 200);
  auto start = std::chrono::steady_clock::now();
  auto last_report = start;
  bool told = eventually(
      [&] {
        // a's director is alive: it reports, as a real one does every 250 ms.
        if (std::chrono::steady_clock::now() - last_report > std::chrono::milliseconds(250)) {
          EXPECT_EQ(report("a", {}).status, 200u);
          last_report = std::chrono::steady_clock::now();
        }
        return !director.told().empty();
      },
      std::chrono::seconds(20));
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(told) << director.attempts() << " attempts\n" << log();
  EXPECT_EQ(director.attempts(), 6);
  // The waits grow (0.2 + 0.4 + 0.8 + 1.6 + 3.2 s), but stay within the cap.
  EXPECT_GE(took, std::chrono::milliseconds(5500));
  auto d = api::decode<api::distribution>(director.told().front());
  ASSERT_TRUE(d) << d.err().detail;
  EXPECT_EQ(d->manifest.id.str(), "movie");
  EXPECT_EQ(d->manifest.segments.size(), 3u);
  EXPECT_EQ(d->targets, std::vector<std::string>{"a"});
  // Told once, it is not told again.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(director.attempts(), 6);
  EXPECT_EQ(director.told().size(), 1u);
}

// A copy sample naming a station is no registration of that station.
TEST_F(RegistryTest, CopySampleFromAStationDoesNotRegisterIt) {
  ASSERT_EQ(register_station("a").status, 200u);
  ASSERT_EQ(put_program("movie", 3).status, 200u);
  // a copied from b; b itself never registered.
  ASSERT_EQ(report("a", {}, 0,
                   json::array{json::object{{"source", "b"}, {"bytes", 1000}, {"seconds", 1.0}}})
                .status,
            200u);
  auto r = report("b", {{"movie", 0}});
  EXPECT_STATUS(r, 409);
  EXPECT_EQ(held("movie").count("b"), 0u);
}

// SIGTERM: stop accepting, drain what is in flight within the bound (5 s), exit. Notifications
// still being retried toward a director that does not answer must not hold the exit past it.
TEST_F(RegistryTest, SigtermStopsWithinTheDrainBound) {
  ASSERT_EQ(register_station("a").status, 200u);  // nothing listens at a's director
  ASSERT_EQ(put_program("movie", 3, {"a"}).status, 200u);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto start = std::chrono::steady_clock::now();
  registry_.signal(SIGTERM);
  auto st = registry_.wait(std::chrono::seconds(5));
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  EXPECT_TRUE(st.has_value()) << "still running after " << took.count() << " ms";
  if (st) {
    EXPECT_EQ(*st, 0);
  }
}

// --- SIGKILL during a stream of location updates ---

TEST_P(RegistryOnBoth, AcknowledgedReportsSurviveSigkill) {
  constexpr int reports = 300, per_report = 10;
  ASSERT_EQ(register_station("a").status, 200u);
  ASSERT_EQ(put_program("stream", reports * per_report, {"a"}).status, 200u);

  std::mt19937 rng(std::random_device{}());
  int kill_after = 20 + static_cast<int>(rng() % 230);  // acknowledged reports before the kill
  auto extra = std::chrono::microseconds(rng() % 3000);
  std::atomic<int> acked{0};
  std::atomic<bool> done{false};
  std::thread killer([&] {
    while (acked.load() < kill_after && !done.load()) {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    std::this_thread::sleep_for(extra);
    registry_.signal(SIGKILL);
  });
  unsigned last_status = 0;
  for (int i = 0; i < reports; ++i) {
    std::vector<change> list;
    for (int j = 0; j < per_report; ++j) {
      list.push_back({"stream", i * per_report + j});
    }
    auto r = report("a", list);
    last_status = r.status;
    if (r.status != 200) {
      break;  // the registry is gone: this one is not acknowledged
    }
    acked.store(i + 1);
  }
  done.store(true);
  killer.join();
  ASSERT_TRUE(registry_.wait(std::chrono::seconds(10)).has_value());
  int n = acked.load();
  EXPECT_EQ(last_status, 0u) << "a report failed with an HTTP error, not by the kill";
  ASSERT_GT(n, 0);
  std::cerr << fmt::format("[          ] {} reports acknowledged before the kill (after {})\n", n,
                           kill_after);

  start_registry();
  auto h = held("stream");
  // Every acknowledged change is there; at most the one report in flight may be there too.
  EXPECT_GE(h["a"], int64_t{n} * per_report);
  EXPECT_LE(h["a"], int64_t{n + 1} * per_report);
  // Each acknowledged report, by one of its segments (a report is applied whole).
  ASSERT_EQ(register_station("a").status, 200u);
  auto last_report = std::chrono::steady_clock::time_point{};
  for (int i = 0; i < n; ++i) {
    if (std::chrono::steady_clock::now() - last_report > std::chrono::seconds(1)) {
      // Reports keep the station up, as a live director's do (several a second); on a loaded
      // machine under ASan this loop can outlast the registry's 5 s of silence.
      ASSERT_EQ(report("a", {}).status, 200u);
      last_report = std::chrono::steady_clock::now();
    }
    auto r = sources("stream", std::to_string(i * per_report + i % per_report), "s");
    ASSERT_EQ(names_of(r), std::vector<std::string>{"a"}) << "report " << i << ": " << r.body;
  }
}

// --- restarts ---

// The segment count that bounds a report's indices is the program's as last stored, also after a
// restart of the registry.
TEST_P(RegistryOnBoth, ReportIndicesAreBoundedByTheProgramAsStored) {
  ASSERT_EQ(register_station("a").status, 200u);
  ASSERT_EQ(put_program("movie", 3).status, 200u);
  EXPECT_STATUS(report("a", {{"movie", 3}}), 400);
  ASSERT_EQ(put_program("movie", 5).status, 200u);
  EXPECT_STATUS(report("a", {{"movie", 3}}), 200);
  kill_registry();
  start_registry();
  ASSERT_EQ(register_station("a").status, 200u);
  EXPECT_STATUS(report("a", {{"movie", 5, true, "a-1"}}), 400);
  EXPECT_STATUS(report("a", {{"movie", 4}}), 200);
  EXPECT_EQ(held("movie")["a"], 2);
}

TEST_P(RegistryOnBoth, RestartKeepsStationsAndProgramsButAsksForRegistration) {
  ASSERT_EQ(register_station("home").status, 200u);
  ASSERT_EQ(register_station("a").status, 200u);
  ASSERT_EQ(put_program("movie", 3, {"a"}).status, 200u);
  ASSERT_EQ(report("home", {{"movie", 0}, {"movie", 1}, {"movie", 2}}).status, 200u);
  ASSERT_EQ(report("a", {{"movie", 0}, {"movie", 2}}).status, 200u);
  auto programs = get("/v1/programs").body;

  kill_registry();
  start_registry();

  auto st = get("/v1/stations");
  ASSERT_EQ(st.status, 200u);
  auto& list = st.obj.at("stations").as_array();
  ASSERT_EQ(list.size(), 2u) << st.body;
  std::map<std::string, json::object> by_name;
  for (auto& v : list) {
    by_name[std::string(v.as_object().at("name").as_string())] = v.as_object();
  }
  ASSERT_TRUE(by_name.count("home") && by_name.count("a")) << st.body;
  EXPECT_EQ(by_name["a"].at("director_url").as_string(), station("a").director.listen.url());
  EXPECT_TRUE(by_name["home"].at("home").as_bool());
  EXPECT_DOUBLE_EQ(by_name["a"].at("x_km").to_number<double>(), 100);
  // Nobody has reported to this registry yet.
  EXPECT_FALSE(by_name["a"].at("up").as_bool());
  EXPECT_FALSE(by_name["home"].at("up").as_bool());

  EXPECT_EQ(get("/v1/programs").body, programs);
  EXPECT_EQ(held("movie"), (std::map<std::string, int64_t>{{"a", 2}, {"home", 3}}));
  auto m = get("/v1/programs/movie");
  EXPECT_EQ(m.obj.at("segments").as_array().size(), 3u);

  // A station that reports before registering again is told to register: nothing recorded.
  auto r = report("a", {{"movie", 1}});
  EXPECT_STATUS(r, 409);
  EXPECT_EQ(std::string(r.obj.at("error").as_string()), "conflict") << r.body;
  EXPECT_EQ(held("movie")["a"], 2);
  EXPECT_STATUS(register_station("a"), 200);
  EXPECT_STATUS(report("a", {{"movie", 1}}), 200);
  EXPECT_EQ(held("movie")["a"], 3);
  EXPECT_STATUS(register_station("s"), 200);
  EXPECT_EQ(names_of(sources("movie", "1", "s")), (std::vector<std::string>{"a"}));
}

}  // namespace
}  // namespace vodgrid::test
