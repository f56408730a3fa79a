// The engine daemon's skeleton: construction, start (store, clients, auth, listening, heartbeats),
// the two-phase stop, and the route and metric tables. What each route does lives in serving.cc
// (segments), fill.cc (copies from other engines), push.cc (RTP push streams); room under the disk
// budget in eviction.cc and the director link in heartbeat.cc. The shared state is
// engine_daemon::impl (impl.h).
#include <algorithm>

#include "auth/guard.h"
#include "engine/impl.h"

namespace vodgrid::engine {

engine_daemon::engine_daemon(asio::io_context& io, grid_config grid, engine_id name)
    : impl_(std::make_unique<impl>(io, std::move(grid))) {
  impl_->self = impl_->grid.find_engine(name.str());
  impl_->station = impl_->grid.station_of_engine(name.str());
}

// Its further loops end before its state goes (net::daemon_base::end_loops).
engine_daemon::~engine_daemon() {
  impl_->end_loops();
}

uint16_t engine_daemon::port() const {
  return impl_->port;
}

status engine_daemon::start() {
  auto& d = *impl_;
  if (!d.self) {
    return make_error(errc::not_found, "no such engine in the config");
  }
  store::options so;
  so.data_dirs = d.self->data_dirs;
  so.max_segment_bytes = d.self->max_segment_bytes;
  auto st = store::segment_store::open(so);
  if (!st) {
    return st.err();
  }
  d.store = std::move(*st);
  auto listed = d.store->list();
  d.logger->info("{}: {} segments held in {} data directories", d.self->name.str(), listed.size(),
                 d.self->data_dirs.size());
  d.store->set_listener(
      [&d](const store::segment_info& s, bool added) { d.on_store_change(s, added); });

  net::server_options sopts;
  sopts.cors.allowed_origins = d.grid.web.allow_origins;
  sopts.metrics_from = d.grid.metrics_ranges();
  sopts.cors.allow_null = true;  // a page of a third origin arrives here through a redirect
  if (d.self->listen.tls() && d.grid.shares_ticket_keys(*d.station)) {
    d.tickets = std::make_shared<net::ticket_keyring>();
    sopts.tickets = d.tickets;
  }
  d.server = std::make_unique<net::http_server>(d.io.get_executor(), "engine " + d.self->name.str(),
                                                sopts);
  net::client_options copts;
  copts.max_body = d.self->max_segment_bytes;
  // Its requests are segment fetches (a fill: the longest of them) and heartbeats. A source that
  // stops sending mid-copy is left for the next one; a hung director misses a beat.
  copts.connect_timeout = d.grid.timing.connect;
  copts.request_timeout = d.grid.timing.fill;
  copts.read_timeout = d.grid.timing.silence;
  // Heartbeats, and the copies it fetches, carry its engine token (claims 24, 25).
  copts.bearer = [&d] { return d.auth ? d.auth->token() : std::string(); };
  d.client = std::make_unique<net::http_client>(d.io.get_executor(), copts);
  if (d.grid.auth) {
    d.auth = std::make_unique<auth::service_session>(d.io.get_executor(), d.grid.auth->listen.url(),
                                                     d.self->name.str(), d.self->data_dirs.at(0),
                                                     "engine " + d.self->name.str());
    if (auto st = d.auth->start(); !st) {
      return st;
    }
  }
  if (auto st = d.start_push(); !st) {
    return st;
  }
  d.routes();
  d.threads = d.self->threads;  // listen() applies VODGRID_THREADS
  if (auto st = d.listen(d.self->listen); !st) {
    return st;
  }
  d.tasks.spawn(d.heartbeat_loop());
  d.logger->info("{}: listening on {}:{}", d.self->name.str(), d.self->listen.host, d.port);
  return {};
}

// The heartbeat loop ends at once (on_stop wakes it) unless a beat is in flight; copies end at
// their next source. Either, still running at the drain deadline, is abandoned: the director
// orders the copy again elsewhere.
asio::awaitable<void> engine_daemon::stop(std::chrono::milliseconds drain) {
  co_await impl_->stop(drain);
}

void engine_daemon::impl::on_stop() {
  heartbeat_timer.cancel();
  if (auth) {
    auth->stop();
  }
  // Push streams end here: the pacer's thread joins (no event after this), and the director
  // resumes the sessions on other engines when their reports stop.
  pacer.reset();
  // Consoles waiting for copies in progress are let go: a stopping engine finishes none.
  for (auto& [key, f] : fills) {
    f->failure = make_error(errc::unavailable, "the engine is stopping");
    f->ended = true;
    f->advanced();
    f->admission.cancel();  // a copy waiting for its turn ends now
  }
}

void engine_daemon::impl::routes() {
  using V = http::verb;
  std::string seg = "/v1/segments/{}/{}.ts";
  // Served by the loop that reads the request when the segment is held (get_segment).
  route(V::get, seg, &impl::get_segment, 0, net::audience::viewer, net::loop_affinity::any);
  // The same segments as subtitles (WebVTT, api::segment_format): answered as text/vtt.
  route(V::get, "/v1/segments/{}/{}.vtt", &impl::get_segment, 0, net::audience::viewer,
        net::loop_affinity::any);
  // What changes the store or orders work: the director's, a loader's (operator) or another
  // engine's token when the grid has an auth server (DESIGN.md flow 7).
  auto guarded = [this](asio::awaitable<reply> (impl::*fn)(request_context&)) {
    return auth::guarded(auth.get(), {auth::token_kind::engine, auth::token_kind::operator_},
                         bind(fn));
  };
  server->route(V::put, seg, guarded(&impl::put_segment), self->max_segment_bytes);
  server->route(V::delete_, seg, guarded(&impl::delete_segment));
  // What the engine holds: for operators and the grid's daemons (docs/protocol.md).
  server->route(
      V::get, "/v1/segments",
      auth::guarded_read(auth.get(), auth::readers::operators, bind(&impl::list_segments)));
  server->route(V::post, "/v1/orders/fetch", guarded(&impl::fetch));
  server->route(V::post, "/v1/orders/preload", guarded(&impl::preload));
  server->route(V::post, "/v1/push/streams", guarded(&impl::push_start));
  server->route(V::post, "/v1/push/streams/{}/stop", guarded(&impl::push_stop));
  register_metrics();
  register_push_metrics();
}

void engine_daemon::impl::register_metrics() {
  server->set_health([this] {
    return json::object{{"role", "engine"},
                        {"name", self->name.str()},
                        {"station", station->name.str()},
                        {"segments", store->list().size()},
                        {"active_streams", usage->active.load()}};
  });
  auto& m = server->metrics();
  m.gauge_fn("vodgrid_engine_active_streams", "Segment streams in flight",
             [this] { return static_cast<double>(usage->active); });
  fetches_ok = &m.counter("vodgrid_engine_fetches_total", "Segment copies from other engines",
                          "result=\"ok\"");
  fetches_failed = &m.counter("vodgrid_engine_fetches_total", "Segment copies from other engines",
                              "result=\"failed\"");
  preloads = &m.counter("vodgrid_engine_preloads_total", "Preload orders carried out");
  evictions = &m.counter("vodgrid_engine_evictions_total", "Segments evicted to make room");
  cut_through_streams = &m.counter("vodgrid_engine_cut_through_streams_total",
                                   "Segment replies served while the segment was arriving");
  handoffs = &m.counter("vodgrid_engine_handoffs_total",
                        "Consoles sent to another engine because this one was at max_streams");
  m.gauge_fn("vodgrid_engine_copies_in_progress", "Segments being received",
             [this] { return static_cast<double>(fills.size()); });
  m.gauge_fn("vodgrid_engine_copies_running", "Copies receiving now (at most max_fills)",
             [this] { return static_cast<double>(fills_running); });
  m.gauge_fn(
      "vodgrid_engine_copies_queued", "Copies waiting for one of the max_fills slots", [this] {
        return static_cast<double>(
            std::count_if(fills.begin(), fills.end(), [](auto& kv) { return kv.second->queued; }));
      });
  bytes_sent = &m.counter("vodgrid_http_body_bytes_sent_total", "Reply body bytes sent");
  m.gauge_fn("vodgrid_engine_segments", "Segments held",
             [this] { return static_cast<double>(store->list().size()); });
  m.gauge_fn("vodgrid_engine_free_bytes", "Free bytes of the filesystems of the data directories",
             [this] { return static_cast<double>(store::totals(store->stats()).free_bytes); });
  const char* requests = "Console requests for a segment: hit from a whole local copy, or miss";
  segment_hits = &m.counter("vodgrid_engine_segment_requests_total", requests, "result=\"hit\"");
  segment_misses = &m.counter("vodgrid_engine_segment_requests_total", requests, "result=\"miss\"");
  served_off_home = &m.counter(
      "vodgrid_engine_segments_served_off_home_total",
      "Replies of held segments sent by a further event loop, without the home loop (threads > 1)");
  fill_seconds = &m.histogram_of("vodgrid_engine_fill_duration_seconds",
                                 "Time to receive a whole copy of a segment", {},
                                 {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120});
  register_disk_metrics(m);
  // Segment bytes over HTTP (from files, and as they arrive) and as RTP payload.
  auto* file_bytes = &m.counter("vodgrid_http_file_bytes_sent_total",
                                "Reply body bytes sent from files (segments) with sendfile");
  auto* stream_bytes =
      &m.counter("vodgrid_http_stream_bytes_sent_total",
                 "Reply body bytes sent as they arrived (segments still being received)");
  m.counters_fn("vodgrid_engine_served_bytes_total", "Segment bytes served to consoles and engines",
                [this, file_bytes, stream_bytes] {
                  double rtp = pacer ? static_cast<double>(pacer->counters().octets) : 0;
                  return net::metrics_registry::labelled_values{
                      {"via=\"http\"", file_bytes->get() + stream_bytes->get()},
                      {"via=\"rtp\"", rtp}};
                });
}

// Per data directory: the filesystem's size and free bytes, and the bytes of segments in it.
void engine_daemon::impl::register_disk_metrics(net::metrics_registry& m) {
  using values = net::metrics_registry::labelled_values;
  auto per_dir = [this](uint64_t store::dir_stats::*field) {
    return [this, field] {
      values out;
      for (auto& d : store->stats()) {
        out.emplace_back(fmt::format("dir=\"{}\"", net::label_value(d.path.string())),
                         static_cast<double>(d.*field));
      }
      return out;
    };
  };
  m.gauges_fn("vodgrid_engine_disk_size_bytes", "Size of the filesystem of each data directory",
              per_dir(&store::dir_stats::total_bytes));
  m.gauges_fn("vodgrid_engine_disk_free_bytes",
              "Free bytes of the filesystem of each data directory",
              per_dir(&store::dir_stats::free_bytes));
  m.gauges_fn("vodgrid_engine_disk_used_bytes", "Bytes of the segments in each data directory",
              per_dir(&store::dir_stats::used_bytes));
}

}  // namespace vodgrid::engine
