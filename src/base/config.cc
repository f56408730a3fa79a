// TOML mapping of grid_config, with toml++.
#include "base/config.h"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include <toml++/toml.h>
#include <fstream>
#include <set>
#include <sstream>

namespace vodgrid {

std::string listen_address::url() const {
  return fmt::format("http://{}:{}", host, port);
}

namespace {

error bad(std::string_view origin, std::string msg) {
  return make_error(errc::invalid_argument, fmt::format("{}: {}", origin, msg));
}

result<listen_address> parse_listen(toml::node_view<toml::node> n, std::string_view origin,
                                    std::string_view what) {
  auto s = n.value<std::string>();
  if (!s) {
    return bad(origin, fmt::format("{}: 'listen' must be \"host:port\"", what));
  }
  auto colon = s->rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return bad(origin, fmt::format("{}: 'listen' must be \"host:port\", got \"{}\"", what, *s));
  }
  listen_address a;
  a.host = s->substr(0, colon);
  int port = 0;
  try {
    port = std::stoi(s->substr(colon + 1));
  } catch (...) {
    port = -1;
  }
  if (port <= 0 || port > 65535) {
    return bad(origin, fmt::format("{}: bad port in \"{}\"", what, *s));
  }
  a.port = static_cast<uint16_t>(port);
  return a;
}

// The known key nearest to `key` by edit distance (at most two edits, or one being the start of the
// other), if it is near enough to be a typo.
std::string_view nearest_key(std::string_view key, std::initializer_list<std::string_view> known) {
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

// A key the table does not know is an error, not a default kept in silence (a typo).
status check_keys(const toml::table& t, std::initializer_list<std::string_view> known,
                  std::string_view origin, std::string_view what) {
  for (auto& [key, value] : t) {
    std::string_view k = key.str();
    if (std::find(known.begin(), known.end(), k) != known.end()) {
      continue;
    }
    auto near = nearest_key(k, known);
    return bad(origin, fmt::format("{}: unknown key '{}'{}", what, k,
                                   near.empty() ? std::string()
                                                : fmt::format(" (did you mean '{}'?)", near)));
  }
  return {};
}

template <class T>
result<T> get_positive(const toml::table& t, std::string_view key, T def, std::string_view origin,
                       std::string_view what) {
  auto n = t[key];
  if (!n) {
    return def;
  }
  auto v = n.value<int64_t>();
  if (!v || *v < 0) {
    return bad(origin, fmt::format("{}: '{}' must be a non-negative integer", what, key));
  }
  return static_cast<T>(*v);
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
  if (auto st = check_keys(root, {"grid", "registry", "auth", "content", "station"}, origin,
                           "the top level");
      !st) {
    return st.err();
  }
  if (auto grid = root["grid"].as_table()) {
    if (auto st = check_keys(*grid, {"heartbeat_interval_ms", "heartbeat_timeout_ms", "log_level"},
                             origin, "[grid]");
        !st) {
      return st.err();
    }
    auto hb = get_positive<int64_t>(*grid, "heartbeat_interval_ms", 250, origin, "[grid]");
    if (!hb) {
      return hb.err();
    }
    auto to = get_positive<int64_t>(*grid, "heartbeat_timeout_ms", 1500, origin, "[grid]");
    if (!to) {
      return to.err();
    }
    if (*hb < 10 || *to <= *hb) {
      return bad(origin, "[grid]: need heartbeat_interval_ms >= 10 and heartbeat_timeout_ms > it");
    }
    g.heartbeat_interval = std::chrono::milliseconds(*hb);
    g.heartbeat_timeout = std::chrono::milliseconds(*to);
    g.log_level = (*grid)["log_level"].value_or(std::string("info"));
  }
  if (auto reg = root["registry"].as_table()) {
    if (auto st = check_keys(*reg, {"listen", "database", "secret_dir"}, origin, "[registry]");
        !st) {
      return st.err();
    }
    registry_config r;
    auto l = parse_listen((*reg)["listen"], origin, "[registry]");
    if (!l) {
      return l.err();
    }
    r.listen = *l;
    r.database = (*reg)["database"].value_or(std::string());
    r.secret_dir = (*reg)["secret_dir"].value_or(std::string());
    if (r.database.empty()) {
      return bad(origin, "[registry]: needs 'database' (sqlite:///path or postgresql://...)");
    }
    g.registry = r;
  }
  if (auto au = root["auth"].as_table()) {
    if (auto st = check_keys(*au, {"listen", "database", "demo_accounts"}, origin, "[auth]"); !st) {
      return st.err();
    }
    auth_config a;
    auto l = parse_listen((*au)["listen"], origin, "[auth]");
    if (!l) {
      return l.err();
    }
    a.listen = *l;
    a.database = (*au)["database"].value_or(std::string());
    if (a.database.empty()) {
      return bad(origin, "[auth]: needs 'database' (sqlite:///path or postgresql://...)");
    }
    a.demo_accounts = (*au)["demo_accounts"].value_or(false);
    g.auth = a;
  }
  if (auto ct = root["content"].as_table()) {
    if (auto st = check_keys(*ct, {"listen", "database", "work_dir"}, origin, "[content]"); !st) {
      return st.err();
    }
    content_config c;
    auto l = parse_listen((*ct)["listen"], origin, "[content]");
    if (!l) {
      return l.err();
    }
    c.listen = *l;
    c.database = (*ct)["database"].value_or(std::string());
    if (c.database.empty()) {
      return bad(origin, "[content]: needs 'database' (sqlite:///path or postgresql://...)");
    }
    c.work_dir = (*ct)["work_dir"].value_or(std::string());
    if (c.work_dir.empty()) {
      return bad(origin, "[content]: needs 'work_dir'");
    }
    g.content = c;
  }
  auto stations = root["station"].as_array();
  if (!stations || stations->empty()) {
    return bad(origin, "no [[station]] defined");
  }
  std::set<std::string> names;
  std::set<std::pair<std::string, uint16_t>> ports;
  auto claim_port = [&](const listen_address& a, std::string_view who) -> status {
    if (!ports.insert({a.host, a.port}).second) {
      return bad(origin, fmt::format("{}: {}:{} is used twice", who, a.host, a.port));
    }
    return {};
  };
  for (auto& sn : *stations) {
    auto st = sn.as_table();
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
    if (auto st2 = check_keys(
            *st,
            {"name", "home", "x_km", "y_km", "uplink_mbps", "director", "engine", "supervisor"},
            origin, "[[station]] " + s.name.str());
        !st2) {
      return st2.err();
    }
    if (!names.insert(s.name.str()).second) {
      return bad(origin, what + ": name used twice");
    }
    auto dir = (*st)["director"].as_table();
    if (!dir) {
      return bad(origin, what + ": needs a [station.director] table");
    }
    if (auto st2 = check_keys(*dir,
                              {"listen", "data_dir", "copies", "parallel_copies",
                               "hot_load_percent", "replica_idle_seconds", "repair_grace_seconds"},
                              origin, what + " director");
        !st2) {
      return st2.err();
    }
    auto l = parse_listen((*dir)["listen"], origin, what + " director");
    if (!l) {
      return l.err();
    }
    s.director.listen = *l;
    if (auto st2 = claim_port(s.director.listen, what + " director"); !st2) {
      return st2.err();
    }
    s.director.data_dir = (*dir)["data_dir"].value_or(std::string());
    if (s.director.data_dir.empty()) {
      return bad(origin, what + " director: needs 'data_dir'");
    }
    auto copies = get_positive<uint32_t>(*dir, "copies", 2, origin, what + " director");
    if (!copies) {
      return copies.err();
    }
    if (*copies < 1) {
      return bad(origin, what + " director: 'copies' must be at least 1");
    }
    s.director.copies = *copies;
    auto pc = get_positive<uint32_t>(*dir, "parallel_copies", 4, origin, what + " director");
    if (!pc) {
      return pc.err();
    }
    if (*pc < 1 || *pc > 256) {
      return bad(origin, what + " director: 'parallel_copies' must be within 1..256");
    }
    s.director.parallel_copies = *pc;
    auto hot = get_positive<uint32_t>(*dir, "hot_load_percent", 80, origin, what + " director");
    if (!hot) {
      return hot.err();
    }
    if (*hot < 1 || *hot > 100) {
      return bad(origin, what + " director: 'hot_load_percent' must be within 1..100");
    }
    s.director.hot_load_percent = *hot;
    auto idle =
        get_positive<uint32_t>(*dir, "replica_idle_seconds", 300, origin, what + " director");
    if (!idle) {
      return idle.err();
    }
    if (*idle < 1) {
      return bad(origin, what + " director: 'replica_idle_seconds' must be at least 1");
    }
    s.director.replica_idle = std::chrono::seconds(*idle);
    auto grace =
        get_positive<uint32_t>(*dir, "repair_grace_seconds", 30, origin, what + " director");
    if (!grace) {
      return grace.err();
    }
    s.director.repair_grace = std::chrono::seconds(*grace);
    if (auto sup = (*st)["supervisor"]; sup) {
      auto sl = parse_listen(sup, origin, what + " supervisor");
      if (!sl) {
        return sl.err();
      }
      s.supervisor = *sl;
      if (auto st2 = claim_port(s.supervisor, what + " supervisor"); !st2) {
        return st2.err();
      }
    }
    s.home = (*st)["home"].value_or(false);
    s.x_km = (*st)["x_km"].value_or(0.0);
    s.y_km = (*st)["y_km"].value_or(0.0);
    auto up = get_positive<uint64_t>(*st, "uplink_mbps", 1000, origin, what);
    if (!up) {
      return up.err();
    }
    if (*up < 1) {
      return bad(origin, what + ": 'uplink_mbps' must be at least 1");
    }
    s.uplink_bits_per_second = *up * 1'000'000;
    auto engines = (*st)["engine"].as_array();
    if (!engines || engines->empty()) {
      return bad(origin, what + ": needs at least one [[station.engine]]");
    }
    for (auto& en : *engines) {
      auto et = en.as_table();
      if (!et) {
        return bad(origin, what + ": [[station.engine]] must be a table");
      }
      engine_config e;
      auto ename = engine_id::parse((*et)["name"].value_or(std::string()));
      if (!ename) {
        return bad(origin, what + ": an engine needs a valid 'name'");
      }
      e.name = *ename;
      std::string ewhat = "engine " + e.name.str();
      if (auto st2 = check_keys(*et,
                                {"name", "listen", "data_dirs", "max_streams",
                                 "max_bytes_per_second", "max_segment_bytes", "max_disk_bytes"},
                                origin, "[[station.engine]] " + e.name.str());
          !st2) {
        return st2.err();
      }
      if (!names.insert(e.name.str()).second) {
        return bad(origin, ewhat + ": name used twice");
      }
      auto el = parse_listen((*et)["listen"], origin, ewhat);
      if (!el) {
        return el.err();
      }
      e.listen = *el;
      if (auto st2 = claim_port(e.listen, ewhat); !st2) {
        return st2.err();
      }
      auto dirs = (*et)["data_dirs"].as_array();
      if (!dirs || dirs->empty()) {
        return bad(origin, ewhat + ": needs 'data_dirs', a non-empty array of paths");
      }
      for (auto& d : *dirs) {
        auto p = d.value<std::string>();
        if (!p || p->empty()) {
          return bad(origin, ewhat + ": 'data_dirs' entries must be non-empty strings");
        }
        e.data_dirs.emplace_back(*p);
      }
      auto ms = get_positive<uint32_t>(*et, "max_streams", 1000, origin, ewhat);
      if (!ms) {
        return ms.err();
      }
      auto mb = get_positive<uint64_t>(*et, "max_bytes_per_second", 0, origin, ewhat);
      if (!mb) {
        return mb.err();
      }
      auto mx = get_positive<uint64_t>(*et, "max_segment_bytes", 64 << 20, origin, ewhat);
      if (!mx) {
        return mx.err();
      }
      auto md = get_positive<uint64_t>(*et, "max_disk_bytes", 0, origin, ewhat);
      if (!md) {
        return md.err();
      }
      if (*ms < 1 || *mx < 1024) {
        return bad(origin, ewhat + ": max_streams must be >= 1 and max_segment_bytes >= 1024");
      }
      if (*md != 0 && *md < (1u << 20)) {
        return bad(origin, ewhat + ": max_disk_bytes must be 0 (no budget) or at least 1 MiB");
      }
      e.max_disk_bytes = *md;
      e.max_streams = *ms;
      e.max_bytes_per_second = *mb;
      e.max_segment_bytes = *mx;
      s.engines.push_back(std::move(e));
    }
    if (s.director.copies > s.engines.size()) {
      return bad(origin, what + ": 'copies' exceeds the number of engines");
    }
    g.stations.push_back(std::move(s));
  }
  if (g.registry) {
    if (auto st = claim_port(g.registry->listen, "registry"); !st) {
      return st.err();
    }
    size_t homes = 0;
    for (auto& s : g.stations) {
      homes += s.home ? 1 : 0;
    }
    if (homes != 1) {
      return bad(origin, "a grid with a [registry] needs exactly one station with home = true");
    }
  }
  if (g.auth) {
    if (auto st = claim_port(g.auth->listen, "auth"); !st) {
      return st.err();
    }
  }
  if (g.content) {
    if (auto st = claim_port(g.content->listen, "content"); !st) {
      return st.err();
    }
    if (!g.home_station()) {
      return bad(origin, "a grid with [content] needs a station with home = true");
    }
  }
  if (g.auth && g.auth->demo_accounts && !g.all_on_loopback()) {
    return bad(origin, "[auth]: demo_accounts is for a grid on loopback only");
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
  toml::table root;
  root.insert("grid", toml::table{{"heartbeat_interval_ms", heartbeat_interval.count()},
                                  {"heartbeat_timeout_ms", heartbeat_timeout.count()},
                                  {"log_level", log_level}});
  if (registry) {
    root.insert(
        "registry",
        toml::table{{"listen", fmt::format("{}:{}", registry->listen.host, registry->listen.port)},
                    {"database", registry->database},
                    {"secret_dir", registry->secret_dir.string()}});
  }
  if (auth) {
    root.insert("auth",
                toml::table{{"listen", fmt::format("{}:{}", auth->listen.host, auth->listen.port)},
                            {"database", auth->database},
                            {"demo_accounts", auth->demo_accounts}});
  }
  if (content) {
    root.insert(
        "content",
        toml::table{{"listen", fmt::format("{}:{}", content->listen.host, content->listen.port)},
                    {"database", content->database},
                    {"work_dir", content->work_dir.string()}});
  }
  toml::array sts;
  for (auto& s : stations) {
    toml::array engs;
    for (auto& e : s.engines) {
      toml::array dirs;
      for (auto& d : e.data_dirs) {
        dirs.push_back(d.string());
      }
      engs.push_back(
          toml::table{{"name", e.name.str()},
                      {"listen", fmt::format("{}:{}", e.listen.host, e.listen.port)},
                      {"data_dirs", dirs},
                      {"max_streams", static_cast<int64_t>(e.max_streams)},
                      {"max_bytes_per_second", static_cast<int64_t>(e.max_bytes_per_second)},
                      {"max_segment_bytes", static_cast<int64_t>(e.max_segment_bytes)},
                      {"max_disk_bytes", static_cast<int64_t>(e.max_disk_bytes)}});
    }
    sts.push_back(toml::table{
        {"name", s.name.str()},
        {"home", s.home},
        {"x_km", s.x_km},
        {"y_km", s.y_km},
        {"uplink_mbps", static_cast<int64_t>(s.uplink_bits_per_second / 1'000'000)},
        {"director",
         toml::table{
             {"listen", fmt::format("{}:{}", s.director.listen.host, s.director.listen.port)},
             {"data_dir", s.director.data_dir.string()},
             {"copies", static_cast<int64_t>(s.director.copies)},
             {"parallel_copies", static_cast<int64_t>(s.director.parallel_copies)},
             {"hot_load_percent", static_cast<int64_t>(s.director.hot_load_percent)},
             {"replica_idle_seconds", static_cast<int64_t>(s.director.replica_idle.count())},
             {"repair_grace_seconds", static_cast<int64_t>(s.director.repair_grace.count())}}},
        {"engine", engs}});
    if (s.supervisor.port != 0) {
      sts.back().as_table()->insert("supervisor",
                                    fmt::format("{}:{}", s.supervisor.host, s.supervisor.port));
    }
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

bool grid_config::all_on_loopback() const {
  auto loopback = [](const listen_address& a) {
    return a.host == "127.0.0.1" || a.host == "localhost" || a.host == "::1" ||
           a.host.starts_with("127.");
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
