// The engine daemon: stores segments (store::segment_store), streams them to consoles with ranges
// and sendfile, copies them from other engines on order, preloads them on order, and reports its
// load and inventory to its director with every heartbeat.
// Threading: everything but the store's disk work runs on the io_context given at construction.
#pragma once

#include <chrono>
#include <memory>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "base/config.h"
#include "base/result.h"

namespace vodgrid::engine {

class engine_daemon {
 public:
  engine_daemon(boost::asio::io_context& io, grid_config grid, engine_id name);
  ~engine_daemon();

  // Opens the store, listens, and starts heartbeats. Errors: a bad config, an unusable data
  // directory, a port in use.
  status start();
  // Two-phase stop: stop accepting, drain streams for at most `drain`, stop heartbeats.
  boost::asio::awaitable<void> stop(std::chrono::milliseconds drain);
  uint16_t port() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace vodgrid::engine
