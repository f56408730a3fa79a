// The seeded world: stations clustered in regions on a map, uplinks over three orders of magnitude,
// viewers spread over stations by a Zipf law, programs by another, arrivals by a diurnal curve in
// each station's local time.
#include "sim/world.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <numbers>

namespace vodgrid::sim {

namespace {

uint64_t splitmix(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

// Viewers per local hour, relative: a television day, its trough before dawn, its peak at 21:00.
constexpr std::array<double, 24> hourly = {0.30, 0.20, 0.12, 0.08, 0.07, 0.10, 0.20, 0.35,
                                           0.45, 0.50, 0.55, 0.60, 0.65, 0.60, 0.60, 0.65,
                                           0.75, 0.90, 1.10, 1.40, 1.70, 1.80, 1.40, 0.80};

// A cumulative table to draw indices by weight.
struct sampler {
  std::vector<double> cdf;
  explicit sampler(const std::vector<double>& weights) {
    cdf.reserve(weights.size());
    double sum = 0;
    for (double w : weights) {
      sum += w;
      cdf.push_back(sum);
    }
    for (double& c : cdf) {
      c /= sum;
    }
  }
  size_t draw(rng& r) const {
    auto it = std::upper_bound(cdf.begin(), cdf.end(), r.uniform());
    return std::min<size_t>(static_cast<size_t>(it - cdf.begin()), cdf.size() - 1);
  }
};

std::vector<station_spec> make_stations(const options& o, rng& r) {
  std::vector<std::pair<double, double>> centers;
  for (uint32_t i = 0; i < o.regions; ++i) {
    centers.emplace_back(r.uniform() * o.map_width_km, r.uniform() * o.map_height_km);
  }
  std::vector<station_spec> out(o.stations);
  // Viewers per station: a Zipf law over a random order of the stations other than the home.
  std::vector<uint32_t> order(o.stations - 1);
  for (uint32_t i = 0; i < order.size(); ++i) {
    order[i] = i + 1;
  }
  for (size_t i = order.size(); i > 1; --i) {
    std::swap(order[i - 1], order[r.below(i)]);
  }
  for (uint32_t k = 0; k < order.size(); ++k) {
    out[order[k]].viewer_weight = 1 / std::pow(k + 1.0, o.station_skew);
  }
  double span = std::log(o.max_uplink_bits_per_second / o.min_uplink_bits_per_second);
  for (uint32_t i = 0; i < o.stations; ++i) {
    auto& s = out[i];
    s.home = i == 0;
    s.name = s.home ? "home" : fmt::format("s{:04}", i);
    s.region = i == 0 ? 0 : static_cast<uint32_t>(r.below(o.regions));
    auto [cx, cy] = centers[s.region];
    double spread = s.home ? 0 : o.region_spread_km;
    s.x_km = std::clamp(cx + r.normal() * spread, 0.0, o.map_width_km);
    s.y_km = std::clamp(cy + r.normal() * spread, 0.0, o.map_height_km);
    s.uplink_bits_per_second = s.home ? o.home_uplink_bits_per_second
                                      : o.min_uplink_bits_per_second * std::exp(r.uniform() * span);
    // Four time zones either side of the map's middle.
    s.utc_offset_seconds = (s.x_km / o.map_width_km - 0.5) * 8 * 3600;
  }
  return out;
}

// A session's arrival: a local hour by the diurnal curve, uniform within it, in UTC.
double arrival(const station_spec& s, const sampler& hours, rng& r) {
  double local = (static_cast<double>(hours.draw(r)) + r.uniform()) * 3600;
  double t = std::fmod(local - s.utc_offset_seconds + 86400, 86400);
  return t;
}

}  // namespace

rng::rng(uint64_t seed) {
  uint64_t x = seed;
  for (auto& v : s_) {
    v = splitmix(x);
  }
}

uint64_t rng::next() {
  uint64_t result = rotl(s_[1] * 5, 7) * 9;
  uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double rng::normal() {
  double u = std::max(uniform(), 1e-300);
  return std::sqrt(-2 * std::log(u)) * std::cos(2 * std::numbers::pi * uniform());
}

world make_world(const options& o) {
  rng r(o.seed);
  world w;
  w.stations = make_stations(o, r);
  w.program_segments.resize(o.programs);
  w.first_segment.resize(o.programs);
  std::vector<double> popularity(o.programs);
  uint32_t range = o.max_segments - o.min_segments + 1;
  for (uint32_t p = 0; p < o.programs; ++p) {
    w.program_segments[p] = static_cast<uint16_t>(o.min_segments + r.below(range));
    w.first_segment[p] = w.segment_count;
    w.segment_count += w.program_segments[p];
    popularity[p] = 1 / std::pow(p + 1.0, o.zipf_exponent);
  }
  std::vector<double> viewers;
  for (auto& s : w.stations) {
    viewers.push_back(s.viewer_weight);
  }
  sampler programs(popularity), stations(viewers),
      hours(std::vector<double>(hourly.begin(), hourly.end()));
  w.sessions.resize(o.sessions);
  for (auto& s : w.sessions) {
    s.station = static_cast<uint16_t>(stations.draw(r));
    s.program = static_cast<uint32_t>(programs.draw(r));
    s.arrival = arrival(w.stations[s.station], hours, r);
    uint16_t n = 1;
    while (n < w.program_segments[s.program] && r.uniform() < o.continue_probability) {
      ++n;
    }
    s.segments = n;
  }
  std::sort(w.sessions.begin(), w.sessions.end(), [](auto& a, auto& b) {
    return a.arrival != b.arrival ? a.arrival < b.arrival : a.program < b.program;
  });
  return w;
}

}  // namespace vodgrid::sim
