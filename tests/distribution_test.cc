// End-to-end tests of a grid of several stations (claims 10-15): distribution from the registry,
// copies from the cheapest source, a console served at a station that holds nothing, and faults.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <boost/json/parse.hpp>

#include <csignal>
#include <regex>

#include "api/api.h"
#include "base/fs.h"
#include "support/support.h"

namespace vodgrid::test {
namespace {

double bytes_sent(const std::string& engine_url) {
  auto r = http_get(engine_url + "/metrics");
  if (!r) {
    return -1;
  }
  std::smatch m;
  std::regex re("vodgrid_http_file_bytes_sent_total ([0-9.e+]+)");
  return std::regex_search(r->body, m, re) ? std::stod(m[1]) : -1;
}

double station_bytes_sent(const grid_fixture& g, const std::string& station) {
  double total = 0;
  for (auto& e : g.engines_of(station)) {
    total += bytes_sent(g.engine_url(e));
  }
  return total;
}

// Segments of `program` the registry records at `station`.
int64_t held_at(const grid_fixture& g, const std::string& program, const std::string& station) {
  auto r = http_get(g.registry_url() + "/v1/programs/" + program);
  if (!r || r->status != 200) {
    return -1;
  }
  auto o = boost::json::parse(r->body).as_object();
  auto& held = o.at("held").as_object();
  return held.contains(station) ? held.at(station).to_number<int64_t>() : 0;
}

run_result play(const std::string& director, const std::string& program, int viewers = 1) {
  return run({vodgrid_binary(), "play", director + "/v1/programs/" + program + "/index.m3u8",
              "--viewers", std::to_string(viewers), "--json"});
}

TEST(Distribution, ProgramsAreCopiedToTheirTargetStations) {
  grid_fixture g({{"home", 2, 0}, {"a", 2, 100}, {"b", 2, 200}});
  temp_dir src;
  make_sample(src.path(), 6, 1);
  auto in = g.ingest(src.path().string(), "film", "a");
  ASSERT_EQ(in.status, 0) << in.err;
  int64_t n = 6;
  EXPECT_TRUE(eventually([&] { return held_at(g, "film", "a") == n; }, std::chrono::seconds(20)))
      << held_at(g, "film", "a") << "\n"
      << g.log_of("a");
  EXPECT_EQ(held_at(g, "film", "home"), n);
  EXPECT_EQ(held_at(g, "film", "b"), 0);  // not a target
  // Station a serves it from its own engines.
  double home_before = station_bytes_sent(g, "home");
  auto p = play(g.director_url("a"), "film");
  EXPECT_EQ(p.status, 0) << p.out << p.err;
  EXPECT_EQ(station_bytes_sent(g, "home"), home_before);
}

TEST(Distribution, AConsoleAtAStationHoldingNothingPlaysFromTheCheapestSource) {
  // home at 0 km, a at 100 km, b at 150 km: for b, a is nearer than home and home is the source of
  // last resort, so every copy to b comes from a.
  grid_fixture g({{"home", 2, 0}, {"a", 2, 100}, {"b", 3, 150}});
  temp_dir src;
  make_sample(src.path(), 8, 1);
  auto in = g.ingest(src.path().string(), "film", "a,b", /*prefetch*/ "0");
  ASSERT_EQ(in.status, 0) << in.err;
  ASSERT_TRUE(eventually([&] {
    auto r = http_get(g.director_url("b") + "/v1/programs/film");
    return r && r->status == 200;
  }));
  EXPECT_EQ(held_at(g, "film", "b"), 0);
  // Station a fills itself by misses (its only source is the home)...
  auto pa = play(g.director_url("a"), "film");
  ASSERT_EQ(pa.status, 0) << pa.out << pa.err;
  ASSERT_TRUE(eventually([&] { return held_at(g, "film", "a") == 8; }));
  // ...then a console at b, which holds nothing, plays the whole program, every segment verified.
  double home_before = station_bytes_sent(g, "home");
  double a_before = station_bytes_sent(g, "a");
  auto pb = play(g.director_url("b"), "film", 3);
  ASSERT_EQ(pb.status, 0) << pb.out << pb.err << g.log_of("b");
  auto report = boost::json::parse(pb.out).as_object();
  EXPECT_EQ(report.at("segments").to_number<int64_t>(), 3 * 8);
  EXPECT_EQ(report.at("digest_mismatches").to_number<int64_t>(), 0);
  // The copies came from a, the cheapest source; the home sent nothing.
  EXPECT_EQ(station_bytes_sent(g, "home"), home_before);
  EXPECT_GT(station_bytes_sent(g, "a"), a_before);
  // The consoles were served by b's own engines, and the registry knows b's new copies.
  for (auto& [engine, n] : report.at("engines").as_object()) {
    bool at_b = false;
    for (auto& e : g.engines_of("b")) {
      at_b = at_b || std::string(engine) == g.engine_url(e);
    }
    EXPECT_TRUE(at_b) << std::string(engine) << " is not an engine of b";
  }
  EXPECT_TRUE(eventually([&] { return held_at(g, "film", "b") == 8; })) << held_at(g, "film", "b");
}

TEST(Distribution, ACopyMovesToTheNextSourceWhenTheCheapestIsDead) {
  grid_fixture g({{"home", 2, 0}, {"a", 2, 100}, {"b", 2, 150}});
  temp_dir src;
  make_sample(src.path(), 4, 1);
  ASSERT_EQ(g.ingest(src.path().string(), "film", "a,b", "0").status, 0);
  ASSERT_TRUE(eventually(
      [&] { return http_get(g.director_url("b") + "/v1/programs/film")->status == 200; }));
  ASSERT_EQ(play(g.director_url("a"), "film").status, 0);
  ASSERT_TRUE(eventually([&] { return held_at(g, "film", "a") == 4; }));
  // a's director dies: the registry still lists a as a holder (until it misses its reports), so
  // b's first choice fails and the copy moves on to the home.
  g.kill("a", SIGKILL);
  auto pb = play(g.director_url("b"), "film");
  EXPECT_EQ(pb.status, 0) << pb.out << pb.err << g.log_of("b");
  EXPECT_TRUE(eventually([&] { return held_at(g, "film", "b") == 4; }));
}

TEST(Distribution, ACopyMovesToTheNextSourceWhenTheSourceEnginesDie) {
  grid_fixture g({{"home", 2, 0}, {"a", 2, 100}, {"b", 2, 150}});
  temp_dir src;
  make_sample(src.path(), 4, 1);
  ASSERT_EQ(g.ingest(src.path().string(), "film", "a,b", "0").status, 0);
  ASSERT_TRUE(eventually(
      [&] { return http_get(g.director_url("b") + "/v1/programs/film")->status == 200; }));
  ASSERT_EQ(play(g.director_url("a"), "film").status, 0);
  ASSERT_TRUE(eventually([&] { return held_at(g, "film", "a") == 4; }));
  // a's director lives on and still names its engines for a moment; the copies from them fail
  // (connection refused), the engines of b keep nothing partial, and the home provides instead.
  for (auto& e : g.engines_of("a")) {
    g.kill(e, SIGKILL);
  }
  double home_before = station_bytes_sent(g, "home");
  auto pb = play(g.director_url("b"), "film");
  EXPECT_EQ(pb.status, 0) << pb.out << pb.err << g.log_of("b");
  EXPECT_GT(station_bytes_sent(g, "home"), home_before);
  EXPECT_TRUE(eventually([&] { return held_at(g, "film", "b") == 4; }));
  for (auto& e : g.engines_of("b")) {
    auto inv = http_get(g.engine_url(e) + "/v1/segments");
    ASSERT_TRUE(inv);
    auto segs = boost::json::parse(inv->body).as_object().at("segments").as_array();
    for (auto& seg : segs) {
      EXPECT_EQ(seg.at("program").as_string(), "film");
    }
  }
}

TEST(Distribution, DirectorsServeOnWithoutTheRegistryAndCatchUp) {
  grid_fixture g({{"home", 2, 0}, {"a", 2, 100}});
  temp_dir src;
  make_sample(src.path(), 4, 1);
  ASSERT_EQ(g.ingest(src.path().string(), "film", "a").status, 0);
  ASSERT_TRUE(eventually([&] { return held_at(g, "film", "a") == 4; }));
  g.kill("registry", SIGKILL);
  // Both stations go on serving what they hold.
  EXPECT_EQ(play(g.director_url("a"), "film").status, 0);
  EXPECT_EQ(play(g.director_url("home"), "film").status, 0);
  // A change made while the registry is down (a copy deleted on a's engines) reaches it later.
  for (auto& e : g.engines_of("a")) {
    auto r = http(boost::beast::http::verb::delete_, g.engine_url(e) + "/v1/segments/film/0.ts");
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->status == 204 || r->status == 404) << r->status;  // one of the two holds it
  }
  g.start("registry");
  EXPECT_TRUE(eventually([&] { return held_at(g, "film", "a") == 3; }, std::chrono::seconds(15)))
      << held_at(g, "film", "a");
}

// A director rebuilds its view from its engines after a restart and corrects the registry's: a copy
// lost while it was down is reported gone.
TEST(Distribution, ARestartedDirectorCorrectsTheRegistry) {
  grid_fixture g({{"home", 2, 0}, {"a", 2, 100}});
  temp_dir src;
  make_sample(src.path(), 4, 1);
  // Nothing pre-positioned (a restart would copy it all again): a's copies come from a viewer.
  auto in = g.ingest(src.path().string(), "film", "a", "0");
  ASSERT_EQ(in.status, 0) << in.err;
  ASSERT_TRUE(eventually([&] {
    auto r = http_get(g.director_url("a") + "/v1/programs/film");
    return r && r->status == 200;
  }));
  auto first = play(g.director_url("a"), "film");
  ASSERT_EQ(first.status, 0) << first.out << first.err;
  ASSERT_TRUE(eventually([&] { return held_at(g, "film", "a") == 4; }, std::chrono::seconds(20)))
      << held_at(g, "film", "a");
  g.kill("a");
  for (auto& e : g.engines_of("a")) {
    auto r = http(boost::beast::http::verb::delete_, g.engine_url(e) + "/v1/segments/film/0.ts");
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->status == 204 || r->status == 404) << r->status;
  }
  EXPECT_EQ(held_at(g, "film", "a"), 4);  // the registry did not hear of it
  g.start("a");
  EXPECT_TRUE(eventually([&] { return held_at(g, "film", "a") == 3; }, std::chrono::seconds(15)))
      << held_at(g, "film", "a") << "\n"
      << g.log_of("a");
  // The station copies what it lacks again when a console asks for it.
  auto p = play(g.director_url("a"), "film");
  EXPECT_EQ(p.status, 0) << p.out << p.err;
  EXPECT_TRUE(eventually([&] { return held_at(g, "film", "a") == 4; }));
}

// Pre-positioning copies run in parallel, never more than `parallel_copies` at once; a partial
// prefetch copies just the first segments.
TEST(Distribution, PrePositioningCopiesRunInParallelWithinTheLimit) {
  grid_fixture g({{"home", 2, 0},
                  {.name = "a", .engines = 2, .x_km = 100, .parallel_copies = 2},
                  {.name = "b", .engines = 2, .x_km = 200, .parallel_copies = 3}});
  temp_dir src;
  make_sample(src.path(), 12, 1);
  auto in = g.ingest(src.path().string(), "film", "a");
  ASSERT_EQ(in.status, 0) << in.err;
  EXPECT_TRUE(eventually([&] { return held_at(g, "film", "a") == 12; }, std::chrono::seconds(30)))
      << held_at(g, "film", "a");
  EXPECT_EQ(metric(g.director_url("a"), "vodgrid_director_prefetch_copies_peak"), 2);
  EXPECT_EQ(metric(g.director_url("a"), "vodgrid_director_prefetch_copies"), 0);
  auto part = g.ingest(src.path().string(), "part", "b", "5");
  ASSERT_EQ(part.status, 0) << part.err;
  EXPECT_TRUE(eventually([&] { return held_at(g, "part", "b") == 5; }, std::chrono::seconds(30)));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(held_at(g, "part", "b"), 5);  // the rest waits for a console
  double peak = metric(g.director_url("b"), "vodgrid_director_prefetch_copies_peak");
  EXPECT_GE(peak, 2);
  EXPECT_LE(peak, 3);
}

}  // namespace
}  // namespace vodgrid::test
