// The engine's push streams (DESIGN.md flow 8): RTP sessions to consoles' UDP ports, each paced by
// its segments' PCRs, all sent from one thread and one UDP socket with sendmmsg(2) batches. A
// stream plays its queued segments in turn; the engine queues the next one (append) when it holds
// it, or hands the stream to another engine at the segment's end (claim 16) with the state that
// engine continues from (stream_state), so that the console sees one RTP stream: one SSRC,
// contiguous sequence numbers, a timestamp continuous in program time.
//
// Threading: the public methods may be called from any thread (one mutex guards the streams);
// events are delivered on the pacer's thread, with no lock held, and may call the public methods.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/ip/udp.hpp>

#include "base/ids.h"
#include "base/result.h"
#include "push/ts.h"

namespace vodgrid::push {

using udp_endpoint = boost::asio::ip::udp::endpoint;

// The bytes of one segment. `data` stays valid while `owner` lives. Bytes [0, *available) may be
// sent; `available` only grows (a segment still arriving: cut-through) and may be written by
// another thread; null means all `size` bytes are there. `index` covers what was there when the
// source was made (the whole segment when `available` is null).
struct segment_source {
  std::shared_ptr<const void> owner;
  const char* data = nullptr;
  uint64_t size = 0;
  std::shared_ptr<const std::atomic<uint64_t>> available;
  std::shared_ptr<const ts_index> index;
};

// One segment queued on a stream.
struct segment_play {
  segment_key key;
  double npt_start = 0;  // program time at which the segment starts, in seconds
  double duration = 0;   // the manifest's, in seconds
  // The first byte to send, packet-aligned. With a negative scale: send the key frames before it,
  // backwards (the segment's size means "from its end").
  uint64_t offset = 0;
  segment_source source;
};

// What a stream's next datagram will carry and when it is due: what a hand-off passes on.
struct stream_state {
  uint32_t ssrc = 0;
  uint16_t seq = 0;       // of the next RTP packet
  uint32_t rtp_base = 0;  // a datagram of program time t carries timestamp rtp_base + t * 90,000
  double scale = 1;       // Scale: 1 plays; |scale| > 1 sends key frames only; < 0 rewinds
  // The clock of the stream: a datagram of program time t is due at
  // origin_unix_ns + (t - origin_npt) / scale seconds (CLOCK_REALTIME, so that two engines on
  // synchronised clocks agree). origin_unix_ns 0: now, at the first datagram's program time.
  int64_t origin_unix_ns = 0;
  double origin_npt = 0;
};

struct stream_spec {
  std::string session;   // the RTSP session id
  udp_endpoint rtp_to;   // the console's RTP port
  udp_endpoint rtcp_to;  // its RTCP port (RTP's + 1 by convention)
  stream_state state;
  segment_play first;
};

struct stream_position {
  std::string session;
  segment_key key;  // the segment being sent
  // Its next byte to send; sending key frames only, the next key frame's offset (backward: the
  // packet after it), so that a stream resumed here sends that key frame next.
  uint64_t offset = 0;
  double npt = 0;        // the program time of that byte
  stream_state state;    // what a stream resumed here continues with
  uint64_t packets = 0;  // RTP packets sent by this pacer on this stream
  uint64_t octets = 0;   // their payload bytes
};

enum class event_kind {
  next_wanted,  // next_lead before the end of the last queued segment: append, or hand_off;
                // `at` is that segment at its end, with the state the segment after it starts with
  handoff_due,  // handoff_lead before a stream marked hand_off ends: `at` is the state the next
                // engine continues with (the next segment's first datagram: seq, due time)
  ended,        // the last queued segment was sent, with nothing appended: the stream is gone
  starved,      // a segment still arriving did not have the bytes due (once per segment)
};

struct stream_event {
  event_kind kind;
  stream_position at;
};

struct pacer_options {
  std::chrono::milliseconds next_lead{2'000};
  std::chrono::milliseconds handoff_lead{250};
  // How long after a program's last datagram its RTCP BYE goes. A console that reads its sockets
  // late finds both the last datagrams and the BYE waiting, and FFmpeg's RTP reader takes the
  // RTCP socket's first (libavformat/rtpproto.c, rtp_read): a BYE right behind the data would end
  // the stream with its last datagrams unread.
  std::chrono::milliseconds bye_delay{1'000};
  std::chrono::milliseconds rtcp_interval{5'000};
  std::string cname = "vodgrid";
  uint32_t batch = 64;                  // datagrams per sendmmsg(2)
  std::string bind_host = "127.0.0.1";  // the socket streams leave from (port chosen by the kernel)
  int send_buffer_bytes = 4 << 20;
};

// Counters since the pacer started; read by /metrics.
struct pacer_counters {
  uint64_t datagrams = 0;
  uint64_t octets = 0;       // RTP payload bytes
  uint64_t send_errors = 0;  // datagrams the kernel refused (the console's port closed, ...)
  uint64_t late = 0;         // datagrams sent more than 2 ms after they were due
  uint64_t starved = 0;      // waits for a segment still arriving
  uint64_t sender_reports = 0;
  bool realtime = false;  // the pacer's thread runs at a real-time priority (SCHED_FIFO)
};

class pacer {
 public:
  pacer(pacer_options o, std::function<void(stream_event)> on_event);
  ~pacer();  // stops the thread; streams end without events
  pacer(const pacer&) = delete;
  pacer& operator=(const pacer&) = delete;

  // Binds the socket and starts the thread.
  status start();
  uint16_t local_port() const;

  // errc::conflict: the session is streaming here already; errc::invalid_argument: a bad offset
  // or scale, a source without an index.
  status add(stream_spec s);
  // Queues the segment that follows the stream's last (in the direction of its scale).
  // errc::not_found: no such stream.
  status append(const std::string& session, segment_play next);
  // After its queued segments the stream leaves this engine: handoff_due comes handoff_lead before
  // the end, and no `ended` event after it.
  status hand_off(const std::string& session);
  // The program ends with the stream's queued segments (in the direction of its scale): bye_delay
  // after the last datagram an RTCP BYE tells the console, then `ended` comes. errc::not_found: no
  // stream.
  status program_ends(const std::string& session);
  // Stops a stream at once: where it stopped, nullopt when there is no such stream.
  std::optional<stream_position> stop(const std::string& session);
  // Holds a stream where it is, sending nothing until it is released or stopped: the exact
  // position another engine takes it from while this one asks it to (a swap), so that no
  // datagram goes out twice. Its clock runs on; released, it catches up. nullopt: no stream.
  std::optional<stream_position> hold(const std::string& session);
  // Lets a held stream go on. errc::not_found: no such stream.
  status release(const std::string& session);

  std::vector<stream_position> positions() const;
  size_t streams() const;
  pacer_counters counters() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace vodgrid::push
