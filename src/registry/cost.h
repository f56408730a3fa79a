// The cost of copying a segment from a source station (claim 15): the expected time to have it,
// from the bandwidth the source can spare, the distance between the stations, the source's load,
// and a penalty that makes the home station the source of last resort. Pure; documented in
// docs/registry.md with worked examples.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vodgrid::registry {

struct station_inputs {
  std::string name;
  bool home = false;
  bool up = true;
  double x_km = 0, y_km = 0;             // location on the operator's map
  uint64_t uplink_bits_per_second = 0;   // configured capacity toward other stations; 0 = unknown
  uint64_t sending_bits_per_second = 0;  // measured: what it sends now (consoles and copies)
  double load = 0;                       // streams in use over stream capacity, 0..1
  double copy_bits_per_second = 0;       // measured throughput of past copies from it; 0 = none yet
};

struct cost_breakdown {
  double available_bits_per_second = 0;  // what the source can spare for this copy
  double distance_km = 0;
  double transfer_seconds = 0;  // size / min(available, measured)
  double latency_seconds = 0;   // round trips over the distance
  double load_factor = 1;       // 1 / (1 - load), capped
  double home_penalty_seconds = 0;
  double cost = 0;  // expected seconds until the copy is done; lower is better
};

struct cost_model {
  double km_per_second = 200'000;    // light in fibre
  double round_trips = 4;            // connect, request, first bytes, tail
  double home_penalty_seconds = 30;  // the home station is the source of last resort
  double max_load_factor = 20;
  uint64_t default_uplink_bits_per_second = 1'000'000'000;  // when a station gives none

  cost_breakdown cost(const station_inputs& source, const station_inputs& seeker,
                      uint64_t segment_bytes) const;
  // Sources ordered cheapest first; stations that are down (and the seeker) are left out.
  std::vector<std::pair<station_inputs, cost_breakdown>> rank(
      const std::vector<station_inputs>& sources, const station_inputs& seeker,
      uint64_t segment_bytes) const;
  // The same order as positions in `sources`, with nothing copied (the simulation ranks millions).
  std::vector<std::pair<size_t, cost_breakdown>> rank_positions(
      const std::vector<station_inputs>& sources, const station_inputs& seeker,
      uint64_t segment_bytes) const;
  // The source rank would put first, and its cost, without ranking the rest or copying a source:
  // the simulation needs only the first, millions of times. `source(i)` gives the i-th of `n`
  // sources' inputs (a const reference). nullopt: none is up but the seeker.
  template <class Source>
  std::optional<std::pair<size_t, cost_breakdown>> cheapest(size_t n, Source&& source,
                                                            const station_inputs& seeker,
                                                            uint64_t segment_bytes) const {
    std::optional<std::pair<size_t, cost_breakdown>> best;
    for (size_t i = 0; i < n; ++i) {
      const station_inputs& s = source(i);
      if (s.up && s.name != seeker.name) {
        auto b = cost(s, seeker, segment_bytes);
        if (!best || ranks_before(b.cost, i, best->second.cost, best->first)) {
          best.emplace(i, b);
        }
      }
    }
    return best;
  }
  // The ranking's order: cheapest first, ties in the order given (position), a NaN cost (a NaN
  // load) last, so that it is a strict weak order.
  static bool ranks_before(double cost_a, size_t position_a, double cost_b, size_t position_b) {
    double x = std::isnan(cost_a) ? HUGE_VAL : cost_a;
    double y = std::isnan(cost_b) ? HUGE_VAL : cost_b;
    return x != y ? x < y : position_a < position_b;
  }
};

}  // namespace vodgrid::registry
