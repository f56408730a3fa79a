#include "support/postgres.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "db/db.h"

namespace vodgrid::test {

namespace {

constexpr const char* server_user = "vodgrid-test";

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

// The folder of initdb and postgres: Debian's PostgreSQL 15, else what pg_config names, else the
// newest /usr/lib/postgresql/*/bin.
std::filesystem::path find_bindir() {
  namespace fs = std::filesystem;
  auto has_server = [](const fs::path& d) {
    return fs::exists(d / "postgres") && fs::exists(d / "initdb");
  };
  if (fs::path d = "/usr/lib/postgresql/15/bin"; has_server(d)) {
    return d;
  }
  if (auto r = run({"/bin/sh", "-c", "pg_config --bindir"}); r.status == 0) {
    if (fs::path d = trim(r.out); has_server(d)) {
      return d;
    }
  }
  std::vector<std::pair<int, fs::path>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    int version = std::atoi(e.path().filename().c_str());
    if (has_server(e.path() / "bin")) {
      found.emplace_back(version, e.path() / "bin");
    }
  }
  if (found.empty()) {
    throw std::runtime_error(
        "no PostgreSQL server binaries (install the postgresql package: scripts/install-deps.sh)");
  }
  return std::max_element(found.begin(), found.end())->second;
}

std::filesystem::path find_program(std::initializer_list<const char*> candidates) {
  for (const char* c : candidates) {
    if (std::filesystem::exists(c)) {
      return c;
    }
  }
  throw std::runtime_error(fmt::format("{} not found", *candidates.begin()));
}

std::optional<std::pair<uid_t, gid_t>> lookup_user(const char* name) {
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (::getpwnam_r(name, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return std::nullopt;
  }
  return std::pair{pw.pw_uid, pw.pw_gid};
}

// The unprivileged user to run the server as, created once (another test process may be creating
// it at the same moment: a failed useradd is fine if the user exists afterwards).
std::pair<uid_t, gid_t> server_user_ids() {
  static std::mutex m;
  std::lock_guard lock(m);
  if (auto ids = lookup_user(server_user)) {
    return *ids;
  }
  auto r = run({"/bin/sh", "-c",
                fmt::format("useradd --system --no-create-home --user-group --shell "
                            "/usr/sbin/nologin {}",
                            server_user)});
  if (auto ids = lookup_user(server_user)) {
    return *ids;
  }
  throw std::runtime_error(fmt::format("cannot create the user {}: {}", server_user, r.err));
}

std::string conninfo(uint16_t port, std::string_view database) {
  return fmt::format("host=127.0.0.1 port={} user=vodgrid dbname={} connect_timeout=5", port,
                     database);
}

}  // namespace

// The folder of a fresh cluster (initdb's output), made on first use on this machine and kept in
// the temporary folder for every later server to copy: named after the server's binaries (a new
// PostgreSQL makes a new one) and the user it runs as, made under a lock (test processes start
// servers at the same moment) and into a side folder renamed when whole. A folder of that name that
// someone else owns is not trusted: then this process makes a private one.
std::filesystem::path postgres_server::cluster_template() const {
  namespace fs = std::filesystem;
  struct stat bin {};
  if (::stat((bin_ / "postgres").c_str(), &bin) != 0) {
    throw std::runtime_error("cannot stat " + (bin_ / "postgres").string());
  }
  uid_t owner = uid_ >= 0 ? static_cast<uid_t>(uid_) : ::geteuid();
  fs::path root =
      fs::temp_directory_path() / fmt::format("vodgrid-test-pgdata-{}-{}-{}",
                                              std::hash<std::string>{}(bin_.string()),
                                              static_cast<long long>(bin.st_mtime), owner);
  fs::path data = root / "data";
  auto owned = [&](const fs::path& p) {
    struct stat st {};
    return ::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == owner;
  };
  auto make = [&](const fs::path& into) {
    // --no-sync: initdb's files need not survive a power cut; the server's own writes are fsynced.
    auto init = run(
        as_server_user({(bin_ / "initdb").string(), "-D", into.string(), "-U", "vodgrid", "-A",
                        "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"}));
    if (init.status != 0) {
      throw std::runtime_error(
          fmt::format("initdb failed ({}): {}{}", init.status, init.out, init.err));
    }
  };
  std::error_code ec;
  fs::create_directory(root, ec);
  if (struct stat st{}; uid_ >= 0 && ::lstat(root.c_str(), &st) == 0 && st.st_uid == ::geteuid()) {
    // Made by this process (root) a moment ago: the server's user writes in it. If this fails, the
    // check below makes a private template.
    [[maybe_unused]] int r = ::chown(root.c_str(), owner, static_cast<gid_t>(gid_));
  }
  if (!owned(root)) {
    fs::path mine = dir_.path() / "template";
    make(mine);
    return mine;
  }
  int lock = ::open((root / "lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (lock < 0 || ::flock(lock, LOCK_EX) != 0) {
    throw std::runtime_error("cannot lock " + (root / "lock").string());
  }
  if (!owned(data)) {
    fs::path side = root / fmt::format("data.{}", ::getpid());
    fs::remove_all(side, ec);
    make(side);
    fs::rename(side, data);
  }
  ::close(lock);
  return data;
}

postgres_server::postgres_server() : bin_(find_bindir()), data_(dir_.path() / "data") {
  if (::geteuid() == 0) {
    auto [uid, gid] = server_user_ids();
    uid_ = uid;
    gid_ = gid;
    if (::chown(dir_.path().c_str(), uid, gid) != 0) {
      throw std::runtime_error("chown " + dir_.path().string() + " failed");
    }
  }
  // A copy of a cluster made once per machine (initdb takes most of a second, a copy a tenth).
  auto copy = run(as_server_user({"cp", "-a", cluster_template().string(), data_.string()}));
  if (copy.status != 0) {
    throw std::runtime_error(fmt::format("copying the template cluster failed ({}): {}{}",
                                         copy.status, copy.out, copy.err));
  }
  // Another process may take the free port before the server binds it: try a few.
  bool started = false;
  for (int attempt = 0; attempt < 5 && !started; ++attempt) {
    port_ = free_port();
    started = start();
  }
  if (!started) {
    throw std::runtime_error("postgres did not start:\n" + log());
  }
  create_database("vodgrid");
}

postgres_server::~postgres_server() {
  if (server_.running()) {
    // Immediate shutdown: the folder goes with the server, so a checkpoint (a second of fsyncs)
    // would write what nobody reads. The postmaster exits once its children have.
    server_.signal(SIGQUIT);
    if (!server_.wait(std::chrono::seconds(20))) {
      server_.signal(SIGKILL);
      server_.wait(std::chrono::seconds(10));
    }
  }
}

std::vector<std::string> postgres_server::as_server_user(std::vector<std::string> argv) const {
  if (uid_ < 0) {
    return argv;
  }
  // setpriv execs in place (so the child's pid is the postmaster's, for kill()) and keeps the
  // parent-death signal that child_process set, which a uid change would otherwise clear.
  std::vector<std::string> out = {find_program({"/usr/bin/setpriv", "/bin/setpriv"}).string(),
                                  fmt::format("--reuid={}", uid_),
                                  fmt::format("--regid={}", gid_),
                                  "--clear-groups",
                                  "--pdeathsig=keep",
                                  "--"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

bool postgres_server::start() {
  auto p = child_process::spawn(
      as_server_user({(bin_ / "postgres").string(), "-D", data_.string(), "-p",
                      std::to_string(port_), "-c", "listen_addresses=127.0.0.1", "-c",
                      "unix_socket_directories=" + dir_.path().string(), "-c", "fsync=on", "-c",
                      "synchronous_commit=on", "-c", "full_page_writes=on", "-c",
                      "max_connections=50", "-c", "shared_buffers=16MB"}),
      dir_.path() / "postgres.log");
  if (!p) {
    throw std::runtime_error("cannot start postgres: " + p.err().detail);
  }
  server_ = std::move(*p);
  std::string info = conninfo(port_, "postgres");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!server_.running()) {
      return false;
    }
    if (PQping(info.c_str()) == PQPING_OK) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  throw std::runtime_error("postgres did not accept connections in 60 s:\n" + log());
}

std::string postgres_server::url(std::string_view database) const {
  return fmt::format("postgresql://vodgrid@127.0.0.1:{}/{}", port_, database);
}

std::string postgres_server::create_database(std::string_view name) {
  if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
      })) {
    throw std::invalid_argument(fmt::format("bad database name '{}'", name));
  }
  PGconn* c = PQconnectdb(conninfo(port_, "postgres").c_str());
  std::string failure;
  if (PQstatus(c) != CONNECTION_OK) {
    failure = PQerrorMessage(c);
  } else {
    PGresult* r = PQexec(c, fmt::format("CREATE DATABASE {}", name).c_str());
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      failure = PQresultErrorMessage(r);
    }
    PQclear(r);
  }
  PQfinish(c);
  if (!failure.empty()) {
    throw std::runtime_error(fmt::format("CREATE DATABASE {}: {}", name, trim(failure)));
  }
  return url(name);
}

void postgres_server::kill(int sig) {
  server_.signal(sig);
  if (sig == SIGKILL || sig == SIGQUIT || sig == SIGINT || sig == SIGTERM) {
    if (!server_.wait(std::chrono::seconds(30))) {
      server_.signal(SIGKILL);
      server_.wait(std::chrono::seconds(10));
    }
  }
}

void postgres_server::restart() {
  // After a SIGKILL the postmaster's children notice its death and exit on their own; until they
  // have, the new postmaster refuses the shared memory they still hold. Try again for a while.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!start()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      throw std::runtime_error("postgres did not restart:\n" + log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

std::string postgres_server::log() const {
  std::ifstream in(dir_.path() / "postgres.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

postgres_server& shared_postgres() {
  static postgres_server server;
  return server;
}

std::string fresh_postgres_schema(std::string_view prefix) {
  auto& server = shared_postgres();
  static int schemas = 0;
  std::string name = fmt::format("{}{}", prefix, ++schemas);
  auto admin = db::open(server.url());
  if (!admin) {
    throw std::runtime_error(admin.err().detail);
  }
  if (auto s = (*admin)->exec_script("CREATE SCHEMA " + name); !s) {
    throw std::runtime_error(s.err().detail);
  }
  return server.url() + "?options=-csearch_path%3D" + name;
}

}  // namespace vodgrid::test
