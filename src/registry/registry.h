// The media location registry daemon: knows every station (registered by its director, with the
// load it reports), every program's distribution parameters, and where every segment lives; names
// the cheapest sources of a segment for a seeking station (claims 1, 10, 12–15); tells target
// stations what they must hold.
// Threading: handlers run on the io_context; database work runs on one thread of its own.
#pragma once

#include <chrono>
#include <memory>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "base/config.h"
#include "base/result.h"

namespace vodgrid::registry {

class registry_daemon {
 public:
  registry_daemon(boost::asio::io_context& io, grid_config grid);
  ~registry_daemon();

  status start();
  boost::asio::awaitable<void> stop(std::chrono::milliseconds drain);
  uint16_t port() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace vodgrid::registry
