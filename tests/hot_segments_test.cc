// The director's hottest segments (director/hot.h): decayed request counts, the top, the bound.
#include <thread>

#include <gtest/gtest.h>

#include <cmath>

#include "director/hot.h"

namespace vodgrid::director {
namespace {

using namespace std::chrono_literals;

segment_key key(const char* program, uint32_t i) {
  return {*program_id::parse(program), segment_index{i}};
}

TEST(HotSegments, TheMostRequestedComeFirst) {
  hot_segments h;
  auto t = hot_segments::clock::now();
  for (int i = 0; i < 5; ++i) {
    h.record(key("film", 3), t);
  }
  h.record(key("film", 1), t);
  h.record(key("news", 0), t);
  h.record(key("news", 0), t);
  auto top = h.top(2, t);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].key, key("film", 3));
  EXPECT_DOUBLE_EQ(top[0].requests, 5);
  EXPECT_EQ(top[1].key, key("news", 0));
  EXPECT_DOUBLE_EQ(top[1].requests, 2);
}

TEST(HotSegments, CountsDecayAndColdOnesLeaveTheTop) {
  hot_segments h(60s);
  auto t = hot_segments::clock::now();
  for (int i = 0; i < 10; ++i) {
    h.record(key("film", 0), t);
  }
  h.record(key("film", 1), t);
  // One time constant later a count is e^-1 of itself; five later the single request is gone.
  EXPECT_NEAR(h.top(1, t + 60s)[0].requests, 10 / std::exp(1.0), 1e-6);
  auto later = h.top(5, t + 300s);
  ASSERT_EQ(later.size(), 0u);  // 10 e^-5 < 0.5
  h.record(key("film", 1), t + 300s);
  ASSERT_EQ(h.top(5, t + 300s).size(), 1u);
  EXPECT_EQ(h.top(5, t + 300s)[0].key, key("film", 1));
}

TEST(HotSegments, TheTableStaysWithinItsBound) {
  hot_segments h(60s, 100);
  auto t = hot_segments::clock::now();
  for (uint32_t i = 0; i < 1000; ++i) {
    h.record(key("film", i), t + std::chrono::milliseconds(i));
  }
  EXPECT_LE(h.size(), 101u);
  // The latest requests are the ones kept.
  EXPECT_EQ(h.top(1, t + 1s)[0].key, key("film", 999));
}

// The redirect records on every loop (issue 16): two threads at once, each into its own shard;
// top() counts every request, those of a segment both recorded added up.
TEST(HotSegments, TwoThreadsRecordingAtOnceAreCountedExactly) {
  hot_segments h(std::chrono::hours(1000));  // no decay to speak of over the test
  auto t = hot_segments::clock::now();
  auto record = [&](uint32_t own) {
    for (int i = 0; i < 5000; ++i) {
      h.record(key("film", 0), t);    // both threads
      h.record(key("film", own), t);  // this thread only
    }
  };
  std::thread a(record, 1);
  std::thread b(record, 2);
  a.join();
  b.join();
  auto top = h.top(5, t);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].key, key("film", 0));
  EXPECT_DOUBLE_EQ(top[0].requests, 10000);
  EXPECT_EQ(top[1].key, key("film", 1));
  EXPECT_DOUBLE_EQ(top[1].requests, 5000);
  EXPECT_EQ(top[2].key, key("film", 2));
  EXPECT_DOUBLE_EQ(top[2].requests, 5000);
}

}  // namespace
}  // namespace vodgrid::director
