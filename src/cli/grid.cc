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
#include "cli/sync.h"
#include "net/client.h"

namespace vodgrid::cli {

namespace asio = boost::asio;

namespace {

asio::awaitable<bool> poll_health(std::string url, std::chrono::milliseconds timeout,
                                  std::string field, size_t at_least) {
  auto ex = co_await asio::this_coro::executor;
  net::client_options co;
  co.connect_timeout = std::chrono::milliseconds(500);
  co.request_timeout = std::chrono::milliseconds(1000);
  net::http_client client(ex, co);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  asio::steady_timer t(ex);
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = co_await client.get(url + "/healthz");
    if (r && r->status == 200) {
      if (at_least == 0) {
        co_return true;
      }
      auto o = api::parse_object(r->body);
      auto* up = o ? o->if_contains(field) : nullptr;
      if (up && up->is_number() && up->to_number<size_t>() >= at_least) {
        co_return true;
      }
    }
    t.expires_after(std::chrono::milliseconds(50));
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  co_return false;
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
  return run_sync(io, poll_health(url, timeout, std::move(field), at_least));
}

result<local_grid> local_grid::start(const grid_config& grid, const std::filesystem::path& data,
                                     std::chrono::milliseconds timeout) {
  local_grid g;
  g.grid_ = grid;
  std::error_code ec;
  auto abs = std::filesystem::absolute(data, ec);
  g.logs_ = abs / "logs";
  std::filesystem::create_directories(g.logs_, ec);
  if (ec) {
    return make_error(errc::io_error,
                      fmt::format("cannot create {}: {}", g.logs_.string(), ec.message()));
  }
  auto config_file = abs / "grid.toml";
  if (auto st = write_file_durably(config_file, grid.to_toml()); !st) {
    return st.err();
  }
  auto exe = self_executable().string();
  auto launch = [&](std::string role, std::string name, std::string url) -> status {
    auto p = child_process::spawn({exe, role, "--config", config_file.string(), "--name", name},
                                  g.logs_ / (name + ".log"));
    if (!p) {
      return p.err();
    }
    g.daemons_.push_back({role, name, url, std::move(*p)});
    return {};
  };
  if (grid.registry) {
    if (auto st = launch("registry", "registry", grid.registry->listen.url()); !st) {
      return st.err();
    }
  }
  if (grid.auth) {
    if (auto st = launch("auth", "auth", grid.auth->listen.url()); !st) {
      return st.err();
    }
    // Engines and directors log in when they start: their accounts come first. The operator
    // token is $VODGRID_TOKEN, or admin's where the grid has the demo accounts.
    if (!wait_healthy(grid.auth->listen.url(), timeout)) {
      g.stop(std::chrono::seconds(2));
      return make_error(errc::unavailable, fmt::format("auth does not answer /healthz (see {})",
                                                       (g.logs_ / "auth.log").string()));
    }
    std::string token;
    if (const char* env = std::getenv("VODGRID_TOKEN"); env && *env) {
      token = env;
    } else if (grid.auth->demo_accounts) {
      asio::io_context io;
      auto r = run_sync(io, admin_login(grid.auth->listen.url()));
      if (!r) {
        g.stop(std::chrono::seconds(2));
        return make_error(r.err().code, "auth: admin login: " + r.err().detail);
      }
      token = r->token;
    }
    if (!token.empty()) {
      asio::io_context io;
      if (auto st = run_sync(io, provision(grid, token)); !st) {
        g.stop(std::chrono::seconds(2));
        return st.err();
      }
    }
  }
  if (grid.content) {
    if (auto st = launch("content", "content", grid.content->listen.url()); !st) {
      return st.err();
    }
  }
  for (auto& s : grid.stations) {
    if (auto st = launch("director", s.name.str(), s.director.listen.url()); !st) {
      return st.err();
    }
    for (auto& e : s.engines) {
      if (auto st = launch("engine", e.name.str(), e.listen.url()); !st) {
        return st.err();
      }
    }
  }
  // Engines first, then directors (each waits for all its engines), then the registry (it waits
  // for every station), then auth and the content manager: a daemon that failed is named as such.
  auto rank = [](const daemon& d) {
    return d.role == "engine" ? 0 : d.role == "director" ? 1 : d.role == "registry" ? 2 : 3;
  };
  std::stable_sort(g.daemons_.begin(), g.daemons_.end(),
                   [&](const daemon& a, const daemon& b) { return rank(a) < rank(b); });
  for (auto& d : g.daemons_) {
    std::string field = d.role == "director" ? "engines_up" : "stations_up";
    size_t want = d.role == "director"   ? grid.find_station(d.name)->engines.size()
                  : d.role == "registry" ? grid.stations.size()
                                         : 0;
    if (!wait_healthy(d.url, timeout, field, want)) {
      std::string why = !d.process.running() ? "exited"
                        : d.role != "engine" && wait_healthy(d.url, std::chrono::milliseconds(100))
                            ? (d.role == "director" ? "does not see all its engines"
                                                    : "does not see all its stations")
                            : "does not answer /healthz";
      g.stop(std::chrono::seconds(2));
      return make_error(errc::unavailable, fmt::format("{} {} {} (see {})", d.role, d.name, why,
                                                       (g.logs_ / (d.name + ".log")).string()));
    }
  }
  return g;
}

local_grid::~local_grid() {
  stop(std::chrono::seconds(5));
}

void local_grid::stop(std::chrono::milliseconds grace) {
  // The content manager first (it talks to the directors), then engines, so that a director does
  // not see them vanish one by one while it drains.
  for (const char* role : {"content", "engine", "director", "registry", "auth"}) {
    for (auto& d : daemons_) {
      if (d.role == role) {
        d.process.signal(SIGTERM);
      }
    }
    for (auto& d : daemons_) {
      if (d.role == role) {
        d.process.stop(grace);
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
