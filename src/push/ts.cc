// The MPEG-TS index push streaming paces and seeks by (ISO/IEC 13818-1): PAT → PMT → the video
// PID, PCR points, random access points. Every read is bounded by its packet: the bytes may be
// hostile (a segment a peer sent us).
#include "push/ts.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

#include <fmt/format.h>

namespace vodgrid::push {
namespace {

constexpr uint16_t null_pid = 0x1fff;
constexpr uint64_t pts_modulus = uint64_t{1} << 33;
constexpr int64_t pcr_period = (int64_t{1} << 33) * 300;  // 27 MHz ticks before a PCR wraps
constexpr double pcr_hz = 27'000'000.0;
constexpr double pts_hz = 90'000.0;
// Bytes of a PES payload looked at for an IDR/IRAP when no random_access_indicator is set: room
// for x264's SEI (its version string) and the parameter sets before the first slice.
constexpr size_t es_probe_bytes = 8 * 1024;

// One 188-byte packet's header fields and where its adaptation field and payload lie.
struct packet {
  const uint8_t* p = nullptr;
  uint16_t pid = null_pid;
  bool unit_start = false;
  bool random_access = false;
  std::optional<int64_t> pcr;           // 27 MHz ticks
  size_t payload_at = ts_packet_bytes;  // == ts_packet_bytes: no payload
};

packet read_packet(const uint8_t* p) {
  packet k;
  k.p = p;
  k.pid = static_cast<uint16_t>(((p[1] & 0x1f) << 8) | p[2]);
  k.unit_start = (p[1] & 0x40) != 0;
  const int control = (p[3] >> 4) & 3;
  size_t at = 4;
  if ((control & 2) != 0) {
    const size_t af_len = p[4];
    at = 5 + af_len;
    if (at > ts_packet_bytes) {
      return k;  // a broken adaptation field: no payload, nothing in it believed
    }
    if (af_len >= 1) {
      k.random_access = (p[5] & 0x40) != 0;
    }
    if (af_len >= 7 && (p[5] & 0x10) != 0) {
      const int64_t base = (int64_t{p[6]} << 25) | (int64_t{p[7]} << 17) | (int64_t{p[8]} << 9) |
                           (int64_t{p[9]} << 1) | (p[10] >> 7);
      const int64_t ext = ((p[10] & 1) << 8) | p[11];
      k.pcr = base * 300 + ext;
    }
  }
  if ((control & 1) != 0 && at < ts_packet_bytes) {
    k.payload_at = at;
  }
  return k;
}

// The section a PSI packet starts (after its pointer_field), bounded by the packet; empty if the
// packet starts none or the section does not fit in it (PAT and PMT of one program always do).
std::string_view psi_section(const packet& k, uint8_t table_id) {
  if (!k.unit_start || k.payload_at >= ts_packet_bytes) {
    return {};
  }
  const size_t start = k.payload_at + 1 + k.p[k.payload_at];
  if (start + 3 > ts_packet_bytes || k.p[start] != table_id) {
    return {};
  }
  const size_t length = ((k.p[start + 1] & 0x0f) << 8) | k.p[start + 2];
  if (start + 3 + length > ts_packet_bytes || length < 9) {
    return {};
  }
  // Without the 4-byte CRC, which we do not check (the segment's SHA-256 guards the bytes).
  return {reinterpret_cast<const char*>(k.p + start), 3 + length - 4};
}

uint8_t byte_at(std::string_view s, size_t i) {
  return static_cast<uint8_t>(s[i]);
}
uint16_t pid_at(std::string_view s, size_t i) {
  return static_cast<uint16_t>(((byte_at(s, i) & 0x1f) << 8) | byte_at(s, i + 1));
}

// The PMT PID of the PAT's first program (program 0 is the network PID), or null_pid.
uint16_t pmt_pid_of(std::string_view pat) {
  for (size_t i = 8; i + 4 <= pat.size(); i += 4) {
    const int program = (byte_at(pat, i) << 8) | byte_at(pat, i + 1);
    if (program != 0) {
      return pid_at(pat, i + 2);
    }
  }
  return null_pid;
}

bool is_video_type(uint8_t stream_type) {
  return stream_type == 0x1b || stream_type == 0x24 || stream_type == 0x02;
}

struct pmt_info {
  uint16_t pcr_pid = null_pid;
  uint16_t video_pid = null_pid;
  uint8_t video_type = 0;
};

pmt_info read_pmt(std::string_view pmt) {
  pmt_info out;
  out.pcr_pid = pid_at(pmt, 8);
  size_t i = 12 + (((byte_at(pmt, 10) & 0x0f) << 8) | byte_at(pmt, 11));
  while (i + 5 <= pmt.size()) {
    const uint8_t type = byte_at(pmt, i);
    const uint16_t pid = pid_at(pmt, i + 1);
    const size_t info_len = ((byte_at(pmt, i + 3) & 0x0f) << 8) | byte_at(pmt, i + 4);
    if (is_video_type(type)) {
      out.video_pid = pid;
      out.video_type = type;
      return out;
    }
    i += 5 + info_len;
  }
  return out;
}

// The PTS of a PES header at the front of `es`, and where its elementary stream data begins.
struct pes_header {
  std::optional<uint64_t> pts;
  size_t data_at = 0;
};

std::optional<pes_header> read_pes(const uint8_t* p, size_t n) {
  if (n < 9 || p[0] != 0 || p[1] != 0 || p[2] != 1) {
    return std::nullopt;
  }
  pes_header h;
  h.data_at = 9 + size_t{p[8]};
  if ((p[7] & 0x80) != 0 && n >= 14) {
    h.pts = (uint64_t{p[9] & 0x0eu} << 29) | (uint64_t{p[10]} << 22) |
            (uint64_t{p[11] & 0xfeu} << 14) | (uint64_t{p[12]} << 7) | (p[13] >> 1);
  }
  return h;
}

// Whether elementary stream bytes begin a random access point: an H.264 IDR or H.265 IRAP picture
// (after access unit delimiters, parameter sets and SEI), or an MPEG-2 sequence or GOP header or
// I picture.
bool starts_random_access(std::string_view es, uint8_t stream_type) {
  for (size_t i = 0; i + 3 < es.size(); ++i) {
    if (es[i] != 0 || es[i + 1] != 0 || es[i + 2] != 1) {
      continue;
    }
    const uint8_t h = byte_at(es, i + 3);
    if (stream_type == 0x1b) {
      const int type = h & 0x1f;
      if (type == 5) {
        return true;
      }
      if (type != 6 && type != 7 && type != 8 && type != 9 && type != 13) {
        return false;
      }
    } else if (stream_type == 0x24) {
      const int type = (h >> 1) & 0x3f;
      if (type >= 16 && type <= 21) {
        return true;
      }
      if (type < 32 || type > 40) {  // VPS, SPS, PPS, AUD, EOS, EOB, FD, SEI
        return false;
      }
    } else {
      if (h == 0xb3 || h == 0xb8) {
        return true;
      }
      if (h == 0x00) {
        return i + 5 < es.size() && ((byte_at(es, i + 5) >> 3) & 7) == 1;
      }
    }
    i += 2;
  }
  return false;
}

// A PES start on the video PID, waiting for its length (the next start) and, when no packet sets
// random_access_indicator, for enough of its payload to look for an IDR.
struct pes_start {
  uint64_t offset = 0;
  bool random_access = false;
  std::optional<uint64_t> pts;
  std::string es;  // up to es_probe_bytes
  uint64_t length = 0;
};

// Signed difference a - b of two 33-bit PTS, taking the shorter way round the wrap.
int64_t pts_delta(uint64_t a, uint64_t b) {
  int64_t d = static_cast<int64_t>((a - b) % pts_modulus);
  if (d > static_cast<int64_t>(pts_modulus / 2)) {
    d -= static_cast<int64_t>(pts_modulus);
  }
  return d;
}

// PCR points with wraps undone; a point earlier than the last kept one (a discontinuity) is
// dropped, so that due_at never goes back.
class pcr_track {
 public:
  void add(uint64_t offset, int64_t pcr, std::vector<ts_index::pcr_point>& out) {
    if (!first_) {
      first_ = pcr;
      last_raw_ = pcr;
      unwrapped_ = 0;
    } else {
      int64_t d = pcr - last_raw_;
      if (d < -pcr_period / 2) {
        d += pcr_period;
      } else if (d > pcr_period / 2) {
        d -= pcr_period;
      }
      last_raw_ = pcr;
      unwrapped_ += d;
    }
    const double s = static_cast<double>(unwrapped_) / pcr_hz;
    if (out.empty() || s >= out.back().seconds) {
      out.push_back({offset, s});
    }
  }

 private:
  std::optional<int64_t> first_;
  int64_t last_raw_ = 0;
  int64_t unwrapped_ = 0;
};

// The state of one scan over the packets.
struct scanner {
  ts_index ix;
  uint16_t pmt_pid = null_pid;
  uint16_t pcr_pid = null_pid;
  uint8_t video_type = 0;
  bool leading_psi = true;
  bool any_random_access = false;
  pcr_track pcrs;
  std::vector<pes_start> starts;

  void psi(const packet& k, uint64_t offset) {
    if (k.pid == 0 && pmt_pid == null_pid) {
      if (auto pat = psi_section(k, 0x00); !pat.empty()) {
        pmt_pid = pmt_pid_of(pat);
      }
    } else if (k.pid == pmt_pid && pmt_pid != null_pid && ix.video_pid == null_pid) {
      if (auto pmt = psi_section(k, 0x02); !pmt.empty()) {
        const pmt_info info = read_pmt(pmt);
        pcr_pid = info.pcr_pid;
        ix.video_pid = info.video_pid;
        video_type = info.video_type;
      }
    }
    // The leading run of PSI/SI packets (PAT, CAT, PMT, SDT and the like): its PAT and PMT are
    // what a decoder joining at a key frame needs first.
    if (leading_psi) {
      if (k.pid == 0 || (k.pid == pmt_pid && pmt_pid != null_pid)) {
        ix.psi_bytes = offset + ts_packet_bytes;
      } else if (k.pid != 1 && (k.pid < 0x10 || k.pid > 0x1f)) {
        leading_psi = false;
      }
    }
  }

  void video(const packet& k, uint64_t offset) {
    if (k.random_access && !any_random_access) {
      any_random_access = true;  // the flag decides from now on: no payload to look into
      for (auto& s : starts) {
        s.es = std::string();
      }
    }
    const uint8_t* pay = k.p + k.payload_at;
    size_t n = k.payload_at < ts_packet_bytes ? ts_packet_bytes - k.payload_at : 0;
    if (k.unit_start) {
      if (!starts.empty()) {
        starts.back().length = offset - starts.back().offset;
      }
      pes_start s;
      s.offset = offset;
      s.random_access = k.random_access;
      auto h = read_pes(pay, n);
      if (h) {
        s.pts = h->pts;
      }
      const size_t skip = h ? std::min(h->data_at, n) : n;
      pay += skip;
      n -= skip;
      starts.push_back(std::move(s));
    }
    if (!any_random_access && !starts.empty() && n > 0 &&
        starts.back().es.size() < es_probe_bytes) {
      auto& es = starts.back().es;
      es.append(reinterpret_cast<const char*>(pay), std::min(n, es_probe_bytes - es.size()));
    }
  }

  void add(const uint8_t* p, uint64_t offset) {
    const packet k = read_packet(p);
    psi(k, offset);
    if (k.pcr && (pcr_pid == null_pid || k.pid == pcr_pid)) {
      pcrs.add(offset, *k.pcr, ix.pcrs);
    }
    if (k.pid == ix.video_pid && ix.video_pid != null_pid) {
      video(k, offset);
    }
  }

  void finish() {
    if (!starts.empty()) {
      starts.back().length = ix.size - starts.back().offset;
    }
    std::optional<uint64_t> first_pts;
    for (const auto& s : starts) {
      if (s.pts) {
        first_pts = s.pts;
        break;
      }
    }
    for (const auto& s : starts) {
      const bool key = any_random_access ? s.random_access : starts_random_access(s.es, video_type);
      if (!key) {
        continue;
      }
      ts_index::keyframe f;
      f.offset = s.offset;
      f.length = s.length;
      if (s.pts && first_pts) {
        f.seconds = static_cast<double>(pts_delta(*s.pts, *first_pts)) / pts_hz;
      }
      ix.keyframes.push_back(f);
    }
  }
};

}  // namespace

result<ts_index> index_ts(std::string_view bytes) {
  if (bytes.size() % ts_packet_bytes != 0) {
    return make_error(errc::invalid_argument,
                      fmt::format("{} bytes are not whole 188-byte TS packets", bytes.size()));
  }
  scanner sc;
  sc.ix.size = bytes.size();
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  for (uint64_t at = 0; at < bytes.size(); at += ts_packet_bytes) {
    if (data[at] != 0x47) {
      return make_error(errc::invalid_argument, fmt::format("no TS sync byte at offset {}", at));
    }
    sc.add(data + at, at);
  }
  sc.finish();
  return std::move(sc.ix);
}

double due_at(const ts_index& ix, uint64_t offset, double duration) {
  if (!(duration > 0) || !std::isfinite(duration) || ix.size == 0) {
    return 0;
  }
  if (offset >= ix.size) {
    return duration;
  }
  // The points (0, 0), the PCRs, (size, duration); the last one at or before `offset` and the next.
  const auto& p = ix.pcrs;
  auto next =
      std::upper_bound(p.begin(), p.end(), offset,
                       [](uint64_t o, const ts_index::pcr_point& q) { return o < q.offset; });
  double x0 = 0;
  double y0 = 0;
  if (next != p.begin()) {
    x0 = static_cast<double>(std::prev(next)->offset);
    y0 = std::prev(next)->seconds;
  }
  double x1 = static_cast<double>(ix.size);
  double y1 = duration;
  if (next != p.end()) {
    x1 = static_cast<double>(next->offset);
    y1 = next->seconds;
  }
  double t = y0;
  if (x1 > x0 && y1 > y0) {
    t = y0 + (y1 - y0) * (static_cast<double>(offset) - x0) / (x1 - x0);
  }
  return std::clamp(t, 0.0, duration);
}

uint64_t offset_for(const ts_index& ix, double seconds) {
  // The latest key frame at or before `seconds`; key frames come in offset order, and their times
  // in that order too unless the stream is broken, so the first of equal times wins.
  const ts_index::keyframe* best = nullptr;
  for (const auto& k : ix.keyframes) {
    if (k.seconds <= seconds && (best == nullptr || k.seconds > best->seconds)) {
      best = &k;
    }
  }
  return best == nullptr ? 0 : best->offset - best->offset % ts_packet_bytes;
}

}  // namespace vodgrid::push
