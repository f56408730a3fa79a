// The skeleton every daemon shares: its io_context, its HTTP server and routes, the tasks it spawns
// (counted by a task group), a "stop requested" event its loops sleep on, and a two-phase stop.
// A daemon's impl derives from daemon_base and adds its own state; README.md shows the pattern.
// Threading: everything here belongs to the io thread(s) of `io`.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "base/result.h"
#include "net/async_event.h"
#include "net/http.h"
#include "net/task_group.h"

namespace vodgrid::net {

class daemon_base {
 public:
  explicit daemon_base(asio::io_context& io);
  virtual ~daemon_base();
  daemon_base(const daemon_base&) = delete;
  daemon_base& operator=(const daemon_base&) = delete;

  // Binds `server` (made by the daemon's start, with its name and options) and starts accepting;
  // sets `port` to the bound port (useful with port 0).
  status listen(const std::string& host, uint16_t port);

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
             audience who = audience::control) {
    server->route(method, std::move(pattern), bind(fn), body_limit, who);
  }

  asio::io_context& io;
  std::unique_ptr<http_server> server;  // made by the daemon's start
  task_group tasks;                     // every coroutine the daemon spawns besides the server's
  async_event stop_requested;           // set at the start of stop(); loops sleep on it
  bool stopping = false;                // stop() has begun
  uint16_t port = 0;                    // bound by listen()

 protected:
  // The daemon's first step of stop, before the server stops accepting (e.g. end its auth
  // session, cancel what a loop waits on other than stop_requested).
  virtual void on_stop() {}
};

}  // namespace vodgrid::net
