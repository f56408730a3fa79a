// Issue 17, item 6: who may read what. The table "Who may read what" of docs/protocol.md is read
// here and walked against a `vodgrid up` grid with no token, a viewer's, an operator's and a
// daemon's (an engine's), so that the doc and the daemons cannot drift apart; and a viewer's
// listings lack the embargoed program and the source paths an operator's show.
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "auth/client.h"
#include "base/config.h"
#include "base/fs.h"
#include "support/support.h"

namespace vodgrid::test {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

// One row of the table: which daemon, the path (with {placeholders}), who may call it.
struct read_row {
  std::string daemon;
  std::string path;
  std::string who;
};

std::string trim(std::string s) {
  auto b = s.find_first_not_of(" `");
  auto e = s.find_last_not_of(" `");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

// The rows of docs/protocol.md's "Who may read what" table.
std::vector<read_row> table_rows() {
  std::ifstream in(std::string(VODGRID_SOURCE_DIR) + "/docs/protocol.md");
  std::string line;
  bool in_section = false;
  std::vector<read_row> rows;
  while (std::getline(in, line)) {
    if (line.starts_with("## ")) {
      in_section = line == "## Who may read what";
      continue;
    }
    if (!in_section || !line.starts_with("| ")) {
      continue;
    }
    std::vector<std::string> cells;
    std::stringstream ss(line.substr(1));
    std::string cell;
    while (std::getline(ss, cell, '|')) {
      cells.push_back(trim(cell));
    }
    if (cells.size() < 3 || cells[0] == "daemon" || cells[0].starts_with("---")) {
      continue;
    }
    rows.push_back({cells[0], cells[1], cells[2]});
  }
  return rows;
}

// `vodgrid up` on the embedded default with two programs: `film`, published, and `secret`,
// embargoed until 2030. One grid for every test of the suite.
class reads : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new temp_dir();
    base_ = free_base_port();
    auto data = dir_->path() / "data";
    auto out = dir_->path() / "up.out";
    auto p =
        child_process::spawn({"/bin/sh", "-c",
                              fmt::format("exec '{}' up --data '{}' --base-port {} > '{}' 2>&1",
                                          vodgrid_binary(), data.string(), base_, out.string())});
    ASSERT_TRUE(p) << p.err().detail;
    up_ = new child_process(std::move(*p));
    ASSERT_TRUE(eventually(
        [&] {
          auto t = read_file(out);
          return t && t->find("ready\n") != std::string::npos;
        },
        std::chrono::seconds(90)))
        << (read_file(out) ? *read_file(out) : std::string());
    auto g = grid_config::load(data / "grid.toml");
    ASSERT_TRUE(g) << g.err().detail;
    grid_ = new grid_config(std::move(*g));
    viewer_ = login_token(grid_->auth->listen.url(), "viewer", "demo", "demo");
    operator_ = login_token(grid_->auth->listen.url(), "operator", "admin", "admin");
    // A daemon's token, as an engine has it: its name and its auth.secret.
    auto& engine = grid_->stations.at(0).engines.at(0);
    auto secret = read_file(auth::secret_file(engine.data_dirs.at(0)));
    ASSERT_TRUE(secret);
    auto r = http(boost::beast::http::verb::post, grid_->auth->listen.url() + "/v1/login/engine",
                  json::serialize(json::object{
                      {"name", engine.name.str()},
                      {"secret", secret->substr(0, secret->find_last_not_of(" \n") + 1)}}),
                  {{"Content-Type", "application/json"}});
    ASSERT_TRUE(r && r->status == 200) << (r ? r->body : r.err().detail);
    peer_ = auth::decode_login_reply(r->body)->token;

    temp_dir src;
    make_sample(src.path(), 3, 1);
    for (auto [id, extra] : std::map<std::string, std::vector<std::string>>{
             {"film", {}}, {"secret", {"--publish-at", "2030-01-01T00:00:00Z"}}}) {
      std::vector<std::string> argv{vodgrid_binary(),
                                    "ingest",
                                    src.path().string(),
                                    "--title",
                                    "Title of " + id,
                                    "--id",
                                    id,
                                    "--grid",
                                    grid_->registry->listen.url(),
                                    "--remux",
                                    "--segment-seconds",
                                    "1",
                                    "--token",
                                    operator_};
      argv.insert(argv.end(), extra.begin(), extra.end());
      auto in = run(argv, std::chrono::seconds(120));
      ASSERT_EQ(in.status, 0) << in.err;
    }
    // Both known at the home station (it holds every program), film playable at the edge.
    ASSERT_TRUE(eventually(
        [&] {
          auto h = http_get(director("home") + "/v1/programs/secret", bearer(operator_));
          auto e = http_get(director("edge") + "/v1/programs/film/index.m3u8", bearer(viewer_));
          return h && h->status == 200 && e && e->status == 200;
        },
        std::chrono::seconds(30)));
  }
  static void TearDownTestSuite() {
    if (up_ && up_->running()) {
      up_->signal(SIGINT);
      up_->wait(std::chrono::seconds(30));
    }
    delete up_;
    delete grid_;
    delete dir_;
  }
  void SetUp() override {
    if (!grid_ || peer_.empty()) {
      GTEST_SKIP() << "the grid did not start";
    }
  }

  static net::http_client::header_list bearer(const std::string& token) {
    if (token.empty()) {
      return {};
    }
    return {{"Authorization", "Bearer " + token}};
  }
  static std::string director(const std::string& station) {
    return grid_->find_station(station)->director.listen.url();
  }
  // The URLs of every daemon the table's `daemon` names.
  static std::vector<std::string> urls_of(const std::string& daemon) {
    std::vector<std::string> out;
    bool every = daemon == "every daemon";
    if (every || daemon == "registry") {
      out.push_back(grid_->registry->listen.url());
    }
    if (every || daemon == "auth") {
      out.push_back(grid_->auth->listen.url());
    }
    if (every || daemon == "content") {
      out.push_back(grid_->content->listen.url());
    }
    for (auto& s : grid_->stations) {
      if (every || daemon == "director") {
        out.push_back(s.director.listen.url());
      }
      if (every && s.supervisor.port != 0) {
        out.push_back(s.supervisor.url());
      }
      for (auto& e : s.engines) {
        if (every || daemon == "engine") {
          out.push_back(e.listen.url());
        }
      }
    }
    return out;
  }
  // The path with its placeholders filled: the published program, its first segment, the edge.
  static std::string concrete(std::string path) {
    auto put = [&](const std::string& from, const std::string& to) {
      if (auto at = path.find(from); at != std::string::npos) {
        path.replace(at, from.size(), to);
      }
    };
    put("{id}", "film");
    put("{n}", "0");
    put("{station}", "edge");
    put("{file}", path.starts_with("/dashboard/") ? "dashboard.js" : "watch.js");
    return path;
  }

  static inline temp_dir* dir_ = nullptr;
  static inline uint16_t base_ = 0;
  static inline child_process* up_ = nullptr;
  static inline grid_config* grid_ = nullptr;
  static inline std::string viewer_, operator_, peer_;
};

// What each caller must get from a row's `who`: allowed (anything but 401/403), or the refusal.
enum class expect { allowed, unauthorized, forbidden, ok };

expect expected(const std::string& who, const std::string& caller) {
  bool none = caller == "none";
  if (who == "none") {
    return expect::allowed;
  }
  if (who == "metrics_from") {
    return expect::ok;  // the test runs on loopback, the default
  }
  if (none) {
    return expect::unauthorized;
  }
  if (who == "viewer") {
    return expect::allowed;
  }
  if (who == "entitled viewer") {
    return caller == "viewer" ? expect::allowed : expect::forbidden;
  }
  if (who == "operator, peer") {
    return caller == "viewer" ? expect::forbidden : expect::allowed;
  }
  if (who == "operator") {
    return caller == "operator" ? expect::allowed : expect::forbidden;
  }
  if (who == "signed URL, peer") {
    return caller == "peer" ? expect::allowed : expect::forbidden;
  }
  ADD_FAILURE() << "the table names an unknown caller: " << who;
  return expect::allowed;
}

TEST_F(reads, EveryReadOfTheTableAnswersEachCallerAsTheTableSays) {
  auto rows = table_rows();
  ASSERT_GE(rows.size(), 30u) << "the table was not found in docs/protocol.md";
  std::map<std::string, std::string> callers{
      {"none", ""}, {"viewer", viewer_}, {"operator", operator_}, {"peer", peer_}};
  int walked = 0;
  for (auto& row : rows) {
    auto urls = urls_of(row.daemon);
    ASSERT_FALSE(urls.empty()) << "no daemon is a " << row.daemon;
    for (auto& base : urls) {
      std::string url = base + concrete(row.path);
      for (auto& [caller, token] : callers) {
        auto r = http_get(url, bearer(token));
        ASSERT_TRUE(r) << url << ": " << r.err().detail;
        ++walked;
        auto want = expected(row.who, caller);
        std::string what = fmt::format("GET {} as {} (who: {}): {} {}", url, caller, row.who,
                                       r->status, r->body.substr(0, 200));
        switch (want) {
          case expect::allowed:
            EXPECT_TRUE(r->status != 401 && r->status != 403) << what;
            break;
          case expect::ok:
            EXPECT_EQ(r->status, 200u) << what;
            break;
          case expect::unauthorized:
            EXPECT_EQ(r->status, 401u) << what;
            break;
          case expect::forbidden:
            EXPECT_EQ(r->status, 403u) << what;
            break;
        }
        if (r->status == 401 || r->status == 403) {
          // A JSON reason, the same shape at every daemon.
          auto o = json::parse(r->body).as_object();
          EXPECT_EQ(o.at("error").as_string(), r->status == 401 ? "unauthorized" : "forbidden")
              << what;
          // The token's reason; an engine's segment without a signature says so (docs/protocol.md,
          // "Signed engine URLs").
          auto detail = o.at("detail").as_string();
          EXPECT_TRUE(detail.starts_with("token ") || detail.starts_with("url signature")) << what;
        }
      }
    }
  }
  EXPECT_GT(walked, 200);
}

TEST_F(reads, AViewersListingsLackTheEmbargoedProgramAndTheSourcePaths) {
  std::vector<std::string> listings{grid_->registry->listen.url(), grid_->content->listen.url(),
                                    director("home")};
  for (auto& base : listings) {
    auto v = http_get(base + "/v1/programs", bearer(viewer_));
    ASSERT_TRUE(v && v->status == 200) << base;
    auto op = http_get(base + "/v1/programs", bearer(operator_));
    ASSERT_TRUE(op && op->status == 200) << base;
    // The operator's shows both, the viewer's only the published one, and none of: the source on
    // the server, the stations it is sent to, the embargoed title.
    EXPECT_NE(op->body.find("\"secret\""), std::string::npos) << base << " " << op->body;
    EXPECT_NE(op->body.find("\"film\""), std::string::npos) << base << " " << op->body;
    EXPECT_NE(v->body.find("\"film\""), std::string::npos) << base << " " << v->body;
    EXPECT_EQ(v->body.find("secret"), std::string::npos) << base << " " << v->body;
    EXPECT_EQ(v->body.find("Title of secret"), std::string::npos) << base;
    EXPECT_EQ(v->body.find("\"source\""), std::string::npos) << base << " " << v->body;
    EXPECT_EQ(v->body.find("\"targets\""), std::string::npos) << base << " " << v->body;
    EXPECT_EQ(v->body.find("\"stations\""), std::string::npos) << base << " " << v->body;
    // The embargoed program itself is as unknown to a viewer, known to the operator.
    auto vs = http_get(base + "/v1/programs/secret", bearer(viewer_));
    ASSERT_TRUE(vs);
    EXPECT_EQ(vs->status, 404u) << base << " " << vs->body;
    EXPECT_EQ(vs->body.find("Title of secret"), std::string::npos);
    auto os = http_get(base + "/v1/programs/secret", bearer(operator_));
    ASSERT_TRUE(os);
    EXPECT_EQ(os->status, 200u) << base << " " << os->body;
  }
  // The content manager's operator listing carries the source path; a viewer's single program not.
  auto op = http_get(grid_->content->listen.url() + "/v1/programs/film", bearer(operator_));
  ASSERT_TRUE(op && op->status == 200);
  EXPECT_NE(op->body.find("\"source\""), std::string::npos) << op->body;
  auto v = http_get(grid_->content->listen.url() + "/v1/programs/film", bearer(viewer_));
  ASSERT_TRUE(v && v->status == 200);
  EXPECT_EQ(v->body.find("\"source\""), std::string::npos) << v->body;
}

// Playback tells a console without the right to a program nothing of it: an embargoed program,
// an unknown one and a published one are refused alike, before the catalog is asked (not "it
// publishes at ...", not "no such program").
TEST_F(reads, PlaybackRefusesAConsoleWithoutATokenBeforeTellingAnythingOfTheProgram) {
  for (std::string id : {"secret", "nosuch", "film"}) {
    for (std::string path : {"/index.m3u8", "/segments/0.ts"}) {
      auto r = http_get(director("home") + "/v1/programs/" + id + path);
      ASSERT_TRUE(r) << id << path;
      EXPECT_EQ(r->status, 401u) << id << path << " " << r->body;
      EXPECT_EQ(r->body.find("publish"), std::string::npos) << id << path << " " << r->body;
      EXPECT_EQ(r->body.find("no such"), std::string::npos) << id << path << " " << r->body;
      EXPECT_EQ(r->body.find("2030"), std::string::npos) << id << path << " " << r->body;
    }
  }
}

TEST_F(reads, TheGridsLayoutNeedsATokenButWhereToLogInDoesNot) {
  auto none = http_get(grid_->registry->listen.url() + "/v1/grid");
  ASSERT_TRUE(none && none->status == 200);
  auto o = json::parse(none->body).as_object();
  EXPECT_EQ(o.at("auth").as_string(), grid_->auth->listen.url());
  EXPECT_FALSE(o.contains("stations")) << none->body;
  auto v = http_get(grid_->registry->listen.url() + "/v1/grid", bearer(viewer_));
  ASSERT_TRUE(v && v->status == 200);
  EXPECT_EQ(json::parse(v->body).as_object().at("stations").as_array().size(), 2u) << v->body;
}

TEST_F(reads, TheCommandLineListsWithTheUsersTokenAndSaysInOneLineWhenRefused) {
  auto grid = grid_->registry->listen.url();
  auto without = run({vodgrid_binary(), "programs", "--grid", grid});
  EXPECT_NE(without.status, 0);
  EXPECT_EQ(std::count(without.err.begin(), without.err.end(), '\n'), 1) << without.err;
  EXPECT_NE(without.err.find("401"), std::string::npos) << without.err;
  EXPECT_NE(without.err.find("VODGRID_TOKEN"), std::string::npos) << without.err;

  auto viewer = run(
      {"/usr/bin/env", "VODGRID_TOKEN=" + viewer_, vodgrid_binary(), "programs", "--grid", grid});
  EXPECT_EQ(viewer.status, 0) << viewer.err;
  EXPECT_NE(viewer.out.find("film"), std::string::npos) << viewer.out;
  EXPECT_EQ(viewer.out.find("secret"), std::string::npos) << viewer.out;
  auto op = run({vodgrid_binary(), "programs", "--grid", grid, "--token", operator_});
  EXPECT_EQ(op.status, 0) << op.err;
  EXPECT_NE(op.out.find("secret"), std::string::npos) << op.out;

  auto status_viewer = run({vodgrid_binary(), "status", "--grid", grid, "--token", viewer_});
  EXPECT_NE(status_viewer.status, 0);
  EXPECT_EQ(std::count(status_viewer.err.begin(), status_viewer.err.end(), '\n'), 1)
      << status_viewer.err;
  EXPECT_NE(status_viewer.err.find("403"), std::string::npos) << status_viewer.err;
  auto status_op = run({vodgrid_binary(), "status", "--grid", grid, "--token", operator_});
  EXPECT_EQ(status_op.status, 0) << status_op.err;
  EXPECT_NE(status_op.out.find("edge"), std::string::npos) << status_op.out;
}

}  // namespace
}  // namespace vodgrid::test
