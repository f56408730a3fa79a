// The registry daemon's HTTP handlers. Database work runs on a thread of its own (db_pool); the
// live view of the stations (load, measured copy throughput) lives on the io thread.
#include "registry/registry.h"

#include <fmt/format.h>
#include <boost/asio/thread_pool.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <map>
#include <set>

#include "api/api.h"
#include "auth/guard.h"
#include "auth/session.h"
#include "base/log.h"
#include "net/client.h"
#include "net/daemon.h"
#include "net/http.h"
#include "net/run_on.h"
#include "registry/cost.h"
#include "registry/location_db.h"

namespace vodgrid::registry {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using net::reply;
using net::request_context;
using steady = std::chrono::steady_clock;

namespace {
// Telling a station to hold a program is retried, the wait doubling from the first to the last.
constexpr auto notify_first_wait = std::chrono::milliseconds(200);
constexpr auto notify_max_wait = std::chrono::seconds(5);
}  // namespace

struct registry_daemon::impl : net::daemon_base {
  grid_config grid;
  std::shared_ptr<spdlog::logger> logger = log::get("registry");
  std::unique_ptr<net::http_client> client;
  std::unique_ptr<auth::service_session> auth;  // with [auth]: its token, and the keys it checks
  asio::thread_pool db_pool{1};
  std::unique_ptr<location_db> db;
  cost_model costs;

  struct live {
    steady::time_point last_report{};
    double load = 0;
    uint64_t sending_bits_per_second = 0;
    uint32_t engines_up = 0;
    double copy_bits_per_second = 0;  // EWMA of copies from this station
  };
  std::map<std::string, live> stations;  // io thread only
  // What ends a notification's retries, io thread only: the station registering again (it is then
  // told everything afresh) or the program being put again (its targets are told afresh).
  std::map<std::string, uint64_t> registrations;  // station → registrations since start
  std::map<std::string, uint64_t> distributions;  // program → puts since start
  // Segment counts of the programs the registry knows, so that checking a report's indices parses
  // no manifest; database thread only (filled by put_program, and from the database on first need).
  std::map<program_id, uint32_t> segment_counts;

  net::metric_value* reports = nullptr;
  net::metric_value* changes = nullptr;
  net::metric_value* lookups = nullptr;

  impl(asio::io_context& i, grid_config g) : daemon_base(i), grid(std::move(g)) {}
  ~impl() { db_pool.join(); }

  // Runs `f` on the database thread and resumes on the io thread.
  template <class F>
  asio::awaitable<std::invoke_result_t<F>> on_db(F f) {
    return net::run_on(db_pool, std::move(f), errc::io_error, "database: ");  // a malformed row
  }

  bool is_up(const std::string& station) const {
    auto it = stations.find(station);
    return it != stations.end() &&
           steady::now() - it->second.last_report < grid.timing.station_silence;
  }

  void on_stop() override {
    if (auth) {
      auth->stop();
    }
  }
  void routes();
  asio::awaitable<reply> put_station(request_context& ctx);
  asio::awaitable<reply> report(request_context& ctx);
  asio::awaitable<reply> list_stations(request_context& ctx);
  asio::awaitable<reply> put_program(request_context& ctx);
  asio::awaitable<reply> list_programs(request_context& ctx);
  asio::awaitable<reply> get_program(request_context& ctx);
  asio::awaitable<reply> sources(request_context& ctx);
  asio::awaitable<reply> station_held(request_context& ctx);
  asio::awaitable<result<api::program_manifest>> manifest_with(const program_id& id,
                                                               segment_index idx);
  asio::awaitable<reply> locations(request_context& ctx);
  asio::awaitable<reply> set_availability(request_context& ctx);
  asio::awaitable<reply> grid_info(request_context& ctx);
  asio::awaitable<void> notify(std::string director_url, std::string station, api::distribution d);
  std::vector<std::string> targets_of(const api::distribution& d) const;
  status check_indices(const std::vector<location_change>& list);
};

registry_daemon::registry_daemon(asio::io_context& io, grid_config grid)
    : impl_(std::make_unique<impl>(io, std::move(grid))) {}

registry_daemon::~registry_daemon() = default;

uint16_t registry_daemon::port() const {
  return impl_->port;
}

status registry_daemon::start() {
  auto& d = *impl_;
  if (!d.grid.registry) {
    return make_error(errc::invalid_argument, "the config has no [registry]");
  }
  auto db = location_db::open(d.grid.registry->database);
  if (!db) {
    return db.err();
  }
  d.db = std::move(*db);
  d.server = std::make_unique<net::http_server>(d.io.get_executor(), "registry");
  net::client_options co;
  co.connect_timeout = d.grid.timing.connect;
  co.read_timeout = d.grid.timing.silence;
  co.request_timeout = d.grid.timing.exchange;
  co.bearer = [&d] { return d.auth ? d.auth->token() : std::string(); };  // to the directors
  d.client = std::make_unique<net::http_client>(d.io.get_executor(), co);
  if (d.grid.auth) {
    auto accounts = auth::service_accounts(d.grid);
    if (!accounts) {
      return accounts.err();
    }
    for (auto& a : *accounts) {
      if (a.name == "registry") {
        d.auth = std::make_unique<auth::service_session>(
            d.io.get_executor(), d.grid.auth->listen.url(), a.name, a.secret_dir, "registry");
      }
    }
    if (auto st = d.auth->start(); !st) {
      return st;
    }
  }
  d.routes();
  if (auto st = d.listen(d.grid.registry->listen.host, d.grid.registry->listen.port); !st) {
    return st;
  }
  d.logger->info("registry: listening on {}:{}, database {}", d.grid.registry->listen.host, d.port,
                 d.db->connection().kind() == db::dialect::sqlite ? "SQLite" : "PostgreSQL");
  return {};
}

// Notifications still retrying end at once (they sleep on stop_requested); one still sending is
// abandoned at the deadline: a station told nothing is told again when it next registers.
asio::awaitable<void> registry_daemon::stop(std::chrono::milliseconds drain) {
  co_await impl_->stop(drain);
}

void registry_daemon::impl::routes() {
  using V = http::verb;
  // With an auth server: stations register and report with their director's token; programs and
  // their availability come from an operator or the content manager.
  using K = auth::token_kind;
  auto guarded = [this](V v, std::string pattern,
                        asio::awaitable<reply> (impl::*fn)(request_context&), uint64_t limit,
                        std::vector<K> kinds) {
    server->route(v, std::move(pattern), auth::guarded(auth.get(), std::move(kinds), bind(fn)),
                  limit);
  };
  guarded(V::put, "/v1/stations/{}", &impl::put_station, 0, {K::engine});
  guarded(V::post, "/v1/stations/{}/report", &impl::report, 256ull << 20, {K::engine});
  route(V::get, "/v1/stations", &impl::list_stations);
  route(V::get, "/v1/stations/{}/held", &impl::station_held);
  guarded(V::put, "/v1/programs/{}", &impl::put_program, 256ull << 20, {K::engine, K::operator_});
  route(V::get, "/v1/programs", &impl::list_programs);
  route(V::get, "/v1/programs/{}", &impl::get_program);
  route(V::get, "/v1/programs/{}/segments/{}/sources", &impl::sources);
  route(V::get, "/v1/programs/{}/segments/{}/locations", &impl::locations);
  guarded(V::post, "/v1/programs/{}/availability", &impl::set_availability, 0,
          {K::engine, K::operator_});
  route(V::get, "/v1/grid", &impl::grid_info);
  server->set_health([this] {
    size_t up = 0;
    for (auto& [name, l] : stations) {
      up += is_up(name) ? 1 : 0;
    }
    return json::object{{"role", "registry"}, {"stations_up", up}};
  });
  auto& m = server->metrics();
  reports = &m.counter("vodgrid_registry_reports_total", "Station reports received");
  changes = &m.counter("vodgrid_registry_location_changes_total", "Location changes recorded");
  lookups = &m.counter("vodgrid_registry_source_lookups_total", "Source lookups answered");
}

std::vector<std::string> registry_daemon::impl::targets_of(const api::distribution& d) const {
  if (!d.targets.empty()) {
    return d.targets;
  }
  std::vector<std::string> all;
  for (auto& s : grid.stations) {
    if (!s.home) {
      all.push_back(s.name.str());
    }
  }
  return all;
}

asio::awaitable<reply> registry_daemon::impl::put_station(request_context& ctx) {
  auto r = api::decode<api::station_registration>(ctx.req.body());
  if (!r) {
    co_return net::error_reply(r.err());
  }
  if (r->name.str() != ctx.params[0]) {
    co_return net::error_reply(
        make_error(errc::invalid_argument, "the station in the body is not the one in the path"));
  }
  auto* cfg = grid.find_station(r->name.str());
  if (!cfg) {
    co_return net::error_reply(
        make_error(errc::forbidden, "no station " + r->name.str() + " in the grid"));
  }
  if (auto u = net::parse_http_url(r->director_url); !u) {
    co_return net::error_reply(u.err());
  }
  // What the grid config says of the station wins over the body: a registration can neither send
  // copies elsewhere nor move the station or widen its uplink in the cost model.
  r->director_url = cfg->director.listen.url();
  station_record rec{r->name,   r->director_url, cfg->home,
                     cfg->x_km, cfg->y_km,       cfg->uplink_bits_per_second};
  auto st = co_await on_db([&] { return db->put_station(rec); });
  if (!st) {
    co_return net::error_reply(st.err());
  }
  stations[r->name.str()].last_report = steady::now();
  ++registrations[r->name.str()];
  logger->info("registry: station {} registered at {}", r->name.str(), r->director_url);
  // Catch-up: everything this station must hold, told again (it may have missed it while down).
  auto progs = co_await on_db([&] { return db->programs(); });
  size_t told = 0;
  if (progs) {
    for (auto& p : *progs) {
      auto m = api::decode<api::program_manifest>(p.manifest_json);
      if (!m) {
        continue;
      }
      api::distribution d{std::move(*m), p.targets, p.prefetch};
      auto targets = targets_of(d);
      if (std::find(targets.begin(), targets.end(), r->name.str()) != targets.end()) {
        tasks.spawn(notify(r->director_url, r->name.str(), std::move(d)));
        ++told;
      }
    }
  }
  co_return net::json_reply(json::object{{"station", r->name.str()}, {"programs", told}});
}

asio::awaitable<reply> registry_daemon::impl::report(request_context& ctx) {
  auto name = station_id::parse(ctx.params[0]);
  auto* cfg = name ? grid.find_station(name->str()) : nullptr;
  if (!cfg) {
    co_return net::error_reply(
        make_error(errc::forbidden, "no station " + ctx.params[0] + " in the grid"));
  }
  auto it = stations.find(name->str());
  if (it == stations.end()) {
    co_return net::error_reply(
        make_error(errc::conflict, "station " + name->str() + " has not registered"));
  }
  auto r = api::decode<api::station_report>(ctx.req.body());
  if (!r) {
    co_return net::error_reply(r.err());
  }
  if (!r->changes.empty()) {
    std::vector<location_change> list;
    list.reserve(r->changes.size());
    for (auto& c : r->changes) {
      location_change lc{c.key, c.held, std::nullopt, c.filling};
      if (!c.engine.empty()) {
        // A station speaks only for its own engines: the config says which those are.
        auto it = std::find_if(cfg->engines.begin(), cfg->engines.end(),
                               [&](auto& e) { return e.name.str() == c.engine; });
        if (it == cfg->engines.end()) {
          co_return net::error_reply(
              make_error(errc::invalid_argument,
                         fmt::format("engine {} is not an engine of station {} (change of {})",
                                     c.engine, name->str(), c.key.str())));
        }
        lc.engine = it->name;
      }
      list.push_back(std::move(lc));
    }
    auto st = co_await on_db([&]() -> status {
      if (auto checked = check_indices(list); !checked) {
        return checked;
      }
      return db->apply(*name, list);
    });
    if (!st) {
      if (st.err().code == errc::invalid_argument) {
        logger->warn("registry: report of {} refused: {}", name->str(), st.err().detail);
      } else {
        logger->error("registry: recording {} changes of {}: {}", list.size(), name->str(),
                      st.err().detail);
      }
      co_return net::error_reply(st.err());
    }
    changes->inc(static_cast<double>(list.size()));
  }
  auto& l = stations[name->str()];
  l.last_report = steady::now();
  l.load = r->load;
  l.sending_bits_per_second = r->sending_bits_per_second;
  l.engines_up = r->engines_up;
  for (auto& c : r->copies) {
    // Only stations that registered have a live entry; a sample naming another is ignored.
    auto src_it = stations.find(c.source.str());
    if (c.seconds > 0 && c.bytes > 0 && src_it != stations.end()) {
      auto& src = src_it->second;
      double bps = static_cast<double>(c.bytes) * 8 / c.seconds;
      src.copy_bits_per_second =
          src.copy_bits_per_second == 0 ? bps : 0.8 * src.copy_bits_per_second + 0.2 * bps;
    }
  }
  reports->inc();
  co_return net::json_reply(json::object{{"recorded", r->changes.size()}});
}

// On the database thread. Refuses a copy gained past the end of a program the registry knows. A
// program it does not know yet passes: the home station reports a program's locations before
// ingest sends its distribution. A loss past the end passes too: it can only clear a location
// recorded while the program was longer, and refusing it would leave that location for ever.
status registry_daemon::impl::check_indices(const std::vector<location_change>& list) {
  std::set<program_id> unknown;
  for (auto& c : list) {
    if (!c.held) {
      continue;
    }
    auto& program = c.key.program;
    auto it = segment_counts.find(program);
    if (it == segment_counts.end()) {
      if (unknown.count(program)) {
        continue;
      }
      auto p = db->program(program);
      if (!p) {
        return p.err();
      }
      if (!*p) {
        unknown.insert(program);
        continue;
      }
      auto m = api::decode<api::program_manifest>((*p)->manifest_json);
      if (!m) {
        return make_error(errc::io_error, "the stored manifest of " + program.str() +
                                              " does not decode: " + m.err().detail);
      }
      it = segment_counts.emplace(program, static_cast<uint32_t>(m->segments.size())).first;
    }
    if (c.key.index.v >= it->second) {
      return make_error(errc::invalid_argument,
                        fmt::format("program {} has {} segments: there is no segment {}",
                                    program.str(), it->second, c.key.index.v));
    }
  }
  return {};
}

asio::awaitable<reply> registry_daemon::impl::list_stations(request_context&) {
  auto recs = co_await on_db([&] { return db->stations(); });
  if (!recs) {
    co_return net::error_reply(recs.err());
  }
  json::array a;
  for (auto& s : *recs) {
    auto l = stations.count(s.name.str()) ? stations.at(s.name.str()) : live{};
    a.push_back(json::object{{"name", s.name.str()},
                             {"director_url", s.director_url},
                             {"home", s.home},
                             {"up", is_up(s.name.str())},
                             {"x_km", s.x_km},
                             {"y_km", s.y_km},
                             {"uplink_bits_per_second", s.uplink_bits_per_second},
                             {"sending_bits_per_second", l.sending_bits_per_second},
                             {"load", l.load},
                             {"engines_up", l.engines_up},
                             {"copy_bits_per_second", l.copy_bits_per_second}});
  }
  co_return net::json_reply(json::object{{"stations", a}});
}

// Tells a target station what it must hold, until it answers 2xx. Retries go on, the wait
// doubling up to notify_max_wait, as long as the registry runs and neither the station registered
// again nor the program was put again since (each starts notifications of its own). While the
// station is down (silent), nothing is sent: it is told once it reports again.
asio::awaitable<void> registry_daemon::impl::notify(std::string director_url, std::string station,
                                                    api::distribution d) {
  std::string program = d.manifest.id.str();
  std::string body = json::serialize(api::to_json(d));
  std::string url = fmt::format("{}/v1/programs/{}/distribute", director_url, program);
  uint64_t registration = registrations[station];
  uint64_t distribution = distributions[program];
  auto current = [&] {
    return !stopping && registrations[station] == registration &&
           distributions[program] == distribution;
  };
  std::chrono::milliseconds wait = notify_first_wait;
  bool told = false;
  for (int failures = 0; current();) {
    if (is_up(station)) {
      auto r = co_await client->send_json(http::verb::post, url, body);
      if (r && r->status < 300) {
        told = true;
        logger->info("registry: station {} told to hold program {}", station, program);
        break;
      }
      // The first failure and then every tenth: a station down for long must not flood the log.
      if (failures++ % 10 == 0) {
        logger->warn("registry: telling station {} about {} failed ({}); retrying", station,
                     program, r ? std::to_string(r->status) : r.err().detail);
      }
    }
    co_await stop_requested.wait_for(wait);
    wait = std::min<std::chrono::milliseconds>(wait * 2, notify_max_wait);
  }
  if (!told) {
    logger->info("registry: station {} not told about {} by this notification ({})", station,
                 program,
                 stopping ? "the registry stops; it is told when it registers again"
                          : "superseded by a newer registration or distribution");
  }
}

asio::awaitable<reply> registry_daemon::impl::put_program(request_context& ctx) {
  auto d = api::decode<api::distribution>(ctx.req.body());
  if (!d) {
    co_return net::error_reply(d.err());
  }
  if (d->manifest.id.str() != ctx.params[0]) {
    co_return net::error_reply(
        make_error(errc::invalid_argument, "the program in the body is not the one in the path"));
  }
  for (auto& t : d->targets) {
    auto* s = grid.find_station(t);
    if (!s) {
      co_return net::error_reply(make_error(errc::not_found, "no station " + t + " in the grid"));
    }
  }
  d->manifest.state.clear();
  program_record rec{d->manifest.id, json::serialize(api::to_json(d->manifest)), d->targets,
                     d->prefetch};
  auto segments = static_cast<uint32_t>(d->manifest.segments.size());
  auto st = co_await on_db([&]() -> status {
    auto put = db->put_program(rec);
    if (put) {
      segment_counts[rec.id] = segments;
    }
    return put;
  });
  if (!st) {
    co_return net::error_reply(st.err());
  }
  // The program as now stored is the one to tell: notifications of an earlier put end.
  ++distributions[d->manifest.id.str()];
  auto recs = co_await on_db([&] { return db->stations(); });
  json::array told;
  for (auto& t : targets_of(*d)) {
    std::string url;
    if (recs) {
      for (auto& s : *recs) {
        url = s.name.str() == t ? s.director_url : url;
      }
    }
    if (url.empty()) {
      continue;  // told when it registers
    }
    told.push_back(json::value(t));
    tasks.spawn(notify(url, t, *d));
  }
  logger->info("registry: program {} ({} segments) to be distributed", d->manifest.id.str(),
               d->manifest.segments.size());
  co_return net::json_reply(json::object{{"program", d->manifest.id.str()}, {"targets", told}});
}

asio::awaitable<reply> registry_daemon::impl::list_programs(request_context&) {
  auto progs = co_await on_db([&] { return db->programs(); });
  if (!progs) {
    co_return net::error_reply(progs.err());
  }
  json::array a;
  for (auto& p : *progs) {
    auto m = api::decode<api::program_manifest>(p.manifest_json);
    if (!m) {
      continue;
    }
    json::array targets;
    for (auto& t : p.targets) {
      targets.push_back(json::value(t));
    }
    a.push_back(json::object{{"id", p.id.str()},
                             {"title", m->title},
                             {"availability", m->availability},
                             {"publish_at", m->publish_at},
                             {"segments", m->segments.size()},
                             {"duration", m->duration()},
                             {"targets", targets}});
  }
  co_return net::json_reply(json::object{{"programs", a}});
}

// GET /v1/stations/{name}/held: per program, how many segments the station holds whole.
asio::awaitable<reply> registry_daemon::impl::station_held(request_context& ctx) {
  auto name = station_id::parse(ctx.params[0]);
  if (!name || !grid.find_station(ctx.params[0])) {
    co_return net::error_reply(
        make_error(errc::not_found, "no station " + ctx.params[0] + " in the grid"));
  }
  auto held = co_await on_db([&] { return db->held_by(*name); });
  if (!held) {
    co_return net::error_reply(held.err());
  }
  json::object programs;
  for (auto& [program, n] : *held) {
    programs[program] = n;
  }
  co_return net::json_reply(json::object{{"station", name->str()}, {"programs", programs}});
}

asio::awaitable<reply> registry_daemon::impl::get_program(request_context& ctx) {
  auto id = program_id::parse(ctx.params[0]);
  if (!id) {
    co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
  }
  auto p = co_await on_db([&] { return db->program(*id); });
  if (!p) {
    co_return net::error_reply(p.err());
  }
  if (!*p) {
    co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
  }
  auto counts = co_await on_db([&] { return db->counts(*id); });
  auto m = api::parse_object((*p)->manifest_json);
  if (!m) {
    co_return net::error_reply(m.err());
  }
  json::object held;
  if (counts) {
    for (auto& [station, n] : *counts) {
      held[station] = n;
    }
  }
  (*m)["held"] = held;
  co_return net::json_reply(*m);
}

// The manifest of a program the registry knows that has segment `idx`; errc::not_found otherwise.
asio::awaitable<result<api::program_manifest>> registry_daemon::impl::manifest_with(
    const program_id& id, segment_index idx) {
  auto p = co_await on_db([&] { return db->program(id); });
  if (!p) {
    co_return p.err();
  }
  if (!*p) {
    co_return make_error(errc::not_found, "no such program: " + id.str());
  }
  auto m = api::decode<api::program_manifest>((*p)->manifest_json);
  if (!m || idx.v >= m->segments.size()) {
    co_return make_error(errc::not_found,
                         fmt::format("program {} has no segment {}", id.str(), idx.v));
  }
  co_return std::move(*m);
}

asio::awaitable<reply> registry_daemon::impl::sources(request_context& ctx) {
  auto id = program_id::parse(ctx.params[0]);
  auto idx = segment_index::parse(ctx.params[1]);
  auto seeker_name = std::string(ctx.query_param("for"));
  auto* seeker_cfg = grid.find_station(seeker_name);
  if (!id || !idx) {
    co_return net::error_reply(
        make_error(errc::invalid_argument, "bad program or segment in " + ctx.path));
  }
  if (!seeker_cfg) {
    co_return net::error_reply(
        make_error(errc::invalid_argument, "'for' must name a station of the grid"));
  }
  auto m = co_await manifest_with(*id, *idx);
  if (!m) {
    co_return net::error_reply(m.err());
  }
  segment_key key{*id, *idx};
  auto holders = co_await on_db([&] { return db->holders(key); });
  auto recs = co_await on_db([&] { return db->stations(); });
  if (!holders || !recs) {
    co_return net::error_reply(!holders ? holders.err() : recs.err());
  }
  std::map<std::string, std::string> urls;
  std::vector<station_inputs> inputs;
  for (auto& h : *holders) {
    for (auto& s : *recs) {
      if (s.name.str() != h) {
        continue;
      }
      auto l = stations.count(h) ? stations.at(h) : live{};
      station_inputs in;
      in.name = h;
      in.home = s.home;
      in.up = is_up(h);
      in.x_km = s.x_km;
      in.y_km = s.y_km;
      in.uplink_bits_per_second = s.uplink_bits_per_second;
      in.sending_bits_per_second = l.sending_bits_per_second;
      in.load = l.load;
      in.copy_bits_per_second = l.copy_bits_per_second;
      inputs.push_back(in);
      urls[h] = s.director_url;
    }
  }
  station_inputs seeker;
  seeker.name = seeker_name;
  seeker.x_km = seeker_cfg->x_km;
  seeker.y_km = seeker_cfg->y_km;
  json::array out;
  for (auto& [in, b] : costs.rank(inputs, seeker, m->segments[idx->v].size)) {
    out.push_back(json::object{
        {"station", in.name},
        {"director_url", urls[in.name]},
        {"cost", b.cost},
        {"inputs", json::object{{"available_bits_per_second", b.available_bits_per_second},
                                {"distance_km", b.distance_km},
                                {"transfer_seconds", b.transfer_seconds},
                                {"latency_seconds", b.latency_seconds},
                                {"load_factor", b.load_factor},
                                {"home_penalty_seconds", b.home_penalty_seconds}}}});
  }
  lookups->inc();
  co_return net::json_reply(
      json::object{{"program", id->str()}, {"index", idx->v}, {"sources", out}});
}

// GET /v1/programs/{id}/segments/{n}/locations: where the segment lives, per station and engine,
// filling copies included (operators and tools; sources() is what directors use).
asio::awaitable<reply> registry_daemon::impl::locations(request_context& ctx) {
  auto id = program_id::parse(ctx.params[0]);
  auto idx = segment_index::parse(ctx.params[1]);
  if (!id || !idx) {
    co_return net::error_reply(
        make_error(errc::invalid_argument, "bad program or segment in " + ctx.path));
  }
  auto m = co_await manifest_with(*id, *idx);
  if (!m) {
    co_return net::error_reply(m.err());
  }
  segment_key key{*id, *idx};
  auto where = co_await on_db([&] { return db->locations(key); });
  if (!where) {
    co_return net::error_reply(where.err());
  }
  json::array out;
  for (auto& s : *where) {
    json::array engines, filling;
    for (auto& e : s.engines) {
      engines.push_back(json::value(e));
    }
    for (auto& e : s.filling) {
      filling.push_back(json::value(e));
    }
    out.push_back(json::object{{"station", s.station},
                               {"complete", s.complete},
                               {"engines", engines},
                               {"filling", filling}});
  }
  co_return net::json_reply(
      json::object{{"program", id->str()}, {"segment", idx->v}, {"stations", out}});
}

// POST /v1/programs/{id}/availability (content manager → registry): the stored manifest follows, so
// that a station told about the program later (at its registration, say) learns it as it is now.
// The content manager tells the directors itself.
asio::awaitable<reply> registry_daemon::impl::set_availability(request_context& ctx) {
  auto c = api::decode<api::availability_change>(ctx.req.body());
  if (!c) {
    co_return net::error_reply(c.err());
  }
  auto id = program_id::parse(ctx.params[0]);
  if (!id) {
    co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
  }
  auto p = co_await on_db([&] { return db->program(*id); });
  if (!p) {
    co_return net::error_reply(p.err());
  }
  if (!*p) {
    co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
  }
  auto m = api::decode<api::program_manifest>((*p)->manifest_json);
  if (!m) {
    co_return net::error_reply(m.err());
  }
  m->availability = c->availability;
  m->publish_at = c->publish_at;
  auto rec = **p;
  rec.manifest_json = json::serialize(api::to_json(*m));
  auto st = co_await on_db([&] { return db->put_program(rec); });
  if (!st) {
    co_return net::error_reply(st.err());
  }
  logger->info("registry: program {} {}", id->str(), m->availability);
  co_return net::json_reply(api::to_json(*c));
}

// GET /v1/grid: where the grid's services are, for the client commands that know only the
// registry's URL (DESIGN.md: --grid).
asio::awaitable<reply> registry_daemon::impl::grid_info(request_context&) {
  json::object o{{"registry", grid.registry->listen.url()}};
  o["auth"] = grid.auth ? json::value(grid.auth->listen.url()) : json::value(nullptr);
  o["content"] = grid.content ? json::value(grid.content->listen.url()) : json::value(nullptr);
  json::array stations;
  for (auto& s : grid.stations) {
    stations.push_back(json::object{
        {"name", s.name.str()}, {"home", s.home}, {"director_url", s.director.listen.url()}});
  }
  o["stations"] = stations;
  co_return net::json_reply(o);
}

}  // namespace vodgrid::registry
