// Unit tests of the engine's pure decisions: the range a segment request gets, the stream limit,
// the disk budget, the eviction offer to the director, and the size a source's reply announces.
#include <gtest/gtest.h>

#include "engine/decisions.h"

namespace vodgrid::engine {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

constexpr uint64_t MiB = 1u << 20;

segment_key key(uint32_t i) {
  return segment_key{*program_id::parse("p"), segment_index{i}};
}

TEST(SegmentRange, NoRangeHeaderAsksForTheWholeSegment) {
  EXPECT_EQ(segment_range("", "", "\"e\"", 1000).kind, net::range_kind::none);
  EXPECT_EQ(segment_range("", "\"e\"", "\"e\"", 1000).kind, net::range_kind::none);
}

TEST(SegmentRange, ARangeIsDecidedOnTheSegmentSize) {
  auto d = segment_range("bytes=100-199", "", "\"e\"", 1000);
  EXPECT_EQ(d.kind, net::range_kind::satisfiable);
  EXPECT_EQ(d.range.first, 100u);
  EXPECT_EQ(d.range.length, 100u);
  EXPECT_EQ(segment_range("bytes=1000-", "", "\"e\"", 1000).kind, net::range_kind::unsatisfiable);
}

TEST(SegmentRange, IfRangeWithOurValidatorKeepsTheRangeAndAnotherAsksForTheWhole) {
  EXPECT_EQ(segment_range("bytes=0-9", "\"e\"", "\"e\"", 1000).kind, net::range_kind::satisfiable);
  EXPECT_EQ(segment_range("bytes=0-9", "\"other\"", "\"e\"", 1000).kind, net::range_kind::none);
  // Even an unsatisfiable range: the validator does not match, so the whole segment is sent.
  EXPECT_EQ(segment_range("bytes=5000-", "\"other\"", "\"e\"", 1000).kind, net::range_kind::none);
}

TEST(AtStreamLimit, ConsolesStopAtTheLimitCopiesNever) {
  EXPECT_FALSE(at_stream_limit(false, 9, 10));
  EXPECT_TRUE(at_stream_limit(false, 10, 10));
  EXPECT_TRUE(at_stream_limit(false, 11, 10));
  EXPECT_FALSE(at_stream_limit(true, 10, 10));
  EXPECT_FALSE(at_stream_limit(true, 500, 10));
}

TEST(BytesOverBudget, ZeroWhenItFitsUnderTheBudgetAndTheReserve) {
  // 100 used of a 1000 budget, 500 free of 1000 (reserve 20).
  EXPECT_EQ(bytes_over_budget({100, 500, 1000}, 400, 1000), 0u);
  EXPECT_EQ(bytes_over_budget({100, 500, 1000}, 0, 0), 0u);
}

TEST(BytesOverBudget, CountsWhatExceedsTheEngineBudget) {
  EXPECT_EQ(bytes_over_budget({900, 100'000, 1'000'000}, 300, 1000), 200u);
}

TEST(BytesOverBudget, KeepsTwoPercentOfTheFilesystemsFree) {
  // No budget; 10'000 total keeps 200 free: 250 free takes 50 before over.
  EXPECT_EQ(bytes_over_budget({0, 250, 10'000}, 50, 0), 0u);
  EXPECT_EQ(bytes_over_budget({0, 250, 10'000}, 100, 0), 50u);
}

TEST(BytesOverBudget, TakesTheLargerOfBudgetAndReserve) {
  // Budget: 1100 - 1000 = 100 over; reserve: 100 + 200 - 150 = 150 short.
  EXPECT_EQ(bytes_over_budget({1000, 150, 10'000}, 100, 1000), 150u);
  EXPECT_EQ(bytes_over_budget({1000, 150, 10'000}, 100, 800), 300u);
}

TEST(EvictionOffer, LeastRecentlyUsedFirstAndNeverStreamed) {
  auto t0 = steady::time_point{};
  std::vector<eviction_candidate> held{
      {key(1), MiB, t0 + 30s, false},
      {key(2), MiB, t0 + 10s, true},  // streamed: kept
      {key(3), MiB, t0 + 20s, false},
      {key(4), MiB, t0, false},  // never asked for: oldest
  };
  EXPECT_EQ(eviction_offer(held, 1), (std::vector<segment_key>{key(4), key(3), key(1)}));
}

TEST(EvictionOffer, StopsAtTwiceTheNeedPlusSixteenMebibytes) {
  auto t0 = steady::time_point{};
  std::vector<eviction_candidate> held;
  for (uint32_t i = 0; i < 100; ++i) {
    held.push_back({key(i), 4 * MiB, t0 + std::chrono::seconds(i), false});
  }
  // 2 * 10 MiB + 16 MiB = 36 MiB: nine segments of 4 MiB reach it.
  auto offer = eviction_offer(held, 10 * MiB);
  ASSERT_EQ(offer.size(), 9u);
  EXPECT_EQ(offer.front(), key(0));
  EXPECT_EQ(offer.back(), key(8));
}

TEST(EvictionOffer, EmptyWhenEverythingIsStreamed) {
  std::vector<eviction_candidate> held{{key(1), MiB, steady::time_point{}, true}};
  EXPECT_TRUE(eviction_offer(held, MiB).empty());
}

TEST(AnnouncedSize, AWholeReplyAnnouncesItsContentLength) {
  EXPECT_EQ(announced_size(200, "1234", "", 0, 0), 1234u);
  EXPECT_EQ(announced_size(200, "1234", "", 0, 1234), 1234u);
}

TEST(AnnouncedSize, AMalformedOrMissingLengthAnnouncesNothing) {
  EXPECT_EQ(announced_size(200, "", "", 0, 0), 0u);
  EXPECT_EQ(announced_size(200, "12x", "", 0, 0), 0u);
  EXPECT_EQ(announced_size(200, "-5", "", 0, 0), 0u);
}

TEST(AnnouncedSize, AResumedCopyNeedsA206ForTheRestOfTheSegment) {
  EXPECT_EQ(announced_size(206, "", "bytes 100-999/1000", 100, 1000), 1000u);
  EXPECT_EQ(announced_size(206, "", "bytes 100-499/1000", 100, 1000), 0u);  // not to the end
  EXPECT_EQ(announced_size(206, "", "bytes 0-999/1000", 100, 1000), 0u);    // not from base
  EXPECT_EQ(announced_size(200, "1000", "", 100, 1000), 0u);  // the whole again: not a resume
}

TEST(AnnouncedSize, OtherStatusesAnnounceNothing) {
  EXPECT_EQ(announced_size(206, "1000", "bytes 0-999/1000", 0, 0), 0u);
  EXPECT_EQ(announced_size(404, "10", "", 0, 0), 0u);
}

}  // namespace
}  // namespace vodgrid::engine
