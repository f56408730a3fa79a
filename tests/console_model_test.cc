// `vodgrid play --model` (issue 15, item 3): the pure decisions (arrivals, program picks, watch
// times, seeks and pauses, the order segments are played in) and their reproducibility by seed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "console/model.h"
#include "console/quantiles.h"

namespace vodgrid::console {
namespace {

model_options busy_model(uint64_t seed) {
  model_options o;
  o.enabled = true;
  o.arrival_rate = 5;
  o.zipf_s = 1;
  o.watch_mean_seconds = 120;
  o.seeks_per_minute = 2;
  o.pauses_per_minute = 3;
  o.seed = seed;
  return o;
}

TEST(ConsoleModel, TheSameSeedDecidesTheSameAndAnotherSeedOtherwise) {
  auto a = busy_model(7), b = busy_model(7), c = busy_model(8);
  EXPECT_EQ(arrival_times(a, 200), arrival_times(b, 200));
  EXPECT_NE(arrival_times(a, 200), arrival_times(c, 200));
  size_t same_pick = 0, same_plan = 0;
  for (uint32_t v = 0; v < 200; ++v) {
    EXPECT_EQ(pick_program(a, v, 10), pick_program(b, v, 10));
    EXPECT_EQ(plan_viewer(a, v, 600), plan_viewer(b, v, 600));
    same_pick += pick_program(a, v, 10) == pick_program(c, v, 10);
    same_plan += plan_viewer(a, v, 600) == plan_viewer(c, v, 600);
  }
  EXPECT_LT(same_pick, 150u);  // Zipf over 10 repeats often, but not for most viewers
  EXPECT_LT(same_plan, 5u);
  // Viewer i's decisions are its own: the same whether 200 or 1000 are played.
  auto many = arrival_times(a, 1000);
  auto few = arrival_times(a, 200);
  EXPECT_TRUE(std::equal(few.begin(), few.end(), many.begin()));
}

TEST(ConsoleModel, ArrivalsArePoissonAtTheRateOrAllAtOnce) {
  auto o = busy_model(1);
  auto t = arrival_times(o, 5000);
  EXPECT_TRUE(std::is_sorted(t.begin(), t.end()));
  EXPECT_GT(t.front(), 0);
  EXPECT_NEAR(t.back() / 5000, 1 / o.arrival_rate, 0.1 / o.arrival_rate);  // mean gap 1/rate
  o.arrival_rate = 0;
  auto at_once = arrival_times(o, 10);
  EXPECT_TRUE(std::all_of(at_once.begin(), at_once.end(), [](double x) { return x == 0; }));
}

TEST(ConsoleModel, ProgramsArePickedByZipfPopularity) {
  auto o = busy_model(3);
  std::vector<int> n(4);
  for (uint32_t v = 0; v < 20000; ++v) {
    ++n[pick_program(o, v, 4)];
  }
  // Weights 1, 1/2, 1/3, 1/4 of 25/12: 48 %, 24 %, 16 %, 12 %.
  EXPECT_NEAR(n[0] / 20000.0, 0.48, 0.02);
  EXPECT_NEAR(n[1] / 20000.0, 0.24, 0.02);
  EXPECT_NEAR(n[3] / 20000.0, 0.12, 0.02);
  o.zipf_s = 0;  // uniform
  std::fill(n.begin(), n.end(), 0);
  for (uint32_t v = 0; v < 20000; ++v) {
    ++n[pick_program(o, v, 4)];
  }
  EXPECT_NEAR(n[3] / 20000.0, 0.25, 0.02);
  EXPECT_EQ(pick_program(o, 5, 1), 0u);
}

TEST(ConsoleModel, MostViewersLeaveEarlyAndNoneWatchesPastTheEnd) {
  model_options o;
  o.watch_mean_seconds = 100;
  std::vector<double> w;
  for (uint32_t v = 0; v < 10000; ++v) {
    w.push_back(plan_viewer(o, v, 1e9).watch_seconds);
  }
  double mean = std::accumulate(w.begin(), w.end(), 0.0) / w.size();
  EXPECT_NEAR(mean, 100, 5);
  auto early = std::count_if(w.begin(), w.end(), [](double x) { return x < 100; });
  EXPECT_NEAR(early / 10000.0, 1 - std::exp(-1), 0.02);  // 63 % leave before the mean
  for (uint32_t v = 0; v < 1000; ++v) {
    EXPECT_LE(plan_viewer(o, v, 30).watch_seconds, 30);
  }
  o.watch_mean_seconds = 0;
  EXPECT_EQ(plan_viewer(o, 1, 30).watch_seconds, 30);
}

TEST(ConsoleModel, SeeksAndPausesComeAtTheirRatesWithinTheWatchTime) {
  model_options o;
  o.seeks_per_minute = 2;
  o.pauses_per_minute = 4;
  o.pause_mean_seconds = 10;
  size_t seeks = 0, pauses = 0;
  double paused = 0;
  for (uint32_t v = 0; v < 200; ++v) {
    auto p = plan_viewer(o, v, 600);  // ten minutes each, to the end
    for (auto& e : p.events) {
      EXPECT_LT(e.at, p.watch_seconds);
      if (e.what == viewer_event::kind::seek) {
        ++seeks;
        EXPECT_GE(e.value, 0);
        EXPECT_LT(e.value, 1);
      } else {
        ++pauses;
        paused += e.value;
      }
    }
    EXPECT_TRUE(std::is_sorted(p.events.begin(), p.events.end(),
                               [](auto& a, auto& b) { return a.at < b.at; }));
  }
  EXPECT_NEAR(seeks / 200.0, 20, 2);   // 2 a minute for 10 minutes
  EXPECT_NEAR(pauses / 200.0, 40, 3);  // 4 a minute
  EXPECT_NEAR(paused / pauses, 10, 1);
}

TEST(ConsoleModel, WithoutEventsEverySegmentIsPlayedOnceInOrder) {
  viewer_plan p;
  p.watch_seconds = 12;
  auto steps = schedule(p, {4, 4, 4});
  ASSERT_EQ(steps.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(steps[i], (play_step{i, 4, 0, false}));
  }
}

TEST(ConsoleModel, AViewerWhoLeavesEarlyPlaysPartOfTheLastSegment) {
  viewer_plan p;
  p.watch_seconds = 9;
  auto steps = schedule(p, {4, 4, 4, 4});
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps[2].segment, 2u);
  EXPECT_DOUBLE_EQ(steps[2].seconds, 1);
}

TEST(ConsoleModel, PausesAndSeeksTakeEffectAtTheEndOfTheirSegment) {
  viewer_plan p;
  p.watch_seconds = 16;
  p.events = {{viewer_event::kind::pause, 1, 7.5},
              {viewer_event::kind::seek, 5, 0.76},  // 0.76 of 40 s: segment 7 (28..32)
              {viewer_event::kind::seek, 10.5, 0.0}};
  auto steps = schedule(p, std::vector<double>(10, 4));
  ASSERT_EQ(steps.size(), 4u);
  EXPECT_EQ(steps[0], (play_step{0, 4, 0, false}));
  EXPECT_EQ(steps[1], (play_step{1, 4, 7.5, false}));  // the pause, before segment 1
  EXPECT_EQ(steps[2], (play_step{7, 4, 0, true}));     // the seek during segment 1
  EXPECT_EQ(steps[3], (play_step{0, 4, 0, true}));     // back to the start; 16 s watched
}

TEST(ConsoleModel, BadKnobsAreNamed) {
  model_options o;
  EXPECT_FALSE(invalid_model(o));
  o.arrival_rate = -1;
  EXPECT_NE(invalid_model(o)->find("--arrival-rate"), std::string::npos);
  o = {};
  o.zipf_s = std::nan("");
  EXPECT_NE(invalid_model(o)->find("--zipf"), std::string::npos);
  o = {};
  o.seeks_per_minute = 1000;
  EXPECT_NE(invalid_model(o)->find("--seeks"), std::string::npos);
}

TEST(ConsoleQuantiles, PercentilesAreWithinOnePercentAndMerge) {
  quantiles a, b;
  for (int i = 1; i <= 1000; ++i) {
    (i % 2 ? a : b).add(i / 1000.0);  // 1 ms .. 1 s
  }
  a.merge(b);
  EXPECT_EQ(a.count(), 1000u);
  EXPECT_NEAR(a.at(0.5), 0.5, 0.005);
  EXPECT_NEAR(a.at(0.95), 0.95, 0.0095);
  EXPECT_NEAR(a.at(0.99), 0.99, 0.0099);
  EXPECT_EQ(a.max(), 1.0);
  quantiles z;
  EXPECT_EQ(z.at(0.5), 0);
  for (int i = 0; i < 98; ++i) {
    z.add(0);  // most viewers never stall
  }
  z.add(2);
  z.add(3);
  EXPECT_EQ(z.at(0.5), 0);
  EXPECT_EQ(z.at(0.95), 0);
  EXPECT_NEAR(z.at(0.99), 2, 0.02);
  EXPECT_EQ(z.at(1), 3);
}

}  // namespace
}  // namespace vodgrid::console
