// The registry daemon's state, shared by the files that handle its routes: registry.cc (start,
// stop, the route table), stations.cc (registrations, reports, the live view), programs.cc
// (distribution parameters, availability, notifications to target stations), lookups.cc (the
// sources and locations of a segment) and dashboard.cc (the operator's dashboard).
// Threading: the live view belongs to the io thread; the database and segment_counts to the one
// database thread (db_pool, reached through on_db).
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/api.h"
#include "auth/session.h"
#include "base/config.h"
#include "base/log.h"
#include "net/client.h"
#include "net/daemon.h"
#include "net/http.h"
#include "net/run_on.h"
#include "registry/cost.h"
#include "registry/dashboard.h"
#include "registry/location_db.h"
#include "registry/registry.h"

namespace vodgrid::registry {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using net::reply;
using net::request_context;
using steady = std::chrono::steady_clock;

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

  // The dashboard (dashboard.cc); io thread only. The registry polls the stations only while
  // someone has asked for the state within the last minute, each read under a short deadline and
  // at most one in flight per director, supervisor and engine, so a dead station holds up nothing.
  struct dashboard_state {
    std::filesystem::path web_root;            // where dashboard/ is; empty: not found (503)
    std::unique_ptr<net::http_client> client;  // the polls: deadlines under a second
    std::unique_ptr<net::http_client> login;   // the page's logins, relayed to the auth server
    steady::time_point last_asked{};
    bool polling = false;  // dashboard_loop runs
    struct station_poll {
      bool in_flight = false;
      std::optional<bool> reachable;  // its director answered the last poll; unset: not polled yet
      std::string error;              // why it did not
      int64_t at_ms = 0;              // when the last poll ended (Unix time)
      std::optional<director_view> view;
      bool supervisor_in_flight = false;
      std::optional<std::map<std::string, uint64_t>> restarts;  // per blade, from its supervisor
    };
    std::map<std::string, station_poll> stations;
    std::map<std::string, engine_probe> engines;
    std::map<std::string, engine_status> shown;  // each engine's status at the last comparison
    event_log events;
    // Bytes of finished copies between stations, (source, receiver), as the receivers report them
    // (station_report::copies); counted whether anyone watches or not.
    std::map<std::pair<std::string, std::string>, uint64_t> link_bytes;
    std::map<std::pair<std::string, std::string>, rate_meter> link_rates;
    bool progress_in_flight = false;
    json::array programs;  // distribution progress at the last refresh
    uint64_t programs_total = 0;
  };
  dashboard_state dash;

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
  // Stores a distribution and tells its target stations; the stations told now.
  asio::awaitable<result<json::array>> store_and_notify(api::distribution d);
  asio::awaitable<result<std::vector<api::distribution>>> renditions_to_distribute(
      const api::distribution& d);
  asio::awaitable<reply> list_programs(request_context& ctx);
  asio::awaitable<result<program_record>> stored_program(const std::string& id);
  asio::awaitable<reply> get_program(request_context& ctx);
  asio::awaitable<reply> sources(request_context& ctx);
  asio::awaitable<reply> station_held(request_context& ctx);
  asio::awaitable<result<api::program_manifest>> manifest_with(const program_id& id,
                                                               segment_index idx);
  asio::awaitable<reply> locations(request_context& ctx);
  asio::awaitable<reply> set_availability(request_context& ctx);
  asio::awaitable<reply> grid_info(request_context& ctx);
  asio::awaitable<reply> prometheus_targets(request_context& ctx);
  asio::awaitable<void> notify(std::string director_url, std::string station, api::distribution d);
  std::vector<std::string> targets_of(const api::distribution& d) const;
  status check_indices(const std::vector<location_change>& list);
  result<std::optional<uint32_t>> segment_count(const program_id& program);

  // The dashboard (dashboard.cc).
  status open_dashboard();
  asio::awaitable<reply> dashboard_page(request_context& ctx);
  asio::awaitable<reply> dashboard_file(request_context& ctx);
  asio::awaitable<reply> dashboard_state_reply(request_context& ctx);
  asio::awaitable<reply> operator_login(request_context& ctx);
  asio::awaitable<void> dashboard_loop();
  asio::awaitable<void> poll_director(std::string station);
  asio::awaitable<void> poll_supervisor(std::string station);
  asio::awaitable<void> probe_engine(std::string engine);
  asio::awaitable<void> refresh_progress();
  // On the database thread:
  result<std::pair<json::array, uint64_t>> progress_page();
  json::object program_progress(const program_record& p);
  void compare_station(const station_config& s);
  json::object dashboard_json();
  json::array links_json();
};

}  // namespace vodgrid::registry
