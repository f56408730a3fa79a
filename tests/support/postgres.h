// A real PostgreSQL server for tests: a fresh cluster (a copy of one that initdb made once on this
// machine, see cluster_template) in a temporary folder, listening on 127.0.0.1 at a free port with
// trust authentication and fsync on. PostgreSQL refuses to run as root, so under root (CI) it runs
// as the system user `vodgrid-test`, created on first use.
#pragma once

#include <csignal>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "base/process.h"
#include "support/support.h"

namespace vodgrid::test {

class postgres_server {
 public:
  // Starts the server and creates the database `vodgrid`; throws std::runtime_error (with the
  // server's log) if it cannot.
  postgres_server();
  ~postgres_server();  // stops the server (immediate shutdown) and removes its folder
  postgres_server(const postgres_server&) = delete;
  postgres_server& operator=(const postgres_server&) = delete;

  // postgresql://vodgrid@127.0.0.1:PORT/<database>; the superuser is `vodgrid`.
  std::string url(std::string_view database = "vodgrid") const;
  uint16_t port() const { return port_; }
  // Creates a database and returns its URL.
  std::string create_database(std::string_view name);

  // Sends `sig` to the postmaster; for a signal that ends it (KILL, QUIT, INT, TERM), waits until
  // it has exited.
  void kill(int sig = SIGKILL);
  // Starts the server again on the same data folder and port (after kill()); waits until it
  // accepts connections.
  void restart();
  bool running() { return server_.running(); }
  std::string log() const;

 private:
  // Starts the postmaster; false (with the reason in log()) if it exited before accepting
  // connections.
  bool start();
  std::filesystem::path cluster_template() const;
  std::vector<std::string> as_server_user(std::vector<std::string> argv) const;

  temp_dir dir_;
  std::filesystem::path bin_;
  std::filesystem::path data_;
  uint16_t port_ = 0;
  // The user the server runs as when we are root (uid, gid); -1 to run as ourselves.
  long uid_ = -1;
  long gid_ = -1;
  child_process server_;
};

// One server for the whole test process, started on first use (a server per test would make the
// run start and checkpoint dozens of clusters).
postgres_server& shared_postgres();

// A new schema in shared_postgres(), and a URL whose connections use it: tests never see each
// other's tables (a database each would give crash recovery thousands of files to fsync).
std::string fresh_postgres_schema(std::string_view prefix);

}  // namespace vodgrid::test
