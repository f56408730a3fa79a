// Issue 18, items 1 and 2: the grid on several hosts (network namespaces on a bridge, links shaped
// with tc). The embedded topology on five hosts ingests at home and plays at the edge with ffmpeg,
// its misses copied over the home's shaped link; and the cost model's choice of source follows the
// measured speed of real links, the copies' bytes counted on the links they crossed. Needs root.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <boost/json/parse.hpp>

#include <iostream>
#include <map>

#include "support/netns.h"
#include "support/support.h"

namespace vodgrid::test {
namespace {

using namespace std::chrono_literals;

std::string streamhash(const std::string& input) {
  auto r = run({"/usr/bin/ffmpeg", "-nostdin", "-v", "error", "-i", input, "-map", "0", "-c",
                "copy", "-f", "streamhash", "-"});
  EXPECT_EQ(r.status, 0) << r.err;
  return r.out;
}

// The registry's JSON at `path`, or an empty object; `token`: an operator's in a grid with tokens.
boost::json::object registry_get(const std::string& registry, const std::string& path,
                                 const std::string& token = {}) {
  net::http_client::header_list h;
  if (!token.empty()) {
    h.emplace_back("Authorization", "Bearer " + token);
  }
  auto r = http_get(registry + path, h);
  if (!r || r->status != 200) {
    return {};
  }
  return boost::json::parse(r->body).as_object();
}

// Segments of `program` the registry records at `station`.
int64_t held_at(const std::string& registry, const std::string& program, const std::string& station,
                const std::string& token = {}) {
  auto o = registry_get(registry, "/v1/programs/" + program, token);
  auto* held = o.if_contains("held");
  if (!held || !held->is_object() || !held->as_object().contains(station)) {
    return 0;
  }
  return held->as_object().at(station).to_number<int64_t>();
}

// The sizes of the segments of `program`, from the registry's manifest.
std::vector<uint64_t> segment_sizes(const std::string& registry, const std::string& program,
                                    const std::string& token = {}) {
  std::vector<uint64_t> sizes;
  auto o = registry_get(registry, "/v1/programs/" + program, token);
  if (auto* segs = o.if_contains("segments"); segs && segs->is_array()) {
    for (auto& s : segs->as_array()) {
      sizes.push_back(s.at("size").to_number<uint64_t>());
    }
  }
  return sizes;
}

TEST(MultiHost, TheEmbeddedGridOnFiveHostsPlaysAtTheEdgeWhatItCopiedOverAShapedLink) {
  if (auto why = netns_unavailable()) {
    GTEST_SKIP() << *why;
  }
  netns_grid g([](const std::filesystem::path& d) {
    return grid_config::embedded_default(d, 8700);  // ports are the host's own: the defaults
  });
  for (auto& [name, want] : std::map<std::string, std::string>{
           {"registry", g.config().registry->listen.host}, {"home", g.director_url("home")}}) {
    EXPECT_EQ(want.find("127.0.0.1"), std::string::npos) << name << " is on loopback: " << want;
  }
  // The home's uplink, the only way out of it, at 20 Mbit/s.
  g.hosts().shape("home", 20);
  temp_dir src;
  auto playlist = make_sample(src.path(), 6, 1);
  auto op = login_token(g.auth_url(), "operator", "admin", "admin");
  // At home through the content manager; the edge is a target that holds nothing ahead (prefetch
  // 0): every segment a viewer asks of it is a miss.
  auto in = run({vodgrid_binary(), "ingest", src.path().string(), "--title", "Film", "--id", "film",
                 "--grid", g.registry_url(), "--remux", "--segment-seconds", "1", "--prefetch", "0",
                 "--token", op});
  ASSERT_EQ(in.status, 0) << in.err << g.log_of("content");
  auto sizes = segment_sizes(g.registry_url(), "film", op);
  auto n = static_cast<int64_t>(sizes.size());
  ASSERT_GE(n, 5);
  ASSERT_TRUE(eventually([&] { return held_at(g.registry_url(), "film", "home", op) == n; }, 30s));
  EXPECT_EQ(held_at(g.registry_url(), "film", "edge", op), 0);

  uint64_t home_before = g.hosts().tx_bytes("home");
  auto viewer = login_token(g.auth_url(), "viewer", "demo", "demo");
  std::string via_edge =
      streamhash(g.director_url("edge") + "/v1/programs/film/index.m3u8?token=" + viewer);
  std::string from_source = streamhash(playlist.string());
  ASSERT_FALSE(from_source.empty());
  EXPECT_EQ(via_edge, from_source) << g.log_of("edge");
  // Every segment crossed the home's link, once.
  EXPECT_TRUE(eventually([&] { return held_at(g.registry_url(), "film", "edge", op) == n; }, 20s));
  uint64_t sent = g.hosts().tx_bytes("home") - home_before;
  uint64_t program = 0;
  for (auto b : sizes) {
    program += b;
  }
  EXPECT_GE(sent, program) << "the home's link carried " << sent << " bytes";
  EXPECT_LT(sent, program * 2) << "the home's link carried " << sent << " bytes";
}

// Item 2: stations that hold a program, one behind a 20 Mbit/s link, one far away on the map, one
// near with a fast link (100 Mbit/s); a fifth, `edge`, holds nothing. A miss at the edge copies
// from the near one; once that link is shaped to 10 Mbit/s, the speed measured on the copies makes
// the registry rank it below the far one, and later copies cross the far one's link.
class cost_model_grid {
 public:
  cost_model_grid()
      : g_([](const std::filesystem::path& d) {
          grid_config c;
          c.registry = registry_config{{"", 8700}, "sqlite://" + (d / "registry.db").string()};
          auto station = [&](std::string name, double x_km, double y_km, uint64_t mbit) {
            station_config s;
            s.name = *station_id::parse(name);
            s.home = name == "home";
            s.x_km = x_km;
            s.y_km = y_km;
            s.uplink_bits_per_second = mbit * 1'000'000;
            s.director.listen = {"", 8710};
            s.director.data_dir = d / name;
            s.supervisor = {"", 8719};
            // One engine a station, two at the home (the loader wants two copies of a program).
            int engines = s.home ? 2 : 1;
            s.director.copies = static_cast<uint32_t>(engines);
            for (int i = 1; i <= engines; ++i) {
              engine_config e;
              e.name = *engine_id::parse(fmt::format("{}-{}", name, i));
              e.listen = {"", static_cast<uint16_t>(8710 + i)};
              e.data_dirs = {d / e.name.str()};
              s.engines.push_back(e);
            }
            c.stations.push_back(s);
          };
          // The edge at (3000, 0); distances from it: near 50 km, slow 1500 km, far 2000 km, home
          // 3000 km (and the source of last resort).
          station("home", 0, 0, 1000);
          station("edge", 3000, 0, 1000);
          station("near", 3050, 0, 100);
          station("slow", 3000, 1500, 20);
          station("far", 3000, -2000, 1000);
          return c;
        }) {}

  netns_grid& grid() { return g_; }

  // Asks the edge for segment `index` (a miss: it copies it from another station and serves it as
  // it arrives), reads it whole, and waits until the registry has the edge's report of it (which
  // carries the copy's measured speed). Returns the station whose link carried the copy.
  std::string copy_to_edge(int index) {
    std::map<std::string, uint64_t> before;
    for (auto* s : {"home", "near", "slow", "far"}) {
      before[s] = g_.hosts().tx_bytes(s);
    }
    auto r =
        http_get(fmt::format("{}/v1/programs/film/segments/{}.ts", g_.director_url("edge"), index));
    EXPECT_TRUE(r && r->status == 302) << (r ? r->body : r.err().detail);
    if (!r || r->status != 302) {
      return {};
    }
    auto body = http_get(r->header("Location"));
    EXPECT_TRUE(body && body->status == 200);
    if (!body || body->status != 200) {
      return {};
    }
    EXPECT_TRUE(
        eventually([&] { return held_at(g_.registry_url(), "film", "edge") == index + 1; }, 20s))
        << g_.log_of("edge");
    std::string source;
    uint64_t size = body->body.size();
    for (auto& [s, n] : before) {
      uint64_t sent = g_.hosts().tx_bytes(s) - n;
      if (sent >= size) {
        EXPECT_TRUE(source.empty()) << "both " << source << " and " << s << " sent the segment";
        source = s;
      } else {
        EXPECT_LT(sent, size / 4) << s << " sent more than its reports";
      }
    }
    EXPECT_FALSE(source.empty()) << "no link carried segment " << index << " (" << size
                                 << " bytes)";
    return source;
  }

  // The registry's measured speed of copies from `station`, in Mbit/s.
  double measured_mbit(const std::string& station) {
    auto o = registry_get(g_.registry_url(), "/v1/stations");
    for (auto& s : o.at("stations").as_array()) {
      if (s.at("name").as_string() == station) {
        return s.at("copy_bits_per_second").to_number<double>() / 1e6;
      }
    }
    return -1;
  }

 private:
  netns_grid g_;
};

TEST(MultiHost, CopiesMoveOffALinkWhoseMeasuredSpeedFalls) {
  if (auto why = netns_unavailable()) {
    GTEST_SKIP() << *why;
  }
#ifdef VODGRID_SANITIZED
  // A copy's measured speed includes the daemons' own time, which the sanitizers multiply: on a
  // busy machine they, not the links, set it.
  GTEST_SKIP() << "measures link speeds: the release build runs it";
#endif
  cost_model_grid t;
  auto& g = t.grid();
  g.hosts().shape("near", 100);
  g.hosts().shape("slow", 20);
  temp_dir src;
  make_sample(src.path(), 48, 2);  // 24 segments of about 190 KB
  auto in = run({vodgrid_binary(), "ingest", src.path().string(), "--title", "Film", "--id", "film",
                 "--grid", g.registry_url(), "--remux", "--stations", "near,slow,far"});
  ASSERT_EQ(in.status, 0) << in.err;
  auto n = static_cast<int64_t>(segment_sizes(g.registry_url(), "film").size());
  ASSERT_GE(n, 20);
  for (auto* s : {"near", "slow", "far"}) {
    ASSERT_TRUE(eventually([&] { return held_at(g.registry_url(), "film", s) == n; }, 60s))
        << s << " holds " << held_at(g.registry_url(), "film", s) << "\n"
        << g.log_of(s);
  }

  // The near station, on its fast link, is the cheapest.
  int index = 0;
  for (; index < 3; ++index) {
    EXPECT_EQ(t.copy_to_edge(index), "near") << "copy " << index;
  }
  double fast = t.measured_mbit("near");
  EXPECT_GT(fast, 10);
  // Its link falls to 10 Mbit/s: the copies still go there until their measured speed ranks it
  // below the far station (the next cheapest: it costs its distance, the slow one its link).
  g.hosts().shape("near", 10);
  std::vector<std::string> after;
  int far_in_a_row = 0;
  for (; index < n && far_in_a_row < 3; ++index) {
    after.push_back(t.copy_to_edge(index));
    far_in_a_row = after.back() == "far" ? far_in_a_row + 1 : 0;
  }
  std::string seen;
  for (auto& s : after) {
    seen += s + " ";
  }
  // (Three in a row: with no copies from it, the near one's measure stays where it crossed the far
  // one's cost, and a segment's size can tip one copy back to it, which lowers the measure again.)
  ASSERT_EQ(far_in_a_row, 3) << "copies after the near link slowed: " << seen;
  for (auto& s : after) {
    EXPECT_TRUE(s == "near" || s == "far") << seen;
  }
  EXPECT_EQ(after.front(), "near") << "the first copy after the change has no measure of it yet";
  double slowed = t.measured_mbit("near");
  EXPECT_LT(slowed, fast / 2) << "measured " << fast << " then " << slowed << " Mbit/s";
  std::cout << "copies after the near link slowed: " << seen << "(near measured " << fast
            << " then " << slowed << " Mbit/s)\n";
}

// Whether the registry counts `station` up (heard within its station_silence).
bool registry_says_up(const std::string& registry, const std::string& station,
                      const std::string& token) {
  auto o = registry_get(registry, "/v1/stations", token);
  auto* list = o.if_contains("stations");
  if (!list || !list->is_array()) {
    return false;
  }
  for (auto& s : list->as_array()) {
    if (s.at("name").as_string() == station) {
      return s.at("up").as_bool();
    }
  }
  return false;
}

// A segment through a director as a console gets it: the 302, then the engine's bytes. The final
// status (the director's when it does not redirect), 0 when nothing answered.
unsigned get_segment(const std::string& director, int index, const std::string& token) {
  auto r =
      http_get(fmt::format("{}/v1/programs/film/segments/{}.ts?token={}", director, index, token));
  if (!r) {
    return 0;
  }
  if (r->status != 302) {
    return r->status;
  }
  auto body = http_get(r->header("Location"));
  return body ? body->status : 0;
}

// Issue 18's "bad input", a split network: the edge cut off from the registry, not from its
// viewers, serves what it holds and, the link back, catches up: its reports reach the registry
// again, with what changed meanwhile.
TEST(MultiHost, AStationCutOffFromTheRegistryServesWhatItHoldsAndCatchesUp) {
  if (auto why = netns_unavailable()) {
    GTEST_SKIP() << *why;
  }
  netns_grid g(
      [](const std::filesystem::path& d) { return grid_config::embedded_default(d, 8700); });
  temp_dir src;
  make_sample(src.path(), 8, 1);
  auto op = login_token(g.auth_url(), "operator", "admin", "admin");
  auto in = run({vodgrid_binary(), "ingest", src.path().string(), "--title", "Film", "--id", "film",
                 "--grid", g.registry_url(), "--remux", "--segment-seconds", "1", "--prefetch", "0",
                 "--token", op});
  ASSERT_EQ(in.status, 0) << in.err << g.log_of("content");
  auto n = static_cast<int64_t>(segment_sizes(g.registry_url(), "film", op).size());
  ASSERT_GE(n, 6);
  auto viewer = login_token(g.auth_url(), "viewer", "demo", "demo");
  auto edge = g.director_url("edge");
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(get_segment(edge, i, viewer), 200u) << i;
  }
  ASSERT_TRUE(eventually([&] { return held_at(g.registry_url(), "film", "edge", op) == 3; }, 20s));

  g.hosts().cut("edge", "registry");
  // Past the registry's station_silence (5 s) the registry counts the edge down; its viewers, who
  // reach it, are served what it holds all along. Waited for, not slept: under ASan on a loaded
  // machine a fixed 7 s once ended before the registry had said so.
  auto cut_at = std::chrono::steady_clock::now();
  bool down = false;
  while (!down && std::chrono::steady_clock::now() - cut_at < 30s) {
    for (int i = 0; i < 3; ++i) {
      ASSERT_EQ(get_segment(edge, i, viewer), 200u) << "segment " << i << " during the split";
    }
    std::this_thread::sleep_for(500ms);
    down = std::chrono::steady_clock::now() - cut_at >= 5s &&
           !registry_says_up(g.registry_url(), "edge", op);
  }
  EXPECT_TRUE(down) << "the registry still counts the cut-off edge up 30 s after the cut";
  EXPECT_TRUE(eventually(
      [&] { return g.log_of("edge").find("registry unreachable") != std::string::npos; }, 10s))
      << g.log_of("edge");
  // A segment it lacks: its sources are the registry's to name. Answered either way, in bounded
  // time (from the home, the source of last resort, or refused), never hung.
  auto t0 = std::chrono::steady_clock::now();
  auto miss = get_segment(edge, 3, viewer);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 30s);
  EXPECT_TRUE(miss == 200 || miss >= 500) << miss;
  std::cout << "a miss during the split: " << miss << "\n";

  g.hosts().mend("edge", "registry");
  EXPECT_TRUE(eventually([&] { return registry_says_up(g.registry_url(), "edge", op); }, 15s))
      << g.log_of("edge");
  // What it holds now (the copy of segment 3 made during the split, if it was) reaches the
  // registry; then the rest plays as ever.
  int64_t held_now = miss == 200 ? 4 : 3;
  EXPECT_TRUE(
      eventually([&] { return held_at(g.registry_url(), "film", "edge", op) == held_now; }, 15s))
      << held_at(g.registry_url(), "film", "edge", op);
  for (int i = 3; i < n; ++i) {
    EXPECT_EQ(get_segment(edge, i, viewer), 200u) << i;
  }
  EXPECT_TRUE(eventually([&] { return held_at(g.registry_url(), "film", "edge", op) == n; }, 20s));
  EXPECT_NE(g.log_of("edge").find("reached"), std::string::npos) << g.log_of("edge");
}

}  // namespace
}  // namespace vodgrid::test
