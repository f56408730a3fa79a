// The engine's pure decisions, apart from the daemon so that they can be tested without one:
// the byte range a segment request gets, whether a console meets the stream limit, how far a store
// is over its disk budget, which segments to offer the director for eviction, and whether a
// source's reply head announces the copy this engine expects.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>
#include <vector>

#include "base/ids.h"
#include "net/range.h"

namespace vodgrid::engine {

// The range a segment request gets (RFC 9110 §14): net::decide_range on its Range header, except
// that no Range, or an If-Range with another validator than `etag` (§13.1.5), asks for the whole
// segment (range_kind::none).
net::range_decision segment_range(std::string_view range, std::string_view if_range,
                                  std::string_view etag, uint64_t size);

// Whether a request meets the console stream limit: a copy by another engine never does, since it
// is what relieves the limit.
bool at_stream_limit(bool copy, uint32_t active_streams, uint32_t max_streams);

// The store's space, summed over its data directories (store::space_totals).
struct disk_space {
  uint64_t used_bytes = 0;
  uint64_t free_bytes = 0;
  uint64_t total_bytes = 0;
};

// Bytes to free before `want` more fit: over the engine's budget (`max_disk_bytes`, 0: none) or
// into the 2% of the filesystems kept free, whichever is more. 0 when it fits.
uint64_t bytes_over_budget(const disk_space& space, uint64_t want, uint64_t max_disk_bytes);

// A held segment as eviction sees it.
struct eviction_candidate {
  segment_key key;
  uint64_t size = 0;
  std::chrono::steady_clock::time_point last_used;  // epoch: never asked for
  bool streaming = false;
};

// The segments to offer the director when `over` bytes must go: least recently used first, never
// one being streamed, about twice what is needed (plus 16 MiB), since the director may keep some.
std::vector<segment_key> eviction_offer(std::vector<eviction_candidate> held, uint64_t over);

// The whole segment's size as a source's reply head announces it, for a transfer starting at byte
// `base` of a segment of `known_size` (0: unknown): from Content-Length of a 200 when base is 0,
// from a Content-Range matching the rest of the segment of a 206 otherwise. 0 when it announces
// nothing usable.
uint64_t announced_size(unsigned status, std::string_view content_length,
                        std::string_view content_range, uint64_t base, uint64_t known_size);

}  // namespace vodgrid::engine
