// `vodgrid simulate`'s runs and their report: the grid's rules against two baselines, as text and
// as JSON.
#include "sim/sim.h"

#include <fmt/format.h>

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "sim/grid.h"
#include "sim/world.h"

namespace vodgrid::sim {

namespace {

double ratio(uint64_t part, uint64_t whole) {
  return whole ? static_cast<double>(part) / static_cast<double>(whole) : 0;
}

std::string tb(double bytes) {
  return fmt::format("{:.1f} TB", bytes / 1e12);
}

}  // namespace

std::optional<error> refusal_for(const options& o) {
  auto bad = [](std::string what) { return make_error(errc::invalid_argument, std::move(what)); };
  if (o.stations < 2 || o.stations > 5000) {
    return bad(fmt::format("--stations must be 2 to 5000 (got {})", o.stations));
  }
  if (o.programs < 1 || o.programs > 10'000'000) {
    return bad(fmt::format("--programs must be 1 to 10000000 (got {})", o.programs));
  }
  if (o.sessions < 1 || o.sessions > 100'000'000) {
    return bad(fmt::format("--sessions must be 1 to 100000000 (got {})", o.sessions));
  }
  if (o.engines < 1 || o.engines > 16) {
    return bad(fmt::format("engines per station must be 1 to 16 (got {})", o.engines));
  }
  if (o.regions < 1 || o.min_segments < 1 || o.min_segments > o.max_segments ||
      o.max_segments > 60'000 || o.segment_seconds <= 0 || o.packager_segment_seconds <= 0 ||
      o.packager_segment_seconds > o.segment_seconds || o.bits_per_second == 0 ||
      o.max_streams == 0 || o.max_disk_bytes == 0 || o.copies < 1 || o.parallel_copies < 1 ||
      o.prefetch_segments < 1 || o.candidates < 2 || o.min_uplink_bits_per_second <= 0 ||
      o.max_uplink_bits_per_second < o.min_uplink_bits_per_second ||
      !(o.continue_probability >= 0 && o.continue_probability < 1)) {
    return bad("the simulation's parameters are inconsistent");
  }
  return std::nullopt;
}

namespace {

// CPU time of the calling thread: what a run costs on a shared machine, whatever else runs.
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

outcome run_in(const options& o, const world& w) {
  auto t0 = std::chrono::steady_clock::now();
  double c0 = thread_cpu_seconds();
  grid_sim g(o, w);
  outcome out = g.run();
  out.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.cpu_seconds = thread_cpu_seconds() - c0;
  return out;
}

}  // namespace

outcome simulate(const options& o) {
  return run_in(o, make_world(o));
}

report simulate_with_baselines(const options& o) {
  report r{o, {}};
  // One world for the three runs: it depends on the world's options only, which they share.
  world w = make_world(o);
  options pull = o;
  pull.preposition = false;
  options nearest = o;
  nearest.sources = source_policy::nearest;
  // The three runs share nothing but the world, read only: as many at once as there are cores
  // this process may run on (sched_getaffinity), in turn beyond that. On one core, three threads
  // would only take turns and evict each other's tables from the cache.
  const options* each[3] = {&o, &pull, &nearest};
  outcome outs[3];
  std::atomic<int> next{0};
  auto work = [&] {
    for (int i; (i = next.fetch_add(1)) < 3;) {
      outs[i] = run_in(*each[i], w);
    }
  };
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  int cores = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
  std::vector<std::thread> helpers;
  for (int k = 1; k < std::min(cores, 3); ++k) {
    helpers.emplace_back(work);
  }
  work();
  for (auto& t : helpers) {
    t.join();
  }
  r.runs.push_back(std::move(outs[0]));
  r.runs.back().name = "cost + pre-positioning";
  r.runs.push_back(std::move(outs[1]));
  r.runs.back().name = "pull only";
  r.runs.push_back(std::move(outs[2]));
  r.runs.back().name = "nearest only";
  return r;
}

std::string to_text(const report& r) {
  auto& o = r.opts;
  std::string s = fmt::format(
      "vodgrid simulate: seed {}, {} stations x {} engines, {} programs (Zipf {}), {} sessions "
      "over a day\n"
      "segments of {:.0f} s at {:.1f} Mb/s ({:.0f} MB); engines of {} streams and {:.0f} GB; "
      "pre-positioning: the top {} programs, {} segments each, to every station\n\n",
      o.seed, o.stations, o.engines, o.programs, o.zipf_exponent, o.sessions, o.segment_seconds,
      static_cast<double>(o.bits_per_second) / 1e6,
      o.segment_seconds * static_cast<double>(o.bits_per_second) / 8e6, o.max_streams,
      static_cast<double>(o.max_disk_bytes) / 1e9, o.prepositioned_programs, o.prefetch_segments);
  s += fmt::format("{:<34}", "");
  for (auto& run : r.runs) {
    s += fmt::format("{:>24}", run.name);
  }
  s += "\n";
  auto row = [&](std::string_view label, auto value) {
    s += fmt::format("{:<34}", label);
    for (auto& run : r.runs) {
      s += fmt::format("{:>24}", value(run));
    }
    s += "\n";
  };
  auto pct = [](uint64_t part, uint64_t whole) {
    return fmt::format("{:.2f} %", 100 * ratio(part, whole));
  };
  row("segment requests", [](const outcome& x) { return std::to_string(x.requests.total()); });
  row("hit: engine", [&](const outcome& x) { return pct(x.requests.engine, x.requests.total()); });
  row("hit: station (replica)",
      [&](const outcome& x) { return pct(x.requests.station, x.requests.total()); });
  row("from another station",
      [&](const outcome& x) { return pct(x.requests.other_station, x.requests.total()); });
  row("from the home", [&](const outcome& x) { return pct(x.requests.home, x.requests.total()); });
  row("refused", [&](const outcome& x) { return pct(x.requests.refused, x.requests.total()); });
  row("copies between stations",
      [](const outcome& x) { return std::to_string(x.copies_between_stations); });
  row("bytes between stations",
      [](const outcome& x) { return tb(static_cast<double>(x.bytes_between_stations)); });
  row("  of which from the home",
      [](const outcome& x) { return tb(static_cast<double>(x.bytes_from_home)); });
  row(fmt::format("  over uplinks < {:.0f} Mb/s", o.slow_uplink_bits_per_second / 1e6),
      [](const outcome& x) { return tb(static_cast<double>(x.bytes_over_slow_uplinks)); });
  row("bytes within stations",
      [](const outcome& x) { return tb(static_cast<double>(x.bytes_within_stations)); });
  row("mean copy time",
      [](const outcome& x) { return fmt::format("{:.1f} s", x.mean_copy_seconds); });
  row("pre-positioning copies", [](const outcome& x) { return std::to_string(x.prefetch_copies); });
  row("  done at", [](const outcome& x) {
    return fmt::format("{:02}:{:02}", static_cast<int>(x.prefetch_done_seconds / 3600),
                       static_cast<int>(x.prefetch_done_seconds / 60) % 60);
  });
  row("registry requests/s (mean)",
      [](const outcome& x) { return fmt::format("{:.1f}", x.registry_mean_per_second); });
  row("registry requests/s (peak)",
      [](const outcome& x) { return std::to_string(x.registry_peak_per_second); });
  row("busiest engine: peak streams", [](const outcome& x) {
    return fmt::format("{} ({})", x.busiest_engine_streams, x.busiest_engine);
  });
  row("busiest station: peak streams",
      [](const outcome& x) { return std::to_string(x.busiest_station_streams); });
  row("station peak streams, p99",
      [](const outcome& x) { return std::to_string(x.p99_station_streams); });
  row("concurrent sessions (peak)",
      [](const outcome& x) { return std::to_string(x.peak_sessions); });
  row("replicas of hot segments", [](const outcome& x) { return std::to_string(x.replicas); });
  row("evictions", [](const outcome& x) { return std::to_string(x.evictions); });
  row("station disk at the end (max)",
      [](const outcome& x) { return tb(x.max_station_disk_bytes); });
  row("station disk at the end (mean)",
      [](const outcome& x) { return tb(x.mean_station_disk_bytes); });
  row("wall time", [](const outcome& x) { return fmt::format("{:.1f} s", x.wall_seconds); });
  row("CPU time", [](const outcome& x) { return fmt::format("{:.1f} s", x.cpu_seconds); });
  return s;
}

boost::json::object to_json(const report& r) {
  namespace json = boost::json;
  auto& o = r.opts;
  json::array runs;
  for (auto& x : r.runs) {
    auto& q = x.requests;
    runs.push_back(json::object{
        {"name", x.name},
        {"requests", json::object{{"engine", q.engine},
                                  {"station", q.station},
                                  {"other_station", q.other_station},
                                  {"home", q.home},
                                  {"refused", q.refused},
                                  {"total", q.total()}}},
        {"hit_ratio", json::object{{"engine", ratio(q.engine, q.total())},
                                   {"station", ratio(q.station, q.total())},
                                   {"other_station", ratio(q.other_station, q.total())},
                                   {"home", ratio(q.home, q.total())}}},
        {"copies_between_stations", x.copies_between_stations},
        {"bytes_between_stations", x.bytes_between_stations},
        {"bytes_from_home", x.bytes_from_home},
        {"bytes_over_slow_uplinks", x.bytes_over_slow_uplinks},
        {"bytes_within_stations", x.bytes_within_stations},
        {"mean_copy_seconds", x.mean_copy_seconds},
        {"prefetch_copies", x.prefetch_copies},
        {"prefetch_done_seconds", x.prefetch_done_seconds},
        {"registry_requests", x.registry_requests},
        {"registry_mean_per_second", x.registry_mean_per_second},
        {"registry_peak_per_second", x.registry_peak_per_second},
        {"busiest_engine", x.busiest_engine},
        {"busiest_engine_streams", x.busiest_engine_streams},
        {"busiest_station_streams", x.busiest_station_streams},
        {"p99_station_streams", x.p99_station_streams},
        {"peak_sessions", x.peak_sessions},
        {"replicas", x.replicas},
        {"evictions", x.evictions},
        {"max_station_disk_bytes", x.max_station_disk_bytes},
        {"mean_station_disk_bytes", x.mean_station_disk_bytes},
        {"wall_seconds", x.wall_seconds},
        {"cpu_seconds", x.cpu_seconds}});
  }
  return json::object{
      {"seed", o.seed},
      {"stations", o.stations},
      {"programs", o.programs},
      {"sessions", o.sessions},
      {"engines_per_station", o.engines},
      {"segment_seconds", o.segment_seconds},
      {"segment_bytes",
       static_cast<uint64_t>(o.segment_seconds * static_cast<double>(o.bits_per_second) / 8)},
      {"runs", runs}};
}

}  // namespace vodgrid::sim
