#include "console/model.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace vodgrid::console {

namespace {

// SplitMix64's finaliser: spreads seed + viewer (neighbouring integers) over the whole state.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A viewer's streams: mt19937_64's sequence is fixed by the standard, unlike the standard
// distributions', so the draws below are written out and a seed means the same on every build.
enum class stream : uint64_t { arrivals = 1, program = 2, plan = 3 };

std::mt19937_64 rng_for(uint64_t seed, uint32_t viewer, stream s) {
  return std::mt19937_64(mix(mix(seed + viewer) ^ static_cast<uint64_t>(s)));
}

double uniform(std::mt19937_64& g) {  // [0, 1)
  return static_cast<double>(g() >> 11) * 0x1.0p-53;
}

double exponential(std::mt19937_64& g, double mean) {
  return -mean * std::log1p(-uniform(g));
}

constexpr size_t max_events = 100'000;   // per viewer: a bound on a plan's size
constexpr size_t max_steps = 1'000'000;  // per viewer: a bound on a schedule's size
constexpr double epsilon = 1e-9;         // seconds: below this a watch time is spent

}  // namespace

std::optional<std::string> invalid_model(const model_options& o) {
  auto bad = [](double v) { return !std::isfinite(v) || v < 0; };
  if (bad(o.arrival_rate)) {
    return "--arrival-rate must be a rate >= 0 (viewers per second; 0: all at once)";
  }
  if (bad(o.zipf_s) || o.zipf_s > 10) {
    return "--zipf must be within 0..10";
  }
  if (bad(o.watch_mean_seconds)) {
    return "--watch-mean must be >= 0 seconds (0: to the end)";
  }
  if (bad(o.seeks_per_minute) || o.seeks_per_minute > 60) {
    return "--seeks must be within 0..60 per minute";
  }
  if (bad(o.pauses_per_minute) || o.pauses_per_minute > 60) {
    return "--pauses must be within 0..60 per minute";
  }
  if (bad(o.pause_mean_seconds) || o.pause_mean_seconds > 3600) {
    return "--pause-mean must be within 0..3600 seconds";
  }
  return std::nullopt;
}

std::vector<double> arrival_times(const model_options& o, uint32_t viewers) {
  std::vector<double> out(viewers, 0.0);
  if (o.arrival_rate <= 0) {
    return out;
  }
  auto g = rng_for(o.seed, 0, stream::arrivals);
  double t = 0;
  for (auto& a : out) {
    t += exponential(g, 1 / o.arrival_rate);
    a = t;
  }
  return out;
}

size_t pick_program(const model_options& o, uint32_t viewer, size_t programs) {
  if (programs <= 1) {
    return 0;
  }
  std::vector<double> cumulative(programs);
  double sum = 0;
  for (size_t k = 0; k < programs; ++k) {
    sum += 1 / std::pow(static_cast<double>(k + 1), o.zipf_s);
    cumulative[k] = sum;
  }
  auto g = rng_for(o.seed, viewer, stream::program);
  double u = uniform(g) * sum;
  auto it = std::upper_bound(cumulative.begin(), cumulative.end(), u);
  return std::min<size_t>(it - cumulative.begin(), programs - 1);
}

viewer_plan plan_viewer(const model_options& o, uint32_t viewer, double program_seconds) {
  auto g = rng_for(o.seed, viewer, stream::plan);
  viewer_plan p;
  p.watch_seconds = program_seconds;
  if (o.watch_mean_seconds > 0) {
    p.watch_seconds = std::min(program_seconds, exponential(g, o.watch_mean_seconds));
  }
  double rate = (o.seeks_per_minute + o.pauses_per_minute) / 60;  // events per second watched
  if (rate <= 0) {
    return p;
  }
  double seek_share = o.seeks_per_minute / 60 / rate;
  double at = 0;
  while (p.events.size() < max_events) {
    at += exponential(g, 1 / rate);
    if (at >= p.watch_seconds) {
      break;
    }
    viewer_event e;
    e.at = at;
    if (uniform(g) < seek_share) {
      e.what = viewer_event::kind::seek;
      e.value = uniform(g);
    } else {
      e.what = viewer_event::kind::pause;
      e.value = exponential(g, o.pause_mean_seconds);
    }
    p.events.push_back(e);
  }
  return p;
}

std::vector<play_step> schedule(const viewer_plan& plan, const std::vector<double>& durations) {
  std::vector<double> starts(durations.size());
  double total = 0;
  for (size_t i = 0; i < durations.size(); ++i) {
    starts[i] = total;
    total += std::max(0.0, durations[i]);
  }
  std::vector<play_step> steps;
  size_t s = 0, ev = 0;
  double watched = 0;
  play_step next;
  while (s < durations.size() && steps.size() < max_steps &&
         (watched < plan.watch_seconds - epsilon || total <= 0)) {
    double d = std::max(0.0, durations[s]);
    next.segment = s;
    next.seconds = total <= 0 ? d : std::min(d, plan.watch_seconds - watched);
    steps.push_back(next);
    next = play_step{};
    double end = watched + steps.back().seconds;
    size_t after = s + 1;
    for (; ev < plan.events.size() && plan.events[ev].at < end + epsilon; ++ev) {
      auto& e = plan.events[ev];
      if (e.what == viewer_event::kind::pause) {
        next.pause_before += e.value;
        continue;
      }
      // The segment holding the target position (the last one starting at or before it).
      double target = std::clamp(e.value, 0.0, 1.0) * total;
      auto it = std::upper_bound(starts.begin(), starts.end(), target);
      after = std::min<size_t>(it == starts.begin() ? 0 : (it - starts.begin()) - 1,
                               durations.size() - 1);
      next.seek = true;
    }
    watched = end;
    s = after;
  }
  return steps;
}

}  // namespace vodgrid::console
