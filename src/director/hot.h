// The station's hottest segments: console requests per segment, counted with an exponential decay
// so that the count reads as "requests in about the last minute". For operators (GET /v1/engines,
// the registry's dashboard); selection does not read it. No I/O; thread-safe: the redirect records
// on any loop into the shard of its thread slot (base/thread_slot.h, modulo 8) with its own mutex,
// so that up to 8 loops never wait for one another; top() adds the shards up (a decayed count is
// a sum of decayed requests, so the shards' sum is the count of the whole).
#pragma once

#include <array>
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
  // `tau`: the decay's time constant; `max_entries`: past it, the coldest entries of a shard are
  // dropped (at most `max_entries` per shard, of 8: the table holds up to 8 × that with 8 loops).
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
  // Entries over every shard (a segment recorded by two loops counts twice).
  size_t size() const;

 private:
  struct count {
    double value = 0;
    clock::time_point at{};
  };
  struct alignas(64) shard {
    mutable std::mutex mu;  // guards counts
    std::unordered_map<segment_key, count> counts;
  };
  static constexpr size_t shard_count = 8;
  double decayed(const count& c, clock::time_point now) const;
  void prune(std::unordered_map<segment_key, count>& counts, clock::time_point now);

  std::chrono::seconds tau_;
  size_t max_entries_;
  std::array<shard, shard_count> shards_;
};

}  // namespace vodgrid::director
