// Integration tests of the orders between daemons: an engine copying a segment from another engine,
// preloads ordered by the director with each redirect (claim 16), and loading from an http source.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <boost/json/serialize.hpp>

#include <csignal>
#include <regex>

#include "api/api.h"
#include "base/fs.h"
#include "support/support.h"

namespace vodgrid::test {
namespace {

using verb = boost::beast::http::verb;

std::string ts_bytes(size_t packets, char fill) {
  std::string s(188 * packets, fill);
  for (size_t i = 0; i < packets; ++i) {
    s[i * 188] = 0x47;
  }
  return s;
}

result<net::client_response> put_segment(const std::string& engine, const std::string& path,
                                         const std::string& data) {
  return http(verb::put, engine + "/v1/segments/" + path, data,
              {{api::sha256_header, to_hex(sha256(data))}});
}

std::string fetch_body(const std::string& program, int index, const std::string& data,
                       const std::string& source) {
  api::fetch_order o{{*program_id::parse(program), segment_index{static_cast<uint32_t>(index)}},
                     sha256(data),
                     data.size(),
                     {source}};
  return boost::json::serialize(api::to_json(o));
}

TEST(Orders, AnEngineCopiesASegmentFromAnotherEngine) {
  station_fixture st;
  std::string data = ts_bytes(1000, 'x');
  ASSERT_EQ(put_segment(st.engine_url(0), "film/3.ts", data)->status, 201u);
  auto source = st.engine_url(0) + "/v1/segments/film/3.ts";
  auto r =
      http(verb::post, st.engine_url(1) + "/v1/orders/fetch", fetch_body("film", 3, data, source));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201u) << r->body;
  auto got = http_get(st.engine_url(1) + "/v1/segments/film/3.ts");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200u);
  EXPECT_EQ(got->body, data);
  // The director learns of the new copy from the engine's next heartbeat.
  EXPECT_TRUE(eventually([&] {
    auto e = http_get(st.director_url() + "/v1/engines");
    return e && e->body.find("\"name\":\"" + st.engine_name(1) + "\"") != std::string::npos &&
           e->body.find("\"segments\":1") != std::string::npos;
  }));
  EXPECT_EQ(metric(st.engine_url(1), "vodgrid_engine_fetches_total\\{result=\"ok\"\\}"), 1);
}

TEST(Orders, ACopyThatDoesNotMatchItsDigestIsNotKept) {
  station_fixture st;
  std::string data = ts_bytes(10, 'a');
  ASSERT_EQ(put_segment(st.engine_url(0), "film/0.ts", data)->status, 201u);
  auto source = st.engine_url(0) + "/v1/segments/film/0.ts";
  auto r = http(verb::post, st.engine_url(1) + "/v1/orders/fetch",
                fetch_body("film", 0, ts_bytes(10, 'b'), source));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 422u) << r->body;
  // (Asked as a copy: a console would be sent on to engine 0.)
  EXPECT_EQ(
      http_get(st.engine_url(1) + "/v1/segments/film/0.ts", {{api::copy_header, "e0"}})->status,
      404u);
}

TEST(Orders, ACopyFromADeadOrMissingSourceFailsCleanly) {
  station_fixture st;
  std::string data = ts_bytes(10, 'a');
  auto dead = fmt::format("http://127.0.0.1:{}/v1/segments/film/0.ts", free_port());
  auto r =
      http(verb::post, st.engine_url(1) + "/v1/orders/fetch", fetch_body("film", 0, data, dead));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502u) << r->body;
  auto missing = st.engine_url(0) + "/v1/segments/film/0.ts";  // engine 0 does not hold it
  r = http(verb::post, st.engine_url(1) + "/v1/orders/fetch", fetch_body("film", 0, data, missing));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502u) << r->body;
  r = http(verb::post, st.engine_url(1) + "/v1/orders/fetch",
           fetch_body("film", 0, data, "ftp://x/y"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400u) << r->body;
  r = http(verb::post, st.engine_url(1) + "/v1/orders/fetch", "{\"program\":\"../x\"}");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400u) << r->body;
  EXPECT_EQ(http_get(st.engine_url(1) + "/v1/segments/film/0.ts")->status, 404u);
}

TEST(Orders, PreloadOfAHeldSegmentIsAcceptedAndOfAMissingOneRefused) {
  station_fixture st;
  std::string data = ts_bytes(10, 'a');
  ASSERT_EQ(put_segment(st.engine_url(0), "film/0.ts", data)->status, 201u);
  auto ok =
      http(verb::post, st.engine_url(0) + "/v1/orders/preload", R"({"program":"film","index":0})");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 202u) << ok->body;
  auto missing =
      http(verb::post, st.engine_url(0) + "/v1/orders/preload", R"({"program":"film","index":1})");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404u) << missing->body;
  EXPECT_EQ(metric(st.engine_url(0), "vodgrid_engine_preloads_total"), 1);
}

TEST(Orders, EachRedirectOrdersAPreloadOfTheNextSegment) {
  station_fixture st;
  temp_dir src;
  make_sample(src.path(), 6, 1);
  ASSERT_EQ(st.ingest(src.path().string(), "film").status, 0);
  auto m =
      api::decode<api::program_manifest>(http_get(st.director_url() + "/v1/programs/film")->body);
  ASSERT_TRUE(m);
  size_t n = m->segments.size();
  ASSERT_GE(n, 5u);
  std::vector<std::string> served_by;
  for (size_t i = 0; i < n; ++i) {
    auto r = http_get(fmt::format("{}/v1/programs/film/segments/{}.ts", st.director_url(), i));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 302u);
    served_by.push_back(r->header("Location"));
  }
  // One preload order per redirect but the last, each carried out by an engine.
  EXPECT_EQ(metric(st.director_url(), "vodgrid_director_preload_orders_total"),
            static_cast<double>(n - 1));
  EXPECT_TRUE(eventually([&] {
    double total = 0;
    for (int i = 0; i < 3; ++i) {
      total += metric(st.engine_url(i), "vodgrid_engine_preloads_total");
    }
    return total == static_cast<double>(n - 1);
  }));
}

TEST(Orders, AProgramLoadsFromAnHttpSource) {
  station_fixture st;
  temp_dir src;
  make_sample(src.path(), 4, 1);
  uint16_t port = free_port();
  auto server = child_process::spawn({"/usr/bin/python3", "-m", "http.server", std::to_string(port),
                                      "--bind", "127.0.0.1", "--directory", src.path().string()},
                                     st.data() / "http.log");
  ASSERT_TRUE(server);
  auto url = fmt::format("http://127.0.0.1:{}/index.m3u8", port);
  ASSERT_TRUE(eventually([&] {
    auto r = http_get(url);
    return r && r->status == 200;
  }));
  auto in = st.ingest(url, "remote");
  EXPECT_EQ(in.status, 0) << in.err;
  auto play = run({vodgrid_binary(), "play", st.director_url() + "/v1/programs/remote/index.m3u8"});
  EXPECT_EQ(play.status, 0) << play.out << play.err;
  auto gone = st.ingest(fmt::format("http://127.0.0.1:{}/nothing.m3u8", port), "gone");
  EXPECT_NE(gone.status, 0);
  EXPECT_NE(gone.err.find("404"), std::string::npos) << gone.err;
  server->stop(std::chrono::seconds(2));
}

}  // namespace
}  // namespace vodgrid::test
