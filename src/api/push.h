// The wire types of push streaming (DESIGN.md flow 8, docs/push.md): orders from a director to its
// engines and from engine to engine (a hand-off or a swap), and what engines tell their director
// about the sessions they stream. JSON like the rest of api.h, one place per type.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <boost/json/value.hpp>

#include "api/api.h"
#include "base/ids.h"
#include "base/result.h"

namespace vodgrid::api {

// An RTSP session id: 16 lower-case hex digits.
bool valid_push_session(std::string_view s);

// Where a session's stream is and what its next RTP packet carries: push/pacer.h's stream_state
// and stream_position on the wire.
struct push_state {
  uint32_t ssrc = 0;
  uint16_t seq = 0;       // of the next RTP packet
  uint32_t rtp_base = 0;  // RTP timestamp of program time 0
  double scale = 1;
  int64_t origin_unix_ns = 0;  // the stream's clock (pacer.h); 0: start now
  double origin_npt = 0;
};

// POST ENGINE/v1/push/streams: stream `session` to the console from `key` (director → engine on
// PLAY or to resume a session; engine → engine for a hand-off at a segment boundary, claim 16, or
// a swap, claims 21-22). Replies 201 with a push_position (where the stream starts).
struct push_order {
  std::string session;
  segment_key key;
  double npt_start = 0;  // program time at which segment `key` starts
  double duration = 0;   // of segment `key`, seconds
  // Where in the segment to start: a byte offset (packet-aligned), or `seek` seconds into the
  // segment, which the engine rounds down to a key frame. At most one is set; neither: offset 0.
  std::optional<uint64_t> offset;
  std::optional<double> seek;
  std::string console_host;  // an IP address: the console's (the RTSP connection's peer)
  uint16_t rtp_port = 0;
  uint16_t rtcp_port = 0;
  push_state state;
  // Who sends the order: empty for the director; the engine handing off or swapping.
  std::optional<engine_id> from;
  bool swap = false;  // the sender cannot serve the rest of the segment (it is still arriving)
};

// A session's stream at one engine.
struct push_position {
  std::string session;
  segment_key key;
  uint64_t offset = 0;  // the next byte of `key` to send
  double npt = 0;       // program time of that byte
  push_state state;
};

// POST DIRECTOR/v1/push/sessions/{session}/next (engine → director): the stream is near the end of
// `key`; which segment comes next and which engine should stream it (claims 16, 18). The director
// orders that engine to preload it. whole: an engine holding all of `key` itself is wanted (the
// sender's copy is still arriving: a swap, claims 21-22).
struct push_next_request {
  engine_id engine;
  segment_key key;
  double scale = 1;
  bool whole = false;
};

// The director's answer: end (the program is over in the direction of the scale), else the
// segment and the engine (which may be the asker).
struct push_next_reply {
  bool end = false;
  segment_key key;
  double npt_start = 0;
  double duration = 0;
  engine_ref engine;
};

// POST DIRECTOR/v1/push/sessions/{session}/taken (engine → director): this engine now streams the
// session (a hand-off or a swap arrived).
struct push_taken {
  engine_id engine;
  push_position at;
  std::optional<engine_id> from;
  bool swap = false;
};

// POST DIRECTOR/v1/push/sessions/{session}/ended (engine → director): the stream left this engine
// without a hand-off: the program ended (reason "end"), or the engine could not go on ("failed":
// the next engine refused the hand-off, a segment could not be read) and the director resumes it.
struct push_ended {
  engine_id engine;
  push_position at;
  std::string reason;  // "end" | "failed"
  std::string detail;
};

// POST DIRECTOR/v1/push/positions (engine → director), every push_report_ms: the sessions this
// engine streams. The reply names those it must stop (the director moved them elsewhere).
struct push_report {
  engine_id engine;
  std::vector<push_position> streams;
};
struct push_report_reply {
  std::vector<std::string> stop;
};

boost::json::value to_json(const push_state& v);
boost::json::value to_json(const push_order& v);
boost::json::value to_json(const push_position& v);
boost::json::value to_json(const push_next_request& v);
boost::json::value to_json(const push_next_reply& v);
boost::json::value to_json(const push_taken& v);
boost::json::value to_json(const push_ended& v);
boost::json::value to_json(const push_report& v);
boost::json::value to_json(const push_report_reply& v);

template <>
result<push_order> from_json<push_order>(const boost::json::object& o);
template <>
result<push_position> from_json<push_position>(const boost::json::object& o);
template <>
result<push_next_request> from_json<push_next_request>(const boost::json::object& o);
template <>
result<push_next_reply> from_json<push_next_reply>(const boost::json::object& o);
template <>
result<push_taken> from_json<push_taken>(const boost::json::object& o);
template <>
result<push_ended> from_json<push_ended>(const boost::json::object& o);
template <>
result<push_report> from_json<push_report>(const boost::json::object& o);
template <>
result<push_report_reply> from_json<push_report_reply>(const boost::json::object& o);

}  // namespace vodgrid::api
