// The director daemon's HTTP handlers: heartbeats, the program catalog and loader endpoints,
// playlists and segment redirects.
#include "director/director.h"

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>

#include <map>

#include "api/api.h"
#include "api/hls.h"
#include "base/fs.h"
#include "base/log.h"
#include "director/tables.h"
#include "net/client.h"
#include "net/http.h"

namespace vodgrid::director {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using net::reply;
using net::request_context;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {
constexpr std::string_view state_loading = "loading";
constexpr std::string_view state_ready = "ready";
}  // namespace

struct director_daemon::impl {
  asio::io_context& io;
  grid_config grid;
  const station_config* station = nullptr;
  std::shared_ptr<spdlog::logger> logger = log::get("director");
  std::unique_ptr<net::http_server> server;
  std::unique_ptr<net::http_client> client;  // preload orders and deletes
  station_tables tables;
  std::map<program_id, api::program_manifest> catalog;
  // Engine told to preload a segment, and until when that hint holds (claim 16).
  std::unordered_map<segment_key, std::pair<size_t, steady::time_point>> preloaded;
  uint16_t port = 0;
  uint32_t background = 0;  // detached tasks in flight (preload orders); stop waits for them

  net::metric_value* redirects = nullptr;
  net::metric_value* unavailable = nullptr;
  net::metric_value* preload_orders = nullptr;
  net::metric_value* heartbeats = nullptr;

  impl(asio::io_context& i, grid_config g)
      : io(i), grid(std::move(g)), tables(grid.heartbeat_timeout) {}

  std::filesystem::path catalog_path() const {
    return station->director.data_dir / "programs.json";
  }
  status load_catalog();
  status save_catalog();
  void routes();
  asio::awaitable<reply> heartbeat(request_context& ctx);
  asio::awaitable<reply> list_engines(request_context& ctx);
  asio::awaitable<reply> create_program(request_context& ctx);
  asio::awaitable<reply> commit_program(request_context& ctx);
  asio::awaitable<reply> delete_program(request_context& ctx);
  asio::awaitable<reply> list_programs(request_context& ctx);
  asio::awaitable<reply> get_program(request_context& ctx);
  asio::awaitable<reply> playlist(request_context& ctx);
  asio::awaitable<reply> segment(request_context& ctx);
  asio::awaitable<void> send_preload(std::string url, api::preload_order order);
  asio::awaitable<void> send_delete(std::string url);
  result<const api::program_manifest*> ready_program(const std::string& id) const;
  std::string missing_copies(const api::program_manifest& m, size_t want) const;
};

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
  co.request_timeout = std::chrono::seconds(5);
  co.max_body = 1 << 20;
  d.client = std::make_unique<net::http_client>(d.io.get_executor(), co);
  d.routes();
  auto port = d.server->listen(d.station->director.listen.host, d.station->director.listen.port);
  if (!port) {
    return port.err();
  }
  d.port = *port;
  d.logger->info("director {}: listening on {}:{}, {} programs in the catalog",
                 d.station->name.str(), d.station->director.listen.host, d.port, d.catalog.size());
  return {};
}

asio::awaitable<void> director_daemon::stop(std::chrono::milliseconds drain) {
  auto& d = *impl_;
  if (d.server) {
    co_await d.server->stop(drain);
  }
  asio::steady_timer t(d.io);
  while (d.background > 0) {
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
  on(V::post, "/v1/engines/{}/heartbeat", &impl::heartbeat, 512ull << 20);
  on(V::get, "/v1/engines", &impl::list_engines);
  on(V::post, "/v1/programs", &impl::create_program, 256ull << 20);
  on(V::get, "/v1/programs", &impl::list_programs);
  on(V::get, "/v1/programs/{}", &impl::get_program);
  on(V::delete_, "/v1/programs/{}", &impl::delete_program);
  on(V::post, "/v1/programs/{}/commit", &impl::commit_program);
  on(V::get, "/v1/programs/{}/index.m3u8", &impl::playlist);
  on(V::get, "/v1/programs/{}/segments/{}.ts", &impl::segment);
  server->set_health([this] {
    auto now = steady::now();
    return json::object{{"role", "director"},
                        {"station", station->name.str()},
                        {"engines_up", tables.up_engines(now).size()},
                        {"programs", catalog.size()}};
  });
  auto& m = server->metrics();
  redirects =
      &m.counter("vodgrid_director_redirects_total", "Segment requests redirected to an engine");
  unavailable = &m.counter("vodgrid_director_unavailable_total",
                           "Segment requests with no engine to serve them");
  preload_orders =
      &m.counter("vodgrid_director_preload_orders_total", "Preload orders sent to engines");
  heartbeats = &m.counter("vodgrid_director_heartbeats_total", "Engine heartbeats received");
  m.gauge_fn("vodgrid_director_engines_up", "Engines in rotation",
             [this] { return static_cast<double>(tables.up_engines(steady::now()).size()); });
  m.gauge_fn("vodgrid_director_locations", "Segments with at least one copy in the station",
             [this] { return static_cast<double>(tables.location_count()); });
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
    ours = ours || e.name == hb->engine;
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
  co_return net::json_reply(json::object{{"station", station->name.str()}, {"engines", a}});
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
  catalog[m->id] = *m;
  if (auto st = save_catalog(); !st) {
    catalog.erase(m->id);
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
  logger->info("director {}: program {} ready", station->name.str(), id->str());
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
                             {"segments", m.segments.size()},
                             {"duration", m.duration()}});
  }
  co_return net::json_reply(json::object{{"programs", a}});
}

asio::awaitable<reply> director_daemon::impl::get_program(request_context& ctx) {
  auto id = program_id::parse(ctx.params[0]);
  auto it = id ? catalog.find(*id) : catalog.end();
  if (it == catalog.end()) {
    co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
  }
  co_return net::json_reply(api::to_json(it->second));
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
  return &it->second;
}

asio::awaitable<reply> director_daemon::impl::playlist(request_context& ctx) {
  auto m = ready_program(ctx.params[0]);
  if (!m) {
    co_return net::error_reply(m.err());
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
  if (!m) {
    co_return net::error_reply(m.err());
  }
  auto idx = segment_index::parse(ctx.params[1]);
  if (!idx || idx->v >= (*m)->segments.size()) {
    co_return net::error_reply(
        make_error(errc::not_found,
                   fmt::format("program {} has no segment {}", ctx.params[0], ctx.params[1])));
  }
  auto now = steady::now();
  segment_key key{(*m)->id, *idx};
  std::optional<size_t> hint;
  if (auto p = preloaded.find(key); p != preloaded.end()) {
    if (p->second.second > now) {
      hint = p->second.first;
    }
    preloaded.erase(p);
  }
  auto chosen = tables.choose(key, now, hint);
  if (!chosen) {
    unavailable->inc();
    auto r = net::error_reply(
        make_error(errc::unavailable,
                   fmt::format("no engine holding {} is up and under its limits", key.str())));
    r.headers.emplace_back("Retry-After", "1");
    co_return r;
  }
  auto& e = tables.engine(*chosen);
  std::string query;
  if (auto q = ctx.req.target().find('?'); q != std::string_view::npos) {
    query = std::string(ctx.req.target().substr(q));
  }
  reply r;
  r.status = http::status::found;
  r.headers.emplace_back("Location", fmt::format("{}/v1/segments/{}/{}.ts{}", e.url,
                                                 key.program.str(), idx->v, query));
  r.headers.emplace_back("Cache-Control", "no-store");
  r.body = "{}\n";
  redirects->inc();

  // Claim 16: the engine that will serve the next segment preloads it now.
  if (idx->v + 1 < (*m)->segments.size() && ctx.req.method() == http::verb::get) {
    segment_key next{key.program, segment_index{idx->v + 1}};
    if (auto n = tables.peek(next, now)) {
      auto ttl = std::chrono::duration_cast<steady::duration>(
          std::chrono::duration<double>((*m)->segments[idx->v].duration * 2 + 1));
      if (preloaded.size() > 100'000) {  // hints of consoles that went away
        std::erase_if(preloaded, [now](const auto& kv) { return kv.second.second <= now; });
      }
      preloaded[next] = {*n, now + ttl};
      preload_orders->inc();
      asio::co_spawn(
          io, send_preload(tables.engine(*n).url + "/v1/orders/preload", api::preload_order{next}),
          asio::detached);
    }
  }
  co_return r;
}

}  // namespace vodgrid::director
