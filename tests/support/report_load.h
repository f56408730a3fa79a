// Location reports at full rate, as directors send them, through a net::peer_list over a registry's
// daemons: the load of the HA tests and of bench/registry_ha. Each writer is one program of its own
// ("{prefix}-{n}") whose segments 0, 1, 2, ... the station reports held, one report after another,
// a report repeated until it is acknowledged (as a director keeps its changes), the station
// registered again when a registry daemon does not know it (409). So after any failure, writer n's
// acknowledged count k means the registry must hold segments 0..k-1 of its program.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace vodgrid::test {

class report_load {
 public:
  struct options {
    std::vector<std::string> registries;  // base URLs, in order of preference
    std::string station;                  // a station of the grid's config
    std::string director_url;             // what its registration names
    bool home = false;                    // ... and whether it is the home
    int writers = 4;                      // reports in flight at once
    int changes_per_report = 1;
    std::string prefix = "load";
  };
  struct writer_state {
    std::string program;
    uint64_t acked = 0;  // segments acknowledged held: 0..acked-1
    uint64_t sent = 0;   // segments ever sent (some perhaps recorded, never acknowledged)
  };

  explicit report_load(options o);  // starts sending at once, on a thread of its own
  ~report_load();                   // stops
  void stop();

  std::vector<writer_state> writers() const;
  uint64_t acknowledged() const;  // reports acknowledged
  uint64_t failed() const;        // attempts that were not (errors, 5xx, 409s)
  // Latencies of acknowledged reports, in ms, in order (copied).
  std::vector<double> latencies_ms() const;
  // The longest time without any acknowledgement since the start (a failover's write outage),
  // one still going on included (until now, or until stop()).
  std::chrono::milliseconds longest_gap() const;

 private:
  void run();
  options opts_;
  mutable std::mutex mu_;  // guards the fields below
  std::vector<writer_state> writers_;
  std::vector<double> latencies_;
  uint64_t failed_ = 0;
  std::chrono::steady_clock::time_point last_ack_;
  std::chrono::steady_clock::duration longest_gap_{};
  bool stopped_ = false;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace vodgrid::test
