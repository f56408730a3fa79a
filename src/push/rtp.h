// RTP (RFC 3550) framing for MPEG-TS over RTP/AVP payload type 33 (RFC 2250, RFC 3551), and the
// RTCP packets push streaming sends (sender reports with a CNAME) and reads (receiver reports, as a
// sign of life). Pure functions: the pacer and the console use them on their own sockets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vodgrid::push {

inline constexpr size_t rtp_header_bytes = 12;
inline constexpr uint8_t rtp_payload_mp2t = 33;
inline constexpr uint32_t rtp_clock_hz = 90'000;

struct rtp_header {
  uint16_t seq = 0;
  uint32_t timestamp = 0;
  uint32_t ssrc = 0;
  uint8_t payload_type = rtp_payload_mp2t;
  bool marker = false;
};

// Writes the fixed 12-byte header (version 2, no padding, extension or CSRC).
void write_rtp_header(std::span<uint8_t, rtp_header_bytes> out, const rtp_header& h);
// The header of an RTP packet, nullopt unless version 2 and at least 12 bytes. `payload_offset`
// skips CSRCs and an extension; padding is taken off `payload_bytes`.
struct rtp_packet_view {
  rtp_header header;
  size_t payload_offset = 0;
  size_t payload_bytes = 0;
};
std::optional<rtp_packet_view> parse_rtp(std::span<const uint8_t> packet);

// The 64-bit NTP timestamp of a CLOCK_REALTIME instant in nanoseconds since 1970.
uint64_t ntp_time(int64_t unix_ns);

// A compound RTCP packet: a sender report (RFC 3550 6.4.1) then an SDES with `cname`.
std::vector<uint8_t> rtcp_sender_report(uint32_t ssrc, uint64_t ntp, uint32_t rtp_timestamp,
                                        uint32_t packets, uint32_t octets, std::string_view cname);
// The same followed by a BYE of `ssrc` (RFC 3550 6.6): the stream has ended. Players end on it
// (ffmpeg's RTSP demuxer returns end of file, GStreamer's rtspsrc sends end of stream).
std::vector<uint8_t> rtcp_goodbye(uint32_t ssrc, uint64_t ntp, uint32_t rtp_timestamp,
                                  uint32_t packets, uint32_t octets, std::string_view cname);
// The SSRCs that the report blocks of receiver and sender reports in a compound RTCP packet
// describe (the sources the receiver hears); empty when the packet is not RTCP.
std::vector<uint32_t> rtcp_reported_sources(std::span<const uint8_t> packet);

}  // namespace vodgrid::push
