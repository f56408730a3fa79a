// Tokens in the grid (issue 5, claims 23-25): the director checks viewers' tokens on playlists and
// segments, signs each redirect for the engine, the engine checks that signature (or, for a copy,
// the receiving engine's token); the real ffmpeg and `vodgrid play` play with a token.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <memory>
#include <regex>

#include "api/push.h"
#include "auth/client.h"
#include "auth/keys.h"
#include "auth/store.h"
#include "auth/url_signer.h"
#include "auth/verifier.h"
#include "base/fs.h"
#include "support/support.h"

namespace vodgrid::test {
namespace {

namespace http_ns = boost::beast::http;

std::string streamhash(const std::string& input) {
  auto r = run({"/usr/bin/ffmpeg", "-nostdin", "-v", "error", "-i", input, "-map", "0", "-c",
                "copy", "-f", "streamhash", "-"});
  EXPECT_EQ(r.status, 0) << r.err;
  return r.out;
}

// One station with tokens on and program "movie" (4 one-second segments), shared by the suite.
class AuthGrid : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    station_fixture::options o;
    o.engines = 2;
    o.with_auth = true;
    st_ = new station_fixture(o);
    src_ = new temp_dir();
    playlist_ = make_sample(src_->path(), 4, 1);
    auto in = st_->ingest(src_->path().string(), "movie");
    ASSERT_EQ(in.status, 0) << in.err;
    auto store = auth::auth_store::open("sqlite://" + (st_->data() / "auth.db").string());
    ASSERT_TRUE(store) << store.err().detail;
    auto sealer = auth::key_sealer::load(st_->data() / "auth.key");
    ASSERT_TRUE(sealer) << sealer.err().detail;
    (*store)->set_sealer(std::make_shared<const auth::key_sealer>(std::move(*sealer)));
    auto keys = (*store)->load_keys();
    ASSERT_TRUE(keys && !keys->empty());
    auto& newest = keys->back();
    for (auto& k : *keys) {
      if (k.signing_until == 0) {
        newest = k;
      }
    }
    auto sk = auth::signing_key::from_seed(newest.kid, newest.seed);
    ASSERT_TRUE(sk);
    key_ = new auth::signing_key(std::move(*sk));
    auto sta = (*store)->station_key("st");
    ASSERT_TRUE(sta);
    station_key_ = new std::string(*sta);
  }
  static void TearDownTestSuite() {
    delete key_;
    delete station_key_;
    delete st_;
    delete src_;
  }

  static std::string playlist_url() {
    return st_->director_url() + "/v1/programs/movie/index.m3u8";
  }
  static std::string segment_url(int i) {
    return fmt::format("{}/v1/programs/movie/segments/{}.ts", st_->director_url(), i);
  }
  // A token signed with the auth server's own key: whatever claims a test needs.
  static std::string issue(auth::claims c) { return key_->issue(c); }
  static auth::claims viewer_claims() {
    auth::claims c;
    c.issuer = st_->auth_url();
    c.subject = "demo";
    c.kind = auth::token_kind::viewer;
    c.all_programs = true;
    c.issued_at = auth::unix_now() - 10;
    c.expires_at = auth::unix_now() + 600;
    return c;
  }
  // GETs `url` with the token as ?token= (or none), returns status and body.
  static std::pair<int, std::string> get(const std::string& url, const std::string& token) {
    auto r = http_get(token.empty() ? url : url + "?token=" + token);
    if (!r) {
      return {0, r.err().detail};
    }
    return {r->status, r->body};
  }
  // Expects both the playlist and a segment to be refused with `status` and `reason` in the body.
  static void expect_refused(const std::string& token, int status, const std::string& reason) {
    for (auto& url : {playlist_url(), segment_url(1)}) {
      auto [code, body] = get(url, token);
      EXPECT_EQ(code, status) << url << ": " << body;
      EXPECT_NE(body.find(reason), std::string::npos) << url << ": " << body;
      EXPECT_NE(body.find("\"error\""), std::string::npos) << body;
    }
  }
  // Engine `name`'s own token, logged in with its auth.secret as the engine does.
  static std::string engine_token(const std::string& name) {
    auto secret = read_file(st_->data() / name / "d0" / "auth.secret");
    EXPECT_TRUE(secret);
    std::string text = secret ? *secret : std::string();
    while (!text.empty() && text.back() == '\n') {
      text.pop_back();
    }
    auto login = http(http_ns::verb::post, st_->auth_url() + "/v1/login/engine",
                      fmt::format(R"({{"name":"{}","secret":"{}"}})", name, text),
                      {{"Content-Type", "application/json"}});
    if (!login || login->status != 200) {
      ADD_FAILURE() << (login ? login->body : login.err().detail);
      return {};
    }
    auto token = auth::decode_login_reply(login->body);
    EXPECT_TRUE(token);
    return token ? token->token : std::string();
  }
  static std::string location(const std::string& token, int segment) {
    auto r = http_get(segment_url(segment) + "?token=" + token);
    EXPECT_TRUE(r && r->status == 302) << (r ? r->body : r.err().detail);
    return r ? r->header("Location") : std::string();
  }

  static station_fixture* st_;
  static temp_dir* src_;
  static std::filesystem::path playlist_;
  static auth::signing_key* key_;
  static std::string* station_key_;
};
station_fixture* AuthGrid::st_ = nullptr;
temp_dir* AuthGrid::src_ = nullptr;
std::filesystem::path AuthGrid::playlist_;
auth::signing_key* AuthGrid::key_ = nullptr;
std::string* AuthGrid::station_key_ = nullptr;

TEST_F(AuthGrid, AValidViewerTokenPlaysAndRedirectsToASignedEnginePath) {
  auto token = st_->viewer_token();
  auto [code, body] = get(playlist_url(), token);
  ASSERT_EQ(code, 200) << body;
  EXPECT_NE(body.find("segments/0.ts?token=" + token), std::string::npos) << body;
  auto loc = location(token, 0);
  EXPECT_NE(loc.find("/v1/segments/movie/0.ts?vg_exp="), std::string::npos) << loc;
  EXPECT_EQ(loc.find("token="), std::string::npos) << "the engine needs no viewer token: " << loc;
  auto seg = http_get(loc);
  ASSERT_TRUE(seg);
  EXPECT_EQ(seg->status, 200) << seg->body;
  EXPECT_EQ(get(playlist_url(), issue(viewer_claims())).first, 200);
}

TEST_F(AuthGrid, DirectorRefusesAMissingTokenWith401) {
  expect_refused("", 401, "token missing");
}

TEST_F(AuthGrid, DirectorRefusesForgedTokens) {
  // Signed by a key the auth server never published.
  auto stranger = auth::signing_key::generate(auth::new_kid());
  expect_refused(stranger.issue(viewer_claims()), 403, "token unknown_key");
  // Signed by a stranger's key under the server's key id.
  auto impostor = auth::signing_key::generate(key_->kid());
  expect_refused(impostor.issue(viewer_claims()), 403, "token bad_signature");
  expect_refused("not-a-token", 403, "token malformed");
}

TEST_F(AuthGrid, DirectorRefusesATamperedToken) {
  auto token = st_->viewer_token();
  auto d1 = token.find('.');
  auto d2 = token.find('.', d1 + 1);
  auto payload = auth::base64url_decode(token.substr(d1 + 1, d2 - d1 - 1));
  ASSERT_TRUE(payload);
  auto at = payload->find("\"demo\"");
  ASSERT_NE(at, std::string::npos) << *payload;
  payload->replace(at, 6, "\"dema\"");
  std::string tampered =
      token.substr(0, d1 + 1) + auth::base64url_encode(*payload) + token.substr(d2);
  expect_refused(tampered, 403, "token bad_signature");
}

TEST_F(AuthGrid, DirectorRefusesAnExpiredToken) {
  auto c = viewer_claims();
  c.issued_at = auth::unix_now() - 120;
  c.expires_at = auth::unix_now() - 60;
  expect_refused(issue(c), 403, "token expired");
}

TEST_F(AuthGrid, DirectorRefusesATokenOfAnotherKind) {
  auto c = viewer_claims();
  c.kind = auth::token_kind::operator_;
  expect_refused(issue(c), 403, "token wrong_kind");
  expect_refused(st_->operator_token(), 403, "token wrong_kind");
}

TEST_F(AuthGrid, DirectorRefusesAProgramOutsideTheEntitlement) {
  auto c = viewer_claims();
  c.all_programs = false;
  c.programs = {*program_id::parse("another")};
  expect_refused(issue(c), 403, "token not_entitled");
  c.programs.push_back(*program_id::parse("movie"));
  EXPECT_EQ(get(playlist_url(), issue(c)).first, 200);
}

TEST_F(AuthGrid, DirectorRefusesATokenBoundToAnotherAddress) {
  auto c = viewer_claims();
  c.address = "10.9.8.7";
  expect_refused(issue(c), 403, "token wrong_address");
  c.address = "127.0.0.1";
  EXPECT_EQ(get(playlist_url(), issue(c)).first, 200);
}

TEST_F(AuthGrid, EngineRefusesASignatureMovedToAnotherPath) {
  auto loc = location(st_->viewer_token(), 0);
  auto q = loc.find('?');
  ASSERT_NE(q, std::string::npos);
  auto moved =
      std::regex_replace(loc.substr(0, q), std::regex("/0\\.ts$"), "/1.ts") + loc.substr(q);
  auto r = http_get(moved);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403) << r->body;
  EXPECT_NE(r->body.find("does not match"), std::string::npos) << r->body;
  auto bare = http_get(loc.substr(0, q));
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->status, 401) << bare->body;
}

TEST_F(AuthGrid, EngineRefusesASignatureReplayedAfterItExpired) {
  auth::url_signer signer(*station_key_);
  std::string path = "/v1/segments/movie/2.ts";
  auto url = st_->engine_url(0) + signer.sign(path, auth::unix_now() + 2);
  auto first = http_get(url);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 200) << first->body;
  std::this_thread::sleep_for(std::chrono::milliseconds(3100));
  auto again = http_get(url);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 403) << again->body;
  EXPECT_NE(again->body.find("expired"), std::string::npos) << again->body;
}

TEST_F(AuthGrid, EngineServesACopyOnlyToAnEngineToken) {
  std::string url = st_->engine_url(0) + "/v1/segments/movie/1.ts";
  auto none = http_get(url);
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401) << none->body;
  auto viewer = http_get(url, {{"Authorization", "Bearer " + st_->viewer_token()}});
  ASSERT_TRUE(viewer);
  EXPECT_EQ(viewer->status, 403) << viewer->body;
  EXPECT_NE(viewer->body.find("wrong_kind"), std::string::npos) << viewer->body;
  auto stranger = auth::signing_key::generate(auth::new_kid());
  auto c = viewer_claims();
  c.kind = auth::token_kind::engine;
  c.subject = "e1";
  c.station = "st";
  auto forged = http_get(url, {{"Authorization", "Bearer " + stranger.issue(c)}});
  ASSERT_TRUE(forged);
  EXPECT_EQ(forged->status, 403) << forged->body;
  // The other engine's own credentials, as its copies present them.
  auto token = engine_token("e1");
  auto ok = http_get(url, {{"Authorization", "Bearer " + token}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
}

// Push streaming's engine reports: an engine's token speaks for that engine only, so that no engine
// can move, end or report another's sessions.
TEST_F(AuthGrid, AnEngineTokenSpeaksForItsOwnEngineOnly) {
  auto e1 = engine_token("e1");
  ASSERT_FALSE(e1.empty());
  auto post = [&](const std::string& path, const std::string& body) {
    auto r = http(http_ns::verb::post, st_->director_url() + path, body,
                  {{"Authorization", "Bearer " + e1}, {"Content-Type", "application/json"}});
    return r ? std::pair{static_cast<int>(r->status), r->body} : std::pair{0, r.err().detail};
  };
  auto e0 = *engine_id::parse("e0");
  segment_key key{*program_id::parse("movie"), segment_index{0}};
  auto json_of = [](const auto& v) { return boost::json::serialize(api::to_json(v)); };
  auto [own, own_body] =
      post("/v1/push/positions", json_of(api::push_report{*engine_id::parse("e1"), {}}));
  EXPECT_EQ(own, 200) << own_body;
  api::push_position at;
  at.session = "0123456789abcdef";
  at.key = key;
  at.state.ssrc = 1;
  for (auto [path, body] : std::vector<std::pair<std::string, std::string>>{
           {"/v1/push/positions", json_of(api::push_report{e0, {}})},
           {"/v1/push/sessions/0123456789abcdef/ended",
            json_of(api::push_ended{e0, at, "end", ""})},
           {"/v1/push/sessions/0123456789abcdef/taken",
            json_of(api::push_taken{e0, at, std::nullopt, false})},
           {"/v1/push/sessions/0123456789abcdef/next",
            json_of(api::push_next_request{e0, key, 1, false})}}) {
    auto [code, reply] = post(path, body);
    EXPECT_EQ(code, 403) << path << ": " << body << " -> " << reply;
    EXPECT_NE(reply.find("not engine e0's"), std::string::npos) << path << ": " << reply;
  }
}

TEST_F(AuthGrid, FfmpegReadsExactlyTheSourcePacketsWithAToken) {
  auto token = st_->viewer_token();
  std::string via_grid = streamhash(playlist_url() + "?token=" + token);
  std::string from_source = streamhash(playlist_.string());
  ASSERT_FALSE(from_source.empty());
  EXPECT_EQ(via_grid, from_source);
}

TEST_F(AuthGrid, VodgridLoginPrintsATokenThatPlayAccepts) {
  auto login = run({vodgrid_binary(), "login", "--user", "demo", "--password", "demo", "--grid",
                    st_->auth_url()});
  ASSERT_EQ(login.status, 0) << login.err;
  std::string token = login.out;
  while (!token.empty() && token.back() == '\n') {
    token.pop_back();
  }
  ASSERT_EQ(token.find('\n'), std::string::npos) << "one line: " << login.out;
  auto play = run({vodgrid_binary(), "play", playlist_url(), "--token", token});
  EXPECT_EQ(play.status, 0) << play.out << play.err;
  auto refused = run({vodgrid_binary(), "play", playlist_url()});
  EXPECT_NE(refused.status, 0) << refused.out;
  EXPECT_NE(refused.err.find("401"), std::string::npos) << refused.err;
  auto bad = run({vodgrid_binary(), "login", "--user", "demo", "--password", "wrong", "--grid",
                  st_->auth_url()});
  EXPECT_NE(bad.status, 0);
}

// Claims 24, 25 across stations: the edge's engines copy from the home's with their engine tokens
// (the home's engines refuse anything else), and a viewer plays at the edge with a token.
TEST(AuthGridCopies, AStationCopiesFromAnotherWithItsEngineTokens) {
  grid_fixture g({{"home", 2}, {"edge", 2, 100}}, {}, false, true);
  temp_dir src;
  make_sample(src.path(), 4, 1);
  auto in = g.ingest(src.path().string(), "film", "edge", "0");  // the edge copies on a miss
  ASSERT_EQ(in.status, 0) << in.err;
  std::string url = g.director_url("edge") + "/v1/programs/film/index.m3u8";
  ASSERT_TRUE(eventually([&] {
    auto r = http_get(url + "?token=" + g.viewer_token());
    return r && r->status == 200;
  }));
  auto play = run({vodgrid_binary(), "play", url, "--token", g.viewer_token(), "--json"});
  EXPECT_EQ(play.status, 0) << play.out << play.err << g.log_of("edge");
  // A viewer's token cannot list the director's engines, yet the report measures the CPU of every
  // engine the play met (sampled from its first redirect there).
  auto report = boost::json::parse(play.out).as_object();
  auto& engine_cpu = report.at("saturation").at("engine_cpu").as_object();
  ASSERT_FALSE(report.at("engines").as_object().empty()) << play.out;
  for (auto& [origin, segments] : report.at("engines").as_object()) {
    std::string hp(origin);
    hp = hp.substr(hp.find("://") + 3);
    EXPECT_TRUE(engine_cpu.contains(hp)) << hp << " unmeasured: " << play.out;
  }
  net::http_client::header_list op{{"Authorization", "Bearer " + g.operator_token()}};
  auto held = http_get(g.engine_url("edge-1") + "/v1/segments", op);
  auto held2 = http_get(g.engine_url("edge-2") + "/v1/segments", op);
  ASSERT_TRUE(held && held2);
  EXPECT_NE((held->body + held2->body).find("\"film\""), std::string::npos)
      << "the edge should hold copies: " << held->body << held2->body;
  // Without a token the home's engine refuses the copy a stranger asks for.
  auto bare = http_get(g.engine_url("home-1") + "/v1/segments/film/0.ts");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->status, 401) << bare->body;
}

// Item 5: every control endpoint needs an operator's or a daemon's token; a viewer's will not do,
// and a refused request changes nothing.
TEST(AuthGridControl, ControlEndpointsRefuseViewersAndStrangers) {
  grid_fixture g({{"home", 2}, {"edge", 2, 100}}, {}, false, true);
  temp_dir src;
  make_sample(src.path(), 2, 1);
  auto viewer = g.viewer_token();
  // An ingest with a viewer token, or none, is refused at the director and loads nothing.
  for (std::string token : {std::string(), viewer}) {
    std::vector<std::string> argv{vodgrid_binary(), "ingest", src.path().string(),
                                  "--title",        "x",      "--id",
                                  "film",           "--grid", g.director_url("home")};
    if (!token.empty()) {
      argv.push_back("--token");
      argv.push_back(token);
    }
    auto in = run(argv);
    EXPECT_EQ(in.status, 1);
    EXPECT_NE(in.err.find("token"), std::string::npos) << in.err;
    EXPECT_EQ(http_get(g.director_url("home") + "/v1/programs/film",
                       {{"Authorization", "Bearer " + g.operator_token()}})
                  ->status,
              404u);
  }
  struct call {
    http_ns::verb verb;
    std::string url, body;
  };
  auto dir = g.director_url("home");
  auto eng = g.engine_url("home-1");
  auto reg = g.registry_url();
  std::vector<call> calls{
      {http_ns::verb::post, dir + "/v1/programs", "{}"},
      {http_ns::verb::post, dir + "/v1/programs/film/commit", ""},
      {http_ns::verb::delete_, dir + "/v1/programs/film", ""},
      {http_ns::verb::post, dir + "/v1/programs/film/distribute", "{}"},
      {http_ns::verb::post, dir + "/v1/programs/film/availability",
       R"({"availability":"published"})"},
      {http_ns::verb::post, dir + "/v1/engines/home-1/heartbeat", "{}"},
      {http_ns::verb::get, dir + "/v1/programs/film/segments/0/holder", ""},
      {http_ns::verb::put, eng + "/v1/segments/film/0.ts", "bytes"},
      {http_ns::verb::delete_, eng + "/v1/segments/film/0.ts", ""},
      {http_ns::verb::post, eng + "/v1/orders/fetch", "{}"},
      {http_ns::verb::post, eng + "/v1/orders/preload", "{}"},
      {http_ns::verb::put, reg + "/v1/programs/film", "{}"},
      {http_ns::verb::post, reg + "/v1/programs/film/availability",
       R"({"availability":"published"})"},
      {http_ns::verb::put, reg + "/v1/stations/home", "{}"},
      {http_ns::verb::post, reg + "/v1/stations/home/report", "{}"},
  };
  for (auto& c : calls) {
    SCOPED_TRACE(c.url);
    auto bare = http(c.verb, c.url, c.body, {{"Content-Type", "application/json"}});
    ASSERT_TRUE(bare);
    EXPECT_EQ(bare->status, 401u) << bare->body;
    auto as_viewer =
        http(c.verb, c.url, c.body,
             {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + viewer}});
    ASSERT_TRUE(as_viewer);
    EXPECT_EQ(as_viewer->status, 403u) << as_viewer->body;
    EXPECT_NE(as_viewer->body.find("\"error\""), std::string::npos);
  }
  // The operator's token passes the check (and the request is then judged on its merits).
  auto op = http(
      http_ns::verb::post, dir + "/v1/programs/film/availability",
      R"({"availability":"published"})",
      {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + g.operator_token()}});
  ASSERT_TRUE(op);
  EXPECT_EQ(op->status, 404u) << op->body;  // no such program
  // With it, the station loader works end to end, and the registry distributes to the edge (its
  // own token at the edge's director).
  auto in = g.ingest(src.path().string(), "film", "edge");
  ASSERT_EQ(in.status, 0) << in.err << g.log_of("home");
  EXPECT_TRUE(eventually([&] {
    auto r = http_get(g.director_url("edge") + "/v1/programs/film",
                      {{"Authorization", "Bearer " + g.operator_token()}});
    return r && r->status == 200;
  }));
}

}  // namespace
}  // namespace vodgrid::test
