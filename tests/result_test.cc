// Unit tests of result<T>'s error plumbing: VODGRID_TRY and VODGRID_CO_TRY.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <memory>
#include <string>

#include "base/result.h"

namespace vodgrid {
namespace {

namespace asio = boost::asio;

result<int> half(int x) {
  if (x % 2 != 0) {
    return make_error(errc::invalid_argument, std::to_string(x) + " is odd");
  }
  return x / 2;
}

result<int> quarter(int x, int* steps) {
  VODGRID_TRY(auto h, half(x));
  ++*steps;
  VODGRID_TRY(int q, half(h));
  ++*steps;
  return q;
}

status even(int x) {
  VODGRID_TRY(half(x));
  return {};
}

TEST(Result, TryGivesTheValueOrReturnsTheFirstError) {
  int steps = 0;
  auto q = quarter(8, &steps);
  ASSERT_TRUE(q);
  EXPECT_EQ(*q, 2);
  EXPECT_EQ(steps, 2);

  steps = 0;
  auto odd_half = quarter(6, &steps);  // 6 → 3, then 3 is odd
  ASSERT_FALSE(odd_half);
  EXPECT_EQ(odd_half.err().detail, "3 is odd");
  EXPECT_EQ(steps, 1);

  steps = 0;
  auto odd = quarter(5, &steps);
  ASSERT_FALSE(odd);
  EXPECT_EQ(odd.err().code, errc::invalid_argument);
  EXPECT_EQ(odd.err().detail, "5 is odd");
  EXPECT_EQ(steps, 0);
}

TEST(Result, TryOnAStatusReturnsOnlyItsError) {
  EXPECT_TRUE(even(4));
  auto s = even(7);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.err().detail, "7 is odd");
}

TEST(Result, TryMovesTheValueOut) {
  auto make = []() -> result<std::unique_ptr<int>> { return std::make_unique<int>(7); };
  auto take = [&]() -> result<int> {
    VODGRID_TRY(auto p, make());  // a move-only value: moved, not copied
    return *p;
  };
  EXPECT_EQ(*take(), 7);
}

asio::awaitable<result<int>> co_quarter(int x) {
  VODGRID_CO_TRY(auto h, half(x));
  VODGRID_CO_TRY(auto q, half(h));
  co_return q;
}

TEST(Result, CoTryDoesTheSameInACoroutine) {
  asio::io_context io;
  auto ok = asio::co_spawn(io, co_quarter(12), asio::use_future);
  auto bad = asio::co_spawn(io, co_quarter(10), asio::use_future);
  io.run();
  auto q = ok.get();
  ASSERT_TRUE(q);
  EXPECT_EQ(*q, 3);
  auto b = bad.get();
  ASSERT_FALSE(b);
  EXPECT_EQ(b.err().detail, "5 is odd");
}

}  // namespace
}  // namespace vodgrid
