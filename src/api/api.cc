// JSON mapping of the wire types. Every decoder checks types, names, ranges and digests.
#include "api/api.h"

#include <fmt/format.h>
#include <boost/json/parse.hpp>

#include <cmath>

namespace vodgrid::api {

namespace json = boost::json;

namespace {

error bad(std::string_view field, std::string_view what) {
  return make_error(errc::invalid_argument, fmt::format("'{}' {}", field, what));
}

result<std::string> get_string(const json::object& o, std::string_view k, size_t max = 4096) {
  auto* v = o.if_contains(k);
  if (!v || !v->is_string()) {
    return bad(k, "must be a string");
  }
  if (v->as_string().size() > max) {
    return bad(k, fmt::format("is longer than {} characters", max));
  }
  return std::string(v->as_string());
}

result<uint64_t> get_u64(const json::object& o, std::string_view k, bool required = true) {
  auto* v = o.if_contains(k);
  if (!v) {
    if (required) {
      return bad(k, "is missing");
    }
    return uint64_t{0};
  }
  if (v->is_uint64()) {
    return v->as_uint64();
  }
  if (v->is_int64() && v->as_int64() >= 0) {
    return static_cast<uint64_t>(v->as_int64());
  }
  return bad(k, "must be a non-negative integer");
}

result<bool> get_bool(const json::object& o, std::string_view k) {
  auto* v = o.if_contains(k);
  if (!v) {
    return false;
  }
  if (!v->is_bool()) {
    return bad(k, "must be true or false");
  }
  return v->as_bool();
}

template <class T>
result<T> get_name(const json::object& o, std::string_view k) {
  auto s = get_string(o, k, 64);
  if (!s) {
    return s.err();
  }
  auto n = T::parse(*s);
  if (!n) {
    return bad(k, "must be 1-64 characters of [A-Za-z0-9_-]");
  }
  return *n;
}

result<segment_index> get_index(const json::object& o, std::string_view k) {
  auto v = get_u64(o, k);
  if (!v) {
    return v.err();
  }
  if (*v >= segment_index::max) {
    return bad(k, "is out of range");
  }
  return segment_index{static_cast<uint32_t>(*v)};
}

result<sha256_digest> get_digest(const json::object& o, std::string_view k) {
  auto s = get_string(o, k, 64);
  if (!s) {
    return s.err();
  }
  auto d = parse_sha256_hex(*s);
  if (!d) {
    return bad(k, "must be 64 hex digits");
  }
  return *d;
}

result<const json::array*> get_array(const json::object& o, std::string_view k, size_t max,
                                     bool required = true) {
  static const json::array empty;
  auto* v = o.if_contains(k);
  if (!v) {
    if (required) {
      return bad(k, "is missing");
    }
    return &empty;
  }
  if (!v->is_array()) {
    return bad(k, "must be an array");
  }
  if (v->as_array().size() > max) {
    return bad(k, fmt::format("has more than {} entries", max));
  }
  return &v->as_array();
}

result<segment_key> get_key(const json::object& o) {
  auto p = get_name<program_id>(o, "program");
  if (!p) {
    return p.err();
  }
  auto i = get_index(o, "index");
  if (!i) {
    return i.err();
  }
  return segment_key{*p, *i};
}

constexpr size_t max_list = 4'000'000;  // entries in one inventory or manifest

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

template <class T>
result<T> decode(std::string_view body) {
  auto o = parse_object(body);
  if (!o) {
    return o.err();
  }
  return from_json<T>(*o);
}
template result<heartbeat> decode<heartbeat>(std::string_view);
template result<heartbeat_reply> decode<heartbeat_reply>(std::string_view);
template result<program_manifest> decode<program_manifest>(std::string_view);
template result<placement> decode<placement>(std::string_view);
template result<fetch_order> decode<fetch_order>(std::string_view);
template result<preload_order> decode<preload_order>(std::string_view);
template result<eviction_request> decode<eviction_request>(std::string_view);
template result<station_registration> decode<station_registration>(std::string_view);
template result<station_report> decode<station_report>(std::string_view);
template result<distribution> decode<distribution>(std::string_view);
template result<availability_change> decode<availability_change>(std::string_view);
template result<std::vector<source>> decode<std::vector<source>>(std::string_view);

double program_manifest::duration() const {
  double d = 0;
  for (auto& s : segments) {
    d += s.duration;
  }
  return d;
}

json::value to_json(const segment_ref& v) {
  return json::object{{"program", v.key.program.str()},
                      {"index", v.key.index.v},
                      {"size", v.size},
                      {"sha256", to_hex(v.sha256)}};
}

json::value to_json(const engine_load& v) {
  return json::object{
      {"active_streams", v.active_streams}, {"bytes_per_second", v.bytes_per_second},
      {"free_bytes", v.free_bytes},         {"total_bytes", v.total_bytes},
      {"max_streams", v.max_streams},       {"max_bytes_per_second", v.max_bytes_per_second},
      {"used_bytes", v.used_bytes},         {"max_disk_bytes", v.max_disk_bytes}};
}

namespace {

json::object key_json(const segment_key& k) {
  return json::object{{"program", k.program.str()}, {"index", k.index.v}};
}

}  // namespace

json::value to_json(const heartbeat& v) {
  json::array added, removed;
  for (auto& a : v.added) {
    added.push_back(to_json(a));
  }
  for (auto& r : v.removed) {
    removed.push_back(key_json(r));
  }
  json::array filling, copies;
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
  return json::object{{"resync", v.resync}};
}

json::value to_json(const segment_entry& v) {
  return json::object{{"index", v.index.v},
                      {"duration", v.duration},
                      {"size", v.size},
                      {"sha256", to_hex(v.sha256)}};
}

json::value to_json(const program_manifest& v) {
  json::array segs;
  for (auto& s : v.segments) {
    segs.push_back(to_json(s));
  }
  return json::object{{"id", v.id.str()},
                      {"title", v.title},
                      {"state", v.state},
                      {"availability", v.availability},
                      {"publish_at", v.publish_at},
                      {"duration", v.duration()},
                      {"segments", segs}};
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

json::value to_json(const fetch_order& v) {
  json::array sources;
  for (auto& s : v.sources) {
    sources.push_back(json::string(s));
  }
  return json::object{{"program", v.key.program.str()},
                      {"index", v.key.index.v},
                      {"sha256", to_hex(v.sha256)},
                      {"size", v.size},
                      {"sources", sources},
                      {"wait", v.wait}};
}

json::value to_json(const preload_order& v) {
  return json::object{{"program", v.key.program.str()}, {"index", v.key.index.v}};
}

template <>
result<heartbeat> from_json<heartbeat>(const json::object& o) {
  heartbeat h;
  auto e = get_name<engine_id>(o, "engine");
  if (!e) {
    return e.err();
  }
  h.engine = *e;
  auto url = get_string(o, "url", 256);
  if (!url) {
    return url.err();
  }
  h.url = *url;
  auto epoch = get_u64(o, "epoch");
  if (!epoch) {
    return epoch.err();
  }
  h.epoch = *epoch;
  auto seq = get_u64(o, "seq");
  if (!seq) {
    return seq.err();
  }
  h.seq = *seq;
  auto full = get_bool(o, "full");
  if (!full) {
    return full.err();
  }
  h.full = *full;
  auto* lv = o.if_contains("load");
  if (!lv || !lv->is_object()) {
    return bad("load", "must be an object");
  }
  auto& lo = lv->as_object();
  auto as = get_u64(lo, "active_streams");
  if (!as) {
    return as.err();
  }
  auto bps = get_u64(lo, "bytes_per_second", false);
  if (!bps) {
    return bps.err();
  }
  auto fb = get_u64(lo, "free_bytes", false);
  if (!fb) {
    return fb.err();
  }
  auto tb = get_u64(lo, "total_bytes", false);
  if (!tb) {
    return tb.err();
  }
  auto ms = get_u64(lo, "max_streams");
  if (!ms) {
    return ms.err();
  }
  auto mb = get_u64(lo, "max_bytes_per_second", false);
  if (!mb) {
    return mb.err();
  }
  auto ub = get_u64(lo, "used_bytes", false);
  if (!ub) {
    return ub.err();
  }
  auto md = get_u64(lo, "max_disk_bytes", false);
  if (!md) {
    return md.err();
  }
  if (*as > UINT32_MAX || *ms > UINT32_MAX) {
    return bad("load", "has an out-of-range stream count");
  }
  h.load = {static_cast<uint32_t>(*as), *bps, *fb, *tb, static_cast<uint32_t>(*ms), *mb, *ub, *md};
  auto added = get_array(o, "added", max_list, false);
  if (!added) {
    return added.err();
  }
  for (auto& a : **added) {
    if (!a.is_object()) {
      return bad("added", "entries must be objects");
    }
    auto k = get_key(a.as_object());
    if (!k) {
      return k.err();
    }
    auto size = get_u64(a.as_object(), "size");
    if (!size) {
      return size.err();
    }
    auto d = get_digest(a.as_object(), "sha256");
    if (!d) {
      return d.err();
    }
    h.added.push_back({*k, *size, *d});
  }
  auto removed = get_array(o, "removed", max_list, false);
  if (!removed) {
    return removed.err();
  }
  for (auto& r : **removed) {
    if (!r.is_object()) {
      return bad("removed", "entries must be objects");
    }
    auto k = get_key(r.as_object());
    if (!k) {
      return k.err();
    }
    h.removed.push_back(*k);
  }
  auto filling = get_array(o, "filling", max_list, false);
  if (!filling) {
    return filling.err();
  }
  for (auto& f : **filling) {
    auto k = f.is_object() ? get_key(f.as_object())
                           : result<segment_key>(bad("filling", "entries must be objects"));
    if (!k) {
      return k.err();
    }
    h.filling.push_back(*k);
  }
  auto copies = get_array(o, "copies", max_list, false);
  if (!copies) {
    return copies.err();
  }
  for (auto& c : **copies) {
    if (!c.is_object()) {
      return bad("copies", "entries must be objects");
    }
    auto& co = c.as_object();
    copy_result r;
    auto k = get_key(co);
    if (!k) {
      return k.err();
    }
    r.key = *k;
    auto src = get_string(co, "source", 2048);
    if (!src) {
      return src.err();
    }
    r.source = *src;
    auto bytes = get_u64(co, "bytes", false);
    if (!bytes) {
      return bytes.err();
    }
    r.bytes = *bytes;
    auto* secs = co.if_contains("seconds");
    if (secs && secs->is_number()) {
      r.seconds = secs->to_number<double>();
    }
    if (!std::isfinite(r.seconds) || r.seconds < 0) {
      return bad("seconds", "must be a non-negative number");
    }
    auto ok = get_bool(co, "ok");
    if (!ok) {
      return ok.err();
    }
    r.ok = *ok;
    if (auto* e = co.if_contains("error"); e && e->is_string()) {
      r.error =
          std::string(e->as_string().subview(0, std::min<size_t>(e->as_string().size(), 1024)));
    }
    h.copies.push_back(std::move(r));
  }
  return h;
}

template <>
result<heartbeat_reply> from_json<heartbeat_reply>(const json::object& o) {
  auto r = get_bool(o, "resync");
  if (!r) {
    return r.err();
  }
  return heartbeat_reply{*r};
}

template <>
result<program_manifest> from_json<program_manifest>(const json::object& o) {
  program_manifest m;
  auto id = get_name<program_id>(o, "id");
  if (!id) {
    return id.err();
  }
  m.id = *id;
  auto title = get_string(o, "title", 512);
  if (!title) {
    return title.err();
  }
  m.title = *title;
  if (o.contains("state")) {
    auto st = get_string(o, "state", 32);
    if (!st) {
      return st.err();
    }
    m.state = *st;
  }
  if (o.contains("availability")) {
    auto av = get_string(o, "availability", 32);
    if (!av) {
      return av.err();
    }
    if (!valid_availability(*av)) {
      return bad("availability", "must be inactive, published or withdrawn");
    }
    m.availability = *av;
  }
  if (o.contains("publish_at")) {
    auto pa = get_string(o, "publish_at", 64);
    if (!pa) {
      return pa.err();
    }
    m.publish_at = *pa;
  }
  auto segs = get_array(o, "segments", segment_index::max);
  if (!segs) {
    return segs.err();
  }
  if ((*segs)->empty()) {
    return bad("segments", "must not be empty");
  }
  uint32_t expect = 0;
  for (auto& sv : **segs) {
    if (!sv.is_object()) {
      return bad("segments", "entries must be objects");
    }
    auto& so = sv.as_object();
    segment_entry e;
    auto idx = get_index(so, "index");
    if (!idx) {
      return idx.err();
    }
    if (idx->v != expect++) {
      return bad("segments", "must list indices 0, 1, 2, ... in order");
    }
    e.index = *idx;
    auto* dv = so.if_contains("duration");
    if (!dv || !(dv->is_double() || dv->is_int64() || dv->is_uint64())) {
      return bad("duration", "must be a number");
    }
    e.duration = dv->to_number<double>();
    if (!(e.duration > 0) || e.duration > 3600 || std::isnan(e.duration)) {
      return bad("duration", "must be in (0, 3600] seconds");
    }
    auto size = get_u64(so, "size");
    if (!size) {
      return size.err();
    }
    if (*size == 0) {
      return bad("size", "must be positive");
    }
    e.size = *size;
    auto d = get_digest(so, "sha256");
    if (!d) {
      return d.err();
    }
    e.sha256 = *d;
    m.segments.push_back(e);
  }
  return m;
}

template <>
result<placement> from_json<placement>(const json::object& o) {
  placement p;
  auto targets = get_array(o, "targets", segment_index::max);
  if (!targets) {
    return targets.err();
  }
  for (auto& t : **targets) {
    if (!t.is_array()) {
      return bad("targets", "entries must be arrays");
    }
    std::vector<engine_ref> engines;
    for (auto& e : t.as_array()) {
      if (!e.is_object()) {
        return bad("targets", "engines must be objects");
      }
      auto name = get_name<engine_id>(e.as_object(), "name");
      if (!name) {
        return name.err();
      }
      auto url = get_string(e.as_object(), "url", 256);
      if (!url) {
        return url.err();
      }
      engines.push_back({*name, *url});
    }
    p.targets.push_back(std::move(engines));
  }
  return p;
}

template <>
result<fetch_order> from_json<fetch_order>(const json::object& o) {
  fetch_order f;
  auto k = get_key(o);
  if (!k) {
    return k.err();
  }
  f.key = *k;
  auto d = get_digest(o, "sha256");
  if (!d) {
    return d.err();
  }
  f.sha256 = *d;
  auto size = get_u64(o, "size", false);
  if (!size) {
    return size.err();
  }
  f.size = *size;
  if (o.contains("source")) {
    auto src = get_string(o, "source", 2048);
    if (!src) {
      return src.err();
    }
    if (src->empty()) {
      return bad("source", "must be a URL, not empty");
    }
    f.sources.push_back(*src);
  }
  auto sources = get_array(o, "sources", 16, false);
  if (!sources) {
    return sources.err();
  }
  for (auto& s : **sources) {
    if (!s.is_string() || s.as_string().empty() || s.as_string().size() > 2048) {
      return bad("sources", "entries must be URLs of at most 2048 characters");
    }
    f.sources.emplace_back(s.as_string());
  }
  if (f.sources.empty()) {
    return bad("source", "is missing: a fetch order needs 'source' or 'sources'");
  }
  if (o.contains("wait")) {
    auto w = get_bool(o, "wait");
    if (!w) {
      return w.err();
    }
    f.wait = *w;
  } else {
    f.wait = true;
  }
  return f;
}

json::value to_json(const eviction_request& v) {
  json::array segs;
  for (auto& k : v.segments) {
    segs.push_back(key_json(k));
  }
  return json::object{{"bytes", v.bytes}, {"segments", segs}};
}

template <>
result<eviction_request> from_json<eviction_request>(const json::object& o) {
  eviction_request r;
  auto bytes = get_u64(o, "bytes", false);
  if (!bytes) {
    return bytes.err();
  }
  r.bytes = *bytes;
  auto segs = get_array(o, "segments", 100'000);
  if (!segs) {
    return segs.err();
  }
  for (auto& v : **segs) {
    auto k = v.is_object() ? get_key(v.as_object())
                           : result<segment_key>(bad("segments", "entries must be objects"));
    if (!k) {
      return k.err();
    }
    r.segments.push_back(*k);
  }
  return r;
}

template <>
result<preload_order> from_json<preload_order>(const json::object& o) {
  auto k = get_key(o);
  if (!k) {
    return k.err();
  }
  return preload_order{*k};
}

bool valid_availability(std::string_view a) {
  return a == availability_inactive || a == availability_published || a == availability_withdrawn;
}

json::value to_json(const availability_change& v) {
  return json::object{{"availability", v.availability}, {"publish_at", v.publish_at}};
}

template <>
result<availability_change> from_json<availability_change>(const json::object& o) {
  availability_change c;
  auto av = get_string(o, "availability", 32);
  if (!av) {
    return av.err();
  }
  if (!valid_availability(*av)) {
    return bad("availability", "must be inactive, published or withdrawn");
  }
  c.availability = *av;
  if (o.contains("publish_at")) {
    auto pa = get_string(o, "publish_at", 64);
    if (!pa) {
      return pa.err();
    }
    c.publish_at = *pa;
  }
  return c;
}

json::value to_json(const station_registration& v) {
  return json::object{{"name", v.name.str()}, {"director_url", v.director_url},
                      {"home", v.home},       {"x_km", v.x_km},
                      {"y_km", v.y_km},       {"uplink_bits_per_second", v.uplink_bits_per_second}};
}

json::value to_json(const station_report& v) {
  json::array changes, copies;
  for (auto& c : v.changes) {
    json::object o{{"program", c.key.program.str()}, {"index", c.key.index.v}, {"held", c.held}};
    // Station-level changes stay in the shape registries have always read.
    if (!c.engine.empty()) {
      o["engine"] = c.engine;
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
  return json::object{{"load", v.load},
                      {"sending_bits_per_second", v.sending_bits_per_second},
                      {"engines_up", v.engines_up},
                      {"changes", changes},
                      {"copies", copies}};
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

result<double> get_number(const json::object& o, std::string_view k, double lo, double hi) {
  auto* v = o.if_contains(k);
  if (!v) {
    return 0.0;
  }
  if (!v->is_number()) {
    return bad(k, "must be a number");
  }
  double d = v->to_number<double>();
  if (!(d >= lo && d <= hi)) {
    return bad(k, fmt::format("must be within {}..{}", lo, hi));
  }
  return d;
}

}  // namespace

template <>
result<station_registration> from_json<station_registration>(const json::object& o) {
  station_registration r;
  auto name = get_name<station_id>(o, "name");
  if (!name) {
    return name.err();
  }
  r.name = *name;
  auto url = get_string(o, "director_url", 256);
  if (!url) {
    return url.err();
  }
  r.director_url = *url;
  auto home = get_bool(o, "home");
  if (!home) {
    return home.err();
  }
  r.home = *home;
  auto x = get_number(o, "x_km", -1e5, 1e5);
  if (!x) {
    return x.err();
  }
  auto y = get_number(o, "y_km", -1e5, 1e5);
  if (!y) {
    return y.err();
  }
  r.x_km = *x;
  r.y_km = *y;
  auto up = get_u64(o, "uplink_bits_per_second", false);
  if (!up) {
    return up.err();
  }
  r.uplink_bits_per_second = *up;
  return r;
}

template <>
result<station_report> from_json<station_report>(const json::object& o) {
  station_report r;
  auto load = get_number(o, "load", 0, 1e6);
  if (!load) {
    return load.err();
  }
  r.load = *load;
  auto s = get_u64(o, "sending_bits_per_second", false);
  if (!s) {
    return s.err();
  }
  r.sending_bits_per_second = *s;
  auto e = get_u64(o, "engines_up", false);
  if (!e) {
    return e.err();
  }
  r.engines_up = static_cast<uint32_t>(std::min<uint64_t>(*e, UINT32_MAX));
  auto changes = get_array(o, "changes", max_list, false);
  if (!changes) {
    return changes.err();
  }
  for (auto& c : **changes) {
    if (!c.is_object()) {
      return bad("changes", "entries must be objects");
    }
    auto k = get_key(c.as_object());
    if (!k) {
      return k.err();
    }
    auto held = get_bool(c.as_object(), "held");
    if (!held) {
      return held.err();
    }
    std::string engine;
    if (c.as_object().contains("engine")) {
      auto e = get_name<engine_id>(c.as_object(), "engine");
      if (!e) {
        return e.err();
      }
      engine = e->str();
    }
    auto filling = get_bool(c.as_object(), "filling");
    if (!filling) {
      return filling.err();
    }
    if (*filling && engine.empty()) {
      return bad("filling", "needs an 'engine': only an engine receives a segment");
    }
    r.changes.push_back({*k, *held, std::move(engine), *filling});
  }
  auto copies = get_array(o, "copies", 100'000, false);
  if (!copies) {
    return copies.err();
  }
  for (auto& c : **copies) {
    if (!c.is_object()) {
      return bad("copies", "entries must be objects");
    }
    auto src = get_name<station_id>(c.as_object(), "source");
    if (!src) {
      return src.err();
    }
    auto bytes = get_u64(c.as_object(), "bytes");
    if (!bytes) {
      return bytes.err();
    }
    auto secs = get_number(c.as_object(), "seconds", 0, 1e6);
    if (!secs) {
      return secs.err();
    }
    r.copies.push_back({*src, *bytes, *secs});
  }
  return r;
}

template <>
result<distribution> from_json<distribution>(const json::object& o) {
  distribution d;
  auto* m = o.if_contains("manifest");
  if (!m || !m->is_object()) {
    return bad("manifest", "must be an object");
  }
  auto man = from_json<program_manifest>(m->as_object());
  if (!man) {
    return man.err();
  }
  d.manifest = std::move(*man);
  auto targets = get_array(o, "targets", 10'000, false);
  if (!targets) {
    return targets.err();
  }
  for (auto& t : **targets) {
    if (!t.is_string() || !valid_name(t.as_string())) {
      return bad("targets", "entries must be station names");
    }
    d.targets.emplace_back(t.as_string());
  }
  auto pf = o.contains("prefetch") ? get_u64(o, "prefetch")
                                   : result<uint64_t>(uint64_t{segment_index::max});
  if (!pf) {
    return pf.err();
  }
  if (*pf > segment_index::max) {
    return bad("prefetch", "is out of range");
  }
  d.prefetch = static_cast<uint32_t>(*pf);
  return d;
}

template <>
result<std::vector<source>> from_json<std::vector<source>>(const json::object& o) {
  auto list = get_array(o, "sources", 10'000);
  if (!list) {
    return list.err();
  }
  std::vector<source> out;
  for (auto& s : **list) {
    if (!s.is_object()) {
      return bad("sources", "entries must be objects");
    }
    auto name = get_name<station_id>(s.as_object(), "station");
    if (!name) {
      return name.err();
    }
    auto url = get_string(s.as_object(), "director_url", 256);
    if (!url) {
      return url.err();
    }
    auto cost = get_number(s.as_object(), "cost", 0, 1e12);
    if (!cost) {
      return cost.err();
    }
    out.push_back({*name, *url, *cost});
  }
  return out;
}

}  // namespace vodgrid::api
