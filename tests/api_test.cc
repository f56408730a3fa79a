// Unit tests of the wire types' JSON mapping: round trips and refusals of bad input.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <boost/json/serialize.hpp>

#include "api/api.h"

namespace vodgrid::api {
namespace {

namespace json = boost::json;

std::string hex(char c) {
  return std::string(64, c);
}

TEST(Api, HeartbeatRoundTrips) {
  heartbeat hb;
  hb.engine = *engine_id::parse("e1");
  hb.url = "http://127.0.0.1:1";
  hb.epoch = 42;
  hb.seq = 7;
  hb.full = true;
  hb.load.active_streams = 3;
  hb.load.max_streams = 10;
  hb.added.push_back({{*program_id::parse("p"), segment_index{5}}, 1234, sha256("x")});
  hb.removed.push_back({*program_id::parse("q"), segment_index{1}});
  auto back = decode<heartbeat>(json::serialize(to_json(hb)));
  ASSERT_TRUE(back) << back.err().detail;
  EXPECT_EQ(back->engine.str(), "e1");
  EXPECT_EQ(back->epoch, 42u);
  EXPECT_EQ(back->seq, 7u);
  EXPECT_TRUE(back->full);
  EXPECT_EQ(back->load.active_streams, 3u);
  ASSERT_EQ(back->added.size(), 1u);
  EXPECT_EQ(back->added[0].key.index.v, 5u);
  EXPECT_EQ(back->added[0].sha256, sha256("x"));
  ASSERT_EQ(back->removed.size(), 1u);
  EXPECT_EQ(back->removed[0].program.str(), "q");
}

TEST(Api, ManifestRoundTripsAndChecksOrder) {
  program_manifest m;
  m.id = *program_id::parse("movie");
  m.title = "A \"quoted\" title";
  m.segments.push_back({segment_index{0}, 2.0, 100, sha256("a")});
  m.segments.push_back({segment_index{1}, 1.5, 200, sha256("b")});
  auto back = decode<program_manifest>(json::serialize(to_json(m)));
  ASSERT_TRUE(back) << back.err().detail;
  EXPECT_EQ(back->title, m.title);
  EXPECT_DOUBLE_EQ(back->duration(), 3.5);
  EXPECT_EQ(back->segments[1].sha256, sha256("b"));

  auto swapped = json::serialize(to_json(m));
  auto pos = swapped.find("\"index\":1");
  swapped.replace(pos, 9, "\"index\":7");
  EXPECT_FALSE(decode<program_manifest>(swapped));
}

TEST(Api, DecodersRefuseBadInputNamingTheField) {
  auto reason = [](std::string body) {
    auto r = decode<fetch_order>(body);
    EXPECT_FALSE(r) << body;
    return r ? std::string() : r.err().detail;
  };
  EXPECT_NE(reason("{").find("malformed JSON"), std::string::npos);
  EXPECT_NE(reason("[]").find("object"), std::string::npos);
  EXPECT_NE(
      reason(R"({"program":"../x","index":1,"sha256":")" + hex('a') + R"(","source":"http://a/"})")
          .find("program"),
      std::string::npos);
  EXPECT_NE(reason(R"({"program":"p","index":-1,"sha256":")" + hex('a') + R"(","source":"s"})")
                .find("index"),
            std::string::npos);
  EXPECT_NE(reason(R"({"program":"p","index":1000000,"sha256":")" + hex('a') + R"(","source":"s"})")
                .find("index"),
            std::string::npos);
  EXPECT_NE(reason(R"({"program":"p","index":1,"sha256":"abc","source":"s"})").find("sha256"),
            std::string::npos);
  EXPECT_NE(reason(R"({"program":"p","index":1,"sha256":")" + hex('g') + R"(","source":"s"})")
                .find("sha256"),
            std::string::npos);
  EXPECT_NE(reason(R"({"program":"p","index":1,"sha256":")" + hex('a') + R"("})").find("source"),
            std::string::npos);
  // An empty source is no URL, in either form (found by fuzz_api_json: it decoded, and its
  // encoding did not).
  EXPECT_NE(reason(R"({"program":"p","index":1,"sha256":")" + hex('a') + R"(","source":""})")
                .find("source"),
            std::string::npos);
  EXPECT_NE(reason(R"({"program":"p","index":1,"sha256":")" + hex('a') + R"(","sources":[""]})")
                .find("sources"),
            std::string::npos);
  auto ok = decode<fetch_order>(R"({"program":"p","index":1,"sha256":")" + hex('A') +
                                R"(","source":"s"})");
  EXPECT_TRUE(ok);
}

TEST(Api, ManifestRefusesAbsurdSegments) {
  auto bad = [](std::string seg) {
    return !decode<program_manifest>(R"({"id":"p","title":"t","segments":[)" + seg + "]}");
  };
  EXPECT_TRUE(bad(""));
  EXPECT_TRUE(bad(R"({"index":0,"duration":0,"size":1,"sha256":")" + hex('a') + "\"}"));
  EXPECT_TRUE(bad(R"({"index":0,"duration":1e9,"size":1,"sha256":")" + hex('a') + "\"}"));
  EXPECT_TRUE(bad(R"({"index":0,"duration":"1","size":1,"sha256":")" + hex('a') + "\"}"));
  EXPECT_TRUE(bad(R"({"index":0,"duration":1,"size":0,"sha256":")" + hex('a') + "\"}"));
  EXPECT_FALSE(bad(R"({"index":0,"duration":1,"size":1,"sha256":")" + hex('a') + "\"}"));
}

TEST(Api, ReportChangesCarryTheEngineAndFilling) {
  station_report r;
  r.load = 0.5;
  r.changes.push_back({{*program_id::parse("p"), {3}}, true});
  r.changes.push_back({{*program_id::parse("p"), {4}}, false, "edge-1"});
  r.changes.push_back({{*program_id::parse("q"), {0}}, true, "edge-2", true});
  auto body = json::serialize(to_json(r));
  // A station-level change keeps the shape it always had.
  EXPECT_NE(body.find(R"({"program":"p","index":3,"held":true})"), std::string::npos) << body;
  auto back = decode<station_report>(body);
  ASSERT_TRUE(back) << back.err().detail;
  ASSERT_EQ(back->changes.size(), 3u);
  EXPECT_EQ(back->changes[0].engine, "");
  EXPECT_FALSE(back->changes[0].filling);
  EXPECT_TRUE(back->changes[0].held);
  EXPECT_EQ(back->changes[1].engine, "edge-1");
  EXPECT_FALSE(back->changes[1].held);
  EXPECT_FALSE(back->changes[1].filling);
  EXPECT_EQ(back->changes[2].key.program.str(), "q");
  EXPECT_EQ(back->changes[2].engine, "edge-2");
  EXPECT_TRUE(back->changes[2].filling);
  EXPECT_TRUE(back->changes[2].held);
}

TEST(Api, ReportChangesRefuseABadEngineOrFillingWithoutOne) {
  auto reason = [](std::string change) {
    auto r = decode<station_report>(R"({"changes":[)" + change + "]}");
    EXPECT_FALSE(r) << change;
    return r ? std::string() : r.err().detail;
  };
  for (auto* engine : {R"("../e")", R"("")", "7", "null", R"("a b")"}) {
    EXPECT_NE(reason(fmt::format(R"({{"program":"p","index":0,"held":true,"engine":{}}})", engine))
                  .find("engine"),
              std::string::npos)
        << engine;
  }
  EXPECT_NE(reason(R"({"program":"p","index":0,"held":true,"filling":true})").find("filling"),
            std::string::npos);
  EXPECT_NE(
      reason(R"({"program":"p","index":0,"held":true,"engine":"e","filling":1})").find("filling"),
      std::string::npos);
  EXPECT_TRUE(decode<station_report>(
      R"({"changes":[{"program":"p","index":0,"held":true,"engine":"e","filling":false}]})"));
}

}  // namespace
}  // namespace vodgrid::api
