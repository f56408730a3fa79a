// The director daemon itself: construction, start (clients, the auth session, the listener, the
// registry link and maintenance loops), two-phase stop, the route table with the daemon's metrics,
// and the engine-facing endpoints that feed the tables (heartbeats, the engine list). Everything a
// route does lives with its job: programs.cc (catalog), playback.cc (playlists, redirects),
// copies.cc (copies between engines and stations), maintenance.cc (evictions, idle replicas),
// registry_link.cc (the registry), placement.cc (copies per segment).
#include "director/director.h"

#include <fmt/format.h>

#include <cmath>

#include "auth/guard.h"
#include "director/impl.h"
#include "net/run_on.h"

namespace vodgrid::director {

director_daemon::director_daemon(asio::io_context& io, grid_config grid, station_id station)
    : impl_(std::make_unique<impl>(io, std::move(grid))) {
  impl_->station = impl_->grid.find_station(station.str());
}

// Its further loops end before its state goes (net::daemon_base::end_loops).
director_daemon::~director_daemon() {
  impl_->end_loops();
}

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
  net::server_options sopts;
  sopts.cors.allowed_origins = d.grid.web.allow_origins;
  sopts.metrics_from = d.grid.metrics_ranges();
  if (d.station->director.listen.tls()) {
    d.tickets = std::make_shared<net::ticket_keyring>();
    d.rotate_ticket_keys();  // twice: a key in use and the next one
    d.rotate_ticket_keys();
    d.next_ticket_key = steady::now() + d.grid.timing.ticket_key_period;
    sopts.tickets = d.tickets;
  }
  d.server = std::make_unique<net::http_server>(d.io.get_executor(),
                                                "director " + d.station->name.str(), sopts);
  const timing_config& timing = d.grid.timing;
  net::client_options co;
  co.connect_timeout = timing.connect;
  co.request_timeout = timing.exchange;
  co.read_timeout = timing.silence;
  co.max_body = 64 << 20;
  // Orders to engines, reports to the registry, copies from other stations: with its token.
  co.bearer = [&d] { return d.auth ? d.auth->token() : std::string(); };
  d.client = std::make_unique<net::http_client>(d.io.get_executor(), co);
  if (d.grid.registry) {
    d.registry.emplace(d.grid.registry->client_urls(), "registry");
  }
  // The order answers when the copy is whole, and the engine sends nothing until then.
  co.request_timeout = timing.order;
  co.read_timeout = timing.order;
  d.copy_client = std::make_unique<net::http_client>(d.io.get_executor(), co);
  if (d.grid.auth) {
    d.auth = std::make_unique<auth::service_session>(
        d.io.get_executor(), d.grid.auth->listen.url(), d.station->name.str(),
        d.station->director.data_dir, "director " + d.station->name.str());
    if (auto st = d.auth->start(); !st) {
      return st;
    }
  }
  if (auto st = d.open_web_root(); !st) {
    return st;
  }
  net::client_options lo;
  lo.connect_timeout = timing.connect;
  lo.request_timeout = timing.exchange;
  lo.read_timeout = timing.silence;
  lo.max_body = 64 << 10;
  d.login_client = std::make_unique<net::http_client>(d.io.get_executor(), lo);
  d.routes();
  if (auto st = d.open_rtcp_sink(); !st) {
    return st;
  }
  auto loops = net::loop_count(d.station->director.threads);
  if (!loops) {
    return loops.err();
  }
  d.threads = *loops;
  if (auto st = d.listen(d.station->director.listen); !st) {
    return st;
  }
  if (d.grid.registry) {
    d.tasks.spawn(d.registry_loop());
  } else {
    d.tables.keep_changes(false);  // no one reports them
  }
  d.tasks.spawn(d.maintenance_loop());
  d.tasks.spawn(d.push_sweep_loop());
  d.logger->info("director {}: listening on {}:{}, {} programs in the catalog",
                 d.station->name.str(), d.station->director.listen.host, d.port, d.catalog.size());
  return {};
}

// The loops end at once (they sleep on stop_requested). Copies and orders still in flight are
// abandoned at the deadline; the engines finish or drop them on their own, and nothing unfinished
// was recorded.
asio::awaitable<void> director_daemon::stop(std::chrono::milliseconds drain) {
  co_await impl_->stop(drain);
}

void director_daemon::impl::routes() {
  using V = http::verb;
  // Control endpoints, with an auth server: an operator's token (a loader) or a daemon's (an
  // engine, the registry, the content manager, another station's director); heartbeats: an
  // engine's.
  using K = auth::token_kind;
  auto guarded = [this](V v, std::string pattern,
                        asio::awaitable<reply> (impl::*fn)(request_context&), uint64_t limit,
                        std::vector<K> kinds) {
    server->route(v, std::move(pattern), auth::guarded(auth.get(), std::move(kinds), bind(fn)),
                  limit);
  };
  const std::vector<K> service{K::engine, K::operator_};
  // Reads (docs/protocol.md, "Who may read what"): the engine table for operators and the grid's
  // daemons; programs for any token, a viewer's seeing only what it may play.
  using R = auth::readers;
  auto read = [this](std::string pattern, asio::awaitable<reply> (impl::*fn)(request_context&),
                     R who) {
    server->route(V::get, std::move(pattern), auth::guarded_read(auth.get(), who, bind(fn)));
  };
  guarded(V::post, "/v1/engines/{}/heartbeat", &impl::heartbeat, 512ull << 20, {K::engine});
  read("/v1/engines", &impl::list_engines, R::operators);
  guarded(V::post, "/v1/programs", &impl::create_program, 256ull << 20, service);
  read("/v1/programs", &impl::list_programs, R::viewers);
  read("/v1/programs/{}", &impl::get_program, R::viewers);
  guarded(V::delete_, "/v1/programs/{}", &impl::delete_program, 0, service);
  guarded(V::post, "/v1/programs/{}/commit", &impl::commit_program, 0, service);
  // What consoles and web pages read (CORS, net::audience): playlists, redirects, the watch page.
  auto viewer = [this](std::string pattern, asio::awaitable<reply> (impl::*fn)(request_context&)) {
    route(V::get, std::move(pattern), fn, 0, net::audience::viewer);
  };
  viewer("/v1/programs/{}/index.m3u8", &impl::playlist);
  viewer("/v1/programs/{}/iframes.m3u8", &impl::iframe_playlist);
  // The redirect runs on the connection's loop (issue 16; playback.cc, redirect_now).
  for (const char* ext : {"ts", "vtt"}) {  // .vtt: subtitles (api::segment_format)
    route(V::get, fmt::format("/v1/programs/{{}}/segments/{{}}.{}", ext), &impl::segment, 0,
          net::audience::viewer, net::loop_affinity::any);
  }
  viewer("/watch/{}", &impl::watch_page);
  viewer("/web/{}", &impl::web_file);
  // The watch page's login (web.cc): a control endpoint, for pages of this origin only.
  route(V::post, "/v1/login/viewer", &impl::viewer_login, 4 << 10);
  guarded(V::get, "/v1/programs/{}/segments/{}/holder", &impl::holder, 0, service);
  guarded(V::post, "/v1/programs/{}/distribute", &impl::distribute, 256ull << 20, service);
  guarded(V::post, "/v1/programs/{}/availability", &impl::set_availability, 0, service);
  guarded(V::post, "/v1/engines/{}/evictions", &impl::evictions, 16ull << 20, {K::engine});
  // Push streaming: the engines streaming RTSP sessions (push.cc); the consoles' RTSP connections
  // share the port (rtsp.cc).
  guarded(V::post, "/v1/push/sessions/{}/next", &impl::push_next, 0, {K::engine});
  guarded(V::post, "/v1/push/sessions/{}/taken", &impl::push_taken, 0, {K::engine});
  guarded(V::post, "/v1/push/sessions/{}/ended", &impl::push_ended, 0, {K::engine});
  guarded(V::post, "/v1/push/positions", &impl::push_positions, 64ull << 20, {K::engine});
  server->set_foreign_protocol("RTSP/1.0",
                               [this](net::foreign_connection& c) { return rtsp_connection(c); });
  server->set_health([this] {
    auto now = steady::now();
    return json::object{{"role", "director"},
                        {"station", station->name.str()},
                        {"engines_up", tables.up_engines(now).size()},
                        {"programs", catalog.size()},
                        {"under_replicated", under_replicated},
                        {"repairs_in_flight", repairing.size()}};
  });
  register_metrics();
}

void director_daemon::impl::register_metrics() {
  auto& m = server->metrics();
  redirects =
      &m.counter("vodgrid_director_redirects_total", "Segment requests redirected to an engine");
  for (const char* reason : {"program", "no_station", "no_engine", "signing"}) {
    m.counter("vodgrid_director_unavailable_total", unavailable_help,
              fmt::format("reason=\"{}\"", reason));  // each shown from the start, at 0
  }
  preload_orders =
      &m.counter("vodgrid_director_preload_orders_total", "Preload orders sent to engines");
  heartbeats = &m.counter("vodgrid_director_heartbeats_total", "Engine heartbeats received");
  heartbeat_slices = &m.counter(
      "vodgrid_director_heartbeat_slices_total",
      "Times applying a heartbeat gave the loop back to other work before going on (a heartbeat "
      "applied in one piece counts none)");
  heartbeat_hold = &m.histogram_of(
      "vodgrid_director_heartbeat_hold_seconds",
      "How long decoding or applying a heartbeat held the home loop in one piece (the decoding "
      "of one small enough to be decoded on the loop, the apply's start, or a slice with its "
      "publication), which every console's redirect on that loop waited for",
      "", {25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 10e-3});
  heartbeats_decoded_off_loop = &m.counter(
      "vodgrid_director_heartbeats_decoded_off_loop_total",
      "Engine heartbeats large enough to be decoded on a thread of their own, off the loop "
      "that answers consoles");
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
  push_plays = &m.counter("vodgrid_director_push_plays_total", "RTSP PLAY requests streamed");
  push_handoffs = &m.counter("vodgrid_director_push_handoffs_total",
                             "Push streams handed from one engine to another (claim 16)");
  push_swaps =
      &m.counter("vodgrid_director_push_swaps_total",
                 "Push streams swapped to an engine holding the whole segment (claims 21-22)");
  push_resumes = &m.counter("vodgrid_director_push_resumes_total",
                            "Push streams resumed on another engine after theirs went silent");
  rtsp_errors = &m.counter("vodgrid_director_rtsp_errors_total", "RTSP requests refused");
  m.gauge_fn("vodgrid_director_rtsp_sessions", "RTSP sessions",
             [this] { return static_cast<double>(push_sessions.size()); });
  programs_learned = &m.counter("vodgrid_director_programs_learned_total",
                                "Programs learned from the registry on a console's request");
}

// A heartbeat this large (a whole inventory after a resync: ~40 bytes a segment) is decoded on
// decode_pool rather than on the loop, which meanwhile answers redirects (issue 16, item 5); a
// small one costs less to decode than the two posts.
constexpr size_t decode_off_loop_bytes = 8 << 10;

asio::awaitable<reply> director_daemon::impl::heartbeat(request_context& ctx) {
  result<api::heartbeat> hb = make_error(errc::internal, "not decoded");
  if (ctx.req.body().size() > decode_off_loop_bytes) {
    // The body stays the connection's while it waits for this reply.
    auto job = [body = std::string_view(ctx.req.body())] {
      return api::decode<api::heartbeat>(body);
    };
    hb = co_await net::run_on(decode_pool, std::move(job), errc::invalid_argument, "heartbeat: ");
    heartbeats_decoded_off_loop->inc();
  } else {
    auto piece = steady::now();
    hb = api::decode<api::heartbeat>(ctx.req.body());
    heartbeat_hold->observe(std::chrono::duration<double>(steady::now() - piece).count());
  }
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
  bool with_keys = co_await takes_ticket_keys(ctx, hb->engine);
  auto before = tables.find_engine(hb->engine.str());
  bool was_up = before && tables.is_up(tables.engine(*before), steady::now());
  auto copies = std::move(hb->copies);
  auto engine = hb->engine;
  // Issue 16, item 5: applied in slices of about apply_slice_us, their publication counted, the
  // loop free for other work (its consoles among them, other engines' heartbeats) in between. One
  // heartbeat of an engine at a time.
  auto& mu = apply_mu[engine.str()];
  if (!mu) {
    mu = std::make_unique<net::async_mutex>(io.get_executor());
  }
  auto applying = co_await mu->lock();
  station_tables::apply_job job;
  auto piece = steady::now();
  auto rep = tables.begin_apply(std::move(*hb), piece, job);
  while (!tables.apply_slice(job, std::chrono::microseconds(apply_slice_us))) {
    heartbeat_hold->observe(std::chrono::duration<double>(steady::now() - piece).count());
    heartbeat_slices->inc();
    co_await asio::post(io.get_executor(), asio::use_awaitable);
    piece = steady::now();
  }
  heartbeat_hold->observe(std::chrono::duration<double>(steady::now() - piece).count());
  heartbeats->inc();
  size_t n = 0;
  for (auto& c : copies) {
    if (++n % 64 == 0) {  // (a long list, each failure logged, in pieces too)
      co_await asio::post(io.get_executor(), asio::use_awaitable);
    }
    // Claim 20, copy done: a copy from another station is a sample of its throughput.
    auto u = net::parse_http_url(c.source);
    auto from = u ? station_of_origin.find(u->origin()) : station_of_origin.end();
    if (c.ok && from != station_of_origin.end() && c.seconds > 0) {
      copy_samples.push_back({from->second, c.bytes, c.seconds});
    }
    if (!c.ok) {
      logger->warn("director {}: engine {} failed to copy {}: {}", station->name.str(),
                   engine.str(), c.key.str(), c.error);
    }
  }
  if (with_keys) {
    add_ticket_keys(rep);
  }
  if (!was_up && !rep.resync) {
    auto& e = tables.engine(*tables.find_engine(engine.str()));
    logger->info("director {}: engine {} up at {} with {} segments", station->name.str(),
                 engine.str(), e.url, e.held.size());
  }
  co_return net::json_reply(api::to_json(rep));
}

// The key in use, the next one (made a period before it is used, so that every engine has it by
// then and reads the tickets the others make with it) and the older ones still accepted.
constexpr size_t ticket_keys_before = 2;

void director_daemon::impl::rotate_ticket_keys() {
  auto keys = tickets->get()->keys;
  keys.insert(keys.begin(), net::ticket_key::random());
  keys.resize(std::min(keys.size(), 2 + ticket_keys_before));
  tickets->set(std::move(keys), 1);
}

void director_daemon::impl::rotate_ticket_keys_when_due(steady::time_point now) {
  if (tickets && now >= next_ticket_key) {
    rotate_ticket_keys();
    next_ticket_key = now + grid.timing.ticket_key_period;
  }
}

// Keys that decrypt viewers' sessions: only over TLS (the director's port serves nothing else, and
// the engine verified its certificate against the grid's CA), only to the engine that the token
// names, of this station (the guard checked that it is an engine's token of the grid's auth
// server; without one, anybody could call himself an engine: no keys are shared). The alternative,
// keys wrapped under the station's URL-signing key, would add a cipher of our own for no gain: an
// engine that shares keys reaches a director that serves TLS.
asio::awaitable<bool> director_daemon::impl::takes_ticket_keys(const request_context& ctx,
                                                               const engine_id& engine) {
  if (!tickets || !grid.shares_ticket_keys(*station)) {
    co_return false;
  }
  auto who = co_await auth::reader_of(ctx, auth.get());
  if (!who.token) {
    co_return false;
  }
  const auto& t = *who.token;
  bool its_own = t.kind == auth::token_kind::engine && t.station == station->name.str() &&
                 t.subject == engine.str();
  co_return its_own;
}

void director_daemon::impl::add_ticket_keys(api::heartbeat_reply& rep) const {
  auto now = tickets->get();
  for (auto& k : now->keys) {
    rep.ticket_keys.push_back(k.bytes());
  }
  rep.ticket_key_in_use = static_cast<uint32_t>(now->in_use);
}

asio::awaitable<reply> director_daemon::impl::list_engines(request_context&) {
  json::array a;
  auto now = steady::now();
  for (engine_slot i : tables.all_engines()) {
    auto& e = tables.engine(i);
    a.push_back(json::object{
        {"name", e.name.str()},
        {"url", e.url},
        {"up", tables.is_up(e, now)},
        {"last_seen_ms",
         std::chrono::duration_cast<std::chrono::milliseconds>(now - e.last_seen).count()},
        {"segments", e.held.size()},
        {"filling", e.filling.size()},  // copies arriving (cut-through)
        {"assigned", e.assigned_now()},
        {"load", api::to_json(e.load)}});
  }
  // The hottest segments, for operators: requests decayed over about a minute (hot.h).
  json::array hottest;
  for (auto& h : hot.top(10, now)) {
    hottest.push_back(json::object{{"segment", h.key.str()},
                                   {"program", h.key.program.str()},
                                   {"index", h.key.index.v},
                                   {"requests", std::round(h.requests * 10) / 10}});
  }
  co_return net::json_reply(json::object{{"station", station->name.str()},
                                         {"engines", a},
                                         {"hot", hottest},
                                         {"copies", station->director.copies},
                                         {"under_replicated", under_replicated},
                                         {"repairs_in_flight", repairing.size()}});
}

}  // namespace vodgrid::director
