// The console's RTSP client: the accounting of a session's datagrams (a pure class fed synthetic
// datagrams and times), and the client end to end against a small RTSP server in a thread that
// answers DESCRIBE, SETUP, PLAY, GET_PARAMETER and TEARDOWN and streams from two UDP sockets.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <map>
#include <mutex>
#include <thread>

#include "api/api.h"
#include "console/rtsp_player.h"
#include "push/rtp.h"

namespace vodgrid::console {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using steady = std::chrono::steady_clock;

// ---- datagrams ----

std::vector<uint8_t> datagram(uint16_t seq, std::string_view payload, uint32_t ssrc = 0xbeef) {
  std::vector<uint8_t> d(push::rtp_header_bytes + payload.size());
  push::rtp_header h;
  h.seq = seq;
  h.ssrc = ssrc;
  push::write_rtp_header(
      std::span<uint8_t, push::rtp_header_bytes>(d.data(), push::rtp_header_bytes), h);
  std::copy(payload.begin(), payload.end(), d.begin() + push::rtp_header_bytes);
  return d;
}

// `packets` TS packets, each a sync byte then bytes that depend on `tag` and their place.
std::string ts_bytes(size_t packets, int tag) {
  std::string s(packets * 188, '\0');
  for (size_t i = 0; i < s.size(); ++i) {
    s[i] =
        i % 188 == 0 ? '\x47' : static_cast<char>((i * 31 + static_cast<size_t>(tag) * 7) & 0xff);
  }
  return s;
}

// A segment's bytes cut as a sender cuts them: seven TS packets a datagram, the last shorter.
std::vector<std::string> cut(const std::string& segment) {
  std::vector<std::string> out;
  for (size_t off = 0; off < segment.size(); off += 7 * 188) {
    out.push_back(segment.substr(off, 7 * 188));
  }
  return out;
}

std::vector<segment_check> checks(const std::vector<std::string>& segments) {
  std::vector<segment_check> out;
  for (auto& s : segments) {
    out.push_back({s.size(), sha256(s)});
  }
  return out;
}

// ---- the accounting ----

TEST(StreamAccount, GapsAreCountedAcrossASequenceWrap) {
  stream_account a({});
  auto t = steady::now();
  for (uint16_t seq : {65533, 65534, 65535, 0, 2, 3}) {  // 1 is missing
    a.add("127.0.0.1:5000", t, datagram(seq, "x"));
  }
  auto s = a.stats();
  EXPECT_EQ(s.packets, 6u);
  EXPECT_EQ(s.seq_gaps, 1u);
  EXPECT_EQ(s.duplicates, 0u);
  EXPECT_EQ(s.bytes, 6u);
}

TEST(StreamAccount, ALossBeforeTheFirstReceivedCountsFromRtpInfo) {
  stream_account::options o;
  o.first_seq = 65535;
  stream_account a(o);
  auto t = steady::now();
  a.add("e", t, datagram(1, "x"));  // 65535 and 0 never came
  a.add("e", t, datagram(2, "x"));
  EXPECT_EQ(a.stats().seq_gaps, 2u);
}

TEST(StreamAccount, DuplicatesAreCountedAndTheirBytesOnce) {
  stream_account a({});
  auto t = steady::now();
  for (uint16_t seq : {10, 11, 11, 12, 10, 13}) {
    a.add("e", t, datagram(seq, "abcd"));
  }
  auto s = a.stats();
  EXPECT_EQ(s.packets, 6u);
  EXPECT_EQ(s.duplicates, 2u);
  EXPECT_EQ(s.seq_gaps, 0u);
  EXPECT_EQ(s.bytes, 4u * 4);
}

TEST(StreamAccount, AnotherSsrcOrNotRtpIsRejected) {
  stream_account::options o;
  o.ssrc = 0xbeef;
  stream_account a(o);
  auto t = steady::now();
  a.add("a", t, datagram(1, "x", 0xbeef));
  a.add("b", t + 1ms, datagram(2, "x", 0xdead));
  std::array<uint8_t, 4> junk{1, 2, 3, 4};
  a.add("b", t + 2ms, junk);
  auto s = a.stats();
  EXPECT_EQ(s.packets, 1u);
  EXPECT_EQ(s.rejected, 2u);
  ASSERT_EQ(s.sources.size(), 1u);  // a rejected datagram is no engine
  EXPECT_EQ(s.handoffs, 0u);
}

TEST(StreamAccount, GapsAreAttributedToHandOffsOrToTheStreamInsideOneSource) {
  stream_account a({});
  auto t0 = steady::now();
  uint16_t seq = 0;
  auto at = [&](std::string_view src, int ms) { a.add(src, t0 + ms * 1ms, datagram(seq++, "x")); };
  at("10.0.0.1:4000", 0);
  at("10.0.0.1:4000", 10);
  at("10.0.0.1:4000", 20);
  at("10.0.0.2:4000", 70);  // hand-off after 50 ms
  at("10.0.0.2:4000", 72);
  at("10.0.0.2:4000", 100);  // 28 ms inside the second engine's stream
  at("10.0.0.1:4000", 105);  // back to the first: a hand-off of 5 ms
  auto s = a.stats();
  EXPECT_EQ(s.handoffs, 2u);
  EXPECT_NEAR(s.longest_handoff_gap, 0.050, 1e-6);
  EXPECT_NEAR(s.longest_inside_gap, 0.028, 1e-6);
  EXPECT_NEAR(s.longest_gap, 0.050, 1e-6);
  ASSERT_EQ(s.sources.size(), 2u);
  EXPECT_EQ(s.sources[0], (std::pair<std::string, uint64_t>{"10.0.0.1:4000", 4}));
  EXPECT_EQ(s.sources[1], (std::pair<std::string, uint64_t>{"10.0.0.2:4000", 3}));
}

// Three segments, their datagrams numbered from `first`; `deliver` gets (seq, payload) in order.
struct program {
  std::vector<std::string> segments{ts_bytes(10, 1), ts_bytes(14, 2), ts_bytes(9, 3)};
  std::vector<std::pair<uint16_t, std::string>> datagrams(uint16_t first) const {
    std::vector<std::pair<uint16_t, std::string>> out;
    for (auto& s : segments) {
      for (auto& d : cut(s)) {
        out.emplace_back(first++, d);
      }
    }
    return out;
  }
};

TEST(StreamAccount, ReassemblyVerifiesEverySegmentDespiteADuplicateAndReordering) {
  program p;
  stream_account::options o;
  o.segments = checks(p.segments);
  o.first_seq = 65533;  // the stream wraps inside the second segment
  stream_account a(o);
  auto d = p.datagrams(65533);
  std::swap(d[3], d[4]);          // reordered
  d.insert(d.begin() + 2, d[0]);  // and one twice
  auto t = steady::now();
  for (auto& [seq, payload] : d) {
    a.add("e", t, datagram(seq, payload));
  }
  a.finish();
  auto s = a.stats();
  EXPECT_EQ(s.segments_ok, 3u);
  EXPECT_EQ(s.segments_missing, 0u);
  EXPECT_EQ(s.digest_mismatches, 0u);
  EXPECT_EQ(s.duplicates, 1u);
  EXPECT_EQ(s.excess_bytes, 0u);
}

TEST(StreamAccount, ADatagramGivenUpFailsOnlyItsSegment) {
  program p;
  stream_account::options o;
  o.segments = checks(p.segments);
  o.reorder_window = 1;  // given up when two datagrams after it have come
  stream_account a(o);
  auto d = p.datagrams(100);
  d.insert(d.begin() + 1, d[0]);  // a duplicate in segment 0
  auto lost = d[4];               // the second datagram of segment 1 (a full one)
  d.erase(d.begin() + 4);
  d.push_back(lost);  // comes at last, long after it was given up
  auto t = steady::now();
  for (auto& [seq, payload] : d) {
    a.add("e", t, datagram(seq, payload));
  }
  a.finish();
  auto s = a.stats();
  EXPECT_EQ(s.segments_ok, 2u);
  EXPECT_EQ(s.segments_missing, 1u);
  EXPECT_EQ(s.digest_mismatches, 0u);
  EXPECT_EQ(s.seq_gaps, 0u);  // it did arrive
  EXPECT_EQ(s.duplicates, 1u);
  EXPECT_EQ(s.excess_bytes, 0u);
}

TEST(StreamAccount, AChangedByteIsADigestMismatch) {
  program p;
  stream_account::options o;
  o.segments = checks(p.segments);
  stream_account a(o);
  auto d = p.datagrams(7);
  d[5].second[100] ^= 1;  // in segment 2
  auto t = steady::now();
  for (auto& [seq, payload] : d) {
    a.add("e", t, datagram(seq, payload));
  }
  a.finish();
  auto s = a.stats();
  EXPECT_EQ(s.segments_ok, 2u);
  EXPECT_EQ(s.digest_mismatches, 1u);
}

TEST(StreamAccount, AStreamThatStopsFailsTheSegmentsItDidNotFinish) {
  program p;
  stream_account::options o;
  o.segments = checks(p.segments);
  stream_account a(o);
  auto d = p.datagrams(0);
  auto t = steady::now();
  for (size_t i = 0; i < 3; ++i) {  // segment 0 and the first datagram of segment 1
    a.add("e", t, datagram(d[i].first, d[i].second));
  }
  a.finish();
  auto s = a.stats();
  EXPECT_EQ(s.segments_ok, 1u);
  EXPECT_EQ(s.segments_missing, 2u);
}

// ---- pacing jitter ----

TEST(MicrosHistogram, QuantilesAreExactBelow256AndWithinOnePercentAbove) {
  micros_histogram h;
  for (int64_t v = 1; v <= 100; ++v) {
    h.add(v);
  }
  EXPECT_EQ(h.quantile(0.5), 50);
  EXPECT_EQ(h.quantile(0.99), 99);
  EXPECT_EQ(h.max(), 100);
  h.add(123'456, 900);  // the 99th percentile now lies among these
  EXPECT_EQ(h.count(), 1000u);
  EXPECT_GE(h.quantile(0.99), 123'456);
  EXPECT_LE(h.quantile(0.99), 123'456 * 101 / 100);
  EXPECT_EQ(h.quantile(0.1), 100);
  h.add(-5);  // counts as 0
  EXPECT_EQ(h.quantile(0.0001), 0);
  EXPECT_EQ(micros_histogram().quantile(0.99), 0);
}

TEST(MicrosHistogram, BucketsTileTheValues) {
  for (int64_t v : std::initializer_list<int64_t>{0, 1, 255, 256, 257, 511, 512, 1000, 2'000'000,
                                                  int64_t{1} << 39}) {
    auto i = micros_histogram::bucket_of(v);
    EXPECT_LE(micros_histogram::low(i), v) << v;
    EXPECT_GT(micros_histogram::low(i + 1), v) << v;
    EXPECT_LE(micros_histogram::low(i + 1) - micros_histogram::low(i),
              std::max<int64_t>(1, v / 100))
        << v;
  }
}

std::vector<uint8_t> timed_datagram(uint16_t seq, uint32_t timestamp) {
  std::vector<uint8_t> d(push::rtp_header_bytes + 7 * 188);
  push::rtp_header h;
  h.seq = seq;
  h.ssrc = 0xbeef;
  h.timestamp = timestamp;
  push::write_rtp_header(
      std::span<uint8_t, push::rtp_header_bytes>(d.data(), push::rtp_header_bytes), h);
  return d;
}

TEST(StreamAccount, JitterIsLatenessAboveTheSessionsLeastEvenWhenTheFirstCameLate) {
  stream_account a({});
  auto t0 = steady::now();
  // A datagram every 3 ms (270 ticks of 90 kHz), across the timestamp's wrap; the first 3 ms late,
  // the last 5 ms late, the rest on time: the least lateness is the others'.
  uint32_t ts0 = 0xffffffffu - 1000;
  for (uint16_t i = 0; i < 100; ++i) {
    auto extra = i == 0 ? 3ms : i == 99 ? 5ms : 0ms;
    a.add("e", t0 + i * 3ms + extra, timed_datagram(i, ts0 + i * 270u));
  }
  a.add("e", t0 + 400ms, timed_datagram(50, ts0 + 50 * 270u));  // a duplicate is not timed
  auto j = a.stats().jitter_us;
  EXPECT_EQ(j.count(), 100u);
  EXPECT_LE(j.quantile(0.98), 30);  // 0, to a bucket's width at 3 ms (under 1%)
  EXPECT_NEAR(static_cast<double>(j.quantile(0.99)), 3000, 30);
  EXPECT_NEAR(static_cast<double>(j.max()), 5000, 50);
}

TEST(StreamAccount, AClockStartedAgainAfterASilenceIsANewRunNotJitter) {
  stream_account a({});
  auto t0 = steady::now();
  // 50 on time, then the stream resumes a second later where it stopped (an engine died and another
  // holder took the session on from its last position): one silence, no jitter.
  for (uint16_t i = 0; i < 50; ++i) {
    a.add("e1", t0 + i * 3ms, timed_datagram(i, i * 270u));
  }
  for (uint16_t i = 50; i < 100; ++i) {
    a.add("e2", t0 + 1s + i * 3ms, timed_datagram(i, i * 270u));
  }
  auto s = a.stats();
  EXPECT_EQ(s.jitter_us.count(), 100u);
  EXPECT_LE(s.jitter_us.max(), 30);
  EXPECT_NEAR(s.longest_gap, 1.003, 0.001);  // the silence is reported as a gap instead
}

TEST(StreamAccount, ASenderThatStallsAndBurstsToCatchUpShowsItsBurstAsJitter) {
  stream_account a({});
  auto t0 = steady::now();
  // 50 on time, a 400 ms stall, then the 133 datagrams due meanwhile at once, then on time again.
  for (uint16_t i = 0; i < 50; ++i) {
    a.add("e", t0 + i * 3ms, timed_datagram(i, i * 270u));
  }
  for (uint16_t i = 50; i < 300; ++i) {
    auto due = t0 + i * 3ms;
    a.add("e", std::max(due, t0 + 550ms), timed_datagram(i, i * 270u));
  }
  auto j = a.stats().jitter_us;
  EXPECT_EQ(j.count(), 300u);
  EXPECT_GE(j.max(), 390'000);
}

TEST(StreamAccount, JitterFollowsTheScale) {
  stream_account::options o;
  o.scale = 4;  // timestamps advance four times faster than the datagrams are due
  stream_account a(o);
  auto t0 = steady::now();
  for (uint16_t i = 0; i < 10; ++i) {
    a.add("e", t0 + i * 10ms, timed_datagram(i, i * 3600u));
  }
  EXPECT_EQ(a.stats().jitter_us.max(), 0);
}

// ---- a small RTSP server ----

// One request as the fake server saw it.
struct seen_request {
  std::string method;
  std::string uri;
  std::map<std::string, std::string> headers;  // names lowercased
};

// A director in a thread: GET /v1/programs/p (the manifest) over HTTP, and one RTSP session on the
// same port; on PLAY it streams segment 0 from one UDP socket and segment 1 from another.
class fake_director {
 public:
  // How it behaves.
  std::vector<std::string> segments{ts_bytes(30, 1), ts_bytes(25, 2)};
  int play_status = 200;
  std::string play_reason = "OK";
  bool wrong_describe_cseq = false;
  uint32_t session_timeout = 60;
  uint16_t first_seq = 65530;  // the stream wraps
  std::chrono::milliseconds inside_gap = 1ms;
  std::chrono::milliseconds handoff_gap = 40ms;
  bool stream_everything = true;  // false: only segment 0, then silence
  bool goodbye = false;           // an RTCP BYE after the stream
  int manifest_status = 200;

  fake_director() {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(listener_, 8), 0);
    socklen_t len = sizeof a;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    for (auto& u : engines_) {
      u = ::socket(AF_INET, SOCK_DGRAM, 0);
      sockaddr_in e{};
      e.sin_family = AF_INET;
      e.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      EXPECT_EQ(::bind(u, reinterpret_cast<sockaddr*>(&e), sizeof e), 0);
    }
  }
  ~fake_director() {
    stop_ = true;
    if (thread_.joinable()) {
      thread_.join();
    }
    ::close(listener_);
    for (int u : engines_) {
      ::close(u);
    }
  }
  void start() {
    thread_ = std::thread([this] { serve(); });
  }
  std::string url() const { return fmt::format("rtsp://127.0.0.1:{}/v1/programs/p/", port); }
  std::vector<seen_request> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }

  uint16_t port = 0;

 private:
  void serve() {
    while (!stop_) {
      pollfd p{listener_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) {
        continue;
      }
      int c = ::accept(listener_, nullptr, nullptr);
      if (c >= 0) {
        converse(c);
        ::close(c);
      }
    }
  }

  // The next request's head, "" when the peer closed or went silent for 5 s.
  std::string read_head(int c) {
    while (in_.find("\r\n\r\n") == std::string::npos) {
      pollfd p{c, POLLIN, 0};
      if (stop_ || ::poll(&p, 1, 5000) <= 0) {
        return {};
      }
      char buf[4096];
      auto n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) {
        return {};
      }
      in_.append(buf, static_cast<size_t>(n));
    }
    auto end = in_.find("\r\n\r\n") + 4;
    auto head = in_.substr(0, end);
    in_.erase(0, end);
    return head;
  }

  static seen_request parse(const std::string& head) {
    seen_request r;
    auto line_end = head.find("\r\n");
    auto first = head.substr(0, line_end);
    auto sp1 = first.find(' ');
    auto sp2 = first.find(' ', sp1 + 1);
    r.method = first.substr(0, sp1);
    r.uri = first.substr(sp1 + 1, sp2 - sp1 - 1);
    for (size_t at = line_end + 2; at < head.size();) {
      auto e = head.find("\r\n", at);
      auto line = head.substr(at, e - at);
      at = e + 2;
      auto colon = line.find(':');
      if (colon == std::string::npos) {
        continue;
      }
      std::string name = line.substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(), ::tolower);
      r.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
    }
    return r;
  }

  static void send_all(int c, const std::string& s) {
    for (size_t off = 0; off < s.size();) {
      auto n = ::send(c, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) {
        return;
      }
      off += static_cast<size_t>(n);
    }
  }

  void converse(int c) {
    in_.clear();
    for (;;) {
      auto head = read_head(c);
      if (head.empty()) {
        return;
      }
      auto r = parse(head);
      {
        std::lock_guard lock(mu_);
        seen_.push_back(r);
      }
      if (head.find(" HTTP/1.1\r\n") != std::string::npos) {
        send_all(c, manifest_reply());
        return;
      }
      if (!answer(c, r)) {
        return;
      }
    }
  }

  std::string manifest_reply() const {
    if (manifest_status != 200) {
      std::string body = R"({"error":"not_found","detail":"no such program: p"})";
      return fmt::format(
          "HTTP/1.1 {} Not Found\r\nContent-Type: application/json\r\nContent-Length: "
          "{}\r\nConnection: close\r\n\r\n{}",
          manifest_status, body.size(), body);
    }
    api::program_manifest m;
    m.id = *program_id::parse("p");
    m.title = "p";
    for (size_t i = 0; i < segments.size(); ++i) {
      m.segments.push_back(
          {segment_index{static_cast<uint32_t>(i)}, 1.0, segments[i].size(), sha256(segments[i])});
    }
    auto body = boost::json::serialize(api::to_json(m));
    return fmt::format(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: "
        "close\r\n\r\n{}",
        body.size(), body);
  }

  static std::string reply(const seen_request& r, int status, std::string_view reason,
                           std::string headers = {}, std::string body = {}, int cseq_shift = 0) {
    auto cseq = std::stoi(r.headers.count("cseq") ? r.headers.at("cseq") : "0") + cseq_shift;
    if (!body.empty()) {
      headers += fmt::format("Content-Length: {}\r\n", body.size());
    }
    return fmt::format("RTSP/1.0 {} {}\r\nCSeq: {}\r\n{}\r\n{}", status, reason, cseq, headers,
                       body);
  }

  // Answers one RTSP request; false ends the conversation.
  bool answer(int c, const seen_request& r) {
    if (r.method == "DESCRIBE") {
      auto base = fmt::format("rtsp://127.0.0.1:{}/v1/programs/p/", port);
      auto sdp = fmt::format(
          "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=p\r\nt=0 0\r\na=range:npt=0-2.000\r\n"
          "m=video 0 RTP/AVP 33\r\na=rtpmap:33 MP2T/90000\r\na=control:{}track1?token=T\r\n",
          base);
      send_all(c, reply(r, 200, "OK",
                        fmt::format("Content-Type: application/sdp\r\nContent-Base: {}\r\n", base),
                        sdp, wrong_describe_cseq ? 5 : 0));
    } else if (r.method == "SETUP") {
      auto& t = r.headers.at("transport");
      auto p = t.find("client_port=");
      client_rtp_ = static_cast<uint16_t>(std::stoi(t.substr(p + 12)));
      send_all(c, reply(r, 200, "OK",
                        fmt::format("Session: 12345678;timeout={}\r\nTransport: "
                                    "RTP/AVP;unicast;client_port={}-{};server_port=6000-6001;"
                                    "ssrc=0000BEEF\r\n",
                                    session_timeout, client_rtp_, client_rtp_ + 1)));
    } else if (r.method == "PLAY") {
      if (play_status != 200) {
        send_all(c, reply(r, play_status, play_reason, "Content-Type: application/json\r\n",
                          R"({"error":"not_found","detail":"no session 12345678"})"));
        return true;
      }
      send_all(c,
               reply(r, 200, "OK",
                     fmt::format("Range: npt=0.000-\r\nRTP-Info: url=track1;seq={};rtptime=0\r\n",
                                 first_seq)));
      stream();
    } else if (r.method == "GET_PARAMETER") {
      send_all(c, reply(r, 200, "OK", "Session: 12345678\r\n"));
    } else if (r.method == "TEARDOWN") {
      send_all(c, reply(r, 200, "OK"));
      return false;
    } else {
      send_all(c, reply(r, 405, "Method Not Allowed"));
    }
    return true;
  }

  // Segment n from engine n, seven TS packets a datagram, with the gaps asked for.
  void stream() {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    to.sin_port = htons(client_rtp_);
    uint16_t seq = first_seq;
    for (size_t n = 0; n < segments.size() && (n == 0 || stream_everything); ++n) {
      if (n > 0) {
        std::this_thread::sleep_for(handoff_gap);
      }
      bool first = true;
      for (auto& payload : cut(segments[n])) {
        if (!first) {
          std::this_thread::sleep_for(inside_gap);
        }
        first = false;
        auto d = datagram(seq++, payload);
        ::sendto(engines_[n % 2], d.data(), d.size(), 0, reinterpret_cast<sockaddr*>(&to),
                 sizeof to);
      }
    }
    if (goodbye) {
      auto bye = push::rtcp_goodbye(0xbeef, 0, 0, 0, 0, "engine");
      to.sin_port = htons(static_cast<uint16_t>(client_rtp_ + 1));
      ::sendto(engines_[0], bye.data(), bye.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    }
  }

  int listener_ = -1;
  std::array<int, 2> engines_{-1, -1};
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::string in_;  // owned by the server thread
  uint16_t client_rtp_ = 0;
  std::mutex mu_;
  std::vector<seen_request> seen_;  // guarded by mu_
};

rtsp_report play_now(rtsp_play_options o) {
  boost::asio::io_context io;
  auto f = boost::asio::co_spawn(io, play_rtsp(std::move(o)), boost::asio::use_future);
  io.run();
  return f.get();
}

std::vector<std::string> methods(const std::vector<seen_request>& seen) {
  std::vector<std::string> out;
  for (auto& r : seen) {
    out.push_back(r.method);
  }
  return out;
}

TEST(RtspPlay, ReceivesAStreamHandedOffBetweenTwoEnginesAndVerifiesIt) {
  fake_director d;
  d.start();
  rtsp_play_options o;
  o.url = d.url();
  o.token = "T";
  auto rep = play_now(o);
  EXPECT_TRUE(rep.ok()) << rep.to_text();
  EXPECT_TRUE(rep.verified);
  EXPECT_EQ(rep.segments, 2u);
  EXPECT_EQ(rep.bytes, d.segments[0].size() + d.segments[1].size());
  EXPECT_EQ(rep.seq_gaps, 0u);
  EXPECT_EQ(rep.duplicates, 0u);
  EXPECT_EQ(rep.handoffs, 1u);
  ASSERT_EQ(rep.engines.size(), 2u);
  for (auto& [engine, datagrams] : rep.engines) {
    EXPECT_GT(datagrams, 0u) << engine;
  }
  auto json = rep.to_json().as_object();
  ASSERT_EQ(json.at("engines").as_array().size(), 2u);  // in the order they streamed
  EXPECT_EQ(json.at("engines").as_array()[0].at("engine").as_string(), rep.engines[0].first);
  EXPECT_GE(rep.longest_handoff_gap, 0.035);  // the server slept 40 ms at the hand-off
  EXPECT_NEAR(rep.media_seconds, 2.0, 1e-9);
  // Every datagram is timed; the server's timestamps stand still, so the last is the latest, at
  // least the hand-off's 40 ms behind the first.
  EXPECT_EQ(rep.jitter_us.count(), rep.packets);
  EXPECT_GE(rep.jitter_max, 0.035);
  EXPECT_GE(rep.jitter_max, rep.jitter_p99);
  auto seen = d.seen();
  EXPECT_THAT(methods(seen),
              ::testing::ElementsAre("GET", "DESCRIBE", "SETUP", "PLAY", "TEARDOWN"));
  ASSERT_EQ(seen.size(), 5u);
  EXPECT_EQ(seen[0].uri, "/v1/programs/p?token=T");
  EXPECT_EQ(seen[1].uri, d.url() + "?token=T");
  EXPECT_EQ(seen[2].uri, d.url() + "track1?token=T");  // the SDP's control URL
  auto port = std::stoi(
      seen[2].headers["transport"].substr(seen[2].headers["transport"].find("client_port=") + 12));
  EXPECT_EQ(port % 2, 0);
  EXPECT_EQ(seen[3].headers["session"], "12345678");
  EXPECT_EQ(seen[3].headers.count("range"), 0u);
  EXPECT_EQ(seen[3].headers.count("scale"), 0u);
  EXPECT_EQ(seen[4].headers["session"], "12345678");
}

TEST(RtspPlay, SessionNotFoundOnPlayIsAClearError) {
  fake_director d;
  d.play_status = 454;
  d.play_reason = "Session Not Found";
  d.start();
  rtsp_play_options o;
  o.url = d.url();
  auto rep = play_now(o);
  EXPECT_FALSE(rep.ok());
  ASSERT_FALSE(rep.errors.empty());
  EXPECT_THAT(rep.errors.front(),
              HasSubstr("PLAY answered 454 Session Not Found: no session 12345678"));
  EXPECT_EQ(rep.packets, 0u);
}

TEST(RtspPlay, AResponseWithAnotherCSeqIsRefused) {
  fake_director d;
  d.wrong_describe_cseq = true;
  d.start();
  rtsp_play_options o;
  o.url = d.url();
  auto rep = play_now(o);
  EXPECT_FALSE(rep.ok());
  ASSERT_FALSE(rep.errors.empty());
  EXPECT_THAT(rep.errors.front(), HasSubstr("DESCRIBE: the response has CSeq"));
  EXPECT_THAT(methods(d.seen()), ::testing::ElementsAre("GET", "DESCRIBE"));
}

TEST(RtspPlay, SeekAndScaleAreSentAndTheStreamEndsBySilence) {
  fake_director d;
  d.stream_everything = false;
  d.start();
  rtsp_play_options o;
  o.url = d.url();
  o.seek = 1.5;
  o.scale = 4;
  o.read_timeout = 300ms;
  auto rep = play_now(o);
  EXPECT_TRUE(rep.ok()) << rep.to_text();
  EXPECT_FALSE(rep.verified);
  EXPECT_EQ(rep.bytes, d.segments[0].size());
  EXPECT_NEAR(rep.media_seconds, 0.5, 1e-9);
  auto seen = d.seen();
  EXPECT_THAT(methods(seen), ::testing::ElementsAre("DESCRIBE", "SETUP", "PLAY", "TEARDOWN"));
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_THAT(seen[2].headers["range"], HasSubstr("npt=1.5"));
  EXPECT_EQ(seen[2].headers["scale"], "4");
}

TEST(RtspPlay, AnRtcpByeEndsTheStreamWithoutWaitingForSilence) {
  fake_director d;
  d.stream_everything = false;
  d.goodbye = true;
  d.start();
  rtsp_play_options o;
  o.url = d.url();
  o.seek = 1;
  o.read_timeout = 20s;
  auto rep = play_now(o);
  EXPECT_TRUE(rep.ok()) << rep.to_text();
  EXPECT_EQ(rep.bytes, d.segments[0].size());
  EXPECT_EQ(rep.rtcp_packets, 1u);
  EXPECT_LT(rep.seconds, 5.0);  // not the 20 s of silence
}

TEST(RtspPlay, AStreamThatStopsShortFailsAtScaleOne) {
  fake_director d;
  d.stream_everything = false;
  d.start();
  rtsp_play_options o;
  o.url = d.url();
  o.read_timeout = 300ms;
  auto rep = play_now(o);
  EXPECT_FALSE(rep.ok());
  EXPECT_EQ(rep.segments, 1u);
  EXPECT_EQ(rep.segments_failed, 1u);
  ASSERT_FALSE(rep.errors.empty());
  EXPECT_THAT(rep.errors.front(), HasSubstr("stopped after"));
}

TEST(RtspPlay, KeepAlivesCarryTheSessionAtHalfItsTimeout) {
  fake_director d;
  d.session_timeout = 1;
  d.inside_gap = 25ms;  // 5 + 4 datagrams 25 ms apart and 0.6 s at the hand-off: 0.8 s
  d.handoff_gap = 600ms;
  d.start();
  rtsp_play_options o;
  o.url = d.url();
  auto rep = play_now(o);
  EXPECT_TRUE(rep.ok()) << rep.to_text();
  size_t keep_alives = 0;
  for (auto& r : d.seen()) {
    if (r.method == "GET_PARAMETER") {
      ++keep_alives;
      EXPECT_EQ(r.headers["session"], "12345678");
    }
  }
  EXPECT_GE(keep_alives, 1u);
}

TEST(RtspPlay, AProgramWithoutAManifestCannotBeVerifiedAndTheTokenIsNotShown) {
  fake_director d;
  d.manifest_status = 404;
  d.start();
  rtsp_play_options o;
  o.url = d.url();
  o.token = "secret";
  auto rep = play_now(o);
  EXPECT_FALSE(rep.ok());
  ASSERT_EQ(rep.errors.size(), 1u);
  EXPECT_THAT(rep.errors.front(), HasSubstr("cannot verify: GET http://127.0.0.1:"));
  EXPECT_THAT(rep.errors.front(), HasSubstr("/v1/programs/p answered 404: no such program: p"));
  EXPECT_THAT(rep.errors.front(), ::testing::Not(HasSubstr("secret")));
  EXPECT_THAT(methods(d.seen()), ::testing::ElementsAre("GET"));
}

TEST(RtspPlay, BadOptionsAreRefusedBeforeAnythingIsSent) {
  fake_director d;
  d.start();
  for (double scale : {0.0, 65.0, std::nan("")}) {
    rtsp_play_options o;
    o.url = d.url();
    o.scale = scale;
    auto rep = play_now(o);
    EXPECT_FALSE(rep.ok());
    ASSERT_EQ(rep.errors.size(), 1u);
    EXPECT_THAT(rep.errors.front(), HasSubstr("scale"));
  }
  rtsp_play_options o;
  o.url = "http://127.0.0.1:1/v1/programs/p";
  auto rep = play_now(o);
  ASSERT_EQ(rep.errors.size(), 1u);
  EXPECT_THAT(rep.errors.front(), HasSubstr("not an rtsp://"));
  EXPECT_TRUE(d.seen().empty());
}

}  // namespace
}  // namespace vodgrid::console
