// Browsers at a real station with tokens on (issue 13, items 1 and 5): the CORS headers on the
// director's playlists and redirects and on the engines' segments (200, 206, 416, 401, 404), the
// preflights, control endpoints refusing pages of other origins (and changing nothing), the watch
// page and its files, and the director's login relay.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include <memory>
#include <string>

#include "support/support.h"

namespace vodgrid::test {
namespace {

using V = boost::beast::http::verb;

const net::http_client::header_list page{{"Origin", "http://page.example"}};

// One station with tokens on and program "movie" (4 one-second segments), shared by the suite.
class WebStation : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    station_fixture::options o;
    o.engines = 2;
    o.with_auth = true;
    st_ = std::make_unique<station_fixture>(o);
    src_ = std::make_unique<temp_dir>();
    make_sample(src_->path(), 4, 1);
    auto in = st_->ingest(src_->path().string(), "movie");
    ASSERT_EQ(in.status, 0) << in.err;
    token_ = st_->viewer_token();
  }
  static void TearDownTestSuite() {
    st_.reset();
    src_.reset();
  }
  static std::string director(const std::string& target) { return st_->director_url() + target; }

  // The engine URL the director redirects segment n to (its signed URL).
  static std::string engine_url_of(int n) {
    auto r = http_get(
        director("/v1/programs/movie/segments/" + std::to_string(n) + ".ts?token=" + token_), page);
    EXPECT_TRUE(r && r->status == 302) << (r ? r->body : r.err().detail);
    return r ? r->header("Location") : std::string();
  }

  static inline std::unique_ptr<station_fixture> st_;
  static inline std::unique_ptr<temp_dir> src_;
  static inline std::string token_;
};

void expect_cors(const result<net::client_response>& r, unsigned status, const std::string& what) {
  ASSERT_TRUE(r) << what << ": " << r.err().detail;
  EXPECT_EQ(r->status, status) << what << ": " << r->body;
  EXPECT_EQ(r->header("Access-Control-Allow-Origin"), "*") << what;
  EXPECT_EQ(r->header("Access-Control-Expose-Headers"), "Content-Length, Content-Range") << what;
}

TEST_F(WebStation, TheDirectorsPlaylistsAndRedirectsCarryCorsHeaders) {
  expect_cors(http_get(director("/v1/programs/movie/index.m3u8?token=" + token_), page), 200,
              "playlist");
  expect_cors(http_get(director("/v1/programs/movie/iframes.m3u8?token=" + token_), page), 200,
              "I-frame playlist");
  expect_cors(http_get(director("/v1/programs/movie/index.m3u8"), page), 401, "no token");
  expect_cors(http_get(director("/v1/programs/nothing/index.m3u8?token=" + token_), page), 404,
              "no such program");
  auto r = http_get(director("/v1/programs/movie/segments/0.ts?token=" + token_), page);
  expect_cors(r, 302, "redirect");
  EXPECT_NE(r->header("Location").find("/v1/segments/movie/0.ts?"), std::string::npos);
}

// A browser that followed the 302 from a page of a third origin says "Origin: null" to the engine.
TEST_F(WebStation, TheEnginesSegmentsCarryCorsHeadersOnEveryAnswer) {
  std::string url = engine_url_of(1);
  ASSERT_FALSE(url.empty());
  net::http_client::header_list redirected{{"Origin", "null"}};
  auto whole = http_get(url, redirected);
  expect_cors(whole, 200, "segment");
  auto part = redirected;
  part.emplace_back("Range", "bytes=0-187");
  auto r = http_get(url, part);
  expect_cors(r, 206, "range");
  EXPECT_EQ(r->body.size(), 188u);
  EXPECT_EQ(r->header("Content-Range"), "bytes 0-187/" + std::to_string(whole->body.size()));
  auto beyond = redirected;
  beyond.emplace_back("Range", "bytes=999999999-");
  expect_cors(http_get(url, beyond), 416, "range beyond the end");
  auto unsigned_url = url.substr(0, url.find('?'));
  expect_cors(http_get(unsigned_url, redirected), 401, "unsigned");
  auto base = url.substr(0, url.find("/v1/"));
  expect_cors(http_get(base + "/v1/segments/movie/99.ts", redirected), 401, "not held, unsigned");
}

TEST_F(WebStation, PreflightsOfViewerPathsAreAnsweredAtTheDirectorAndTheEngines) {
  std::string engine = engine_url_of(0);
  for (std::string url : {director("/v1/programs/movie/index.m3u8"),
                          director("/v1/programs/movie/segments/0.ts"), engine}) {
    auto r = http(V::options, url, {},
                  {{"Origin", "http://page.example"},
                   {"Access-Control-Request-Method", "GET"},
                   {"Access-Control-Request-Headers", "range"}});
    ASSERT_TRUE(r) << url;
    EXPECT_EQ(r->status, 200u) << url << r->body;
    EXPECT_EQ(r->header("Access-Control-Allow-Origin"), "*") << url;
    EXPECT_EQ(r->header("Access-Control-Allow-Methods"), "GET, HEAD, OPTIONS") << url;
    EXPECT_EQ(r->header("Access-Control-Allow-Headers"), "Range, Authorization") << url;
    EXPECT_EQ(r->header("Access-Control-Max-Age"), "600") << url;
  }
}

TEST_F(WebStation, ControlEndpointsRefuseOtherOriginsAndChangeNothing) {
  auto op = st_->operator_token();
  auto other = [&](net::http_client::header_list h) {
    h.emplace_back("Authorization", "Bearer " + op);
    return h;
  };
  // With an operator's valid token even: a page must not use it through a viewer's browser.
  auto del = http(V::delete_, director("/v1/programs/movie"), {}, other(page));
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 403u) << del->body;
  EXPECT_EQ(del->header("Access-Control-Allow-Origin"), "");
  EXPECT_EQ(http_get(director("/v1/programs/movie"), {{"Authorization", "Bearer " + op}})->status,
            200u)
      << "still there";
  auto seg = engine_url_of(2);
  auto put =
      http(V::put, seg.substr(0, seg.find('?')), "x", other({{"Sec-Fetch-Site", "cross-site"}}));
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 403u) << put->body;
  auto held = http_get(seg);
  ASSERT_TRUE(held);
  EXPECT_EQ(held->status, 200u);
  EXPECT_GT(held->body.size(), 1u) << "the segment was not overwritten";
  for (std::string url : {director("/v1/engines"), director("/v1/programs/movie")}) {
    auto r = http_get(url, page);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 403u) << url;
    auto pre = http(V::options, url, {}, {{"Origin", "http://page.example"}});
    ASSERT_TRUE(pre);
    EXPECT_EQ(pre->status, 405u) << url;
    EXPECT_EQ(pre->header("Access-Control-Allow-Origin"), "") << url;
  }
  // The same requests from the director's own pages, and from players, are served (with a
  // viewer's token: docs/protocol.md, "Who may read what").
  std::string self = "http://" + st_->director_url().substr(7);
  net::http_client::header_list viewer{{"Authorization", "Bearer " + token_}};
  auto from_self = viewer;
  from_self.emplace_back("Origin", self);
  EXPECT_EQ(http_get(director("/v1/programs/movie"), from_self)->status, 200u);
  EXPECT_EQ(http_get(director("/v1/programs/movie"), viewer)->status, 200u);
}

TEST_F(WebStation, TheWatchPageAndItsFilesAreServed) {
  auto r = http_get(director("/watch/movie"), {{"Sec-Fetch-Site", "cross-site"}});  // a link
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200u) << r->body;
  EXPECT_EQ(r->header("Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(r->body.find("/web/watch.js"), std::string::npos);
  EXPECT_NE(r->header("Content-Security-Policy").find("default-src 'self'"), std::string::npos);
  auto js = http_get(director("/web/watch.js"));
  ASSERT_TRUE(js);
  EXPECT_EQ(js->status, 200u);
  EXPECT_EQ(js->header("Content-Type"), "text/javascript; charset=utf-8");
  EXPECT_NE(js->body.find("/v1/login/viewer"), std::string::npos);
  auto hls = http_get(director("/web/hls.min.js"));
  ASSERT_TRUE(hls);
  EXPECT_EQ(hls->status, 200u) << hls->body;
  EXPECT_GT(hls->body.size(), 100'000u) << "hls.js, installed by scripts/install-deps.sh";
  EXPECT_EQ(http_get(director("/web/watch.css"))->status, 200u);
}

TEST_F(WebStation, NothingOutsideTheWebRootIsServed) {
  for (std::string target :
       {"/web/..%2F..%2FCMakeLists.txt", "/web/%2e%2e", "/web/package.json", "/web/.gitignore",
        "/web/node_modules", "/web/README.md", "/web/nothing.js", "/web/..%2Fsrc%2Fmain.js",
        "/web/%2Fetc%2Fpasswd"}) {
    auto r = http_get(director(target));
    ASSERT_TRUE(r) << target;
    EXPECT_EQ(r->status, 404u) << target << ": " << r->body;
  }
  auto bad_id = http_get(director("/watch/..%2Fx"));
  ASSERT_TRUE(bad_id);
  EXPECT_EQ(bad_id->status, 400u);
}

TEST_F(WebStation, TheLoginRelayGivesATokenThatPlays) {
  auto login = [](std::string body, net::http_client::header_list h = {}) {
    return http(V::post, director("/v1/login/viewer"), std::move(body), std::move(h));
  };
  auto r = login(R"({"user":"demo","password":"demo"})");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200u) << r->body;
  EXPECT_EQ(r->header("Cache-Control"), "no-store");
  auto token = std::string(boost::json::parse(r->body).at("token").as_string());
  EXPECT_EQ(http_get(director("/v1/programs/movie/index.m3u8?token=" + token))->status, 200u);

  auto wrong = login(R"({"user":"demo","password":"nope"})");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401u) << wrong->body;
  EXPECT_NE(wrong->body.find("auth: bad name or password"), std::string::npos) << wrong->body;
  for (std::string body : {std::string("{}"), std::string("not json"),
                           std::string(R"({"user":"demo","password":"demo","x":1})"),
                           std::string(R"({"user":"demo","password":7})")}) {
    auto bad = login(body);
    ASSERT_TRUE(bad);
    EXPECT_EQ(bad->status, 400u) << body << ": " << bad->body;
  }
  auto elsewhere = login(R"({"user":"demo","password":"demo"})", page);
  ASSERT_TRUE(elsewhere);
  EXPECT_EQ(elsewhere->status, 403u) << "a page of another origin cannot log in through us";
  EXPECT_EQ(login(std::string(5000, 'x'))->status, 413u);
}

}  // namespace
}  // namespace vodgrid::test
