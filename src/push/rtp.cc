// RTP and RTCP framing (RFC 3550): the fixed header, sender reports with an SDES CNAME, and the
// report blocks of what a receiver sends back. Reads are bounded by the packet: it came off UDP.
#include "push/rtp.h"

namespace vodgrid::push {
namespace {

constexpr uint8_t rtcp_sr = 200;
constexpr uint8_t rtcp_rr = 201;
constexpr uint8_t rtcp_sdes = 202;
constexpr uint8_t rtcp_bye = 203;
constexpr uint8_t sdes_cname = 1;
constexpr size_t report_block_bytes = 24;
constexpr uint64_t ntp_unix_offset_s = 2'208'988'800;  // 1900-01-01 to 1970-01-01

uint16_t be16(std::span<const uint8_t> b, size_t at) {
  return static_cast<uint16_t>((b[at] << 8) | b[at + 1]);
}
uint32_t be32(std::span<const uint8_t> b, size_t at) {
  return (uint32_t{b[at]} << 24) | (uint32_t{b[at + 1]} << 16) | (uint32_t{b[at + 2]} << 8) |
         b[at + 3];
}
void put16(uint8_t* out, uint16_t v) {
  out[0] = static_cast<uint8_t>(v >> 8);
  out[1] = static_cast<uint8_t>(v);
}
void put32(uint8_t* out, uint32_t v) {
  out[0] = static_cast<uint8_t>(v >> 24);
  out[1] = static_cast<uint8_t>(v >> 16);
  out[2] = static_cast<uint8_t>(v >> 8);
  out[3] = static_cast<uint8_t>(v);
}

// Appends an RTCP common header (version 2, no padding) for a packet of `bytes` (a multiple of 4).
void rtcp_header(std::vector<uint8_t>& out, uint8_t count, uint8_t type, size_t bytes) {
  const size_t at = out.size();
  out.resize(at + 4);
  out[at] = static_cast<uint8_t>(0x80 | (count & 0x1f));
  out[at + 1] = type;
  put16(out.data() + at + 2, static_cast<uint16_t>(bytes / 4 - 1));
}

void append32(std::vector<uint8_t>& out, uint32_t v) {
  const size_t at = out.size();
  out.resize(at + 4);
  put32(out.data() + at, v);
}

}  // namespace

void write_rtp_header(std::span<uint8_t, rtp_header_bytes> out, const rtp_header& h) {
  out[0] = 0x80;  // version 2; no padding, extension or CSRC
  out[1] = static_cast<uint8_t>((h.marker ? 0x80 : 0) | (h.payload_type & 0x7f));
  put16(out.data() + 2, h.seq);
  put32(out.data() + 4, h.timestamp);
  put32(out.data() + 8, h.ssrc);
}

std::optional<rtp_packet_view> parse_rtp(std::span<const uint8_t> packet) {
  if (packet.size() < rtp_header_bytes || (packet[0] >> 6) != 2) {
    return std::nullopt;
  }
  rtp_packet_view v;
  v.header.marker = (packet[1] & 0x80) != 0;
  v.header.payload_type = packet[1] & 0x7f;
  v.header.seq = be16(packet, 2);
  v.header.timestamp = be32(packet, 4);
  v.header.ssrc = be32(packet, 8);
  size_t at = rtp_header_bytes + 4 * size_t{packet[0] & 0x0fu};
  if ((packet[0] & 0x10) != 0) {  // header extension: 16-bit profile, 16-bit length in words
    if (at + 4 > packet.size()) {
      return std::nullopt;
    }
    at += 4 + 4 * size_t{be16(packet, at + 2)};
  }
  if (at > packet.size()) {
    return std::nullopt;
  }
  size_t payload = packet.size() - at;
  if ((packet[0] & 0x20) != 0) {  // padding: its count is the last byte
    const size_t pad = packet.back();
    if (pad == 0 || pad > payload) {
      return std::nullopt;
    }
    payload -= pad;
  }
  v.payload_offset = at;
  v.payload_bytes = payload;
  return v;
}

uint64_t ntp_time(int64_t unix_ns) {
  // Floor division, so that an instant before 1970 still gets a fraction in [0, 1).
  int64_t s = unix_ns / 1'000'000'000;
  int64_t ns = unix_ns % 1'000'000'000;
  if (ns < 0) {
    ns += 1'000'000'000;
    s -= 1;
  }
  const uint64_t seconds = static_cast<uint64_t>(s) + ntp_unix_offset_s;  // mod 2^64: NTP eras
  const uint64_t fraction = (static_cast<uint64_t>(ns) << 32) / 1'000'000'000;
  return (seconds << 32) | fraction;
}

std::vector<uint8_t> rtcp_sender_report(uint32_t ssrc, uint64_t ntp, uint32_t rtp_timestamp,
                                        uint32_t packets, uint32_t octets, std::string_view cname) {
  std::vector<uint8_t> out;
  out.reserve(28 + 12 + 256);
  rtcp_header(out, 0, rtcp_sr, 28);
  append32(out, ssrc);
  append32(out, static_cast<uint32_t>(ntp >> 32));
  append32(out, static_cast<uint32_t>(ntp));
  append32(out, rtp_timestamp);
  append32(out, packets);
  append32(out, octets);

  // SDES: one chunk (SSRC, CNAME item, a null item ending the list), padded to a 32-bit word.
  cname = cname.substr(0, 255);
  const size_t chunk = 4 + 2 + cname.size() + 1;
  const size_t bytes = 4 + (chunk + 3) / 4 * 4;
  rtcp_header(out, 1, rtcp_sdes, bytes);
  append32(out, ssrc);
  out.push_back(sdes_cname);
  out.push_back(static_cast<uint8_t>(cname.size()));
  out.insert(out.end(), cname.begin(), cname.end());
  out.resize(out.size() + (bytes - 4 - (chunk - 1)), 0);  // the null item and the padding
  return out;
}

std::vector<uint8_t> rtcp_goodbye(uint32_t ssrc, uint64_t ntp, uint32_t rtp_timestamp,
                                  uint32_t packets, uint32_t octets, std::string_view cname) {
  auto out = rtcp_sender_report(ssrc, ntp, rtp_timestamp, packets, octets, cname);
  rtcp_header(out, 1, rtcp_bye, 8);
  append32(out, ssrc);
  return out;
}

std::vector<uint32_t> rtcp_reported_sources(std::span<const uint8_t> packet) {
  std::vector<uint32_t> sources;
  // RFC 3550 A.2: a compound packet starts with an SR or RR without padding, and its packets'
  // lengths add up to its size; anything else is not RTCP to us.
  if (packet.size() < 8 || (packet[0] & 0xe0) != 0x80 ||
      (packet[1] != rtcp_sr && packet[1] != rtcp_rr)) {
    return {};
  }
  size_t at = 0;
  while (at < packet.size()) {
    if (packet.size() - at < 4 || (packet[at] >> 6) != 2) {
      return {};
    }
    const size_t bytes = 4 * (size_t{be16(packet, at + 2)} + 1);
    if (bytes > packet.size() - at) {
      return {};
    }
    const uint8_t type = packet[at + 1];
    const size_t count = packet[at] & 0x1f;
    size_t blocks_at = 0;
    if (type == rtcp_sr) {
      blocks_at = 28;
    } else if (type == rtcp_rr) {
      blocks_at = 8;
    }
    if (blocks_at != 0) {
      if (blocks_at + count * report_block_bytes > bytes) {
        return {};
      }
      for (size_t i = 0; i < count; ++i) {
        sources.push_back(be32(packet, at + blocks_at + i * report_block_bytes));
      }
    }
    at += bytes;
  }
  return sources;
}

}  // namespace vodgrid::push
