// Tests of the request target parsing (net/target.h): the hand-taken plain path and query, and
// the Boost.URL fallback for everything else.
#include <gtest/gtest.h>

#include "net/http.h"
#include "net/target.h"

namespace vodgrid::net {
namespace {

using query_list = std::vector<std::pair<std::string, std::string>>;

TEST(RequestTarget, APlainPathIsSlashAndPcharsWithoutEscapes) {
  EXPECT_TRUE(plain_path("/"));
  EXPECT_TRUE(plain_path("/v1/programs/abc-1/segments/3.ts"));
  EXPECT_TRUE(plain_path("/a:b@c!$&'()*+,;=~_."));
  EXPECT_FALSE(plain_path(""));
  EXPECT_FALSE(plain_path("v1/programs"));
  EXPECT_FALSE(plain_path("/a%20b"));
  EXPECT_FALSE(plain_path("/a b"));
  EXPECT_FALSE(plain_path("/a?b"));
}

TEST(RequestTarget, APlainQueryIsSplitInOrderWithRepeatsAndEmptyPartsSkipped) {
  query_list out;
  ASSERT_TRUE(split_plain_query("a=1&&b&a=2&c=", out));
  EXPECT_EQ(out, (query_list{{"a", "1"}, {"b", ""}, {"a", "2"}, {"c", ""}}));
}

TEST(RequestTarget, APlainQueryReusesTheListAndShrinksIt) {
  query_list out{{"x", "1"}, {"y", "2"}, {"z", "3"}};
  ASSERT_TRUE(split_plain_query("k=v", out));
  EXPECT_EQ(out, (query_list{{"k", "v"}}));
  ASSERT_TRUE(split_plain_query("", out));
  EXPECT_TRUE(out.empty());
}

TEST(RequestTarget, AQueryWithEscapesIsNotPlainAndLeavesTheListUntouched) {
  query_list out{{"x", "1"}};
  EXPECT_FALSE(split_plain_query("a=x%20y", out));
  EXPECT_FALSE(split_plain_query("a=x+y", out));
  EXPECT_EQ(out, (query_list{{"x", "1"}}));
}

TEST(RequestTarget, ParseTargetTakesPathAndQueryByHandOrThroughBoostUrl) {
  request_context ctx;
  ASSERT_TRUE(parse_target("/p/q?token=abc&n=1", ctx));
  EXPECT_EQ(ctx.path, "/p/q");
  EXPECT_EQ(ctx.query, (query_list{{"token", "abc"}, {"n", "1"}}));
  ASSERT_TRUE(parse_target("/p", ctx));
  EXPECT_EQ(ctx.path, "/p");
  EXPECT_TRUE(ctx.query.empty());
  ASSERT_TRUE(parse_target("/a%20b?x=y%20z&x=2", ctx));
  EXPECT_EQ(ctx.path, "/a%20b");  // the path stays encoded, as routes match it
  EXPECT_EQ(ctx.query, (query_list{{"x", "y z"}, {"x", "2"}}));
  EXPECT_EQ(ctx.query_param("x"), "2");
  EXPECT_EQ(ctx.query_param("none"), "");
}

TEST(RequestTarget, ParseTargetRefusesWhatIsNotOriginForm) {
  request_context ctx;
  EXPECT_FALSE(parse_target("http://host/p", ctx));
  EXPECT_FALSE(parse_target("p/q", ctx));
  EXPECT_FALSE(parse_target("/a b", ctx));
}

}  // namespace
}  // namespace vodgrid::net
