// The content manager's state, shared by the files that implement it (manager.cc: start, stop,
// the HTTP API; ingest.cc: download, package, load, distribute; publishing.cc: the publish
// schedule and the pushes to the directors). Private to src/content.
#pragma once

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
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
#include "content/manager.h"
#include "content/packager.h"
#include "db/worker.h"
#include "net/client.h"
#include "net/http.h"

namespace vodgrid::content {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
namespace fs = std::filesystem;
using net::reply;
using net::request_context;
inline constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
using steady = std::chrono::steady_clock;

// What an ingest is doing, for GET /v1/programs/{id} and the progress bar of `vodgrid ingest`.
struct progress_info {
  std::string phase;  // "downloading", "packaging", "loading"
  double done = 0;
  double total = 0;  // 0: unknown
  std::string unit;  // "bytes", "seconds", "segments"
};

// A program as the HTTP API shows it; `full` adds its segments.
json::object to_json(const program_entry& p, bool full);

// Threading: every member is owned by the io thread (coroutines touch them only between awaits),
// except `cat` (the database thread), `progress` (under `progress_mu`: the pool's jobs report to
// it) and `cancel` (read by the pool's jobs).
struct content_manager::impl {
  asio::io_context& io;
  grid_config grid;
  std::shared_ptr<spdlog::logger> logger = log::get("content");
  std::unique_ptr<net::http_server> server;
  std::unique_ptr<net::http_client> client;
  std::unique_ptr<db::worker> db;
  std::unique_ptr<content::catalog> cat;  // used on the database thread only
  // With [auth]: its own token (for the directors and the registry) and the auth server's keys,
  // to check the operator token every change needs.
  std::unique_ptr<auth::service_session> auth;
  asio::thread_pool jobs{2};        // downloads and packaging
  std::atomic<bool> cancel{false};  // set at stop: downloads and packaging give up
  uint16_t port = 0;
  bool stopping = false;
  uint32_t background = 0;  // ingests and pushes in flight

  std::mutex progress_mu;
  std::map<program_id, progress_info> progress;  // ingests in flight
  std::map<program_id, std::unique_ptr<asio::system_timer>> schedule;
  std::map<program_id, pending_change> pending;
  asio::steady_timer push_wake;
  bool pushing = false;

  net::metric_value* ingests = nullptr;
  net::metric_value* failures = nullptr;
  net::metric_value* publishes = nullptr;

  impl(asio::io_context& i, grid_config g)
      : io(i), grid(std::move(g)), push_wake(i, steady::time_point::max()) {}
  ~impl() { jobs.join(); }

  const station_config& home() const { return *grid.home_station(); }

  // Runs a blocking job on the pool and resumes on the io thread.
  template <class F>
  asio::awaitable<std::invoke_result_t<F>> on_jobs(F f) {
    using R = std::invoke_result_t<F>;
    co_await asio::post(asio::bind_executor(jobs.get_executor(), asio::use_awaitable));
    std::optional<R> r;
    try {
      r.emplace(f());
    } catch (const std::exception& e) {
      r.emplace(make_error(errc::internal, e.what()));
    }
    co_await asio::post(asio::bind_executor(io.get_executor(), asio::use_awaitable));
    co_return std::move(*r);
  }

  void set_progress(const program_id& id, progress_info p) {
    std::lock_guard lock(progress_mu);
    progress[id] = std::move(p);
  }

  // manager.cc
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

  // ingest.cc
  asio::awaitable<void> ingest(program_entry p, double target_seconds);
  asio::awaitable<result<package_result>> fetch_and_package(const program_entry& p,
                                                            const fs::path& work,
                                                            double target_seconds);
  asio::awaitable<result<std::string>> fetch_source(program_entry p, fs::path work);
  asio::awaitable<result<api::program_manifest>> load_into_home(program_entry p, fs::path work);
  asio::awaitable<status> distribute(program_entry p, api::program_manifest manifest);
  asio::awaitable<void> fail(program_id id, std::string reason, bool loaded);
  asio::awaitable<void> remove_from_home(program_id id);

  // publishing.cc
  void schedule_publish(const program_id& id, wall_clock::time_point at);
  asio::awaitable<void> publish_at_time(program_id id);
  void announce(const program_entry& p);
  asio::awaitable<void> push_loop();
  asio::awaitable<std::set<std::string>> push_round(program_id id);
};

}  // namespace vodgrid::content
