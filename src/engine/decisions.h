// The engine's pure decisions, apart from the daemon so that they can be tested without one:
// the byte range a segment request gets, whether a console meets the stream limit, how far a store
// is over its disk budget, which segments to offer the director for eviction, and whether a
// source's reply head announces the copy this engine expects; and for push streams, whether an
// order can be carried out, where it starts, where a stream that cannot go on resumes, and which
// stream to swap back.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "api/push.h"
#include "base/ids.h"
#include "base/result.h"
#include "net/range.h"
#include "push/ts.h"

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

// Push streams (push.cc, DESIGN.md flow 8).

// Why a push order cannot be carried out whatever this engine holds (a session id that is not 16
// hex digits, a console host that is not an IP address, port 0, a scale that is not finite and
// nonzero within ±64, both an offset and a seek, a seek outside the segment's duration), or
// nullopt when it may be.
std::optional<error> push_order_refusal(const api::push_order& o);

// The byte where an order starts in a segment of `size` bytes indexed `ix`: its offset (a packet
// boundary inside the segment; with a negative scale any offset past the end means the end); its
// seek rounded down to a key frame (with a negative scale, that key frame is the first sent), or
// when `ix` covers only what has arrived of a segment still arriving and the seek lies past it,
// the byte the seek would be at if the bitrate held; else the start, or the end with a negative
// scale. errc::invalid_argument for a bad offset.
result<uint64_t> push_start_offset(const api::push_order& o, const push::ts_index& ix,
                                   uint64_t size);

// The offset that means "from the segment's end" to push_start_offset with a negative scale,
// when the sender does not know the segment's size: the largest packet boundary.
inline constexpr uint64_t push_from_end =
    UINT64_MAX / push::ts_packet_bytes * push::ts_packet_bytes;

// Where a director should resume a stream that stopped at the end of segment `tail_end.key`
// without a hand-off (the next engine refused, no segment was queued): the start of the segment
// after it in the direction of the scale (`next` when the director named it, else the adjacent
// index), with the state the stream would have gone on with. nullopt when a rewind has reached the
// program's first segment.
std::optional<api::push_position> push_resume_point(const api::push_position& tail_end,
                                                    std::optional<segment_key> next);

// Whether a stream waiting for a segment still arriving should move to an engine holding all of it
// (claims 21-22): in trick play, or after a seek into that segment. At 1x from a segment's start
// the copy outruns the stream, and waiting is right.
bool push_swap_when_starved(double scale, bool sought);

// One of this engine's push streams, as the swap back of claim 22 considers it.
struct push_candidate {
  std::string session;
  segment_key key;       // the segment it is sending
  bool leaving = false;  // being handed off or swapped away already
};

// The stream to hand back to an engine that swaps one to us while we are at our limit (claim 22):
// the first not leaving, not `incoming`, whose current segment that engine holds whole.
std::optional<std::string> push_swap_back_choice(const std::vector<push_candidate>& ours,
                                                 const std::set<segment_key>& held_there,
                                                 std::string_view incoming);

}  // namespace vodgrid::engine
