#include "support/netns.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <fstream>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>

#include "base/fs.h"

namespace vodgrid::test {

namespace {

// Runs a command (found on PATH by the shell) and throws with its stderr if it fails.
std::string must(const std::vector<std::string>& argv) {
  auto r = run(argv, std::chrono::seconds(30));
  if (r.status != 0) {
    std::string cmd;
    for (auto& a : argv) {
      cmd += a + " ";
    }
    throw std::runtime_error(fmt::format("{}failed ({}): {}", cmd, r.status, r.err));
  }
  return r.out;
}

// The prefixes of the netns_hosts alive in this process: the sweep leaves them alone.
std::mutex live_mu;
std::set<std::string> live_prefixes;

// Gone, or a zombie nobody reaps (as under a container's init that reaps none).
bool process_gone(long pid) {
  std::ifstream status(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("State:")) {
      return line.find('Z') != std::string::npos;
    }
  }
  return true;
}

// Whether a name made by a test (vgt) or by scripts/netns-grid (vgs) is stale: its process is gone,
// or it carries this process's pid without being one of its live grids (an earlier process's).
bool stale(const std::string& prefix, long pid) {
  if (pid == ::getpid()) {
    std::lock_guard lock(live_mu);
    return !live_prefixes.contains(prefix);
  }
  return process_gone(pid);
}

// Kills every process in namespace `ns` and removes it; errors ignored (it may be gone already).
void remove_netns(const std::string& ns) {
  auto pids = run({"ip", "netns", "pids", ns}, std::chrono::seconds(10));
  std::istringstream in(pids.out);
  for (long pid; in >> pid;) {
    ::kill(static_cast<pid_t>(pid), SIGKILL);
  }
  run({"ip", "netns", "del", ns}, std::chrono::seconds(10));
}

// The first /24 of 198.18.0.0/15 that this machine neither routes nor has an address in, starting
// from one chosen by the pid so that concurrent tests rarely look at the same ones. Called under
// the machine-wide lock, so that two tests never pick the same one.
std::string free_subnet() {
  auto used = must({"ip", "-4", "-o", "route", "show"}) + must({"ip", "-4", "-o", "addr", "show"});
  auto start = static_cast<unsigned>(::getpid()) % 512;
  for (unsigned i = 0; i < 512; ++i) {
    unsigned k = (start + i) % 512;
    auto net = fmt::format("198.{}.{}.", 18 + k / 256, k % 256);
    if (used.find(net + "0/24") == std::string::npos && used.find(" " + net) == std::string::npos) {
      return net;
    }
  }
  throw std::runtime_error("no free /24 left in 198.18.0.0/15");
}

// A machine-wide lock for choosing subnets (an flock, released when the object goes).
class machine_lock {
 public:
  machine_lock() {
    fd_ = ::open("/tmp/vodgrid-netns.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd_ < 0 || ::flock(fd_, LOCK_EX) != 0) {
      throw std::runtime_error("cannot lock /tmp/vodgrid-netns.lock");
    }
  }
  ~machine_lock() { ::close(fd_); }
  machine_lock(const machine_lock&) = delete;
  machine_lock& operator=(const machine_lock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace

std::optional<std::string> netns_unavailable() {
  if (::geteuid() != 0) {
    return "needs root: hosts are network namespaces";
  }
  for (const char* tool : {"ip", "tc"}) {
    if (run({"sh", "-c", std::string("command -v ") + tool}).status != 0) {
      return fmt::format("needs `{}` (iproute2: scripts/install-deps.sh)", tool);
    }
  }
  return std::nullopt;
}

void netns_hosts::sweep_stale() {
  static const std::regex netns_re(R"(^(vg[ts](\d+)_\d+)-\S+)");
  static const std::regex link_re(R"(^\d+: ((vg[ts](\d+)_\d+)(b|v\d+))[@:])");
  std::istringstream namespaces(run({"ip", "netns", "list"}).out);
  for (std::string line; std::getline(namespaces, line);) {
    std::smatch m;
    if (std::regex_search(line, m, netns_re) && stale(m[1].str(), std::stol(m[2].str()))) {
      remove_netns(line.substr(0, line.find(' ')));
    }
  }
  std::istringstream links(run({"ip", "-o", "link", "show"}).out);
  for (std::string line; std::getline(links, line);) {
    std::smatch m;
    if (std::regex_search(line, m, link_re) && stale(m[2].str(), std::stol(m[3].str()))) {
      run({"ip", "link", "del", m[1].str()});
    }
  }
}

netns_hosts::netns_hosts(const std::vector<std::string>& hosts) : hosts_(hosts) {
  static std::atomic<int> instances{0};
  prefix_ = fmt::format("vgt{}_{}", ::getpid(), instances++ % 10);
  sweep_stale();
  {
    std::lock_guard lock(live_mu);
    live_prefixes.insert(prefix_);
  }
  try {
    std::string net;
    {
      machine_lock lock;
      net = free_subnet();
      // Once the bridge has its address, its /24 is routed: no other test picks it.
      must({"ip", "link", "add", prefix_ + "b", "type", "bridge"});
      must({"ip", "addr", "add", net + "1/24", "dev", prefix_ + "b"});
    }
    must({"ip", "link", "set", prefix_ + "b", "up"});
    gateway_ = net + "1";
    if (hosts.size() > 250) {
      throw std::runtime_error("at most 250 hosts on one bridge");
    }
    for (size_t i = 0; i < hosts.size(); ++i) {
      auto ns = netns(hosts[i]);
      auto veth = fmt::format("{}v{}", prefix_, i);
      auto address = fmt::format("{}{}", net, i + 2);
      must({"ip", "netns", "add", ns});
      must({"ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns});
      veths_[hosts[i]] = veth;
      must({"ip", "link", "set", veth, "master", prefix_ + "b", "up"});
      must({"ip", "-n", ns, "addr", "add", address + "/24", "dev", "eth0"});
      must({"ip", "-n", ns, "link", "set", "eth0", "up"});
      must({"ip", "-n", ns, "link", "set", "lo", "up"});
      addresses_[hosts[i]] = address;
    }
  } catch (...) {
    remove_all();
    throw;
  }
}

netns_hosts::~netns_hosts() {
  remove_all();
}

void netns_hosts::remove_all() noexcept {
  try {
    for (auto& h : hosts_) {
      remove_netns(netns(h));  // its processes first: a namespace lives while one runs in it
    }
    for (auto& [host, veth] : veths_) {
      run({"ip", "link", "del", veth});
    }
    run({"ip", "link", "del", prefix_ + "b"});
  } catch (...) {  // NOLINT(bugprone-empty-catch): the sweep of the next test removes the rest
  }
  std::lock_guard lock(live_mu);
  live_prefixes.erase(prefix_);
}

const std::string& netns_hosts::address(const std::string& host) const {
  auto it = addresses_.find(host);
  if (it == addresses_.end()) {
    throw std::runtime_error("no host " + host);
  }
  return it->second;
}

std::string netns_hosts::netns(const std::string& host) const {
  return prefix_ + "-" + host;
}

std::string netns_hosts::exec_prefix() const {
  return "ip netns exec " + prefix_ + "-{name}";
}

void netns_hosts::shape(const std::string& host, uint64_t mbit) {
  address(host);  // throws for a host it does not have
  auto ns = netns(host);
  if (mbit == 0) {
    run({"ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "eth0", "root"});
    return;
  }
  // A bucket of 10 ms at the rate (at least a few packets): a copy's speed is the rate, not the
  // burst's.
  uint64_t burst = std::max<uint64_t>(mbit * 1'000'000 / 8 / 100, 6 * 1514);
  must({"ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate",
        fmt::format("{}mbit", mbit), "burst", std::to_string(burst), "latency", "50ms"});
}

void netns_hosts::cut(const std::string& from, const std::string& to) {
  must({"ip", "-n", netns(to), "route", "add", "blackhole", address(from) + "/32"});
}

void netns_hosts::mend(const std::string& from, const std::string& to) {
  must({"ip", "-n", netns(to), "route", "del", "blackhole", address(from) + "/32"});
}

uint64_t netns_hosts::tx_bytes(const std::string& host) const {
  auto it = veths_.find(host);
  if (it == veths_.end()) {
    throw std::runtime_error("no host " + host);
  }
  // What the host sends on eth0 arrives at its veth's other end, on the bridge.
  std::ifstream in(fmt::format("/sys/class/net/{}/statistics/rx_bytes", it->second));
  uint64_t n = 0;
  if (!(in >> n)) {
    throw std::runtime_error("cannot read the counters of " + it->second);
  }
  return n;
}

netns_grid::netns_grid(const std::function<grid_config(const std::filesystem::path&)>& make) {
  grid_ = make(dir_.path());
  std::vector<std::string> names;
  for (auto [present, name] : {std::pair{grid_.registry.has_value(), "registry"},
                               std::pair{grid_.auth.has_value(), "auth"},
                               std::pair{grid_.content.has_value(), "content"}}) {
    if (present) {
      names.emplace_back(name);
    }
  }
  for (auto& s : grid_.stations) {
    names.push_back(s.name.str());
  }
  hosts_.emplace(names);
  if (grid_.registry) {
    grid_.registry->listen.host = hosts_->address("registry");
  }
  if (grid_.auth) {
    grid_.auth->listen.host = hosts_->address("auth");
  }
  if (grid_.content) {
    grid_.content->listen.host = hosts_->address("content");
  }
  for (auto& s : grid_.stations) {
    auto& at = hosts_->address(s.name.str());
    s.director.listen.host = at;
    s.supervisor.host = at;
    for (auto& e : s.engines) {
      e.listen.host = at;
    }
  }
  // The hosts' network may read every daemon's /metrics (the registry's dashboard polls the
  // engines' from its own host; a Prometheus there would too).
  grid_.metrics_from.push_back("198.18.0.0/15");
  auto config = dir_.path() / "netns-grid.toml";
  if (auto st = write_file_durably(config, grid_.to_toml()); !st) {
    throw std::runtime_error(st.err().detail);
  }
  auto up = child_process::spawn({vodgrid_binary(), "up", "--config", config.string(), "--data",
                                  dir_.path().string(), "--exec-prefix", hosts_->exec_prefix()},
                                 dir_.path() / "up.log");
  if (!up) {
    throw std::runtime_error(up.err().detail);
  }
  up_ = std::move(*up);
  bool ready = eventually(
      [&] { return !up_.running() || log_of("up").find("ready\n") != std::string::npos; },
      std::chrono::seconds(90));
  if (!ready || !up_.running()) {
    throw std::runtime_error("the grid did not come up:\n" + log_of("up"));
  }
}

netns_grid::~netns_grid() {
  up_.stop(std::chrono::seconds(30));
}

std::string netns_grid::director_url(const std::string& station) const {
  return grid_.find_station(station)->director.listen.url();
}

std::string netns_grid::log_of(const std::string& name) const {
  auto file = name == "up" ? dir_.path() / "up.log" : dir_.path() / "logs" / (name + ".log");
  auto t = read_file(file);
  return t ? *t : std::string();
}

}  // namespace vodgrid::test
