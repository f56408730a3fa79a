// Tests of the request target parsing (net/target.h): the hand-taken plain path and query, and
// the Boost.URL fallback for everything else.
#include <gtest/gtest.h>

#include <cctype>
#include <string>

#include "net/http.h"
#include "net/target.h"

namespace vodgrid::net {
namespace {

using query_list = std::vector<std::pair<std::string_view, std::string_view>>;

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

// plain_path and split_plain_query check 16 characters at a time, then the tail one at a time:
// every byte, at every place of a block and of the tail, is taken or refused as the sets say.
TEST(RequestTarget, EveryByteAtEveryPlaceIsJudgedByItsSet) {
  auto in = [](std::string_view set, unsigned char c) {
    return std::isalnum(c) && c < 0x80 ? true : set.find(static_cast<char>(c)) != set.npos;
  };
  std::string path_set = "-._~!$&'()*+,;=:@/";
  std::string query_set = "-._~=&";
  for (int c = 0; c < 256; ++c) {
    auto ch = static_cast<char>(c);
    for (size_t at : {1, 5, 14, 15, 16, 17, 31, 32, 40, 46}) {
      std::string path = "/" + std::string(46, 'a');
      path[at] = ch;
      EXPECT_EQ(plain_path(path), in(path_set, static_cast<unsigned char>(c)))
          << "byte " << c << " at " << at;
      std::string query = "k=" + std::string(45, 'v');
      query[at] = ch;
      query_list out;
      EXPECT_EQ(split_plain_query(query, out), in(query_set, static_cast<unsigned char>(c)))
          << "byte " << c << " at " << at;
    }
  }
}

// A plain query is not copied: its parameters are views into the target. One that needs decoding
// is decoded into the context, where moving the context or adding to it keeps it in place.
TEST(RequestTarget, APlainQueryPointsIntoTheTargetAndADecodedOneIntoTheContext) {
  request_context ctx;
  std::string target = "/v1/programs/p/segments/3.ts?token=" + std::string(320, 'T') + "&n=7";
  ASSERT_TRUE(parse_target(target, ctx));
  ASSERT_EQ(ctx.query.size(), 2u);
  EXPECT_EQ(ctx.query[0].second.data(), target.data() + target.find('T'));
  EXPECT_EQ(ctx.query_param("n"), "7");
  EXPECT_TRUE(ctx.decoded.empty());

  std::string encoded = "/p?token=" + std::string(40, 'x') + "%2F%41&b=x%20y&c&d=%25";
  ASSERT_TRUE(parse_target(encoded, ctx));
  encoded.assign(encoded.size(), '#');  // the decoded values are not views into the target
  request_context moved = std::move(ctx);
  moved.add_query("later", "1");
  EXPECT_EQ(moved.query, (query_list{{"token", std::string(40, 'x') + "/A"},
                                     {"b", "x y"},
                                     {"c", ""},
                                     {"d", "%"},
                                     {"later", "1"}}));
  ASSERT_TRUE(parse_target("/p?e=1", moved));  // a plain query after a decoded one
  EXPECT_EQ(moved.query, (query_list{{"e", "1"}}));
  EXPECT_TRUE(moved.decoded.empty());
}

TEST(RequestTarget, ParseTargetRefusesWhatIsNotOriginForm) {
  request_context ctx;
  EXPECT_FALSE(parse_target("http://host/p", ctx));
  EXPECT_FALSE(parse_target("p/q", ctx));
  EXPECT_FALSE(parse_target("/a b", ctx));
}

}  // namespace
}  // namespace vodgrid::net
