// Unit tests of push streaming's wire types (api/push.h) and the director's pure decisions about
// RTSP sessions (director/push_session.h).
#include <gtest/gtest.h>

#include <boost/json/serialize.hpp>

#include "api/push.h"
#include "director/push_session.h"

namespace vodgrid {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

template <class T>
std::string reason_of(const result<T>& r) {
  return r ? std::string() : r.err().detail;
}

api::push_order an_order() {
  api::push_order o;
  o.session = "0123456789abcdef";
  o.key = {*program_id::parse("movie"), segment_index{3}};
  o.npt_start = 12.5;
  o.duration = 4.25;
  o.offset = 188 * 70;
  o.console_host = "127.0.0.1";
  o.rtp_port = 40000;
  o.rtcp_port = 40001;
  o.state = {0xdeadbeef, 65535, 4000000000u, -4, 1'780'000'000'123'456'789, 12.5};
  o.from = *engine_id::parse("e2");
  o.swap = true;
  return o;
}

TEST(PushApi, AnOrderRoundTripsEveryField) {
  auto o = an_order();
  auto back = api::decode<api::push_order>(json::serialize(api::to_json(o)));
  ASSERT_TRUE(back) << reason_of(back);
  EXPECT_EQ(back->session, o.session);
  EXPECT_EQ(back->key, o.key);
  EXPECT_EQ(back->npt_start, 12.5);
  EXPECT_EQ(back->duration, 4.25);
  EXPECT_EQ(back->offset, o.offset);
  EXPECT_FALSE(back->seek);
  EXPECT_EQ(back->rtp_port, 40000);
  EXPECT_EQ(back->state.ssrc, 0xdeadbeef);
  EXPECT_EQ(back->state.seq, 65535);
  EXPECT_EQ(back->state.rtp_base, 4000000000u);
  EXPECT_EQ(back->state.scale, -4);
  EXPECT_EQ(back->state.origin_unix_ns, 1'780'000'000'123'456'789);  // no loss through a double
  EXPECT_EQ(back->from, o.from);
  EXPECT_TRUE(back->swap);
}

TEST(PushApi, BadOrdersAreRefusedNamingTheField) {
  auto with = [](auto change) {
    auto v = api::to_json(an_order()).as_object();
    change(v);
    return reason_of(api::decode<api::push_order>(json::serialize(v)));
  };
  EXPECT_NE(with([](json::object& v) { v["session"] = "../../etc/passwd"; }).find("session"),
            std::string::npos);
  EXPECT_NE(with([](json::object& v) { v["session"] = "0123456789ABCDEF"; }).find("session"),
            std::string::npos);
  EXPECT_NE(with([](json::object& v) { v["rtp_port"] = 70000; }).find("rtp_port"),
            std::string::npos);
  EXPECT_NE(with([](json::object& v) { v["rtcp_port"] = 0; }).find("rtcp_port"), std::string::npos);
  EXPECT_NE(with([](json::object& v) { v["state"].as_object()["scale"] = 0; }).find("scale"),
            std::string::npos);
  EXPECT_NE(with([](json::object& v) { v["state"].as_object()["scale"] = 65; }).find("scale"),
            std::string::npos);
  EXPECT_NE(with([](json::object& v) { v["state"].as_object()["seq"] = 65536; }).find("seq"),
            std::string::npos);
  EXPECT_NE(with([](json::object& v) { v["seek"] = 1.5; }).find("seek"), std::string::npos);
  EXPECT_NE(with([](json::object& v) { v["from"] = "a/b"; }).find("from"), std::string::npos);
  EXPECT_EQ(with([](json::object&) {}), "");
}

TEST(PushApi, ReportsNextAndEndedRoundTrip) {
  api::push_report rep;
  rep.engine = *engine_id::parse("e1");
  rep.streams.push_back({"00000000000000aa",
                         {*program_id::parse("p"), segment_index{2}},
                         1316,
                         8.5,
                         {1, 2, 3, 1, 0, 0}});
  auto back = api::decode<api::push_report>(json::serialize(api::to_json(rep)));
  ASSERT_TRUE(back) << reason_of(back);
  ASSERT_EQ(back->streams.size(), 1u);
  EXPECT_EQ(back->streams[0].offset, 1316u);
  EXPECT_EQ(back->streams[0].key.index.v, 2u);
  EXPECT_EQ(back->streams[0].state.seq, 2);

  api::push_next_reply end;
  end.end = true;
  auto e = api::decode<api::push_next_reply>(json::serialize(api::to_json(end)));
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->end);
  api::push_next_reply next{false,
                            {*program_id::parse("p"), segment_index{4}},
                            16,
                            4,
                            {*engine_id::parse("e2"), "http://127.0.0.1:9"}};
  auto n = api::decode<api::push_next_reply>(json::serialize(api::to_json(next)));
  ASSERT_TRUE(n) << reason_of(n);
  EXPECT_EQ(n->engine.url, "http://127.0.0.1:9");
  EXPECT_EQ(n->key.index.v, 4u);

  auto bad = api::decode<api::push_ended>(
      R"({"engine":"e1","reason":"bored","at":{"session":"00000000000000aa","program":"p","index":0,"offset":0,"npt":0,"state":{"ssrc":1,"seq":1,"rtp_base":1,"scale":1,"origin_npt":0}}})");
  EXPECT_NE(reason_of(bad).find("reason"), std::string::npos);
}

api::program_manifest three_segments() {
  api::program_manifest m;
  m.id = *program_id::parse("p");
  for (uint32_t i = 0; i < 3; ++i) {
    m.segments.push_back({segment_index{i}, 2.0 + i, 1000, {}});  // 2, 3 and 4 s
  }
  return m;
}

TEST(PushSession, PointAtFindsTheSegmentAndTheSecondsIntoIt) {
  auto m = three_segments();
  auto a = director::point_at(m, 0);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->index.v, 0u);
  EXPECT_EQ(a->into, 0);
  auto b = director::point_at(m, 2.0);  // a boundary belongs to the segment it starts
  ASSERT_TRUE(b);
  EXPECT_EQ(b->index.v, 1u);
  EXPECT_EQ(b->npt_start, 2.0);
  auto c = director::point_at(m, 6.5);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->index.v, 2u);
  EXPECT_DOUBLE_EQ(c->into, 1.5);
  EXPECT_FALSE(director::point_at(m, 9.0));  // the end
  EXPECT_FALSE(director::point_at(m, 100));
  EXPECT_DOUBLE_EQ(director::segment_start(m, segment_index{2}), 5.0);
}

TEST(PushSession, NextSegmentFollowsTheScaleAndStopsAtEitherEnd) {
  auto m = three_segments();
  EXPECT_EQ(director::next_segment(m, segment_index{0}, 1)->v, 1u);
  EXPECT_EQ(director::next_segment(m, segment_index{1}, 4)->v, 2u);
  EXPECT_FALSE(director::next_segment(m, segment_index{2}, 1));
  EXPECT_EQ(director::next_segment(m, segment_index{2}, -2)->v, 1u);
  EXPECT_FALSE(director::next_segment(m, segment_index{0}, -8));
}

TEST(PushSession, OnlyAPlayingStreamWhoseEngineWentQuietIsSilent) {
  director::push_session s;
  auto t0 = director::steady::now();
  s.now = director::push_session::phase::playing;
  s.engine = director::engine_slot{1};
  s.heard = t0;
  EXPECT_FALSE(director::stream_silent(s, t0 + 1000ms, 1300ms));
  EXPECT_TRUE(director::stream_silent(s, t0 + 1400ms, 1300ms));
  s.resuming = true;
  EXPECT_FALSE(director::stream_silent(s, t0 + 1400ms, 1300ms));
  s.resuming = false;
  s.ended = true;
  EXPECT_FALSE(director::stream_silent(s, t0 + 1400ms, 1300ms));
  s.ended = false;
  s.now = director::push_session::phase::paused;
  EXPECT_FALSE(director::stream_silent(s, t0 + 1400ms, 1300ms));
}

}  // namespace
}  // namespace vodgrid
