// The console: plays an HLS VOD program through a director as a set-top box would — playlist,
// per-segment redirects, SHA-256 check of every segment, optional real-time pacing — for one or
// many concurrent viewers, and reports what happened. A multivariant playlist's renditions are
// played one after the other (or its top one alone). It is also vodgrid's load generator: a
// segment's body is hashed as it arrives and never held whole (the viewers of a thread share one
// 256 KiB read buffer, segment_reader.h), and the viewers may be spread over every core.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include "console/model.h"
#include "console/quantiles.h"

namespace vodgrid::console {

inline constexpr uint32_t max_play_threads = 256;
inline constexpr uint32_t max_play_buffer = 100;

// What every thread of a play has done so far, for the live progress line. Written by the
// players' threads (relaxed atomics), read by whoever prints.
struct play_progress {
  std::atomic<uint64_t> viewers_done{0};
  std::atomic<uint64_t> viewers_playing{0};
  std::atomic<uint64_t> segments{0};
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> stalls{0};
  std::atomic<uint64_t> failed{0};
};

struct play_options {
  std::string url;       // http://DIRECTOR/v1/programs/{id}/index.m3u8
  std::string token;     // appended as ?token= when not empty
  uint32_t viewers = 1;  // concurrent consoles
  // Pace as a player: keep `buffer` segments ahead of the one playing, start playing when the
  // first has arrived, count a stall when playback reaches a segment not yet arrived.
  bool realtime = false;
  uint32_t buffer = 3;  // real time: segment i is asked for when segment i - buffer starts playing
  bool verify = true;   // check every segment against the director's published SHA-256
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
  // Viewers that behave like people (model.h); implies real time. Each viewer plays one rendition
  // (a multivariant playlist's first, its top one) of a program picked from `programs`.
  model_options model;
  // --model: the program ids picked from (Zipf, in this order); empty: the director's catalog
  // (GET /v1/programs at the URL's origin, the programs ready and published, in its order).
  std::vector<std::string> programs;
  // Internal to play_on_threads: the viewers this play() plays are first_viewer,
  // first_viewer + viewer_stride, ... of all_viewers (0: `viewers`), so that a viewer's decisions
  // do not depend on the thread that plays it.
  uint32_t first_viewer = 0;
  uint32_t viewer_stride = 1;
  uint32_t all_viewers = 0;
  // Counters for a live progress line; owned by the caller, outliving the play. May be null.
  play_progress* progress = nullptr;
  // Called with an engine's origin the first time this play()'s viewers got a segment from it
  // (play_on_threads: its CPU is sampled from then on). May be empty.
  std::function<void(const std::string& origin)> engine_seen;
};
// Why `o` cannot be played (a line for the operator), or nothing.
std::optional<std::string> invalid_options(const play_options& o);

// One viewer of a --model play: what it was dealt and what it saw.
struct viewer_record {
  uint32_t viewer = 0;
  std::string program;
  double arrival = 0;              // seconds after the start (decided)
  double watch_seconds = 0;        // media seconds it meant to watch (decided)
  uint32_t seeks = 0, pauses = 0;  // decided
  double startup = 0;              // seconds from its arrival to its first segment's arrival
  uint64_t stalls = 0;
  double stalled_seconds = 0;
  boost::json::value to_json() const;
};

// Who limited a play, measured: the console's own CPU over the run (getrusage against wall ×
// threads), the engines' and the director's (their /metrics process_cpu_seconds_total before and
// after), the machine's (/proc/stat), and the bytes delivered against the bytes needed.
struct saturation {
  double console_cpu = -1;  // share of the console's threads' time spent on CPU (0..1); -1: unknown
  double machine_cpu = -1;  // share of every core busy over the run; -1: unknown
  // Engines (host:port) and the director: CPU cores used over the run; absent: not measured.
  std::map<std::string, double> engine_cpu;
  double director_cpu = -1;
  std::string verdict;  // "none", "console CPU", "engine CPU", "bandwidth", ...
  boost::json::value to_json() const;
};

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
  std::map<std::string, uint64_t> engines;  // engine (the 302's host:port) → segments served
  std::map<std::string, uint64_t>
      stations;  // station (its director's name or host:port) → segments
  std::map<std::string, uint64_t> programs;  // program → viewers who picked it
  double stalled_seconds = 0;                // summed over the viewers
  uint64_t viewers_stalled = 0;
  uint64_t seeks = 0, pauses = 0;
  quantiles startup;        // per viewer: from its arrival to its first segment's arrival
  quantiles ttfb;           // per segment: from asking the director to the engine's reply head
  quantiles stall_seconds;  // per viewer: seconds its playback waited for a segment
  // Real time only: bytes the playing viewers needed: each viewer's rendition rate (its bytes over
  // the media it fetched) times the seconds it was playing or stalled (not paused). Over `seconds`,
  // the rate needed; bytes over `seconds`, the rate achieved.
  double needed_bytes = 0;
  std::vector<viewer_record> viewer_records;  // --model only, by viewer
  saturation limits;                          // play_on_threads only
  // The renditions' playlists played (their paths), when the URL was a multivariant playlist.
  std::vector<std::string> renditions;
  static constexpr size_t max_errors = 20;
  std::vector<std::string> errors;  // the first max_errors, for the operator
  bool ok() const { return segments_failed == 0 && errors.empty(); }
  // Adds another thread's report of the same play: counts summed, maxima (longest stall, wall and
  // media seconds) maxed, tallies and percentiles summed, renditions, viewer records and the first
  // errors joined.
  void merge(const play_report& other);
  double achieved_rate() const { return seconds > 0 ? bytes / seconds : 0; }  // bytes/s
  double needed_rate() const { return seconds > 0 ? needed_bytes / seconds : 0; }
  std::string to_text() const;
  boost::json::value to_json() const;
};

// Plays with `opts.viewers` concurrent consoles on the caller's executor (one thread;
// `opts.threads` is not used).
boost::asio::awaitable<play_report> play(play_options opts);

// Plays with `opts.viewers` consoles spread round-robin over `opts.threads` threads of its own,
// each running play() on an io_context of its own (nothing is shared between them), and blocks
// until every viewer is done: the threads' reports merged, the wall time the whole play's, and
// `limits` measured around it (the director and its engines asked for their CPU before and
// after). A --model play without programs asks the director for its catalog first.
// Precondition: !invalid_options(opts).
play_report play_on_threads(play_options opts);

}  // namespace vodgrid::console
