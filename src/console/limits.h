// Who limited a play, measured around it (private to the console): the console's own CPU
// (getrusage), the machine's (/proc/stat), and the station's daemons' (each daemon's /metrics
// process_cpu_seconds_total, before and after): the director's, and each engine's from the first
// redirect to it (a viewer's token may not read the director's engine list, and the engines that
// matter are those the play met).
#pragma once

#include <sys/resource.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "console/player.h"

namespace vodgrid::console {

class limits_probe {
 public:
  // Samples the director and the machine now. `director_url`: any URL of the director played at.
  // Blocking: a few short GETs (2 s deadline each); a daemon that does not answer is left
  // unmeasured.
  explicit limits_probe(const std::string& director_url);
  ~limits_probe();
  limits_probe(const limits_probe&) = delete;
  limits_probe& operator=(const limits_probe&) = delete;
  // An engine the play was sent to (its origin): sampled once, at once, on the probe's own thread,
  // so that no viewer waits on its /metrics. Thread-safe; cheap when the engine is known.
  void saw_engine(const std::string& origin);
  // Samples again and fills report.limits; names report.stations by the station's name. Each
  // engine's CPU is over the time since it was first sampled.
  void finish(play_report& report, uint32_t threads);

 private:
  struct cpu_counters {
    double busy = 0, total = 0;  // /proc/stat jiffies, every core
  };
  struct sample {
    double cpu_seconds = 0;
    std::chrono::steady_clock::time_point at;
  };
  void sample_engines();  // the sampler thread: origins from pending_ until stopping_
  // GET `url` with a short deadline: the body of a 200, or nothing. Used by one thread at a time
  // (the constructor's, the sampler, then finish's after the sampler is joined).
  std::optional<std::string> get_body(const std::string& url);

  // One client for every sample, so that a daemon's second sample reuses the first one's
  // connection or resumes its TLS session rather than making a full handshake (which the engines
  // would count as the play's).
  struct fetcher;
  std::unique_ptr<fetcher> fetch_;
  std::string director_;  // host:port
  std::string station_;   // its name, when the director said
  std::chrono::steady_clock::time_point t0_;
  rusage self_before_{};
  std::optional<cpu_counters> machine_before_;
  std::mutex mu_;  // guards what follows
  std::condition_variable wake_;
  std::map<std::string, std::string> origins_;  // host:port → its origin, every daemon seen
  std::map<std::string, sample> before_;        // host:port → its first sample
  std::deque<std::string> pending_;             // host:port of engines not yet sampled
  bool stopping_ = false;
  std::thread sampler_;
};

// The verdict from the figures measured: which side was saturated, or "none".
std::string saturation_verdict(const play_report& r, const saturation& s);

}  // namespace vodgrid::console
