// TOML mapping of grid_config, with toml++: the field list of each table, read and written by the
// machinery of config_table.h, then the checks across tables.
#include "base/config.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "base/cidr.h"
#include "base/config_table.h"

namespace vodgrid {

std::string listen_address::url() const {
  return fmt::format("{}://{}:{}", tls() ? "https" : "http", host, port);
}

result<listen_address> listen_address::parse(std::string_view text) {
  auto colon = text.rfind(':');
  listen_address a;
  unsigned port = 0;
  if (colon != std::string_view::npos && colon > 0) {
    a.host = std::string(text.substr(0, colon));
    auto digits = text.substr(colon + 1);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (ec == std::errc() && end == digits.data() + digits.size() && port > 0 && port <= 65535) {
      a.port = static_cast<uint16_t>(port);
      return a;
    }
  }
  return make_error(errc::invalid_argument,
                    fmt::format("\"{}\" is not \"host:port\" with a port in 1..65535", text));
}

std::vector<std::string> registry_config::client_urls() const {
  return urls.empty() ? std::vector<std::string>{listen.url()} : urls;
}

namespace config_detail {

// The known key nearest to `key` by edit distance (at most two edits, or one being the start of the
// other), if it is near enough to be a typo.
std::string_view nearest_key(std::string_view key, const std::vector<std::string_view>& known) {
  std::string_view best;
  size_t best_d = 3;  // at most two edits
  for (auto k : known) {
    std::vector<size_t> row(k.size() + 1);
    for (size_t j = 0; j <= k.size(); ++j) {
      row[j] = j;
    }
    for (size_t i = 1; i <= key.size(); ++i) {
      size_t diag = row[0];
      row[0] = i;
      for (size_t j = 1; j <= k.size(); ++j) {
        size_t up = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (key[i - 1] == k[j - 1] ? 0 : 1)});
        diag = up;
      }
    }
    // A key missing its unit or with a stray suffix ("heartbeat_timeout") is near whatever the
    // length of what differs.
    size_t d = k.starts_with(key) || key.starts_with(k) ? std::min<size_t>(row[k.size()], 1)
                                                        : row[k.size()];
    if (d < best_d) {
      best_d = d;
      best = k;
    }
  }
  return best;
}

}  // namespace config_detail

namespace {

using config_detail::bad;
using config_detail::table_reader;
using config_detail::table_writer;

// The field lists: one line per key, read by table_reader and written by table_writer. `C` is the
// config struct, const when writing.
template <class V, class C>
void grid_fields(V& v, C& g) {
  v.duration("heartbeat_interval_ms", g.heartbeat_interval, int64_t{10});
  v.duration("heartbeat_timeout_ms", g.heartbeat_timeout, int64_t{20});
  v.text("log_level", g.log_level);
  v.text("log_format", g.log_format);
  v.strings("metrics_from", g.metrics_from);
}

template <class V, class C>
void timing_fields(V& v, C& t) {
  v.duration("connect_ms", t.connect, int64_t{1});
  v.duration("silence_ms", t.silence, int64_t{1});
  v.duration("exchange_ms", t.exchange, int64_t{1});
  v.duration("fill_ms", t.fill, int64_t{1});
  v.duration("order_ms", t.order, int64_t{1});
  v.duration("drain_ms", t.drain, int64_t{0});
  v.duration("station_silence_ms", t.station_silence, int64_t{100});
  v.duration("placement_interval_ms", t.placement_interval, int64_t{10});
  v.duration("health_interval_ms", t.health_interval, int64_t{10});
  v.duration("health_timeout_ms", t.health_timeout, int64_t{10});
  v.duration("unhealthy_after_ms", t.unhealthy_after, int64_t{10});
  v.duration("start_grace_ms", t.start_grace, int64_t{0});
  v.duration("push_report_ms", t.push_report, int64_t{10});
  v.duration("push_silence_ms", t.push_silence, int64_t{20});
  v.duration("rtsp_session_timeout_ms", t.rtsp_session_timeout, int64_t{1'000});
  v.duration("ticket_key_period_ms", t.ticket_key_period, int64_t{1'000});
}

template <class V, class C>
void web_fields(V& v, C& w) {
  v.strings("allow_origins", w.allow_origins);
  v.path("root", w.root);
}

template <class V, class C>
void tls_fields(V& v, C& t) {
  v.path("ca", t.ca);
}

template <class V, class C>
void registry_fields(V& v, C& r) {
  v.listen("listen", r.listen);
  v.tls("tls", r.listen);
  v.strings("urls", r.urls);
  v.text("database", r.database, true, "sqlite:///path or postgresql://...");
  v.path("secret_dir", r.secret_dir);
}

template <class V, class C>
void auth_fields(V& v, C& a) {
  v.listen("listen", a.listen);
  v.tls("tls", a.listen);
  v.text("database", a.database, true, "sqlite:///path or postgresql://...");
  v.path("key_file", a.key_file);
  v.flag("demo_accounts", a.demo_accounts);
}

template <class V, class C>
void content_fields(V& v, C& c) {
  v.listen("listen", c.listen);
  v.tls("tls", c.listen);
  v.text("database", c.database, true, "sqlite:///path or postgresql://...");
  v.path("work_dir", c.work_dir, true);
  v.duration("publish_lease_ms", c.publish_lease, int64_t{300});
}

template <class V, class C>
void director_fields(V& v, C& d) {
  v.listen("listen", d.listen);
  v.tls("tls", d.listen);
  v.path("data_dir", d.data_dir, true);
  v.number("copies", d.copies, 1u);
  v.number("parallel_copies", d.parallel_copies, 1u, 256u);
  v.number("hot_load_percent", d.hot_load_percent, 1u, 100u);
  v.duration("replica_idle_seconds", d.replica_idle, int64_t{1});
  v.duration("repair_grace_seconds", d.repair_grace, int64_t{0});
  v.threads("threads", d.threads);
}

template <class V, class C>
void station_fields(V& v, C& s) {
  v.names("name");
  v.names("director");
  v.names("engine");
  v.flag("home", s.home);
  v.real("x_km", s.x_km);
  v.real("y_km", s.y_km);
  v.megabits("uplink_mbps", s.uplink_bits_per_second, 1);
  v.listen("supervisor", s.supervisor, false);
}

template <class V, class C>
void engine_fields(V& v, C& e) {
  v.names("name");
  v.names("data_dirs");
  v.listen("listen", e.listen);
  v.tls("tls", e.listen);
  v.number("max_streams", e.max_streams, 1u);
  v.number("max_bytes_per_second", e.max_bytes_per_second);
  v.number("max_segment_bytes", e.max_segment_bytes, uint64_t{1024});
  v.number("max_disk_bytes", e.max_disk_bytes);
  v.number("max_fills", e.max_fills, 1u);
  v.threads("threads", e.threads);
}

// Reads the optional top-level table `key` with `fields`; absent: `out` stays empty.
template <class T, class Fields>
status read_section(const toml::table& root, std::string_view key, std::string_view origin,
                    std::optional<T>& out, Fields fields) {
  auto t = root[key].as_table();
  if (!t) {
    return {};
  }
  table_reader r(*t, origin, fmt::format("[{}]", key));
  T c;
  fields(r, c);
  if (auto st = r.finish(); !st) {
    return st;
  }
  out = std::move(c);
  return {};
}

result<engine_config> parse_engine(const toml::node& node, std::string_view origin,
                                   const std::string& station) {
  auto et = node.as_table();
  if (!et) {
    return bad(origin, station + ": [[station.engine]] must be a table");
  }
  engine_config e;
  auto name = engine_id::parse((*et)["name"].value_or(std::string()));
  if (!name) {
    return bad(origin, station + ": an engine needs a valid 'name'");
  }
  e.name = *name;
  table_reader r(*et, origin, "[[station.engine]] " + e.name.str());
  engine_fields(r, e);
  auto dirs = (*et)["data_dirs"].as_array();
  if (!dirs || dirs->empty()) {
    r.fail("needs 'data_dirs', a non-empty array of paths");
  } else {
    for (auto& d : *dirs) {
      auto p = d.value<std::string>();
      if (!p || p->empty()) {
        r.fail("'data_dirs' entries must be non-empty strings");
      } else {
        e.data_dirs.emplace_back(*p);
      }
    }
  }
  if (e.max_disk_bytes != 0 && e.max_disk_bytes < (1u << 20)) {
    r.fail("'max_disk_bytes' must be 0 (no budget) or at least 1 MiB");
  }
  if (auto st = r.finish(); !st) {
    return st.err();
  }
  return e;
}

result<station_config> parse_station(const toml::node& node, std::string_view origin) {
  auto st = node.as_table();
  if (!st) {
    return bad(origin, "[[station]] must be a table");
  }
  station_config s;
  auto name = station_id::parse((*st)["name"].value_or(std::string()));
  if (!name) {
    return bad(origin, "a station needs a valid 'name' ([A-Za-z0-9_-], at most 64)");
  }
  s.name = *name;
  std::string what = "station " + s.name.str();
  table_reader r(*st, origin, "[[station]] " + s.name.str());
  station_fields(r, s);
  if (auto done = r.finish(); !done) {
    return done.err();
  }
  auto dir = (*st)["director"].as_table();
  if (!dir) {
    return bad(origin, what + ": needs a [station.director] table");
  }
  table_reader dr(*dir, origin, what + " director");
  director_fields(dr, s.director);
  if (auto done = dr.finish(); !done) {
    return done.err();
  }
  auto engines = (*st)["engine"].as_array();
  if (!engines || engines->empty()) {
    return bad(origin, what + ": needs at least one [[station.engine]]");
  }
  for (auto& en : *engines) {
    auto e = parse_engine(en, origin, what);
    if (!e) {
      return e.err();
    }
    s.engines.push_back(std::move(*e));
  }
  if (s.director.copies > s.engines.size()) {
    return bad(origin, what + ": 'copies' exceeds the number of engines");
  }
  return s;
}

// Names and ports are unique across the grid; the roles a grid needs are there.
// [web] allow_origins: "*" alone, or origins as a browser's Origin header writes them (scheme, host
// and port, lowercase, no path), which is what they are compared with.
status check_origins(const std::vector<std::string>& origins, std::string_view origin) {
  for (auto& o : origins) {
    if (o == "*") {
      if (origins.size() > 1) {
        return bad(origin, "[web]: allow_origins: \"*\" (any origin) stands alone");
      }
      continue;
    }
    auto scheme_end = o.find("://");
    std::string_view scheme = std::string_view(o).substr(0, scheme_end);
    std::string_view host =
        scheme_end == std::string::npos ? "" : std::string_view(o).substr(scheme_end + 3);
    bool ok =
        (scheme == "http" || scheme == "https") && !host.empty() &&
        std::none_of(host.begin(), host.end(), [](char c) {
          return c == '/' || c == '?' || c == '#' || c == '@' || c <= ' ' || (c >= 'A' && c <= 'Z');
        });
    if (!ok) {
      return bad(origin, fmt::format("[web]: allow_origins: \"{}\" is not an origin as browsers "
                                     "send it (\"https://host[:port]\", lowercase, no path)",
                                     o));
    }
  }
  return {};
}

status check_grid(const grid_config& g, std::string_view origin) {
  std::set<std::string> names;
  std::set<std::pair<std::string, uint16_t>> ports;
  auto claim_port = [&](const listen_address& a, std::string_view who) -> status {
    if (a.port != 0 && !ports.insert({a.host, a.port}).second) {
      return bad(origin, fmt::format("{}: {}:{} is used twice", who, a.host, a.port));
    }
    return {};
  };
  for (auto& s : g.stations) {
    std::string what = "station " + s.name.str();
    if (!names.insert(s.name.str()).second) {
      return bad(origin, what + ": name used twice");
    }
    if (auto st = claim_port(s.director.listen, what + " director"); !st) {
      return st;
    }
    if (auto st = claim_port(s.supervisor, what + " supervisor"); !st) {
      return st;
    }
    for (auto& e : s.engines) {
      if (!names.insert(e.name.str()).second) {
        return bad(origin, "engine " + e.name.str() + ": name used twice");
      }
      if (auto st = claim_port(e.listen, "engine " + e.name.str()); !st) {
        return st;
      }
    }
  }
  if (g.heartbeat_timeout <= g.heartbeat_interval) {
    return bad(origin, "[grid]: heartbeat_timeout_ms must exceed heartbeat_interval_ms");
  }
  if (g.timing.push_silence <= g.timing.push_report) {
    return bad(origin, "[timing]: push_silence_ms must exceed push_report_ms");
  }
  if (g.registry) {
    if (auto st = claim_port(g.registry->listen, "registry"); !st) {
      return st;
    }
    for (auto& u : g.registry->urls) {
      // The shape only: whether anything answers there is the clients' to find out (and say).
      bool scheme =
          (u.starts_with("http://") && u.size() > 7) || (u.starts_with("https://") && u.size() > 8);
      if (!scheme || u.find_first_of(" ,") != std::string::npos) {
        return bad(origin,
                   fmt::format("[registry] urls: \"{}\" is not an http(s)://host:port URL", u));
      }
    }
    auto homes = std::count_if(g.stations.begin(), g.stations.end(),
                               [](const station_config& s) { return s.home; });
    if (homes != 1) {
      return bad(origin, "a grid with a [registry] needs exactly one station with home = true");
    }
  }
  if (g.auth) {
    if (auto st = claim_port(g.auth->listen, "auth"); !st) {
      return st;
    }
  }
  if (g.content) {
    if (auto st = claim_port(g.content->listen, "content"); !st) {
      return st;
    }
    if (!g.home_station()) {
      return bad(origin, "a grid with [content] needs a station with home = true");
    }
  }
  if (g.auth && g.auth->demo_accounts && !g.all_on_test_addresses()) {
    return bad(origin,
               "[auth]: demo_accounts is for a grid on loopback or 198.18.0.0/15 (test networks) "
               "only");
  }
  return {};
}

}  // namespace

result<grid_config> grid_config::parse(std::string_view text, std::string_view origin) {
  toml::table root;
  try {
    root = toml::parse(text, std::string(origin));
  } catch (const toml::parse_error& e) {
    return bad(origin, fmt::format("line {}: {}", e.source().begin.line, e.description()));
  }
  grid_config g;
  table_reader top(root, origin, "the top level");
  for (auto key : {"grid", "timing", "web", "tls", "registry", "auth", "content", "station"}) {
    top.names(key);
  }
  for (auto key : {"grid", "timing", "web", "tls", "registry", "auth", "content"}) {
    if (auto n = root[key]; n && !n.is_table()) {
      top.fail(fmt::format("'{}' must be a table ([{}])", key, key));
    }
  }
  if (auto st = top.finish(); !st) {
    return st.err();
  }
  if (auto grid = root["grid"].as_table()) {
    table_reader r(*grid, origin, "[grid]");
    grid_fields(r, g);
    if (g.log_format != "text" && g.log_format != "json") {
      r.fail("'log_format' must be \"text\" or \"json\"");
    }
    if (auto ranges = parse_ranges(g.metrics_from); !ranges) {
      r.fail("'metrics_from': " + ranges.err().detail);
    }
    if (auto st = r.finish(); !st) {
      return st.err();
    }
  }
  if (auto timing = root["timing"].as_table()) {
    table_reader r(*timing, origin, "[timing]");
    timing_fields(r, g.timing);
    if (auto st = r.finish(); !st) {
      return st.err();
    }
  }
  if (auto web = root["web"].as_table()) {
    table_reader r(*web, origin, "[web]");
    web_fields(r, g.web);
    if (auto st = r.finish(); !st) {
      return st.err();
    }
    if (auto st = check_origins(g.web.allow_origins, origin); !st) {
      return st.err();
    }
  }
  if (auto tls = root["tls"].as_table()) {
    table_reader r(*tls, origin, "[tls]");
    tls_fields(r, g.tls);
    if (auto st = r.finish(); !st) {
      return st.err();
    }
  }
  if (auto st = read_section(root, "registry", origin, g.registry,
                             [](table_reader& r, registry_config& c) { registry_fields(r, c); });
      !st) {
    return st.err();
  }
  if (auto st = read_section(root, "auth", origin, g.auth,
                             [](table_reader& r, auth_config& c) { auth_fields(r, c); });
      !st) {
    return st.err();
  }
  if (auto st = read_section(root, "content", origin, g.content,
                             [](table_reader& r, content_config& c) { content_fields(r, c); });
      !st) {
    return st.err();
  }
  auto stations = root["station"].as_array();
  if (!stations || stations->empty()) {
    return bad(origin, "no [[station]] defined");
  }
  for (auto& sn : *stations) {
    auto s = parse_station(sn, origin);
    if (!s) {
      return s.err();
    }
    g.stations.push_back(std::move(*s));
  }
  if (auto st = check_grid(g, origin); !st) {
    return st.err();
  }
  return g;
}

result<grid_config> grid_config::load(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) {
    return make_error(errc::not_found, fmt::format("cannot read config {}", file.string()));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), file.string());
}

std::string grid_config::to_toml() const {
  auto table = [](auto fields, const auto& c) {
    table_writer w;
    fields(w, c);
    return w.take();
  };
  toml::table root;
  root.insert("grid",
              table([](table_writer& w, const grid_config& g) { grid_fields(w, g); }, *this));
  root.insert("timing",
              table([](table_writer& w, const timing_config& t) { timing_fields(w, t); }, timing));
  root.insert("web", table([](table_writer& w, const web_config& c) { web_fields(w, c); }, web));
  if (!tls.ca.empty()) {
    root.insert("tls", table([](table_writer& w, const tls_config& t) { tls_fields(w, t); }, tls));
  }
  if (registry) {
    root.insert(
        "registry",
        table([](table_writer& w, const registry_config& r) { registry_fields(w, r); }, *registry));
  }
  if (auth) {
    root.insert("auth",
                table([](table_writer& w, const auth_config& a) { auth_fields(w, a); }, *auth));
  }
  if (content) {
    root.insert(
        "content",
        table([](table_writer& w, const content_config& c) { content_fields(w, c); }, *content));
  }
  toml::array sts;
  for (auto& s : stations) {
    toml::array engs;
    for (auto& e : s.engines) {
      auto et = table([](table_writer& w, const engine_config& c) { engine_fields(w, c); }, e);
      et.insert("name", e.name.str());
      toml::array dirs;
      for (auto& d : e.data_dirs) {
        dirs.push_back(d.string());
      }
      et.insert("data_dirs", dirs);
      engs.push_back(std::move(et));
    }
    auto st = table([](table_writer& w, const station_config& c) { station_fields(w, c); }, s);
    st.insert("name", s.name.str());
    st.insert("director",
              table([](table_writer& w, const director_config& d) { director_fields(w, d); },
                    s.director));
    st.insert("engine", engs);
    sts.push_back(std::move(st));
  }
  root.insert("station", sts);
  std::stringstream ss;
  ss << root << "\n";
  return ss.str();
}

grid_config grid_config::embedded_default(const std::filesystem::path& data_dir,
                                          uint16_t base_port) {
  auto port = [&](int p) { return static_cast<uint16_t>(p - 8700 + base_port); };
  grid_config g;
  g.registry =
      registry_config{{"127.0.0.1", port(8700)}, "sqlite://" + (data_dir / "registry.db").string()};
  // Tokens on, with the demo accounts demo/demo and admin/admin: here and nowhere else.
  g.auth =
      auth_config{{"127.0.0.1", port(8701)}, "sqlite://" + (data_dir / "auth.db").string(), true};
  g.content = content_config{{"127.0.0.1", port(8702)},
                             "sqlite://" + (data_dir / "content.db").string(),
                             data_dir / "content"};
  auto station = [&](std::string name, int director_port, int engines, bool home, double x_km) {
    station_config s;
    s.name = *station_id::parse(name);
    s.home = home;
    s.x_km = x_km;
    s.director.listen = {"127.0.0.1", port(director_port)};
    s.director.data_dir = data_dir / name;
    s.director.copies = 2;
    s.supervisor = {"127.0.0.1", port(director_port + 9)};
    for (int i = 1; i <= engines; ++i) {
      engine_config e;
      e.name = *engine_id::parse(fmt::format("{}-{}", name, i));
      e.listen = {"127.0.0.1", port(director_port + i)};
      e.data_dirs = {data_dir / e.name.str() / "d0", data_dir / e.name.str() / "d1"};
      s.engines.push_back(std::move(e));
    }
    return s;
  };
  g.stations.push_back(station("home", 8710, 2, true, 0));
  g.stations.push_back(station("edge", 8720, 3, false, 500));
  return g;
}

const station_config* grid_config::find_station(std::string_view name) const {
  for (auto& s : stations) {
    if (s.name.str() == name) {
      return &s;
    }
  }
  return nullptr;
}

const station_config* grid_config::home_station() const {
  for (auto& s : stations) {
    if (s.home) {
      return &s;
    }
  }
  return nullptr;
}

std::vector<address_range> grid_config::metrics_ranges() const {
  std::vector<address_range> out;
  for (auto& t : metrics_from) {
    if (auto r = address_range::parse(t)) {
      out.push_back(*r);
    }
  }
  return out;
}

bool grid_config::all_on_test_addresses() const {
  auto loopback = [](const listen_address& a) {
    in_addr v4{};
    if (::inet_pton(AF_INET, a.host.c_str(), &v4) == 1) {
      uint32_t ip = ntohl(v4.s_addr);
      return (ip >> 24) == 127 || (ip >> 17) == (0xC612'0000u >> 17);  // 127/8, 198.18.0.0/15
    }
    return a.host == "localhost" || a.host == "::1";
  };
  bool all = (!registry || loopback(registry->listen)) && (!auth || loopback(auth->listen)) &&
             (!content || loopback(content->listen));
  for (auto& s : stations) {
    all = all && loopback(s.director.listen);
    for (auto& e : s.engines) {
      all = all && loopback(e.listen);
    }
  }
  return all;
}

const station_config* grid_config::station_of_engine(std::string_view engine) const {
  for (auto& s : stations) {
    for (auto& e : s.engines) {
      if (e.name.str() == engine) {
        return &s;
      }
    }
  }
  return nullptr;
}

const engine_config* grid_config::find_engine(std::string_view name) const {
  for (auto& s : stations) {
    for (auto& e : s.engines) {
      if (e.name.str() == name) {
        return &e;
      }
    }
  }
  return nullptr;
}

}  // namespace vodgrid
