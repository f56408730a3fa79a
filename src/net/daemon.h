// The skeleton every daemon shares: its io_context, its HTTP server and routes, the tasks it spawns
// (counted by a task group), a "stop requested" event its loops sleep on, and a two-phase stop.
// A daemon's impl derives from daemon_base and adds its own state; README.md shows the pattern.
// Threading: everything here belongs to the thread running `io`, the home loop. With `threads` > 1,
// listen() starts threads - 1 further loops, each on its own thread, that accept connections on the
// same socket and serve them; their routes' handlers still run on the home loop unless a route is
// marked loop_affinity::any (see net/http.h and docs/architecture.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "base/config.h"
#include "base/result.h"
#include "net/async_event.h"
#include "net/http.h"
#include "net/task_group.h"

namespace vodgrid::net {

// The number of event loops a daemon runs: VODGRID_THREADS when set (a number, or "auto"),
// else `configured` (0: "auto"); "auto" is one per core. An unparsable VODGRID_THREADS is an
// error naming it.
result<uint32_t> loop_count(uint32_t configured);

class daemon_base {
 public:
  explicit daemon_base(asio::io_context& io);
  virtual ~daemon_base();
  daemon_base(const daemon_base&) = delete;
  daemon_base& operator=(const daemon_base&) = delete;
  // Ends the further loops (their threads joined, what their connections still hold destroyed).
  // The public daemon's destructor calls it before its impl goes: a daemon destroyed without
  // stop() must not have loops running its routes, or releasing what their connections hold,
  // while its derived state is being destroyed (~daemon_base would be too late).
  void end_loops();

  // Binds `server` (made by the daemon's start, with its name and options) and starts accepting
  // on loop_count(threads) loops (the home loop and the others started here), setting `threads` to
  // that count; sets `port` to the bound port (useful with port 0). An invalid VODGRID_THREADS is
  // an error naming it, for every daemon alike.
  status listen(const std::string& host, uint16_t port);
  // The same at a config's address; with its `tls` set, the port serves TLS only (set_tls: a
  // missing, unreadable, mismatched or expired certificate is the error) and SIGHUP reloads the
  // certificate and key (reload_tls: open connections keep theirs; a bad file keeps the old one,
  // logged) until stop.
  status listen(const listen_address& at);

  // Two-phase stop: on_stop(), "stop requested" set and `stopping` true; then the server stops
  // accepting and drains its requests for up to `drain`; then the task group is closed with what
  // is left of `drain`. Returns how many tasks were abandoned (still running at the deadline).
  asio::awaitable<size_t> stop(std::chrono::milliseconds drain);

  // A route handler calling a member coroutine of the daemon `D` (the derived impl).
  template <class D>
  handler bind(asio::awaitable<reply> (D::*fn)(request_context&)) {
    return [d = static_cast<D*>(this), fn](request_context& c) { return (d->*fn)(c); };
  }
  // Routes `method pattern` to a member coroutine of the daemon (see http_server::route).
  template <class D>
  void route(http::verb method, std::string pattern,
             asio::awaitable<reply> (D::*fn)(request_context&), uint64_t body_limit = 0,
             audience who = audience::control, loop_affinity where = loop_affinity::home) {
    server->route(method, std::move(pattern), bind(fn), body_limit, who, where);
  }

 private:
  // The further loops and their threads (declared before `server`, which is destroyed first: its
  // acceptors belong to these loops). Joined by stop(), else by the destructor.
  std::vector<std::unique_ptr<asio::io_context>> loops_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> loop_guards_;
  std::vector<std::thread> loop_threads_;
  void join_loops();
  std::unique_ptr<asio::signal_set> hup_;  // SIGHUP: reload the certificate (TLS only)
  void wait_hup();

 public:
  asio::io_context& io;
  std::unique_ptr<http_server> server;  // made by the daemon's start
  task_group tasks;                     // every coroutine the daemon spawns besides the server's
  async_event stop_requested;           // set at the start of stop(); loops sleep on it
  bool stopping = false;                // stop() has begun
  uint16_t port = 0;                    // bound by listen()
  // Event loops serving `server`: before listen(), the configured count (0: "auto"; a daemon
  // with a `threads` key sets it), which VODGRID_THREADS overrides; after, the count running.
  uint32_t threads = 1;

 protected:
  // The daemon's first step of stop, before the server stops accepting (e.g. end its auth
  // session, cancel what a loop waits on other than stop_requested).
  virtual void on_stop() {}
};

}  // namespace vodgrid::net
