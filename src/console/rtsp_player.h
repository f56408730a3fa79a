// The console's push idiom (DESIGN.md flow 8): plays a program as an RTSP client would — DESCRIBE,
// SETUP with its own UDP ports, PLAY with an optional Range and Scale, keep-alives, TEARDOWN — and
// accounts for the RTP stream the engines push: sequence gaps and duplicates, the engines it came
// from, the gaps between datagrams at each hand-off against those inside one engine's stream, and,
// at scale 1 from the start, each segment's SHA-256 over the reassembled TS.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include "base/sha256.h"

namespace vodgrid::console {

struct rtsp_play_options {
  std::string url;             // rtsp://DIRECTOR/v1/programs/{id}[/][?token=T]
  std::string token;           // appended as ?token= when not empty and the URL carries none
  uint32_t viewers = 1;        // concurrent sessions, each with its own UDP port pair
  std::optional<double> seek;  // PLAY's Range: npt=SEEK- (seconds); none: from the start
  double scale = 1;            // PLAY's Scale: (trick play when not 1); not 0, |scale| <= 64
  bool verify = true;          // check each segment's SHA-256 (only at scale 1 from npt 0)
  std::chrono::milliseconds read_timeout{4'000};       // no datagram this long after PLAY: the end
  std::chrono::milliseconds exchange_timeout{10'000};  // every RTSP request and its response
  // GET_PARAMETER every half session timeout (the timeout SETUP's Session header gives); false:
  // none, for tests of a server that tears idle sessions down.
  bool keep_alive = true;
  // With one viewer: the TS payloads of the datagrams, in the order they arrived, written here (to
  // check what trick play sends with ffprobe, say). Empty: nothing is written.
  std::string save;
};

// Counts of microsecond values in log-linear buckets: exact below 256 us, then 128 buckets per
// doubling (each under 1% of its values wide), so that a session's millions of datagrams cost a few
// KiB. Negative values count as 0.
class micros_histogram {
 public:
  void add(int64_t us, uint64_t n = 1);
  void merge(const micros_histogram& other);
  uint64_t count() const { return count_; }
  // The least value v such that a share q (0..1] of the values are at most v, to a bucket's upper
  // bound; 0 when empty.
  int64_t quantile(double q) const;
  int64_t max() const { return quantile(1); }
  // Bucket i holds the values [low(i), low(i + 1)).
  static size_t bucket_of(int64_t us);
  static int64_t low(size_t i);
  std::span<const uint64_t> buckets() const { return buckets_; }

 private:
  std::vector<uint64_t> buckets_;
  uint64_t count_ = 0;
};

// One segment as the manifest gives it: what its reassembled bytes must be.
struct segment_check {
  uint64_t size = 0;
  sha256_digest sha256{};
};

// What one session received. Times in seconds.
struct stream_stats {
  uint64_t packets = 0;     // RTP datagrams accepted (duplicates included)
  uint64_t bytes = 0;       // their TS payload bytes, each sequence number once
  uint64_t rejected = 0;    // datagrams that were not RTP, or carried another SSRC
  uint64_t seq_gaps = 0;    // sequence numbers missing from the first expected to the last received
  uint64_t duplicates = 0;  // datagrams whose sequence number had already arrived
  uint64_t handoffs = 0;    // datagrams from another source than the one before
  // address:port → datagrams, in order of first appearance: the engines that streamed.
  std::vector<std::pair<std::string, uint64_t>> sources;
  double longest_gap = 0;          // between any two consecutive datagrams
  double longest_handoff_gap = 0;  // before the first datagram of a new source
  double longest_inside_gap = 0;   // between two consecutive datagrams of one source
  bool seq_overflow = false;       // sequence numbers jumped further than can be tracked
  // Verification (when segments were given): each segment ok, missing bytes, or other bytes.
  uint64_t segments_ok = 0;
  uint64_t segments_missing = 0;
  uint64_t digest_mismatches = 0;
  uint64_t excess_bytes = 0;  // payload beyond the last segment's end
  // Pacing: each new datagram's lateness (its arrival less the first's arrival plus its RTP
  // timestamp's advance over the first's, divided by the scale), less the session's least lateness,
  // in microseconds, each within 1% of its lateness against the first datagram's (the histogram's
  // precision). 0 for a datagram exactly on the stream's clock.
  micros_histogram jitter_us;
};

// The accounting of one session's datagrams, with no I/O: fed each datagram with its source and
// arrival time, so that tests replay any order, loss or duplication. When `segments` are given it
// reassembles the TS payloads in sequence order (each sequence number once), cuts them by the
// segment sizes and checks each SHA-256 as it completes, holding only out-of-order datagrams.
// Threading: one owner.
class stream_account {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  struct options {
    std::optional<uint32_t> ssrc;       // SETUP's: datagrams with another are rejected
    std::optional<uint16_t> first_seq;  // PLAY's RTP-Info: a loss before the first received counts
    std::vector<segment_check> segments;  // empty: no reassembly
    // Out-of-order datagrams held while waiting for a missing one; past it the missing one is given
    // up (its segment fails).
    size_t reorder_window = 1024;
    // PLAY's Scale: the RTP timestamps advance this many times faster than the datagrams are due.
    double scale = 1;
  };
  explicit stream_account(options o);
  ~stream_account();
  stream_account(const stream_account&) = delete;
  stream_account& operator=(const stream_account&) = delete;

  // One datagram from `source` ("address:port") that arrived at `at` (non-decreasing; the kernel's
  // receive time when known, which on loopback is when the sender sent it).
  void add(std::string_view source, time_point at, std::span<const uint8_t> datagram);
  // The stream is over: missing datagrams are given up and unfinished segments fail. Once.
  void finish();
  // Payload bytes received, each sequence number once.
  uint64_t unique_bytes() const { return stats_.bytes; }
  stream_stats stats() const;

 private:
  struct reassembly;
  enum class arrival { fresh, duplicate, untracked };
  arrival mark_received(int64_t ext);
  int64_t extend(uint16_t seq) const;
  void time_datagram(time_point at, uint32_t timestamp);

  options opts_;
  stream_stats stats_;
  // Sequence numbers, extended to 64 bits across wraps; `received_` is a bitmap from `origin_`.
  bool started_ = false;
  int64_t origin_ = 0;
  int64_t low_ = 0;   // the first expected (RTP-Info's) or the lowest received
  int64_t high_ = 0;  // the highest received
  uint64_t distinct_ = 0;
  std::vector<uint64_t> received_;
  // Sources and times.
  size_t current_source_ = 0;  // index into stats_.sources
  std::optional<time_point> last_at_;
  std::unique_ptr<reassembly> reasm_;
  bool finished_ = false;
  // Lateness against the first datagram of the current run, in microseconds (so 0 for the first);
  // the run's least is the reference that its jitter is measured from. Negative values are kept
  // as magnitudes. A run ends where the sender's clock starts again: a stream resumed after its
  // engine died (or a PLAY after PAUSE) comes after a silence, later than the run's schedule by
  // about that silence; the runs before are folded into past_jitter_us_.
  void end_run(micros_histogram& into) const;
  std::optional<time_point> first_at_;
  std::optional<time_point> last_timed_at_;
  int64_t first_timestamp_ = 0;
  int64_t last_timestamp_ = 0;  // extended across wraps
  int64_t least_lateness_us_ = 0;
  micros_histogram late_us_;
  micros_histogram early_us_;
  micros_histogram past_jitter_us_;
};

struct rtsp_report {
  uint32_t viewers = 0;   // sessions
  bool verified = false;  // segments were checked (scale 1 from the start, with a manifest)
  uint64_t segments = 0;  // segments whose bytes matched their SHA-256 (summed over sessions)
  uint64_t segments_failed = 0;  // verified segments with missing bytes
  uint64_t digest_mismatches = 0;
  uint64_t packets = 0;
  uint64_t bytes = 0;
  uint64_t rejected = 0;
  uint64_t rtcp_packets = 0;
  uint64_t seq_gaps = 0;
  uint64_t duplicates = 0;
  uint64_t handoffs = 0;
  double longest_gap = 0;  // seconds, the longest of every session
  double longest_handoff_gap = 0;
  double longest_inside_gap = 0;
  // Pacing jitter over every session's datagrams (stream_stats::jitter_us), in seconds.
  micros_histogram jitter_us;
  double jitter_p50 = 0;
  double jitter_p99 = 0;
  double jitter_max = 0;
  double seconds = 0;        // wall time
  double media_seconds = 0;  // per viewer: the program from the seek point
  // Source address:port → datagrams, in order of first appearance (session by session).
  std::vector<std::pair<std::string, uint64_t>> engines;
  std::vector<std::string> errors;  // first few, for the operator
  // A lost datagram is a failure even when nothing was verified: the stream was not whole.
  bool ok() const {
    return errors.empty() && segments_failed == 0 && digest_mismatches == 0 && seq_gaps == 0;
  }
  std::string to_text() const;
  boost::json::value to_json() const;
};

// Why `opts` cannot be played (a bad URL, scale, seek, ...), or nothing.
std::optional<std::string> invalid_options(const rtsp_play_options& opts);

// Plays with `opts.viewers` concurrent sessions on the caller's executor. Bad options are reported
// as errors in the report, before anything is sent.
boost::asio::awaitable<rtsp_report> play_rtsp(rtsp_play_options opts);

}  // namespace vodgrid::console
