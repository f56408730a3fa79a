// The director's RTSP sessions (DESIGN.md flow 8, docs/push.md): what it knows of each console's
// session and the engine streaming it, and the pure decisions about them. Private to src/director;
// the daemon owns the sessions on its io thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include <boost/asio/ip/address.hpp>

#include "api/api.h"
#include "api/push.h"
#include "director/tables.h"

namespace vodgrid::director {

struct push_session {
  enum class phase { ready, playing, paused };
  std::string id;
  program_id program;
  boost::asio::ip::address console;  // the RTSP connection's peer: streams go nowhere else
  // Where the engines send RTP and RTCP: the console's ports; for an interleaved session (RTSPS),
  // the director's relay pair, which puts each datagram into the console's TLS connection.
  boost::asio::ip::address stream_host;
  uint16_t rtp_port = 0;
  uint16_t rtcp_port = 0;
  bool interleaved = false;
  api::push_state state;  // ssrc, rtp_base; seq and scale as of the last position
  phase now = phase::ready;
  // The engine streaming the session, and the one it was told to hand it to next (a report from
  // that one means the hand-off happened: its `taken` may arrive after its first report).
  std::optional<engine_slot> engine;
  std::optional<engine_slot> next_engine;
  std::optional<api::push_position> at;  // the last position an engine reported
  steady::time_point heard{};            // the streaming engine last told us of the session
  steady::time_point touched{};          // the console's last request (keep-alive)
  bool resuming = false;                 // a resume is in flight
  // Bumped by every PLAY, stop and resume: a stream whose order was sent under an older one is
  // stopped when its reply comes (a PAUSE or another PLAY came meanwhile).
  uint64_t generation = 0;
  bool ended = false;  // the stream reached the program's end
  uint64_t handoffs = 0;
  uint64_t resumes = 0;
};

// Where program time `npt` falls: the segment and the seconds into it. nullopt when `npt` is at or
// past the end of the program (or the program has no segments).
struct program_point {
  segment_index index;
  double npt_start = 0;  // the segment's start
  double into = 0;       // seconds into it
};
std::optional<program_point> point_at(const api::program_manifest& m, double npt);
// The program time at which segment `index` starts (the sum of the durations before it).
double segment_start(const api::program_manifest& m, segment_index index);

// The segment after `current` in the direction of `scale` (before it when rewinding); nullopt at
// the program's end (or start).
std::optional<segment_index> next_segment(const api::program_manifest& m, segment_index current,
                                          double scale);

// Whether the engine streaming a session has been silent past `silence` (dead, hung or cut off):
// the session is then resumed elsewhere.
inline bool stream_silent(const push_session& s, steady::time_point now,
                          std::chrono::milliseconds silence) {
  return s.now == push_session::phase::playing && s.engine && !s.resuming && !s.ended &&
         now - s.heard > silence;
}

}  // namespace vodgrid::director
