// The content manager's pure decisions, apart from the daemon so that they can be tested without
// one: the checks of an ingest request (POST /v1/programs), which stations a publish or withdrawal
// must reach, and how long to wait before telling the missing ones again.
#pragma once

#include <chrono>
#include <set>
#include <string>
#include <string_view>

#include "api/api.h"
#include "base/config.h"
#include "base/result.h"
#include "base/time.h"
#include "content/catalog.h"

namespace vodgrid::content {

// An ingest request (api::ingest_request), checked whole before anything is recorded.
struct checked_ingest {
  program_entry program;      // id, title, source, publish_at, targets, prefetch; created now
  double target_seconds = 4;  // the packager's segment length
};

// Decodes a POST /v1/programs body and checks what its wire type cannot: against the grid (its
// stations, whether it has a registry) at `now`; a local source must exist. errc::invalid_argument
// saying what is wrong otherwise.
result<checked_ingest> parse_ingest_request(std::string_view body, const grid_config& grid,
                                            wall_clock::time_point now);

// A publish or withdrawal not yet acknowledged by every director (and the registry).
struct pending_change {
  api::availability_change change;
  std::set<std::string> stations;  // still to tell
  std::set<std::string> holders;   // the home and the program's targets: they will have it
  bool registry = false;           // still to tell
  int attempts = 0;
};

// The change to tell for `p` in its current state: every station of the grid (and the registry, if
// any), with the home and the program's targets (all stations when it names none) as holders.
pending_change change_for(const program_entry& p, const grid_config& grid);

// How long the push loop waits before another round, once the most tried change has had
// `max_attempts`: 100 ms doubling up to 5 s. The shape of a backoff, not an operator's setting:
// each round's requests are bounded by [timing] exchange_ms.
std::chrono::milliseconds push_retry_delay(int max_attempts);

}  // namespace vodgrid::content
