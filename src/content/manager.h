// The content manager with its content engine (claims 2, 11): `vodgrid content`. It keeps the
// program catalog (catalog.h) and each program's lifecycle, downloads programs from providers
// (fetch.h), packages them (packager.h), loads them into the home station through the station-level
// loader, hands the distribution parameters to the registry, and at each program's publish time
// tells the directors to publish it.
//
// HTTP (docs/protocol.md):
//   POST /v1/programs                {id, title, source, publish_at, stations, prefetch,
//                                     target_seconds} → 202, the ingest runs in the background
//   GET  /v1/programs                the catalog
//   GET  /v1/programs/{id}           one program: segments, history, progress of its ingest
//   POST /v1/programs/{id}/publish   now (inactive or withdrawn → published)
//   POST /v1/programs/{id}/withdraw  (inactive or published → withdrawn)
// Threading: HTTP and scheduling on the io_context; the database on a thread of its own;
// downloads and packaging on a pool of two.
#pragma once

#include <chrono>
#include <memory>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "base/config.h"
#include "base/result.h"

namespace vodgrid::content {

class content_manager {
 public:
  content_manager(boost::asio::io_context& io, grid_config grid);
  ~content_manager();

  // Opens the catalog, resumes the schedule (a program caught mid-ingest by a stop is marked
  // failed and removed from the home station), listens.
  status start();
  boost::asio::awaitable<void> stop(std::chrono::milliseconds drain);
  uint16_t port() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace vodgrid::content
