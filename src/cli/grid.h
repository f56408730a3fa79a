// The local grid launcher behind `vodgrid up` and `vodgrid demo`: the registry, auth and the
// content manager run as its own child processes, each station under its own `vodgrid station`
// supervisor (which runs the director and the engines as its blades, claims 6-8); logs under
// DATA/logs. The grid counts as ready once every daemon answers /healthz and every director sees
// all its engines.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "base/config.h"
#include "base/process.h"
#include "base/result.h"

namespace vodgrid::cli {

class local_grid {
 public:
  // A child process of the launcher.
  struct daemon {
    std::string role;  // "registry" | "auth" | "content" | "station" (a station's supervisor)
    std::string name;
    std::string url;  // a station's: its supervisor's, empty when it serves nothing
    std::filesystem::path log;
    child_process process;
  };

  // Writes the config to DATA/grid.toml, starts every daemon, waits up to `timeout` for health.
  // `exec_prefix`: words run before each daemon's `vodgrid ROLE ...` (the first a path), "{name}"
  // in a word replaced by the daemon's host name: "registry", "auth", "content" or the station's
  // (its supervisor, director and engines share a host). scripts/netns-grid and the multi-host
  // tests pass `ip netns exec PREFIX-{name}` to run each on its own network namespace. Empty: the
  // daemons run as children of this process directly.
  static result<local_grid> start(const grid_config& grid, const std::filesystem::path& data,
                                  std::chrono::milliseconds timeout,
                                  std::vector<std::string> exec_prefix = {});
  local_grid(local_grid&&) = default;
  ~local_grid();

  // SIGTERM to every daemon (the content manager, the stations (each stops its engines, then its
  // director), the registry, auth), SIGKILL after `grace`.
  void stop(std::chrono::milliseconds grace = std::chrono::seconds(10));
  // Daemons that exited since the last call, as "role name (status N)".
  std::vector<std::string> reap();

  const grid_config& config() const { return grid_; }
  const std::filesystem::path& log_dir() const { return logs_; }
  std::string director_url(size_t station = 0) const;

 private:
  local_grid() = default;
  // The steps of start(): launch one daemon; start auth and provision the accounts; wait for every
  // daemon in order. Each error names the daemon and its log.
  status launch(const std::filesystem::path& config, std::string role, std::string name,
                std::string url, std::vector<std::string> extra = {});
  status start_auth(std::chrono::milliseconds timeout);
  status await_all(std::chrono::milliseconds timeout);
  grid_config grid_;
  std::filesystem::path logs_;
  std::vector<std::string> exec_prefix_;
  std::vector<daemon> daemons_;
};

// Waits until GET url/healthz answers 200 and, when `at_least` > 0, its number `field` (a
// director's engines_up, the registry's stations_up) reaches it; false on timeout.
bool wait_healthy(const std::string& url, std::chrono::milliseconds timeout, std::string field = {},
                  size_t at_least = 0);

}  // namespace vodgrid::cli
