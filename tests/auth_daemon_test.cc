// The auth daemon as a real process (`vodgrid auth --config grid.toml`) on SQLite and PostgreSQL:
// demo logins, operator-only account management, bad input refused with nothing changed, engine
// logins with their station key, key rotation seen by a verifier, keys and accounts surviving a
// restart.
#include <gtest/gtest.h>

#include <csignal>
#include <stdexcept>

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include "api/api.h"
#include "auth/client.h"
#include "auth/sealed.h"
#include "auth/store.h"
#include "auth/verifier.h"
#include "base/fs.h"
#include "db/db.h"
#include "support/postgres.h"
#include "support/support.h"

namespace vodgrid::test {
namespace {

namespace json = boost::json;
using verb = boost::beast::http::verb;

struct reply {
  unsigned status = 0;
  std::string body;
  json::object obj;
};

// Runs a coroutine to completion on a private io_context.
template <class F>
auto run_io(F f) {
  boost::asio::io_context io;
  auto fut = boost::asio::co_spawn(io, f(io), boost::asio::use_future);
  io.run();
  return fut.get();
}

class AuthDaemonTest : public ::testing::Test {
 public:
  virtual bool postgresql() const { return false; }

  void SetUp() override {
    db_url_ = postgresql() ? test::fresh_postgres_schema("auth")
                           : "sqlite://" + (dir_.path() / "auth.db").string();
    grid_.auth = auth_config{{"127.0.0.1", free_port()}, db_url_, true};
    if (postgresql()) {
      grid_.auth->key_file = dir_.path() / "keys" / "auth.key";
    }
    station_config s;
    s.name = *station_id::parse("home");
    s.home = true;
    s.director.listen = {"127.0.0.1", free_port()};
    s.director.data_dir = dir_.path() / "home";
    s.director.copies = 1;
    engine_config e;
    e.name = *engine_id::parse("home-1");
    e.listen = {"127.0.0.1", free_port()};
    e.data_dirs = {dir_.path() / "home-1"};
    s.engines.push_back(e);
    grid_.stations.push_back(s);
    config_file_ = dir_.path() / "grid.toml";
    if (!write_file_durably(config_file_, grid_.to_toml())) {
      throw std::runtime_error("cannot write the config");
    }
    start();
  }

  void TearDown() override {
    if (proc_.running()) {
      proc_.signal(SIGKILL);
      proc_.wait(std::chrono::seconds(10));
    }
    if (HasFailure()) {
      std::cerr << "auth log:\n" << log() << "\n";
    }
  }

  void start() {
    auto p = child_process::spawn({vodgrid_binary(), "auth", "--config", config_file_.string()},
                                  dir_.path() / "auth.log");
    if (!p) {
      throw std::runtime_error(p.err().detail);
    }
    proc_ = std::move(*p);
    if (!eventually([&] {
          auto r = http_get(url() + "/healthz");
          return r && r->status == 200;
        })) {
      throw std::runtime_error("the auth daemon did not start:\n" + log());
    }
  }
  void stop() {
    proc_.signal(SIGTERM);
    ASSERT_EQ(proc_.wait(std::chrono::seconds(10)), 0);
  }

  std::string url() const { return grid_.auth->listen.url(); }
  std::string log() const {
    auto t = read_file(dir_.path() / "auth.log");
    return t ? *t : std::string();
  }

  reply call(verb method, const std::string& path, const std::string& body = {},
             const std::string& token = {}) {
    reply out;
    net::http_client::header_list h;
    if (!token.empty()) {
      h.emplace_back("Authorization", "Bearer " + token);
    }
    auto r = http(method, url() + path, body, h);
    if (!r) {
      return out;
    }
    out.status = r->status;
    out.body = r->body;
    if (auto o = api::parse_object(r->body)) {
      out.obj = std::move(*o);
    }
    return out;
  }
  reply login(const std::string& kind, const std::string& user, const std::string& password) {
    json::object b = kind == "engine" ? json::object{{"name", user}, {"secret", password}}
                                      : json::object{{"user", user}, {"password", password}};
    return call(verb::post, "/v1/login/" + kind, json::serialize(b));
  }
  std::string token(const std::string& kind, const std::string& user, const std::string& password) {
    auto r = login(kind, user, password);
    EXPECT_EQ(r.status, 200u) << r.body;
    return r.obj.contains("token") ? std::string(r.obj["token"].as_string()) : std::string();
  }
  std::string admin() { return token("operator", "admin", "admin"); }

  // A verifier fed from GET /v1/keys.
  std::unique_ptr<auth::token_verifier> verifier_ptr() {
    auto v = std::make_unique<auth::token_verifier>();
    auto r = http_get(url() + "/v1/keys");
    EXPECT_TRUE(r && r->status == 200);
    auto keys = auth::decode_keys(r->body);
    EXPECT_TRUE(keys);
    v->set_keys(*keys);
    return v;
  }

  std::string accounts() { return call(verb::get, "/v1/accounts", {}, admin()).body; }

  temp_dir dir_;
  std::string db_url_;
  grid_config grid_;
  std::filesystem::path config_file_;
  child_process proc_;
};

class AuthDaemonPgTest : public AuthDaemonTest {
 public:
  bool postgresql() const override { return true; }
};

auth::requirement need(auth::token_kind k, std::string program = {}) {
  auth::requirement r;
  r.kind = k;
  if (!program.empty()) {
    r.program = program_id::parse(program);
  }
  return r;
}

void demo_logins(AuthDaemonTest& t) {
  auto vp = t.verifier_ptr();
  auto& v = *vp;
  auto viewer = t.token("viewer", "demo", "demo");
  auto out = v.verify(viewer, need(auth::token_kind::viewer, "any-program"));
  ASSERT_TRUE(out) << out.detail;
  EXPECT_EQ(out.ok->subject, "demo");
  EXPECT_TRUE(v.verify(t.admin(), need(auth::token_kind::operator_)));
  EXPECT_EQ(t.login("viewer", "demo", "wrong").status, 401u);
  EXPECT_EQ(t.login("viewer", "nobody", "demo").status, 401u);
  EXPECT_EQ(t.login("viewer", "admin", "admin").status, 401u);  // an operator is no subscriber
  EXPECT_EQ(t.login("operator", "demo", "demo").status, 401u);
}
TEST_F(AuthDaemonTest, DemoAccountsLogIn) {
  demo_logins(*this);
}
TEST_F(AuthDaemonPgTest, DemoAccountsLogIn) {
  demo_logins(*this);
}

void operator_only(AuthDaemonTest& t) {
  std::string body = R"({"password":"pw","programs":["news"]})";
  EXPECT_EQ(t.call(verb::put, "/v1/accounts/subscribers/ann", body).status, 401u);
  auto viewer = t.token("viewer", "demo", "demo");
  EXPECT_EQ(t.call(verb::put, "/v1/accounts/subscribers/ann", body, viewer).status, 403u);
  EXPECT_EQ(t.call(verb::get, "/v1/accounts", {}, viewer).status, 403u);
  EXPECT_EQ(t.call(verb::post, "/v1/keys/rotate", {}, viewer).status, 403u);
  EXPECT_EQ(t.call(verb::put, "/v1/accounts/subscribers/ann", body, viewer + "x").status, 403u);
  EXPECT_EQ(t.login("viewer", "ann", "pw").status, 401u);
  auto r = t.call(verb::put, "/v1/accounts/subscribers/ann", body, t.admin());
  ASSERT_EQ(r.status, 200u) << r.body;
  auto ann = t.token("viewer", "ann", "pw");
  auto vp = t.verifier_ptr();
  auto& v = *vp;
  EXPECT_TRUE(v.verify(ann, need(auth::token_kind::viewer, "news")));
  EXPECT_EQ(v.verify(ann, need(auth::token_kind::viewer, "film")).why,
            auth::token_error::not_entitled);
  EXPECT_EQ(t.call(verb::delete_, "/v1/accounts/subscribers/ann", {}, t.admin()).status, 200u);
  EXPECT_EQ(t.login("viewer", "ann", "pw").status, 401u);
  EXPECT_EQ(t.call(verb::delete_, "/v1/accounts/subscribers/ann", {}, t.admin()).status, 404u);
}
TEST_F(AuthDaemonTest, AccountsAreManagedByOperatorsOnly) {
  operator_only(*this);
}
TEST_F(AuthDaemonPgTest, AccountsAreManagedByOperatorsOnly) {
  operator_only(*this);
}

void bad_input(AuthDaemonTest& t) {
  auto op = t.admin();
  auto before = t.accounts();
  struct bad {
    verb method;
    std::string path;
    std::string body;
  };
  std::vector<bad> cases = {
      {verb::post, "/v1/login/viewer", "not json"},
      {verb::post, "/v1/login/viewer", "[1,2]"},
      {verb::post, "/v1/login/viewer", R"({"user":"demo"})"},
      {verb::post, "/v1/login/viewer", R"({"user":"demo","password":"demo","x":1})"},
      {verb::post, "/v1/login/viewer", R"({"user":"../etc","password":"demo"})"},
      {verb::post, "/v1/login/viewer", R"({"user":"demo","password":"demo","bind_address":1})"},
      {verb::post, "/v1/login/engine", R"({"user":"demo","password":"demo"})"},
      {verb::put, "/v1/accounts/subscribers/ann", R"({"password":"pw"})"},
      {verb::put, "/v1/accounts/subscribers/ann", R"({"password":"pw","programs":["a/b"]})"},
      {verb::put, "/v1/accounts/subscribers/ann", R"({"password":"","programs":"*"})"},
      {verb::put, "/v1/accounts/subscribers/ann", R"({"password":"pw","programs":"*","x":1})"},
      {verb::put, "/v1/accounts/engines/e1", R"({"password":"pw"})"},
      {verb::put, "/v1/accounts/operators/o1", R"({"password":"pw","station":"home"})"},
      {verb::put, "/v1/accounts/wizards/w", R"({"password":"pw"})"},
      {verb::put, "/v1/accounts/subscribers/bad%2Fname", R"({"password":"pw","programs":"*"})"},
  };
  for (auto& c : cases) {
    auto r = t.call(c.method, c.path, c.body, c.path.starts_with("/v1/accounts") ? op : "");
    EXPECT_GE(r.status, 400u) << c.path << " " << c.body;
    EXPECT_LT(r.status, 500u) << c.path << " " << c.body;
    EXPECT_TRUE(r.obj.contains("error") && r.obj.contains("detail")) << r.body;
  }
  EXPECT_EQ(t.accounts(), before);
}
TEST_F(AuthDaemonTest, BadInputIsRefusedAndChangesNothing) {
  bad_input(*this);
}
TEST_F(AuthDaemonPgTest, BadInputIsRefusedAndChangesNothing) {
  bad_input(*this);
}

void engine_login(AuthDaemonTest& t) {
  auto r = t.call(verb::put, "/v1/accounts/engines/home-1",
                  R"({"password":"engine-secret","station":"home"})", t.admin());
  ASSERT_EQ(r.status, 200u) << r.body;
  auto first = t.login("engine", "home-1", "engine-secret");
  ASSERT_EQ(first.status, 200u) << first.body;
  auto reply = auth::decode_login_reply(first.body);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->kind, auth::token_kind::engine);
  EXPECT_EQ(reply->station, "home");
  EXPECT_EQ(reply->station_key.size(), 32u);
  auto vp = t.verifier_ptr();
  auto& v = *vp;
  auto out = v.verify(reply->token, need(auth::token_kind::engine));
  ASSERT_TRUE(out) << out.detail;
  EXPECT_EQ(out.ok->station, "home");
  EXPECT_EQ(v.verify(reply->token, need(auth::token_kind::viewer)).why,
            auth::token_error::wrong_kind);
  auto second = auth::decode_login_reply(t.login("engine", "home-1", "engine-secret").body);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->station_key, reply->station_key);
  EXPECT_EQ(t.login("engine", "home-1", "wrong").status, 401u);
  // Renewal: the same claims, a token that verifies.
  auto renewed = t.call(verb::post, "/v1/token/renew", {}, reply->token);
  ASSERT_EQ(renewed.status, 200u) << renewed.body;
  auto rr = auth::decode_login_reply(renewed.body);
  ASSERT_TRUE(rr);
  EXPECT_TRUE(v.verify(rr->token, need(auth::token_kind::engine)));
  EXPECT_EQ(t.call(verb::post, "/v1/token/renew").status, 401u);
}
TEST_F(AuthDaemonTest, EngineLogsInAndGetsItsStationKey) {
  engine_login(*this);
}
TEST_F(AuthDaemonPgTest, EngineLogsInAndGetsItsStationKey) {
  engine_login(*this);
}

void rotation(AuthDaemonTest& t) {
  auto old_token = t.token("viewer", "demo", "demo");
  auto rotated = t.call(verb::post, "/v1/keys/rotate", {}, t.admin());
  ASSERT_EQ(rotated.status, 200u) << rotated.body;
  auto new_token = t.token("viewer", "demo", "demo");
  auto old_kid = auth::token_kid(old_token);
  auto new_kid = auth::token_kid(new_token);
  ASSERT_TRUE(old_kid && new_kid);
  EXPECT_NE(*old_kid, *new_kid);
  EXPECT_EQ(*new_kid, std::string(rotated.obj["kid"].as_string()));

  // A verifier that knew only the old key fetches the new one when it meets its kid.
  auto url = t.url();
  auto outcome = run_io([&](boost::asio::io_context& io) -> boost::asio::awaitable<bool> {
    net::http_client client(io.get_executor());
    auto v = std::make_shared<auth::token_verifier>();
    auth::key_fetcher f(v, client, url, std::chrono::milliseconds(0));
    auto st = co_await f.refresh();
    if (!st) {
      co_return false;
    }
    auto both = v->keys().size() == 2;
    auto a = co_await f.verify(old_token, need(auth::token_kind::viewer));
    auto b = co_await f.verify(new_token, need(auth::token_kind::viewer));
    co_return both&& bool(a) && bool(b);
  });
  EXPECT_TRUE(outcome);

  // Keys persist: after a restart both tokens still verify and the new key still signs.
  t.stop();
  t.start();
  auto vp = t.verifier_ptr();
  auto& v = *vp;
  EXPECT_TRUE(v.verify(old_token, need(auth::token_kind::viewer)));
  EXPECT_TRUE(v.verify(new_token, need(auth::token_kind::viewer)));
  EXPECT_EQ(*auth::token_kid(t.token("viewer", "demo", "demo")), *new_kid);
}
TEST_F(AuthDaemonTest, RotationKeepsOldTokensValidAndSurvivesARestart) {
  rotation(*this);
}
TEST_F(AuthDaemonPgTest, RotationKeepsOldTokensValidAndSurvivesARestart) {
  rotation(*this);
}

TEST_F(AuthDaemonTest, KeyFetcherRateLimitsUnknownKids) {
  auto url = this->url();
  auto fetched = run_io([&](boost::asio::io_context& io) -> boost::asio::awaitable<int> {
    net::http_client client(io.get_executor());
    auto v = std::make_shared<auth::token_verifier>();
    auth::key_fetcher f(v, client, url, std::chrono::seconds(60));
    (void)co_await f.refresh();
    auto forger = auth::signing_key::generate("kforged");
    auth::claims c;
    c.issuer = "x";
    c.subject = "demo";
    c.all_programs = true;
    c.issued_at = auth::unix_now();
    c.expires_at = c.issued_at + 60;
    int unknown = 0;
    for (int i = 0; i < 20; ++i) {
      auto out = co_await f.verify(forger.issue(c), need(auth::token_kind::viewer));
      unknown += out.why == auth::token_error::unknown_key ? 1 : 0;
    }
    co_return unknown;
  });
  EXPECT_EQ(fetched, 20);  // every forgery refused; the fetch at start is too recent to repeat
}

// A daemon just started meets many consoles before its keys arrive: those that come while the
// fetch is in flight wait for it instead of being refused as rate-limited (the soak of issue 10
// saw viewers refused with 403 "no key" by a restarted director).
TEST_F(AuthDaemonTest, VerificationsDuringAFetchWaitForItInsteadOfBeingRefused) {
  auto url = this->url();
  auto token = this->token("viewer", "demo", "demo");
  auto passed = run_io([&](boost::asio::io_context& io) -> boost::asio::awaitable<int> {
    using namespace boost::asio::experimental::awaitable_operators;
    net::http_client client(io.get_executor());
    auto v = std::make_shared<auth::token_verifier>();  // no keys yet
    auth::key_fetcher f(v, client, url, std::chrono::seconds(60));
    auto [a, b, c] = co_await (f.verify(token, need(auth::token_kind::viewer)) &&
                               f.verify(token, need(auth::token_kind::viewer)) &&
                               f.verify(token, need(auth::token_kind::viewer)));
    co_return int(bool(a)) + int(bool(b)) + int(bool(c));
  });
  EXPECT_EQ(passed, 3);
}

// A kid nobody could check, because the auth server does not answer: not a verdict on the token.
TEST_F(AuthDaemonTest, AnUnknownKidWithTheAuthServerDownIsUnavailableNotForbidden) {
  auto token = this->token("viewer", "demo", "demo");
  auto dead = fmt::format("http://127.0.0.1:{}", free_port());
  auto out =
      run_io([&](boost::asio::io_context& io) -> boost::asio::awaitable<auth::verify_outcome> {
        net::http_client client(io.get_executor());
        auth::key_fetcher f(std::make_shared<auth::token_verifier>(), client, dead);
        co_return co_await f.verify(token, need(auth::token_kind::viewer));
      });
  EXPECT_FALSE(out);
  EXPECT_EQ(out.why, auth::token_error::keys_unavailable);
  EXPECT_EQ(out.as_error().code, errc::unavailable) << out.as_error().detail;
}

// A database made before keys were sealed: its plaintext seeds and station keys are sealed at the
// first start with a key file, and keep signing and verifying as before.
void plaintext_keys_are_sealed(AuthDaemonTest& t) {
  auto engine_secret = std::string(43, 'e');
  auto r = t.call(verb::put, "/v1/accounts/engines/e1",
                  json::serialize(json::object{{"password", engine_secret}, {"station", "st"}}),
                  t.admin());
  ASSERT_EQ(r.status, 200u) << r.body;
  auto station_key = t.login("engine", "e1", engine_secret).obj.at("station_key");
  auto old_token = t.token("viewer", "demo", "demo");
  auto keys_before = http_get(t.url() + "/v1/keys")->body;
  t.stop();
  {
    // Unseal every key in place, as an older vodgrid stored them.
    auto store = auth::auth_store::open(t.db_url_);
    ASSERT_TRUE(store) << store.err().detail;
    auto key_file =
        t.grid_.auth->key_file.empty() ? t.dir_.path() / "auth.key" : t.grid_.auth->key_file;
    auto sealer = auth::key_sealer::load(key_file);
    ASSERT_TRUE(sealer) << sealer.err().detail;
    auto& c = (*store)->connection();
    for (auto [table, id, col, ctx] :
         {std::tuple{"auth_keys", "kid", "seed", "auth_keys/"},
          std::tuple{"auth_station_keys", "station", "secret", "auth_station_keys/"}}) {
      auto rows = c.query(fmt::format("SELECT {}, {} FROM {}", id, col, table));
      ASSERT_TRUE(rows && !rows->empty());
      for (auto& row : *rows) {
        auto plain = sealer->open(row.bytes(1), ctx + row.text(0));
        ASSERT_TRUE(plain) << plain.err().detail;
        ASSERT_TRUE(c.exec(fmt::format("UPDATE {} SET {} = $1 WHERE {} = $2", table, col, id),
                           {db::blob{*plain}, row.text(0)}));
      }
    }
    ASSERT_TRUE((*store)->has_sealed_keys());
    EXPECT_FALSE(*(*store)->has_sealed_keys());
  }
  t.start();
  EXPECT_NE(t.log().find("sealed 2 plaintext keys"), std::string::npos) << t.log();
  EXPECT_EQ(http_get(t.url() + "/v1/keys")->body, keys_before);
  EXPECT_TRUE(t.verifier_ptr()->verify(old_token, need(auth::token_kind::viewer)));
  EXPECT_EQ(t.login("engine", "e1", engine_secret).obj.at("station_key"), station_key);
  auto store = auth::auth_store::open(t.db_url_);
  ASSERT_TRUE(store);
  EXPECT_TRUE(*(*store)->has_sealed_keys());
  auto seeds = (*store)->connection().query("SELECT seed FROM auth_keys");
  ASSERT_TRUE(seeds);
  for (auto& row : *seeds) {
    EXPECT_TRUE(auth::key_sealer::is_sealed(row.bytes(0)));
  }
}
TEST_F(AuthDaemonTest, PlaintextKeysOfAnOlderDatabaseAreSealedAtStart) {
  plaintext_keys_are_sealed(*this);
}
TEST_F(AuthDaemonPgTest, PlaintextKeysOfAnOlderDatabaseAreSealedAtStart) {
  plaintext_keys_are_sealed(*this);
}

TEST_F(AuthDaemonTest, SecretFileIsMadeOnceAndKept) {
  auto dir = dir_.path() / "engine-data";
  auto a = auth::read_or_create_secret(dir);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->size(), 43u);
  auto b = auth::read_or_create_secret(dir);
  ASSERT_TRUE(b);
  EXPECT_EQ(*a, *b);
  auto perms = std::filesystem::status(auth::secret_file(dir)).permissions();
  EXPECT_EQ(perms & std::filesystem::perms::others_read, std::filesystem::perms::none);
}

}  // namespace
}  // namespace vodgrid::test
