// A highly available PostgreSQL for tests and benchmarks (issue 18, item 3): three etcd members and
// three Patroni members managing PostgreSQL, synchronous_mode on (a commit returns once the
// synchronous standby has it) and a low ttl, on free 127.0.0.1 ports in a temporary folder. Every
// process runs as the user `postgres` (PostgreSQL refuses root), started with setpriv so that it
// keeps the parent-death signal: a test that dies takes the cluster with it. The destructor kills
// whatever is left (SIGKILL, process by process, by the pids it started or read) and removes the
// folder, however the test ended.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/process.h"
#include "support/support.h"

namespace vodgrid::test {

class patroni_cluster {
 public:
  struct options {
    int members = 3;
    int ttl_seconds = 10;  // the leader key's lifetime: how long a dead leader keeps it
    int loop_wait_seconds = 1;
    int retry_timeout_seconds = 3;
    bool synchronous = true;           // synchronous_mode
    std::string database = "vodgrid";  // created once a primary accepts writes (an SQL name)
  };
  // Starts etcd, then Patroni, waits for a leader that accepts writes and (synchronous) a
  // synchronous standby, and creates the database `vodgrid`; throws std::runtime_error with the
  // logs if it cannot within a few minutes, having stopped every process it started.
  patroni_cluster() : patroni_cluster(options{}) {}
  explicit patroni_cluster(options o);
  ~patroni_cluster();
  patroni_cluster(const patroni_cluster&) = delete;
  patroni_cluster& operator=(const patroni_cluster&) = delete;

  // A libpq URL naming every member with target_session_attrs=read-write: a connection reaches the
  // primary, whichever member it is (what the registry is given).
  std::string url(std::string_view database = "vodgrid") const;
  // Member i's PostgreSQL alone.
  std::string member_url(int i, std::string_view database = "vodgrid") const;
  // The member Patroni's REST API names primary (GET /primary answers 200), -1 if none.
  int leader() const;
  // The member that is the synchronous standby (GET /sync answers 200), -1 if none.
  int sync_standby() const;
  // Waits until a primary accepts a write through url() and, with synchronous_mode, a synchronous
  // standby is named; returns the primary. Throws after `timeout`.
  int wait_writable(std::chrono::seconds timeout = std::chrono::seconds(120)) const;

  // SIGKILL of member i's postmaster; its Patroni lives on (and may fail over or restart it).
  void kill_postgres(int i);
  // Member i's host gone: SIGKILL of its Patroni, its PostgreSQL (every process of it) and its
  // etcd member.
  void kill_member(int i);
  // The postmaster's pid from member i's postmaster.pid, -1 if none.
  pid_t postmaster_pid(int i) const;
  std::string log(int i) const;  // member i's Patroni and PostgreSQL logs
  int members() const { return static_cast<int>(members_.size()); }

 private:
  struct member {
    uint16_t etcd_client = 0, etcd_peer = 0, rest = 0, pg = 0;
    std::filesystem::path dir;
    child_process etcd, patroni;
  };
  void start(const options& o);  // the constructor's work, which may throw
  void stop_all();               // SIGKILL of every process started, waited for
  std::vector<std::string> as_postgres(std::vector<std::string> argv) const;
  void start_etcd(int i);
  void start_patroni(int i);
  void kill_postgres_tree(int i);
  std::string all_logs() const;

  options opts_;
  temp_dir dir_;
  std::string scope_;
  long uid_ = -1, gid_ = -1;
  std::vector<member> members_;
};

}  // namespace vodgrid::test
