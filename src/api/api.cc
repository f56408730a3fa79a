// JSON mapping of the wire types. Every decoder is a list of fields read with a field_reader, which
// checks types, names, ranges and digests and names the first field at fault with its path.
#include "api/api.h"

#include <fmt/format.h>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>

#include "api/field_reader.h"
#include "base/base64url.h"

namespace vodgrid::api {

namespace json = boost::json;

namespace {

constexpr size_t max_list = 4'000'000;  // entries in one inventory or manifest
constexpr double max_double = std::numeric_limits<double>::max();

// One reader per wire type (and per part of one), each declared here so that `into` finds them.
void read(field_reader& r, segment_ref& v);
void read(field_reader& r, engine_load& v);
void read(field_reader& r, copy_result& v);
void read(field_reader& r, segment_entry& v);
void read(field_reader& r, rendition& v);
void read(field_reader& r, engine_ref& v);
void read(field_reader& r, program_manifest& v);
void read(field_reader& r, location_change& v);
void read(field_reader& r, copy_sample& v);
void read(field_reader& r, source& v);
void read(field_reader& r, station_id& v);

// Reads each entry of an array into a new element of `out`.
template <class T>
auto into(std::vector<T>& out) {
  return [&out](field_reader& e) { read(e, out.emplace_back()); };
}

}  // namespace

result<json::object> parse_object(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) {
    return make_error(errc::invalid_argument, "malformed JSON: " + ec.message());
  }
  if (!v.is_object()) {
    return make_error(errc::invalid_argument, "the body must be a JSON object");
  }
  return std::move(v.as_object());
}

double program_manifest::duration() const {
  double d = 0;
  for (auto& s : segments) {
    d += s.duration;
  }
  return d;
}

std::string to_header(const heartbeat_mark& m) {
  return fmt::format("{}/{}", m.epoch, m.seq);
}

std::optional<heartbeat_mark> parse_heartbeat_mark(std::string_view v) {
  heartbeat_mark m;
  auto slash = v.find('/');
  if (slash == std::string_view::npos) {
    return std::nullopt;
  }
  auto number = [](std::string_view d, uint64_t& out) {
    auto [end, ec] = std::from_chars(d.data(), d.data() + d.size(), out);
    return !d.empty() && ec == std::errc() && end == d.data() + d.size();
  };
  if (!number(v.substr(0, slash), m.epoch) || !number(v.substr(slash + 1), m.seq)) {
    return std::nullopt;
  }
  return m;
}

std::string_view segment_extension(segment_format f) {
  return f == segment_format::webvtt ? ".vtt" : ".ts";
}

const char* segment_content_type(segment_format f) {
  return f == segment_format::webvtt ? "text/vtt" : "video/mp2t";
}

std::string_view to_string(rendition_kind k) {
  switch (k) {
    case rendition_kind::video:
      return "video";
    case rendition_kind::audio:
      return "audio";
    case rendition_kind::subtitles:
      return "subtitles";
  }
  return "video";
}

std::optional<program_id> rendition_id(const program_id& program, std::string_view name) {
  if (name.empty() || name.size() > max_rendition_name ||
      name.find(rendition_separator) != std::string_view::npos ||
      program.str().find(rendition_separator) != std::string::npos) {
    return std::nullopt;
  }
  return program_id::parse(program.str() + std::string(rendition_separator) + std::string(name));
}

std::optional<program_id> parent_of(const program_id& id) {
  auto at = id.str().find(rendition_separator);
  if (at == std::string::npos) {
    return std::nullopt;
  }
  return program_id::parse(std::string_view(id.str()).substr(0, at));
}

bool valid_availability(std::string_view a) {
  return a == availability_inactive || a == availability_published || a == availability_withdrawn;
}

// --- Heartbeats (engine → director). ---

json::value to_json(const segment_ref& v) {
  auto o = key_json(v.key);
  o["size"] = v.size;
  o["sha256"] = to_hex(v.sha256);
  return o;
}

json::value to_json(const engine_load& v) {
  json::object o{
      {"active_streams", v.active_streams}, {"bytes_per_second", v.bytes_per_second},
      {"free_bytes", v.free_bytes},         {"total_bytes", v.total_bytes},
      {"max_streams", v.max_streams},       {"max_bytes_per_second", v.max_bytes_per_second},
      {"used_bytes", v.used_bytes},         {"max_disk_bytes", v.max_disk_bytes}};
  if (v.consoles) {
    o["consoles"] = *v.consoles;
  }
  return o;
}

json::value to_json(const heartbeat& v) {
  json::array added, removed, filling, copies;
  for (auto& a : v.added) {
    added.push_back(to_json(a));
  }
  for (auto& r : v.removed) {
    removed.push_back(key_json(r));
  }
  for (auto& f : v.filling) {
    filling.push_back(key_json(f));
  }
  for (auto& c : v.copies) {
    auto o = key_json(c.key);
    o["source"] = c.source;
    o["bytes"] = c.bytes;
    o["seconds"] = c.seconds;
    o["ok"] = c.ok;
    if (!c.ok) {
      o["error"] = c.error;
    }
    copies.push_back(std::move(o));
  }
  return json::object{{"engine", v.engine.str()}, {"url", v.url},
                      {"epoch", v.epoch},         {"seq", v.seq},
                      {"full", v.full},           {"load", to_json(v.load)},
                      {"added", added},           {"removed", removed},
                      {"filling", filling},       {"copies", copies}};
}

json::value to_json(const heartbeat_reply& v) {
  json::object o{{"resync", v.resync}};
  if (!v.ticket_keys.empty()) {
    json::array keys;
    for (auto& k : v.ticket_keys) {
      keys.emplace_back(base64url_encode(k));
    }
    o["ticket_keys"] = std::move(keys);
    o["ticket_key_in_use"] = v.ticket_key_in_use;
  }
  return o;
}

namespace {

void read(field_reader& r, segment_ref& v) {
  read(r, v.key);
  r.u64("size", v.size);
  r.digest("sha256", v.sha256);
}

void read(field_reader& r, engine_load& v) {
  r.u32("active_streams", v.active_streams);
  r.u64("bytes_per_second", v.bytes_per_second, need::optional);
  r.u64("free_bytes", v.free_bytes, need::optional);
  r.u64("total_bytes", v.total_bytes, need::optional);
  r.u32("max_streams", v.max_streams);
  r.u64("max_bytes_per_second", v.max_bytes_per_second, need::optional);
  r.u64("used_bytes", v.used_bytes, need::optional);
  r.u64("max_disk_bytes", v.max_disk_bytes, need::optional);
  if (r.find("consoles", need::optional)) {
    v.consoles.emplace();
    r.u64("consoles", *v.consoles);
  }
}

void read(field_reader& r, copy_result& v) {
  read(r, v.key);
  r.string("source", v.source, 2048);
  r.u64("bytes", v.bytes, need::optional);
  r.number("seconds", v.seconds, 0, 1e6);  // as copy_sample: no copy lasts 11 days
  r.flag("ok", v.ok);
  // Only for the log: kept whatever its type, cut rather than refused when long.
  if (auto* e = r.find("error"); e && e->is_string()) {
    v.error = e->as_string().subview(0, std::min<size_t>(e->as_string().size(), 1024));
  }
}

}  // namespace

template <>
result<heartbeat> from_json<heartbeat>(const json::object& o) {
  field_reader r(o, "heartbeat");
  heartbeat h;
  r.name("engine", h.engine);
  r.string("url", h.url, 256);
  r.u64("epoch", h.epoch);
  r.u64("seq", h.seq);
  r.flag("full", h.full);
  r.object("load", [&](field_reader& l) { read(l, h.load); });
  r.elements("added", max_list, into(h.added), need::optional);
  r.elements("removed", max_list, into(h.removed), need::optional);
  r.elements("filling", max_list, into(h.filling), need::optional);
  r.elements("copies", max_list, into(h.copies), need::optional);
  return r.done(std::move(h));
}

template <>
result<heartbeat_reply> from_json<heartbeat_reply>(const json::object& o) {
  field_reader r(o, "heartbeat_reply");
  heartbeat_reply v;
  r.flag("resync", v.resync);
  r.elements(
      "ticket_keys", max_ticket_keys,
      [&v](field_reader& e) {
        std::string text;
        e.string("", text, 2 * ticket_key_bytes);
        if (!e.ok()) {
          return;
        }
        auto bytes = base64url_decode(text);
        if (!bytes || bytes->size() != ticket_key_bytes) {
          e.fail("", fmt::format("must be {} bytes in base64url", ticket_key_bytes));
          return;
        }
        v.ticket_keys.push_back(std::move(*bytes));
      },
      need::optional);
  r.u32("ticket_key_in_use", v.ticket_key_in_use, need::optional);
  if (r.ok() && !v.ticket_keys.empty() && v.ticket_key_in_use >= v.ticket_keys.size()) {
    r.fail("ticket_key_in_use", "must name one of ticket_keys");
  }
  return r.done(std::move(v));
}

// --- Programs and their placement (loader → director). ---

json::value to_json(const segment_entry& v) {
  json::object o{{"index", v.index.v},
                 {"duration", v.duration},
                 {"size", v.size},
                 {"sha256", to_hex(v.sha256)}};
  if (!v.key_frames.empty()) {
    json::array k;
    k.reserve(v.key_frames.size());
    for (auto& f : v.key_frames) {
      k.push_back(json::object{{"offset", f.offset}, {"length", f.length}, {"seconds", f.seconds}});
    }
    o["psi_bytes"] = v.psi_bytes;
    o["key_frames"] = std::move(k);
  }
  return o;
}

json::value to_json(const rendition& v) {
  json::object o{{"name", v.name},
                 {"kind", to_string(v.kind)},
                 {"bandwidth", v.bandwidth},
                 {"average_bandwidth", v.average_bandwidth},
                 {"codecs", v.codecs}};
  if (v.kind == rendition_kind::video) {
    o["width"] = v.width;
    o["height"] = v.height;
    o["frame_rate"] = v.frame_rate;
    if (v.iframe_bandwidth > 0) {
      o["iframe_bandwidth"] = v.iframe_bandwidth;
      o["iframe_average_bandwidth"] = v.iframe_average_bandwidth;
    }
  } else {
    o["language"] = v.language;
    o["title"] = v.title;
    o["default"] = v.is_default;
  }
  return o;
}

json::value to_json(const program_manifest& v) {
  json::array segs;
  for (auto& s : v.segments) {
    segs.push_back(to_json(s));
  }
  json::object o{{"id", v.id.str()},
                 {"title", v.title},
                 {"state", v.state},
                 {"availability", v.availability},
                 {"publish_at", v.publish_at},
                 {"duration", v.duration()},
                 {"segments", segs}};
  if (v.format == segment_format::webvtt) {
    o["format"] = "webvtt";
  }
  // Only a program of several renditions has the field: every other manifest keeps its shape.
  if (!v.renditions.empty()) {
    json::array rs;
    for (auto& r : v.renditions) {
      rs.push_back(to_json(r));
    }
    o["renditions"] = std::move(rs);
  }
  return o;
}

json::value to_json(const placement& v) {
  json::array targets;
  for (auto& t : v.targets) {
    json::array engines;
    for (auto& e : t) {
      engines.push_back(json::object{{"name", e.name.str()}, {"url", e.url}});
    }
    targets.push_back(engines);
  }
  return json::object{{"targets", targets}};
}

namespace {

void read(field_reader& r, segment_entry& v) {
  r.index("index", v.index);
  r.number("duration", v.duration, 0, 3600, need::required);
  if (!(v.duration > 0)) {
    r.fail("duration", "must be in (0, 3600] seconds");
  }
  r.u64("size", v.size);
  if (v.size == 0) {
    r.fail("size", "must be positive");
  }
  r.digest("sha256", v.sha256);
  if (!r.ok()) {
    return;
  }
  r.u64("psi_bytes", v.psi_bytes, need::optional);
  // At most one key frame per TS packet; each within the segment, after the one before it.
  r.elements(
      "key_frames", static_cast<size_t>(v.size / 188),
      [&](field_reader& e) {
        key_frame f;
        e.u64("offset", f.offset);
        e.u64("length", f.length);
        e.number("seconds", f.seconds, 0, v.duration + 60, need::required);
        uint64_t floor = v.key_frames.empty()
                             ? v.psi_bytes
                             : v.key_frames.back().offset + v.key_frames.back().length;
        if (e.ok() && (f.length == 0 || f.offset < floor || f.offset > v.size ||
                       f.length > v.size - f.offset)) {
          e.fail("offset",
                 "key frames must lie within the segment, after its PAT/PMT and "
                 "each after the one before");
        }
        v.key_frames.push_back(f);
      },
      need::optional);
  if (r.ok() && v.psi_bytes > v.size) {
    r.fail("psi_bytes", "must not exceed the segment's size");
  }
}

// Text that goes into a quoted attribute of a playlist: no quote, no control character.
bool quotable(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) {
    return c == '"' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
}

void read(field_reader& r, rendition& v) {
  r.string("name", v.name, 64);
  if (r.ok() && (v.name.size() > max_rendition_name || !valid_name(v.name) ||
                 v.name.find(rendition_separator) != std::string::npos)) {
    r.fail("name", fmt::format("must be 1-{} characters of [A-Za-z0-9_-], without \"--\"",
                               max_rendition_name));
  }
  std::string kind;
  r.string("kind", kind, 16);
  if (kind == "video") {
    v.kind = rendition_kind::video;
  } else if (kind == "audio") {
    v.kind = rendition_kind::audio;
  } else if (kind == "subtitles") {
    v.kind = rendition_kind::subtitles;
  } else {
    r.fail("kind", "must be video, audio or subtitles");
  }
  r.u64("bandwidth", v.bandwidth);
  if (v.bandwidth == 0 || v.bandwidth > 1'000'000'000'000) {
    r.fail("bandwidth", "must be in [1, 10^12] bits/s");
  }
  r.u64("average_bandwidth", v.average_bandwidth, need::optional);
  if (v.average_bandwidth > 1'000'000'000'000) {
    r.fail("average_bandwidth", "must be at most 10^12 bits/s");
  }
  r.string("codecs", v.codecs, 256, need::optional);
  if (!quotable(v.codecs)) {
    r.fail("codecs", "must hold no quote or control character");
  }
  double width = v.width, height = v.height;
  r.number("width", width, 0, 16384);
  r.number("height", height, 0, 16384);
  v.width = static_cast<int>(width);
  v.height = static_cast<int>(height);
  if (v.width != width || v.height != height) {
    r.fail(v.width != width ? "width" : "height", "must be a whole number of pixels");
  }
  r.number("frame_rate", v.frame_rate, 0, 1000);
  r.u64("iframe_bandwidth", v.iframe_bandwidth, need::optional);
  r.u64("iframe_average_bandwidth", v.iframe_average_bandwidth, need::optional);
  if (v.iframe_bandwidth > 1'000'000'000'000 || v.iframe_average_bandwidth > v.iframe_bandwidth) {
    r.fail("iframe_bandwidth", "must be at most 10^12 bits/s and at least its average");
  }
  r.string("language", v.language, 35, need::optional);
  if (!std::all_of(v.language.begin(), v.language.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-';
      })) {
    r.fail("language", "must be a language tag: letters, digits and '-'");
  }
  r.string("title", v.title, 128, need::optional);
  if (!quotable(v.title)) {
    r.fail("title", "must hold no quote or control character");
  }
  r.flag("default", v.is_default);
}

void read(field_reader& r, program_manifest& v) {
  r.name("id", v.id);
  r.string("title", v.title, 512);
  r.string("state", v.state, 32, need::optional);
  r.string("availability", v.availability, 32, need::optional);
  if (!valid_availability(v.availability)) {
    r.fail("availability", "must be inactive, published or withdrawn");
  }
  r.string("publish_at", v.publish_at, 64, need::optional);
  r.elements("segments", segment_index::max, [&](field_reader& e) {
    auto& s = v.segments.emplace_back();
    read(e, s);
    if (s.index.v != v.segments.size() - 1) {
      e.fail("index", fmt::format("must be {}: segments list indices 0, 1, 2, ... in order",
                                  v.segments.size() - 1));
    }
  });
  std::string format = "mpegts";
  r.string("format", format, 16, need::optional);
  if (format == "webvtt") {
    v.format = segment_format::webvtt;
  } else if (format != "mpegts") {
    r.fail("format", "must be mpegts or webvtt");
  }
  r.elements("renditions", max_renditions, into(v.renditions), need::optional);
  if (!r.ok()) {
    return;
  }
  if (v.renditions.empty()) {
    if (v.segments.empty()) {
      r.fail("segments", "must not be empty");
    }
    return;
  }
  // A program of several renditions: the list alone, under an id that leaves room for theirs.
  if (!v.segments.empty()) {
    r.fail("segments", "must be empty: a program of several renditions has none of its own");
  } else if (!rendition_id(v.id, v.renditions.front().name)) {
    r.fail("id", "must leave room for \"--{rendition}\" and hold no \"--\" itself");
  } else if (v.renditions.front().kind != rendition_kind::video) {
    r.fail("renditions", "must start with a video rendition");
  }
  for (size_t i = 0; i < v.renditions.size() && r.ok(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (v.renditions[j].name == v.renditions[i].name) {
        r.fail("renditions", "names a rendition twice: " + v.renditions[i].name);
        break;
      }
    }
    if (!rendition_id(v.id, v.renditions[i].name)) {
      r.fail("id", "must leave room for \"--{rendition}\"");
    }
  }
}

void read(field_reader& r, engine_ref& v) {
  r.name("name", v.name);
  r.string("url", v.url, 256);
}

}  // namespace

template <>
result<program_manifest> from_json<program_manifest>(const json::object& o) {
  field_reader r(o, "program_manifest");
  program_manifest m;
  read(r, m);
  return r.done(std::move(m));
}

template <>
result<rendition> from_json<rendition>(const json::object& o) {
  field_reader r(o, "rendition");
  rendition v;
  read(r, v);
  return r.done(std::move(v));
}

template <>
result<placement> from_json<placement>(const json::object& o) {
  field_reader r(o, "placement");
  placement p;
  r.elements("targets", segment_index::max,
             [&](field_reader& t) { t.elements({}, max_list, into(p.targets.emplace_back())); });
  return r.done(std::move(p));
}

// --- Orders (director or loader → engine) and evictions (engine → director). ---

json::value to_json(const fetch_order& v) {
  json::array sources;
  for (auto& s : v.sources) {
    sources.push_back(json::string(s));
  }
  auto o = key_json(v.key);
  o["sha256"] = to_hex(v.sha256);
  o["size"] = v.size;
  o["sources"] = std::move(sources);
  o["wait"] = v.wait;
  return o;
}

json::value to_json(const preload_order& v) {
  return key_json(v.key);
}

json::value to_json(const eviction_request& v) {
  json::array segs;
  for (auto& k : v.segments) {
    segs.push_back(key_json(k));
  }
  return json::object{{"bytes", v.bytes}, {"segments", segs}};
}

template <>
result<fetch_order> from_json<fetch_order>(const json::object& o) {
  field_reader r(o, "fetch_order");
  fetch_order f;
  read(r, f.key);
  r.digest("sha256", f.sha256);
  r.u64("size", f.size, need::optional);
  auto url = [&](field_reader& at, std::string_view k) {
    auto& s = f.sources.emplace_back();
    at.string(k, s, 2048);
    if (s.empty()) {
      at.fail(k, "must be a URL, not empty");
    }
  };
  if (r.find("source")) {
    url(r, "source");
  }
  r.elements(
      "sources", 16, [&](field_reader& e) { url(e, {}); }, need::optional);
  if (f.sources.empty()) {
    r.fail("source", "is missing: a fetch order needs 'source' or 'sources'");
  }
  r.flag("wait", f.wait, true);
  return r.done(std::move(f));
}

template <>
result<eviction_request> from_json<eviction_request>(const json::object& o) {
  field_reader r(o, "eviction_request");
  eviction_request v;
  r.u64("bytes", v.bytes, need::optional);
  r.elements("segments", 100'000, into(v.segments));
  return r.done(std::move(v));
}

template <>
result<preload_order> from_json<preload_order>(const json::object& o) {
  field_reader r(o, "preload_order");
  preload_order v;
  read(r, v.key);
  return r.done(std::move(v));
}

// --- Availability (content manager → director and registry). ---

json::value to_json(const availability_change& v) {
  return json::object{{"availability", v.availability}, {"publish_at", v.publish_at}};
}

template <>
result<availability_change> from_json<availability_change>(const json::object& o) {
  field_reader r(o, "availability_change");
  availability_change c;
  r.string("availability", c.availability, 32);
  if (!valid_availability(c.availability)) {
    r.fail("availability", "must be inactive, published or withdrawn");
  }
  r.string("publish_at", c.publish_at, 64, need::optional);
  return r.done(std::move(c));
}

// --- Stations and the registry. ---

json::value to_json(const station_registration& v) {
  return json::object{{"name", v.name.str()}, {"director_url", v.director_url},
                      {"home", v.home},       {"x_km", v.x_km},
                      {"y_km", v.y_km},       {"uplink_bits_per_second", v.uplink_bits_per_second}};
}

json::value to_json(const station_report& v) {
  json::array changes, copies;
  for (auto& c : v.changes) {
    auto o = key_json(c.key);
    o["held"] = c.held;
    // Station-level changes stay in the shape registries have always read.
    if (c.engine) {
      o["engine"] = c.engine->str();
    }
    if (c.filling) {
      o["filling"] = true;
    }
    changes.push_back(std::move(o));
  }
  for (auto& c : v.copies) {
    copies.push_back(
        json::object{{"source", c.source.str()}, {"bytes", c.bytes}, {"seconds", c.seconds}});
  }
  json::object o{{"load", v.load},
                 {"sending_bits_per_second", v.sending_bits_per_second},
                 {"engines_up", v.engines_up},
                 {"changes", changes},
                 {"copies", copies}};
  if (v.seq > 0) {
    o["seq"] = v.seq;
  }
  return o;
}

json::value to_json(const distribution& v) {
  json::array targets;
  for (auto& t : v.targets) {
    targets.push_back(json::value(t));
  }
  return json::object{
      {"manifest", to_json(v.manifest)}, {"targets", targets}, {"prefetch", v.prefetch}};
}

namespace {

void read(field_reader& r, location_change& v) {
  read(r, v.key);
  r.flag("held", v.held);
  if (r.find("engine")) {
    engine_id e;
    r.name("engine", e);
    v.engine = std::move(e);
  }
  r.flag("filling", v.filling);
  if (v.filling && !v.engine) {
    r.fail("filling", "needs an 'engine': only an engine receives a segment");
  }
}

void read(field_reader& r, station_id& v) {
  r.name({}, v);
}

void read(field_reader& r, copy_sample& v) {
  r.name("source", v.source);
  r.u64("bytes", v.bytes);
  r.number("seconds", v.seconds, 0, 1e6);
}

}  // namespace

template <>
result<station_registration> from_json<station_registration>(const json::object& o) {
  field_reader r(o, "station_registration");
  station_registration v;
  r.name("name", v.name);
  r.string("director_url", v.director_url, 256);
  r.flag("home", v.home);
  r.number("x_km", v.x_km, -1e5, 1e5);
  r.number("y_km", v.y_km, -1e5, 1e5);
  r.u64("uplink_bits_per_second", v.uplink_bits_per_second, need::optional);
  return r.done(std::move(v));
}

template <>
result<station_report> from_json<station_report>(const json::object& o) {
  field_reader r(o, "station_report");
  station_report v;
  r.u64("seq", v.seq, need::optional);
  r.number("load", v.load, 0, 1e6);
  r.u64("sending_bits_per_second", v.sending_bits_per_second, need::optional);
  uint64_t engines_up = 0;
  r.u64("engines_up", engines_up, need::optional);
  v.engines_up = static_cast<uint32_t>(std::min<uint64_t>(engines_up, UINT32_MAX));
  r.elements("changes", max_list, into(v.changes), need::optional);
  r.elements("copies", 100'000, into(v.copies), need::optional);
  return r.done(std::move(v));
}

template <>
result<distribution> from_json<distribution>(const json::object& o) {
  field_reader r(o, "distribution");
  distribution d;
  r.object("manifest", [&](field_reader& m) { read(m, d.manifest); });
  std::vector<station_id> targets;
  r.elements("targets", 10'000, into(targets), need::optional);
  for (auto& t : targets) {
    d.targets.push_back(t.str());
  }
  uint64_t prefetch = d.prefetch;
  r.u64("prefetch", prefetch, need::optional);
  if (prefetch > segment_index::max) {
    r.fail("prefetch", "is out of range");
  } else {
    d.prefetch = static_cast<uint32_t>(prefetch);
  }
  return r.done(std::move(d));
}

// --- Where a segment can be copied from (registry → director), and from which engine. ---

json::value to_json(const source& v) {
  auto& c = v.inputs;
  return json::object{
      {"station", v.station.str()},
      {"director_url", v.director_url},
      {"cost", v.cost},
      {"inputs", json::object{{"available_bits_per_second", c.available_bits_per_second},
                              {"distance_km", c.distance_km},
                              {"transfer_seconds", c.transfer_seconds},
                              {"latency_seconds", c.latency_seconds},
                              {"load_factor", c.load_factor},
                              {"home_penalty_seconds", c.home_penalty_seconds}}}};
}

json::value to_json(const source_list& v) {
  json::array sources;
  for (auto& s : v.sources) {
    sources.push_back(to_json(s));
  }
  auto o = key_json(v.key);
  o["sources"] = std::move(sources);
  return o;
}

json::value to_json(const holder_reply& v) {
  return json::object{{"engine", v.engine.str()}, {"url", v.url}};
}

namespace {

void read(field_reader& r, source& v) {
  r.name("station", v.station);
  r.string("director_url", v.director_url, 256);
  r.number("cost", v.cost, 0, 1e12);
  r.object(
      "inputs",
      [&](field_reader& i) {
        auto& c = v.inputs;
        i.number("available_bits_per_second", c.available_bits_per_second, 0, max_double);
        i.number("distance_km", c.distance_km, 0, max_double);
        i.number("transfer_seconds", c.transfer_seconds, 0, max_double);
        i.number("latency_seconds", c.latency_seconds, 0, max_double);
        i.number("load_factor", c.load_factor, 0, max_double);
        i.number("home_penalty_seconds", c.home_penalty_seconds, 0, max_double);
      },
      need::optional);
}

}  // namespace

template <>
result<source_list> from_json<source_list>(const json::object& o) {
  field_reader r(o, "source_list");
  source_list v;
  read(r, v.key);
  r.elements("sources", 10'000, into(v.sources));
  return r.done(std::move(v));
}

template <>
result<std::vector<source>> from_json<std::vector<source>>(const json::object& o) {
  field_reader r(o, "source_list");
  std::vector<source> v;
  r.elements("sources", 10'000, into(v));
  return r.done(std::move(v));
}

template <>
result<holder_reply> from_json<holder_reply>(const json::object& o) {
  field_reader r(o, "holder_reply");
  holder_reply v;
  r.name("engine", v.engine);
  r.string("url", v.url, 4096);
  return r.done(std::move(v));
}

// --- Ingest (operator → content manager). ---

json::value to_json(const ingest_request& v) {
  json::array stations;
  for (auto& s : v.stations) {
    stations.push_back(json::value(s.str()));
  }
  return json::object{{"id", v.id.str()},
                      {"title", v.title},
                      {"source", v.source},
                      {"publish_at", v.publish_at ? format_rfc3339(*v.publish_at) : "now"},
                      {"stations", stations},
                      {"prefetch", v.prefetch},
                      {"target_seconds", v.target_seconds},
                      {"renditions", v.renditions}};
}

template <>
result<ingest_request> from_json<ingest_request>(const json::object& o) {
  field_reader r(o, "ingest_request");
  ingest_request v;
  r.name("id", v.id);
  r.string("title", v.title, 512);
  if (v.title.empty()) {
    r.fail("title", "must not be empty");
  }
  r.string("source", v.source, 4096);
  if (v.source.empty() || v.source.find('\0') != std::string::npos) {
    r.fail("source", "must name a file, a folder with one playlist, or an http(s) URL");
  }
  if (auto* at = r.find("publish_at", need::nullable)) {
    if (!at->is_string()) {
      r.fail("publish_at", "must be \"now\" or an RFC 3339 time");
    } else if (at->as_string() != "now") {
      // Within the years parse_rfc3339 reads, so that what decodes encodes (an offset can carry
      // 1970-01-01T00:30:00+01:00 into 1969).
      using namespace std::chrono;
      auto t = parse_rfc3339(at->as_string());
      if (!t) {
        r.fail("publish_at", t.err().detail);
      } else if (*t < sys_days{year{1970} / 1 / 1} || *t >= sys_days{year{2262} / 1 / 1}) {
        r.fail("publish_at", "must be within the years 1970..2261 (UTC)");
      } else {
        v.publish_at = *t;
      }
    }
  }
  r.elements("stations", 1000, into(v.stations), need::nullable);
  uint64_t prefetch = v.prefetch;
  r.u64("prefetch", prefetch, need::nullable);
  v.prefetch = static_cast<uint32_t>(std::min<uint64_t>(prefetch, segment_index::max));
  r.number("target_seconds", v.target_seconds, 0.5, 60, need::nullable);
  r.string("renditions", v.renditions, 256, need::nullable);
  if (!std::all_of(v.renditions.begin(), v.renditions.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == ',';
      })) {
    r.fail("renditions", "must be \"auto\" or a list such as \"720p,360p\"");
  }
  return r.done(std::move(v));
}

}  // namespace vodgrid::api
