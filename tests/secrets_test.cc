// Issue 17, item 5's acceptance: secrets at rest. After `vodgrid up` under umask 022 no file that
// holds a secret is readable by group or others; one made readable stops its daemon at the next
// start with a one-line reason; a copy of the auth database alone yields no signing key.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <csignal>
#include <set>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "auth/client.h"
#include "auth/keys.h"
#include "auth/sealed.h"
#include "auth/verifier.h"
#include "base/fs.h"
#include "db/db.h"
#include "support/support.h"

namespace vodgrid::test {
namespace {

namespace fs = std::filesystem;

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

bool holds_secret(const fs::path& p) {
  auto n = p.filename().string();
  return n == "auth.secret" || n == "auth.key" || n.starts_with("auth.db");
}

// `vodgrid up` on the embedded default under umask 022, until the object goes.
class up_grid {
 public:
  up_grid() : base_(free_base_port()) {
    old_umask_ = ::umask(022);
    auto out = dir_.path() / "up.out";
    auto p =
        child_process::spawn({"/bin/sh", "-c",
                              fmt::format("exec '{}' up --data '{}' --base-port {} > '{}' 2>&1",
                                          vodgrid_binary(), data().string(), base_, out.string())});
    if (!p) {
      throw std::runtime_error(p.err().detail);
    }
    proc_ = std::move(*p);
    ready_ = eventually(
        [&] {
          auto t = read_file(out);
          return t && t->find("ready\n") != std::string::npos;
        },
        std::chrono::seconds(60));
  }
  ~up_grid() {
    stop();
    ::umask(old_umask_);
  }
  void stop() {
    if (proc_.running()) {
      proc_.signal(SIGINT);
      proc_.wait(std::chrono::seconds(30));
    }
  }
  bool ready() const { return ready_; }
  fs::path data() const { return dir_.path() / "data"; }
  std::string output() const {
    auto t = read_file(dir_.path() / "up.out");
    return t ? *t : std::string();
  }
  std::string auth_url() const { return fmt::format("http://127.0.0.1:{}", base_ + 1); }
  // One daemon of the grid started alone from the grid's config: it must refuse to start.
  run_result start_alone(const std::string& role, const std::string& name) const {
    std::vector<std::string> argv{vodgrid_binary(), role, "--config",
                                  (data() / "grid.toml").string()};
    if (role != "auth") {
      argv.insert(argv.end(), {"--name", name});
    }
    return run(argv, std::chrono::seconds(30));
  }

 private:
  temp_dir dir_;
  uint16_t base_;
  mode_t old_umask_ = 022;
  child_process proc_;
  bool ready_ = false;
};

// The refusal of a daemon whose secret `file` was made readable: a non-zero exit and one line on
// stderr naming the file.
void expect_refused_for(const run_result& r, const fs::path& file) {
  EXPECT_NE(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.err.find(file.string()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("chmod 600"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(Secrets, UpKeepsEverySecretPrivateAndADaemonRefusesOneMadeReadable) {
  up_grid g;
  ASSERT_TRUE(g.ready()) << g.output();
  std::set<std::string> found;
  for (auto& e : fs::recursive_directory_iterator(g.data())) {
    if (e.is_regular_file() && holds_secret(e.path())) {
      found.insert(fs::relative(e.path(), g.data()).string());
      EXPECT_EQ(mode_of(e.path()) & 077, 0u)
          << e.path() << " " << fmt::format("{:o}", mode_of(e.path()));
      EXPECT_EQ(mode_of(e.path().parent_path()) & 077, 0u) << e.path().parent_path();
    }
  }
  // The auth database and its key, and the secrets of the registry, the content manager, both
  // directors and all five engines.
  for (auto want : {"auth.db", "auth.key", "auth.secret", "content/auth.secret", "home/auth.secret",
                    "edge/auth.secret", "home-1/d0/auth.secret", "edge-3/d0/auth.secret"}) {
    EXPECT_TRUE(found.count(want)) << want << " missing; found " << found.size();
  }
  EXPECT_GE(found.size(), 10u);
  g.stop();

  auto engine_secret = g.data() / "edge-1" / "d0" / "auth.secret";
  fs::permissions(engine_secret, fs::perms::group_read | fs::perms::others_read,
                  fs::perm_options::add);
  expect_refused_for(g.start_alone("engine", "edge-1"), engine_secret);
  auto db = g.data() / "auth.db";
  fs::permissions(db, fs::perms::group_read | fs::perms::others_read, fs::perm_options::add);
  expect_refused_for(g.start_alone("auth", "auth"), db);
  fs::permissions(db, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
  auto key = g.data() / "auth.key";
  fs::permissions(key, fs::perms::others_read, fs::perm_options::add);
  expect_refused_for(g.start_alone("auth", "auth"), key);
}

TEST(Secrets, ACopyOfTheAuthDatabaseAloneYieldsNoSigningKey) {
  up_grid g;
  ASSERT_TRUE(g.ready()) << g.output();
  auto published = http_get(g.auth_url() + "/v1/keys");
  ASSERT_TRUE(published && published->status == 200);
  auto keys = auth::decode_keys(published->body);
  ASSERT_TRUE(keys && !keys->empty());
  g.stop();

  // The database as a backup holds it (the WAL checkpointed at the daemon's stop).
  temp_dir copy;
  auto db = copy.path() / "auth.db";
  fs::copy_file(g.data() / "auth.db", db);
  if (fs::exists(g.data() / "auth.db-wal")) {
    fs::copy_file(g.data() / "auth.db-wal", copy.path() / "auth.db-wal");
  }
  auto conn = db::open("sqlite://" + db.string());
  ASSERT_TRUE(conn) << conn.err().detail;
  auto rows = (*conn)->query("SELECT seed FROM auth_keys");
  ASSERT_TRUE(rows && !rows->empty());
  std::set<std::string> published_raw;
  for (auto& k : *keys) {
    published_raw.insert(k.raw);
  }
  for (auto& r : *rows) {
    const auto& blob = r.bytes(0);
    EXPECT_TRUE(auth::key_sealer::is_sealed(blob));
    // No 32 bytes of what is stored are a seed whose public key the grid publishes.
    for (size_t i = 0; i + 32 <= blob.size(); ++i) {
      auto k = auth::signing_key::from_seed("k", blob.substr(i, 32));
      ASSERT_TRUE(k);
      EXPECT_FALSE(published_raw.count(k->public_part().raw)) << "offset " << i;
    }
  }
  // Nor does another key-encryption key open them.
  auth::key_sealer other(std::string(32, 'x'));
  EXPECT_FALSE(other.open(rows->front().bytes(0), "auth_keys/k"));

  // An auth server given the copy without its key file refuses to start, and makes no new key.
  auto config = read_file(g.data() / "grid.toml");
  ASSERT_TRUE(config);
  auto toml = *config;
  auto at = toml.find((g.data() / "auth.db").string());
  ASSERT_NE(at, std::string::npos);
  toml.replace(at, (g.data() / "auth.db").string().size(), db.string());
  ASSERT_TRUE(write_file_durably(copy.path() / "grid.toml", toml));
  auto r = run({vodgrid_binary(), "auth", "--config", (copy.path() / "grid.toml").string()},
               std::chrono::seconds(30));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("missing: restore it"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(copy.path() / "auth.key"));
}

}  // namespace
}  // namespace vodgrid::test
