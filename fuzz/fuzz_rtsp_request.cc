// Push streaming's parsers (src/push/rtsp.h, ts.h) on hostile bytes: the input is parsed as an RTSP
// request and response (small limits and the defaults), as Transport, Range, Scale and Session
// values, and as an MPEG-TS segment. Checks what each promises: a complete request writes back to
// text that parses to the same request, values are in range, the index lies inside the segment and
// due_at never goes back.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "push/rtsp.h"
#include "push/ts.h"

namespace push = vodgrid::push;

namespace {

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

void check_outcome(const push::parse_outcome& o, size_t size) {
  if (o.state == push::parse_state::complete) {
    check(o.consumed > 0 && o.consumed <= size);
  } else if (o.state == push::parse_state::bad) {
    check(o.status == 400 || o.status == 413 || o.status == 505);
    check(!o.why.empty() && o.why.find('\n') == std::string::npos);
  }
}

void request(std::string_view in, const push::rtsp_limits& lim) {
  push::rtsp_request r;
  const auto o = push::parse_request(in, r, lim);
  check_outcome(o, in.size());
  if (o.state != push::parse_state::complete) {
    return;
  }
  // What we parsed, written back, parses to the same request (under no tighter limits).
  const std::string text = push::write_request(r);
  push::rtsp_limits roomy;
  roomy.header_bytes = text.size() + 1;
  roomy.headers = r.headers.size() + 2;  // and CSeq, Content-Length
  push::rtsp_request back;
  const auto again = push::parse_request(text, back, roomy);
  check(again.state == push::parse_state::complete && again.consumed == text.size());
  check(back.method == r.method && back.uri == r.uri && back.cseq == r.cseq);
  check(back.headers == r.headers && back.body == r.body);
}

void response(std::string_view in) {
  push::rtsp_response r;
  const auto o = push::parse_response(in, r);
  check_outcome(o, in.size());
  if (o.state == push::parse_state::complete) {
    check(r.status >= 100 && r.status <= 999);
  }
}

void values(std::string_view v) {
  if (auto t = push::parse_transport(v)) {
    check(t->client_rtp != 0 && t->client_rtcp != 0 && t->client_rtp != t->client_rtcp);
  }
  if (auto t = push::parse_transport(v, push::lower_transport::tcp)) {
    check(t->interleaved && t->channel_rtp != t->channel_rtcp);
  }
  if (auto f = push::interleaved_frame(v)) {
    check(v.front() == '$' && f->size <= v.size() && (f->size == 0 || f->size >= 4));
  }
  if (auto r = push::parse_range(v)) {
    if (r->start) {
      check(std::isfinite(*r->start) && *r->start >= 0);
    }
    if (r->end) {
      check(std::isfinite(*r->end) && *r->end >= 0);
      check(!r->start || *r->start <= *r->end);
    }
  }
  if (auto s = push::parse_scale(v)) {
    check(std::isfinite(*s) && *s != 0 && std::fabs(*s) <= 64);
  }
  check(push::session_id(v).size() <= v.size());
}

void segment(std::string bytes) {
  bytes.resize(bytes.size() / push::ts_packet_bytes * push::ts_packet_bytes);
  // Sync bytes set, so that the scan goes past the first packet.
  for (size_t at = 0; at < bytes.size(); at += push::ts_packet_bytes) {
    bytes[at] = 0x47;
  }
  auto ix = push::index_ts(bytes);
  check(ix.has_value());
  check(ix->size == bytes.size() && ix->psi_bytes <= bytes.size());
  uint64_t last = 0;
  for (const auto& k : ix->keyframes) {
    check(k.offset % push::ts_packet_bytes == 0 && k.offset >= last);
    check(k.length > 0 && k.offset + k.length <= bytes.size());
    check(std::isfinite(k.seconds));
    last = k.offset + 1;
  }
  for (size_t i = 1; i < ix->pcrs.size(); ++i) {
    check(ix->pcrs[i].offset > ix->pcrs[i - 1].offset);
    check(ix->pcrs[i].seconds >= ix->pcrs[i - 1].seconds);
  }
  double t = 0;
  for (uint64_t at = 0; at <= bytes.size(); at += push::ts_packet_bytes) {
    const double u = push::due_at(*ix, at, 2.0);
    check(u >= t && u <= 2.0);
    t = u;
  }
  const uint64_t o = push::offset_for(*ix, 0.5);
  check(o % push::ts_packet_bytes == 0 && o <= bytes.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  push::rtsp_limits small;
  small.header_bytes = 512;
  small.body_bytes = 256;
  small.headers = 8;
  request(in, small);
  request(in, {});
  response(in);
  values(in);
  // Each line too, as a header value would come.
  for (size_t at = 0, n = 0; at < in.size() && n < 32; ++n) {
    size_t nl = in.find('\n', at);
    if (nl == std::string_view::npos) {
      nl = in.size();
    }
    const std::string_view line = in.substr(at, nl - at);
    values(line.substr(line.find(':') == std::string_view::npos ? 0 : line.find(':') + 1));
    at = nl + 1;
  }
  segment(std::string(in));
  return 0;
}
