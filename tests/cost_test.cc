// Unit tests pinning the choices of the registry's cost model (claim 15).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "registry/cost.h"

namespace vodgrid::registry {
namespace {

constexpr uint64_t two_mb = 2'000'000;

station_inputs st(std::string name, double x, uint64_t uplink_mbps = 1000, double load = 0,
                  uint64_t sending_mbps = 0, bool home = false) {
  station_inputs s;
  s.name = std::move(name);
  s.x_km = x;
  s.uplink_bits_per_second = uplink_mbps * 1'000'000;
  s.sending_bits_per_second = sending_mbps * 1'000'000;
  s.load = load;
  s.home = home;
  return s;
}

std::string cheapest(const std::vector<station_inputs>& sources, const station_inputs& seeker) {
  auto r = cost_model{}.rank(sources, seeker, two_mb);
  return r.empty() ? std::string() : r.front().first.name;
}

TEST(CostModel, NearerWinsWhenAllElseIsEqual) {
  EXPECT_EQ(cheapest({st("far", 8000), st("near", 100)}, st("me", 0)), "near");
}

TEST(CostModel, SpareBandwidthBeatsDistance) {
  // 16 Mbit at 10 Mbit/s is 1.6 s; 8000 km of round trips is 0.32 s.
  EXPECT_EQ(cheapest({st("near_thin", 100, 10), st("far_fat", 8000, 10000)}, st("me", 0)),
            "far_fat");
  // The same pipe, nearly full, spares little.
  EXPECT_EQ(cheapest({st("busy", 100, 1000, 0, 990), st("idle", 100, 1000)}, st("me", 0)), "idle");
}

TEST(CostModel, LoadedSourcesCostMore) {
  EXPECT_EQ(cheapest({st("loaded", 100, 1000, 0.9), st("light", 500, 1000, 0.1)}, st("me", 0)),
            "light");
  auto b = cost_model{}.cost(st("full", 0, 1000, 1.0), st("me", 0), two_mb);
  EXPECT_DOUBLE_EQ(b.load_factor, 20);
}

TEST(CostModel, HomeIsTheSourceOfLastResort) {
  auto home = st("home", 0, 100000, 0, 0, true);
  EXPECT_EQ(cheapest({home, st("slow_edge", 9000, 100, 0.5)}, st("me", 0)), "slow_edge");
  EXPECT_EQ(cheapest({home}, st("me", 0)), "home");
}

TEST(CostModel, MeasuredCopyThroughputOverridesTheConfiguredUplink) {
  auto a = st("a", 100, 10000);
  a.copy_bits_per_second = 5'000'000;  // copies from it really got 5 Mbit/s
  EXPECT_EQ(cheapest({a, st("b", 200, 1000)}, st("me", 0)), "b");
  auto b = cost_model{}.cost(a, st("me", 0), two_mb);
  EXPECT_NEAR(b.transfer_seconds, 16e6 / 5e6, 1e-9);
}

TEST(CostModel, DownStationsAndTheSeekerItselfAreNoSource) {
  auto down = st("down", 1);
  down.up = false;
  EXPECT_EQ(cheapest({down, st("me", 0), st("ok", 5000)}, st("me", 0)), "ok");
  EXPECT_EQ(cheapest({down}, st("me", 0)), "");
}

TEST(CostModel, BreakdownAddsUp) {
  auto b = cost_model{}.cost(st("s", 3000, 100, 0.5), st("me", 0), two_mb);
  EXPECT_DOUBLE_EQ(b.distance_km, 3000);
  EXPECT_NEAR(b.transfer_seconds, 16e6 / 100e6, 1e-12);
  EXPECT_NEAR(b.latency_seconds, 4 * 2 * 3000 / 200000.0, 1e-12);
  EXPECT_DOUBLE_EQ(b.load_factor, 2);
  EXPECT_NEAR(b.cost, (b.transfer_seconds + b.latency_seconds) * 2, 1e-12);
}

TEST(CostModel, CheapestIsTheFirstOfTheRanking) {
  // Sources with equal costs (ties go to the first given), NaN loads (last), stations down and the
  // seeker itself: cheapest names the source rank_positions puts first, with the same breakdown.
  std::vector<station_inputs> sources;
  for (int i = 0; i < 40; ++i) {
    auto s = st("s" + std::to_string(i), (i * 37) % 5 * 1000.0, i % 3 == 0 ? 100 : 1000,
                i % 7 == 0 ? std::nan("") : (i % 4) * 0.2);
    s.up = i % 11 != 5;
    s.home = i == 3;
    sources.push_back(s);
  }
  auto seeker = sources[9];
  cost_model m;
  for (size_t n = 0; n <= sources.size(); ++n) {
    std::vector<station_inputs> first(sources.begin(), sources.begin() + n);
    auto ranked = m.rank_positions(first, seeker, two_mb);
    auto best = m.cheapest(
        n, [&](size_t i) -> const station_inputs& { return first[i]; }, seeker, two_mb);
    ASSERT_EQ(best.has_value(), !ranked.empty()) << n;
    if (best) {
      EXPECT_EQ(best->first, ranked.front().first) << n;
      double a = best->second.cost, b = ranked.front().second.cost;
      EXPECT_TRUE(a == b || (std::isnan(a) && std::isnan(b))) << n;
    }
  }
  // All down, or only the seeker: none.
  EXPECT_FALSE(m.cheapest(
      1, [&](size_t) -> const station_inputs& { return seeker; }, seeker, two_mb));
}

}  // namespace
}  // namespace vodgrid::registry
