// The dashboard's pure parts (registry/dashboard.h): the directors' and supervisors' replies read,
// the engines' served bytes, engine status, the event log's bound, rates.
#include <gtest/gtest.h>

#include "registry/dashboard.h"

namespace vodgrid::registry {
namespace {

using namespace std::chrono_literals;

TEST(DashboardViews, ADirectorsEngineListIsRead) {
  auto v = parse_director_engines(R"({"station":"edge","engines":[
      {"name":"edge-1","url":"http://x","up":true,"segments":7,"filling":1,"assigned":0,
       "load":{"active_streams":3,"bytes_per_second":1000,"free_bytes":50,"total_bytes":100,
               "used_bytes":20}},
      {"name":"edge-2","up":false,"load":{}}],
      "hot":[{"segment":"film/3","program":"film","index":3,"requests":4.5}],
      "under_replicated":2})");
  ASSERT_TRUE(v) << v.err().detail;
  ASSERT_EQ(v->engines.size(), 2u);
  EXPECT_EQ(v->engines[0].name, "edge-1");
  EXPECT_TRUE(v->engines[0].in_rotation);
  EXPECT_EQ(v->engines[0].streams, 3u);
  EXPECT_EQ(v->engines[0].free_bytes, 50u);
  EXPECT_EQ(v->engines[0].total_bytes, 100u);
  EXPECT_EQ(v->engines[0].segments, 7u);
  EXPECT_EQ(v->engines[0].filling, 1u);
  EXPECT_FALSE(v->engines[1].in_rotation);
  ASSERT_EQ(v->hot.size(), 1u);
  EXPECT_EQ(v->hot[0].segment, "film/3");
  EXPECT_DOUBLE_EQ(v->hot[0].requests, 4.5);
  EXPECT_EQ(v->under_replicated, 2u);
  // A director from before "hot": none.
  auto old = parse_director_engines(R"({"engines":[]})");
  ASSERT_TRUE(old);
  EXPECT_TRUE(old->hot.empty());
}

TEST(DashboardViews, WhatIsNotAnEngineListIsRefused) {
  for (auto* body : {"", "[]", "{}", R"({"engines":{}})", R"({"engines":[{"up":true}]})",
                     R"({"engines":[{"name":3}]})"}) {
    auto v = parse_director_engines(body);
    ASSERT_FALSE(v) << body;
    EXPECT_EQ(v.err().code, errc::protocol_error) << body;
  }
}

TEST(DashboardViews, TheSupervisorsRestartsPerBlade) {
  auto r = parse_supervisor_restarts(R"({"role":"station","blades":[
      {"role":"director","name":"edge","restarts":0},{"role":"engine","name":"edge-1","restarts":2}]})");
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->at("edge"), 0u);
  EXPECT_EQ(r->at("edge-1"), 2u);
  EXPECT_FALSE(parse_supervisor_restarts(R"({"role":"engine"})"));
}

TEST(DashboardViews, ServedBytesSumEveryWayAndIgnoreOtherMetrics) {
  std::string text =
      "# HELP vodgrid_engine_served_bytes_total Segment bytes served\n"
      "# TYPE vodgrid_engine_served_bytes_total counter\n"
      "vodgrid_engine_served_bytes_total{via=\"http\"} 1500\n"
      "vodgrid_engine_served_bytes_total{via=\"rtp\"} 2.5e3\n"
      "vodgrid_engine_served_bytes_total_other 99\n"
      "vodgrid_http_body_bytes_sent_total 7777\n";
  EXPECT_EQ(parse_served_bytes(text), 4000u);
  EXPECT_EQ(parse_served_bytes("vodgrid_http_body_bytes_sent_total 7777\n"), std::nullopt);
}

TEST(DashboardViews, AnEngineIsUpOnlyWhenItsDirectorAndItsProbeAgree) {
  EXPECT_EQ(status_of(std::nullopt, std::nullopt), engine_status::unknown);
  EXPECT_EQ(status_of(true, true), engine_status::up);
  EXPECT_EQ(status_of(true, false), engine_status::down);       // killed: its director not told yet
  EXPECT_EQ(status_of(false, true), engine_status::down);       // out of rotation
  EXPECT_EQ(status_of(std::nullopt, true), engine_status::up);  // its director unreachable
  EXPECT_EQ(status_of(std::nullopt, false), engine_status::down);
  EXPECT_EQ(to_string(engine_status::down), "down");
}

TEST(DashboardViews, TheEventLogKeepsTheLastOnes) {
  event_log log(3);
  for (int i = 0; i < 5; ++i) {
    log.add({i, "engine_down", "edge", "edge-" + std::to_string(i), ""});
  }
  ASSERT_EQ(log.events().size(), 3u);
  EXPECT_EQ(log.events().front().at_ms, 2);
  EXPECT_EQ(log.events().back().at_ms, 4);
  EXPECT_EQ(log.events().back().to_json().at("subject").as_string(), "edge-4");
}

TEST(DashboardViews, ARateSpansItsWindowAndARestartedCounterStartsAfresh) {
  rate_meter m(3s);
  auto t = rate_meter::clock::now();
  EXPECT_EQ(m.per_second(), 0);
  m.sample(t, 1000);
  m.sample(t + 1s, 3000);
  EXPECT_DOUBLE_EQ(m.per_second(), 2000);
  m.sample(t + 2s, 3000);
  EXPECT_DOUBLE_EQ(m.per_second(), 1000);  // 2000 bytes over 2 s
  m.sample(t + 5s, 3000);
  m.sample(t + 6s, 3000);
  EXPECT_DOUBLE_EQ(m.per_second(), 0);  // nothing within the last window
  m.sample(t + 7s, 100);                // restarted
  m.sample(t + 8s, 600);
  EXPECT_DOUBLE_EQ(m.per_second(), 500);
}

}  // namespace
}  // namespace vodgrid::registry
