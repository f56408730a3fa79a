// The station's hottest segments: console requests per segment, counted with an exponential decay
// so that the count reads as "requests in about the last minute". For operators (GET /v1/engines,
// the registry's dashboard); selection does not read it. No I/O; thread-safe (one mutex): the
// redirect records on any loop.
#pragma once

#include <chrono>
#include <cstddef>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "base/ids.h"

namespace vodgrid::director {

class hot_segments {
 public:
  using clock = std::chrono::steady_clock;
  // `tau`: the decay's time constant; `max_entries`: past it, the coldest entries are dropped.
  explicit hot_segments(std::chrono::seconds tau = std::chrono::seconds(60),
                        size_t max_entries = 4096)
      : tau_(tau), max_entries_(max_entries) {}

  // One console request for `key` at `now`.
  void record(const segment_key& key, clock::time_point now);

  struct entry {
    segment_key key;
    double requests = 0;  // decayed to `now`
  };
  // The `n` segments with the most decayed requests at `now`, most first; below 0.5 left out.
  std::vector<entry> top(size_t n, clock::time_point now) const;
  size_t size() const {
    std::lock_guard lock(mu_);
    return counts_.size();
  }

 private:
  struct count {
    double value = 0;
    clock::time_point at{};
  };
  double decayed(const count& c, clock::time_point now) const;
  void prune(clock::time_point now);

  std::chrono::seconds tau_;
  size_t max_entries_;
  mutable std::mutex mu_;  // guards counts_
  std::unordered_map<segment_key, count> counts_;
};

}  // namespace vodgrid::director
