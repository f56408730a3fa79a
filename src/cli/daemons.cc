// `vodgrid engine`, `director`, `registry`, `auth` and `content`: load the grid config, start the
// daemon, stop it in two phases on SIGINT or SIGTERM.
#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <iostream>

#include "auth/client.h"
#include "auth/daemon.h"
#include "auth/guard.h"
#include "base/fs.h"
#include "base/log.h"
#include "cli/commands.h"
#include "cli/commands_impl.h"
#include "content/manager.h"
#include "director/director.h"
#include "engine/engine.h"
#include "net/daemon.h"
#include "net/tls.h"
#include "registry/registry.h"

namespace vodgrid::cli {

namespace asio = boost::asio;

status use_grid_ca(const grid_config& grid, const std::filesystem::path& config) {
  net::set_default_tls_ca(grid.tls.ca);
  if (grid.tls.ca.empty()) {
    return {};
  }
  std::error_code ec;
  if (std::filesystem::is_directory(grid.tls.ca, ec)) {
    return make_error(errc::invalid_argument,
                      fmt::format("{}: [tls] 'ca': {} is a directory, not a PEM file",
                                  config.string(), grid.tls.ca.string()));
  }
  auto ctx = net::client_context(grid.tls.ca);
  if (!ctx) {
    std::string_view why = ctx.err().detail;
    for (std::string_view head : {"tls: ", "ca "}) {  // "tls: ca FILE does not exist"
      why.remove_prefix(why.starts_with(head) ? head.size() : 0);
    }
    return make_error(ctx.err().code, fmt::format("{}: [tls] 'ca': {}", config.string(), why));
  }
  return {};
}

namespace {

template <class Daemon>
asio::awaitable<void> stop_then_quit(Daemon& d, asio::io_context& io,
                                     std::chrono::milliseconds drain) {
  co_await d.stop(drain);
  io.stop();
}

template <class Daemon, class... Args>
int serve(Daemon& d, asio::io_context& io, std::string_view role, const std::string& name,
          std::chrono::milliseconds drain) {
  if (auto st = d.start(); !st) {
    std::cerr << "vodgrid " << role << " " << name << ": " << st.err().detail << "\n";
    return 1;
  }
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (!ec) {
      asio::co_spawn(io, stop_then_quit(d, io, drain), asio::detached);
    }
  });
  io.run();
  return 0;
}

// Also refuses an invalid VODGRID_THREADS, the same way for every daemon and before any of them
// opens anything (daemon_base::listen would refuse it too, later).
result<grid_config> load_config(const std::filesystem::path& config, std::string_view role) {
  std::signal(SIGPIPE, SIG_IGN);
  if (auto loops = net::loop_count(1); !loops) {
    std::cerr << "vodgrid " << role << ": " << loops.err().detail << "\n";
    return loops.err();
  }
  auto grid = grid_config::load(config);
  if (!grid) {
    std::cerr << "vodgrid " << role << ": " << grid.err().detail << "\n";
    return grid;
  }
  if (auto st = use_grid_ca(*grid, config); !st) {  // every client of the daemon verifies with it
    std::cerr << "vodgrid " << role << ": " << st.err().detail << "\n";
    return st.err();
  }
  return grid;
}

// A daemon's auth.secret readable by group or others stops it before it opens anything (issue 17),
// with the one line of the refusal; true when it may start.
bool secret_is_private(const grid_config& grid, std::string_view role, const std::string& name) {
  if (!grid.auth) {
    return true;
  }
  auto accounts = auth::service_accounts(grid);
  if (!accounts) {
    return true;  // the daemon's own start says why
  }
  std::filesystem::path dir;
  if (role == "engine") {
    auto* e = grid.find_engine(name);
    dir = e && !e->data_dirs.empty() ? e->data_dirs.front() : dir;
  } else if (role == "director") {
    auto* s = grid.find_station(name);
    dir = s ? s->director.data_dir : dir;
  } else {
    for (auto& a : *accounts) {
      dir = a.name == role ? a.secret_dir : dir;
    }
  }
  if (dir.empty()) {
    return true;
  }
  auto st = check_private_file(auth::secret_file(dir));
  if (!st && st.err().code != errc::not_found) {
    std::cerr << "vodgrid " << role << " " << name << ": " << st.err().detail << "\n";
    return false;
  }
  return true;
}

// --listen HOST:PORT in place of the config's address (one of several alike daemons); false after
// the line saying why it is not one.
bool override_listen(listen_address& field, const std::string& flag, std::string_view role) {
  if (flag.empty()) {
    return true;
  }
  auto a = listen_address::parse(flag);
  if (!a) {
    std::cerr << "vodgrid " << role << ": --listen: " << a.err().detail << "\n";
    return false;
  }
  field.host = a->host;  // the config's tls, if any, stays
  field.port = a->port;
  return true;
}

template <class Daemon, class Id>
int run_daemon(const std::filesystem::path& config, const std::string& name,
               std::string_view role) {
  auto grid = load_config(config, role);
  if (!grid) {
    return 2;
  }
  auto id = Id::parse(name);
  if (!id) {
    std::cerr << "vodgrid " << role << ": bad name '" << name << "'\n";
    return 2;
  }
  if (!secret_is_private(*grid, role, name)) {
    return 1;
  }
  log::init(grid->log_level, name, grid->log_format);
  asio::io_context io(1);
  Daemon d(io, *grid, *id);
  return serve(d, io, role, name, grid->timing.drain);
}

}  // namespace

int run_engine(const std::filesystem::path& config, const std::string& name) {
  return run_daemon<engine::engine_daemon, engine_id>(config, name, "engine");
}

int run_director(const std::filesystem::path& config, const std::string& name) {
  return run_daemon<director::director_daemon, station_id>(config, name, "director");
}

int run_registry(const std::filesystem::path& config, const std::string& listen) {
  auto grid = load_config(config, "registry");
  if (!grid) {
    return 2;
  }
  if (!grid->registry) {
    std::cerr << "vodgrid registry: " << config.string() << " has no [registry]\n";
    return 2;
  }
  // One of several registry daemons over one database, each on its own address.
  if (!override_listen(grid->registry->listen, listen, "registry")) {
    return 2;
  }
  if (!secret_is_private(*grid, "registry", "registry")) {
    return 1;
  }
  log::init(grid->log_level, "registry", grid->log_format);
  asio::io_context io(1);
  registry::registry_daemon d(io, *grid);
  return serve(d, io, "registry", "registry", grid->timing.drain);
}

int run_auth(const std::filesystem::path& config) {
  auto grid = load_config(config, "auth");
  if (!grid) {
    return 2;
  }
  log::init(grid->log_level, "auth", grid->log_format);
  asio::io_context io(1);
  auth::auth_daemon d(io, *grid);
  return serve(d, io, "auth", "auth", grid->timing.drain);
}

int run_content(const std::filesystem::path& config, const std::string& listen) {
  auto grid = load_config(config, "content");
  if (!grid) {
    return 2;
  }
  if (!grid->content) {
    std::cerr << "vodgrid content: " << config.string() << " has no [content]\n";
    return 2;
  }
  // A standby content manager over the same catalog (the publish lease, docs/registry.md).
  if (!override_listen(grid->content->listen, listen, "content")) {
    return 2;
  }
  if (!secret_is_private(*grid, "content", "content")) {
    return 1;
  }
  log::init(grid->log_level, "content", grid->log_format);
  asio::io_context io(1);
  content::content_manager d(io, *grid);
  return serve(d, io, "content", "content", grid->timing.drain);
}

}  // namespace vodgrid::cli
