// Who limited a play, measured around it (private to the console): the console's own CPU
// (getrusage), the machine's (/proc/stat), and the station's daemons' (the director's engine list,
// then each daemon's /metrics process_cpu_seconds_total), before and after.
#pragma once

#include <sys/resource.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>

#include "console/player.h"

namespace vodgrid::console {

class limits_probe {
 public:
  // Samples everything it can now. `director_url`: any URL of the director played at. Blocking:
  // a few short GETs (2 s deadline each); a daemon that does not answer is left unmeasured.
  explicit limits_probe(const std::string& director_url);
  // Samples again and fills report.limits; names report.stations by the station's name.
  void finish(play_report& report, uint32_t threads);

 private:
  struct cpu_counters {
    double busy = 0, total = 0;  // /proc/stat jiffies, every core
  };
  std::string director_;                            // host:port
  std::string station_;                             // its name, when the director said
  std::map<std::string, std::string> engine_urls_;  // host:port → its origin
  std::map<std::string, double> cpu_before_;        // host:port → process_cpu_seconds_total
  std::chrono::steady_clock::time_point t0_;
  rusage self_before_{};
  std::optional<cpu_counters> machine_before_;
};

// The verdict from the figures measured: which side was saturated, or "none".
std::string saturation_verdict(const play_report& r, const saturation& s);

}  // namespace vodgrid::console
