// RTSP 1.0 (RFC 2326) messages parsed from and written to text, and the header values push
// streaming reads. The input may be hostile: every scan is bounded by the limits, numbers are read
// with std::from_chars, nothing throws.
#include "push/rtsp.h"

#include <charconv>
#include <cmath>

#include <fmt/format.h>

namespace vodgrid::push {
namespace {

constexpr std::string_view rtsp_version = "RTSP/1.0";

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) {
      return false;
    }
  }
  return true;
}

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// RFC 2616 2.2 token characters (RFC 2326 15.1 uses the same).
bool is_token_char(char c) {
  if (c >= '0' && c <= '9') {
    return true;
  }
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
    return true;
  }
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (char c : s) {
    if (!is_token_char(c)) {
      return false;
    }
  }
  return true;
}

bool is_ctl(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

// Whole-string unsigned integer: digits only (no sign, no space), within `max`.
template <class T>
std::optional<T> parse_uint(std::string_view s, T max) {
  if (s.empty() || s.size() > 20) {
    return std::nullopt;
  }
  for (char c : s) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
  }
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v > static_cast<uint64_t>(max)) {
    return std::nullopt;
  }
  return static_cast<T>(v);
}

// Whole-string decimal: 1*DIGIT ["." *DIGIT], or "." 1*DIGIT; finite by construction.
std::optional<double> parse_decimal(std::string_view s) {
  if (s.empty() || s.size() > 32) {
    return std::nullopt;
  }
  size_t digits = 0;
  size_t dots = 0;
  for (char c : s) {
    if (c >= '0' && c <= '9') {
      ++digits;
    } else if (c == '.') {
      ++dots;
    } else {
      return std::nullopt;
    }
  }
  if (digits == 0 || dots > 1) {
    return std::nullopt;
  }
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, std::chars_format::fixed);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) {
    return std::nullopt;
  }
  return v;
}

// At most `max` bytes of `s` fit for a one-line message: control characters become '?'.
std::string printable(std::string_view s, size_t max) {
  std::string out(s.substr(0, max));
  for (char& c : out) {
    if (is_ctl(c)) {
      c = '?';
    }
  }
  return out;
}

parse_outcome bad(int status, std::string why) {
  parse_outcome o;
  o.state = parse_state::bad;
  o.status = status;
  o.why = std::move(why);
  return o;
}

// The head of a message: its first line and its header lines, up to the blank line.
struct head {
  std::string_view first_line;
  header_list headers;
  size_t end = 0;  // just past the blank line
};

// Reads the head of a message; the first line is checked by `check_first` as soon as it is
// whole, so that garbage is refused before the blank line comes.
using first_line_check = std::optional<parse_outcome> (*)(std::string_view);

parse_outcome read_head(std::string_view in, const rtsp_limits& lim, first_line_check check_first,
                        head& h) {
  size_t pos = 0;
  // Empty lines before a message are tolerated (RFC 2616 4.1, which RTSP follows).
  while (pos < in.size() && pos < lim.header_bytes && (in[pos] == '\r' || in[pos] == '\n')) {
    ++pos;
  }
  bool have_first = false;
  while (true) {
    const size_t window = std::min(in.size(), lim.header_bytes);
    const size_t nl = pos < window ? in.find('\n', pos) : std::string_view::npos;
    if (nl == std::string_view::npos || nl >= window) {
      // A first line still arriving is refused at once if it holds binary bytes.
      if (!have_first) {
        for (char c : in.substr(pos, window - std::min(pos, window))) {
          if (is_ctl(c) && c != '\r') {
            return bad(400, "control character in the first line");
          }
        }
      }
      if (in.size() >= lim.header_bytes) {
        return bad(413, fmt::format("the message head exceeds {} bytes", lim.header_bytes));
      }
      parse_outcome o;
      o.state = parse_state::need_more;
      return o;
    }
    std::string_view line = in.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    pos = nl + 1;
    if (!have_first) {
      if (auto refused = check_first(line)) {
        return *refused;
      }
      h.first_line = line;
      have_first = true;
      continue;
    }
    if (line.empty()) {
      h.end = pos;
      parse_outcome o;
      o.state = parse_state::complete;
      return o;
    }
    if (line.front() == ' ' || line.front() == '\t') {
      return bad(400, "folded header lines are not supported");
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || !is_token(line.substr(0, colon))) {
      return bad(400, "malformed header line");
    }
    const std::string_view value = trim(line.substr(colon + 1));
    for (char c : value) {
      if (is_ctl(c) && c != '\t') {
        return bad(400, "control character in a header value");
      }
    }
    if (h.headers.size() >= lim.headers) {
      return bad(413, fmt::format("more than {} header lines", lim.headers));
    }
    h.headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
  }
}

// The value of the only header `name`: nullopt if none, "bad" set if it comes twice with
// different values.
std::optional<std::string_view> single_header(const header_list& hs, std::string_view name,
                                              bool& twice) {
  std::optional<std::string_view> found;
  for (const auto& [k, v] : hs) {
    if (iequals(k, name)) {
      if (found && *found != v) {
        twice = true;
      }
      if (!found) {
        found = v;
      }
    }
  }
  return found;
}

// CSeq and Content-Length taken out of the head into the message; the body's bytes checked.
struct framing {
  std::optional<uint32_t> cseq;
  size_t body_bytes = 0;
};

parse_outcome read_framing(std::string_view in, const rtsp_limits& lim, head& h, framing& f) {
  bool twice = false;
  if (auto cseq = single_header(h.headers, "CSeq", twice)) {
    f.cseq = parse_uint<uint32_t>(*cseq, UINT32_MAX);
    if (!f.cseq) {
      return bad(400, "CSeq is not a number");
    }
  }
  if (auto length = single_header(h.headers, "Content-Length", twice)) {
    const auto n = parse_uint<uint64_t>(*length, UINT64_MAX);
    if (!n) {
      return bad(400, "Content-Length is not a number");
    }
    if (*n > lim.body_bytes) {
      return bad(413,
                 fmt::format("a body of {} bytes is over the limit of {}", *n, lim.body_bytes));
    }
    f.body_bytes = static_cast<size_t>(*n);
  }
  if (twice) {
    return bad(400, "CSeq or Content-Length given twice");
  }
  std::erase_if(h.headers, [](const auto& kv) {
    return iequals(kv.first, "CSeq") || iequals(kv.first, "Content-Length");
  });
  parse_outcome o;
  if (in.size() - h.end < f.body_bytes) {
    o.state = parse_state::need_more;
    return o;
  }
  o.state = parse_state::complete;
  o.consumed = h.end + f.body_bytes;
  return o;
}

// The version field: RTSP/1.0, another RTSP version (505) or not RTSP at all (400).
std::optional<parse_outcome> check_version(std::string_view v) {
  if (v == rtsp_version) {
    return std::nullopt;
  }
  if (v.starts_with("RTSP/")) {
    return bad(505, fmt::format("RTSP version {} is not supported", printable(v.substr(5), 16)));
  }
  return bad(400, "not an RTSP message");
}

struct request_line {
  std::string_view method;
  std::string_view uri;
  std::string_view version;
};

std::optional<request_line> split_request_line(std::string_view line) {
  const size_t a = line.find(' ');
  const size_t b = a == std::string_view::npos ? a : line.find(' ', a + 1);
  if (b == std::string_view::npos || line.find(' ', b + 1) != std::string_view::npos) {
    return std::nullopt;
  }
  return request_line{line.substr(0, a), line.substr(a + 1, b - a - 1), line.substr(b + 1)};
}

std::optional<parse_outcome> check_request_line(std::string_view line) {
  auto r = split_request_line(line);
  if (!r) {
    return bad(400, "malformed request line");
  }
  if (!is_token(r->method)) {
    return bad(400, "the method is not a token");
  }
  if (r->uri.empty()) {
    return bad(400, "empty Request-URI");
  }
  for (char c : r->uri) {
    if (is_ctl(c)) {
      return bad(400, "control character in the Request-URI");
    }
  }
  return check_version(r->version);
}

std::optional<parse_outcome> check_status_line(std::string_view line) {
  const size_t sp = line.find(' ');
  if (sp == std::string_view::npos) {
    return bad(400, "malformed status line");
  }
  if (auto refused = check_version(line.substr(0, sp))) {
    return refused;
  }
  const std::string_view rest = line.substr(sp + 1);
  const std::string_view code = rest.substr(0, 3);
  if (code.size() != 3 || !parse_uint<int>(code, 999) || code[0] == '0' ||
      (rest.size() > 3 && rest[3] != ' ')) {
    return bad(400, "malformed status code");
  }
  return std::nullopt;
}

// Header text, with CR and LF in values replaced: a value that came from a peer cannot add lines.
void append_header(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += ": ";
  for (char c : value) {
    out += (c == '\r' || c == '\n') ? ' ' : c;
  }
  out += "\r\n";
}

void append_rest(std::string& out, uint32_t cseq, const header_list& headers,
                 const std::string& body) {
  append_header(out, "CSeq", std::to_string(cseq));
  for (const auto& [k, v] : headers) {
    append_header(out, k, v);
  }
  if (!body.empty()) {
    append_header(out, "Content-Length", std::to_string(body.size()));
  }
  out += "\r\n";
  out += body;
}

std::string_view find_header(const header_list& hs, std::string_view name) {
  for (const auto& [k, v] : hs) {
    if (iequals(k, name)) {
      return v;
    }
  }
  return {};
}

}  // namespace

std::string_view rtsp_request::header(std::string_view name) const {
  return find_header(headers, name);
}
std::string_view rtsp_response::header(std::string_view name) const {
  return find_header(headers, name);
}

parse_outcome parse_request(std::string_view in, rtsp_request& out, const rtsp_limits& lim) {
  if (!in.empty() && in.front() == '$') {
    return bad(400, "interleaved data is not supported");
  }
  head h;
  auto o = read_head(in, lim, check_request_line, h);
  if (o.state != parse_state::complete) {
    return o;
  }
  framing f;
  o = read_framing(in, lim, h, f);
  if (o.state != parse_state::complete) {
    return o;
  }
  if (!f.cseq) {
    return bad(400, "missing CSeq");
  }
  const auto line = *split_request_line(h.first_line);
  out.method = std::string(line.method);
  out.uri = std::string(line.uri);
  out.cseq = *f.cseq;
  out.headers = std::move(h.headers);
  out.body = std::string(in.substr(h.end, f.body_bytes));
  return o;
}

parse_outcome parse_response(std::string_view in, rtsp_response& out, const rtsp_limits& lim) {
  head h;
  auto o = read_head(in, lim, check_status_line, h);
  if (o.state != parse_state::complete) {
    return o;
  }
  framing f;
  o = read_framing(in, lim, h, f);
  if (o.state != parse_state::complete) {
    return o;
  }
  const std::string_view rest = h.first_line.substr(h.first_line.find(' ') + 1);
  out.status = *parse_uint<int>(rest.substr(0, 3), 999);
  out.reason = rest.size() > 4 ? std::string(rest.substr(4)) : std::string();
  out.cseq = f.cseq.value_or(0);
  out.headers = std::move(h.headers);
  out.body = std::string(in.substr(h.end, f.body_bytes));
  return o;
}

std::string write_response(const rtsp_response& r) {
  std::string out = fmt::format("{} {:03d} ", rtsp_version, r.status);
  out += r.reason.empty() ? reason_phrase(r.status) : std::string_view(r.reason);
  out += "\r\n";
  append_rest(out, r.cseq, r.headers, r.body);
  return out;
}

std::string write_request(const rtsp_request& r) {
  std::string out = fmt::format("{} {} {}\r\n", r.method, r.uri, rtsp_version);
  append_rest(out, r.cseq, r.headers, r.body);
  return out;
}

std::string_view reason_phrase(int status) {
  struct phrase {
    int status;
    std::string_view text;
  };
  // RFC 2326 7.1.1.
  static constexpr phrase phrases[] = {
      {100, "Continue"},
      {200, "OK"},
      {201, "Created"},
      {250, "Low on Storage Space"},
      {300, "Multiple Choices"},
      {301, "Moved Permanently"},
      {302, "Moved Temporarily"},
      {303, "See Other"},
      {304, "Not Modified"},
      {305, "Use Proxy"},
      {400, "Bad Request"},
      {401, "Unauthorized"},
      {402, "Payment Required"},
      {403, "Forbidden"},
      {404, "Not Found"},
      {405, "Method Not Allowed"},
      {406, "Not Acceptable"},
      {407, "Proxy Authentication Required"},
      {408, "Request Time-out"},
      {410, "Gone"},
      {411, "Length Required"},
      {412, "Precondition Failed"},
      {413, "Request Entity Too Large"},
      {414, "Request-URI Too Large"},
      {415, "Unsupported Media Type"},
      {451, "Parameter Not Understood"},
      {452, "Conference Not Found"},
      {453, "Not Enough Bandwidth"},
      {454, "Session Not Found"},
      {455, "Method Not Valid in This State"},
      {456, "Header Field Not Valid for Resource"},
      {457, "Invalid Range"},
      {458, "Parameter Is Read-Only"},
      {459, "Aggregate operation not allowed"},
      {460, "Only aggregate operation allowed"},
      {461, "Unsupported transport"},
      {462, "Destination unreachable"},
      {500, "Internal Server Error"},
      {501, "Not Implemented"},
      {502, "Bad Gateway"},
      {503, "Service Unavailable"},
      {504, "Gateway Time-out"},
      {505, "RTSP Version not supported"},
      {551, "Option not supported"},
  };
  for (const auto& p : phrases) {
    if (p.status == status) {
      return p.text;
    }
  }
  // An unknown code reads as the x00 of its class (RFC 2326 7.1.1).
  if (status >= 100 && status < 600 && status % 100 != 0) {
    return reason_phrase(status / 100 * 100);
  }
  return "Unknown";
}

result<transport_spec> parse_transport(std::string_view header, lower_transport lower) {
  size_t start = 0;
  const bool udp_ok = lower != lower_transport::tcp;
  const bool tcp_ok = lower != lower_transport::udp;
  // Each comma-separated transport-spec in turn (RFC 2326 12.39); the first we can serve wins.
  for (int n = 0; start <= header.size() && n < 64; ++n) {
    size_t comma = header.find(',', start);
    if (comma == std::string_view::npos) {
      comma = header.size();
    }
    const std::string_view spec = trim(header.substr(start, comma - start));
    start = comma + 1;
    std::string_view protocol = spec.substr(0, spec.find(';'));
    const bool tcp = iequals(protocol, "RTP/AVP/TCP");
    const bool udp = iequals(protocol, "RTP/AVP") || iequals(protocol, "RTP/AVP/UDP");
    if (!(tcp && tcp_ok) && !(udp && udp_ok)) {
      continue;  // a lower transport not taken here, or something else
    }
    bool usable = true;
    std::optional<transport_spec> t;
    if (tcp) {
      t = transport_spec{};
      t->interleaved = true;
    }
    std::string_view params = spec.substr(protocol.size());
    while (usable && !params.empty()) {
      params.remove_prefix(1);  // the ';'
      const std::string_view p = trim(params.substr(0, params.find(';')));
      params.remove_prefix(std::min(params.size(), params.find(';')));
      const std::string_view name = p.substr(0, p.find('='));
      const std::string_view value =
          p.find('=') == std::string_view::npos ? std::string_view() : p.substr(p.find('=') + 1);
      if (iequals(name, "multicast") || (!tcp && iequals(name, "interleaved"))) {
        usable = false;
      } else if (iequals(name, "mode")) {
        const std::string_view m = trim(value);
        usable = iequals(m, "play") || iequals(m, "\"play\"");
      } else if (tcp && iequals(name, "interleaved")) {
        const auto dash = value.find('-');
        const auto a = parse_uint<uint8_t>(value.substr(0, dash), 254);
        std::optional<uint8_t> b;
        if (dash == std::string_view::npos) {
          b = a ? std::optional<uint8_t>(*a + 1) : std::nullopt;
        } else {
          b = parse_uint<uint8_t>(value.substr(dash + 1), 255);
        }
        if (!a || !b || *a == *b) {
          usable = false;
        } else {
          t->channel_rtp = *a;
          t->channel_rtcp = *b;
        }
      } else if (!tcp && iequals(name, "client_port")) {
        const auto dash = value.find('-');
        const auto a = parse_uint<uint16_t>(value.substr(0, dash), 65535);
        std::optional<uint16_t> b;
        if (dash == std::string_view::npos) {
          b = a && *a < 65535 ? std::optional<uint16_t>(*a + 1) : std::nullopt;
        } else {
          b = parse_uint<uint16_t>(value.substr(dash + 1), 65535);
        }
        if (!a || !b || *a == 0 || *b == 0 || *a == *b) {
          usable = false;
        } else {
          t = t.value_or(transport_spec{});
          t->client_rtp = *a;
          t->client_rtcp = *b;
        }
      } else if (iequals(name, "destination")) {
        t = t.value_or(transport_spec{});
        if (value.size() > 255) {
          usable = false;
        } else {
          t->destination = std::string(value);
        }
      }
    }
    if (usable && t && (t->interleaved || t->client_rtp != 0)) {
      return std::move(*t);
    }
  }
  if (!udp_ok) {
    return make_error(errc::invalid_argument,
                      "no transport is RTP/AVP/TCP;interleaved=a-b: over RTSPS, RTP travels only "
                      "inside the TLS connection");
  }
  return make_error(errc::invalid_argument,
                    tcp_ok ? "no transport is RTP/AVP over unicast UDP with client_port=a-b, or "
                             "RTP/AVP/TCP;interleaved=a-b"
                           : "no transport is RTP/AVP over unicast UDP with client_port=a-b");
}

std::string write_transport(const transport_spec& t, uint16_t server_rtp, uint16_t server_rtcp,
                            uint32_t ssrc) {
  if (t.interleaved) {
    return fmt::format("RTP/AVP/TCP;unicast;interleaved={}-{};ssrc={:08X}", t.channel_rtp,
                       t.channel_rtcp, ssrc);
  }
  return fmt::format("RTP/AVP;unicast;client_port={}-{};server_port={}-{};ssrc={:08X}",
                     t.client_rtp, t.client_rtcp, server_rtp, server_rtcp, ssrc);
}

std::optional<interleaved_frame_at> interleaved_frame(std::string_view in) {
  if (in.empty() || in.front() != '$') {
    return std::nullopt;
  }
  interleaved_frame_at f;
  if (in.size() < 4) {
    return f;
  }
  f.channel = static_cast<uint8_t>(in[1]);
  size_t length =
      static_cast<size_t>(static_cast<uint8_t>(in[2])) << 8 | static_cast<uint8_t>(in[3]);
  if (in.size() >= 4 + length) {
    f.size = 4 + length;
  }
  return f;
}

std::array<uint8_t, 4> interleaved_header(uint8_t channel, uint16_t length) {
  return {'$', channel, static_cast<uint8_t>(length >> 8), static_cast<uint8_t>(length & 0xff)};
}

namespace {

// npt-time (RFC 2326 3.6) but "now": seconds with a fraction, or hh:mm:ss with a fraction.
std::optional<double> parse_npt_time(std::string_view s) {
  const size_t c1 = s.find(':');
  if (c1 == std::string_view::npos) {
    return parse_decimal(s);
  }
  const size_t c2 = s.find(':', c1 + 1);
  if (c2 == std::string_view::npos) {
    return std::nullopt;
  }
  const std::string_view mm_text = s.substr(c1 + 1, c2 - c1 - 1);
  const std::string_view ss_text = s.substr(c2 + 1);
  const size_t ss_whole = ss_text.substr(0, ss_text.find('.')).size();
  if (mm_text.size() > 2 || ss_whole < 1 || ss_whole > 2) {
    return std::nullopt;
  }
  const auto hh = parse_uint<uint32_t>(s.substr(0, c1), 999'999);
  const auto mm = parse_uint<uint32_t>(mm_text, 59);
  const auto ss = parse_decimal(ss_text);
  if (!hh || !mm || !ss || *ss >= 60) {
    return std::nullopt;
  }
  return *hh * 3600.0 + *mm * 60.0 + *ss;
}

}  // namespace

result<npt_range> parse_range(std::string_view header) {
  auto refuse = [&] {
    return make_error(errc::invalid_argument,
                      fmt::format("Range '{}' is not npt=START-[END]", printable(header, 64)));
  };
  std::string_view v = trim(header.substr(0, header.find(';')));  // a ";time=" is ignored
  if (!istarts_with(v, "npt")) {
    return refuse();
  }
  v = trim(v.substr(3));
  if (v.empty() || v.front() != '=') {
    return refuse();
  }
  v = trim(v.substr(1));
  const size_t dash = v.find('-');
  if (dash == std::string_view::npos) {
    return refuse();
  }
  const std::string_view start = trim(v.substr(0, dash));
  const std::string_view end = trim(v.substr(dash + 1));
  npt_range r;
  if (iequals(start, "now")) {
    r.start = std::nullopt;
  } else if (auto s = parse_npt_time(start)) {
    r.start = *s;
  } else {
    return refuse();
  }
  if (!end.empty()) {
    auto e = parse_npt_time(end);
    if (!e || (r.start && *e < *r.start)) {
      return refuse();
    }
    r.end = *e;
  }
  return r;
}

std::string write_range(double start, std::optional<double> end) {
  if (end) {
    return fmt::format("npt={:.3f}-{:.3f}", start, *end);
  }
  return fmt::format("npt={:.3f}-", start);
}

result<double> parse_scale(std::string_view header) {
  std::string_view v = trim(header);
  const bool negative = !v.empty() && v.front() == '-';
  if (negative) {
    v.remove_prefix(1);
  }
  const auto x = parse_decimal(v);
  if (!x || *x == 0 || *x > 64) {
    return make_error(
        errc::invalid_argument,
        fmt::format("Scale '{}' is not a number in [-64, 64] other than 0", printable(header, 32)));
  }
  return negative ? -*x : *x;
}

std::string_view session_id(std::string_view header) {
  return trim(trim(header).substr(0, trim(header).find(';')));
}

}  // namespace vodgrid::push
