// The content manager's skeleton and HTTP API: start (catalog, clients, auth, listening, then
// recovery of what a stop interrupted), the two-phase stop, the routes, and the handlers that
// create, list, show, publish and withdraw programs. The ingest a creation starts is ingest.cc's;
// the publish schedule and the pushes to the directors are publishing.cc's. State: impl.h.
#include <unistd.h>

#include <random>

#include "auth/client.h"
#include "auth/guard.h"
#include "content/impl.h"

namespace vodgrid::content {

json::object to_json(const program_entry& p, bool full) {
  json::object o{{"id", p.id.str()},
                 {"title", p.title},
                 {"state", to_string(p.state)},
                 {"source", p.source},
                 {"publish_at", format_rfc3339(p.publish_at)},
                 {"created_at", format_rfc3339(p.created_at)},
                 {"updated_at", format_rfc3339(p.updated_at)},
                 {"duration", p.duration},
                 {"video_codec", p.video_codec},
                 {"audio_codec", p.audio_codec},
                 {"width", p.width},
                 {"height", p.height},
                 {"bitrate", p.bitrate},
                 {"video_frames", p.video_frames},
                 {"segments", std::max(p.segments.size(), p.segment_count)}};
  json::array targets;
  for (auto& t : p.targets) {
    targets.push_back(json::value(t));
  }
  o["stations"] = targets;
  if (!p.error.empty()) {
    o["error"] = p.error;
  }
  if (!p.renditions.empty() || !p.dropped.empty()) {
    // Each rendition with the program id it plays under (flow 9).
    json::array rs, dropped;
    for (auto& r : p.renditions) {
      auto ro = api::to_json(r).as_object();
      if (auto id = api::rendition_id(p.id, r.name)) {
        ro["program"] = id->str();
      }
      rs.push_back(std::move(ro));
    }
    for (auto& d : p.dropped) {
      dropped.push_back(json::value(d));
    }
    o["renditions"] = std::move(rs);
    o["dropped"] = std::move(dropped);
  }
  if (full) {
    json::array segs;
    for (auto& s : p.segments) {
      segs.push_back(api::to_json(s));
    }
    o["segments"] = segs;
  }
  return o;
}

content_manager::content_manager(asio::io_context& io, grid_config grid)
    : impl_(std::make_unique<impl>(io, std::move(grid))) {}

// Its further loops end before its state goes (net::daemon_base::end_loops).
content_manager::~content_manager() {
  impl_->end_loops();
}

uint16_t content_manager::port() const {
  return impl_->port;
}

status content_manager::start() {
  auto& d = *impl_;
  if (!d.grid.content) {
    return make_error(errc::invalid_argument, "the config has no [content]");
  }
  if (!d.grid.home_station()) {
    return make_error(errc::invalid_argument, "the config has no home station");
  }
  std::error_code ec;
  fs::create_directories(d.grid.content->work_dir, ec);
  if (ec) {
    return make_error(errc::io_error, fmt::format("cannot create {}: {}",
                                                  d.grid.content->work_dir.string(), ec.message()));
  }
  auto conn = db::open(d.grid.content->database);
  if (!conn) {
    return conn.err();
  }
  auto cat = catalog::open(**conn);
  if (!cat) {
    return cat.err();
  }
  if (auto st = lease::create_table(**conn); !st) {
    return st;
  }
  d.cat = std::move(*cat);
  d.conn = std::move(*conn);
  net::server_options sopts;
  sopts.metrics_from = d.grid.metrics_ranges();
  d.server = std::make_unique<net::http_server>(d.io.get_executor(), "content", sopts);
  net::client_options co;
  // Control requests to the directors and the registry (pushes, distribution, removals).
  co.request_timeout = d.grid.timing.exchange;
  co.bearer = [&d] { return d.auth ? d.auth->token() : std::string(); };
  d.client = std::make_unique<net::http_client>(d.io.get_executor(), co);
  if (d.grid.registry) {
    d.registry.emplace(d.grid.registry->client_urls(), "registry");
  }
  if (d.grid.auth) {
    d.auth = std::make_unique<auth::service_session>(d.io.get_executor(), d.grid.auth->listen.url(),
                                                     "content", d.grid.content->work_dir,
                                                     "content manager");
    if (auto st = d.auth->start(); !st) {
      return st;
    }
  }
  d.routes();
  if (auto st = d.listen(d.grid.content->listen); !st) {
    return st;
  }
  // The same string across restarts at the same address: a manager restarted takes its lease back
  // at once; two managers differ by host or port.
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  d.publish_lease.emplace("publish",
                          fmt::format("{}@{}:{}", host, d.grid.content->listen.host, d.port),
                          d.grid.content->publish_lease);
  std::random_device rd;
  d.ingest_owner = fmt::format("{}#{:08x}{:08x}", d.publish_lease->holder(), rd(), rd());
  d.tasks.spawn(d.lease_loop());
  d.tasks.spawn(d.census_loop());
  d.logger->info("content manager: listening on {}:{}, catalog {}", d.grid.content->listen.host,
                 d.port, d.conn->kind() == db::dialect::sqlite ? "SQLite" : "PostgreSQL");
  return {};
}

// An ingest downloading or packaging gives up at once and is marked failed; one still running at
// the drain deadline is abandoned, and the next start's recovery marks it failed.
asio::awaitable<void> content_manager::stop(std::chrono::milliseconds drain) {
  co_await impl_->stop(drain);
}

void content_manager::impl::on_stop() {
  cancel = true;
  if (auth) {
    auth->stop();
  }
  for (auto& [id, t] : schedule) {
    t->cancel();
  }
  push_wake.cancel();
}

void content_manager::impl::routes() {
  using V = http::verb;
  route(V::post, "/v1/programs", &impl::create, 64 << 10);
  // Reads (docs/protocol.md, "Who may read what"): any token; a viewer's sees only the published
  // programs it is entitled to, without their source, stations or errors.
  auto read = [this](std::string pattern, asio::awaitable<reply> (impl::*fn)(request_context&)) {
    server->route(V::get, std::move(pattern),
                  auth::guarded_read(auth.get(), auth::readers::viewers, bind(fn)));
  };
  read("/v1/programs", &impl::list);
  read("/v1/programs/{}", &impl::get);
  route(V::post, "/v1/programs/{}/publish", &impl::publish);
  route(V::post, "/v1/programs/{}/withdraw", &impl::withdraw);
  server->set_health([this] {
    std::lock_guard lock(progress_mu);
    return json::object{{"role", "content"},
                        {"ingesting", progress.size()},
                        {"scheduled", schedule.size()},
                        {"publish_lease", leads()}};
  });
  register_metrics();
}

void content_manager::impl::register_metrics() {
  auto& m = server->metrics();
  ingests = &m.counter("vodgrid_content_ingests_total", "Programs ingested into the home station");
  failures = &m.counter("vodgrid_content_failures_total", "Ingests that failed");
  publishes = &m.counter("vodgrid_content_publishes_total", "Programs published");
  using values = net::metrics_registry::labelled_values;
  m.gauges_fn("vodgrid_content_programs", "Programs of the catalog by state", [this] {
    last_scrape_ns = steady::now().time_since_epoch().count();
    std::lock_guard lock(census_mu);
    values out;
    for (auto st : {program_state::ingesting, program_state::inactive, program_state::published,
                    program_state::withdrawn, program_state::failed}) {
      auto it = census.by_state.find(st);
      out.emplace_back(fmt::format("state=\"{}\"", to_string(st)),
                       it == census.by_state.end() ? 0.0 : static_cast<double>(it->second));
    }
    return out;
  });
  m.gauge_fn("vodgrid_content_publish_lease_held",
             "1 while this content manager holds the publish schedule's lease, else 0",
             [this] { return leads() ? 1.0 : 0.0; });
  m.gauge_fn("vodgrid_content_publish_overdue",
             "Programs still inactive a minute after their publish time", [this] {
               std::lock_guard lock(census_mu);
               return static_cast<double>(census.overdue);
             });
}

// Every 2 s while /metrics is read (a minute after the last scrape; at once at the start): the
// catalog counted. A program is overdue when it is still inactive a minute after its publish time
// (the publish failed, or the manager was down at the time).
asio::awaitable<void> content_manager::impl::census_loop() {
  constexpr auto grace = std::chrono::minutes(1);
  bool first = true;
  while (!stopping) {
    auto since = steady::now() - steady::time_point(steady::duration(last_scrape_ns.load()));
    result<std::vector<program_entry>> all = make_error(errc::unavailable, "nobody reads it");
    if (first || since < std::chrono::minutes(1)) {
      all = co_await on_db([&] { return cat->list(); });
    }
    first = false;
    if (all) {
      census_counts c;
      auto now = wall_clock::now();
      for (auto& p : *all) {
        ++c.by_state[p.state];
        if (p.state == program_state::inactive && p.publish_at + grace < now) {
          ++c.overdue;
        }
      }
      std::lock_guard lock(census_mu);
      census = std::move(c);
    }
    if (co_await stop_requested.wait_for(std::chrono::seconds(2))) {
      break;
    }
  }
}

asio::awaitable<std::optional<reply>> content_manager::impl::operator_refusal(
    request_context& ctx) {
  if (!auth) {
    co_return std::nullopt;
  }
  std::vector<auth::token_kind> kinds{auth::token_kind::operator_};  // (GCC 12: no braced list
                                                                     // as a coroutine argument)
  co_return co_await auth::refusal_unless(ctx, auth->keys(), std::move(kinds));
}

asio::awaitable<reply> content_manager::impl::create(request_context& ctx) {
  if (auto refusal = co_await operator_refusal(ctx)) {
    co_return std::move(*refusal);
  }
  auto req = parse_ingest_request(ctx.req.body(), grid, wall_clock::now());
  if (!req) {
    co_return net::error_reply(req.err());
  }
  auto& p = req->program;
  if (stopping) {
    co_return net::error_reply(make_error(errc::unavailable, "the content manager is stopping"));
  }
  {
    std::lock_guard lock(progress_mu);
    if (progress.contains(p.id)) {
      co_return net::error_reply(
          make_error(errc::conflict, fmt::format("program {} is being ingested", p.id.str())));
    }
  }
  auto created = co_await on_db([&] { return cat->create(p, ingest_owner); });
  if (!created) {
    co_return net::error_reply(created.err());
  }
  set_progress(p.id, {"queued", 0, 0, ""});
  logger->info("program {} ({}): ingest from {}, publishes at {}", p.id.str(), p.title, p.source,
               format_rfc3339(p.publish_at));
  tasks.spawn(ingest(p, req->target_seconds,
                     req->transcode ? std::optional<ladder_options>(req->ladder) : std::nullopt));
  co_return net::json_reply(to_json(p, false), http::status::accepted);
}

namespace {

// What a viewer's token is shown of a program: not where it came from (the source path on the
// server), its stations or its errors.
json::object viewer_view(json::object o) {
  for (auto* k : {"source", "stations", "error", "dropped"}) {
    o.erase(k);
  }
  return o;
}

}  // namespace

asio::awaitable<reply> content_manager::impl::list(request_context& ctx) {
  auto who = co_await auth::reader_of(ctx, auth.get());
  auto all = co_await on_db([&] { return cat->list(); });
  if (!all) {
    co_return net::error_reply(all.err());
  }
  json::array a;
  for (auto& p : *all) {
    if (who.sees_all()) {
      a.push_back(to_json(p, false));
    } else if (who.may_see(p.id, to_string(p.state))) {
      a.push_back(viewer_view(to_json(p, false)));
    }
  }
  co_return net::json_reply(json::object{{"programs", a}});
}

asio::awaitable<reply> content_manager::impl::get(request_context& ctx) {
  auto who = co_await auth::reader_of(ctx, auth.get());
  auto id = program_id::parse(ctx.params[0]);
  if (!id) {
    co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
  }
  auto p = co_await on_db([&] { return cat->get(*id); });
  if (!p) {
    co_return net::error_reply(p.err());
  }
  // A viewer's token: a program it may not see is as unknown.
  if (!*p || !who.may_see((*p)->id, to_string((*p)->state))) {
    co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
  }
  if (!who.sees_all()) {
    co_return net::json_reply(viewer_view(to_json(**p, true)));
  }
  auto hist = co_await on_db([&] { return cat->history(*id); });
  auto o = to_json(**p, true);
  json::array h;
  if (hist) {
    for (auto& c : *hist) {
      h.push_back(json::object{
          {"at", format_rfc3339(c.at)}, {"state", to_string(c.state)}, {"detail", c.detail}});
    }
  }
  o["history"] = h;
  {
    std::lock_guard lock(progress_mu);
    if (auto it = progress.find(*id); it != progress.end()) {
      o["progress"] = json::object{{"phase", it->second.phase},
                                   {"done", it->second.done},
                                   {"total", it->second.total},
                                   {"unit", it->second.unit}};
    }
  }
  co_return net::json_reply(o);
}

asio::awaitable<status> content_manager::impl::change(const program_id& id, program_state to,
                                                      std::string detail) {
  auto now = wall_clock::now();
  co_return co_await on_db([&] { return cat->change_state(id, to, now, detail); });
}

asio::awaitable<reply> content_manager::impl::publish(request_context& ctx) {
  if (auto refusal = co_await operator_refusal(ctx)) {
    co_return std::move(*refusal);
  }
  auto id = program_id::parse(ctx.params[0]);
  if (!id) {
    co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
  }
  auto now = wall_clock::now();
  auto st = co_await on_db([&]() -> status {
    auto p = cat->get(*id);
    if (!p) {
      return p.err();
    }
    if (!*p) {
      return make_error(errc::not_found, "no such program: " + id->str());
    }
    if ((*p)->state == program_state::ingesting) {
      return make_error(errc::conflict, fmt::format("program {} is still being ingested; it "
                                                    "publishes at {} once it is in place",
                                                    id->str(), format_rfc3339((*p)->publish_at)));
    }
    if (auto s = cat->change_state(*id, program_state::published, now, "by the operator"); !s) {
      return s;
    }
    return cat->set_publish_at(*id, now);
  });
  if (!st) {
    co_return net::error_reply(st.err());
  }
  if (auto it = schedule.find(*id); it != schedule.end()) {
    it->second->cancel();
    schedule.erase(it);
  }
  auto p = co_await on_db([&] { return cat->get(*id); });
  if (!p || !*p) {
    co_return net::error_reply(p ? make_error(errc::not_found, "program deleted") : p.err());
  }
  publishes->inc();
  logger->info("program {}: published by the operator", id->str());
  co_return co_await announce_and_reply(**p);
}

asio::awaitable<reply> content_manager::impl::withdraw(request_context& ctx) {
  if (auto refusal = co_await operator_refusal(ctx)) {
    co_return std::move(*refusal);
  }
  auto id = program_id::parse(ctx.params[0]);
  if (!id) {
    co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
  }
  auto st = co_await change(*id, program_state::withdrawn, "by the operator");
  if (!st) {
    co_return net::error_reply(st.err());
  }
  if (auto it = schedule.find(*id); it != schedule.end()) {
    it->second->cancel();
    schedule.erase(it);
  }
  auto p = co_await on_db([&] { return cat->get(*id); });
  if (!p || !*p) {
    co_return net::error_reply(p ? make_error(errc::not_found, "program deleted") : p.err());
  }
  logger->info("program {}: withdrawn", id->str());
  co_return co_await announce_and_reply(**p);
}

asio::awaitable<reply> content_manager::impl::announce_and_reply(const program_entry& p) {
  announce(p);
  auto missing = co_await push_round(p.id);
  for (auto& r : p.renditions) {
    if (auto id = api::rendition_id(p.id, r.name)) {
      missing.merge(co_await push_round(*id));
    }
  }
  auto o = to_json(p, false);
  json::array a;
  for (auto& s : missing) {
    a.push_back(json::value(s));
  }
  o["not_yet_told"] = a;
  co_return net::json_reply(o);
}

// When the publish lease is taken (at start, or from a manager gone): finish what a stop
// interrupted, arm the schedule, push the states again.
asio::awaitable<void> content_manager::impl::recover() {
  co_await recover_orphaned_ingests();
  auto all = co_await on_db([&] { return cat->list(); });
  if (!all) {
    logger->error("content manager: cannot read the catalog: {}", all.err().detail);
    co_return;
  }
  for (auto& p : *all) {
    if (stopping) {
      break;  // the next start recovers the rest
    }
    switch (p.state) {
      case program_state::ingesting:
        break;  // recover_orphaned_ingests: only those whose manager is gone
      case program_state::inactive:
        schedule_publish(p.id, p.publish_at);
        announce(p);
        break;
      case program_state::published:
      case program_state::withdrawn:
        announce(p);
        break;
      case program_state::failed:
        break;
    }
  }
}

asio::awaitable<void> content_manager::impl::recover_orphaned_ingests() {
  auto stale = co_await on_db([&] { return cat->orphaned_ingests(publish_lease->ttl()); });
  if (!stale) {
    logger->error("content manager: cannot read the catalog: {}", stale.err().detail);
    co_return;
  }
  for (auto& id : *stale) {
    if (stopping || !leads()) {
      break;  // the next holder recovers the rest
    }
    if (std::lock_guard lock(progress_mu); progress.contains(id)) {
      continue;  // running here (an owner whose heartbeat could not be written for a while)
    }
    auto p = co_await on_db([&] { return cat->get(id); });
    if (!p || !*p) {
      continue;
    }
    // Failed first, only if still ingesting (checked in the transaction), and only then removed
    // from the home station: an owner that finished meanwhile keeps its program.
    std::string reason = "the content manager stopped during the ingest";
    auto now = wall_clock::now();
    auto st = co_await on_db([&] {
      return cat->change_state(id, program_state::failed, now, reason, program_state::ingesting);
    });
    if (!st) {
      continue;
    }
    failures->inc();
    logger->warn("program {}: failed: {} (its owner's heartbeat lapsed)", id.str(), reason);
    std::error_code ec;
    fs::remove_all(grid.content->work_dir / id.str(), ec);
    // It and whatever of its renditions reached the home station.
    std::vector<program_id> loaded{id};
    for (auto& r : (*p)->renditions) {
      loaded.push_back(*api::rendition_id(id, r.name));
    }
    co_await remove_all_from_home(std::move(loaded));
  }
}

asio::awaitable<void> content_manager::impl::lease_loop() {
  auto& l = *publish_lease;
  bool said_standby = false;
  while (true) {  // not `while (!co_await ...)`: GCC 12 miscompiles it
    auto asked = steady::now();
    // This run's ingests stay its own while it renews them: a third of the lease, the lease the
    // staleness (catalog::orphaned_ingests).
    if (auto st = co_await on_db([&] { return cat->heartbeat(ingest_owner); }); !st) {
      logger->warn("content manager {}: the ingests' heartbeat could not be written: {}",
                   l.holder(), st.err().detail);
    }
    auto held = co_await on_db([&] { return l.acquire(*conn); });
    if (held && *held) {
      // The database counts ttl from a moment after `asked`: acting until asked + ttl is safe.
      leading_until = asked + l.ttl();
      if (!leading) {
        leading = true;
        said_standby = false;
        logger->info("content manager {}: holds the publish schedule (lease of {} ms)", l.holder(),
                     l.ttl().count());
        co_await recover();
      } else {
        co_await recover_orphaned_ingests();
        co_await arm_schedule();
      }
    } else if (held) {
      if (leading) {
        logger->warn("content manager {}: another content manager took the publish schedule",
                     l.holder());
        disarm_schedule();
      }
      if (!said_standby) {
        said_standby = true;
        auto who = co_await on_db([&] { return lease::holder(*conn, "publish"); });
        logger->info("content manager {}: standby; the publish schedule is held by {}", l.holder(),
                     who && *who ? **who : std::string("another content manager"));
      }
    } else {
      logger->warn("content manager {}: the publish lease could not be renewed: {}", l.holder(),
                   held.err().detail);
      if (leading && !leads()) {
        logger->warn("content manager {}: the publish lease lapsed; publishes stop here",
                     l.holder());
        disarm_schedule();
      }
    }
    if (co_await stop_requested.wait_for(l.ttl() / 3)) {
      break;
    }
  }
  if (leading) {
    if (auto st = co_await on_db([&] { return l.release(*conn); }); st) {
      logger->info("content manager {}: gave up the publish schedule", l.holder());
    }
  }
}

asio::awaitable<void> content_manager::impl::arm_schedule() {
  auto all = co_await on_db([&] { return cat->list(); });
  if (!all || !leads()) {
    co_return;
  }
  for (auto& p : *all) {
    if (p.state == program_state::inactive && !schedule.contains(p.id)) {
      schedule_publish(p.id, p.publish_at);
    }
  }
}

void content_manager::impl::disarm_schedule() {
  leading = false;
  for (auto& [id, t] : schedule) {
    t->cancel();
  }
  schedule.clear();
}

}  // namespace vodgrid::content
