// The operator's dashboard (docs/operations.md, "Dashboard"): the page and its files from the web
// root's dashboard/ folder, the state it polls (GET /v1/dashboard/state, an operator's), gathered
// by polling the stations in the background while someone watches, and the page's login relayed to
// the auth server.
#include <fmt/format.h>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <cmath>

#include "auth/client.h"
#include "net/web_files.h"
#include "registry/impl.h"

namespace vodgrid::registry {

namespace {

using namespace std::chrono_literals;

constexpr auto poll_period = 1s;  // at most one poll of each station a second
constexpr auto watch_time = 60s;  // polling stops this long after the state's last request
constexpr auto poll_deadline = 800ms;
constexpr size_t programs_shown = 50;

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

reply no_dashboard() {
  return net::error_reply(http::status::service_unavailable, "unavailable",
                          "the dashboard's files were not found: set [web] root "
                          "(docs/configuration.md)");
}

}  // namespace

// The web root as the directors find theirs (net::find_web_root), by its dashboard/dashboard.html;
// the clients of the polls and of the login relay.
status registry_daemon::impl::open_dashboard() {
  auto candidates = net::default_web_roots(VODGRID_SOURCE_WEB_DIR);
  auto root = net::find_web_root(grid.web.root, "dashboard/dashboard.html", candidates);
  if (!root) {
    return root.err();
  }
  dash.web_root = std::move(*root);
  if (dash.web_root.empty()) {
    logger->warn("registry: the dashboard's files are not in {} nor {}: /dashboard answers 503",
                 candidates.front().string(), candidates.back().string());
  }
  net::client_options co;
  co.connect_timeout = std::min(grid.timing.connect, std::chrono::milliseconds(poll_deadline));
  co.request_timeout = poll_deadline;
  co.read_timeout = poll_deadline;
  co.max_body = 4 << 20;
  // The directors' engine tables are for operators and the grid's daemons: the registry's token.
  co.bearer = [this] { return auth ? auth->token() : std::string(); };
  dash.client = std::make_unique<net::http_client>(io.get_executor(), co);
  net::client_options lo;
  lo.connect_timeout = grid.timing.connect;
  lo.request_timeout = grid.timing.exchange;
  lo.read_timeout = grid.timing.silence;
  lo.max_body = 64 << 10;
  dash.login = std::make_unique<net::http_client>(io.get_executor(), lo);
  return {};
}

asio::awaitable<reply> registry_daemon::impl::dashboard_page(request_context&) {
  if (dash.web_root.empty()) {
    co_return no_dashboard();
  }
  reply r = net::web_file_reply(dash.web_root, "dashboard/dashboard.html",
                                net::web_content_type(".html"));
  r.headers.emplace_back("Cache-Control", "no-cache");
  // Its own scripts, styles and state only; never framed by another page.
  r.headers.emplace_back("Content-Security-Policy",
                         "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                         "base-uri 'none'; frame-ancestors 'none'");
  co_return r;
}

asio::awaitable<reply> registry_daemon::impl::dashboard_file(request_context& ctx) {
  std::string_view name = ctx.params[0];
  const char* type = net::web_content_type(name);
  if (!net::plain_file_name(name) || !type) {
    co_return net::error_reply(http::status::not_found, "not_found", "no such file: " + ctx.path);
  }
  if (dash.web_root.empty()) {
    co_return no_dashboard();
  }
  reply r = net::web_file_reply(dash.web_root, "dashboard/" + std::string(name), type);
  r.headers.emplace_back("Cache-Control", "no-cache");
  co_return r;
}

// POST /v1/login/operator {"user", "password"}: the auth server's operator login, relayed, so that
// the page speaks only to its own origin (as the watch page's login at a director).
asio::awaitable<reply> registry_daemon::impl::operator_login(request_context& ctx) {
  if (!grid.auth) {
    co_return net::error_reply(http::status::not_found, "not_found",
                               "this grid has no auth server: the dashboard needs no login");
  }
  boost::system::error_code ec;
  auto v = json::parse(ctx.req.body(), ec);
  auto* o = !ec && v.is_object() ? &v.as_object() : nullptr;
  auto* user = o ? o->if_contains("user") : nullptr;
  auto* password = o ? o->if_contains("password") : nullptr;
  if (!user || !password || !user->is_string() || !password->is_string() || o->size() != 2) {
    co_return net::error_reply(http::status::bad_request, "invalid_argument",
                               R"(the body must be {"user": "...", "password": "..."})");
  }
  auto r = co_await auth::login(*dash.login, grid.auth->listen.url(), auth::token_kind::operator_,
                                std::string(user->as_string()), std::string(password->as_string()));
  if (!r) {
    co_return net::error_reply(make_error(r.err().code, "auth: " + r.err().detail));
  }
  reply rep = net::json_reply(
      json::object{{"token", r->token}, {"subject", r->subject}, {"expires_at", r->expires_at}});
  rep.headers.emplace_back("Cache-Control", "no-store");
  co_return rep;
}

// GET /v1/dashboard/state: what the last polls saw. The first request starts the polls; the state
// then fills within a second or so (a station not polled yet says "reachable": null).
asio::awaitable<reply> registry_daemon::impl::dashboard_state_reply(request_context&) {
  dash.last_asked = steady::now();
  if (!dash.polling && !stopping) {
    dash.polling = true;
    tasks.spawn(dashboard_loop());
  }
  reply r = net::json_reply(dashboard_json());
  r.headers.emplace_back("Cache-Control", "no-store");
  co_return r;
}

// Once a second while watched: a poll of each director, supervisor and engine not still being
// polled (each a task of its own, so a hung one delays no other), the link rates, the progress.
asio::awaitable<void> registry_daemon::impl::dashboard_loop() {
  while (!stopping && steady::now() - dash.last_asked < watch_time) {
    auto began = steady::now();
    for (auto& s : grid.stations) {
      auto& sp = dash.stations[s.name.str()];
      if (!sp.in_flight) {
        sp.in_flight = true;
        tasks.spawn(poll_director(s.name.str()));
      }
      if (s.supervisor.port != 0 && !sp.supervisor_in_flight) {
        sp.supervisor_in_flight = true;
        tasks.spawn(poll_supervisor(s.name.str()));
      }
      for (auto& e : s.engines) {
        auto& ep = dash.engines[e.name.str()];
        if (!ep.in_flight) {
          ep.in_flight = true;
          tasks.spawn(probe_engine(e.name.str()));
        }
      }
    }
    for (auto& [link, bytes] : dash.link_bytes) {
      dash.link_rates[link].sample(began, bytes);
    }
    if (!dash.progress_in_flight) {
      dash.progress_in_flight = true;
      tasks.spawn(refresh_progress());
    }
    auto rest = began + poll_period - steady::now();
    if (rest > steady::duration::zero() && co_await stop_requested.wait_for(rest)) {
      break;
    }
  }
  dash.polling = false;
}

asio::awaitable<void> registry_daemon::impl::poll_director(std::string station) {
  const auto* cfg = grid.find_station(station);
  auto r = co_await dash.client->get(cfg->director.listen.url() + "/v1/engines");
  auto& sp = dash.stations[station];
  sp.in_flight = false;
  sp.at_ms = unix_ms();
  result<director_view> v =
      !r ? result<director_view>(r.err())
      : r->status != 200
          ? make_error(errc::protocol_error, fmt::format("GET /v1/engines: HTTP {}", r->status))
          : parse_director_engines(r->body);
  bool was = sp.reachable.value_or(true);
  sp.reachable = v.has_value();
  if (v) {
    sp.view = std::move(*v);
    sp.error.clear();
  } else {
    sp.view.reset();  // what it said before is stale: its engines are as their probes say
    sp.error = v.err().detail;
  }
  if (was != *sp.reachable) {
    dash.events.add({unix_ms(), *sp.reachable ? "director_reachable" : "director_unreachable",
                     station, station, *sp.reachable ? "answers again" : sp.error});
  }
  compare_station(*cfg);
}

asio::awaitable<void> registry_daemon::impl::poll_supervisor(std::string station) {
  const auto* cfg = grid.find_station(station);
  auto r = co_await dash.client->get(cfg->supervisor.url() + "/healthz");
  auto& sp = dash.stations[station];
  sp.supervisor_in_flight = false;
  if (!r || r->status != 200) {
    co_return;  // the restarts counted so far stand; the director's poll says if the host is gone
  }
  auto restarts = parse_supervisor_restarts(r->body);
  if (!restarts) {
    co_return;
  }
  if (sp.restarts) {
    for (auto& [blade, n] : *restarts) {
      auto it = sp.restarts->find(blade);
      uint64_t before = it == sp.restarts->end() ? 0 : it->second;
      if (n > before) {
        dash.events.add({unix_ms(), "restart", station, blade,
                         fmt::format("restarted by its supervisor ({} in all)", n)});
      }
    }
  }
  sp.restarts = std::move(*restarts);
}

asio::awaitable<void> registry_daemon::impl::probe_engine(std::string engine) {
  const auto* cfg = grid.find_engine(engine);
  auto r = co_await dash.client->get(cfg->listen.url() + "/metrics");
  auto& ep = dash.engines[engine];
  ep.in_flight = false;
  ep.answers = r && r->status == 200;
  if (*ep.answers) {
    auto served = parse_served_bytes(r->body);
    ep.counts_bytes = served.has_value();
    if (served) {
      ep.served.sample(steady::now(), *served);
    }
  }
  compare_station(*grid.station_of_engine(engine));
}

// Each engine's status now against the last one shown: a change is an event (an engine first seen
// up is none; first seen down is one).
void registry_daemon::impl::compare_station(const station_config& s) {
  auto& sp = dash.stations[s.name.str()];
  for (auto& e : s.engines) {
    std::optional<bool> in_rotation;
    if (sp.view) {
      for (auto& ev : sp.view->engines) {
        if (ev.name == e.name.str()) {
          in_rotation = ev.in_rotation;
        }
      }
      in_rotation = in_rotation.value_or(false);  // not in its director's table: never beat
    }
    auto now = status_of(in_rotation, dash.engines[e.name.str()].answers);
    auto& shown = dash.shown[e.name.str()];
    if (now != shown && now != engine_status::unknown &&
        !(shown == engine_status::unknown && now == engine_status::up)) {
      bool up = now == engine_status::up;
      dash.events.add({unix_ms(), up ? "engine_up" : "engine_down", s.name.str(), e.name.str(),
                       up ? "in rotation and answering"
                          : (in_rotation.value_or(true) ? "does not answer its /metrics"
                                                        : "out of its director's rotation")});
    }
    if (now != engine_status::unknown) {
      shown = now;
    }
  }
}

asio::awaitable<void> registry_daemon::impl::refresh_progress() {
  auto page = co_await on_db([this] { return progress_page(); });
  dash.progress_in_flight = false;
  if (!page) {
    logger->warn("registry: the dashboard's programs: {}", page.err().detail);
    co_return;  // the last page stands
  }
  dash.programs = std::move(page->first);
  dash.programs_total = page->second;
}

// On the database thread: the first programs_shown programs by id, each with its segments and,
// per station, how many it holds whole and whether it is a target; and how many programs there are.
result<std::pair<json::array, uint64_t>> registry_daemon::impl::progress_page() {
  json::array out;
  auto page = db->program_page(programs_shown);
  if (!page) {
    return page.err();
  }
  for (auto& p : page->first) {
    out.push_back(program_progress(p));
  }
  return std::pair(std::move(out), page->second);
}

// On the database thread: one program's progress. A program of several renditions counts the
// segments of them all. One whose rows cannot be read says so rather than hiding the others.
json::object registry_daemon::impl::program_progress(const program_record& p) {
  json::object o{{"id", p.id.str()}};
  std::vector<program_id> parts{p.id};
  auto n = segment_count(p.id);
  if (n && *n && **n == 0) {
    auto rec = db->program(p.id);
    auto m = rec && *rec ? api::decode<api::program_manifest>((*rec)->manifest_json)
                         : result<api::program_manifest>(make_error(errc::not_found, "gone"));
    if (m) {
      parts.clear();
      for (auto& r : m->renditions) {
        if (auto id = api::rendition_id(p.id, r.name)) {
          parts.push_back(*id);
        }
      }
      o["renditions"] = parts.size();
    }
  }
  uint64_t segments = 0;
  std::map<std::string, uint64_t> held;
  for (auto& id : parts) {
    auto count = segment_count(id);
    auto counts = db->counts(id);
    if (!count || !counts) {
      o["error"] = !count ? count.err().detail : counts.err().detail;
      return o;
    }
    segments += count->value_or(0);
    for (auto& [station, h] : *counts) {
      held[station] += h;
    }
  }
  api::distribution d;
  d.targets = p.targets;
  auto targets = targets_of(d);
  o["segments"] = segments;
  json::array stations;
  for (auto& s : grid.stations) {
    auto name = s.name.str();
    bool target = s.home || std::find(targets.begin(), targets.end(), name) != targets.end();
    stations.push_back(json::object{{"name", name}, {"held", held[name]}, {"target", target}});
  }
  o["stations"] = std::move(stations);
  return o;
}

}  // namespace vodgrid::registry

namespace vodgrid::registry {

namespace {

// One engine: its status, and its figures as its director reports them (zeros when it does not),
// but for the bytes per second, measured from its own counter of segment bytes served where it
// has one (the heartbeat's figure is that of its last heartbeat interval only).
json::object engine_json(const engine_config& e, const engine_view* v,
                         std::optional<bool> in_rotation, const engine_probe& probe) {
  auto opt = [](std::optional<bool> b) { return b ? json::value(*b) : json::value(nullptr); };
  json::object o{{"name", e.name.str()},
                 {"status", to_string(status_of(in_rotation, probe.answers))},
                 {"in_rotation", opt(in_rotation)},
                 {"answers", opt(probe.answers)}};
  engine_view none;
  const auto& ev = v ? *v : none;
  o["streams"] = ev.streams;
  o["bytes_per_second"] = probe.counts_bytes ? std::round(probe.served.per_second())
                                             : static_cast<double>(ev.bytes_per_second);
  o["free_bytes"] = ev.free_bytes;
  o["total_bytes"] = ev.total_bytes;
  o["used_bytes"] = ev.used_bytes;
  o["segments"] = ev.segments;
  o["filling"] = ev.filling;
  o["reported"] = v != nullptr;  // its director reported it (else the zeros are not known)
  return o;
}

}  // namespace

json::object registry_daemon::impl::dashboard_json() {
  json::array stations_out, hottest;
  std::vector<std::pair<double, json::object>> hot_all;
  for (auto& s : grid.stations) {
    auto name = s.name.str();
    auto& sp = dash.stations[name];
    auto l = stations.count(name) ? stations.at(name) : live{};
    json::object so{{"name", name},
                    {"home", s.home},
                    {"x_km", s.x_km},
                    {"y_km", s.y_km},
                    {"director_url", s.director.listen.url()},
                    {"reporting", is_up(name)},
                    {"load", l.load},
                    {"sending_bits_per_second", l.sending_bits_per_second}};
    so["director"] = json::object{
        {"reachable", sp.reachable ? json::value(*sp.reachable) : json::value(nullptr)},
        {"error", sp.error},
        {"polled_at_ms", sp.at_ms}};
    so["under_replicated"] =
        sp.view ? json::value(sp.view->under_replicated) : json::value(nullptr);
    if (sp.restarts) {
      uint64_t n = 0;
      for (auto& [blade, r] : *sp.restarts) {
        n += r;
      }
      so["restarts"] = n;
    } else {
      so["restarts"] = nullptr;  // no supervisor answers for the station
    }
    json::array engines;
    for (auto& e : s.engines) {
      const engine_view* v = nullptr;
      std::optional<bool> in_rotation;
      if (sp.view) {
        in_rotation = false;
        for (auto& ev : sp.view->engines) {
          if (ev.name == e.name.str()) {
            v = &ev;
            in_rotation = ev.in_rotation;
          }
        }
      }
      engines.push_back(engine_json(e, v, in_rotation, dash.engines[e.name.str()]));
    }
    so["engines"] = std::move(engines);
    json::array hot;
    for (auto& h : sp.view ? sp.view->hot : std::vector<hot_segment>{}) {
      hot.push_back(json::object{{"segment", h.segment}, {"requests", h.requests}});
      hot_all.emplace_back(
          h.requests,
          json::object{{"station", name}, {"segment", h.segment}, {"requests", h.requests}});
    }
    so["hot"] = std::move(hot);
    stations_out.push_back(std::move(so));
  }
  std::stable_sort(hot_all.begin(), hot_all.end(),
                   [](auto& a, auto& b) { return a.first > b.first; });
  for (size_t i = 0; i < hot_all.size() && i < 10; ++i) {
    hottest.push_back(std::move(hot_all[i].second));
  }
  json::object o{{"generated_at_ms", unix_ms()},
                 {"poll_interval_ms",
                  std::chrono::duration_cast<std::chrono::milliseconds>(poll_period).count()},
                 {"stations", std::move(stations_out)},
                 {"hot_segments", std::move(hottest)}};
  o["links"] = links_json();
  o["programs"] = dash.programs;
  o["programs_total"] = dash.programs_total;
  json::array events;
  auto& log = dash.events.events();
  for (auto it = log.rbegin(); it != log.rend(); ++it) {
    events.push_back(it->to_json());  // newest first
  }
  o["events"] = std::move(events);
  return o;
}

// The links between stations: each pair copies have gone over since the registry started, plus the
// home's link to every other station (where copies come from first), with its bytes so far and its
// bytes per second over the last seconds.
json::array registry_daemon::impl::links_json() {
  auto links = dash.link_bytes;
  if (auto* home = grid.home_station()) {
    for (auto& s : grid.stations) {
      if (!s.home) {
        links.try_emplace({home->name.str(), s.name.str()}, 0);
      }
    }
  }
  json::array out;
  for (auto& [link, bytes] : links) {
    auto it = dash.link_rates.find(link);
    double rate = it == dash.link_rates.end() ? 0 : it->second.per_second();
    out.push_back(json::object{{"from", link.first},
                               {"to", link.second},
                               {"bytes_total", bytes},
                               {"bytes_per_second", std::round(rate)}});
  }
  return out;
}

}  // namespace vodgrid::registry
