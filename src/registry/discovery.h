// Prometheus HTTP service discovery (issue 14): every daemon of the grid as a scrape target, so
// that one http_sd_configs entry pointed at the registry finds the whole grid.
#pragma once

#include <boost/json/value.hpp>

#include "base/config.h"

namespace vodgrid::registry {

// The target groups of GET /v1/prometheus/targets: one per daemon, `host:port` of its listen
// address with the labels `role` (registry, auth, content, director, engine, supervisor),
// `station` (empty for the grid's own daemons) and `daemon` (its name). A supervisor listening on
// port 0 serves no metrics and is left out.
boost::json::value prometheus_targets(const grid_config& grid);

}  // namespace vodgrid::registry
