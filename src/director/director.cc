// The director daemon's HTTP handlers: heartbeats, the program catalog and loader endpoints,
// playlists and segment redirects.
#include "director/director.h"

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/json/serialize.hpp>

#include "api/hls.h"
#include "auth/client.h"
#include "auth/guard.h"
#include "base/fs.h"
#include "director/impl.h"

namespace vodgrid::director {

director_daemon::director_daemon(asio::io_context& io, grid_config grid, station_id station)
    : impl_(std::make_unique<impl>(io, std::move(grid))) {
  impl_->station = impl_->grid.find_station(station.str());
}

director_daemon::~director_daemon() = default;

uint16_t director_daemon::port() const {
  return impl_->port;
}

status director_daemon::start() {
  auto& d = *impl_;
  if (!d.station) {
    return make_error(errc::not_found, "no such station in the config");
  }
  if (auto st = d.load_catalog(); !st) {
    return st;
  }
  d.server =
      std::make_unique<net::http_server>(d.io.get_executor(), "director " + d.station->name.str());
  net::client_options co;
  co.connect_timeout = std::chrono::seconds(1);
  co.request_timeout = std::chrono::seconds(10);
  co.read_timeout = std::chrono::seconds(3);
  co.max_body = 64 << 20;
  // Orders to engines, reports to the registry, copies from other stations: with its token.
  co.bearer = [&d] { return d.auth ? d.auth->token() : std::string(); };
  d.client = std::make_unique<net::http_client>(d.io.get_executor(), co);
  co.request_timeout = std::chrono::seconds(120);  // the order answers when the copy is done
  co.read_timeout = std::chrono::seconds(60);
  d.copy_client = std::make_unique<net::http_client>(d.io.get_executor(), co);
  if (d.grid.auth) {
    d.auth = std::make_unique<auth::service_session>(
        d.io.get_executor(), d.grid.auth->listen.url(), d.station->name.str(),
        d.station->director.data_dir, "director " + d.station->name.str());
    if (auto st = d.auth->start(); !st) {
      return st;
    }
  }
  d.routes();
  auto port = d.server->listen(d.station->director.listen.host, d.station->director.listen.port);
  if (!port) {
    return port.err();
  }
  d.port = *port;
  if (d.grid.registry) {
    asio::co_spawn(d.io, d.registry_loop(), asio::detached);
  }
  asio::co_spawn(d.io, d.maintenance_loop(), asio::detached);
  d.logger->info("director {}: listening on {}:{}, {} programs in the catalog",
                 d.station->name.str(), d.station->director.listen.host, d.port, d.catalog.size());
  return {};
}

asio::awaitable<void> director_daemon::stop(std::chrono::milliseconds drain) {
  auto& d = *impl_;
  d.stopping = true;
  if (d.auth) {
    d.auth->stop();
  }
  auto deadline = steady::now() + drain;
  if (d.server) {
    co_await d.server->stop(drain);
  }
  // Copies and orders still in flight are abandoned at the deadline; the engines finish or drop
  // them on their own, and nothing unfinished was recorded.
  asio::steady_timer t(d.io);
  while (d.background > 0 && steady::now() < deadline) {
    t.expires_after(std::chrono::milliseconds(5));
    co_await t.async_wait(use_tuple);
  }
}

status director_daemon::impl::load_catalog() {
  auto text = read_file(catalog_path(), 1ull << 30);
  if (!text) {
    return text.err().code == errc::not_found ? status{} : status{text.err()};
  }
  auto o = api::parse_object(*text);
  if (!o) {
    return make_error(errc::io_error,
                      fmt::format("{}: {}", catalog_path().string(), o.err().detail));
  }
  auto* progs = o->if_contains("programs");
  if (!progs || !progs->is_array()) {
    return make_error(errc::io_error, catalog_path().string() + ": no 'programs' array");
  }
  for (auto& p : progs->as_array()) {
    auto m =
        p.is_object()
            ? api::from_json<api::program_manifest>(p.as_object())
            : result<api::program_manifest>(make_error(errc::invalid_argument, "not an object"));
    if (!m) {
      return make_error(errc::io_error,
                        fmt::format("{}: {}", catalog_path().string(), m.err().detail));
    }
    catalog[m->id] = std::move(*m);
  }
  return {};
}

status director_daemon::impl::save_catalog() {
  json::array progs;
  for (auto& [id, m] : catalog) {
    progs.push_back(api::to_json(m));
  }
  return write_file_durably(catalog_path(), json::serialize(json::object{{"programs", progs}}));
}

void director_daemon::impl::routes() {
  using V = http::verb;
  auto on = [this](V v, std::string pattern, asio::awaitable<reply> (impl::*fn)(request_context&),
                   uint64_t limit = 0) {
    server->route(
        v, std::move(pattern), [this, fn](request_context& c) { return (this->*fn)(c); }, limit);
  };
  // Control endpoints, with an auth server: an operator's token (a loader) or a daemon's (an
  // engine, the registry, the content manager, another station's director); heartbeats: an
  // engine's.
  using K = auth::token_kind;
  auto guarded = [this](V v, std::string pattern,
                        asio::awaitable<reply> (impl::*fn)(request_context&), uint64_t limit,
                        std::vector<K> kinds) {
    server->route(v, std::move(pattern),
                  auth::guarded(auth.get(), std::move(kinds),
                                [this, fn](request_context& c) { return (this->*fn)(c); }),
                  limit);
  };
  const std::vector<K> service{K::engine, K::operator_};
  guarded(V::post, "/v1/engines/{}/heartbeat", &impl::heartbeat, 512ull << 20, {K::engine});
  on(V::get, "/v1/engines", &impl::list_engines);
  guarded(V::post, "/v1/programs", &impl::create_program, 256ull << 20, service);
  on(V::get, "/v1/programs", &impl::list_programs);
  on(V::get, "/v1/programs/{}", &impl::get_program);
  guarded(V::delete_, "/v1/programs/{}", &impl::delete_program, 0, service);
  guarded(V::post, "/v1/programs/{}/commit", &impl::commit_program, 0, service);
  on(V::get, "/v1/programs/{}/index.m3u8", &impl::playlist);
  on(V::get, "/v1/programs/{}/segments/{}.ts", &impl::segment);
  guarded(V::get, "/v1/programs/{}/segments/{}/holder", &impl::holder, 0, service);
  guarded(V::post, "/v1/programs/{}/distribute", &impl::distribute, 256ull << 20, service);
  guarded(V::post, "/v1/programs/{}/availability", &impl::set_availability, 0, service);
  guarded(V::post, "/v1/engines/{}/evictions", &impl::evictions, 16ull << 20, {K::engine});
  server->set_health([this] {
    auto now = steady::now();
    return json::object{{"role", "director"},
                        {"station", station->name.str()},
                        {"engines_up", tables.up_engines(now).size()},
                        {"programs", catalog.size()},
                        {"under_replicated", under_replicated},
                        {"repairs_in_flight", repairing.size()}};
  });
  auto& m = server->metrics();
  redirects =
      &m.counter("vodgrid_director_redirects_total", "Segment requests redirected to an engine");
  unavailable = &m.counter("vodgrid_director_unavailable_total",
                           "Segment requests with no engine to serve them");
  preload_orders =
      &m.counter("vodgrid_director_preload_orders_total", "Preload orders sent to engines");
  heartbeats = &m.counter("vodgrid_director_heartbeats_total", "Engine heartbeats received");
  replicas_made = &m.counter("vodgrid_director_replicas_total",
                             "Replicas of hot segments ordered (claim 19)", "event=\"made\"");
  replicas_dropped = &m.counter("vodgrid_director_replicas_total",
                                "Replicas of hot segments ordered (claim 19)", "event=\"dropped\"");
  evictions_allowed = &m.counter("vodgrid_director_evictions_total", "Evictions engines asked for",
                                 "result=\"allowed\"");
  evictions_refused = &m.counter("vodgrid_director_evictions_total", "Evictions engines asked for",
                                 "result=\"refused\"");
  m.gauge_fn("vodgrid_director_replicas", "Replicas made for load that are still kept",
             [this] { return static_cast<double>(replicas.size()); });
  m.gauge_fn("vodgrid_director_prefetch_copies", "Pre-positioning copies in flight",
             [this] { return static_cast<double>(prefetching); });
  m.gauge_fn("vodgrid_director_prefetch_copies_peak",
             "The most pre-positioning copies in flight at once since the start",
             [this] { return static_cast<double>(prefetching_peak); });
  m.gauge_fn("vodgrid_director_engines_up", "Engines in rotation",
             [this] { return static_cast<double>(tables.up_engines(steady::now()).size()); });
  m.gauge_fn("vodgrid_director_locations", "Segments with at least one copy in the station",
             [this] { return static_cast<double>(tables.location_count()); });
  m.gauge_fn("vodgrid_director_under_replicated_segments",
             "Segments with fewer copies on engines in rotation than the station places",
             [this] { return static_cast<double>(under_replicated); });
  m.gauge_fn("vodgrid_director_repairs_in_flight", "Copies in flight to restore placement",
             [this] { return static_cast<double>(repairing.size()); });
  repairs_ok = &m.counter("vodgrid_director_repairs_total",
                          "Copies made to bring a segment back to its copies", "result=\"ok\"");
  repairs_failed =
      &m.counter("vodgrid_director_repairs_total",
                 "Copies made to bring a segment back to its copies", "result=\"failed\"");
  surplus_dropped = &m.counter("vodgrid_director_surplus_dropped_total",
                               "Copies beyond the placement dropped (an engine came back)");
  fallbacks_copied =
      &m.counter("vodgrid_director_fallbacks_total",
                 "Consoles whose segment no engine here could serve, served from another station",
                 "via=\"copy\"");
  fallbacks_remote =
      &m.counter("vodgrid_director_fallbacks_total",
                 "Consoles whose segment no engine here could serve, served from another station",
                 "via=\"redirect\"");
  programs_learned = &m.counter("vodgrid_director_programs_learned_total",
                                "Programs learned from the registry on a console's request");
}

asio::awaitable<reply> director_daemon::impl::heartbeat(request_context& ctx) {
  auto hb = api::decode<api::heartbeat>(ctx.req.body());
  if (!hb) {
    co_return net::error_reply(hb.err());
  }
  if (hb->engine.str() != ctx.params[0]) {
    co_return net::error_reply(
        make_error(errc::invalid_argument, "the engine in the body is not the one in the path"));
  }
  bool ours = false;
  for (auto& e : station->engines) {
    if (e.name == hb->engine) {
      ours = true;
      hb->url = e.listen.url();  // consoles go where the config says, whatever a heartbeat claims
    }
  }
  if (!ours) {
    co_return net::error_reply(make_error(
        errc::forbidden,
        fmt::format("engine {} is not in station {}", hb->engine.str(), station->name.str())));
  }
  auto before = tables.find_engine(hb->engine.str());
  bool was_up = before && tables.is_up(tables.engine(*before), steady::now());
  auto rep = tables.apply(*hb, steady::now());
  heartbeats->inc();
  for (auto& c : hb->copies) {
    // Claim 20, copy done: a copy from another station is a sample of its throughput.
    auto u = net::parse_http_url(c.source);
    auto from = u ? station_of_origin.find(u->origin()) : station_of_origin.end();
    if (c.ok && from != station_of_origin.end() && c.seconds > 0) {
      copy_samples.push_back({from->second, c.bytes, c.seconds});
    }
    if (!c.ok) {
      logger->warn("director {}: engine {} failed to copy {}: {}", station->name.str(),
                   hb->engine.str(), c.key.str(), c.error);
    }
  }
  if (!was_up && !rep.resync) {
    logger->info("director {}: engine {} up at {} with {} segments", station->name.str(),
                 hb->engine.str(), hb->url,
                 tables.engine(*tables.find_engine(hb->engine.str())).held.size());
  }
  co_return net::json_reply(api::to_json(rep));
}

asio::awaitable<reply> director_daemon::impl::list_engines(request_context&) {
  json::array a;
  auto now = steady::now();
  for (size_t i = 0; i < tables.engine_count(); ++i) {
    auto& e = tables.engine(i);
    a.push_back(json::object{
        {"name", e.name.str()},
        {"url", e.url},
        {"up", tables.is_up(e, now)},
        {"last_seen_ms",
         std::chrono::duration_cast<std::chrono::milliseconds>(now - e.last_seen).count()},
        {"segments", e.held.size()},
        {"assigned", e.assigned},
        {"load", api::to_json(e.load)}});
  }
  co_return net::json_reply(json::object{{"station", station->name.str()},
                                         {"engines", a},
                                         {"copies", station->director.copies},
                                         {"under_replicated", under_replicated},
                                         {"repairs_in_flight", repairing.size()}});
}

asio::awaitable<reply> director_daemon::impl::create_program(request_context& ctx) {
  auto m = api::decode<api::program_manifest>(ctx.req.body());
  if (!m) {
    co_return net::error_reply(m.err());
  }
  auto it = catalog.find(m->id);
  if (it != catalog.end() && it->second.state == state_ready) {
    co_return net::error_reply(
        make_error(errc::conflict, fmt::format("program {} already exists", m->id.str())));
  }
  auto now = steady::now();
  auto up = tables.up_engines(now);
  size_t copies = station->director.copies;
  if (up.size() < std::max<size_t>(copies, 2)) {
    co_return net::error_reply(
        make_error(errc::unavailable, fmt::format("{} engines up; a program needs at least {}",
                                                  up.size(), std::max<size_t>(copies, 2))));
  }
  // Spread: segment i goes to `copies` consecutive engines starting at i mod n, so that every
  // program is served by at least two engines and the load of a program is shared by all.
  api::placement pl;
  for (size_t i = 0; i < m->segments.size(); ++i) {
    std::vector<api::engine_ref> targets;
    segment_key key{m->id, m->segments[i].index};
    for (size_t h : tables.holders(key)) {  // copies already held count
      if (tables.is_up(tables.engine(h), now) && targets.size() < copies) {
        targets.push_back({tables.engine(h).name, tables.engine(h).url});
      }
    }
    for (size_t k = 0; k < up.size() && targets.size() < copies; ++k) {
      auto& e = tables.engine(up[(i + k) % up.size()]);
      bool dup =
          std::any_of(targets.begin(), targets.end(), [&](auto& t) { return t.name == e.name; });
      if (!dup) {
        targets.push_back({e.name, e.url});
      }
    }
    pl.targets.push_back(std::move(targets));
  }
  m->state = std::string(state_loading);
  std::optional<api::program_manifest> before;
  if (it != catalog.end()) {
    before = it->second;
  }
  catalog[m->id] = *m;
  if (auto st = save_catalog(); !st) {
    if (before) {
      catalog[m->id] = std::move(*before);  // what the disk still holds
    } else {
      catalog.erase(m->id);
    }
    co_return net::error_reply(st.err());
  }
  logger->info("director {}: loading program {} ({} segments, {:.1f} s)", station->name.str(),
               m->id.str(), m->segments.size(), m->duration());
  co_return net::json_reply(api::to_json(pl), http::status::created);
}

std::string director_daemon::impl::missing_copies(const api::program_manifest& m,
                                                  size_t want) const {
  auto now = steady::now();
  for (auto& s : m.segments) {
    segment_key key{m.id, s.index};
    size_t have = tables.up_holders(key, now);
    if (have < want) {
      return fmt::format("segment {} has {} of {} copies", s.index.v, have, want);
    }
  }
  return {};
}

asio::awaitable<reply> director_daemon::impl::commit_program(request_context& ctx) {
  auto id = program_id::parse(ctx.params[0]);
  auto it = id ? catalog.find(*id) : catalog.end();
  if (it == catalog.end()) {
    co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
  }
  if (it->second.state == state_ready) {
    co_return net::json_reply(api::to_json(it->second));
  }
  // Engines report new segments with their next heartbeat, sent at once on a change: wait a little.
  size_t want = station->director.copies;
  std::string missing;
  asio::steady_timer t(io);
  auto deadline = steady::now() + grid.heartbeat_timeout * 4;
  for (;;) {
    it = catalog.find(*id);
    if (it == catalog.end()) {
      co_return net::error_reply(make_error(errc::not_found, "program deleted while committing"));
    }
    missing = missing_copies(it->second, want);
    if (missing.empty() || steady::now() > deadline) {
      break;
    }
    t.expires_after(std::chrono::milliseconds(20));
    co_await t.async_wait(use_tuple);
  }
  if (!missing.empty()) {
    co_return net::error_reply(
        make_error(errc::conflict, "not every segment is in place: " + missing));
  }
  it->second.state = std::string(state_ready);
  if (auto st = save_catalog(); !st) {
    it->second.state = std::string(state_loading);
    co_return net::error_reply(st.err());
  }
  if (grid.registry && registered) {
    // The registry learns the new locations before the loader hands the program on for
    // distribution, so that the first seeking station finds its source.
    co_await report_to_registry();
  }
  logger->info("director {}: program {} ready", station->name.str(), id->str());
  it = catalog.find(*id);  // the report awaited: the program may have been deleted meanwhile
  if (it == catalog.end()) {
    co_return net::error_reply(make_error(errc::not_found, "program deleted while committing"));
  }
  co_return net::json_reply(api::to_json(it->second));
}

asio::awaitable<void> director_daemon::impl::send_delete(std::string url) {
  ++background;
  auto res = co_await client->request(http::verb::delete_, url);
  if (!res || (res->status != 204 && res->status != 404)) {
    logger->warn("director {}: DELETE {} failed: {}", station->name.str(), url,
                 res ? std::to_string(res->status) : res.err().detail);
  }
  --background;
}

asio::awaitable<reply> director_daemon::impl::delete_program(request_context& ctx) {
  auto id = program_id::parse(ctx.params[0]);
  auto it = id ? catalog.find(*id) : catalog.end();
  if (it == catalog.end()) {
    co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
  }
  auto m = std::move(it->second);
  catalog.erase(it);
  if (auto st = save_catalog(); !st) {
    catalog[m.id] = m;
    co_return net::error_reply(st.err());
  }
  for (auto& s : m.segments) {
    segment_key key{m.id, s.index};
    for (size_t h : tables.holders(key)) {
      asio::co_spawn(io,
                     send_delete(fmt::format("{}/v1/segments/{}/{}.ts", tables.engine(h).url,
                                             m.id.str(), s.index.v)),
                     asio::detached);
    }
  }
  logger->info("director {}: program {} deleted", station->name.str(), m.id.str());
  reply r;
  r.status = http::status::no_content;
  co_return r;
}

asio::awaitable<reply> director_daemon::impl::list_programs(request_context&) {
  json::array a;
  for (auto& [id, m] : catalog) {
    a.push_back(json::object{{"id", id.str()},
                             {"title", m.title},
                             {"state", m.state},
                             {"availability", m.availability},
                             {"publish_at", m.publish_at},
                             {"segments", m.segments.size()},
                             {"duration", m.duration()}});
  }
  co_return net::json_reply(json::object{{"programs", a}});
}

asio::awaitable<reply> director_daemon::impl::get_program(request_context& ctx) {
  auto id = program_id::parse(ctx.params[0]);
  auto it = id ? catalog.find(*id) : catalog.end();
  if (it == catalog.end() && id && grid.registry) {
    // A console about to play it (it checks every segment against this): learned as for playing.
    if (auto learned = co_await learn_program(*id); !learned) {
      co_return unavailable_reply(learned.err());
    }
    it = catalog.find(*id);
  }
  if (it == catalog.end()) {
    co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
  }
  co_return net::json_reply(api::to_json(it->second));
}

namespace {

// Why consoles may not play a program that is loaded (claim 11): the viewer's 404 reason.
std::string unavailable_reason(const api::program_manifest& m) {
  if (m.availability == api::availability_withdrawn) {
    return fmt::format("program {} has been withdrawn", m.id.str());
  }
  if (!m.publish_at.empty()) {
    return fmt::format("program {} is not published yet: it publishes at {}", m.id.str(),
                       m.publish_at);
  }
  return fmt::format("program {} is not published", m.id.str());
}

}  // namespace

// POST /v1/programs/{id}/availability (content manager → director): publish or withdraw.
asio::awaitable<reply> director_daemon::impl::set_availability(request_context& ctx) {
  auto c = api::decode<api::availability_change>(ctx.req.body());
  if (!c) {
    co_return net::error_reply(c.err());
  }
  auto id = program_id::parse(ctx.params[0]);
  auto it = id ? catalog.find(*id) : catalog.end();
  if (it == catalog.end()) {
    co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
  }
  auto& m = it->second;
  if (m.availability != c->availability || m.publish_at != c->publish_at) {
    auto before = m;
    m.availability = c->availability;
    m.publish_at = c->publish_at;
    if (auto st = save_catalog(); !st) {
      m = std::move(before);
      co_return net::error_reply(st.err());
    }
    logger->info("director {}: program {} {}", station->name.str(), m.id.str(), m.availability);
  }
  co_return net::json_reply(api::to_json(m));
}

result<const api::program_manifest*> director_daemon::impl::ready_program(
    const std::string& raw) const {
  auto id = program_id::parse(raw);
  auto it = id ? catalog.find(*id) : catalog.end();
  if (it == catalog.end()) {
    return make_error(errc::not_found, "no such program: " + raw);
  }
  if (it->second.state != state_ready) {
    return make_error(errc::not_found,
                      fmt::format("program {} is not ready ({})", raw, it->second.state));
  }
  if (it->second.availability != api::availability_published) {
    return make_error(errc::not_found, unavailable_reason(it->second));
  }
  return &it->second;
}

// The slow path of a token check (the fast one is token_verifier::allows): the full verification,
// with the keys fetched again when the token names one we do not know. nullopt: the token passes.
asio::awaitable<std::optional<reply>> director_daemon::impl::refuse_token(request_context& ctx,
                                                                          auth::requirement req) {
  auto token = auth::token_of(ctx);
  auto out = auth->verifier().verify(token, req);
  if (!out && out.why == auth::token_error::unknown_key) {
    out = co_await auth->keys().verify(std::string(token), std::move(req));
  }
  if (out) {
    co_return std::nullopt;
  }
  co_return unavailable_reply(out.as_error());  // the keys could not be fetched: ask again
}

asio::awaitable<reply> director_daemon::impl::playlist(request_context& ctx) {
  auto m = co_await find_program(ctx.params[0]);
  if (!m) {
    co_return unavailable_reply(m.err());
  }
  if (auth) {
    // Claim 23: a viewer token entitled to the program, bound (if it says so) to this client.
    auth::requirement req{auth::token_kind::viewer, (*m)->id, auth::client_address(ctx)};
    auto refused = co_await refuse_token(ctx, std::move(req));
    if (refused) {
      co_return std::move(*refused);
    }
  }
  // Whatever query the console used (a token, later) is carried to each segment URI.
  std::string query;
  auto target = ctx.req.target();
  if (auto q = target.find('?'); q != std::string_view::npos) {
    query = std::string(target.substr(q));
  }
  reply r;
  r.content_type = "application/vnd.apple.mpegurl";
  r.headers.emplace_back("Cache-Control", "no-cache");
  r.body = api::write_vod_playlist(**m, query);
  co_return r;
}

asio::awaitable<void> director_daemon::impl::send_preload(std::string url,
                                                          api::preload_order order) {
  ++background;
  auto res =
      co_await client->send_json(http::verb::post, url, json::serialize(api::to_json(order)));
  if (!res || res->status >= 300) {
    logger->debug("director {}: preload {} at {} failed", station->name.str(), order.key.str(),
                  url);
  }
  --background;
}

asio::awaitable<reply> director_daemon::impl::segment(request_context& ctx) {
  auto m = ready_program(ctx.params[0]);
  if (!m && grid.registry && m.err().code == errc::not_found) {
    m = co_await find_program(ctx.params[0]);  // a program this station has not heard of yet
  }
  if (!m) {
    co_return unavailable_reply(m.err());
  }
  auto idx = segment_index::parse(ctx.params[1]);
  if (!idx || idx->v >= (*m)->segments.size()) {
    co_return net::error_reply(
        make_error(errc::not_found,
                   fmt::format("program {} has no segment {}", ctx.params[0], ctx.params[1])));
  }
  if (auth && !auth->verifier().allows(auth::token_of(ctx), auth::token_kind::viewer, &(*m)->id,
                                       ctx.remote.address(), auth::unix_now())) {
    auth::requirement req{auth::token_kind::viewer, (*m)->id, auth::client_address(ctx)};
    auto refused = co_await refuse_token(ctx, std::move(req));
    if (refused) {
      co_return std::move(*refused);
    }
  }
  auto now = steady::now();
  segment_key key{(*m)->id, *idx};
  std::optional<size_t> hint;
  if (auto p = preloaded.find(key); p != preloaded.end() && p->second.second > now) {
    hint = p->second.first;  // kept until it expires: every console of this segment may use it
  }
  auto chosen = tables.choose(key, now, hint);
  if (!chosen && tables.up_holders(key, now) > 0) {
    // Claim 19: every holder is at its limits. Another engine receives a replica and this
    // console goes there, served as the replica arrives. Consoles arriving together share one
    // order; when they are more than the replica's engine takes, the rest order the next one.
    for (size_t round = 0; !chosen && round < tables.engine_count(); ++round) {
      auto got = co_await replicate_shared(key);
      if (!got) {
        break;  // no engine left with room
      }
      now = steady::now();
      chosen = tables.choose(key, now);
    }
  } else if (chosen && busy(*chosen) && !replicas_in_flight.contains(key) &&
             tables.hot(key, now, station->director.hot_load_percent)) {
    // Near the limits: replicate before consoles have to wait for it.
    asio::co_spawn(io, replicate_shared(key), asio::detached);
  }
  std::string elsewhere;  // an engine of another station, when none of ours can serve or receive
  if (!chosen && grid.registry) {
    auto f = co_await fall_back(key);
    now = steady::now();
    m = ready_program(ctx.params[0]);  // the catalog may have changed while we waited
    if (!m) {
      co_return net::error_reply(m.err());
    }
    if (!f) {
      unavailable->inc();
      co_return unavailable_reply(f.err());
    }
    chosen = f->engine;
    elsewhere = std::move(f->elsewhere);
  }
  if (!chosen && elsewhere.empty()) {
    unavailable->inc();
    co_return unavailable_reply(
        make_error(errc::unavailable,
                   fmt::format("no engine holding {} is up and under its limits", key.str())));
  }
  std::string_view query;  // passed on as it came, with its '?'
  if (auto q = ctx.req.target().find('?'); q != std::string_view::npos) {
    query = ctx.req.target().substr(q);
  }
  if (!chosen) {
    if (!auth) {
      elsewhere.append(query.data(), query.size());
    }
    co_return redirect_reply(std::move(elsewhere));  // signed by the other station, with auth
  }
  if (!replicas.empty()) {
    if (auto rep = replicas.find({key, *chosen}); rep != replicas.end()) {
      rep->second = now;
    }
  }
  auto& e = tables.engine(*chosen);
  // Built by appending: fmt's runtime format string cost more than the rest of this handler.
  std::string location;
  location.reserve(e.url.size() + key.program.str().size() + query.size() + 32);
  location += e.url;
  location += "/v1/segments/";
  location += key.program.str();
  location += '/';
  location += std::to_string(idx->v);
  location += ".ts";
  if (auth) {
    // Claim 23: the engine is shown a short-lived signature of its path, not the viewer's token.
    if (!auth->signer()) {
      auto u = net::error_reply(make_error(errc::unavailable, "not yet logged in at auth"));
      u.headers.emplace_back("Retry-After", "1");
      co_return u;
    }
    auto sig = auth->signer()->sign_query(std::string_view(location).substr(e.url.size()),
                                          auth::unix_now() + 30);
    location += '?';
    location += sig;
  } else {
    location.append(query.data(), query.size());
  }
  auto r = redirect_reply(std::move(location));
  redirects->inc();

  if (ctx.req.method() == http::verb::get) {
    preload_next(**m, key, now);
  }
  co_return r;
}

}  // namespace vodgrid::director

namespace vodgrid::director {

// Claim 16: the engine that will serve the segment after `key` preloads it now. One order per
// segment while its hint holds, not one per console: many viewers of a program would otherwise send
// the same order over and over. The hinted engine is preferred for the next segment
// (choose_engine), so its preload is the one that counts.
void director_daemon::impl::preload_next(const api::program_manifest& m, const segment_key& key,
                                         steady::time_point now) {
  if (key.index.v + 1 >= m.segments.size()) {
    return;
  }
  segment_key next{key.program, segment_index{key.index.v + 1}};
  auto n = tables.peek(next, now);
  if (!n) {
    return;
  }
  auto ttl = std::chrono::duration_cast<steady::duration>(
      std::chrono::duration<double>(m.segments[key.index.v].duration * 2 + 1));
  if (preloaded.size() > 100'000) {  // hints of consoles that went away
    std::erase_if(preloaded, [now](const auto& kv) { return kv.second.second <= now; });
  }
  auto sent = preloaded.find(next);
  bool fresh = sent != preloaded.end() && sent->second.second > now &&
               tables.is_up(tables.engine(sent->second.first), now);
  if (!fresh) {
    preloaded[next] = {*n, now + ttl};
    preload_orders->inc();
    asio::co_spawn(
        io, send_preload(tables.engine(*n).url + "/v1/orders/preload", api::preload_order{next}),
        asio::detached);
  }
}

// Claim 14, for a segment no engine of ours can serve: the station lacks it, or every engine
// holding it is down, hung or full. An engine of ours copies it from the cheapest other station and
// the console goes there at once (it serves the segment while it arrives); if no engine of ours can
// take it, the console goes to an engine of that station. errc::unavailable: no station could
// supply it, with why.
asio::awaitable<result<director_daemon::impl::fallback>> director_daemon::impl::fall_back(
    segment_key key) {
  bool lacked = tables.holders(key).empty() && tables.filling(key).empty();
  auto got = co_await acquire(key, false);
  fallback f;
  if (got) {
    f.engine = tables.choose(key, steady::now());
  }
  if (f.engine) {
    if (!lacked) {
      fallbacks_copied->inc();  // (a plain miss is not a fallback)
    }
    co_return f;
  }
  std::string why = got ? "no engine here can serve it" : got.err().detail;
  auto remote = co_await remote_holder(key);
  if (!remote) {
    co_return make_error(errc::unavailable,
                         fmt::format("no engine of station {} can serve {} and no other station "
                                     "could supply it: {}; {}",
                                     station->name.str(), key.str(), why, remote.err().detail));
  }
  fallbacks_remote->inc();
  f.elsewhere = std::move(*remote);
  co_return f;
}

// The station's engine that should receive a copy (tables.h, choose_receiver).
std::optional<size_t> director_daemon::impl::receiving_engine(const segment_key& key,
                                                              std::optional<size_t> exclude) {
  return tables.choose_receiver(key, segment_size(key), steady::now(), exclude);
}

// Orders engine `target` to copy `key` from `sources` in turn. wait: answers when the copy is done;
// otherwise as soon as the engine receives it, which serves it meanwhile (cut-through).
asio::awaitable<result<size_t>> director_daemon::impl::order_fetch(size_t target,
                                                                   const segment_key& key,
                                                                   std::vector<std::string> sources,
                                                                   bool wait) {
  auto it = catalog.find(key.program);
  if (it == catalog.end() || key.index.v >= it->second.segments.size()) {
    co_return make_error(errc::not_found, "no such segment: " + key.str());
  }
  auto entry = it->second.segments[key.index.v];
  api::fetch_order order{key, entry.sha256, entry.size, std::move(sources), wait};
  auto url = tables.engine(target).url + "/v1/orders/fetch";
  auto& via = wait ? *copy_client : *client;
  tables.note_ordered(target, entry.size);
  auto f = co_await via.send_json(http::verb::post, url, json::serialize(api::to_json(order)));
  if (!f || (f->status != 201 && f->status != 200 && f->status != 202)) {
    tables.note_order_failed(target, entry.size);
    co_return make_error(errc::unavailable, fmt::format("engine {} did not take the copy of {}: {}",
                                                        tables.engine(target).name.str(), key.str(),
                                                        f ? f->body : f.err().detail));
  }
  if (f->status == 202) {
    tables.note_filling(target, key);
  } else {
    tables.note_copy(target, key);
  }
  co_return target;
}

// Claims 12-14: ask the registry for sources, cheapest first; ask each source station's director
// which engine holds the segment; order an engine of ours to copy it from those engines in that
// order (a transfer cut short resumes from the next). The engine checks the digest before it counts
// the segment as held, so a failed copy leaves nothing behind.
asio::awaitable<result<size_t>> director_daemon::impl::copy_from_sources(
    segment_key key, bool wait, std::optional<size_t> exclude) {
  if (!receiving_engine(key, exclude)) {  // asked again once the sources are known
    co_return make_error(errc::unavailable,
                         "no engine of this station is up and has room to receive " + key.str());
  }
  auto sources = co_await other_sources(key);
  if (!sources) {
    co_return sources.err();
  }
  std::string last = "no station holds it";
  std::vector<std::string> urls;
  constexpr size_t max_sources = 3;  // enough to ride out a dead source or two
  for (auto& src : *sources) {
    if (urls.size() == max_sources) {
      break;
    }
    auto h = co_await client->get(fmt::format("{}/v1/programs/{}/segments/{}/holder?whole=1",
                                              src.director_url, key.program.str(), key.index.v));
    if (!h || h->status != 200) {
      last = fmt::format("station {}: {}", src.station.str(), h ? h->body : h.err().detail);
      continue;
    }
    auto ho = api::parse_object(h->body);
    auto* url = ho ? ho->if_contains("url") : nullptr;
    auto u = url && url->is_string()
                 ? net::parse_http_url(url->as_string())
                 : result<net::parsed_url>(make_error(errc::invalid_argument, "no url"));
    if (!u) {
      last = fmt::format("station {} named no engine", src.station.str());
      continue;
    }
    station_of_origin[u->origin()] = src.station;
    urls.emplace_back(url->as_string());
  }
  if (urls.empty()) {
    co_return make_error(errc::unavailable, last);
  }
  auto target = receiving_engine(key, exclude);
  if (!target) {
    co_return make_error(errc::unavailable,
                         "no engine of this station is up and has room to receive " + key.str());
  }
  auto got = co_await order_fetch(*target, key, std::move(urls), wait);
  if (!got) {
    logger->warn("director {}: {}", station->name.str(), got.err().detail);
  }
  co_return got;
}

// One operation per segment at a time: concurrent callers wait for the one in flight and share
// its outcome.
template <class Start>
asio::awaitable<result<size_t>> director_daemon::impl::once_per_segment(
    std::unordered_map<segment_key, std::shared_ptr<pending_copy>>& in_flight, segment_key key,
    Start start) {
  if (auto it = in_flight.find(key); it != in_flight.end()) {
    auto p = it->second;
    if (!p->finished) {
      co_await p->done.async_wait(use_tuple);
    }
    co_return p->engine;
  }
  auto p = std::make_shared<pending_copy>(io);
  in_flight[key] = p;
  ++background;
  p->engine = co_await start();
  p->finished = true;
  p->done.cancel();
  in_flight.erase(key);
  --background;
  co_return p->engine;
}

// One copy per segment at a time: concurrent requests for it wait for the same order.
asio::awaitable<result<size_t>> director_daemon::impl::acquire(segment_key key, bool wait,
                                                               std::optional<size_t> exclude) {
  return once_per_segment(copies_in_flight, key, [this, key, wait, exclude] {
    return copy_from_sources(key, wait, exclude);
  });
}

// Claims 19, 20: every engine holding the segment is at its limits, so another engine receives a
// replica from the least loaded holder (a copy between engines is not held to the console limit),
// and serves it while it arrives. The heartbeat that reports it held ("copy done") reaches the
// registry with the station's next report.
asio::awaitable<result<size_t>> director_daemon::impl::replicate(segment_key key,
                                                                 std::optional<size_t> exclude) {
  auto now = steady::now();
  std::vector<std::string> sources;
  for (size_t h : tables.sources_by_load(key, now)) {
    if (h != exclude) {
      sources.push_back(segment_url(h, key));
    }
  }
  if (sources.empty()) {
    co_return make_error(errc::unavailable, "no engine of the station holds " + key.str());
  }
  auto target = receiving_engine(key, exclude);
  if (!target) {
    co_return make_error(errc::unavailable, "every engine of station " + station->name.str() +
                                                " is at its limits or holds " + key.str() +
                                                " already");
  }
  auto got = co_await order_fetch(*target, key, std::move(sources), false);
  if (got) {
    replicas[{key, *got}] = steady::now();
    replicas_made->inc();
    logger->info("director {}: {} is hot; engine {} receives a replica", station->name.str(),
                 key.str(), tables.engine(*got).name.str());
  }
  co_return got;
}

asio::awaitable<result<size_t>> director_daemon::impl::replicate_shared(segment_key key) {
  return once_per_segment(replicas_in_flight, key,
                          [this, key] { return replicate(key, std::nullopt); });
}

asio::awaitable<void> director_daemon::impl::prefetch_worker() {
  while (!prefetch_queue.empty() && !stopping) {
    auto key = prefetch_queue.front();
    prefetch_queue.pop_front();
    if (!tables.holders(key).empty() || catalog.find(key.program) == catalog.end()) {
      continue;
    }
    // A source may not have reported its copy yet: try a few times before leaving the segment to
    // the miss path.
    asio::steady_timer t(io);
    for (int attempt = 0; attempt < 6 && !stopping; ++attempt) {
      ++prefetching;
      prefetching_peak = std::max(prefetching_peak, prefetching);
      auto r = co_await acquire(key, true);
      --prefetching;
      if (r || !tables.holders(key).empty()) {
        break;
      }
      if (attempt == 5) {
        logger->warn("director {}: prefetch of {} failed: {}", station->name.str(), key.str(),
                     r.err().detail);
      }
      t.expires_after(std::chrono::milliseconds(250 << attempt));
      co_await t.async_wait(use_tuple);
    }
  }
  --copy_workers;
}

asio::awaitable<reply> director_daemon::impl::distribute(request_context& ctx) {
  auto d = api::decode<api::distribution>(ctx.req.body());
  if (!d) {
    co_return net::error_reply(d.err());
  }
  if (d->manifest.id.str() != ctx.params[0]) {
    co_return net::error_reply(
        make_error(errc::invalid_argument, "the program in the body is not the one in the path"));
  }
  auto& m = d->manifest;
  auto it = catalog.find(m.id);
  bool known = it != catalog.end() && it->second.state == state_ready;
  if (!known) {
    // Served at once: what the station lacks is copied on the first request (claim 14).
    m.state = std::string(state_ready);
    catalog[m.id] = m;
    if (auto st = save_catalog(); !st) {
      catalog.erase(m.id);
      co_return net::error_reply(st.err());
    }
  }
  size_t n = std::min<size_t>(d->prefetch, m.segments.size());
  size_t queued = 0;
  for (size_t i = 0; i < n; ++i) {
    segment_key key{m.id, segment_index{static_cast<uint32_t>(i)}};
    if (tables.holders(key).empty()) {
      prefetch_queue.push_back(key);
      ++queued;
    }
  }
  while (copy_workers < station->director.parallel_copies && copy_workers < prefetch_queue.size()) {
    ++copy_workers;  // the worker counts itself out when the queue is empty
    asio::co_spawn(io, prefetch_worker(), asio::detached);
  }
  logger->info("director {}: program {} distributed here; {} segments to copy", station->name.str(),
               m.id.str(), queued);
  co_return net::json_reply(json::object{{"program", m.id.str()}, {"queued", queued}});
}

// GET /v1/programs/{id}/segments/{n}/holder: an engine of this station for the segment, for
// another station's copy or for one of our engines sending a console on. ?whole=1: only an engine
// holding it whole; ?exclude=<engine>: not that one (its copy failed, or it is the asker);
// ?get=1: if none can serve it, have one receive it (a replica, or a copy from another station);
// ?console=1: the URL is for a console another station's director sends here (signed, with auth).
asio::awaitable<reply> director_daemon::impl::holder(request_context& ctx) {
  auto id = program_id::parse(ctx.params[0]);
  auto idx = segment_index::parse(ctx.params[1]);
  if (!id || !idx) {
    co_return net::error_reply(
        make_error(errc::invalid_argument, "bad program or segment in " + ctx.path));
  }
  segment_key key{*id, *idx};
  bool whole = ctx.query_param("whole") == "1";
  bool get = ctx.query_param("get") == "1";
  bool full = ctx.query_param("full") == "1";
  bool console = ctx.query_param("console") == "1";  // for a console of another station: signed
  std::optional<size_t> exclude;
  if (auto ex = ctx.query_param("exclude"); !ex.empty()) {
    exclude = tables.find_engine(ex);
    if (exclude && full) {
      tables.note_full(*exclude);  // it refused a console: no more go there until it says so
    } else if (exclude && tables.engine(*exclude).filling.count(key) && get) {
      tables.end_filling(*exclude, key);  // its copy failed: no console goes there for it
    }
  }
  auto now = steady::now();
  auto pick = [&](const std::vector<size_t>& engines) -> std::optional<size_t> {
    std::optional<size_t> best;
    double best_load = 0;
    for (size_t e : engines) {
      auto& en = tables.engine(e);
      candidate c{e,
                  tables.is_up(en, now),
                  en.load.active_streams + en.assigned,
                  en.load.max_streams,
                  en.load.bytes_per_second,
                  en.load.max_bytes_per_second};
      if (e == exclude || !c.up || c.streams >= c.max_streams) {
        continue;
      }
      if (!best || load_of(c) < best_load) {
        best = e;
        best_load = load_of(c);
      }
    }
    return best;
  };
  auto e = pick(tables.holders(key));
  if (!e && !whole) {
    e = pick(tables.filling(key));
  }
  if (!e && get) {
    auto m = ready_program(ctx.params[0]);
    if (m && idx->v < (*m)->segments.size()) {
      // (Two statements: GCC 12 mishandles co_await inside a conditional expression.)
      result<size_t> got = make_error(errc::unavailable, "");
      if (tables.holders(key).empty() && grid.registry) {
        got = co_await acquire(key, false, exclude);
      } else if (full) {
        got = co_await replicate_shared(key);  // the full engine may be a source: copies pass
      } else {
        got = co_await replicate(key, exclude);
      }
      if (got) {
        e = *got;
      }
    }
  }
  if (!e) {
    if (tables.holders(key).empty()) {
      co_return net::error_reply(
          make_error(errc::not_found,
                     fmt::format("station {} does not hold {}", station->name.str(), key.str())));
    }
    auto r = net::error_reply(make_error(
        errc::unavailable, "no engine holding " + key.str() + " is up and under its limits"));
    r.headers.emplace_back("Retry-After", "1");
    co_return r;
  }
  auto& eng = tables.engine(*e);
  tables.note_sent(*e, now);
  auto url = segment_url(*e, key);
  if (console && auth) {
    // Claim 23 across stations: the engine checks signatures of its own station's key.
    if (!auth->signer()) {
      co_return unavailable_reply(make_error(errc::unavailable, "not yet logged in at auth"));
    }
    auto sig = auth->signer()->sign_query(std::string_view(url).substr(eng.url.size()),
                                          auth::unix_now() + 30);
    url += '?';
    url += sig;
  }
  co_return net::json_reply(json::object{{"engine", eng.name.str()}, {"url", std::move(url)}});
}

// POST /v1/engines/{name}/evictions: the engine names what it would evict, least recently used
// first; it may evict a copy only if another engine of the station holds the segment whole, or
// another station does (asked of the registry): never the last copy in the grid.
asio::awaitable<reply> director_daemon::impl::evictions(request_context& ctx) {
  auto req = api::decode<api::eviction_request>(ctx.req.body());
  if (!req) {
    co_return net::error_reply(req.err());
  }
  auto e = tables.find_engine(ctx.params[0]);
  if (!e) {
    co_return net::error_reply(
        make_error(errc::not_found, "no engine " + ctx.params[0] + " has reported here"));
  }
  api::eviction_request allowed;
  uint64_t freed = 0;
  for (auto& key : req->segments) {
    if (freed >= req->bytes) {
      break;
    }
    if (!tables.engine(*e).held.count(key)) {
      continue;
    }
    if (co_await held_elsewhere(key, *e)) {
      // Counted gone now, so that another engine asking to evict its copy of the same segment
      // before this one's heartbeat is told no (its full inventory follows the eviction).
      tables.note_removal(*e, key);
      allowed.segments.push_back(key);
      auto it = catalog.find(key.program);
      freed += it != catalog.end() && key.index.v < it->second.segments.size()
                   ? it->second.segments[key.index.v].size
                   : 0;
      replicas.erase({key, *e});
      evictions_allowed->inc();
    } else {
      evictions_refused->inc();
    }
  }
  co_return net::json_reply(api::to_json(allowed));
}

// Whether a whole copy of `key` other than engine `engine`'s exists: at another up engine of the
// station, or at another station that the registry lists as a source.
asio::awaitable<bool> director_daemon::impl::held_elsewhere(const segment_key& key, size_t engine) {
  auto now = steady::now();
  for (size_t h : tables.holders(key)) {
    if (h != engine && tables.is_up(tables.engine(h), now)) {
      co_return true;
    }
  }
  if (!grid.registry) {
    co_return false;
  }
  auto sources = co_await other_sources(key);
  co_return sources && !sources->empty();  // unknown is no
}

// Deletes replicas made for load once no console has been sent to them for replica_idle, keeping
// the station's placement (`copies` whole copies) of the segment.
asio::awaitable<void> director_daemon::impl::maintenance_loop() {
  ++background;
  asio::steady_timer t(io);
  while (!stopping) {
    t.expires_after(std::chrono::milliseconds(500));
    co_await t.async_wait(use_tuple);
    auto now = steady::now();
    for (auto it = replicas.begin(); it != replicas.end();) {
      auto& [what, used] = *it;
      auto& [key, engine] = what;
      if (now - used < station->director.replica_idle || tables.engine(engine).filling.count(key)) {
        ++it;  // in use, or still arriving: judged once it is whole
        continue;
      }
      if (tables.up_holders(key, now) > station->director.copies &&
          tables.engine(engine).held.count(key)) {
        asio::co_spawn(io, drop_copy(key, engine, true), asio::detached);
      }
      it = replicas.erase(it);
    }
    plan_placement(now);
  }
  --background;
}

asio::awaitable<bool> director_daemon::impl::report_to_registry() {
  asio::steady_timer wait(io);
  while (reporting) {
    wait.expires_after(std::chrono::milliseconds(2));
    co_await wait.async_wait(use_tuple);
  }
  reporting = true;
  bool ok = co_await send_report();
  reporting = false;
  co_return ok;
}

asio::awaitable<bool> director_daemon::impl::send_report() {
  auto now = steady::now();
  api::station_report r;
  double streams = 0, capacity = 0;
  for (size_t i : tables.up_engines(now)) {
    auto& e = tables.engine(i);
    streams += e.load.active_streams;
    capacity += e.load.max_streams;
    r.sending_bits_per_second += e.load.bytes_per_second * 8;
  }
  r.engines_up = static_cast<uint32_t>(tables.up_engines(now).size());
  r.load = capacity > 0 ? streams / capacity : 1;
  for (auto& c : tables.drain_changes()) {
    unreported.push_back(c);
  }
  r.changes = unreported;
  r.copies = copy_samples;
  auto res = co_await client->send_json(
      http::verb::post,
      fmt::format("{}/v1/stations/{}/report", registry_url(), station->name.str()),
      json::serialize(api::to_json(r)));
  if (res && res->status == 200) {
    // Only what was sent is acknowledged; changes drained meanwhile stay for the next report.
    unreported.erase(unreported.begin(),
                     unreported.begin() + static_cast<std::ptrdiff_t>(r.changes.size()));
    copy_samples.erase(copy_samples.begin(),
                       copy_samples.begin() + static_cast<std::ptrdiff_t>(r.copies.size()));
    co_return true;
  }
  if (res && res->status == 409) {
    registered = false;  // the registry does not know us (it restarted): register again
  }
  if (res && res->status == 400) {
    // Refused as a whole and it would be refused again (a program the registry holds shorter than
    // we do, say): drop it rather than let it hold back every later report.
    logger->error("director {}: the registry refused a report of {} changes: {}",
                  station->name.str(), r.changes.size(), res->body);
    unreported.erase(unreported.begin(),
                     unreported.begin() + static_cast<std::ptrdiff_t>(r.changes.size()));
    copy_samples.erase(copy_samples.begin(),
                       copy_samples.begin() + static_cast<std::ptrdiff_t>(r.copies.size()));
  }
  co_return false;
}

// After a start, what the registry holds for this station may be stale: copies lost while the
// director was down were never reported. For each program whose count at the registry differs
// from what the engines hold, every segment's station-level state is reported again.
asio::awaitable<void> director_daemon::impl::reconcile_with_registry() {
  auto res = co_await client->get(
      fmt::format("{}/v1/stations/{}/held", registry_url(), station->name.str()));
  if (!res || res->status != 200) {
    co_return;  // tried again after the next report
  }
  auto o = api::parse_object(res->body);
  auto* programs = o ? o->if_contains("programs") : nullptr;
  if (!programs || !programs->is_object()) {
    co_return;
  }
  size_t programs_fixed = 0;
  for (auto& [id, m] : catalog) {
    uint64_t ours = 0;
    for (auto& s : m.segments) {
      ours += tables.holders({id, s.index}).empty() ? 0 : 1;
    }
    uint64_t theirs = 0;
    if (auto* v = programs->as_object().if_contains(id.str()); v && v->is_number()) {
      theirs = v->to_number<uint64_t>();
    }
    if (ours == theirs) {
      continue;
    }
    ++programs_fixed;
    for (auto& s : m.segments) {
      segment_key key{id, s.index};
      unreported.push_back({key, !tables.holders(key).empty()});
    }
  }
  reconciled = true;
  if (programs_fixed > 0) {
    logger->info(
        "director {}: the registry's view of {} programs here was stale; reporting them "
        "again",
        station->name.str(), programs_fixed);
  }
}

// Registers the station, then reports load and location changes every few hundred milliseconds.
// While the registry is down the station goes on serving what it holds; changes wait and are
// reported when it comes back.
asio::awaitable<void> director_daemon::impl::registry_loop() {
  ++background;
  asio::steady_timer t(io);
  bool was_ok = false;  // the registry may start after us: only a lost registry is worth a warning
  bool ever_ok = false;
  while (!stopping) {
    bool ok = true;
    if (!registered) {
      api::station_registration reg{station->name, station->director.listen.url(),
                                    station->home, station->x_km,
                                    station->y_km, station->uplink_bits_per_second};
      auto res = co_await client->send_json(
          http::verb::put, fmt::format("{}/v1/stations/{}", registry_url(), station->name.str()),
          json::serialize(api::to_json(reg)));
      registered = res && res->status == 200;
      ok = registered;
    }
    if (registered) {
      ok = co_await report_to_registry();
    }
    if (ok && !reconciled && steady::now() - started > grid.heartbeat_timeout * 2) {
      // By now every engine that is up has sent its whole inventory.
      co_await reconcile_with_registry();
    }
    if (ok != was_ok && (ok || ever_ok)) {
      if (ok) {
        ever_ok = true;
        logger->info("director {}: registry {} reached", station->name.str(), registry_url());
      } else {
        logger->warn("director {}: registry {} unreachable; serving on, changes kept",
                     station->name.str(), registry_url());
      }
    }
    was_ok = ok;
    t.expires_after(std::chrono::milliseconds(ok ? 250 : 500));
    co_await t.async_wait(use_tuple);
  }
  --background;
}

}  // namespace vodgrid::director
