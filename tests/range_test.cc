// Unit tests of single byte ranges (RFC 9110 §14).
#include <gtest/gtest.h>

#include "net/range.h"

namespace vodgrid::net {
namespace {

range_decision d(std::string_view h, uint64_t size = 1000) {
  return decide_range(h, size);
}

TEST(Range, ClosedRange) {
  auto r = d("bytes=0-99");
  ASSERT_EQ(r.kind, range_kind::satisfiable);
  EXPECT_EQ(r.range.first, 0u);
  EXPECT_EQ(r.range.length, 100u);
}

TEST(Range, LastPositionIsClampedToTheEnd) {
  auto r = d("bytes=900-5000");
  ASSERT_EQ(r.kind, range_kind::satisfiable);
  EXPECT_EQ(r.range.first, 900u);
  EXPECT_EQ(r.range.length, 100u);
}

TEST(Range, OpenRange) {
  auto r = d("bytes=990-");
  ASSERT_EQ(r.kind, range_kind::satisfiable);
  EXPECT_EQ(r.range.first, 990u);
  EXPECT_EQ(r.range.length, 10u);
}

TEST(Range, SuffixRange) {
  auto r = d("bytes=-10");
  ASSERT_EQ(r.kind, range_kind::satisfiable);
  EXPECT_EQ(r.range.first, 990u);
  EXPECT_EQ(r.range.length, 10u);
  auto all = d("bytes=-5000");
  ASSERT_EQ(all.kind, range_kind::satisfiable);
  EXPECT_EQ(all.range.first, 0u);
  EXPECT_EQ(all.range.length, 1000u);
}

TEST(Range, HugeNumbersSaturateInsteadOfWrapping) {
  auto r = d("bytes=0-18446744073709551615");
  ASSERT_EQ(r.kind, range_kind::satisfiable);
  EXPECT_EQ(r.range.length, 1000u);
  auto beyond = d("bytes=0-99999999999999999999999999999");
  ASSERT_EQ(beyond.kind, range_kind::satisfiable);
  EXPECT_EQ(beyond.range.length, 1000u);
  EXPECT_EQ(d("bytes=18446744073709551616-").kind, range_kind::unsatisfiable);
  EXPECT_EQ(d("bytes=-18446744073709551616").range.length, 1000u);
}

TEST(Range, StartPastTheEndIsUnsatisfiable) {
  EXPECT_EQ(d("bytes=1000-").kind, range_kind::unsatisfiable);
  EXPECT_EQ(d("bytes=1000-2000").kind, range_kind::unsatisfiable);
  EXPECT_EQ(d("bytes=-0").kind, range_kind::unsatisfiable);
  EXPECT_EQ(d("bytes=0-", 0).kind, range_kind::unsatisfiable);
}

TEST(Range, MalformedOrMultipleRangesAreServedWhole) {
  for (auto h : {"", "bytes", "bytes=", "bytes=-", "bytes=5-1", "bytes=a-b", "bytes=1-2-3",
                 "items=0-1", "bytes=0-1,2-3", "bytes= 0 - 1 , 5-6", "bytes=+1-2", "bytes=0x10-"}) {
    EXPECT_EQ(d(h).kind, range_kind::none) << h;
  }
  std::string many = "bytes=0-0";
  for (int i = 1; i < 50; ++i) {
    many += "," + std::to_string(i * 2) + "-" + std::to_string(i * 2);
  }
  EXPECT_EQ(d(many).kind, range_kind::none);
}

TEST(Range, UnitIsCaseInsensitiveAndWhitespaceTolerated) {
  auto r = d("Bytes= 10 - 19 ");
  ASSERT_EQ(r.kind, range_kind::satisfiable);
  EXPECT_EQ(r.range.first, 10u);
  EXPECT_EQ(r.range.length, 10u);
}

}  // namespace
}  // namespace vodgrid::net
