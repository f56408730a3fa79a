// The operator's dashboard (GET /dashboard, GET /v1/dashboard/state): what the registry learns by
// polling each station's director (GET /v1/engines), its engines (GET /healthz) and its supervisor
// (GET /healthz), and the events it sees between two polls. The parsing and the comparisons here
// are pure; the polling and the state's assembly are in dashboard.cc.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json/object.hpp>

#include "base/result.h"

namespace vodgrid::registry {

// One engine as its director sees it (GET /v1/engines: heartbeats).
struct engine_view {
  std::string name;
  bool in_rotation = false;  // the director counts it up
  uint32_t streams = 0;
  uint64_t bytes_per_second = 0;  // sent, as its last heartbeat says
  uint64_t free_bytes = 0;
  uint64_t total_bytes = 0;
  uint64_t used_bytes = 0;
  uint64_t segments = 0;  // held whole
  uint64_t filling = 0;   // arriving
};

struct hot_segment {
  std::string segment;  // "program/index"
  double requests = 0;  // decayed over about a minute (director/hot.h)
};

// What one poll of a director said.
struct director_view {
  std::vector<engine_view> engines;
  std::vector<hot_segment> hot;
  uint64_t under_replicated = 0;
};

// The director's GET /v1/engines reply; errc::protocol_error when it is not one.
result<director_view> parse_director_engines(std::string_view body);
// Restarts per blade in a station supervisor's GET /healthz; errc::protocol_error when not one.
result<std::map<std::string, uint64_t>> parse_supervisor_restarts(std::string_view body);

// The segment bytes an engine has served (vodgrid_engine_served_bytes_total, every `via` summed) in
// its /metrics; nullopt when the text has none (an engine from before the metric).
std::optional<uint64_t> parse_served_bytes(std::string_view metrics_text);

// One thing the dashboard saw change.
struct dashboard_event {
  int64_t at_ms = 0;  // Unix time
  std::string kind;   // engine_down, engine_up, director_unreachable, director_reachable, restart
  std::string station;
  std::string subject;  // the engine or blade; the station for its director
  std::string detail;
  boost::json::object to_json() const;
};

// The last `capacity` events, oldest first.
class event_log {
 public:
  explicit event_log(size_t capacity = 50) : capacity_(capacity) {}
  void add(dashboard_event e);
  const std::deque<dashboard_event>& events() const { return events_; }

 private:
  size_t capacity_;
  std::deque<dashboard_event> events_;
};

// An engine's status on the dashboard: up when its director counts it up and it answers its own
// /healthz (whichever of the two is known, when one is not); unknown when neither is known.
enum class engine_status { unknown, up, down };
engine_status status_of(std::optional<bool> in_rotation, std::optional<bool> answers);
std::string_view to_string(engine_status s);

// Bytes per second of a growing total (the copies between two stations), over a window of recent
// samples.
class rate_meter {
 public:
  using clock = std::chrono::steady_clock;
  explicit rate_meter(std::chrono::seconds window = std::chrono::seconds(5)) : window_(window) {}
  // A total below the last one (the counter's process restarted) starts the samples afresh.
  void sample(clock::time_point now, uint64_t total);
  double per_second() const;

 private:
  std::chrono::seconds window_;
  std::deque<std::pair<clock::time_point, uint64_t>> samples_;
};

// What the probes of one engine's /metrics said.
struct engine_probe {
  bool in_flight = false;
  std::optional<bool> answers;  // its /metrics answered the last probe
  bool counts_bytes = false;    // its /metrics has the segment bytes it served
  rate_meter served{std::chrono::seconds(3)};
};

}  // namespace vodgrid::registry
