// The registry daemon: start (database, client, auth session, listener), stop, and the route table.
#include "registry/registry.h"

#include "auth/guard.h"
#include "registry/impl.h"

namespace vodgrid::registry {

registry_daemon::registry_daemon(asio::io_context& io, grid_config grid)
    : impl_(std::make_unique<impl>(io, std::move(grid))) {}

// Its further loops end before its state goes (net::daemon_base::end_loops).
registry_daemon::~registry_daemon() {
  impl_->end_loops();
}

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
  net::server_options sopts;
  sopts.metrics_from = d.grid.metrics_ranges();
  d.server = std::make_unique<net::http_server>(d.io.get_executor(), "registry", sopts);
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
  if (auto st = d.open_dashboard(); !st) {
    return st;
  }
  d.routes();
  if (auto st = d.listen(d.grid.registry->listen); !st) {
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
  // Reads (docs/protocol.md, "Who may read what"): the layout and locations for operators and the
  // grid's daemons; programs for any token, a viewer's seeing only what it may play.
  using R = auth::readers;
  auto read = [this](std::string pattern, asio::awaitable<reply> (impl::*fn)(request_context&),
                     R who) {
    server->route(V::get, std::move(pattern), auth::guarded_read(auth.get(), who, bind(fn)));
  };
  guarded(V::put, "/v1/stations/{}", &impl::put_station, 0, {K::engine});
  guarded(V::post, "/v1/stations/{}/report", &impl::report, 256ull << 20, {K::engine});
  read("/v1/stations", &impl::list_stations, R::operators);
  read("/v1/stations/{}/held", &impl::station_held, R::operators);
  guarded(V::put, "/v1/programs/{}", &impl::put_program, 256ull << 20, {K::engine, K::operator_});
  read("/v1/programs", &impl::list_programs, R::viewers);
  read("/v1/programs/{}", &impl::get_program, R::viewers);
  read("/v1/programs/{}/segments/{}/sources", &impl::sources, R::operators);
  read("/v1/programs/{}/segments/{}/locations", &impl::locations, R::operators);
  guarded(V::post, "/v1/programs/{}/availability", &impl::set_availability, 0,
          {K::engine, K::operator_});
  // Open: where auth is (a client logs in from it); the stations for a token (grid_info).
  route(V::get, "/v1/grid", &impl::grid_info);
  // Prometheus service discovery, open to the addresses /metrics is (docs/operations.md).
  route(V::get, "/v1/prometheus/targets", &impl::prometheus_targets);
  // The operator's dashboard (dashboard.cc): control routes, for pages of this origin only. The
  // page and its files are open (they hold no data); the state needs an operator's token, which
  // the page gets from its login (relayed to the auth server) or its token field.
  route(V::get, "/dashboard", &impl::dashboard_page);
  route(V::get, "/dashboard/{}", &impl::dashboard_file);
  guarded(V::get, "/v1/dashboard/state", &impl::dashboard_state_reply, 0, {K::operator_});
  route(V::post, "/v1/login/operator", &impl::operator_login, 4 << 10);
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

}  // namespace vodgrid::registry
