// Unit tests of push streaming's building blocks (src/push): the MPEG-TS index (on synthetic
// streams and on a segment made by the real ffmpeg), RTP/RTCP framing and RTSP messages.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "push/rtp.h"
#include "push/rtsp.h"
#include "push/ts.h"
#include "support/support.h"

namespace vodgrid::push {
namespace {

// ---------------------------------------------------------------------------------------------
// A tiny MPEG-TS writer: PAT, PMT and PES packets with PCRs and random_access_indicator.

uint32_t mpeg_crc32(const std::string& s) {
  uint32_t crc = 0xffffffff;
  for (unsigned char c : s) {
    crc ^= uint32_t{c} << 24;
    for (int i = 0; i < 8; ++i) {
      crc = (crc & 0x80000000) != 0 ? (crc << 1) ^ 0x04c11db7 : crc << 1;
    }
  }
  return crc;
}

std::string u16(unsigned v) {
  return {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)};
}

struct ts_writer {
  std::string out;
  std::array<uint8_t, 8192> cc{};

  // One packet; `af` is the adaptation field's body (flags and what follows), padded with 0xff
  // stuffing so that the packet is 188 bytes.
  void packet(uint16_t pid, bool start, std::string af, bool with_af, std::string payload) {
    std::string p(4, '\0');
    p[0] = 0x47;
    p[1] = static_cast<char>((start ? 0x40 : 0) | ((pid >> 8) & 0x1f));
    p[2] = static_cast<char>(pid & 0xff);
    const size_t room = 184 - payload.size();
    if (with_af || room > 0) {
      // Adaptation field: length byte + body + stuffing fills what the payload leaves.
      std::string body = af;
      if (room >= 1) {
        if (body.empty() && room >= 2) {
          body.push_back('\0');  // flags
        }
        body.resize(room - 1, static_cast<char>(0xff));
      }
      p[3] = static_cast<char>((payload.empty() ? 0x20 : 0x30) | (cc[pid] & 0x0f));
      p.push_back(static_cast<char>(room - 1));
      p += body.substr(0, room - 1);
    } else {
      p[3] = static_cast<char>(0x10 | (cc[pid] & 0x0f));
    }
    if (!payload.empty()) {
      ++cc[pid];
    }
    p += payload;
    EXPECT_EQ(p.size(), 188u);
    out += p;
  }

  void section(uint16_t pid, std::string sec) {
    const uint32_t crc = mpeg_crc32(sec);
    sec += u16(crc >> 16) + u16(crc & 0xffff);
    std::string payload = std::string(1, '\0') + sec;  // pointer_field 0
    payload.resize(184, static_cast<char>(0xff));
    packet(pid, true, "", false, payload);
  }

  void pat(uint16_t pmt_pid) {
    std::string s;
    s += '\0';  // table_id
    std::string body = u16(1) + std::string("\xc1\x00\x00", 3) + u16(1) + u16(0xe000 | pmt_pid);
    s += u16(0xb000 | (body.size() + 4));
    s += body;
    section(0, s);
  }

  void pmt(uint16_t pmt_pid, uint16_t pcr_pid, uint8_t video_type, uint16_t video_pid,
           uint16_t audio_pid = 0) {
    std::string body =
        u16(1) + std::string("\xc1\x00\x00", 3) + u16(0xe000 | pcr_pid) + u16(0xf000);
    if (audio_pid != 0) {
      body += std::string(1, '\x0f') + u16(0xe000 | audio_pid) + u16(0xf000);
    }
    body += std::string(1, static_cast<char>(video_type)) + u16(0xe000 | video_pid) + u16(0xf000);
    std::string s(1, '\x02');
    s += u16(0xb000 | (body.size() + 4));
    s += body;
    section(pmt_pid, s);
  }

  static std::string pts_bytes(uint64_t pts) {
    std::string b(5, '\0');
    b[0] = static_cast<char>(0x21 | ((pts >> 29) & 0x0e));
    b[1] = static_cast<char>(pts >> 22);
    b[2] = static_cast<char>(0x01 | ((pts >> 14) & 0xfe));
    b[3] = static_cast<char>(pts >> 7);
    b[4] = static_cast<char>(0x01 | ((pts << 1) & 0xfe));
    return b;
  }

  static std::string pcr_bytes(uint64_t pcr27) {
    const uint64_t base = pcr27 / 300;
    const uint64_t ext = pcr27 % 300;
    std::string b(6, '\0');
    b[0] = static_cast<char>(base >> 25);
    b[1] = static_cast<char>(base >> 17);
    b[2] = static_cast<char>(base >> 9);
    b[3] = static_cast<char>(base >> 1);
    b[4] = static_cast<char>(((base & 1) << 7) | 0x7e | ((ext >> 8) & 1));
    b[5] = static_cast<char>(ext & 0xff);
    return b;
  }

  // A PES of `es` on `pid`; its first packet carries the flags and PCR asked for. Returns the
  // offset of that first packet.
  size_t pes(uint16_t pid, uint64_t pts, const std::string& es, bool rai,
             std::optional<uint64_t> pcr27 = std::nullopt) {
    const size_t at = out.size();
    std::string data = std::string("\x00\x00\x01\xe0\x00\x00\x80\x80\x05", 9) + pts_bytes(pts) + es;
    std::string af;
    if (rai || pcr27) {
      af.push_back(static_cast<char>((rai ? 0x40 : 0) | (pcr27 ? 0x10 : 0)));
      if (pcr27) {
        af += pcr_bytes(*pcr27);
      }
    }
    bool first = true;
    size_t pos = 0;
    while (pos < data.size() || first) {
      const size_t header = first && !af.empty() ? 2 + af.size() : 0;
      const size_t take = std::min(data.size() - pos, 184 - header);
      packet(pid, first, first ? af : "", first && !af.empty(), data.substr(pos, take));
      pos += take;
      first = false;
    }
    return at;
  }

  void null_packet() { packet(0x1fff, false, "", false, std::string(184, '\xff')); }
};

std::string h264_idr() {
  // AUD, SPS, PPS, SEI, then an IDR slice.
  return std::string("\x00\x00\x00\x01\x09\xf0", 6) + std::string("\x00\x00\x00\x01\x67\x42", 6) +
         std::string(20, 'S') + std::string("\x00\x00\x00\x01\x68\xce", 6) +
         std::string("\x00\x00\x01\x06\x05", 5) + std::string(400, 'E') +
         std::string("\x00\x00\x01\x65\x88", 5) + std::string(300, 'I');
}
std::string h264_p() {
  return std::string("\x00\x00\x00\x01\x09\x30", 6) + std::string("\x00\x00\x01\x41\x9a", 5) +
         std::string(250, 'P');
}

constexpr uint16_t pmt_pid = 0x1000;
constexpr uint16_t video_pid = 0x100;
constexpr uint16_t audio_pid = 0x101;

// A segment of `gops` GOPs of `frames` frames at 25 fps, starting at PTS `pts0` and PCR `pcr0`;
// every key frame has RAI (unless `rai` is false) and a PCR, audio PES between frames with RAI set
// (as ffmpeg does) that must not count. Records the key frames' offsets.
struct synthetic {
  ts_writer w;
  std::vector<size_t> key_offsets;
  std::vector<size_t> video_starts;
  std::vector<size_t> pcr_offsets;
};

synthetic make_segment(int gops, int frames, bool rai = true, uint64_t pts0 = 900'000,
                       uint64_t pcr0 = 800'000 * 300) {
  synthetic s;
  s.w.pat(pmt_pid);
  s.w.pmt(pmt_pid, video_pid, 0x1b, video_pid, audio_pid);
  int n = 0;
  for (int g = 0; g < gops; ++g) {
    for (int f = 0; f < frames; ++f, ++n) {
      const uint64_t pts = (pts0 + uint64_t(n) * 3600) % (uint64_t{1} << 33);
      const bool key = f == 0;
      std::optional<uint64_t> pcr;
      if (key || f % 3 == 0) {
        pcr = (pcr0 + uint64_t(n) * 3600 * 300) % ((uint64_t{1} << 33) * 300);
      }
      const size_t at = s.w.pes(video_pid, pts, key ? h264_idr() : h264_p(), key && rai, pcr);
      s.video_starts.push_back(at);
      if (pcr) {
        s.pcr_offsets.push_back(at);
      }
      if (key) {
        s.key_offsets.push_back(at);
      }
      s.w.pes(audio_pid, pts, std::string(200, 'A'), true);
    }
  }
  return s;
}

TEST(TsIndex, FindsVideoPidPsiKeyFramesAndPcrs) {
  auto s = make_segment(3, 5);
  auto ix = index_ts(s.w.out);
  ASSERT_TRUE(ix) << ix.err().detail;
  EXPECT_EQ(ix->size, s.w.out.size());
  EXPECT_EQ(ix->video_pid, video_pid);
  EXPECT_EQ(ix->psi_bytes, 2 * ts_packet_bytes);
  ASSERT_EQ(ix->keyframes.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(ix->keyframes[i].offset, s.key_offsets[i]);
    EXPECT_NEAR(ix->keyframes[i].seconds, 5 * 0.04 * double(i), 1e-9);
    // Up to the next PES start on the video PID: the frame after the key frame.
    EXPECT_EQ(ix->keyframes[i].length, s.video_starts[5 * i + 1] - s.key_offsets[i]);
  }
  ASSERT_EQ(ix->pcrs.size(), s.pcr_offsets.size());
  for (size_t i = 0; i < ix->pcrs.size(); ++i) {
    EXPECT_EQ(ix->pcrs[i].offset, s.pcr_offsets[i]);
  }
  EXPECT_DOUBLE_EQ(ix->pcrs[0].seconds, 0);
  EXPECT_NEAR(ix->pcrs[1].seconds, 0.12, 1e-9);           // frame 3
  EXPECT_NEAR(ix->pcrs.back().seconds, 0.04 * 13, 1e-9);  // frame 13
}

TEST(TsIndex, LastKeyFrameRunsToTheSegmentsEnd) {
  auto s = make_segment(2, 1);
  auto ix = index_ts(s.w.out);
  ASSERT_TRUE(ix);
  ASSERT_EQ(ix->keyframes.size(), 2u);
  EXPECT_EQ(ix->keyframes[1].offset + ix->keyframes[1].length, s.w.out.size());
}

TEST(TsIndex, WithoutRandomAccessIndicatorFindsH264Idr) {
  auto s = make_segment(3, 4, /*rai=*/false);
  auto ix = index_ts(s.w.out);
  ASSERT_TRUE(ix);
  ASSERT_EQ(ix->keyframes.size(), 3u);  // not the P frames, nor the audio
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(ix->keyframes[i].offset, s.key_offsets[i]);
  }
}

TEST(TsIndex, RandomAccessIndicatorAnywhereOnVideoOverridesTheIdrScan) {
  // One key frame flagged: the other IDRs (unflagged) are not key frames, because the stream
  // speaks RAI.
  ts_writer w;
  w.pat(pmt_pid);
  w.pmt(pmt_pid, video_pid, 0x1b, video_pid);
  const size_t a = w.pes(video_pid, 0, h264_idr(), true, 0);
  w.pes(video_pid, 3600, h264_idr(), false);
  auto ix = index_ts(w.out);
  ASSERT_TRUE(ix);
  ASSERT_EQ(ix->keyframes.size(), 1u);
  EXPECT_EQ(ix->keyframes[0].offset, a);
}

TEST(TsIndex, FindsH265Irap) {
  ts_writer w;
  w.pat(pmt_pid);
  w.pmt(pmt_pid, video_pid, 0x24, video_pid);
  // AUD (35), VPS (32), SPS (33), PPS (34), prefix SEI (39), then CRA (21) / TRAIL_R (1) /
  // IDR_N_LP.
  const std::string params =
      std::string("\x00\x00\x00\x01\x46\x01\x50", 7) + std::string("\x00\x00\x01\x40\x01\x0c", 6) +
      std::string("\x00\x00\x01\x42\x01\x01", 6) + std::string("\x00\x00\x01\x44\x01\xc1", 6) +
      std::string("\x00\x00\x01\x4e\x01\x05", 6) + std::string(50, 'x');
  const size_t cra =
      w.pes(video_pid, 0, params + std::string("\x00\x00\x01\x2a\x01\xaf", 6), false);
  w.pes(video_pid, 3600, std::string("\x00\x00\x01\x02\x01\xd0", 6) + std::string(90, 'p'), false);
  const size_t idr = w.pes(video_pid, 7200, std::string("\x00\x00\x01\x28\x01\xaf", 6), false);
  auto ix = index_ts(w.out);
  ASSERT_TRUE(ix);
  EXPECT_EQ(ix->video_pid, video_pid);
  ASSERT_EQ(ix->keyframes.size(), 2u);
  EXPECT_EQ(ix->keyframes[0].offset, cra);
  EXPECT_EQ(ix->keyframes[1].offset, idr);
  EXPECT_NEAR(ix->keyframes[1].seconds, 0.08, 1e-9);
}

TEST(TsIndex, PcrAndPtsWrapsAreUndone) {
  // PTS and PCR start 0.2 s before their 33-bit wrap.
  const uint64_t pts0 = (uint64_t{1} << 33) - 18'000;
  const uint64_t pcr0 = ((uint64_t{1} << 33) - 18'000) * 300;
  auto s = make_segment(4, 3, true, pts0, pcr0);
  auto ix = index_ts(s.w.out);
  ASSERT_TRUE(ix);
  ASSERT_EQ(ix->keyframes.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_NEAR(ix->keyframes[i].seconds, 0.12 * double(i), 1e-9);
  }
  for (size_t i = 1; i < ix->pcrs.size(); ++i) {
    EXPECT_NEAR(ix->pcrs[i].seconds - ix->pcrs[i - 1].seconds, 0.12, 1e-9);
  }
}

TEST(TsIndex, PsiBytesCountsOnlyTheLeadingPatAndPmt) {
  ts_writer w;
  w.packet(0x11, true, "", false, std::string(184, '\xff'));  // an SDT first, as ffmpeg writes
  w.pat(pmt_pid);
  w.pmt(pmt_pid, video_pid, 0x1b, video_pid);
  w.pes(video_pid, 0, h264_idr(), true, 0);
  w.pat(pmt_pid);  // repeated later: not part of the leading run
  auto ix = index_ts(w.out);
  ASSERT_TRUE(ix);
  EXPECT_EQ(ix->psi_bytes, 3 * ts_packet_bytes);

  ts_writer bare;
  bare.pes(video_pid, 0, h264_idr(), true, 0);
  bare.pat(pmt_pid);
  auto none = index_ts(bare.out);
  ASSERT_TRUE(none);
  EXPECT_EQ(none->psi_bytes, 0u);
  EXPECT_EQ(none->video_pid, 0x1fff);  // the PMT never came
  EXPECT_TRUE(none->keyframes.empty());
}

TEST(TsIndex, RefusesWhatIsNotWholePackets) {
  auto s = make_segment(1, 2);
  EXPECT_FALSE(index_ts(std::string_view(s.w.out).substr(0, s.w.out.size() - 1)));
  std::string bad = s.w.out;
  bad[188 * 3] = 0x46;
  auto r = index_ts(bad);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::invalid_argument);
  EXPECT_NE(r.err().detail.find("564"), std::string::npos) << r.err().detail;
  auto empty = index_ts("");
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->size, 0u);
}

TEST(TsIndex, HostilePacketsAreReadWithinBounds) {
  // Random packets with the sync byte, and PSI whose lengths point past the packet: under ASan a
  // read out of bounds fails the test.
  std::mt19937 rng(12);
  std::string bytes;
  ts_writer w;
  w.pat(pmt_pid);
  bytes += w.out;
  for (int i = 0; i < 4000; ++i) {
    std::string p(188, '\0');
    for (auto& c : p) {
      c = static_cast<char>(rng());
    }
    p[0] = 0x47;
    const int pick = i % 4;
    if (pick == 0) {
      p[1] = 0x40;
      p[2] = 0x00;  // PAT start
    } else if (pick == 1) {
      p[1] = static_cast<char>(0x40 | (pmt_pid >> 8));
      p[2] = static_cast<char>(pmt_pid & 0xff);
      p[4] = 0;
      p[5] = 0x02;  // a PMT with random lengths
    } else if (pick == 2) {
      p[1] = static_cast<char>(0x40 | (video_pid >> 8));
      p[2] = static_cast<char>(video_pid & 0xff);
    }
    bytes += p;
  }
  auto ix = index_ts(bytes);
  ASSERT_TRUE(ix);
  for (const auto& k : ix->keyframes) {
    EXPECT_LE(k.offset + k.length, bytes.size());
  }
  double last = 0;
  for (uint64_t o = 0; o <= bytes.size(); o += 188 * 7) {
    const double t = due_at(*ix, o, 10);
    EXPECT_GE(t, last);
    EXPECT_LE(t, 10);
    last = t;
  }
}

TEST(TsIndex, DueAtInterpolatesBetweenPcrsAndEndsAtTheDuration) {
  ts_index ix;
  ix.size = 188 * 100;
  ix.pcrs = {{188 * 10, 0.0}, {188 * 50, 0.4}, {188 * 90, 0.8}};
  EXPECT_DOUBLE_EQ(due_at(ix, 0, 1.0), 0);
  EXPECT_DOUBLE_EQ(due_at(ix, 188 * 10, 1.0), 0);
  EXPECT_NEAR(due_at(ix, 188 * 30, 1.0), 0.2, 1e-12);
  EXPECT_NEAR(due_at(ix, 188 * 50, 1.0), 0.4, 1e-12);
  EXPECT_NEAR(due_at(ix, 188 * 95, 1.0), 0.9, 1e-12);  // from (90, 0.8) to (size, 1.0)
  EXPECT_DOUBLE_EQ(due_at(ix, 188 * 100, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(due_at(ix, 188 * 1000, 1.0), 1.0);
  // A PCR past the manifest's duration is clamped, and nothing goes back.
  ix.pcrs.push_back({188 * 95, 1.3});
  double last = 0;
  for (uint64_t o = 0; o <= ix.size; o += 188) {
    const double t = due_at(ix, o, 1.0);
    EXPECT_GE(t, last);
    EXPECT_LE(t, 1.0);
    last = t;
  }
  EXPECT_DOUBLE_EQ(last, 1.0);
  // No PCRs: linear in bytes.
  ts_index flat;
  flat.size = 1000;
  EXPECT_DOUBLE_EQ(due_at(flat, 250, 2.0), 0.5);
}

TEST(TsIndex, OffsetForPicksTheLastKeyFrameAtOrBefore) {
  ts_index ix;
  ix.size = 188 * 100;
  ix.keyframes = {{188 * 2, 188, 0.0}, {188 * 40, 188, 1.0}, {188 * 80, 188, 2.0}};
  EXPECT_EQ(offset_for(ix, 0.0), 188u * 2);
  EXPECT_EQ(offset_for(ix, 0.99), 188u * 2);
  EXPECT_EQ(offset_for(ix, 1.0), 188u * 40);
  EXPECT_EQ(offset_for(ix, 5.0), 188u * 80);
  EXPECT_EQ(offset_for(ix, -1.0), 0u);
  EXPECT_EQ(offset_for(ts_index{}, 3.0), 0u);
}

// ---------------------------------------------------------------------------------------------
// The index of segments made by the real ffmpeg (libx264, one GOP per second).

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class FfmpegSegments : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::temp_dir();
    auto playlist = test::make_sample(dir_->path(), 4, 1);
    std::istringstream in(read_file(playlist));
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("#EXTINF:", 0) == 0) {
        durations_.push_back(std::stod(line.substr(8)));
      } else if (!line.empty() && line[0] != '#') {
        segments_.push_back(read_file(dir_->path() / line));
      }
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static inline test::temp_dir* dir_ = nullptr;
  static inline std::vector<std::string> segments_;
  static inline std::vector<double> durations_;
};

TEST_F(FfmpegSegments, EachSegmentHasOneKeyFrameAndIncreasingPcrs) {
  ASSERT_EQ(segments_.size(), 4u);
  ASSERT_EQ(durations_.size(), 4u);
  for (size_t n = 0; n < segments_.size(); ++n) {
    const auto& seg = segments_[n];
    auto ix = index_ts(seg);
    ASSERT_TRUE(ix) << ix.err().detail;
    EXPECT_NE(ix->video_pid, 0x1fff);
    EXPECT_GE(ix->psi_bytes, 2 * ts_packet_bytes);
    ASSERT_EQ(ix->keyframes.size(), 1u) << "segment " << n;
    EXPECT_EQ(ix->keyframes[0].offset % ts_packet_bytes, 0u);
    EXPECT_GE(ix->keyframes[0].offset, ix->psi_bytes);
    EXPECT_NEAR(ix->keyframes[0].seconds, 0, 1e-9);
    ASSERT_GE(ix->pcrs.size(), 5u);
    for (size_t i = 1; i < ix->pcrs.size(); ++i) {
      EXPECT_GT(ix->pcrs[i].offset, ix->pcrs[i - 1].offset);
      EXPECT_GT(ix->pcrs[i].seconds, ix->pcrs[i - 1].seconds);
    }
    EXPECT_LT(ix->pcrs.back().seconds, durations_[n] + 0.1);
    double last = 0;
    for (uint64_t o = 0; o < seg.size(); o += datagram_payload_bytes) {
      const double t = due_at(*ix, o, durations_[n]);
      EXPECT_GE(t, last);
      last = t;
    }
    EXPECT_DOUBLE_EQ(due_at(*ix, seg.size(), durations_[n]), durations_[n]);
  }
}

TEST_F(FfmpegSegments, TheJoinedStreamHasOneKeyFramePerGop) {
  std::string all;
  for (const auto& s : segments_) {
    all += s;
  }
  auto ix = index_ts(all);
  ASSERT_TRUE(ix);
  ASSERT_EQ(ix->keyframes.size(), segments_.size());
  uint64_t at = 0;
  for (size_t n = 0; n < segments_.size(); ++n) {
    EXPECT_EQ(ix->keyframes[n].offset, at + index_ts(segments_[n])->keyframes[0].offset);
    EXPECT_NEAR(ix->keyframes[n].seconds, double(n), 0.01);
    at += segments_[n].size();
  }
  EXPECT_EQ(offset_for(*ix, 2.5), ix->keyframes[2].offset);
  for (size_t i = 1; i < ix->pcrs.size(); ++i) {
    EXPECT_GT(ix->pcrs[i].seconds, ix->pcrs[i - 1].seconds);
  }
}

TEST_F(FfmpegSegments, WithoutRandomAccessIndicatorsTheIdrIsFound) {
  // Clear every RAI: the index must find the same key frame from the x264 bitstream itself
  // (AUD, SPS, PPS, a long SEI, then the IDR).
  for (const auto& seg : segments_) {
    std::string bare = seg;
    for (size_t at = 0; at + 188 <= bare.size(); at += 188) {
      const auto control = (static_cast<uint8_t>(bare[at + 3]) >> 4) & 3;
      if ((control & 2) != 0 && static_cast<uint8_t>(bare[at + 4]) > 0) {
        bare[at + 5] = static_cast<char>(bare[at + 5] & ~0x40);
      }
    }
    auto with = index_ts(seg);
    auto without = index_ts(bare);
    ASSERT_TRUE(with && without);
    ASSERT_EQ(without->keyframes.size(), 1u);
    EXPECT_EQ(without->keyframes[0].offset, with->keyframes[0].offset);
    EXPECT_EQ(without->keyframes[0].length, with->keyframes[0].length);
  }
}

// ---------------------------------------------------------------------------------------------
// RTP and RTCP.

std::vector<uint8_t> bytes_of(std::initializer_list<int> v) {
  std::vector<uint8_t> out;
  for (int b : v) {
    out.push_back(static_cast<uint8_t>(b));
  }
  return out;
}

TEST(Rtp, HeaderIsWrittenBigEndianAndParsesBack) {
  std::array<uint8_t, rtp_header_bytes> buf{};
  rtp_header h;
  h.seq = 0x1234;
  h.timestamp = 0xdeadbeef;
  h.ssrc = 0x01020304;
  h.marker = true;
  write_rtp_header(buf, h);
  EXPECT_EQ(std::vector<uint8_t>(buf.begin(), buf.end()),
            bytes_of({0x80, 0x80 | 33, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4}));
  std::vector<uint8_t> packet(buf.begin(), buf.end());
  packet.resize(rtp_header_bytes + datagram_payload_bytes, 0x47);
  auto v = parse_rtp(packet);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->header.seq, 0x1234);
  EXPECT_EQ(v->header.timestamp, 0xdeadbeefu);
  EXPECT_EQ(v->header.ssrc, 0x01020304u);
  EXPECT_EQ(v->header.payload_type, 33);
  EXPECT_TRUE(v->header.marker);
  EXPECT_EQ(v->payload_offset, 12u);
  EXPECT_EQ(v->payload_bytes, datagram_payload_bytes);
}

TEST(Rtp, CsrcsExtensionAndPaddingAreSkipped) {
  // V=2, P=1, X=1, CC=2; two CSRCs; extension of 1 word; 4 payload bytes; 3 bytes of padding.
  auto p = bytes_of({0xb2, 33, 0,    1,    0, 0, 0, 2, 0, 0, 0,    3, 9, 9, 9, 9, 8, 8,
                     8,    8,  0xbe, 0xde, 0, 1, 7, 7, 7, 7, 0x47, 1, 2, 3, 0, 0, 3});
  auto v = parse_rtp(p);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->payload_offset, 28u);
  EXPECT_EQ(v->payload_bytes, 4u);
  EXPECT_EQ(p[v->payload_offset], 0x47);
}

TEST(Rtp, MalformedPacketsAreRefused) {
  EXPECT_FALSE(parse_rtp(bytes_of({0x80, 33, 0, 1, 0, 0, 0, 2, 0, 0, 0})));     // 11 bytes
  EXPECT_FALSE(parse_rtp(bytes_of({0x40, 33, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3})));  // version 1
  EXPECT_FALSE(parse_rtp(bytes_of({0x81, 33, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3})));  // CSRC missing
  EXPECT_FALSE(parse_rtp(bytes_of({0x90, 33, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xbe, 0xde, 0, 9})));
  EXPECT_FALSE(parse_rtp(bytes_of({0xa0, 33, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 1, 5})));  // pad 5 > 2
  EXPECT_FALSE(parse_rtp(bytes_of({0xa0, 33, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 1, 0})));  // pad 0
}

TEST(Rtp, NtpTimeHasTheNineteenHundredEpochAndA32BitFraction) {
  EXPECT_EQ(ntp_time(0), uint64_t{2'208'988'800} << 32);
  EXPECT_EQ(ntp_time(1'500'000'000), ((uint64_t{2'208'988'801}) << 32) | 0x80000000u);
  // 2024-01-01T00:00:00.25Z
  EXPECT_EQ(ntp_time(int64_t{1'704'067'200} * 1'000'000'000 + 250'000'000),
            ((uint64_t{1'704'067'200} + 2'208'988'800) << 32) | 0x40000000u);
  EXPECT_EQ(ntp_time(-500'000'000), ((uint64_t{2'208'988'799}) << 32) | 0x80000000u);
}

TEST(Rtcp, SenderReportWithCnameIsWordAligned) {
  for (size_t len : {0, 1, 2, 3, 4, 5, 13, 300}) {
    const std::string cname(len, 'c');
    auto p = rtcp_sender_report(0xa1b2c3d4, 0x0102030405060708, 90'000, 7, 7 * 1316, cname);
    ASSERT_EQ(p.size() % 4, 0u) << len;
    // SR: V=2, RC=0, PT=200, length 6 words - 1.
    ASSERT_GE(p.size(), 28u + 12u);
    EXPECT_EQ(p[0], 0x80);
    EXPECT_EQ(p[1], 200);
    EXPECT_EQ((p[2] << 8) | p[3], 6);
    EXPECT_EQ(p[4], 0xa1);
    EXPECT_EQ(p[8], 0x01);   // NTP, most significant word first
    EXPECT_EQ(p[15], 0x08);  // ... least significant byte last
    EXPECT_EQ((p[18] << 8) | p[19], 90'000 & 0xffff);
    EXPECT_EQ(p[23], 7);
    // SDES: SC=1, PT=202, its length covers the rest.
    EXPECT_EQ(p[28], 0x81);
    EXPECT_EQ(p[29], 202);
    EXPECT_EQ(28 + 4 * (((p[30] << 8) | p[31]) + 1), static_cast<int>(p.size()));
    EXPECT_EQ(p[32], 0xa1);
    EXPECT_EQ(p[36], 1);  // CNAME
    const size_t n = std::min<size_t>(len, 255);
    EXPECT_EQ(p[37], n);
    EXPECT_EQ(p[38 + n], 0);  // the null item ends the list
    // Our own report describes no one.
    EXPECT_TRUE(rtcp_reported_sources(p).empty());
  }
}

TEST(Rtcp, GoodbyeIsTheSenderReportThenAByeOfTheSource) {
  auto sr = rtcp_sender_report(0xa1b2c3d4, 1, 2, 3, 4, "vodgrid");
  auto p = rtcp_goodbye(0xa1b2c3d4, 1, 2, 3, 4, "vodgrid");
  ASSERT_EQ(p.size(), sr.size() + 8);
  EXPECT_TRUE(std::equal(sr.begin(), sr.end(), p.begin()));
  auto* bye = p.data() + sr.size();
  EXPECT_EQ(bye[0], 0x81);  // V=2, SC=1
  EXPECT_EQ(bye[1], 203);
  EXPECT_EQ((bye[2] << 8) | bye[3], 1);  // one word after the header
  EXPECT_EQ(bye[4], 0xa1);
  EXPECT_EQ(bye[7], 0xd4);
}

TEST(Rtcp, ReportedSourcesOfReceiverAndSenderReports) {
  // RR with two report blocks, then an SDES.
  std::vector<uint8_t> rr = bytes_of({0x82, 201, 0, 13, 0, 0, 0, 9});
  for (uint32_t ssrc : {0x11223344u, 0x55667788u}) {
    std::vector<uint8_t> block(24, 0);
    block[0] = static_cast<uint8_t>(ssrc >> 24);
    block[1] = static_cast<uint8_t>(ssrc >> 16);
    block[2] = static_cast<uint8_t>(ssrc >> 8);
    block[3] = static_cast<uint8_t>(ssrc);
    rr.insert(rr.end(), block.begin(), block.end());
  }
  auto sdes = bytes_of({0x81, 202, 0, 2, 0, 0, 0, 9, 1, 1, 'x', 0});
  std::vector<uint8_t> compound = rr;
  compound.insert(compound.end(), sdes.begin(), sdes.end());
  EXPECT_EQ(rtcp_reported_sources(compound), (std::vector<uint32_t>{0x11223344u, 0x55667788u}));

  // An SR whose one block is after the 20 bytes of sender info.
  auto sr = rtcp_sender_report(9, 0, 0, 0, 0, "x");
  sr[0] = 0x81;
  sr[3] = 12;
  std::vector<uint8_t> block(24, 0);
  block[3] = 0x42;
  sr.insert(sr.begin() + 28, block.begin(), block.end());
  EXPECT_EQ(rtcp_reported_sources(sr), (std::vector<uint32_t>{0x42u}));
}

TEST(Rtcp, WhatIsNotRtcpReportsNoSource) {
  std::vector<uint8_t> rr = bytes_of({0x81, 201, 0, 7, 0, 0, 0, 9, 0, 0, 0, 1});
  rr.resize(32, 0);
  EXPECT_EQ(rtcp_reported_sources(rr).size(), 1u);
  auto truncated = rr;
  truncated.pop_back();
  EXPECT_TRUE(rtcp_reported_sources(truncated).empty());
  auto too_many_blocks = rr;
  too_many_blocks[0] = 0x82;  // two blocks claimed, one there
  EXPECT_TRUE(rtcp_reported_sources(too_many_blocks).empty());
  auto rtp = rr;
  rtp[1] = 33;
  EXPECT_TRUE(rtcp_reported_sources(rtp).empty());
  auto sdes_first = rr;
  sdes_first[1] = 202;
  EXPECT_TRUE(rtcp_reported_sources(sdes_first).empty());
  EXPECT_TRUE(rtcp_reported_sources({}).empty());
}

// ---------------------------------------------------------------------------------------------
// RTSP messages: the requests ffmpeg 5.1 and GStreamer 1.22 send (as captured from them), and each
// kind of malformed input.

constexpr std::string_view ffmpeg_options =
    "OPTIONS rtsp://127.0.0.1:8554/v1/programs/p/?token=T RTSP/1.0\r\n"
    "CSeq: 1\r\n"
    "User-Agent: Lavf59.27.100\r\n"
    "\r\n";
constexpr std::string_view ffmpeg_describe =
    "DESCRIBE rtsp://127.0.0.1:8554/v1/programs/p/?token=T RTSP/1.0\r\n"
    "Accept: application/sdp\r\n"
    "CSeq: 2\r\n"
    "User-Agent: Lavf59.27.100\r\n"
    "\r\n";
constexpr std::string_view ffmpeg_setup =
    "SETUP rtsp://127.0.0.1:8554/v1/programs/p/track0 RTSP/1.0\r\n"
    "Transport: RTP/AVP/UDP;unicast;client_port=5000-5001\r\n"
    "CSeq: 3\r\n"
    "User-Agent: Lavf59.27.100\r\n"
    "\r\n";
constexpr std::string_view ffmpeg_play =
    "PLAY rtsp://127.0.0.1:8554/v1/programs/p/ RTSP/1.0\r\n"
    "Range: npt=0.000-\r\n"
    "Scale: 4\r\n"
    "CSeq: 4\r\n"
    "User-Agent: Lavf59.27.100\r\n"
    "Session: 12345678\r\n"
    "\r\n";
constexpr std::string_view ffmpeg_teardown =
    "TEARDOWN rtsp://127.0.0.1:8554/v1/programs/p/ RTSP/1.0\r\n"
    "CSeq: 5\r\n"
    "User-Agent: Lavf59.27.100\r\n"
    "Session: 12345678\r\n"
    "\r\n";
constexpr std::string_view gstreamer_setup =
    "SETUP rtsp://127.0.0.1:8554/v1/programs/p/track0 RTSP/1.0\r\n"
    "CSeq: 3\r\n"
    "User-Agent: GStreamer/1.22.0\r\n"
    "Transport: RTP/AVP/UDP;unicast;client_port=37408-37409,RTP/AVP/UDP;multicast,RTP/AVP/TCP\r\n"
    "Date: Sun, 06 Dec 2026 08:37:36 GMT\r\n"
    "\r\n";
constexpr std::string_view gstreamer_play =
    "PLAY rtsp://127.0.0.1:8554/v1/programs/p/ RTSP/1.0\r\n"
    "CSeq: 4\r\n"
    "User-Agent: GStreamer/1.22.0\r\n"
    "Range: npt=0-8\r\n"
    "Session: 12345678\r\n"
    "Date: Sun, 06 Dec 2026 08:37:36 GMT\r\n"
    "\r\n";

rtsp_request parsed(std::string_view text) {
  rtsp_request r;
  auto o = parse_request(text, r);
  EXPECT_EQ(o.state, parse_state::complete) << o.why << "\n" << text;
  EXPECT_EQ(o.consumed, text.size());
  return r;
}

TEST(RtspMessage, FfmpegsRequestsParse) {
  auto options = parsed(ffmpeg_options);
  EXPECT_EQ(options.method, "OPTIONS");
  EXPECT_EQ(options.uri, "rtsp://127.0.0.1:8554/v1/programs/p/?token=T");
  EXPECT_EQ(options.cseq, 1u);
  EXPECT_EQ(options.header("user-agent"), "Lavf59.27.100");
  EXPECT_TRUE(options.body.empty());

  auto describe = parsed(ffmpeg_describe);
  EXPECT_EQ(describe.method, "DESCRIBE");
  EXPECT_EQ(describe.cseq, 2u);
  EXPECT_EQ(describe.header("Accept"), "application/sdp");
  EXPECT_EQ(describe.header("CSeq"), "");  // held in cseq, not among the headers

  auto setup = parsed(ffmpeg_setup);
  EXPECT_EQ(setup.method, "SETUP");
  EXPECT_EQ(setup.uri, "rtsp://127.0.0.1:8554/v1/programs/p/track0");
  auto t = parse_transport(setup.header("Transport"));
  ASSERT_TRUE(t) << t.err().detail;
  EXPECT_EQ(t->client_rtp, 5000);
  EXPECT_EQ(t->client_rtcp, 5001);
  EXPECT_EQ(t->destination, "");

  auto play = parsed(ffmpeg_play);
  EXPECT_EQ(play.method, "PLAY");
  EXPECT_EQ(play.cseq, 4u);
  auto range = parse_range(play.header("Range"));
  ASSERT_TRUE(range);
  EXPECT_EQ(range->start, 0.0);
  EXPECT_FALSE(range->end);
  auto scale = parse_scale(play.header("scale"));
  ASSERT_TRUE(scale);
  EXPECT_EQ(*scale, 4.0);
  EXPECT_EQ(session_id(play.header("Session")), "12345678");

  auto teardown = parsed(ffmpeg_teardown);
  EXPECT_EQ(teardown.method, "TEARDOWN");
  EXPECT_EQ(teardown.cseq, 5u);
  EXPECT_EQ(session_id(teardown.header("SESSION")), "12345678");
}

TEST(RtspMessage, GstreamersRequestsParseAndItsFirstUsableTransportIsPicked) {
  auto setup = parsed(gstreamer_setup);
  EXPECT_EQ(setup.cseq, 3u);
  EXPECT_EQ(setup.header("Date"), "Sun, 06 Dec 2026 08:37:36 GMT");
  auto t = parse_transport(setup.header("Transport"));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->client_rtp, 37408);
  EXPECT_EQ(t->client_rtcp, 37409);

  auto play = parsed(gstreamer_play);
  auto range = parse_range(play.header("Range"));
  ASSERT_TRUE(range);
  EXPECT_EQ(range->start, 0.0);
  EXPECT_EQ(range->end, 8.0);
}

TEST(RtspMessage, PipelinedRequestsAreTakenOneAtATime) {
  const std::string both = std::string(ffmpeg_options) + std::string(ffmpeg_describe);
  rtsp_request r;
  auto o = parse_request(both, r);
  ASSERT_EQ(o.state, parse_state::complete);
  EXPECT_EQ(o.consumed, ffmpeg_options.size());
  EXPECT_EQ(r.method, "OPTIONS");
  o = parse_request(std::string_view(both).substr(o.consumed), r);
  ASSERT_EQ(o.state, parse_state::complete);
  EXPECT_EQ(r.method, "DESCRIBE");
}

TEST(RtspMessage, LineFeedsAloneAndAnyCaseOfHeaderNames) {
  auto r = parsed(
      "SET_PARAMETER rtsp://h/v1/programs/p RTSP/1.0\ncseq: 7\nsession: abc\n"
      "content-length: 5\ncontent-type: text/parameters\n\nhello");
  EXPECT_EQ(r.method, "SET_PARAMETER");
  EXPECT_EQ(r.cseq, 7u);
  EXPECT_EQ(r.header("Session"), "abc");
  EXPECT_EQ(r.header("CONTENT-TYPE"), "text/parameters");
  EXPECT_EQ(r.body, "hello");
}

TEST(RtspMessage, EveryPrefixNeedsMore) {
  const std::string full =
      "GET_PARAMETER rtsp://h/v1/programs/p RTSP/1.0\r\nCSeq: 9\r\nSession: s1\r\n"
      "Content-Length: 8\r\n\r\nposition";
  for (size_t n = 0; n < full.size(); ++n) {
    rtsp_request r;
    r.method = "untouched";
    auto o = parse_request(std::string_view(full).substr(0, n), r);
    EXPECT_EQ(o.state, parse_state::need_more) << n << ": " << o.why;
    EXPECT_EQ(r.method, "untouched");
  }
  auto r = parsed(full);
  EXPECT_EQ(r.body, "position");
}

// The outcome of parsing `text` as a request, which must be bad; `out` must not change.
parse_outcome refused(std::string_view text, const rtsp_limits& lim = {}) {
  rtsp_request r;
  r.method = "untouched";
  auto o = parse_request(text, r, lim);
  EXPECT_EQ(o.state, parse_state::bad) << text;
  EXPECT_EQ(r.method, "untouched");
  EXPECT_FALSE(o.why.empty());
  return o;
}

TEST(RtspMessage, MalformedRequestsAreRefusedWithTheirStatus) {
  EXPECT_EQ(refused("OPTIONS * RTSP/1.0\r\n\r\n").why, "missing CSeq");
  EXPECT_EQ(refused("OPTIONS * RTSP/1.0\r\nCSeq: one\r\n\r\n").status, 400);
  EXPECT_EQ(refused("OPTIONS * RTSP/1.0\r\nCSeq: -1\r\n\r\n").status, 400);
  EXPECT_EQ(refused("OPTIONS * RTSP/1.0\r\nCSeq: 4294967296\r\n\r\n").status, 400);
  EXPECT_EQ(refused("OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nCSeq: 2\r\n\r\n").status, 400);
  EXPECT_EQ(refused("OPTIONS * RTSP/2.0\r\nCSeq: 1\r\n\r\n").status, 505);
  EXPECT_EQ(refused("GET / HTTP/1.1\r\nHost: x\r\n\r\n").status, 400);
  EXPECT_EQ(refused("DESC(RIBE * RTSP/1.0\r\nCSeq: 1\r\n\r\n").why, "the method is not a token");
  EXPECT_EQ(refused("DESCRIBE  * RTSP/1.0\r\nCSeq: 1\r\n\r\n").status, 400);
  EXPECT_EQ(refused("DESCRIBE *\r\nCSeq: 1\r\n\r\n").status, 400);
  EXPECT_EQ(refused("OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n folded\r\n\r\n").status, 400);
  EXPECT_EQ(refused("OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nno colon\r\n\r\n").status, 400);
  EXPECT_EQ(refused("OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX: a\x01z\r\n\r\n").status, 400);
  EXPECT_EQ(refused("OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 1x\r\n\r\n").status, 400);
  const auto dollar = refused(std::string("$\x00\x00\x10", 4) + std::string(16, 'x'));
  EXPECT_EQ(dollar.status, 400);
  EXPECT_EQ(dollar.why, "interleaved data is not supported");
}

TEST(RtspMessage, BinaryInTheFirstLineIsRefusedBeforeItEnds) {
  EXPECT_EQ(refused(std::string("\x16\x03\x01\x02\x00\x01", 6)).status, 400);  // a TLS hello
}

TEST(RtspMessage, LimitsAreEnforcedBeforeTheMessageEnds) {
  // A body over the limit: refused as soon as the head is in, before any of the body.
  auto big = refused("SET_PARAMETER * RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 65537\r\n\r\n");
  EXPECT_EQ(big.status, 413);
  // A head over the limit, no blank line yet.
  rtsp_limits lim;
  lim.header_bytes = 256;
  std::string head = "OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n";
  while (head.size() < 256) {
    head += "X-Pad: aaaaaaaaaaaaaaaa\r\n";
  }
  EXPECT_EQ(refused(head, lim).status, 413);
  EXPECT_EQ(refused("OPTIONS * RTSP/1.0" + std::string(300, 'a'), lim).status, 413);
  // Just under the limit is fine.
  std::string fits = "OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n";
  fits += "X: " + std::string(256 - fits.size() - 7, 'b') + "\r\n\r\n";
  ASSERT_EQ(fits.size(), 256u);
  rtsp_request r;
  EXPECT_EQ(parse_request(fits, r, lim).state, parse_state::complete);
  // Too many header lines.
  rtsp_limits few;
  few.headers = 3;
  EXPECT_EQ(refused("OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", few).status,
            413);
}

TEST(RtspMessage, WrittenRequestsAndResponsesParseBack) {
  rtsp_request q;
  q.method = "SETUP";
  q.uri = "rtsp://h:554/v1/programs/p/track0";
  q.cseq = 42;
  q.headers = {{"Transport", "RTP/AVP;unicast;client_port=6000-6001"}, {"X-Evil", "a\r\nB: c"}};
  q.body = "body";
  const std::string text = write_request(q);
  EXPECT_EQ(text,
            "SETUP rtsp://h:554/v1/programs/p/track0 RTSP/1.0\r\nCSeq: 42\r\n"
            "Transport: RTP/AVP;unicast;client_port=6000-6001\r\nX-Evil: a  B: c\r\n"
            "Content-Length: 4\r\n\r\nbody");
  auto back = parsed(text);
  EXPECT_EQ(back.method, q.method);
  EXPECT_EQ(back.uri, q.uri);
  EXPECT_EQ(back.cseq, q.cseq);
  EXPECT_EQ(back.header("Transport"), q.headers[0].second);
  EXPECT_EQ(back.body, "body");

  rtsp_response a;
  a.status = 200;
  a.cseq = 2;
  a.headers = {{"Content-Type", "application/sdp"}, {"Session", "abc;timeout=60"}};
  a.body = "v=0\r\n";
  const std::string reply = write_response(a);
  EXPECT_EQ(reply,
            "RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Type: application/sdp\r\n"
            "Session: abc;timeout=60\r\nContent-Length: 5\r\n\r\nv=0\r\n");
  rtsp_response b;
  auto o = parse_response(reply, b);
  ASSERT_EQ(o.state, parse_state::complete) << o.why;
  EXPECT_EQ(o.consumed, reply.size());
  EXPECT_EQ(b.status, 200);
  EXPECT_EQ(b.reason, "OK");
  EXPECT_EQ(b.cseq, 2u);
  EXPECT_EQ(b.header("session"), "abc;timeout=60");
  EXPECT_EQ(b.body, "v=0\r\n");
  // Every prefix of a reply needs more.
  for (size_t n = 0; n < reply.size(); ++n) {
    rtsp_response p;
    EXPECT_EQ(parse_response(std::string_view(reply).substr(0, n), p).state, parse_state::need_more)
        << n;
  }

  rtsp_response err;
  err.status = 454;
  err.cseq = 9;
  EXPECT_EQ(write_response(err), "RTSP/1.0 454 Session Not Found\r\nCSeq: 9\r\n\r\n");
  err.reason = "Session Not Found: s1";
  EXPECT_EQ(write_response(err), "RTSP/1.0 454 Session Not Found: s1\r\nCSeq: 9\r\n\r\n");
}

TEST(RtspMessage, MalformedResponsesAreRefused) {
  rtsp_response r;
  EXPECT_EQ(parse_response("RTSP/2.0 200 OK\r\nCSeq: 1\r\n\r\n", r).status, 505);
  EXPECT_EQ(parse_response("RTSP/1.0 2x0 OK\r\nCSeq: 1\r\n\r\n", r).state, parse_state::bad);
  EXPECT_EQ(parse_response("RTSP/1.0 2000 OK\r\nCSeq: 1\r\n\r\n", r).state, parse_state::bad);
  EXPECT_EQ(parse_response("HTTP/1.1 200 OK\r\n\r\n", r).state, parse_state::bad);
  EXPECT_EQ(parse_response("RTSP/1.0 200 OK\r\nCSeq: x\r\n\r\n", r).state, parse_state::bad);
  auto ok = parse_response("RTSP/1.0 404\r\nCSeq: 3\r\n\r\n", r);
  ASSERT_EQ(ok.state, parse_state::complete);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.reason, "");
}

TEST(RtspMessage, ReasonPhrasesOfRfc2326) {
  const std::vector<std::pair<int, std::string_view>> want = {
      {200, "OK"},
      {400, "Bad Request"},
      {401, "Unauthorized"},
      {403, "Forbidden"},
      {404, "Not Found"},
      {405, "Method Not Allowed"},
      {406, "Not Acceptable"},
      {451, "Parameter Not Understood"},
      {453, "Not Enough Bandwidth"},
      {454, "Session Not Found"},
      {455, "Method Not Valid in This State"},
      {457, "Invalid Range"},
      {459, "Aggregate operation not allowed"},
      {461, "Unsupported transport"},
      {500, "Internal Server Error"},
      {501, "Not Implemented"},
      {503, "Service Unavailable"},
      {505, "RTSP Version not supported"},
      {551, "Option not supported"},
      {499, "Bad Request"},  // an unknown code reads as the x00 of its class
      {700, "Unknown"},
  };
  for (const auto& [code, text] : want) {
    EXPECT_EQ(reason_phrase(code), text) << code;
  }
}

TEST(RtspMessage, TransportPicksTheFirstUnicastUdpSpec) {
  auto t = parse_transport(
      "RTP/AVP;multicast;client_port=5000-5001, RTP/AVP/TCP;unicast;interleaved=0-1, "
      "RTP/AVP;unicast;client_port=5002-5003;mode=\"PLAY\", RTP/AVP;unicast;client_port=6000-6001");
  ASSERT_TRUE(t) << t.err().detail;
  EXPECT_EQ(t->client_rtp, 5002);
  EXPECT_EQ(t->client_rtcp, 5003);
  auto one = parse_transport("RTP/AVP;unicast;client_port=5000");
  ASSERT_TRUE(one);
  EXPECT_EQ(one->client_rtcp, 5001);
  auto dest = parse_transport("rtp/avp/udp;unicast;destination=10.0.0.9;client_port=7000-7001");
  ASSERT_TRUE(dest);
  EXPECT_EQ(dest->destination, "10.0.0.9");
  EXPECT_EQ(write_transport(*t, 6970, 6971, 0xab12),
            "RTP/AVP;unicast;client_port=5002-5003;server_port=6970-6971;ssrc=0000AB12");
}

TEST(RtspMessage, TransportWeCannotServeIsRefused) {
  for (std::string_view h : {
           "RTP/AVP/TCP;unicast;interleaved=0-1",
           "RTP/AVP;multicast;client_port=5000-5001",
           "RTP/AVP;unicast;interleaved=0-1;client_port=5000-5001",
           "RTP/AVP;unicast",
           "RTP/AVP;unicast;client_port=0-1",
           "RTP/AVP;unicast;client_port=70000-70001",
           "RTP/AVP;unicast;client_port=65535",
           "RTP/AVP;unicast;client_port=5000-5000",
           "RTP/AVP;unicast;client_port=-5001",
           "RTP/AVP;unicast;client_port=5000-5001;mode=record",
           "RTP/SAVP;unicast;client_port=5000-5001",
           "RAW/RAW/UDP;unicast;client_port=5000-5001",
           "",
           ",,,",
       }) {
    auto t = parse_transport(h);
    EXPECT_FALSE(t) << h;
    if (!t) {
      EXPECT_EQ(t.err().code, errc::invalid_argument);
    }
  }
}

// RTSPS (issue 17): RTP interleaved in the connection, the only kind taken with
// lower_transport::tcp.
TEST(RtspMessage, InterleavedTransportOverTcpOnly) {
  using lt = lower_transport;
  auto t = parse_transport(
      "RTP/AVP;unicast;client_port=5000-5001, RTP/AVP/TCP;unicast;interleaved=4-5;mode=play",
      lt::tcp);
  ASSERT_TRUE(t) << t.err().detail;
  EXPECT_TRUE(t->interleaved);
  EXPECT_EQ(t->channel_rtp, 4);
  EXPECT_EQ(t->channel_rtcp, 5);
  EXPECT_EQ(write_transport(*t, 0, 0, 0xab12), "RTP/AVP/TCP;unicast;interleaved=4-5;ssrc=0000AB12");
  auto bare = parse_transport("RTP/AVP/TCP;unicast", lt::tcp);  // the server picks 0-1
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->channel_rtp, 0);
  EXPECT_EQ(bare->channel_rtcp, 1);
  auto one = parse_transport("RTP/AVP/TCP;interleaved=7", lt::tcp);
  ASSERT_TRUE(one);
  EXPECT_EQ(one->channel_rtcp, 8);
  for (std::string_view h :
       {"RTP/AVP;unicast;client_port=5000-5001", "RTP/AVP/TCP;interleaved=3-3",
        "RTP/AVP/TCP;interleaved=256-257", "RTP/AVP/TCP;interleaved=255",
        "RTP/AVP/TCP;multicast;interleaved=0-1", "RTP/AVP/TCP;interleaved=0-1;mode=record", ""}) {
    auto no = parse_transport(h, lt::tcp);
    EXPECT_FALSE(no) << h;
    if (!no) {
      EXPECT_NE(no.err().detail.find("RTP/AVP/TCP;interleaved"), std::string::npos);
    }
  }
}

// A plain RTSP connection takes either kind: the first in the console's order that can be served.
TEST(RtspMessage, APlainConnectionTakesUdpOrInterleavedInTheConsolesOrder) {
  using lt = lower_transport;
  auto tcp_first = parse_transport(
      "RTP/AVP;multicast;client_port=5000-5001, RTP/AVP/TCP;unicast;interleaved=2-3, "
      "RTP/AVP;unicast;client_port=5002-5003",
      lt::any);
  ASSERT_TRUE(tcp_first) << tcp_first.err().detail;
  EXPECT_TRUE(tcp_first->interleaved);
  EXPECT_EQ(tcp_first->channel_rtp, 2);
  EXPECT_EQ(tcp_first->channel_rtcp, 3);
  auto udp_first = parse_transport(
      "RTP/AVP/TCP;interleaved=3-3, RTP/AVP/UDP;unicast;client_port=5002-5003, "
      "RTP/AVP/TCP;unicast;interleaved=0-1",
      lt::any);
  ASSERT_TRUE(udp_first) << udp_first.err().detail;
  EXPECT_FALSE(udp_first->interleaved);
  EXPECT_EQ(udp_first->client_rtp, 5002);
  // What neither kind can serve is refused, naming both.
  for (std::string_view h :
       {"RTP/AVP;multicast;client_port=5000-5001", "RTP/AVP/TCP;interleaved=3-3",
        "RTP/AVP;unicast;interleaved=0-1", "RTP/AVP/TCP;multicast;interleaved=0-1", ""}) {
    auto no = parse_transport(h, lt::any);
    EXPECT_FALSE(no) << h;
    if (!no) {
      EXPECT_NE(no.err().detail.find("client_port=a-b, or RTP/AVP/TCP;interleaved=a-b"),
                std::string::npos)
          << no.err().detail;
    }
  }
  // The default (udp) still refuses the interleaved kind.
  EXPECT_FALSE(parse_transport("RTP/AVP/TCP;unicast;interleaved=0-1"));
}

TEST(RtspMessage, InterleavedFramesAreTakenOffTheFront) {
  EXPECT_FALSE(interleaved_frame("OPTIONS * RTSP/1.0\r\n"));
  EXPECT_FALSE(interleaved_frame(""));
  auto part = interleaved_frame(std::string_view("$\x01\x00", 3));
  ASSERT_TRUE(part);
  EXPECT_EQ(part->size, 0u);
  std::string whole(
      "$\x01\x00\x03"
      "abcOPTIONS",
      14);
  auto f = interleaved_frame(whole);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->channel, 1);
  EXPECT_EQ(f->size, 7u);  // then "OPTIONS" is a request's start
  auto head = interleaved_header(9, 0x1234);
  EXPECT_EQ(head, (std::array<uint8_t, 4>{'$', 9, 0x12, 0x34}));
}

TEST(RtspMessage, RangeForms) {
  struct want {
    std::string_view header;
    std::optional<double> start;
    std::optional<double> end;
  };
  for (const auto& w : std::vector<want>{
           {"npt=0.000-", 0.0, std::nullopt},
           {"npt=0-8", 0.0, 8.0},
           {"npt=12.5-30", 12.5, 30.0},
           {"npt=now-", std::nullopt, std::nullopt},
           {"npt=1:02:03.5-", 3723.5, std::nullopt},
           {"npt=00:00:10-00:01:00", 10.0, 60.0},
           {"npt=7-7", 7.0, 7.0},
           {" npt = 3 - 4 ", 3.0, 4.0},
           {"npt=5-;time=19970123T143720Z", 5.0, std::nullopt},
       }) {
    auto r = parse_range(w.header);
    ASSERT_TRUE(r) << w.header << ": " << r.err().detail;
    EXPECT_EQ(r->start, w.start) << w.header;
    EXPECT_EQ(r->end, w.end) << w.header;
  }
  EXPECT_EQ(write_range(12, 30), "npt=12.000-30.000");
  EXPECT_EQ(write_range(1.5, std::nullopt), "npt=1.500-");
}

TEST(RtspMessage, BadRangesAreRefused) {
  for (std::string_view h :
       {"npt=5-3", "smpte=0:10:00-", "clock=19961108T142300Z-", "npt=-5", "npt=-", "npt=5",
        "npt=", "npt=abc-", "npt=1e3-", "npt=inf-", "npt=nan-", "npt=-1-2", "npt=00:60:00-",
        "npt=00:00:60-", "npt=1:2-", "npt=1.2.3-", "npt=.-", ""}) {
    auto r = parse_range(h);
    EXPECT_FALSE(r) << h;
    if (!r) {
      EXPECT_EQ(r.err().code, errc::invalid_argument);
    }
  }
}

TEST(RtspMessage, ScaleIsANonZeroNumberUpTo64) {
  EXPECT_EQ(*parse_scale("4"), 4.0);
  EXPECT_EQ(*parse_scale(" -2 "), -2.0);
  EXPECT_EQ(*parse_scale("0.5"), 0.5);
  EXPECT_EQ(*parse_scale("64"), 64.0);
  EXPECT_EQ(*parse_scale("-64.0"), -64.0);
  for (std::string_view h :
       {"0", "-0.0", "65", "-64.5", "inf", "nan", "1e3", "", "abc", "+2", "4x", "--2", "."}) {
    EXPECT_FALSE(parse_scale(h)) << h;
  }
}

TEST(RtspMessage, SessionIdIsWhatComesBeforeItsParameters) {
  EXPECT_EQ(session_id("12345678;timeout=60"), "12345678");
  EXPECT_EQ(session_id(" abc "), "abc");
  EXPECT_EQ(session_id("abc ; timeout=5"), "abc");
  EXPECT_EQ(session_id(""), "");
}

}  // namespace
}  // namespace vodgrid::push
