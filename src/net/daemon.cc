// daemon_base: listen and the two-phase stop.
#include "net/daemon.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <csignal>
#include <cstdlib>

#include "base/log.h"
#include "base/thread_slot.h"

namespace vodgrid::net {

daemon_base::daemon_base(asio::io_context& i)
    : io(i), tasks(i.get_executor()), stop_requested(i.get_executor()) {}

result<uint32_t> loop_count(uint32_t configured) {
  uint32_t n = configured;
  if (const char* env = std::getenv("VODGRID_THREADS"); env && *env) {
    std::string_view v(env);
    if (v == "auto") {
      n = 0;
    } else {
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (ec != std::errc() || end != v.data() + v.size() || n < 1 || n > 256) {
        return make_error(errc::invalid_argument,
                          fmt::format("VODGRID_THREADS must be 1..256 or \"auto\", got \"{}\"", v));
      }
    }
  }
  if (n == 0) {
    n = std::max(1u, std::thread::hardware_concurrency());
  }
  return n;
}

daemon_base::~daemon_base() {
  join_loops();
  server.reset();  // before the loops its acceptors and connections belong to
}

// VODGRID_THREADS, when set, applies to every daemon alike (loop_count).
status daemon_base::listen(const std::string& host, uint16_t p) {
  auto n = loop_count(threads);
  if (!n) {
    return n.err();
  }
  threads = *n;
  std::vector<asio::any_io_executor> extra;
  for (uint32_t i = 1; i < threads; ++i) {
    loops_.push_back(std::make_unique<asio::io_context>(1));
    loop_guards_.push_back(asio::make_work_guard(*loops_.back()));
    extra.push_back(loops_.back()->get_executor());
  }
  auto bound = server->listen(host, p, extra);
  if (!bound) {
    loop_guards_.clear();
    return bound.err();
  }
  for (size_t i = 0; i < loops_.size(); ++i) {
    loop_threads_.emplace_back([ctx = loops_[i].get(), slot = i + 1] {
      set_thread_slot(slot);  // the home loop is 0 (http_server::accept_loop)
      ctx->run();
    });
  }
  port = *bound;
  return {};
}

status daemon_base::listen(const listen_address& at) {
  if (at.tls()) {
    if (auto st = server->set_tls(tls_files{at.tls_cert, at.tls_key}); !st) {
      return st;
    }
  }
  if (auto st = listen(at.host, at.port); !st) {
    return st;
  }
  if (at.tls()) {
    hup_ = std::make_unique<asio::signal_set>(io, SIGHUP);
    wait_hup();
  }
  return {};
}

void daemon_base::wait_hup() {
  hup_->async_wait([this](const boost::system::error_code& ec, int) {
    if (ec || stopping) {
      return;  // cancelled by stop (or the daemon destroyed): `this` may be gone
    }
    auto logger = log::get("net");
    if (auto st = server->reload_tls(); !st) {
      logger->error("{}: SIGHUP: the certificate in use stays: {}", server->name(),
                    st.err().detail);
    } else {
      logger->info("{}: SIGHUP: certificate reloaded", server->name());
    }
    wait_hup();
  });
}

void daemon_base::join_loops() {
  loop_guards_.clear();  // a loop ends once its connections and accept loop have
  for (auto& l : loops_) {
    l->stop();  // stop() has ended their work; a daemon destroyed without stop cuts it
  }
  for (auto& t : loop_threads_) {
    t.join();
  }
  loop_threads_.clear();
}

void daemon_base::end_loops() {
  join_loops();
  if (loops_.empty()) {
    return;
  }
  if (server) {
    server->forget_further_loops();
  }
  loops_.clear();  // destroys the coroutines left on them (a daemon never stopped)
}

asio::awaitable<size_t> daemon_base::stop(std::chrono::milliseconds drain) {
  auto deadline = std::chrono::steady_clock::now() + drain;
  stopping = true;
  if (hup_) {
    boost::system::error_code ec;
    hup_->cancel(ec);
  }
  on_stop();
  stop_requested.set();
  if (server) {
    co_await server->stop(drain);
  }
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  size_t abandoned = co_await tasks.close(std::max(left, std::chrono::milliseconds(0)));
  join_loops();  // the server has stopped: the further loops have nothing left
  if (abandoned > 0) {
    log::get("net")->info("{}: {} background tasks abandoned at the drain deadline",
                          server ? server->name() : std::string("daemon"), abandoned);
  }
  co_return abandoned;
}

}  // namespace vodgrid::net
