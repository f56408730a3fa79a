// What push streaming needs to know of an MPEG-TS segment: when each byte is due (from the PCRs)
// and where its key frames are (the index trick play sends from). Pure functions of the bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace vodgrid::push {

inline constexpr size_t ts_packet_bytes = 188;
inline constexpr size_t ts_packets_per_datagram = 7;  // RFC 2250 over a 1,500-byte MTU
inline constexpr size_t datagram_payload_bytes = ts_packet_bytes * ts_packets_per_datagram;

struct ts_index {
  struct pcr_point {
    uint64_t offset = 0;  // of the packet carrying the PCR
    double seconds = 0;   // its PCR, in seconds after the segment's first PCR (wraps undone)
  };
  // A random access point: a PES start on the video PID whose adaptation field sets
  // random_access_indicator, or, without any, whose payload starts an H.264 IDR or H.265 IRAP
  // access unit.
  struct keyframe {
    uint64_t offset = 0;  // of its first packet
    uint64_t length = 0;  // bytes up to the next PES start on the video PID (or the segment's end)
    double seconds = 0;   // its PTS, in seconds after the segment's first video PTS
  };
  uint64_t size = 0;
  uint16_t video_pid = 0x1fff;  // 0x1fff: none found
  std::vector<pcr_point> pcrs;
  std::vector<keyframe> keyframes;
  uint64_t psi_bytes = 0;  // the leading PAT and PMT packets: sent before each key frame
};

// errc::invalid_argument when `bytes` is not whole 188-byte packets, each starting with 0x47.
result<ts_index> index_ts(std::string_view bytes);

// Seconds after the segment's start at which byte `offset` is due, for a segment of `duration`
// seconds (the manifest's): linear between the PCR points, with (0, 0) before the first and
// (size, duration) after the last; never decreasing and within [0, duration].
double due_at(const ts_index& ix, uint64_t offset, double duration);

// The byte offset where playback of `seconds` into the segment starts: the last key frame at or
// before it, packet-aligned; 0 when there is none.
uint64_t offset_for(const ts_index& ix, double seconds);

}  // namespace vodgrid::push
