// The dashboard's pure parts (dashboard.h): the directors' and supervisors' replies read, events
// kept, engine status, rates.
#include <boost/json/parse.hpp>

#include "registry/dashboard.h"

#include <exception>
#include <string>

namespace vodgrid::registry {

namespace json = boost::json;

namespace {

uint64_t count_of(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (!v || !v->is_number()) {
    return 0;
  }
  double d = v->to_number<double>();
  return d > 0 ? static_cast<uint64_t>(d) : 0;
}

result<json::object> parse_object(std::string_view body, std::string_view what) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec || !v.is_object()) {
    return make_error(errc::protocol_error, std::string(what) + " is not a JSON object");
  }
  return std::move(v.as_object());
}

}  // namespace

result<director_view> parse_director_engines(std::string_view body) {
  auto o = parse_object(body, "the director's engine list");
  if (!o) {
    return o.err();
  }
  auto* engines = o->if_contains("engines");
  if (!engines || !engines->is_array()) {
    return make_error(errc::protocol_error, "the director's engine list has no \"engines\"");
  }
  director_view v;
  for (auto& e : engines->as_array()) {
    auto* eo = e.if_object();
    auto* name = eo ? eo->if_contains("name") : nullptr;
    if (!name || !name->is_string()) {
      return make_error(errc::protocol_error, "an engine without a name in the director's list");
    }
    engine_view ev;
    ev.name = name->as_string();
    auto* up = eo->if_contains("up");
    ev.in_rotation = up && up->is_bool() && up->as_bool();
    ev.segments = count_of(*eo, "segments");
    ev.filling = count_of(*eo, "filling");
    if (auto* load = eo->if_contains("load"); load && load->is_object()) {
      auto& l = load->as_object();
      ev.streams = static_cast<uint32_t>(count_of(l, "active_streams"));
      ev.bytes_per_second = count_of(l, "bytes_per_second");
      ev.free_bytes = count_of(l, "free_bytes");
      ev.total_bytes = count_of(l, "total_bytes");
      ev.used_bytes = count_of(l, "used_bytes");
    }
    v.engines.push_back(std::move(ev));
  }
  // A director from before the hottest segments were counted has no "hot": none then.
  if (auto* hot = o->if_contains("hot"); hot && hot->is_array()) {
    for (auto& h : hot->as_array()) {
      auto* ho = h.if_object();
      auto* seg = ho ? ho->if_contains("segment") : nullptr;
      auto* n = ho ? ho->if_contains("requests") : nullptr;
      if (seg && seg->is_string() && n && n->is_number()) {
        v.hot.push_back({std::string(seg->as_string()), n->to_number<double>()});
      }
    }
  }
  v.under_replicated = count_of(*o, "under_replicated");
  return v;
}

result<std::map<std::string, uint64_t>> parse_supervisor_restarts(std::string_view body) {
  auto o = parse_object(body, "the supervisor's /healthz");
  if (!o) {
    return o.err();
  }
  auto* blades = o->if_contains("blades");
  if (!blades || !blades->is_array()) {
    return make_error(errc::protocol_error, "the supervisor's /healthz has no \"blades\"");
  }
  std::map<std::string, uint64_t> out;
  for (auto& b : blades->as_array()) {
    auto* bo = b.if_object();
    auto* name = bo ? bo->if_contains("name") : nullptr;
    if (name && name->is_string()) {
      out[std::string(name->as_string())] = count_of(*bo, "restarts");
    }
  }
  return out;
}

std::optional<uint64_t> parse_served_bytes(std::string_view text) {
  constexpr std::string_view name = "vodgrid_engine_served_bytes_total";
  std::optional<uint64_t> sum;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    auto line = text.substr(at, end == std::string_view::npos ? text.size() - at : end - at);
    at = end == std::string_view::npos ? text.size() : end + 1;
    if (!line.starts_with(name) || line.size() == name.size() ||
        (line[name.size()] != '{' && line[name.size()] != ' ')) {
      continue;
    }
    auto space = line.rfind(' ');
    double v = 0;
    try {
      v = std::stod(std::string(line.substr(space + 1)));
    } catch (const std::exception&) {
      continue;  // not a sample line
    }
    sum = sum.value_or(0) + (v > 0 ? static_cast<uint64_t>(v) : 0);
  }
  return sum;
}

json::object dashboard_event::to_json() const {
  return json::object{{"at_ms", at_ms},
                      {"kind", kind},
                      {"station", station},
                      {"subject", subject},
                      {"detail", detail}};
}

void event_log::add(dashboard_event e) {
  events_.push_back(std::move(e));
  while (events_.size() > capacity_) {
    events_.pop_front();
  }
}

engine_status status_of(std::optional<bool> in_rotation, std::optional<bool> answers) {
  if (!in_rotation && !answers) {
    return engine_status::unknown;
  }
  bool up = in_rotation.value_or(true) && answers.value_or(true);
  return up ? engine_status::up : engine_status::down;
}

std::string_view to_string(engine_status s) {
  switch (s) {
    case engine_status::up:
      return "up";
    case engine_status::down:
      return "down";
    case engine_status::unknown:
      break;
  }
  return "unknown";
}

void rate_meter::sample(clock::time_point now, uint64_t total) {
  if (!samples_.empty() && total < samples_.back().second) {
    samples_.clear();
  }
  samples_.emplace_back(now, total);
  // Keep one sample at least the window old, so that the rate spans the whole window.
  while (samples_.size() > 2 && now - samples_[1].first >= window_) {
    samples_.pop_front();
  }
}

double rate_meter::per_second() const {
  if (samples_.size() < 2) {
    return 0;
  }
  auto& [t0, b0] = samples_.front();
  auto& [t1, b1] = samples_.back();
  double dt = std::chrono::duration<double>(t1 - t0).count();
  return dt > 0 && b1 >= b0 ? static_cast<double>(b1 - b0) / dt : 0;
}

}  // namespace vodgrid::registry
