// The content manager's state, shared by the files that implement it (manager.cc: start, stop,
// the HTTP API; ingest.cc: download, package, load, distribute; publishing.cc: the publish
// schedule and the pushes to the directors). Private to src/content.
#pragma once

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/system_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>

#include "api/api.h"
#include "auth/session.h"
#include "base/log.h"
#include "base/time.h"
#include "content/catalog.h"
#include "content/decisions.h"
#include "content/lease.h"
#include "content/manager.h"
#include "content/packager.h"
#include "content/renditions.h"
#include "db/db.h"
#include "net/client.h"
#include "net/daemon.h"
#include "net/http.h"
#include "net/peer_list.h"
#include "net/run_on.h"
#include "net/use_tuple.h"

namespace vodgrid::content {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
namespace fs = std::filesystem;
using net::reply;
using net::request_context;
using net::use_tuple;
using steady = std::chrono::steady_clock;

// What an ingest is doing, for GET /v1/programs/{id} and the progress bar of `vodgrid ingest`.
struct progress_info {
  std::string phase;  // "downloading", "packaging", "loading"
  double done = 0;
  double total = 0;  // 0: unknown
  std::string unit;  // "bytes", "seconds", "segments"
};

// The playlist of an HLS source (an .m3u8 path or URL, or the one .m3u8 of a folder), or nullopt
// for a media file. invalid_argument for a folder without exactly one playlist.
result<std::optional<std::string>> source_playlist(const std::string& source);

// A program as the HTTP API shows it; `full` adds its segments.
json::object to_json(const program_entry& p, bool full);

// Threading: every member is owned by the io thread (coroutines touch them only between awaits),
// except `conn` and `cat` (the database thread), `progress` (under `progress_mu`: the pool's jobs
// report to it) and `cancel` (read by the pool's jobs). The io_context, server, task group
// (ingests, recovery, scheduled publishes, the push loop), `stopping` and `port` come from
// net::daemon_base.
struct content_manager::impl : net::daemon_base {
  grid_config grid;
  std::shared_ptr<spdlog::logger> logger = log::get("content");
  std::unique_ptr<net::http_client> client;
  // The registry's daemons (grid.registry's client_urls), through `client`; set with a registry.
  std::optional<net::peer_list> registry;
  std::unique_ptr<db::connection> conn;   // used on the database thread only
  std::unique_ptr<content::catalog> cat;  // on `conn`; used on the database thread only
  asio::thread_pool db_pool{1};           // the database thread: one statement at a time
  // With [auth]: its own token (for the directors and the registry) and the auth server's keys,
  // to check the operator token every change needs.
  std::unique_ptr<auth::service_session> auth;
  asio::thread_pool jobs{2};        // downloads and packaging
  std::atomic<bool> cancel{false};  // set at stop: downloads and packaging give up

  std::mutex progress_mu;
  std::map<program_id, progress_info> progress;  // ingests in flight
  // The publish schedule, armed only while this manager holds the publish lease (lease_loop).
  std::map<program_id, std::unique_ptr<asio::system_timer>> schedule;
  std::optional<content::lease> publish_lease;  // set at start
  // This run of this manager, owner of the ingests it starts (catalog::heartbeat): the lease's
  // holder and a number of this start, so that a restarted manager's former ingests are orphaned.
  std::string ingest_owner;
  bool leading = false;                // holds the lease (as of its last renewal)
  steady::time_point leading_until{};  // ... and may act on it until then
  bool leads() const { return leading && steady::now() < leading_until; }
  std::map<program_id, pending_change> pending;
  asio::steady_timer push_wake;  // the push loop sleeps on it; cancelled by a change and at stop
  bool pushing = false;

  net::metric_value* ingests = nullptr;
  net::metric_value* failures = nullptr;
  net::metric_value* publishes = nullptr;
  // The catalog counted by state, and the programs overdue (inactive past their publish time),
  // counted by census_loop for /metrics (a scrape must not wait on the database).
  struct census_counts {
    std::map<program_state, size_t> by_state;
    size_t overdue = 0;
  };
  std::mutex census_mu;
  census_counts census;
  std::atomic<int64_t> last_scrape_ns{0};  // steady clock; the census runs while /metrics is read

  impl(asio::io_context& i, grid_config g)
      : daemon_base(i), grid(std::move(g)), push_wake(i, steady::time_point::max()) {}
  ~impl() {
    jobs.join();
    db_pool.join();
  }

  const station_config& home() const { return *grid.home_station(); }

  // Runs a catalog call on the database thread and resumes on the io thread.
  template <class F>
  asio::awaitable<std::invoke_result_t<F>> on_db(F f) {
    return net::run_on(db_pool, std::move(f), errc::io_error, "database: ");  // a malformed row
  }

  void set_progress(const program_id& id, progress_info p) {
    std::lock_guard lock(progress_mu);
    progress[id] = std::move(p);
  }

  // manager.cc
  // Stop's first step: downloads and packaging give up, scheduled publishes and the push loop end.
  void on_stop() override;
  void routes();
  // The reply refusing a request that changes programs, or nullopt when it carries a valid operator
  // token (or the grid has no auth server).
  asio::awaitable<std::optional<reply>> operator_refusal(request_context& ctx);
  asio::awaitable<reply> create(request_context& ctx);
  asio::awaitable<reply> list(request_context& ctx);
  asio::awaitable<reply> get(request_context& ctx);
  asio::awaitable<reply> publish(request_context& ctx);
  asio::awaitable<reply> withdraw(request_context& ctx);
  asio::awaitable<status> change(const program_id& id, program_state to, std::string detail);
  // Tells the stations now (one round) and answers with the program and the stations that have
  // not acknowledged yet (they are told again until they do).
  asio::awaitable<reply> announce_and_reply(const program_entry& p);
  asio::awaitable<void> recover();
  // While leading: fails the ingests whose owner's heartbeat went stale (a manager gone) and that
  // do not run here, removing what they loaded into the home station.
  asio::awaitable<void> recover_orphaned_ingests();
  // Takes and renews the publish lease; recovers and arms the schedule when it is taken, disarms
  // it when it is lost, gives it up at stop.
  asio::awaitable<void> lease_loop();
  // While leading: arms the publishes of programs made inactive by another content manager.
  asio::awaitable<void> arm_schedule();
  void disarm_schedule();
  void register_metrics();
  asio::awaitable<void> census_loop();

  // ingest.cc
  // `ladder`: transcoded into renditions (package_ladder); nullopt: remuxed as one program.
  asio::awaitable<void> ingest(program_entry p, double target_seconds,
                               std::optional<ladder_options> ladder);
  asio::awaitable<result<package_result>> fetch_and_package(const program_entry& p,
                                                            const fs::path& work,
                                                            double target_seconds);
  asio::awaitable<result<std::string>> fetch_source(program_entry p, fs::path work);
  // The options of packaging `input` into the scratch folder work/hls: not durable (the engines
  // keep the segments durably), segments no larger than the home's smallest engine takes, progress
  // shown as `phase`.
  package_options scratch_packaging(const program_id& id, const std::string& input,
                                    const fs::path& work, double target_seconds, std::string phase);
  asio::awaitable<result<api::program_manifest>> load_into_home(program_entry p, program_id id,
                                                                fs::path folder);
  std::unique_ptr<net::http_client> loader_client();
  asio::awaitable<status> distribute(program_entry p, api::program_manifest manifest);
  // Inactive until its publish time, which is scheduled.
  asio::awaitable<void> finish_ingest(program_entry p);
  // Marks the program failed after removing `loaded` (it, its renditions) from the home station.
  asio::awaitable<void> fail(program_id id, std::string reason, std::vector<program_id> loaded);
  asio::awaitable<void> remove_from_home(program_id id);
  asio::awaitable<void> remove_all_from_home(std::vector<program_id> ids);

  // ingest_renditions.cc: a source of several renditions (flow 9).
  // The source's multivariant playlist, or nullopt when it is no such playlist.
  asio::awaitable<result<std::optional<api::multivariant_playlist>>> multivariant_source(
      program_entry p, fs::path work);
  asio::awaitable<void> transcode(program_entry p, fs::path work, double target_seconds,
                                  ladder_options ladder);
  asio::awaitable<void> ingest_variants(program_entry p, fs::path work, double target_seconds,
                                        api::multivariant_playlist source);
  asio::awaitable<result<ladder_result>> package_variants(program_entry p, fs::path work,
                                                          double target_seconds,
                                                          api::multivariant_playlist source);
  // Records, loads and distributes a program of several renditions packaged into `ladder`.
  asio::awaitable<void> ingest_ladder(program_entry p, ladder_result ladder);
  asio::awaitable<result<std::vector<api::program_manifest>>> load_ladder(program_entry p,
                                                                          ladder_result ladder);
  asio::awaitable<result<api::program_manifest>> register_parent(api::program_manifest parent);

  // publishing.cc
  void schedule_publish(const program_id& id, wall_clock::time_point at);
  asio::awaitable<void> publish_at_time(program_id id);
  void announce(const program_entry& p);
  asio::awaitable<void> push_loop();
  asio::awaitable<std::set<std::string>> push_round(program_id id);
  // Makes a pending change the catalog's current state of the program (another content manager,
  // or this one, may have changed it since the change was queued): a push never says what the
  // catalog no longer says.
  asio::awaitable<void> refresh_change(program_id id);
};

}  // namespace vodgrid::content
