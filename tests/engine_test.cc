// Unit tests of the engine's pure decisions: the range a segment request gets, the stream limit,
// the disk budget, the eviction offer to the director, the size a source's reply announces, and
// the push streams' orders, start offsets, resume points and swaps.
#include <gtest/gtest.h>

#include <limits>

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

api::push_order good_order() {
  api::push_order o;
  o.session = "0123456789abcdef";
  o.key = key(3);
  o.npt_start = 3;
  o.duration = 1;
  o.console_host = "127.0.0.1";
  o.rtp_port = 5000;
  o.rtcp_port = 5001;
  return o;
}

TEST(PushOrderRefusal, AGoodOrderPasses) {
  EXPECT_FALSE(push_order_refusal(good_order()));
  auto v6 = good_order();
  v6.console_host = "::1";
  EXPECT_FALSE(push_order_refusal(v6));
}

TEST(PushOrderRefusal, RefusesWhatNoEngineCouldCarryOut) {
  auto refused = [](auto change) {
    auto o = good_order();
    change(o);
    auto why = push_order_refusal(o);
    return why && why->code == errc::invalid_argument;
  };
  EXPECT_TRUE(refused([](auto& o) { o.session = "0123456789ABCDEF"; }));
  EXPECT_TRUE(refused([](auto& o) { o.session = "0123"; }));
  EXPECT_TRUE(refused([](auto& o) { o.console_host = "console.example"; }));
  EXPECT_TRUE(refused([](auto& o) { o.console_host = ""; }));
  EXPECT_TRUE(refused([](auto& o) { o.rtp_port = 0; }));
  EXPECT_TRUE(refused([](auto& o) { o.rtcp_port = 0; }));
  EXPECT_TRUE(refused([](auto& o) { o.state.scale = 0; }));
  EXPECT_TRUE(refused([](auto& o) { o.state.scale = 65; }));
  EXPECT_TRUE(refused([](auto& o) { o.state.scale = std::numeric_limits<double>::infinity(); }));
  EXPECT_TRUE(refused([](auto& o) { o.duration = 0; }));
  EXPECT_TRUE(refused([](auto& o) { o.npt_start = -1; }));
  EXPECT_TRUE(refused([](auto& o) {
    o.offset = 0;
    o.seek = 0.5;
  }));
  EXPECT_TRUE(refused([](auto& o) { o.seek = 1.0; }));  // the segment's end is not in it
  EXPECT_TRUE(refused([](auto& o) { o.seek = -0.1; }));
}

// An index with key frames at packets 2, 20 and 40 (0, 0.4 and 0.8 s) of a 60-packet segment.
push::ts_index three_key_frames() {
  push::ts_index ix;
  ix.size = 60 * 188;
  ix.keyframes = {{2 * 188, 18 * 188, 0.0}, {20 * 188, 20 * 188, 0.4}, {40 * 188, 20 * 188, 0.8}};
  ix.psi_bytes = 2 * 188;
  return ix;
}

TEST(PushStartOffset, AnOffsetMustBeAPacketBoundaryInsideTheSegment) {
  auto ix = three_key_frames();
  auto o = good_order();
  o.offset = 10 * 188;
  EXPECT_EQ(*push_start_offset(o, ix, ix.size), 10u * 188);
  o.offset = 10 * 188 + 1;
  EXPECT_EQ(push_start_offset(o, ix, ix.size).err().code, errc::invalid_argument);
  o.offset = ix.size;
  EXPECT_EQ(push_start_offset(o, ix, ix.size).err().code, errc::invalid_argument);
}

TEST(PushStartOffset, ASeekStartsAtTheKeyFrameBefore) {
  auto ix = three_key_frames();
  auto o = good_order();
  o.seek = 0.5;
  EXPECT_EQ(*push_start_offset(o, ix, ix.size), 20u * 188);
  o.seek = 0.0;
  EXPECT_EQ(*push_start_offset(o, ix, ix.size), 2u * 188);
  o.seek.reset();
  EXPECT_EQ(*push_start_offset(o, ix, ix.size), 0u);
}

TEST(PushStartOffset, BackwardStartsFromTheEndOrJustAfterTheKeyFrameSought) {
  auto ix = three_key_frames();
  auto o = good_order();
  o.state.scale = -4;
  EXPECT_EQ(*push_start_offset(o, ix, ix.size), ix.size);
  o.offset = push_from_end;
  EXPECT_EQ(*push_start_offset(o, ix, ix.size), ix.size);
  o.offset.reset();
  o.seek = 0.5;  // the key frame at 0.4 s is the first sent: the pacer sends those before 21*188
  EXPECT_EQ(*push_start_offset(o, ix, ix.size), 21u * 188);
}

TEST(PushStartOffset, ASeekPastWhatHasArrivedEstimatesFromTheBitrate) {
  auto ix = three_key_frames();
  ix.pcrs = {{2 * 188, 0.0}, {20 * 188, 0.4}};
  ix.size = 30 * 188;  // of 100 packets
  auto o = good_order();
  o.seek = 0.75;
  EXPECT_EQ(*push_start_offset(o, ix, 100 * 188), 75u * 188);
  o.seek = 0.3;  // within what has arrived: its key frame
  EXPECT_EQ(*push_start_offset(o, ix, 100 * 188), 2u * 188);
}

api::push_position tail_end(uint32_t index, double scale) {
  api::push_position p;
  p.session = "0123456789abcdef";
  p.key = key(index);
  p.offset = scale > 0 ? 1000 * 188 : 0;
  p.npt = scale > 0 ? index + 1.0 : index;
  p.state.seq = 77;
  p.state.scale = scale;
  return p;
}

TEST(PushResumePoint, ForwardIsTheStartOfTheNextSegment) {
  auto r = push_resume_point(tail_end(3, 1), key(4));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->key, key(4));
  EXPECT_EQ(r->offset, 0u);
  EXPECT_EQ(r->npt, 4.0);
  EXPECT_EQ(r->state.seq, 77);  // what the stream would have gone on with
  auto guessed = push_resume_point(tail_end(3, 2), std::nullopt);
  ASSERT_TRUE(guessed);
  EXPECT_EQ(guessed->key, key(4));
}

TEST(PushResumePoint, BackwardIsTheEndOfThePreviousSegmentUntilTheFirst) {
  auto r = push_resume_point(tail_end(3, -4), std::nullopt);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->key, key(2));
  EXPECT_EQ(r->offset, push_from_end);
  EXPECT_EQ(r->npt, 3.0);
  EXPECT_FALSE(push_resume_point(tail_end(0, -4), std::nullopt));
}

TEST(PushSwapWhenStarved, TrickPlayAndSeeksSwapPlainPlayWaits) {
  EXPECT_FALSE(push_swap_when_starved(1, false));
  EXPECT_TRUE(push_swap_when_starved(1, true));
  EXPECT_TRUE(push_swap_when_starved(4, false));
  EXPECT_TRUE(push_swap_when_starved(-2, false));
}

TEST(PushSwapBackChoice, AStreamWhoseSegmentTheSenderHoldsWhole) {
  std::vector<push_candidate> ours{{"aaaaaaaaaaaaaaaa", key(1), false},
                                   {"bbbbbbbbbbbbbbbb", key(2), true},  // leaving already
                                   {"cccccccccccccccc", key(2), false},
                                   {"dddddddddddddddd", key(3), false}};
  EXPECT_EQ(push_swap_back_choice(ours, {key(2), key(3)}, "zzzzzzzzzzzzzzzz"), "cccccccccccccccc");
  EXPECT_EQ(push_swap_back_choice(ours, {key(2), key(3)}, "cccccccccccccccc"), "dddddddddddddddd");
  EXPECT_FALSE(push_swap_back_choice(ours, {key(9)}, "zzzzzzzzzzzzzzzz"));
}

}  // namespace
}  // namespace vodgrid::engine
