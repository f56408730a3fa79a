// RTSP 1.0 (RFC 2326) messages as text: requests and responses parsed from the front of a buffer
// and written back, and the header values push streaming needs (Transport, Range, Scale, Session).
// Pure functions of their input, no I/O: the director's sessions and the console's client both use
// them, and fuzz/fuzz_rtsp_request.cc feeds them hostile bytes. Written by hand: no Debian library
// parses RTSP (live555's parser is tied to its own event loop and server classes).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace vodgrid::push {

using header_list = std::vector<std::pair<std::string, std::string>>;

struct rtsp_limits {
  size_t header_bytes = 8 * 1024;  // request or status line plus headers
  size_t body_bytes = 64 * 1024;   // Content-Length above this is refused
  size_t headers = 64;             // header lines
};

struct rtsp_request {
  std::string method;   // as sent ("DESCRIBE"); methods are case-sensitive (RFC 2326 6.1)
  std::string uri;      // the Request-URI as sent
  uint32_t cseq = 0;    // CSeq, required
  header_list headers;  // as sent, but not CSeq or Content-Length (cseq and body hold them)
  std::string body;
  // The value of the first header named `name` (case-insensitive), or "" if there is none.
  std::string_view header(std::string_view name) const;
};

struct rtsp_response {
  int status = 200;
  std::string reason;  // "" → the standard phrase of `status`
  uint32_t cseq = 0;
  header_list headers;  // not CSeq or Content-Length, which write_response sets
  std::string body;
  std::string_view header(std::string_view name) const;
};

enum class parse_state { complete, need_more, bad };

struct parse_outcome {
  parse_state state = parse_state::need_more;
  size_t consumed = 0;  // bytes of the message when complete
  int status = 400;     // when bad: the status to answer with (400, 413, 505, ...)
  std::string why;      // when bad: one line for the reply and the log
};

// One request from the front of `in`. need_more: `in` holds a prefix of a valid request (and is
// still under the limits). A line may end in CRLF or LF. Interleaved binary data ('$') is bad: the
// caller takes such frames off first (interleaved_frame).
parse_outcome parse_request(std::string_view in, rtsp_request& out, const rtsp_limits& lim = {});
// One response, for the console's client.
parse_outcome parse_response(std::string_view in, rtsp_response& out, const rtsp_limits& lim = {});

// An interleaved frame at the front of `in` (RFC 2326 10.12: '$', a channel, a 16-bit length, the
// data): its channel and size in all (4 + length) once whole; nullopt when `in` does not start with
// '$' or holds only part of the frame (need_more then).
struct interleaved_frame_at {
  uint8_t channel = 0;
  size_t size = 0;  // 0: not whole yet
};
std::optional<interleaved_frame_at> interleaved_frame(std::string_view in);
// The 4 bytes that go before `length` bytes of data on `channel`.
std::array<uint8_t, 4> interleaved_header(uint8_t channel, uint16_t length);

// Text of a message: status line or request line, CSeq, the headers, Content-Length when there is
// a body, the body.
std::string write_response(const rtsp_response& r);
std::string write_request(const rtsp_request& r);
std::string_view reason_phrase(int status);

// The first transport of a Transport header we can serve, in the console's order, of the kinds
// `lower` allows: RTP/AVP or RTP/AVP/UDP, unicast, with client_port=a-b (b = a + 1 when only a is
// given); or RTP/AVP/TCP with interleaved=a-b (RFC 2326 10.12: RTP and RTCP inside the RTSP
// connection; 0-1 when not given). `any` takes either (a plain RTSP connection), `tcp` only the
// interleaved kind (RTSPS). errc::invalid_argument (→ 461 Unsupported Transport) when none is.
enum class lower_transport { udp, tcp, any };
struct transport_spec {
  bool interleaved = false;  // RTP/AVP/TCP: the channels below, not the ports
  uint16_t client_rtp = 0;
  uint16_t client_rtcp = 0;
  uint8_t channel_rtp = 0;
  uint8_t channel_rtcp = 1;
  std::string destination;  // "destination=" when given (we refuse any but the requester's)
};
result<transport_spec> parse_transport(std::string_view header,
                                       lower_transport lower = lower_transport::udp);
// UDP: "RTP/AVP;unicast;client_port=a-b;server_port=c-d;ssrc=XXXXXXXX" (8 hex digits);
// interleaved: "RTP/AVP/TCP;unicast;interleaved=a-b;ssrc=XXXXXXXX".
std::string write_transport(const transport_spec& t, uint16_t server_rtp, uint16_t server_rtcp,
                            uint32_t ssrc);

// Range: npt=START-[END] in seconds ("now" as START means nullopt: where the session is);
// also "npt=hh:mm:ss.frac-". errc::invalid_argument otherwise (→ 457 Invalid Range).
struct npt_range {
  std::optional<double> start;
  std::optional<double> end;
};
result<npt_range> parse_range(std::string_view header);
std::string write_range(double start, std::optional<double> end);  // "npt=12.000-30.000"

// Scale: a finite number other than 0 with |scale| <= 64. errc::invalid_argument otherwise.
result<double> parse_scale(std::string_view header);

// The session id of a Session header ("id;timeout=60" → "id"); "" if none.
std::string_view session_id(std::string_view header);

}  // namespace vodgrid::push
