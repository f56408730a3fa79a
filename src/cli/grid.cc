#include "cli/grid.h"

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <tuple>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>

#include "api/api.h"
#include "auth/client.h"
#include "auth/guard.h"
#include "base/fs.h"
#include "cli/station.h"
#include "cli/sync.h"
#include "net/client.h"

namespace vodgrid::cli {

namespace asio = boost::asio;

namespace {

enum class readiness {
  ready,
  silent,         // /healthz does not answer 200
  partial,        // it answers, but its `field` stays below what is wanted
  runner_exited,  // the process that runs it (itself or its station's supervisor) is gone
  given_up,       // its station's supervisor gave up on it (a crash loop)
};

// The state of blade `name` in the /healthz of the supervisor at `supervisor` ("up", "failed",
// ...), or "" when it does not say, or when that supervisor is not process `pid` (another grid's).
asio::awaitable<std::string> blade_state(net::http_client& client, std::string supervisor,
                                         pid_t pid, std::string name) {
  auto r = co_await client.get(supervisor + "/healthz");
  if (!r || r->status != 200) {
    co_return std::string();
  }
  auto o = api::parse_object(r->body);
  auto* own = o ? o->if_contains("pid") : nullptr;
  if (!own || !own->is_int64() || own->as_int64() != pid) {
    co_return std::string();
  }
  auto* blades = o->if_contains("blades");
  if (!blades || !blades->is_array()) {
    co_return std::string();
  }
  auto text = [](const boost::json::object& b, std::string_view k) {
    auto* v = b.if_contains(k);
    return v && v->is_string() ? std::string(v->as_string()) : std::string();
  };
  for (auto& b : blades->as_array()) {
    if (b.is_object() && text(b.as_object(), "name") == name) {
      co_return text(b.as_object(), "state");
    }
  }
  co_return std::string();
}

// Polls `url`/healthz until it answers 200 with its number `field` at least `at_least` (with no
// field: any 200), or `timeout` passes. A blade (whose supervisor's URL is given) is ready only
// once its supervisor also counts it up: what answers could be another grid's daemon on the same
// port. Gives up early when `runner` (if any) exits or the supervisor gives up on the blade.
asio::awaitable<readiness> await_ready(std::string url, std::chrono::milliseconds timeout,
                                       std::string field, size_t at_least, child_process* runner,
                                       std::string supervisor, std::string name) {
  auto ex = co_await asio::this_coro::executor;
  net::client_options co;
  co.connect_timeout = std::chrono::milliseconds(500);
  co.request_timeout = std::chrono::milliseconds(1000);
  net::http_client client(ex, co);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  asio::steady_timer t(ex);
  auto last = readiness::silent;
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = co_await client.get(url + "/healthz");
    bool ok = false;
    if (r && r->status == 200) {
      last = readiness::partial;
      auto o = api::parse_object(r->body);
      auto* up = o ? o->if_contains(field) : nullptr;
      ok = at_least == 0 || (up && up->is_number() && up->to_number<size_t>() >= at_least);
    } else {
      last = readiness::silent;
    }
    if (runner && !runner->running()) {
      co_return readiness::runner_exited;
    }
    // (Not a co_await inside ?: here: GCC 12 miscompiles it, the process aborts in free().)
    std::string state;
    if (!supervisor.empty()) {
      state = co_await blade_state(client, supervisor, runner->pid(), name);
    }
    if (state == "failed") {
      co_return readiness::given_up;
    }
    if (ok && (supervisor.empty() || state == "up")) {
      co_return readiness::ready;
    }
    t.expires_after(std::chrono::milliseconds(50));
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  co_return last;
}

// As an operator would, with an operator token: every daemon that logs in (each director under its
// station's name, each engine, the registry, the content manager: auth::service_accounts) gets an
// engine account whose password is the secret in its folder (made if missing), so that each can
// log in when it starts (claims 24, 25).
asio::awaitable<status> provision(grid_config grid, std::string token) {
  net::http_client client(co_await asio::this_coro::executor);
  auto all = auth::service_accounts(grid);
  if (!all) {
    co_return all.err();
  }
  std::vector<std::tuple<std::string, std::filesystem::path, std::string>> accounts;
  for (auto& a : *all) {
    accounts.emplace_back(a.name, a.secret_dir, a.station);
  }
  for (auto& [name, dir, station] : accounts) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    auto secret = auth::read_or_create_secret(dir);
    if (!secret) {
      co_return secret.err();
    }
    std::string body =
        boost::json::serialize(boost::json::object{{"password", *secret}, {"station", station}});
    net::http_client::header_list headers{{"Content-Type", "application/json"},
                                          {"Authorization", "Bearer " + token}};
    auto r = co_await client.request(boost::beast::http::verb::put,
                                     grid.auth->listen.url() + "/v1/accounts/engines/" + name,
                                     std::move(body), std::move(headers));
    if (!r) {
      co_return r.err();
    }
    if (r->status != 200) {
      co_return make_error(errc::unavailable, fmt::format("auth refused the account of {}: {} {}",
                                                          name, r->status, r->body));
    }
  }
  co_return status{};
}

asio::awaitable<result<auth::login_reply>> admin_login(std::string url) {
  net::http_client client(co_await asio::this_coro::executor);
  co_return co_await auth::login(client, std::move(url), auth::token_kind::operator_, "admin",
                                 "admin");
}

}  // namespace

bool wait_healthy(const std::string& url, std::chrono::milliseconds timeout, std::string field,
                  size_t at_least) {
  asio::io_context io;
  return run_sync(io, await_ready(url, timeout, std::move(field), at_least, nullptr, {}, {})) ==
         readiness::ready;
}

status local_grid::launch(const std::filesystem::path& config, std::string role, std::string name,
                          std::string url, std::vector<std::string> extra) {
  std::vector<std::string> argv;
  for (auto word : exec_prefix_) {
    for (auto at = word.find("{name}"); at != std::string::npos; at = word.find("{name}", at)) {
      word.replace(at, 6, name);
      at += name.size();
    }
    argv.push_back(std::move(word));
  }
  for (std::string a : {self_executable().string(), role, std::string("--config"), config.string(),
                        std::string("--name"), name}) {
    argv.push_back(std::move(a));
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto log = logs_ / ((role == "station" ? "station-" : "") + name + ".log");
  auto p = child_process::spawn(argv, log);
  if (!p) {
    return p.err();
  }
  daemons_.push_back({std::move(role), std::move(name), std::move(url), log, std::move(*p)});
  return {};
}

// Engines and directors log in when they start: their accounts come first. The operator token is
// $VODGRID_TOKEN, or admin's where the grid has the demo accounts.
status local_grid::start_auth(std::chrono::milliseconds timeout) {
  auto url = grid_.auth->listen.url();
  if (!wait_healthy(url, timeout)) {
    return make_error(errc::unavailable, fmt::format("auth does not answer /healthz (see {})",
                                                     (logs_ / "auth.log").string()));
  }
  std::string token;
  if (const char* env = std::getenv("VODGRID_TOKEN"); env && *env) {
    token = env;
  } else if (grid_.auth->demo_accounts) {
    asio::io_context io;
    auto r = run_sync(io, admin_login(url));
    if (!r) {
      return make_error(r.err().code, "auth: admin login: " + r.err().detail);
    }
    token = r->token;
  }
  if (token.empty()) {
    return {};
  }
  asio::io_context io;
  return run_sync(io, provision(grid_, token));
}

namespace {

// A daemon start() waits for, and the process that runs it (itself or its station's supervisor).
struct awaited {
  std::string role, name, url;
  std::string field;  // a number in its /healthz that must reach `want` (when want > 0)
  size_t want = 0;
  size_t runner = 0;  // the index of the process in the launched daemons
};

// In order: the engines, then the directors (each waits for all its engines), then the registry
// (it waits for every station), then auth and the content manager. Blades are run by their
// station's supervisor.
std::vector<awaited> readiness_order(const grid_config& grid,
                                     const std::vector<local_grid::daemon>& daemons) {
  std::vector<awaited> order;
  for (size_t i = 0; i < daemons.size(); ++i) {
    if (daemons[i].role == "station") {
      for (auto& e : grid.find_station(daemons[i].name)->engines) {
        order.push_back({"engine", e.name.str(), e.listen.url(), {}, 0, i});
      }
    }
  }
  for (size_t i = 0; i < daemons.size(); ++i) {
    if (daemons[i].role == "station") {
      auto* s = grid.find_station(daemons[i].name);
      order.push_back({"director", daemons[i].name, s->director.listen.url(), "engines_up",
                       s->engines.size(), i});
    }
  }
  for (const char* role : {"registry", "auth", "content"}) {
    for (size_t i = 0; i < daemons.size(); ++i) {
      if (daemons[i].role == role) {
        size_t want = daemons[i].role == "registry" ? grid.stations.size() : 0;
        order.push_back({daemons[i].role, daemons[i].name, daemons[i].url, "stations_up", want, i});
      }
    }
  }
  return order;
}

std::string why_not_ready(readiness v, const awaited& a, const local_grid::daemon& runner) {
  bool blade = runner.role == "station";
  switch (v) {
    case readiness::runner_exited:
      return blade ? fmt::format("did not come up: station {} exited (see {})", runner.name,
                                 runner.log.string())
                   : "exited";
    case readiness::given_up:
      return "keeps exiting: its station's supervisor gave up on it";
    case readiness::partial:
      return a.role == "director" ? "does not see all its engines"
                                  : "does not see all its stations";
    default:
      return "does not answer /healthz";
  }
}

}  // namespace

status local_grid::await_all(std::chrono::milliseconds timeout) {
  for (auto& a : readiness_order(grid_, daemons_)) {
    auto& runner = daemons_[a.runner];
    bool blade = runner.role == "station";
    asio::io_context io;
    auto v = run_sync(io, await_ready(a.url, timeout, a.field, a.want, &runner.process,
                                      blade ? runner.url : std::string(), a.name));
    if (v != readiness::ready) {
      auto log = blade ? logs_ / (a.name + ".log") : runner.log;
      return make_error(errc::unavailable, fmt::format("{} {} {} (see {})", a.role, a.name,
                                                       why_not_ready(v, a, runner), log.string()));
    }
  }
  // A daemon that could not listen (another grid on its port) has exited by now, whoever answered.
  for (auto& d : daemons_) {
    if (!d.process.running()) {
      return make_error(errc::unavailable,
                        fmt::format("{} {} exited (see {})", d.role, d.name, d.log.string()));
    }
  }
  return {};
}

result<local_grid> local_grid::start(const grid_config& grid, const std::filesystem::path& data,
                                     std::chrono::milliseconds timeout,
                                     std::vector<std::string> exec_prefix) {
  local_grid g;
  g.grid_ = grid;
  g.exec_prefix_ = std::move(exec_prefix);
  std::error_code ec;
  auto abs = std::filesystem::absolute(data, ec);
  g.logs_ = abs / "logs";
  std::filesystem::create_directories(g.logs_, ec);
  if (ec) {
    return make_error(errc::io_error,
                      fmt::format("cannot create {}: {}", g.logs_.string(), ec.message()));
  }
  auto config = abs / "grid.toml";
  // 0600: a copy of --config may carry a database URL with its password.
  if (auto st = write_secret_durably(config, grid.to_toml()); !st) {
    return st.err();
  }
  // Until it returns, a step that fails stops what was started.
  auto launched = [&]() -> status {
    if (grid.registry) {
      VODGRID_TRY(g.launch(config, "registry", "registry", grid.registry->listen.url()));
    }
    if (grid.auth) {
      VODGRID_TRY(g.launch(config, "auth", "auth", grid.auth->listen.url()));
      VODGRID_TRY(g.start_auth(timeout));
    }
    if (grid.content) {
      VODGRID_TRY(g.launch(config, "content", "content", grid.content->listen.url()));
    }
    // Each station is a chassis: its supervisor runs the director and the engines as blades.
    for (auto& s : grid.stations) {
      auto url = s.supervisor.port != 0 ? s.supervisor.url() : std::string();
      VODGRID_TRY(g.launch(config, "station", s.name.str(), url, {"--logs", g.logs_.string()}));
    }
    return g.await_all(timeout);
  }();
  if (!launched) {
    g.stop(std::chrono::seconds(2));
    return launched.err();
  }
  return g;
}

local_grid::~local_grid() {
  stop(std::chrono::seconds(5));
}

void local_grid::stop(std::chrono::milliseconds grace) {
  // The content manager first (it talks to the directors), then the stations (each supervisor
  // stops its engines, then its director, with a grace of its own), the registry, auth.
  auto station_grace =
      std::max(grace, 2 * supervisor_options{}.stop_grace + std::chrono::seconds(1));
  for (const char* role : {"content", "station", "registry", "auth"}) {
    for (auto& d : daemons_) {
      if (d.role == role) {
        d.process.signal(SIGTERM);
      }
    }
    for (auto& d : daemons_) {
      if (d.role == role) {
        d.process.stop(d.role == "station" ? station_grace : grace);
      }
    }
  }
  daemons_.clear();
}

std::vector<std::string> local_grid::reap() {
  std::vector<std::string> gone;
  for (auto& d : daemons_) {
    if (d.process.pid() > 0 && !d.process.running()) {
      auto st = d.process.wait(std::chrono::milliseconds(0));
      gone.push_back(fmt::format("{} {} exited (status {})", d.role, d.name, st.value_or(-1)));
      d.process = child_process();
    }
  }
  return gone;
}

std::string local_grid::director_url(size_t station) const {
  return grid_.stations.at(station).director.listen.url();
}

}  // namespace vodgrid::cli
