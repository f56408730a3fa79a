// The Patroni cluster of the HA tests (patroni.h).
#include "support/patroni.h"

#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace vodgrid::test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

std::string read_all(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path pg_bindir() {
  if (fs::exists("/usr/lib/postgresql/15/bin/postgres")) {
    return "/usr/lib/postgresql/15/bin";
  }
  fs::path best;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    if (fs::exists(e.path() / "bin" / "postgres") && e.path() > best.parent_path()) {
      best = e.path() / "bin";
    }
  }
  if (best.empty()) {
    throw std::runtime_error("no PostgreSQL server (scripts/install-deps.sh installs postgresql)");
  }
  return best;
}

fs::path need(std::initializer_list<const char*> candidates) {
  for (const char* c : candidates) {
    if (fs::exists(c)) {
      return c;
    }
  }
  throw std::runtime_error(fmt::format(
      "{} not found (scripts/install-deps.sh installs patroni, etcd-server, etcd-client)",
      *candidates.begin()));
}

// The pids whose parent is `parent` (a postmaster's backends and auxiliary processes).
std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    auto name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so after the last ')'.
    auto stat = read_all(e.path() / "stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos) {
      continue;
    }
    std::istringstream rest(stat.substr(close + 1));
    std::string state;
    long ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent) {
      out.push_back(static_cast<pid_t>(std::stol(name)));
    }
  }
  return out;
}

bool pg_accepts_writes(const std::string& conninfo) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  bool ok = false;
  if (PQstatus(c) == CONNECTION_OK) {
    PGresult* r = PQexec(c, "SELECT pg_is_in_recovery()");
    ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
         std::string_view(PQgetvalue(r, 0, 0)) == "f";
    PQclear(r);
  }
  PQfinish(c);
  return ok;
}

bool pg_connects(const std::string& conninfo) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  bool ok = PQstatus(c) == CONNECTION_OK;
  PQfinish(c);
  return ok;
}

std::string pg_exec(const std::string& conninfo, const std::string& sql) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  std::string failure;
  if (PQstatus(c) != CONNECTION_OK) {
    failure = PQerrorMessage(c);
  } else {
    PGresult* r = PQexec(c, sql.c_str());
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
      failure = PQresultErrorMessage(r);
    }
    PQclear(r);
  }
  PQfinish(c);
  return failure;
}

bool answers_200(uint16_t port, std::string_view path) {
  auto r = http_get(fmt::format("http://127.0.0.1:{}{}", port, path));
  return r && r->status == 200;
}

}  // namespace

patroni_cluster::patroni_cluster(options o) : opts_(o) {
  try {
    start(o);
  } catch (...) {
    // No destructor runs for an object whose constructor throws: what was started is stopped
    // here (else the postmasters, children of Patroni, would outlive the test and its folder).
    // The folder is named for whoever reads the error.
    stop_all();
    throw;
  }
}

void patroni_cluster::start(const options& o) {
  static std::atomic<int> clusters{0};
  scope_ = fmt::format("vg{}x{}", ::getpid(), clusters++);
  if (::geteuid() == 0) {
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    if (::getpwnam_r("postgres", &pw, buf.data(), buf.size(), &found) != 0 || !found) {
      throw std::runtime_error("no user postgres (the postgresql package makes it)");
    }
    uid_ = pw.pw_uid;
    gid_ = pw.pw_gid;
  }
  members_.resize(static_cast<size_t>(o.members));
  for (int i = 0; i < o.members; ++i) {
    auto& m = members_[static_cast<size_t>(i)];
    m.etcd_client = free_port();
    m.etcd_peer = free_port();
    m.rest = free_port();
    m.pg = free_port();
    m.dir = dir_.path() / fmt::format("m{}", i);
    fs::create_directories(m.dir);
    ::chmod(m.dir.c_str(), 0700);
    if (uid_ >= 0 && ::chown(m.dir.c_str(), static_cast<uid_t>(uid_), static_cast<gid_t>(gid_))) {
      throw std::runtime_error("chown " + m.dir.string() + " failed");
    }
  }
  if (uid_ >= 0 &&
      ::chown(dir_.path().c_str(), static_cast<uid_t>(uid_), static_cast<gid_t>(gid_)) != 0) {
    throw std::runtime_error("chown " + dir_.path().string() + " failed");
  }
  for (int i = 0; i < o.members; ++i) {
    start_etcd(i);
  }
  bool etcd_up = eventually(
      [&] {
        auto r = http_get(fmt::format("http://127.0.0.1:{}/health", members_[0].etcd_client));
        return r && r->status == 200 && r->body.find("true") != std::string::npos;
      },
      60s);
  if (!etcd_up) {
    throw std::runtime_error("etcd did not come up:\n" + all_logs());
  }
  for (int i = 0; i < o.members; ++i) {
    start_patroni(i);
  }
  int primary = wait_writable(std::chrono::seconds(180));
  auto failure =
      pg_exec(fmt::format("host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=5",
                          members_[static_cast<size_t>(primary)].pg),
              fmt::format("CREATE DATABASE {}", o.database));
  if (!failure.empty()) {
    throw std::runtime_error(fmt::format("CREATE DATABASE {} (cluster in {}): {}", o.database,
                                         dir_.path().string(), failure));
  }
  // Every member has the database before anyone connects: given a list of hosts, libpq stops at
  // the first that refuses a session once started ("database does not exist" on a standby that
  // has not replayed the CREATE DATABASE yet) rather than trying the next, the primary.
  bool everywhere = eventually(
      [&] {
        for (auto& m : members_) {
          auto info = fmt::format(
              "host=127.0.0.1 port={} user=postgres dbname={} connect_timeout=2", m.pg, o.database);
          if (!pg_connects(info)) {
            return false;
          }
        }
        return true;
      },
      120s);
  if (!everywhere) {
    throw std::runtime_error("the vodgrid database did not reach every member:\n" + all_logs());
  }
}

patroni_cluster::~patroni_cluster() {
  stop_all();
}

void patroni_cluster::stop_all() {
  // Patroni first (else it would start PostgreSQL again), then each PostgreSQL, then etcd.
  for (auto& m : members_) {
    m.patroni.signal(SIGKILL);
    m.patroni.wait(10s);
  }
  for (int i = 0; i < members(); ++i) {
    kill_postgres_tree(i);
  }
  for (auto& m : members_) {
    m.etcd.signal(SIGKILL);
    m.etcd.wait(10s);
  }
}

std::vector<std::string> patroni_cluster::as_postgres(std::vector<std::string> argv) const {
  if (uid_ < 0) {
    return argv;
  }
  // setpriv execs in place and keeps the parent-death signal child_process set (see postgres.cc).
  std::vector<std::string> out = {need({"/usr/bin/setpriv", "/bin/setpriv"}).string(),
                                  fmt::format("--reuid={}", uid_),
                                  fmt::format("--regid={}", gid_),
                                  "--init-groups",
                                  "--pdeathsig=keep",
                                  "--",
                                  "/usr/bin/env",
                                  "HOME=" + dir_.path().string()};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

void patroni_cluster::start_etcd(int i) {
  auto& m = members_[static_cast<size_t>(i)];
  std::string cluster;
  for (size_t j = 0; j < members_.size(); ++j) {
    cluster += fmt::format("{}m{}=http://127.0.0.1:{}", j ? "," : "", j, members_[j].etcd_peer);
  }
  auto p = child_process::spawn(
      as_postgres({need({"/usr/bin/etcd"}).string(), "--name", fmt::format("m{}", i), "--data-dir",
                   (m.dir / "etcd").string(), "--listen-client-urls",
                   fmt::format("http://127.0.0.1:{}", m.etcd_client), "--advertise-client-urls",
                   fmt::format("http://127.0.0.1:{}", m.etcd_client), "--listen-peer-urls",
                   fmt::format("http://127.0.0.1:{}", m.etcd_peer), "--initial-advertise-peer-urls",
                   fmt::format("http://127.0.0.1:{}", m.etcd_peer), "--initial-cluster", cluster,
                   "--initial-cluster-token", scope_, "--initial-cluster-state", "new",
                   // Patroni's etcd client (python3-etcd) speaks the v2 API.
                   "--enable-v2=true", "--heartbeat-interval", "100", "--election-timeout", "1000",
                   "--logger", "zap", "--log-level", "warn"}),
      m.dir / "etcd.log");
  if (!p) {
    throw std::runtime_error("cannot start etcd: " + p.err().detail);
  }
  m.etcd = std::move(*p);
}

void patroni_cluster::start_patroni(int i) {
  auto& m = members_[static_cast<size_t>(i)];
  std::string hosts;
  for (auto& other : members_) {
    hosts += fmt::format("  - 127.0.0.1:{}\n", other.etcd_client);
  }
  std::string hba =
      "  - local all all trust\n"
      "  - host replication all 127.0.0.1/32 trust\n"
      "  - host all all 127.0.0.1/32 trust\n";
  std::string yml = fmt::format(
      "scope: {scope}\n"
      "namespace: /vodgrid/\n"
      "name: m{i}\n"
      "log:\n  level: INFO\n"
      "restapi:\n  listen: 127.0.0.1:{rest}\n  connect_address: 127.0.0.1:{rest}\n"
      "etcd:\n  hosts:\n{hosts}"
      "bootstrap:\n"
      "  dcs:\n"
      "    ttl: {ttl}\n"
      "    loop_wait: {loop_wait}\n"
      "    retry_timeout: {retry}\n"
      "    maximum_lag_on_failover: 1048576\n"
      // A primary whose PostgreSQL died is failed over at once (to the synchronous standby,
      // which has every commit), not restarted in place for 5 minutes.
      "    primary_start_timeout: 0\n"
      "    synchronous_mode: {sync}\n"
      "    postgresql:\n"
      "      use_pg_rewind: true\n"
      "      use_slots: true\n"
      "      parameters:\n"
      "        max_connections: 60\n"
      "        shared_buffers: 16MB\n"
      "        wal_keep_size: 64MB\n"
      "        wal_log_hints: 'on'\n"
      "        hot_standby: 'on'\n"
      "  initdb:\n  - encoding: UTF8\n  - locale: C\n  - auth: trust\n"
      "  pg_hba:\n{hba}"
      "postgresql:\n"
      "  listen: 127.0.0.1:{pg}\n"
      "  connect_address: 127.0.0.1:{pg}\n"
      "  data_dir: {dir}/data\n"
      "  bin_dir: {bin}\n"
      "  pgpass: {dir}/pgpass\n"
      "  authentication:\n"
      "    superuser:\n      username: postgres\n      password: postgres\n"
      "    replication:\n      username: replicator\n      password: replicator\n"
      "  parameters:\n    unix_socket_directories: '{dir}'\n"
      "  pg_hba:\n{hba}",
      fmt::arg("scope", scope_), fmt::arg("i", i), fmt::arg("rest", m.rest),
      fmt::arg("hosts", hosts), fmt::arg("ttl", opts_.ttl_seconds),
      fmt::arg("loop_wait", opts_.loop_wait_seconds),
      fmt::arg("retry", opts_.retry_timeout_seconds),
      fmt::arg("sync", opts_.synchronous ? "true" : "false"), fmt::arg("hba", hba),
      fmt::arg("pg", m.pg), fmt::arg("dir", m.dir.string()), fmt::arg("bin", pg_bindir().string()));
  auto file = m.dir / "patroni.yml";
  std::ofstream(file) << yml;
  if (uid_ >= 0) {
    [[maybe_unused]] int rc =
        ::chown(file.c_str(), static_cast<uid_t>(uid_), static_cast<gid_t>(gid_));
  }
  auto p = child_process::spawn(as_postgres({need({"/usr/bin/patroni"}).string(), file.string()}),
                                m.dir / "patroni.log");
  if (!p) {
    throw std::runtime_error("cannot start patroni: " + p.err().detail);
  }
  m.patroni = std::move(*p);
}

std::string patroni_cluster::url(std::string_view database) const {
  std::string hosts;
  for (auto& m : members_) {
    hosts += fmt::format("{}127.0.0.1:{}", hosts.empty() ? "" : ",", m.pg);
  }
  return fmt::format(
      "postgresql://postgres@{}/{}?target_session_attrs=read-write&connect_timeout=2", hosts,
      database);
}

std::string patroni_cluster::member_url(int i, std::string_view database) const {
  return fmt::format("postgresql://postgres@127.0.0.1:{}/{}?connect_timeout=2",
                     members_.at(static_cast<size_t>(i)).pg, database);
}

int patroni_cluster::leader() const {
  for (int i = 0; i < members(); ++i) {
    if (answers_200(members_[static_cast<size_t>(i)].rest, "/primary")) {
      return i;
    }
  }
  return -1;
}

int patroni_cluster::sync_standby() const {
  for (int i = 0; i < members(); ++i) {
    if (answers_200(members_[static_cast<size_t>(i)].rest, "/sync")) {
      return i;
    }
  }
  return -1;
}

int patroni_cluster::wait_writable(std::chrono::seconds timeout) const {
  int primary = -1;
  bool ok = eventually(
      [&] {
        primary = leader();
        if (primary < 0) {
          return false;
        }
        auto info = fmt::format(
            "host=127.0.0.1 port={} user=postgres dbname=postgres "
            "connect_timeout=2",
            members_[static_cast<size_t>(primary)].pg);
        return pg_accepts_writes(info) && (!opts_.synchronous || sync_standby() >= 0);
      },
      timeout);
  if (!ok) {
    throw std::runtime_error("no writable primary with a synchronous standby:\n" + all_logs());
  }
  return primary;
}

pid_t patroni_cluster::postmaster_pid(int i) const {
  auto data = members_.at(static_cast<size_t>(i)).dir / "data";
  std::ifstream in(data / "postmaster.pid");
  long pid = -1;
  if (!(in >> pid) || pid <= 0) {
    return -1;
  }
  // A stale file's pid may be another process's by now: only a postgres of this data folder.
  auto cmdline = read_all(fmt::format("/proc/{}/cmdline", pid));
  if (cmdline.find(data.string()) == std::string::npos) {
    return -1;
  }
  return static_cast<pid_t>(pid);
}

void patroni_cluster::kill_postgres(int i) {
  pid_t pid = postmaster_pid(i);
  if (pid > 0) {
    ::kill(pid, SIGKILL);
  }
}

void patroni_cluster::kill_postgres_tree(int i) {
  pid_t pid = postmaster_pid(i);
  if (pid <= 0) {
    return;
  }
  auto children = children_of(pid);
  ::kill(pid, SIGKILL);
  for (pid_t c : children) {
    ::kill(c, SIGKILL);
  }
}

void patroni_cluster::kill_member(int i) {
  auto& m = members_.at(static_cast<size_t>(i));
  m.patroni.signal(SIGKILL);
  m.patroni.wait(10s);
  kill_postgres_tree(i);
  m.etcd.signal(SIGKILL);
  m.etcd.wait(10s);
}

std::string patroni_cluster::log(int i) const {
  auto& m = members_.at(static_cast<size_t>(i));
  return read_all(m.dir / "patroni.log");
}

std::string patroni_cluster::all_logs() const {
  std::string out;
  for (int i = 0; i < members(); ++i) {
    auto& m = members_[static_cast<size_t>(i)];
    out += fmt::format("--- member {} etcd:\n{}\n--- member {} patroni:\n{}\n", i,
                       read_all(m.dir / "etcd.log"), i, read_all(m.dir / "patroni.log"));
  }
  return out;
}

}  // namespace vodgrid::test
