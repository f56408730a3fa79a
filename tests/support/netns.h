// Multi-host tests on one machine: hosts that are network namespaces on a bridge, each with its own
// address in 198.18.0.0/15 (the range reserved for benchmark networks), their links shaped with tc,
// and a grid whose every daemon runs on its own host through `vodgrid up --exec-prefix`. Needs
// root. scripts/netns-grid does the same for a person.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/config.h"
#include "base/process.h"
#include "support/support.h"

namespace vodgrid::test {

// Why this process cannot make network namespaces (not root, no `ip`), or nullopt if it can:
// tests skip with the reason.
std::optional<std::string> netns_unavailable();

// Hosts on one bridge of their own: each a network namespace whose interface eth0 (a veth whose
// other end is on the bridge) has an address in a /24 of 198.18.0.0/15 that no other bridge of this
// machine routes; the bridge has the .1 of it, so this process (the viewers' and operator's
// machine) reaches every host. Names carry this process's pid (netns `vgt<pid>_<n>-<host>`, bridge
// `vgt<pid>_<n>b`, veths `vgt<pid>_<n>v<i>`): tests running at once never collide. Everything is
// removed by the destructor (the processes in the namespaces killed first), and what a test process
// that died left behind is swept by the next one.
class netns_hosts {
 public:
  // Makes the hosts, in order; throws std::runtime_error naming the command that failed (after
  // removing what it made).
  explicit netns_hosts(const std::vector<std::string>& hosts);
  ~netns_hosts();
  netns_hosts(const netns_hosts&) = delete;
  netns_hosts& operator=(const netns_hosts&) = delete;

  const std::string& address(const std::string& host) const;
  std::string netns(const std::string& host) const;        // the name `ip netns exec` takes
  const std::string& gateway() const { return gateway_; }  // the bridge's address (this process)
  // `ip netns exec <this grid's prefix>-{name}`: the exec prefix of local_grid::start.
  std::string exec_prefix() const;

  // Shapes the host's uplink, everything it sends (to the other hosts and to this process), with a
  // token bucket (tc tbf) at `mbit` Mbit/s; 0 removes the shaping. Throws if tc fails.
  void shape(const std::string& host, uint64_t mbit);
  // A split network: `to` stops answering `from` (a route in `to`'s namespace sends whatever is
  // for `from`'s address nowhere). From `from`, `to` falls silent: connections time out, as across
  // a real partition; `to` sees its own connections to `from` fail at once. Everything else, this
  // process (the viewers) included, still reaches both. mend() undoes it. No netfilter on these
  // machines: a route is the tool there is.
  void cut(const std::string& from, const std::string& to);
  void mend(const std::string& from, const std::string& to);
  // Bytes the host has sent on its link so far (its veth's counter, read from this side).
  uint64_t tx_bytes(const std::string& host) const;

  // Removes the namespaces and bridges of test and netns-grid processes that are gone, and this
  // process's own of an earlier process with the same pid.
  static void sweep_stale();

 private:
  void remove_all() noexcept;
  std::string prefix_;  // vgt<pid>_<n>
  std::string gateway_;
  std::vector<std::string> hosts_;
  std::map<std::string, std::string> addresses_;
  std::map<std::string, std::string> veths_;  // host -> the veth end on the bridge
};

// A grid run by `vodgrid up --exec-prefix`, every daemon on the host of its name: "registry",
// "auth", "content" (those the grid has) and one per station, the station's supervisor, director
// and engines together. `make` builds the config in the fixture's data folder (as
// grid_config::embedded_default does); each daemon's listen host becomes its host's address. The
// destructor stops the grid, then removes the hosts.
class netns_grid {
 public:
  explicit netns_grid(const std::function<grid_config(const std::filesystem::path&)>& make);
  ~netns_grid();

  const grid_config& config() const { return grid_; }
  netns_hosts& hosts() { return *hosts_; }
  const std::filesystem::path& data() const { return dir_.path(); }
  std::string registry_url() const { return grid_.registry->listen.url(); }
  std::string director_url(const std::string& station) const;
  std::string auth_url() const { return grid_.auth->listen.url(); }
  // A daemon's log (a station's director and engines log under their own names), and `vodgrid
  // up`'s own output under "up".
  std::string log_of(const std::string& name) const;

 private:
  temp_dir dir_;
  grid_config grid_;
  std::optional<netns_hosts> hosts_;
  child_process up_;
};

}  // namespace vodgrid::test
