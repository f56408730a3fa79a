// The play's report: merged across threads, as text for people and as one JSON object for scripts.
#include <fmt/format.h>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <algorithm>

#include "console/player.h"

namespace vodgrid::console {

namespace json = boost::json;

namespace {

json::object tally_json(const std::map<std::string, uint64_t>& m) {
  json::object o;
  for (auto& [k, n] : m) {
    o[k] = n;
  }
  return o;
}

std::string tally_text(const std::map<std::string, uint64_t>& m) {
  std::string out;
  for (auto& [k, n] : m) {
    out += fmt::format(" {}={}", k, n);
  }
  return out;
}

std::string seconds_text(const char* name, const quantiles& q) {
  return fmt::format("{} p50 {:.3f}  p95 {:.3f}  p99 {:.3f}  max {:.3f} s ({})", name, q.at(0.5),
                     q.at(0.95), q.at(0.99), q.max(), q.count());
}

std::string share(double v) {
  return v < 0 ? "unknown" : fmt::format("{:.0f} %", v * 100);
}

}  // namespace

json::value viewer_record::to_json() const {
  return json::object{{"viewer", viewer},
                      {"program", program},
                      {"arrival", arrival},
                      {"watch_seconds", watch_seconds},
                      {"seeks", seeks},
                      {"pauses", pauses},
                      {"startup", startup},
                      {"stalls", stalls},
                      {"stalled_seconds", stalled_seconds}};
}

json::value saturation::to_json() const {
  json::object eng;
  for (auto& [e, c] : engine_cpu) {
    eng[e] = c;
  }
  return json::object{{"console_cpu", console_cpu},
                      {"machine_cpu", machine_cpu},
                      {"engine_cpu", eng},
                      {"director_cpu", director_cpu},
                      {"verdict", verdict}};
}

std::string play_report::to_text() const {
  std::string out = fmt::format(
      "viewers {}  segments {}  failed {}  bytes {}  retries {}  stalls {} (longest {:.2f} s)  "
      "digest mismatches {}  wall {:.2f} s  media {:.2f} s per viewer\n",
      viewers, segments, segments_failed, bytes, retries, stalls, longest_stall, digest_mismatches,
      seconds, media_seconds);
  if (!renditions.empty()) {
    out += "renditions:";
    for (auto& r : renditions) {
      out += " " + r;
    }
    out += "\n";
  }
  if (startup.count() > 0) {
    out += seconds_text("startup", startup) + "\n";
    out += seconds_text("stalled", stall_seconds) +
           fmt::format(": {} viewers stalled, {:.1f} s in all\n", viewers_stalled, stalled_seconds);
  }
  if (ttfb.count() > 0) {
    out += seconds_text("ttfb", ttfb) + " per segment\n";
  }
  out += fmt::format("rate achieved {:.1f} MB/s", achieved_rate() / 1e6);
  out += needed_bytes > 0 ? fmt::format(", needed {:.1f} MB/s\n", needed_rate() / 1e6) : "\n";
  if (!programs.empty()) {
    out += fmt::format("programs (viewers):{}  seeks {}  pauses {}\n", tally_text(programs), seeks,
                       pauses);
  }
  out += "engines:" + tally_text(engines) + "\n";
  if (!stations.empty()) {
    out += "stations:" + tally_text(stations) + "\n";
  }
  if (!limits.verdict.empty()) {
    out += fmt::format("cpu: console {} of its threads, machine {}", share(limits.console_cpu),
                       share(limits.machine_cpu));
    for (auto& [e, c] : limits.engine_cpu) {
      out += fmt::format(", {} {:.0f} % of a core", e, c * 100);
    }
    if (limits.director_cpu >= 0) {
      out += fmt::format(", director {:.0f} % of a core", limits.director_cpu * 100);
    }
    out += "\nsaturated: " + limits.verdict + "\n";
  }
  for (auto& e : errors) {
    out += "error: " + e + "\n";
  }
  out += ok() ? "result: ok\n" : "result: FAILED\n";
  return out;
}

json::value play_report::to_json() const {
  json::array errs, rends, records;
  for (auto& e : errors) {
    errs.push_back(json::value(e));
  }
  for (auto& r : renditions) {
    rends.push_back(json::value(r));
  }
  for (auto& r : viewer_records) {
    records.push_back(r.to_json());
  }
  return json::object{
      {"viewers", viewers},
      {"segments", segments},
      {"segments_failed", segments_failed},
      {"bytes", bytes},
      {"retries", retries},
      {"stalls", stalls},
      {"longest_stall", longest_stall},
      {"stalled_seconds", stalled_seconds},
      {"viewers_stalled", viewers_stalled},
      {"digest_mismatches", digest_mismatches},
      {"seconds", seconds},
      {"media_seconds", media_seconds},
      {"startup", startup.to_json()},
      {"ttfb", ttfb.to_json()},
      {"stall_seconds", stall_seconds.to_json()},
      {"bytes_per_second", json::object{{"achieved", achieved_rate()}, {"needed", needed_rate()}}},
      {"engines", tally_json(engines)},
      {"stations", tally_json(stations)},
      {"programs", tally_json(programs)},
      {"seeks", seeks},
      {"pauses", pauses},
      {"saturation", limits.to_json()},
      {"viewer_records", records},
      {"renditions", rends},
      {"errors", errs},
      {"ok", ok()}};
}

void play_report::merge(const play_report& other) {
  viewers += other.viewers;
  segments += other.segments;
  segments_failed += other.segments_failed;
  bytes += other.bytes;
  retries += other.retries;
  stalls += other.stalls;
  longest_stall = std::max(longest_stall, other.longest_stall);
  digest_mismatches += other.digest_mismatches;
  seconds = std::max(seconds, other.seconds);
  media_seconds = std::max(media_seconds, other.media_seconds);
  auto add = [](std::map<std::string, uint64_t>& mine,
                const std::map<std::string, uint64_t>& theirs) {
    for (auto& [k, n] : theirs) {
      mine[k] += n;
    }
  };
  add(engines, other.engines);
  add(stations, other.stations);
  add(programs, other.programs);
  stalled_seconds += other.stalled_seconds;
  viewers_stalled += other.viewers_stalled;
  seeks += other.seeks;
  pauses += other.pauses;
  startup.merge(other.startup);
  ttfb.merge(other.ttfb);
  stall_seconds.merge(other.stall_seconds);
  needed_bytes += other.needed_bytes;
  viewer_records.insert(viewer_records.end(), other.viewer_records.begin(),
                        other.viewer_records.end());
  std::sort(viewer_records.begin(), viewer_records.end(),
            [](auto& a, auto& b) { return a.viewer < b.viewer; });
  for (auto& r : other.renditions) {
    if (std::find(renditions.begin(), renditions.end(), r) == renditions.end()) {
      renditions.push_back(r);
    }
  }
  for (auto& e : other.errors) {
    if (errors.size() < max_errors) {
      errors.push_back(e);
    }
  }
}

}  // namespace vodgrid::console
