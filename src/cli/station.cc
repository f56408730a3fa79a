// The station supervisor: one coroutine per blade watches it (its exit, through SIGCHLD; its
// health, through /healthz) and restarts it; /healthz and /metrics tell what it saw.
#include "cli/station.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <deque>
#include <iostream>
#include <map>
#include <optional>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/array.hpp>

#include "base/log.h"
#include "base/process.h"
#include "cli/commands.h"
#include "cli/commands_impl.h"
#include "net/client.h"
#include "net/http.h"
#include "net/task_group.h"
#include "net/tls.h"
#include "net/use_tuple.h"

namespace vodgrid::cli {

namespace asio = boost::asio;
namespace json = boost::json;
using steady = std::chrono::steady_clock;
using net::use_tuple;
using std::chrono::milliseconds;

namespace {

enum class blade_state {
  starting,    // (re)started, has not answered /healthz yet
  up,          // its last check answered 200
  down,        // running, its checks fail (killed after unhealthy_after)
  restarting,  // gone; waiting out its backoff
  failed,      // crash loop: given up
  stopped,     // the supervisor stopped it
};

std::string_view to_string(blade_state s) {
  switch (s) {
    case blade_state::starting:
      return "starting";
    case blade_state::up:
      return "up";
    case blade_state::down:
      return "down";
    case blade_state::restarting:
      return "restarting";
    case blade_state::failed:
      return "failed";
    case blade_state::stopped:
      return "stopped";
  }
  return "?";
}

// Why a blade went down: the `reason` label of its restart counter and a phrase for the log.
struct down_reason {
  std::string label;  // "exited" | "killed" | "unhealthy"
  std::string detail;
};

constexpr const char* reasons[] = {"exited", "killed", "unhealthy"};

struct blade {
  explicit blade(asio::io_context& io) : wake(io) {}
  std::string role;  // "director" | "engine"
  std::string name;
  std::string url;  // its /healthz is url + "/healthz"
  std::vector<std::string> argv;
  std::filesystem::path log;

  // Owned by the io thread, as is everything of the supervisor.
  child_process process;
  blade_state state = blade_state::starting;
  asio::steady_timer wake;  // the watcher sleeps on it; cancelled when a child exits, and at stop
  milliseconds backoff{0};
  std::deque<steady::time_point> restarted_at;  // restarts within the crash-loop window
  uint64_t restarts = 0;
  std::map<std::string, net::metric_value*, std::less<>> restarts_total;  // by reason
  net::metric_value* up_gauge = nullptr;
};

down_reason exit_reason(const child_process& p) {
  if (int sig = p.term_signal(); sig != 0) {
    return {"killed", fmt::format("was killed by signal {} ({})", sig, ::strsignal(sig))};
  }
  return {"exited", fmt::format("exited with status {}", p.exit_status().value_or(-1))};
}

}  // namespace

namespace {
net::server_options server_options_of(const grid_config& grid) {
  net::server_options o;
  o.metrics_from = grid.metrics_ranges();
  return o;
}
}  // namespace

struct station_supervisor::impl {
  impl(asio::io_context& io_, grid_config grid_, std::filesystem::path config_file_,
       station_id name_, supervisor_options opts_)
      : io(io_),
        grid(std::move(grid_)),
        config_file(std::move(config_file_)),
        name(std::move(name_)),
        opts(std::move(opts_)),
        server(io.get_executor(), "station " + name.str(), server_options_of(grid)),
        sigchld(io, SIGCHLD),
        tasks(io.get_executor()) {}

  status start();
  asio::awaitable<void> watch(blade& b);
  std::optional<down_reason> launch(blade& b);
  asio::awaitable<std::optional<down_reason>> supervise(blade& b);
  asio::awaitable<bool> healthy(blade& b);
  asio::awaitable<void> sleep_until(blade& b, steady::time_point t, bool until_exit);
  asio::awaitable<void> reap_loop();
  asio::awaitable<void> stop_blades(std::string_view role);
  bool may_restart(blade& b, steady::time_point now);
  void set_state(blade& b, blade_state s);
  json::object health() const;
  void track(asio::awaitable<void> task);

  asio::io_context& io;
  const grid_config grid;
  const std::filesystem::path config_file;
  const station_id name;
  supervisor_options opts;
  std::shared_ptr<spdlog::logger> logger = log::get("station");
  net::http_server server;
  std::unique_ptr<net::http_client> client;  // the health checks
  asio::signal_set sigchld;
  net::task_group tasks;                       // the watchers and the reaper
  std::vector<std::unique_ptr<blade>> blades;  // the director first, then the engines
  uint16_t port = 0;
  bool listening = false;
  bool stopping = false;
};

void station_supervisor::impl::track(asio::awaitable<void> task) {
  tasks.spawn(std::move(task));
}

status station_supervisor::impl::start() {
  const station_config* st = grid.find_station(name.str());
  if (!st) {
    return make_error(errc::not_found,
                      fmt::format("no station '{}' in {}", name.str(), config_file.string()));
  }
  std::error_code ec;
  if (opts.logs.empty()) {
    opts.logs = std::filesystem::absolute(st->director.data_dir, ec).parent_path() / "logs";
  }
  std::filesystem::create_directories(opts.logs, ec);
  if (ec) {
    return make_error(errc::io_error,
                      fmt::format("cannot create {}: {}", opts.logs.string(), ec.message()));
  }
  auto config = std::filesystem::absolute(config_file, ec).string();
  auto exe = self_executable().string();
  auto add = [&](std::string role, std::string blade_name, std::string url) {
    auto b = std::make_unique<blade>(io);
    b->argv = {exe, role, "--config", config, "--name", blade_name};
    b->role = std::move(role);
    b->name = std::move(blade_name);
    b->url = std::move(url);
    b->log = opts.logs / (b->name + ".log");
    b->backoff = opts.backoff_initial;
    auto& m = server.metrics();
    for (const char* r : reasons) {
      b->restarts_total[r] = &m.counter("vodgrid_station_restarts_total",
                                        "Restarts of a blade, by the reason it went down",
                                        fmt::format(R"(blade="{}",reason="{}")", b->name, r));
    }
    b->up_gauge = &m.gauge("vodgrid_station_blade_up", "1 while the blade answers /healthz",
                           fmt::format(R"(blade="{}",role="{}")", b->name, b->role));
    blades.push_back(std::move(b));
  };
  add("director", name.str(), st->director.listen.url());
  for (auto& e : st->engines) {
    add("engine", e.name.str(), e.listen.url());
  }

  auto count = [this](blade_state s) {
    return static_cast<double>(
        std::count_if(blades.begin(), blades.end(), [s](auto& b) { return b->state == s; }));
  };
  auto& m = server.metrics();
  m.gauge_fn("vodgrid_station_blades", "Blades of the station (its director and engines)",
             [this] { return static_cast<double>(blades.size()); });
  m.gauge_fn("vodgrid_station_blades_up", "Blades answering /healthz",
             [count] { return count(blade_state::up); });
  m.gauge_fn("vodgrid_station_blades_failed", "Blades given up after a crash loop",
             [count] { return count(blade_state::failed); });
  server.set_health([this] { return health(); });
  if (st->supervisor.port != 0) {
    auto p = server.listen(st->supervisor.host, st->supervisor.port);
    if (!p) {
      return p.err();
    }
    port = *p;
    listening = true;
  }

  net::client_options co;
  co.connect_timeout = opts.health_timeout;
  co.request_timeout = opts.health_timeout;
  co.max_body = 1 << 20;
  client = std::make_unique<net::http_client>(io.get_executor(), co);
  track(reap_loop());
  for (auto& b : blades) {
    track(watch(*b));
  }
  logger->info("station {}: supervising its director and {} engines; blade logs in {}{}",
               name.str(), blades.size() - 1, opts.logs.string(),
               listening
                   ? fmt::format("; /healthz and /metrics on {}:{}", st->supervisor.host, port)
                   : std::string());
  return {};
}

json::object station_supervisor::impl::health() const {
  json::array list;
  size_t up = 0, failed = 0;
  for (auto& b : blades) {
    bool alive = b->state == blade_state::starting || b->state == blade_state::up ||
                 b->state == blade_state::down;
    up += b->state == blade_state::up;
    failed += b->state == blade_state::failed;
    list.push_back(json::object{{"role", b->role},
                                {"name", b->name},
                                {"pid", alive ? json::value(b->process.pid()) : json::value()},
                                {"up", b->state == blade_state::up},
                                {"state", to_string(b->state)},
                                {"restarts", b->restarts},
                                {"log", b->log.string()}});
  }
  json::object o;
  o["role"] = "station";
  o["station"] = name.str();
  o["pid"] = ::getpid();  // so that `vodgrid up` knows its own supervisor from another grid's
  o["status"] = failed > 0 ? "degraded" : "ok";
  o["blades_up"] = up;
  o["blades_failed"] = failed;
  o["blades"] = std::move(list);
  return o;
}

void station_supervisor::impl::set_state(blade& b, blade_state s) {
  b.state = s;
  b.up_gauge->set(s == blade_state::up ? 1 : 0);
}

// Runs one blade for the supervisor's life: starts it, watches it, restarts it after its backoff,
// until the supervisor stops or the blade crash-loops.
asio::awaitable<void> station_supervisor::impl::watch(blade& b) {
  while (!stopping) {
    std::optional<down_reason> why = launch(b);
    if (!why) {
      why = co_await supervise(b);
    }
    if (stopping || !why) {
      break;
    }
    if (!may_restart(b, steady::now())) {
      set_state(b, blade_state::failed);
      logger->error("{} {} {}: {} restarts within {} s, giving up on it (see {})", b.role, b.name,
                    why->detail, b.restarted_at.size(),
                    std::chrono::duration_cast<std::chrono::seconds>(opts.restart_window).count(),
                    b.log.string());
      break;
    }
    set_state(b, blade_state::restarting);
    ++b.restarts;
    b.restarts_total.at(why->label)->inc();
    logger->warn("{} {} {}: restarting it in {} ms (restart {})", b.role, b.name, why->detail,
                 b.backoff.count(), b.restarts);
    co_await sleep_until(b, steady::now() + b.backoff, false);
    b.backoff = std::min(b.backoff * 2, opts.backoff_max);
  }
}

// More than max_restarts within restart_window: a crash loop. Otherwise the restart is counted.
bool station_supervisor::impl::may_restart(blade& b, steady::time_point now) {
  while (!b.restarted_at.empty() && now - b.restarted_at.front() >= opts.restart_window) {
    b.restarted_at.pop_front();
  }
  if (b.restarted_at.size() >= opts.max_restarts) {
    return false;
  }
  b.restarted_at.push_back(now);
  return true;
}

std::optional<down_reason> station_supervisor::impl::launch(blade& b) {
  auto p = child_process::spawn(b.argv, b.log);
  if (!p) {
    return down_reason{"exited", "could not be started: " + p.err().detail};
  }
  b.process = std::move(*p);
  set_state(b, blade_state::starting);
  logger->info("{} {} started: pid {}", b.role, b.name, b.process.pid());
  return std::nullopt;
}

// Watches a running blade until it exits, or until its checks have failed for unhealthy_after
// (then it is SIGKILLed). nullopt when the supervisor stops first.
asio::awaitable<std::optional<down_reason>> station_supervisor::impl::supervise(blade& b) {
  auto started = steady::now();
  bool answered = false;  // since this start
  std::optional<steady::time_point> failing_since, healthy_since;
  // Until its first answer, a blade is asked often, so that it counts as up soon.
  auto first_interval = std::min(opts.health_interval, milliseconds(100));
  auto next_check = started + first_interval;
  for (;;) {
    co_await sleep_until(b, next_check, true);
    if (stopping) {
      co_return std::nullopt;
    }
    if (!b.process.running()) {
      co_return exit_reason(b.process);
    }
    auto checked_at = steady::now();
    bool ok = co_await healthy(b);
    if (stopping) {
      co_return std::nullopt;
    }
    if (!b.process.running()) {
      co_return exit_reason(b.process);
    }
    auto now = steady::now();
    answered = answered || ok;
    next_check = std::max(checked_at + (answered ? opts.health_interval : first_interval), now);
    if (ok) {
      failing_since.reset();
      healthy_since = healthy_since.value_or(now);
      if (b.state != blade_state::up) {
        logger->info("{} {} is up (pid {})", b.role, b.name, b.process.pid());
        set_state(b, blade_state::up);
      }
      if (now - *healthy_since >= opts.backoff_reset) {
        b.backoff = opts.backoff_initial;
      }
      continue;
    }
    healthy_since.reset();
    if (!answered && now - started < opts.start_grace) {
      continue;  // still coming up
    }
    if (!failing_since) {
      failing_since = now;  // the end of the first failed check: never before it hung
      logger->warn("{} {} does not answer /healthz (pid {})", b.role, b.name, b.process.pid());
      set_state(b, blade_state::down);
    }
    if (now - *failing_since >= opts.unhealthy_after) {
      b.process.signal(SIGKILL);
      b.process.wait(std::chrono::seconds(2));  // at once: SIGKILL ends even a stopped process
      co_return down_reason{
          "unhealthy",
          fmt::format("did not answer /healthz for {} ms and was killed (pid {})",
                      std::chrono::duration_cast<milliseconds>(now - *failing_since).count(),
                      b.process.pid())};
    }
  }
}

asio::awaitable<bool> station_supervisor::impl::healthy(blade& b) {
  auto r = co_await client->get(b.url + "/healthz");
  co_return r && r->status == 200;
}

// Sleeps until `t` or the supervisor stops; with `until_exit`, also until the blade exits.
asio::awaitable<void> station_supervisor::impl::sleep_until(blade& b, steady::time_point t,
                                                            bool until_exit) {
  while (!stopping && steady::now() < t) {
    b.wake.expires_at(t);
    co_await b.wake.async_wait(use_tuple);
    if (until_exit && !b.process.running()) {
      co_return;
    }
  }
}

// Wakes the watcher of each blade that exited, so that it is restarted at once.
asio::awaitable<void> station_supervisor::impl::reap_loop() {
  for (;;) {
    auto [ec, sig] = co_await sigchld.async_wait(use_tuple);
    if (ec || stopping) {
      co_return;
    }
    for (auto& b : blades) {
      if (b->process.pid() > 0 && !b->process.running()) {
        b->wake.cancel();
      }
    }
  }
}

// SIGTERM to every running blade of `role`, SIGKILL to those left after stop_grace; completes when
// all are reaped.
asio::awaitable<void> station_supervisor::impl::stop_blades(std::string_view role) {
  auto running = [&] {
    return std::any_of(blades.begin(), blades.end(),
                       [&](auto& b) { return b->role == role && b->process.running(); });
  };
  for (auto& b : blades) {
    if (b->role == role && b->process.running()) {
      b->process.signal(SIGTERM);
      b->process.signal(SIGCONT);  // a stopped blade takes its SIGTERM too
    }
  }
  asio::steady_timer t(io);
  auto deadline = steady::now() + opts.stop_grace;
  while (running() && steady::now() < deadline) {
    t.expires_after(milliseconds(10));
    co_await t.async_wait(use_tuple);
  }
  for (auto& b : blades) {
    if (b->role == role && b->process.running()) {
      logger->warn("{} {} did not stop within {} ms: SIGKILL", b->role, b->name,
                   opts.stop_grace.count());
      b->process.signal(SIGKILL);
    }
  }
  while (running()) {
    t.expires_after(milliseconds(10));
    co_await t.async_wait(use_tuple);
  }
  for (auto& b : blades) {
    if (b->role == role && b->state != blade_state::failed) {
      set_state(*b, blade_state::stopped);
    }
  }
}

station_supervisor::station_supervisor(asio::io_context& io, grid_config grid,
                                       std::filesystem::path config_file, station_id station,
                                       supervisor_options opts)
    : impl_(std::make_unique<impl>(io, std::move(grid), std::move(config_file), std::move(station),
                                   std::move(opts))) {}

station_supervisor::~station_supervisor() = default;

status station_supervisor::start() {
  return impl_->start();
}

uint16_t station_supervisor::port() const {
  return impl_->port;
}

asio::awaitable<void> station_supervisor::stop() {
  auto& d = *impl_;
  if (d.stopping) {
    co_return;
  }
  d.stopping = true;
  d.logger->info("station {}: stopping the engines, then the director", d.name.str());
  boost::system::error_code ec;
  d.sigchld.cancel(ec);
  for (auto& b : d.blades) {
    b->wake.cancel();
  }
  // Woken above, each watcher ends at once; the reaper with the last blade.
  if (auto left = co_await d.tasks.close(d.opts.stop_grace); left > 0) {
    d.logger->warn("station {}: {} watchers did not end", d.name.str(), left);
  }
  co_await d.stop_blades("engine");
  co_await d.stop_blades("director");
  if (d.listening) {
    co_await d.server.stop(milliseconds(500));
  }
  d.logger->info("station {}: stopped", d.name.str());
}

namespace {

asio::awaitable<void> stop_then_quit(station_supervisor& s, asio::io_context& io) {
  co_await s.stop();
  io.stop();
}

}  // namespace

int run_station(const std::filesystem::path& config, const std::string& name,
                const std::filesystem::path& logs) {
  std::signal(SIGPIPE, SIG_IGN);
  auto grid = grid_config::load(config);
  if (!grid) {
    std::cerr << "vodgrid station: " << grid.err().detail << "\n";
    return 2;
  }
  if (auto st = use_grid_ca(*grid, config); !st) {
    std::cerr << "vodgrid station: " << st.err().detail << "\n";
    return 2;
  }
  // `systemctl kill -s HUP` reaches every process of the unit: the daemons with TLS reload their
  // certificates (their own handler); the supervisor, and the blades without TLS (inheriting the
  // disposition), ignore it.
  std::signal(SIGHUP, SIG_IGN);
  auto id = station_id::parse(name);
  if (!id || !grid->find_station(name)) {
    std::cerr << fmt::format("vodgrid station: no station '{}' in {}\n", name, config.string());
    return 2;
  }
  log::init(grid->log_level, "station-" + name, grid->log_format);
  asio::io_context io(1);
  supervisor_options opts;
  opts.logs = logs;
  opts.health_interval = grid->timing.health_interval;
  opts.health_timeout = grid->timing.health_timeout;
  opts.unhealthy_after = grid->timing.unhealthy_after;
  opts.start_grace = grid->timing.start_grace;
  station_supervisor s(io, std::move(*grid), config, std::move(*id), opts);
  // Before the blades exist, so that a signal at any time stops them.
  asio::signal_set signals(io, SIGINT, SIGTERM);
  if (auto st = s.start(); !st) {
    std::cerr << "vodgrid station " << name << ": " << st.err().detail << "\n";
    return 1;
  }
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (!ec) {
      asio::co_spawn(io, stop_then_quit(s, io), asio::detached);
    }
  });
  io.run();
  return 0;
}

}  // namespace vodgrid::cli
