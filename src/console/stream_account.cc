// stream_account: the sequence, source and timing accounting of one RTSP session's datagrams, and
// the reassembly of their TS payloads into segments checked by SHA-256.
#include <algorithm>
#include <bit>
#include <cmath>
#include <map>
#include <string>

#include "console/rtsp_player.h"
#include "push/rtp.h"

namespace vodgrid::console {

namespace {

// Sequence numbers tracked past the first: 2^27 datagrams is about four days of a 3.75 Mb/s
// stream, and the bitmap then holds 16 MiB.
constexpr int64_t max_seq_span = int64_t{1} << 27;
// Datagrams carry seven TS packets (DESIGN.md flow 8): the size assumed for one that never came.
constexpr size_t usual_payload = 7 * 188;

double seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

constexpr size_t exact_buckets = 256;                 // 1 us each
constexpr int sub_bits = 7;                           // 128 buckets per doubling above
constexpr int64_t largest_micros = int64_t{1} << 40;  // about 12 days

}  // namespace

size_t micros_histogram::bucket_of(int64_t us) {
  us = std::clamp<int64_t>(us, 0, largest_micros);
  if (us < static_cast<int64_t>(exact_buckets)) {
    return static_cast<size_t>(us);
  }
  int top = std::bit_width(static_cast<uint64_t>(us)) - 1;  // >= 8
  auto sub = static_cast<size_t>((us >> (top - sub_bits)) - (int64_t{1} << sub_bits));
  return exact_buckets + static_cast<size_t>(top - 8) * (size_t{1} << sub_bits) + sub;
}

int64_t micros_histogram::low(size_t i) {
  if (i < exact_buckets) {
    return static_cast<int64_t>(i);
  }
  auto top = static_cast<int>((i - exact_buckets) >> sub_bits) + 8;
  auto sub = static_cast<int64_t>((i - exact_buckets) & ((size_t{1} << sub_bits) - 1));
  return ((int64_t{1} << sub_bits) + sub) << (top - sub_bits);
}

void micros_histogram::add(int64_t us, uint64_t n) {
  auto i = bucket_of(us);
  if (i >= buckets_.size()) {
    buckets_.resize(i + 1, 0);
  }
  buckets_[i] += n;
  count_ += n;
}

void micros_histogram::merge(const micros_histogram& other) {
  if (other.buckets_.size() > buckets_.size()) {
    buckets_.resize(other.buckets_.size(), 0);
  }
  for (size_t i = 0; i < other.buckets_.size(); ++i) {
    buckets_[i] += other.buckets_[i];
  }
  count_ += other.count_;
}

int64_t micros_histogram::quantile(double q) const {
  if (count_ == 0) {
    return 0;
  }
  auto rank =
      static_cast<uint64_t>(std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(count_)));
  rank = std::max<uint64_t>(rank, 1);
  uint64_t seen = 0;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    seen += buckets_[i];
    if (seen >= rank) {
      return low(i + 1) - 1;
    }
  }
  return low(buckets_.size()) - 1;
}

// The TS payloads in sequence order, cut by segment sizes. Only datagrams that arrived ahead of a
// missing one are held. A datagram given up is taken to have carried as many bytes as the largest
// seen (the usual seven TS packets): the segments it touches fail, and the cut stays in step with
// the sender when the guess is right (when it is not, the following segments fail their digest).
struct stream_account::reassembly {
  std::vector<segment_check> segments;
  size_t window = 0;
  int64_t next = 0;  // the extended sequence number whose payload comes next
  bool started = false;
  std::map<int64_t, std::string> ahead;  // arrived before `next`'s
  size_t largest_payload = 0;
  // The segment being cut.
  size_t index = 0;
  uint64_t left = 0;  // its bytes still to come
  bool failed = false;
  std::unique_ptr<sha256_hasher> hasher = std::make_unique<sha256_hasher>();
  stream_stats* out = nullptr;

  void begin(int64_t first) {
    started = true;
    next = first;
    left = segments.empty() ? 0 : segments[0].size;
    close_empty_segments();
  }

  void close_segment() {
    if (failed) {
      ++out->segments_missing;
    } else if (hasher->finish() == segments[index].sha256) {
      ++out->segments_ok;
    } else {
      ++out->digest_mismatches;
    }
    ++index;
    failed = false;
    hasher = std::make_unique<sha256_hasher>();
    left = index < segments.size() ? segments[index].size : 0;
  }

  void close_empty_segments() {
    while (index < segments.size() && left == 0) {
      close_segment();
    }
  }

  // `bytes` payload bytes in order; `data` null when they are missing.
  void feed(const char* data, uint64_t bytes) {
    while (bytes > 0) {
      if (index >= segments.size()) {
        out->excess_bytes += bytes;
        return;
      }
      uint64_t take = std::min(bytes, left);
      if (data == nullptr) {
        failed = true;
      } else if (!failed) {
        hasher->update(std::string_view(data, take));
        data += take;
      }
      bytes -= take;
      left -= take;
      if (left == 0) {
        close_segment();
        close_empty_segments();
      }
    }
  }

  void drain() {
    for (auto it = ahead.begin(); it != ahead.end() && it->first == next; it = ahead.erase(it)) {
      feed(it->second.data(), it->second.size());
      ++next;
    }
  }

  void give_up_next() {
    auto until = ahead.empty() ? next + 1 : ahead.begin()->first;
    uint64_t guess = largest_payload > 0 ? largest_payload : usual_payload;
    feed(nullptr, static_cast<uint64_t>(until - next) * guess);
    next = until;
    drain();
  }

  void add(int64_t ext, std::span<const uint8_t> payload) {
    if (!started) {
      begin(ext);
    }
    largest_payload = std::max(largest_payload, payload.size());
    if (ext < next) {
      return;  // given up already: its segment has failed
    }
    if (ext == next) {
      feed(reinterpret_cast<const char*>(payload.data()), payload.size());
      ++next;
      drain();
      return;
    }
    ahead.emplace(ext, std::string(reinterpret_cast<const char*>(payload.data()), payload.size()));
    while (ahead.size() > window) {
      give_up_next();
    }
  }

  void finish() {
    while (!ahead.empty()) {
      give_up_next();
    }
    // The segment begun but not ended, and those never begun.
    out->segments_missing += segments.size() - std::min(index, segments.size());
    index = segments.size();
  }
};

stream_account::stream_account(options o) : opts_(std::move(o)) {
  if (!opts_.segments.empty()) {
    reasm_ = std::make_unique<reassembly>();
    reasm_->segments = opts_.segments;
    reasm_->window = std::max<size_t>(opts_.reorder_window, 1);
    reasm_->out = &stats_;
  }
  if (opts_.first_seq) {
    // The announced first is expected next: the offset keeps every extended number positive.
    started_ = true;
    origin_ = int64_t{*opts_.first_seq};
    low_ = origin_ + 65536;
    high_ = low_ - 1;
    if (reasm_) {
      reasm_->begin(low_);
    }
  }
}

stream_account::~stream_account() = default;

// The extended number nearest the highest so far (RFC 3550 A.1's idea, without probation).
int64_t stream_account::extend(uint16_t seq) const {
  auto delta = static_cast<int16_t>(static_cast<uint16_t>(seq - static_cast<uint16_t>(high_)));
  return high_ + delta;
}

// Records `ext`: whether it is new, had arrived already, or lies beyond what is tracked.
stream_account::arrival stream_account::mark_received(int64_t ext) {
  int64_t bit = ext - origin_;
  if (bit < 0 || bit >= max_seq_span) {
    return arrival::untracked;
  }
  auto word = static_cast<size_t>(bit / 64);
  uint64_t mask = uint64_t{1} << (bit % 64);
  if (word >= received_.size()) {
    received_.resize(std::max(word + 1, received_.size() * 2), 0);
  }
  if (received_[word] & mask) {
    return arrival::duplicate;
  }
  received_[word] |= mask;
  return arrival::fresh;
}

void stream_account::add(std::string_view source, time_point at,
                         std::span<const uint8_t> datagram) {
  auto rtp = push::parse_rtp(datagram);
  if (!rtp || rtp->header.payload_type != push::rtp_payload_mp2t ||
      (opts_.ssrc && rtp->header.ssrc != *opts_.ssrc)) {
    ++stats_.rejected;
    return;
  }
  ++stats_.packets;
  // Sources and gaps.
  if (stats_.sources.empty() || stats_.sources[current_source_].first != source) {
    auto it = std::find_if(stats_.sources.begin(), stats_.sources.end(),
                           [&](auto& s) { return s.first == source; });
    if (it == stats_.sources.end()) {
      it = stats_.sources.emplace(stats_.sources.end(), std::string(source), 0);
    }
    if (last_at_) {  // not the first datagram
      ++stats_.handoffs;
      stats_.longest_handoff_gap = std::max(stats_.longest_handoff_gap, seconds(at - *last_at_));
    }
    current_source_ = static_cast<size_t>(it - stats_.sources.begin());
  } else if (last_at_) {
    stats_.longest_inside_gap = std::max(stats_.longest_inside_gap, seconds(at - *last_at_));
  }
  if (last_at_) {
    stats_.longest_gap = std::max(stats_.longest_gap, seconds(at - *last_at_));
  }
  last_at_ = at;
  ++stats_.sources[current_source_].second;
  // Sequence numbers.
  int64_t ext = 0;
  if (!started_) {
    started_ = true;
    ext = int64_t{rtp->header.seq} + 65536;
    origin_ = ext - 65536;
    low_ = ext;
    high_ = ext;
  } else {
    ext = extend(rtp->header.seq);
  }
  switch (mark_received(ext)) {
    case arrival::fresh:
      break;
    case arrival::duplicate:
      ++stats_.duplicates;
      return;
    case arrival::untracked:
      stats_.seq_overflow = true;
      return;
  }
  ++distinct_;
  time_datagram(at, rtp->header.timestamp);
  low_ = std::min(low_, ext);
  high_ = std::max(high_, ext);
  auto payload = datagram.subspan(rtp->payload_offset, rtp->payload_bytes);
  stats_.bytes += payload.size();
  if (reasm_) {
    reasm_->add(ext, payload);
  }
}

// Lateness is measured against the first datagram of a run: it is due when its timestamp says,
// counted from the first's arrival. The least lateness of the run, known only at its end, is the
// reference of the jitter (end_run, stats()).
void stream_account::time_datagram(time_point at, uint32_t timestamp) {
  auto start_run = [&] {
    first_at_ = at;
    first_timestamp_ = timestamp;
    last_timestamp_ = timestamp;
    least_lateness_us_ = 0;
    late_us_ = {};
    early_us_ = {};
  };
  if (!first_at_) {
    start_run();
  }
  // Extended across the 32-bit wrap (13 hours at 90 kHz) from the last one seen.
  last_timestamp_ += static_cast<int32_t>(timestamp - static_cast<uint32_t>(last_timestamp_));
  double due_ns = static_cast<double>(last_timestamp_ - first_timestamp_) * 1e9 /
                  push::rtp_clock_hz / opts_.scale;
  auto arrived_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(at - *first_at_).count();
  int64_t late_us = std::llround((static_cast<double>(arrived_ns) - due_ns) / 1e3);
  // The sender's clock started again: after a silence of at least restart_silence, later than the
  // run's schedule by at least half of it. (Trick play's silences between key frames end on
  // schedule; a sender that stalls and then bursts to catch up stays in its run, and its burst
  // shows as jitter.)
  constexpr auto restart_silence = std::chrono::milliseconds(300);
  if (last_timed_at_ && at - *last_timed_at_ >= restart_silence &&
      late_us - least_lateness_us_ >=
          std::chrono::duration_cast<std::chrono::microseconds>(at - *last_timed_at_).count() / 2) {
    end_run(past_jitter_us_);
    start_run();
    late_us = 0;
  }
  last_timed_at_ = at;
  least_lateness_us_ = std::min(least_lateness_us_, late_us);
  if (late_us >= 0) {
    late_us_.add(late_us);
  } else {
    early_us_.add(-late_us);
  }
}

// The current run's lateness less its least, added to `into`: within a bucket's width (under 1%)
// of each value (each bucket counts at its middle).
void stream_account::end_run(micros_histogram& into) const {
  auto shift = [&](const micros_histogram& h, int64_t sign) {
    auto b = h.buckets();
    for (size_t i = 0; i < b.size(); ++i) {
      if (b[i] > 0) {
        int64_t mid = (micros_histogram::low(i) + micros_histogram::low(i + 1) - 1) / 2;
        into.add(sign * mid - least_lateness_us_, b[i]);
      }
    }
  };
  shift(late_us_, 1);
  shift(early_us_, -1);
}

void stream_account::finish() {
  if (finished_) {
    return;
  }
  finished_ = true;
  if (reasm_) {
    reasm_->finish();
  }
}

stream_stats stream_account::stats() const {
  stream_stats s = stats_;
  auto span = high_ >= low_ ? static_cast<uint64_t>(high_ - low_ + 1) : 0;
  s.seq_gaps = span > distinct_ ? span - distinct_ : 0;
  s.jitter_us.merge(past_jitter_us_);
  end_run(s.jitter_us);
  return s;
}

}  // namespace vodgrid::console
