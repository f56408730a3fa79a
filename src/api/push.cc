// JSON mapping of push streaming's wire types (api/push.h).
#include "api/push.h"

#include <cmath>
#include <limits>

#include "api/field_reader.h"

namespace vodgrid::api {

namespace json = boost::json;

bool valid_push_session(std::string_view s) {
  if (s.size() != 16) {
    return false;
  }
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

namespace {

constexpr double max_seconds = 1e7;      // program times and durations: over 115 days is refused
constexpr size_t max_streams = 100'000;  // sessions in one report

void read_session(field_reader& r, std::string& out) {
  r.string("session", out, 16);
  if (r.ok() && !valid_push_session(out)) {
    r.fail("session", "must be 16 lower-case hex digits");
  }
}

void read_scale(field_reader& r, double& scale) {
  r.number("scale", scale, -64, 64);
  if (r.ok() && scale == 0) {
    r.fail("scale", "must not be 0");
  }
}

void read(field_reader& r, push_state& v) {
  r.u32("ssrc", v.ssrc);
  r.u16("seq", v.seq);
  r.u32("rtp_base", v.rtp_base);
  read_scale(r, v.scale);
  r.i64("origin_unix_ns", v.origin_unix_ns, need::optional);
  r.number("origin_npt", v.origin_npt, 0, max_seconds);
}

void read(field_reader& r, push_position& v) {
  read_session(r, v.session);
  read(r, v.key);
  r.u64("offset", v.offset);
  r.number("npt", v.npt, 0, max_seconds);
  r.object("state", [&](field_reader& s) { read(s, v.state); });
}

void read_engine(field_reader& r, std::optional<engine_id>& out) {
  if (r.find("from", need::nullable)) {
    engine_id e;
    r.name("from", e);
    out = std::move(e);
  }
}

}  // namespace

json::value to_json(const push_state& v) {
  return json::object{{"ssrc", v.ssrc},
                      {"seq", v.seq},
                      {"rtp_base", v.rtp_base},
                      {"scale", v.scale},
                      {"origin_unix_ns", v.origin_unix_ns},
                      {"origin_npt", v.origin_npt}};
}

json::value to_json(const push_order& v) {
  json::object o{
      {"session", v.session},     {"key", key_json(v.key)},         {"npt_start", v.npt_start},
      {"duration", v.duration},   {"console_host", v.console_host}, {"rtp_port", v.rtp_port},
      {"rtcp_port", v.rtcp_port}, {"state", to_json(v.state)},      {"swap", v.swap}};
  if (v.offset) {
    o["offset"] = *v.offset;
  }
  if (v.seek) {
    o["seek"] = *v.seek;
  }
  if (v.from) {
    o["from"] = v.from->str();
  }
  return o;
}

json::value to_json(const push_position& v) {
  json::object o = key_json(v.key);
  o["session"] = v.session;
  o["offset"] = v.offset;
  o["npt"] = v.npt;
  o["state"] = to_json(v.state);
  return o;
}

json::value to_json(const push_next_request& v) {
  return json::object{
      {"engine", v.engine.str()}, {"key", key_json(v.key)}, {"scale", v.scale}, {"whole", v.whole}};
}

json::value to_json(const push_next_reply& v) {
  if (v.end) {
    return json::object{{"end", true}};
  }
  return json::object{
      {"end", false},
      {"key", key_json(v.key)},
      {"npt_start", v.npt_start},
      {"duration", v.duration},
      {"engine", json::object{{"name", v.engine.name.str()}, {"url", v.engine.url}}}};
}

json::value to_json(const push_taken& v) {
  json::object o{{"engine", v.engine.str()}, {"at", to_json(v.at)}, {"swap", v.swap}};
  if (v.from) {
    o["from"] = v.from->str();
  }
  return o;
}

json::value to_json(const push_ended& v) {
  return json::object{{"engine", v.engine.str()},
                      {"at", to_json(v.at)},
                      {"reason", v.reason},
                      {"detail", v.detail}};
}

json::value to_json(const push_report& v) {
  json::array a;
  a.reserve(v.streams.size());
  for (auto& s : v.streams) {
    a.push_back(to_json(s));
  }
  return json::object{{"engine", v.engine.str()}, {"streams", std::move(a)}};
}

json::value to_json(const push_report_reply& v) {
  json::array a;
  for (auto& s : v.stop) {
    a.push_back(json::string(s));
  }
  return json::object{{"stop", std::move(a)}};
}

template <>
result<push_order> from_json<push_order>(const json::object& o) {
  field_reader r(o, "push_order");
  push_order v;
  read_session(r, v.session);
  r.object("key", [&](field_reader& k) { read(k, v.key); });
  r.number("npt_start", v.npt_start, 0, max_seconds);
  r.number("duration", v.duration, 0, max_seconds);
  if (r.find("offset", need::nullable)) {
    uint64_t off = 0;
    r.u64("offset", off);
    v.offset = off;
  }
  if (r.find("seek", need::nullable)) {
    double s = 0;
    r.number("seek", s, 0, max_seconds);
    v.seek = s;
  }
  if (v.offset && v.seek) {
    r.fail("seek", "must not come with offset");
  }
  r.string("console_host", v.console_host, 64);
  r.u16("rtp_port", v.rtp_port);
  r.u16("rtcp_port", v.rtcp_port);
  if (r.ok() && (v.rtp_port == 0 || v.rtcp_port == 0)) {
    r.fail(v.rtp_port == 0 ? "rtp_port" : "rtcp_port", "must be 1..65535");
  }
  r.object("state", [&](field_reader& s) { read(s, v.state); });
  read_engine(r, v.from);
  r.flag("swap", v.swap);
  return r.done(std::move(v));
}

template <>
result<push_position> from_json<push_position>(const json::object& o) {
  field_reader r(o, "push_position");
  push_position v;
  read(r, v);
  return r.done(std::move(v));
}

template <>
result<push_next_request> from_json<push_next_request>(const json::object& o) {
  field_reader r(o, "push_next_request");
  push_next_request v;
  r.name("engine", v.engine);
  r.object("key", [&](field_reader& k) { read(k, v.key); });
  read_scale(r, v.scale);
  r.flag("whole", v.whole);
  return r.done(std::move(v));
}

template <>
result<push_next_reply> from_json<push_next_reply>(const json::object& o) {
  field_reader r(o, "push_next_reply");
  push_next_reply v;
  r.flag("end", v.end);
  if (!v.end) {
    r.object("key", [&](field_reader& k) { read(k, v.key); });
    r.number("npt_start", v.npt_start, 0, max_seconds);
    r.number("duration", v.duration, 0, max_seconds);
    r.object("engine", [&](field_reader& e) {
      e.name("name", v.engine.name);
      e.string("url", v.engine.url, 256);
    });
  }
  return r.done(std::move(v));
}

template <>
result<push_taken> from_json<push_taken>(const json::object& o) {
  field_reader r(o, "push_taken");
  push_taken v;
  r.name("engine", v.engine);
  r.object("at", [&](field_reader& a) { read(a, v.at); });
  read_engine(r, v.from);
  r.flag("swap", v.swap);
  return r.done(std::move(v));
}

template <>
result<push_ended> from_json<push_ended>(const json::object& o) {
  field_reader r(o, "push_ended");
  push_ended v;
  r.name("engine", v.engine);
  r.object("at", [&](field_reader& a) { read(a, v.at); });
  r.string("reason", v.reason, 16);
  if (r.ok() && v.reason != "end" && v.reason != "failed") {
    r.fail("reason", "must be \"end\" or \"failed\"");
  }
  r.string("detail", v.detail, 1024, need::optional);
  return r.done(std::move(v));
}

template <>
result<push_report> from_json<push_report>(const json::object& o) {
  field_reader r(o, "push_report");
  push_report v;
  r.name("engine", v.engine);
  r.elements("streams", max_streams, [&](field_reader& e) { read(e, v.streams.emplace_back()); });
  return r.done(std::move(v));
}

template <>
result<push_report_reply> from_json<push_report_reply>(const json::object& o) {
  field_reader r(o, "push_report_reply");
  push_report_reply v;
  r.elements("stop", max_streams,
             [&](field_reader& e) { e.string({}, v.stop.emplace_back(), 16); });
  return r.done(std::move(v));
}

}  // namespace vodgrid::api
