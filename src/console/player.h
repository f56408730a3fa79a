// The console: plays an HLS VOD program through a director as a set-top box would — playlist,
// per-segment redirects, SHA-256 check of every segment, optional real-time pacing — for one or
// many concurrent viewers, and reports what happened. A multivariant playlist's renditions are
// played one after the other (or its top one alone). It is also vodgrid's load generator: a
// segment's body is hashed as it arrives and never held whole (a viewer costs a 64 KiB window, not
// a segment), and the viewers may be spread over every core.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

namespace vodgrid::console {

inline constexpr uint32_t max_play_threads = 256;

struct play_options {
  std::string url;             // http://DIRECTOR/v1/programs/{id}/index.m3u8
  std::string token;           // appended as ?token= when not empty
  uint32_t viewers = 1;        // concurrent consoles
  bool realtime = false;       // fetch each segment only when the previous one starts playing
  bool verify = true;          // check every segment against the director's published SHA-256
  uint32_t max_attempts = 12;  // per segment, through the director each time
  std::chrono::milliseconds attempt_timeout{20'000};
  // No byte for this long: the engine (or director) hangs, and the segment is asked for again
  // through the director, which sends the console elsewhere once the engine leaves rotation.
  std::chrono::milliseconds read_timeout{4'000};
  // A multivariant playlist (a program of several renditions): play every variant in turn
  // (verifying each), or only the first, its top rendition.
  bool every_rendition = true;
  // play_on_threads: the threads the viewers are spread over, round-robin, each running an
  // io_context of its own; 0: one per core (std::thread::hardware_concurrency). At most
  // max_play_threads.
  uint32_t threads = 0;
};
// Why `o` cannot be played (a line for the operator), or nothing.
std::optional<std::string> invalid_options(const play_options& o);

struct play_report {
  uint32_t viewers = 0;
  uint64_t segments = 0;         // segments played (verified, when verifying)
  uint64_t segments_failed = 0;  // segments no attempt could deliver
  uint64_t bytes = 0;
  uint64_t retries = 0;      // attempts beyond the first
  uint64_t stalls = 0;       // real time only: a segment arrived after it was due to play
  double longest_stall = 0;  // seconds: the longest wait of a viewer's playback for a segment
  uint64_t digest_mismatches = 0;
  double seconds = 0;                       // wall time
  double media_seconds = 0;                 // per viewer
  std::map<std::string, uint64_t> engines;  // engine origin → segments served
  // The renditions' playlists played (their paths), when the URL was a multivariant playlist.
  std::vector<std::string> renditions;
  static constexpr size_t max_errors = 20;
  std::vector<std::string> errors;  // the first max_errors, for the operator
  bool ok() const { return segments_failed == 0 && errors.empty(); }
  // Adds another thread's report of the same play: counts summed, maxima (longest stall, wall and
  // media seconds) maxed, engine tallies summed, renditions and the first errors joined.
  void merge(const play_report& other);
  std::string to_text() const;
  boost::json::value to_json() const;
};

// Plays with `opts.viewers` concurrent consoles on the caller's executor (one thread;
// `opts.threads` is not used).
boost::asio::awaitable<play_report> play(play_options opts);

// Plays with `opts.viewers` consoles spread round-robin over `opts.threads` threads of its own,
// each running play() on an io_context of its own (nothing is shared between them), and blocks
// until every viewer is done: the threads' reports merged, the wall time the whole play's.
// Precondition: !invalid_options(opts).
play_report play_on_threads(play_options opts);

}  // namespace vodgrid::console
