// The content manager's pure decisions, apart from the daemon so that they can be tested without
// one: the checks of an ingest request (POST /v1/programs), which stations a publish or withdrawal
// must reach, how long to wait before telling the missing ones again, and what the renditions of
// a program of several are called and measured at.
#pragma once

#include <chrono>
#include <set>
#include <string>
#include <string_view>

#include "api/api.h"
#include "api/hls.h"
#include "base/config.h"
#include "base/result.h"
#include "base/time.h"
#include "content/catalog.h"
#include "content/renditions.h"
#include "content/transcode.h"

namespace vodgrid::content {

// An ingest request (api::ingest_request), checked whole before anything is recorded.
struct checked_ingest {
  program_entry program;      // id, title, source, publish_at, targets, prefetch; created now
  double target_seconds = 4;  // the packager's segment length
  bool transcode = false;     // into `ladder` (api::ingest_request::renditions); else a remux
  ladder_options ladder;      // its rungs (empty: the source's default ladder)
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

// The measured bandwidths of a packaged rendition: `bandwidth` the largest segment's rate (the
// playlist's BANDWIDTH is a peak), `average_bandwidth` all its bytes over its duration; bits/s.
void measure(rendition_info& r);

// The rendition made of variant `index` of a multivariant source, packaged into `media`: named
// "{height}p" ("v{index}" when it has no height), "-2", "-3", ... added to a name `taken` already;
// measured (measure); CODECS and FRAME-RATE as the source states them (the frame rate counted from
// the frames when it does not).
rendition_info variant_rendition(const api::variant_stream& v, size_t index, package_result media,
                                 const std::vector<rendition_info>& taken);

// A rendition as the wire and the catalog carry it (api::rendition): its attributes alone.
api::rendition wire_rendition(const rendition_info& r);

}  // namespace vodgrid::content
