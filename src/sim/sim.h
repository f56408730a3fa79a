// The grid at internet scale on paper (`vodgrid simulate`): a seeded world of stations, programs
// and a day of viewer sessions, played through the project's own decisions — the registry's cost
// model and ranking (registry/cost.h), the director's engine choice, hot-segment test and copy
// receiver (director/tables.h), the engine's disk budget and eviction offer (engine/decisions.h) —
// as a discrete-event simulation on one thread. What the simulation models and what it leaves out
// is in src/sim/README.md; the default run's figures in docs/scale.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <boost/json/object.hpp>

#include "base/result.h"
#include "registry/cost.h"

namespace vodgrid::sim {

// How a station picks the station it copies a missing segment from.
enum class source_policy {
  cost,     // the registry's ranking by cost (registry::cost_model::rank): the grid's own rule
  nearest,  // the geographically nearest holder, whatever its uplink or load (a baseline)
};

struct options {
  uint64_t seed = 1;
  uint32_t stations = 1000;  // the home station included
  uint32_t programs = 100'000;
  uint64_t sessions = 1'000'000;  // viewer sessions over one simulated day

  // The world.
  uint32_t regions = 8;          // clusters of stations on the map
  double map_width_km = 12'000;  // west to east: also four time zones either side of noon
  double map_height_km = 6'000;
  double region_spread_km = 400;              // standard deviation of a station around its region
  double min_uplink_bits_per_second = 100e6;  // uplinks log-uniform between these
  double max_uplink_bits_per_second = 100e9;
  double home_uplink_bits_per_second = 100e9;
  double station_skew = 0.8;   // viewers per station: Zipf over a random order, this exponent
  double zipf_exponent = 0.9;  // program popularity: Zipf over programs, this exponent

  // Programs and viewing. A simulated segment stands for a run of the packager's segments
  // (a director redirects each, but they share holders, so they share every decision here).
  double segment_seconds = 300;
  // The packager's segment: what a director looks up and the registry's cost model prices, one
  // at a time (a simulated segment stands for segment_seconds / packager_segment_seconds of them).
  double packager_segment_seconds = 4;
  uint64_t bits_per_second = 5'000'000;  // the programs' bitrate
  uint32_t min_segments = 6;             // program length, uniform in segments
  uint32_t max_segments = 24;
  double continue_probability = 0.8;  // a viewer watches the next segment with this probability

  // Stations (the config's [director] and engine defaults where they exist).
  uint32_t engines = 4;                       // engines per station
  uint32_t max_streams = 1000;                // per engine
  uint64_t max_disk_bytes = 500'000'000'000;  // per engine
  uint32_t copies = 2;                        // [director] copies
  uint32_t parallel_copies = 4;               // [director] parallel_copies: prefetch workers
  uint32_t hot_load_percent = 80;             // [director] hot_load_percent
  double slow_uplink_bits_per_second = 1e9;   // uplinks below this count as slow in the report

  // Pre-positioning: the operator distributes the most popular programs to every station at
  // midnight with `--prefetch` segments (api::distribution); the rest are copied on a miss.
  bool preposition = true;
  uint32_t prepositioned_programs = 1000;
  uint32_t prefetch_segments = 2;

  source_policy sources = source_policy::cost;
  // At most this many holders are ranked per lookup: all of them when there are no more, else the
  // nearest half and the best connected half (and the home), a registry's index at scale.
  uint32_t candidates = 32;
  registry::cost_model costs;  // the registry's model, as the grid configures it
};

// Why the options cannot be simulated (a count out of range, an inconsistent bound), or nullopt.
std::optional<error> refusal_for(const options& o);

// Console segment requests by where they were served from.
struct tier_counts {
  uint64_t engine = 0;   // an engine of the viewer's station that held (or was receiving) it
  uint64_t station = 0;  // an engine of the station after a replica from another of its engines
  uint64_t other_station = 0;  // copied from (or streamed by) another station, not the home
  uint64_t home = 0;           // copied from (or streamed by) the home station
  uint64_t refused = 0;        // no engine anywhere could take the console
  uint64_t total() const { return engine + station + other_station + home + refused; }
};

struct outcome {
  std::string name;  // which run: "cost + pre-positioning", "pull only", "nearest only"
  tier_counts requests;
  uint64_t sessions = 0;
  uint64_t copies_between_stations = 0;
  uint64_t bytes_between_stations = 0;  // copies, and streams served from another station
  uint64_t bytes_from_home = 0;
  uint64_t bytes_over_slow_uplinks = 0;  // sent by stations whose uplink is below the threshold
  uint64_t bytes_within_stations = 0;    // placement copies and replicas between engines
  double mean_copy_seconds = 0;
  uint64_t prefetch_copies = 0;
  double prefetch_done_seconds = 0;  // when the last pre-positioning copy finished
  uint64_t registry_requests = 0;    // source lookups (one per packager segment) and reports
  double registry_mean_per_second = 0;
  uint64_t registry_peak_per_second = 0;
  std::string busiest_engine;
  uint32_t busiest_engine_streams = 0;   // its peak concurrent streams
  uint32_t busiest_station_streams = 0;  // the peak concurrent streams of the busiest station
  uint32_t p99_station_streams = 0;      // 99th percentile over stations of their peak
  uint64_t peak_sessions = 0;            // concurrent, grid-wide
  uint64_t replicas = 0;                 // hot segments copied to another engine of the station
  uint64_t evictions = 0;
  double max_station_disk_bytes = 0;  // the most bytes a station held at the end
  double mean_station_disk_bytes = 0;
  double wall_seconds = 0;
  double cpu_seconds = 0;  // of the thread that ran it
};

// One simulated day under `o`. Deterministic for given options (seed included).
outcome simulate(const options& o);

struct report {
  options opts;
  std::vector<outcome> runs;  // the grid's rules first, then the baselines
};
// The grid's rules, then the two baselines: no pre-positioning, and nearest-station-only.
report simulate_with_baselines(const options& o);

std::string to_text(const report& r);
boost::json::object to_json(const report& r);

}  // namespace vodgrid::sim
