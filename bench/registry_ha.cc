// bench/registry_ha: location reports per second and their latency at a registry daemon whose
// database is the highly available one of docs/registry.md (three Patroni members with
// synchronous replication, three etcd members) against the same registry on a single PostgreSQL,
// on this machine, in one run; the price of synchronous replication as a ratio. The load is the HA
// test's (tests/support/report_load.h): writers posting station reports of one location change
// each, one after another, as directors do, every report acknowledged only once committed.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <thread>

#include "base/config.h"
#include "base/fs.h"
#include "support/patroni.h"
#include "support/postgres.h"
#include "support/report_load.h"
#include "support/support.h"

namespace vt = vodgrid::test;
using namespace std::chrono_literals;

namespace {

struct figures {
  double per_second = 0;
  double p50_ms = 0, p99_ms = 0;
  uint64_t failed = 0;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// One registry daemon over `database`, `writers` writers for `seconds`.
figures measure(const std::string& database, int writers, int seconds, const std::string& tag) {
  vt::temp_dir dir;
  vodgrid::grid_config g;
  g.registry = vodgrid::registry_config{{"127.0.0.1", vt::free_port()}, database};
  vodgrid::station_config s;
  s.name = *vodgrid::station_id::parse("home");
  s.home = true;
  s.director.listen = {"127.0.0.1", vt::free_port()};  // nobody: the load speaks for the station
  s.director.data_dir = dir.path() / "home";
  s.director.copies = 1;
  vodgrid::engine_config e;
  e.name = *vodgrid::engine_id::parse("home-1");
  e.listen = {"127.0.0.1", vt::free_port()};
  e.data_dirs = {dir.path() / "home-1"};
  s.engines.push_back(e);
  g.stations.push_back(s);
  g.log_level = "warn";
  auto file = dir.path() / "grid.toml";
  if (!vodgrid::write_file_durably(file, g.to_toml())) {
    throw std::runtime_error("cannot write " + file.string());
  }
  auto reg = vodgrid::child_process::spawn(
      {vt::vodgrid_binary(), "registry", "--config", file.string()}, dir.path() / "registry.log");
  if (!reg) {
    throw std::runtime_error(reg.err().detail);
  }
  auto url = g.registry->listen.url();
  if (!vt::eventually(
          [&] {
            auto r = vt::http_get(url + "/healthz");
            return r && r->status == 200;
          },
          60s)) {
    throw std::runtime_error("the registry did not start");
  }
  vt::report_load::options o;
  o.registries = {url};
  o.station = "home";
  o.director_url = s.director.listen.url();
  o.home = true;
  o.writers = writers;
  o.prefix = tag;
  figures f;
  {
    vt::report_load load(o);
    std::this_thread::sleep_for(2s);  // warm: connections, the first rows
    auto n0 = load.acknowledged();
    auto skip = load.latencies_ms().size();
    auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    auto n1 = load.acknowledged();
    auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    load.stop();
    auto lat = load.latencies_ms();
    lat.erase(lat.begin(), lat.begin() + static_cast<std::ptrdiff_t>(std::min(skip, lat.size())));
    f.per_second = static_cast<double>(n1 - n0) / took;
    f.p50_ms = percentile(lat, 0.50);
    f.p99_ms = percentile(lat, 0.99);
    f.failed = load.failed();
  }
  reg->stop(10s);
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Location reports per second and p99 latency at a registry over a Patroni cluster "
      "(synchronous) against a single PostgreSQL, in one run"};
  int seconds = 20, writers = 8;
  app.add_option("--seconds", seconds, "Measured seconds per side (after 2 s of warm-up)")
      ->check(CLI::Range(1, 3600));
  app.add_option("--writers", writers, "Reports in flight at once (directors)")
      ->check(CLI::Range(1, 256));
  CLI11_PARSE(app, argc, argv);

  // Every failure is an exception: caught here so that the clusters' destructors stop what they
  // started (an uncaught one would leave etcd and Patroni running).
  try {
    std::fprintf(stderr,
                 "starting a single PostgreSQL and a Patroni cluster (3 etcd, 3 PostgreSQL)\n");
    vt::postgres_server single;
    auto single_url = single.create_database("bench");
    vt::patroni_cluster ha;
    std::fprintf(stderr, "measuring %d s each, %d writers\n", seconds, writers);
    auto one = measure(single_url, writers, seconds, "single");
    auto three = measure(ha.url(), writers, seconds, "ha");
    std::cout << fmt::format("{:<44} {:>12} {:>9} {:>9} {:>7}\n", "database", "reports/s", "p50 ms",
                             "p99 ms", "failed");
    std::cout << fmt::format("{:<44} {:>12.0f} {:>9.2f} {:>9.2f} {:>7}\n", "single PostgreSQL",
                             one.per_second, one.p50_ms, one.p99_ms, one.failed);
    std::cout << fmt::format("{:<44} {:>12.0f} {:>9.2f} {:>9.2f} {:>7}\n",
                             "Patroni, 3 members, synchronous_mode", three.per_second, three.p50_ms,
                             three.p99_ms, three.failed);
    std::cout << fmt::format(
        "HA / single: reports per second {:.2f}, p99 latency {:.2f}x (the price of synchronous "
        "replication)\n",
        one.per_second > 0 ? three.per_second / one.per_second : 0,
        one.p99_ms > 0 ? three.p99_ms / one.p99_ms : 0);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "registry_ha: %s\n", e.what());
    return 1;
  }
  return 0;
}
