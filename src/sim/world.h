// The simulation's seeded world (private to src/sim): stations on a map with their uplinks, the
// programs' lengths and popularity, and the day's viewer sessions sorted by arrival.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "sim/sim.h"

namespace vodgrid::sim {

// xoshiro256**: small, fast and the same on every platform (the standard distributions are not).
class rng {
 public:
  explicit rng(uint64_t seed);
  uint64_t next();
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  uint64_t below(uint64_t n) { return static_cast<uint64_t>(uniform() * static_cast<double>(n)); }
  double normal();  // standard normal (Box-Muller)

 private:
  uint64_t s_[4];
};

struct station_spec {
  std::string name;
  bool home = false;
  uint32_t region = 0;
  double x_km = 0, y_km = 0;
  double uplink_bits_per_second = 0;
  double viewer_weight = 0;  // share of the sessions, relative
  double utc_offset_seconds = 0;
};

struct session_spec {
  double arrival = 0;  // seconds since midnight UTC of the simulated day
  uint32_t program = 0;
  uint16_t station = 0;
  uint16_t segments = 1;  // how many it watches, from the first
};

struct world {
  std::vector<station_spec> stations;      // [0] is the home
  std::vector<uint16_t> program_segments;  // per program, in order of popularity (0: the most)
  std::vector<uint32_t> first_segment;     // per program: its first segment's global number
  uint32_t segment_count = 0;
  std::vector<session_spec> sessions;  // sorted by arrival
};

// The world of `o`: the same for the same options.
world make_world(const options& o);

}  // namespace vodgrid::sim
