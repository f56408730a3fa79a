#include "cli/grid.h"

#include <algorithm>
#include <csignal>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "api/api.h"
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
