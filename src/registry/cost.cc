#include "registry/cost.h"

#include <algorithm>
#include <cmath>

namespace vodgrid::registry {

cost_breakdown cost_model::cost(const station_inputs& src, const station_inputs& seeker,
                                uint64_t segment_bytes) const {
  cost_breakdown b;
  double uplink = static_cast<double>(src.uplink_bits_per_second ? src.uplink_bits_per_second
                                                                 : default_uplink_bits_per_second);
  // A source never spares less than 5% of its uplink: a copy still makes progress when it is busy.
  b.available_bits_per_second =
      std::max(uplink - static_cast<double>(src.sending_bits_per_second), uplink * 0.05);
  double rate = b.available_bits_per_second;
  if (src.copy_bits_per_second > 0) {
    rate = std::min(rate, src.copy_bits_per_second);  // what copies from it really achieved
  }
  b.distance_km = std::hypot(src.x_km - seeker.x_km, src.y_km - seeker.y_km);
  b.transfer_seconds = static_cast<double>(segment_bytes) * 8 / rate;
  b.latency_seconds = round_trips * 2 * b.distance_km / km_per_second;
  double load = std::clamp(src.load, 0.0, 1.0);
  b.load_factor = load >= 1 ? max_load_factor : std::min(1 / (1 - load), max_load_factor);
  b.home_penalty_seconds = src.home ? home_penalty_seconds : 0;
  b.cost = (b.transfer_seconds + b.latency_seconds) * b.load_factor + b.home_penalty_seconds;
  return b;
}

std::vector<std::pair<size_t, cost_breakdown>> cost_model::rank_positions(
    const std::vector<station_inputs>& sources, const station_inputs& seeker,
    uint64_t segment_bytes) const {
  std::vector<std::pair<size_t, cost_breakdown>> out;
  out.reserve(sources.size());
  for (size_t i = 0; i < sources.size(); ++i) {
    const station_inputs& s = sources[i];
    if (s.up && s.name != seeker.name) {
      out.emplace_back(i, cost(s, seeker, segment_bytes));
    }
  }
  // Cheapest first, ties in the order given: a sort by (cost, position) is that stable order
  // without stable_sort's temporary buffer (a malloc per lookup).
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) {
    return ranks_before(a.second.cost, a.first, b.second.cost, b.first);
  });
  return out;
}

std::vector<std::pair<station_inputs, cost_breakdown>> cost_model::rank(
    const std::vector<station_inputs>& sources, const station_inputs& seeker,
    uint64_t segment_bytes) const {
  std::vector<std::pair<station_inputs, cost_breakdown>> out;
  for (auto& [i, b] : rank_positions(sources, seeker, segment_bytes)) {
    out.emplace_back(sources[i], b);
  }
  return out;
}

}  // namespace vodgrid::registry
