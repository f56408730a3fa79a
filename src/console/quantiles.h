// Percentiles of durations the console measures (startup, time to first byte, stalled seconds),
// kept in logarithmic buckets 1 % wide: a fixed size however many samples, and mergeable, so that
// each thread keeps its own and the play's report adds them up.
#pragma once

#include <cstdint>
#include <vector>

#include <boost/json/value.hpp>

namespace vodgrid::console {

class quantiles {
 public:
  // Seconds; negative counts as 0, beyond the last bucket (about 28 hours) as the last.
  void add(double seconds);
  void merge(const quantiles& other);
  uint64_t count() const { return count_; }
  double max() const { return max_; }
  // The q-quantile (0 < q <= 1), within 1 % of a sample's value; 0 without samples.
  double at(double q) const;
  // {"count", "p50", "p95", "p99", "max"}, seconds.
  boost::json::value to_json() const;

 private:
  std::vector<uint64_t> buckets_;  // grown on demand; bucket i holds (min·g^i, min·g^(i+1)]
  uint64_t zeros_ = 0;             // samples of 0 (or below the first bucket)
  uint64_t count_ = 0;
  double max_ = 0;
};

}  // namespace vodgrid::console
