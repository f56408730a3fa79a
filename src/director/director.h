// The director daemon: one per station. Keeps the engine and segment location tables from the
// engines' heartbeats, the station's program catalog, serves HLS playlists and redirects each
// segment request to a chosen engine while ordering the engine of the next segment to preload it.
// Threading: everything runs on the io_context given at construction.
#pragma once

#include <chrono>
#include <memory>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "base/config.h"
#include "base/result.h"

namespace vodgrid::director {

class director_daemon {
 public:
  director_daemon(boost::asio::io_context& io, grid_config grid, station_id station);
  ~director_daemon();

  // Loads the catalog, listens. Errors: an unknown station, an unreadable catalog, a port in use.
  status start();
  boost::asio::awaitable<void> stop(std::chrono::milliseconds drain);
  uint16_t port() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace vodgrid::director
