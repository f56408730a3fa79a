// The console's RTSP client: one session per viewer (its own TCP connection to the director and UDP
// port pair), the RTP it receives fed to a stream_account, and the sessions' report.
#include "console/rtsp_player.h"
#include "push/rtp.h"

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/url/parse.hpp>

#include <sys/socket.h>
#include <sys/uio.h>
#include <ctime>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>

#include "api/api.h"
#include "net/async_event.h"
#include "net/client.h"
#include "net/task_group.h"
#include "net/use_tuple.h"
#include "push/rtsp.h"

namespace vodgrid::console {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using udp = asio::ip::udp;
using steady = std::chrono::steady_clock;
using net::use_tuple;

std::string rtsp_report::to_text() const {
  std::string out = fmt::format(
      "rtsp viewers {}  packets {}  bytes {}  rejected {}  rtcp {}  wall {:.2f} s  media {:.2f} s "
      "per viewer\n",
      viewers, packets, bytes, rejected, rtcp_packets, seconds, media_seconds);
  out += fmt::format("sequence: gaps {}  duplicates {}\n", seq_gaps, duplicates);
  if (verified) {
    out += fmt::format("verify: segments {}  failed {}  digest mismatches {}\n", segments,
                       segments_failed, digest_mismatches);
  } else {
    out += "verify: off (only at scale 1 from the start)\n";
  }
  // The two gaps side by side, in the same unit: the hand-off's cost is their ratio.
  out += fmt::format(
      "longest gap between datagrams: at a hand-off {:.1f} ms  inside one engine {:.1f} ms  "
      "(hand-offs {}, longest overall {:.1f} ms)\n",
      longest_handoff_gap * 1e3, longest_inside_gap * 1e3, handoffs, longest_gap * 1e3);
  out += fmt::format(
      "pacing jitter (lateness above each session's least): p50 {:.3f} ms  p99 {:.3f} "
      "ms  max {:.3f} ms\n",
      jitter_p50 * 1e3, jitter_p99 * 1e3, jitter_max * 1e3);
  out += "engines (datagrams, in order of first use):";
  for (auto& [e, n] : engines) {
    out += fmt::format(" {}={}", e, n);
  }
  out += "\n";
  for (auto& e : errors) {
    out += "error: " + e + "\n";
  }
  out += ok() ? "result: ok\n" : "result: FAILED\n";
  return out;
}

json::value rtsp_report::to_json() const {
  json::array eng;  // an array: the order is the stream's
  for (auto& [e, n] : engines) {
    eng.push_back(json::object{{"engine", e}, {"datagrams", n}});
  }
  json::array errs;
  for (auto& e : errors) {
    errs.push_back(json::value(e));
  }
  return json::object{{"protocol", "rtsp"},
                      {"viewers", viewers},
                      {"verified", verified},
                      {"segments", segments},
                      {"segments_failed", segments_failed},
                      {"digest_mismatches", digest_mismatches},
                      {"packets", packets},
                      {"bytes", bytes},
                      {"rejected", rejected},
                      {"rtcp_packets", rtcp_packets},
                      {"seq_gaps", seq_gaps},
                      {"duplicates", duplicates},
                      {"handoffs", handoffs},
                      {"longest_gap", longest_gap},
                      {"longest_handoff_gap", longest_handoff_gap},
                      {"longest_inside_gap", longest_inside_gap},
                      {"jitter_p50_ms", jitter_p50 * 1e3},
                      {"jitter_p99_ms", jitter_p99 * 1e3},
                      {"jitter_max_ms", jitter_max * 1e3},
                      {"seconds", seconds},
                      {"media_seconds", media_seconds},
                      {"engines", eng},
                      {"errors", errs},
                      {"ok", ok()}};
}

namespace {

// ---- URLs, headers and the SDP ----

struct rtsp_url {
  std::string url;  // as requested, with the token
  std::string host;
  uint16_t port = 554;
  std::string manifest_url;  // http://host:port/v1/programs/{id}[?query]: the program's manifest
};

result<rtsp_url> parse_rtsp_url(const std::string& given, const std::string& token) {
  auto u = boost::urls::parse_absolute_uri(given);
  if (!u || u->scheme() != "rtsp" || u->host_address().empty()) {
    return make_error(errc::invalid_argument, fmt::format("not an rtsp://HOST/... URL: {}", given));
  }
  rtsp_url out;
  out.host = std::string(u->host_address());
  if (u->has_port()) {
    if (u->port_number() == 0) {
      return make_error(errc::invalid_argument, fmt::format("bad port in {}", given));
    }
    out.port = u->port_number();
  }
  std::string query = u->has_query() ? std::string(u->encoded_query()) : "";
  bool has_token = query.starts_with("token=") || query.find("&token=") != std::string::npos;
  if (!token.empty() && !has_token) {
    query += (query.empty() ? "" : "&") + std::string("token=") + token;
  }
  std::string path(u->encoded_path());
  out.url =
      fmt::format("rtsp://{}{}{}", u->encoded_authority(), path, query.empty() ? "" : "?" + query);
  while (path.size() > 1 && path.back() == '/') {
    path.pop_back();
  }
  bool v6 = out.host.find(':') != std::string::npos;
  out.manifest_url = fmt::format("http://{}{}{}:{}{}{}", v6 ? "[" : "", out.host, v6 ? "]" : "",
                                 out.port, path, query.empty() ? "" : "?" + query);
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// The value of `key` among a header's ';'-separated parameters ("seq" in "url=...;seq=5").
std::optional<std::string_view> param(std::string_view header, std::string_view key) {
  while (!header.empty()) {
    auto semi = header.find(';');
    auto part = trim(header.substr(0, semi));
    if (part.size() > key.size() && part.starts_with(key) && part[key.size()] == '=') {
      return part.substr(key.size() + 1);
    }
    if (semi == std::string_view::npos) {
      break;
    }
    header.remove_prefix(semi + 1);
  }
  return std::nullopt;
}

template <class T>
std::optional<T> number(std::string_view s, int base = 10) {
  T v{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec != std::errc() || end != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

struct sdp_info {
  std::string control;  // the MP2T track's, absolute
  std::optional<double> duration;
};

// The first media of payload type 33 over RTP/AVP, its control URL resolved against `base`; a
// control without a query gets `request`'s (the token).
result<sdp_info> parse_sdp(std::string_view sdp, const std::string& base,
                           const std::string& request) {
  sdp_info out;
  bool in_track = false;
  bool found = false;
  std::string control = "*";
  while (!sdp.empty()) {
    auto nl = sdp.find('\n');
    auto line = trim(sdp.substr(0, nl));
    sdp.remove_prefix(nl == std::string_view::npos ? sdp.size() : nl + 1);
    if (line.starts_with("m=")) {
      // m=video 0 RTP/AVP 33
      bool mp2t = !found && line.find(" RTP/AVP") != std::string_view::npos &&
                  (line.ends_with(" 33") || line.find(" 33 ") != std::string_view::npos);
      in_track = mp2t;
      found = found || mp2t;
    } else if (in_track && line.starts_with("a=control:")) {
      control = std::string(trim(line.substr(10)));
    } else if (line.starts_with("a=range:")) {
      if (auto r = push::parse_range(line.substr(8)); r && r->end) {
        out.duration = *r->end - r->start.value_or(0);
      }
    }
  }
  if (!found) {
    return make_error(errc::protocol_error, "DESCRIBE: the SDP offers no MP2T stream (RTP/AVP 33)");
  }
  auto resolved = control == "*" ? result<std::string>(base) : net::resolve_url(base, control);
  if (!resolved) {
    return make_error(errc::protocol_error, "DESCRIBE: a bad a=control: " + control);
  }
  out.control = *resolved;
  auto q = request.find('?');
  if (out.control.find('?') == std::string::npos && q != std::string::npos) {
    out.control += request.substr(q);
  }
  return out;
}

// ": <why>" from a refusal's body, the director's {"error": ..., "detail": ...} or one line of
// text.
std::string refusal_detail(std::string_view body) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (!ec && v.is_object()) {
    for (auto key : {"detail", "error"}) {
      if (auto* f = v.as_object().if_contains(key);
          f && f->is_string() && !f->as_string().empty()) {
        return ": " + std::string(f->as_string().subview().substr(0, 300));
      }
    }
  }
  auto line = trim(body.substr(0, std::min(body.find('\n'), size_t{300})));
  return line.empty() ? std::string() : ": " + std::string(line);
}

// One header. (Not a braced list of string literals at the call: GCC 12 fails to compile one in a
// coroutine's co_await expression.)
push::header_list one_header(std::string name, std::string value) {
  push::header_list h;
  h.emplace_back(std::move(name), std::move(value));
  return h;
}

// ---- one RTSP connection ----

// Requests one at a time on one TCP connection; every exchange under one deadline, every response
// under the parser's size limits.
class rtsp_connection {
 public:
  rtsp_connection(asio::any_io_executor ex, std::chrono::milliseconds deadline)
      : stream_(ex), deadline_(deadline) {}

  asio::awaitable<status> connect(std::string host, uint16_t port) {
    tcp::resolver resolver(stream_.get_executor());
    auto [rec, eps] = co_await resolver.async_resolve(host, std::to_string(port), use_tuple);
    if (rec) {
      co_return make_error(errc::unavailable, fmt::format("{}: {}", host, rec.message()));
    }
    stream_.expires_after(deadline_);
    auto [ec, ep] = co_await stream_.async_connect(eps, use_tuple);
    if (ec) {
      co_return make_error(errc::unavailable,
                           fmt::format("connect to {}:{}: {}", host, port, ec.message()));
    }
    co_return status{};
  }

  asio::ip::address local_address() const {
    beast::error_code ec;
    auto ep = stream_.socket().local_endpoint(ec);
    return ec ? asio::ip::address() : ep.address();
  }

  // One request and its response; a non-2xx status, a CSeq other than the request's or a silence
  // past the deadline is an error naming the method.
  asio::awaitable<result<push::rtsp_response>> exchange(std::string method, std::string uri,
                                                        push::header_list headers) {
    push::rtsp_request req;
    req.method = method;
    req.uri = std::move(uri);
    req.cseq = ++cseq_;
    req.headers = std::move(headers);
    req.headers.emplace_back("User-Agent", "vodgrid-play");
    auto text = push::write_request(req);
    stream_.expires_after(deadline_);
    auto [wec, wn] = co_await asio::async_write(stream_, asio::buffer(text), use_tuple);
    if (wec) {
      co_return make_error(errc::unavailable, fmt::format("{}: {}", method, wec.message()));
    }
    push::rtsp_response res;
    for (;;) {
      auto o = push::parse_response(in_, res);
      if (o.state == push::parse_state::complete) {
        in_.erase(0, o.consumed);
        break;
      }
      if (o.state == push::parse_state::bad) {
        co_return make_error(errc::protocol_error,
                             fmt::format("{}: a malformed response ({})", method, o.why));
      }
      char buf[4096];
      auto [ec, n] = co_await stream_.async_read_some(asio::buffer(buf), use_tuple);
      if (ec == beast::error::timeout) {
        co_return make_error(
            errc::timeout, fmt::format("{}: no response within {} ms", method, deadline_.count()));
      }
      if (ec) {
        co_return make_error(errc::unavailable, fmt::format("{}: {}", method, ec.message()));
      }
      in_.append(buf, n);
    }
    if (res.cseq != req.cseq) {
      co_return make_error(errc::protocol_error, fmt::format("{}: the response has CSeq {}, not {}",
                                                             method, res.cseq, req.cseq));
    }
    if (res.status < 200 || res.status > 299) {
      co_return make_error(
          errc::protocol_error,
          fmt::format("{} answered {} {}{}", method, res.status,
                      res.reason.empty() ? push::reason_phrase(res.status) : res.reason,
                      refusal_detail(res.body)));
    }
    co_return res;
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

 private:
  beast::tcp_stream stream_;
  std::chrono::milliseconds deadline_;
  std::string in_;  // bytes read past the last response
  uint32_t cseq_ = 0;
};

// ---- receiving ----

// An even port for RTP and the next for RTCP (RFC 3550 11), on `address`; retried when another
// socket holds either.
result<std::pair<udp::socket, udp::socket>> open_port_pair(asio::any_io_executor ex,
                                                           asio::ip::address address) {
  for (int attempt = 0; attempt < 64; ++attempt) {
    boost::system::error_code ec;
    udp::socket rtp(ex);
    udp::socket rtcp(ex);
    auto proto = address.is_v6() ? udp::v6() : udp::v4();
    rtp.open(proto, ec);
    if (!ec) {
      rtp.bind(udp::endpoint(address, 0), ec);
    }
    if (ec) {
      return make_error(errc::unavailable, "UDP socket: " + ec.message());
    }
    uint16_t port = rtp.local_endpoint(ec).port();
    if (port % 2 != 0) {
      rtp.close(ec);
      rtp.open(proto, ec);
      rtp.bind(udp::endpoint(address, static_cast<uint16_t>(port - 1)), ec);
      if (ec) {
        continue;
      }
      --port;
    }
    rtcp.open(proto, ec);
    rtcp.bind(udp::endpoint(address, static_cast<uint16_t>(port + 1)), ec);
    if (ec) {
      continue;
    }
    // Room for a burst: the engines pace, but a console under load reads late.
    rtp.set_option(udp::socket::receive_buffer_size(4 << 20), ec);
    return std::pair{std::move(rtp), std::move(rtcp)};
  }
  return make_error(errc::unavailable, "no free pair of UDP ports (an even one and the next)");
}

// What a session's receivers and the session share. Owned by the session's executor.
struct session_stream {
  session_stream(asio::any_io_executor ex, udp::socket r, udp::socket c, stream_account::options o)
      : rtp(std::move(r)), rtcp(std::move(c)), account(std::move(o)), done(ex) {}
  udp::socket rtp;
  udp::socket rtcp;
  stream_account account;
  std::optional<uint32_t> ssrc;  // SETUP's
  uint64_t total_bytes = 0;      // the program's; 0: unknown, the stream ends by silence
  steady::time_point last_datagram;
  uint64_t rtcp_packets = 0;
  std::string receive_error;
  bool finished = false;  // every byte arrived, or the RTP socket failed
  bool goodbye = false;   // an RTCP BYE of the stream's SSRC came: the program has ended
  net::async_event done;  // set with either
  std::unique_ptr<std::ofstream> save;  // rtsp_play_options::save
};

// The TS payload of a datagram to rtsp_play_options::save.
void save_payload(std::ofstream& out, std::span<const uint8_t> datagram) {
  if (auto v = push::parse_rtp(datagram)) {
    out.write(reinterpret_cast<const char*>(datagram.data() + v->payload_offset),
              static_cast<std::streamsize>(v->payload_bytes));
  }
}

// Whether a compound RTCP packet holds a BYE (RFC 3550 6.6) of `ssrc` (of any, when not known).
bool rtcp_bye(std::span<const uint8_t> p, std::optional<uint32_t> ssrc) {
  constexpr uint8_t bye = 203;
  while (p.size() >= 4 && (p[0] >> 6) == 2) {
    size_t bytes = (size_t{p[2]} << 8 | p[3]) * 4 + 4;
    if (bytes > p.size()) {
      return false;
    }
    if (p[1] == bye) {
      size_t count = p[0] & 0x1f;
      for (size_t i = 0; i < count && 8 + 4 * i <= bytes; ++i) {
        auto at = p.subspan(4 + 4 * i, 4);
        uint32_t who = uint32_t{at[0]} << 24 | uint32_t{at[1]} << 16 | uint32_t{at[2]} << 8 | at[3];
        if (!ssrc || who == *ssrc) {
          return true;
        }
      }
    }
    p = p.subspan(bytes);
  }
  return false;
}

std::string source_name(const udp::endpoint& ep) {
  auto a = ep.address();
  return a.is_v6() ? fmt::format("[{}]:{}", a.to_string(), ep.port())
                   : fmt::format("{}:{}", a.to_string(), ep.port());
}

// Datagrams are read in batches (recvmmsg) with the kernel's receive time (SO_TIMESTAMPNS): on
// loopback that is when the sender's datagram entered the stack, so the pacing jitter measured is
// the sender's and not this console's own delay when it holds thousands of sessions on one core.
constexpr size_t rtp_batch = 32;
constexpr size_t rtp_max_datagram = 65536;

// One batch's buffers, shared by the sessions of a thread: a batch is consumed before the next
// suspension.
struct rtp_batch_buffers {
  std::vector<uint8_t> data = std::vector<uint8_t>(rtp_batch * rtp_max_datagram);
  std::array<mmsghdr, rtp_batch> headers{};
  std::array<iovec, rtp_batch> iov{};
  std::array<sockaddr_storage, rtp_batch> from{};
  std::array<std::array<char, CMSG_SPACE(sizeof(timespec))>, rtp_batch> control{};
};

// Datagrams waiting in `fd`, up to a batch; -1 with errno as recvmmsg(2) sets it.
int read_batch(int fd, rtp_batch_buffers& b) {
  for (size_t i = 0; i < rtp_batch; ++i) {
    b.iov[i] = {b.data.data() + i * rtp_max_datagram, rtp_max_datagram};
    auto& h = b.headers[i].msg_hdr;
    h = {};
    h.msg_name = &b.from[i];
    h.msg_namelen = sizeof(sockaddr_storage);
    h.msg_iov = &b.iov[i];
    h.msg_iovlen = 1;
    h.msg_control = b.control[i].data();
    h.msg_controllen = b.control[i].size();
  }
  return ::recvmmsg(fd, b.headers.data(), rtp_batch, MSG_DONTWAIT, nullptr);
}

// The kernel's receive time of a datagram on the steady clock (`offset`: steady less realtime),
// or nullopt when it gave none.
std::optional<steady::time_point> kernel_time(const msghdr& h, std::chrono::nanoseconds offset) {
  for (auto* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(const_cast<msghdr*>(&h), c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
      timespec ts{};
      std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
      auto real = std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
      return steady::time_point(std::chrono::duration_cast<steady::duration>(real + offset));
    }
  }
  return std::nullopt;
}

// Ends the receiving: a socket closed by the session is no error.
void end_receiving(session_stream& s, boost::system::error_code ec) {
  if (ec && ec != asio::error::operation_aborted && ec != asio::error::bad_descriptor) {
    s.receive_error = "RTP socket: " + ec.message();
  }
  s.finished = true;
  s.done.set();
}

asio::awaitable<void> receive_rtp(std::shared_ptr<session_stream> s) {
  thread_local rtp_batch_buffers buffers;
  auto ex = co_await asio::this_coro::executor;
  boost::system::error_code ec;
  int on = 1;  // without it, the times are this console's
  ::setsockopt(s->rtp.native_handle(), SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
  s->rtp.non_blocking(true, ec);
  udp::endpoint from;
  udp::endpoint named;
  std::string name;
  steady::time_point last_at{};
  for (;;) {
    auto [wec] = co_await s->rtp.async_wait(udp::socket::wait_read, use_tuple);
    if (wec) {
      end_receiving(*s, wec);
      co_return;
    }
    // Until the socket is empty, letting the other sessions run now and then.
    for (size_t round = 1;; ++round) {
      if (!s->rtp.is_open()) {
        end_receiving(*s, asio::error::operation_aborted);
        co_return;
      }
      int n = read_batch(s->rtp.native_handle(), buffers);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        break;
      }
      if (n < 0) {
        end_receiving(*s, boost::system::error_code(errno, boost::system::system_category()));
        co_return;
      }
      auto now = steady::now();
      auto offset =
          now.time_since_epoch() - std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       std::chrono::system_clock::now().time_since_epoch());
      for (int i = 0; i < n; ++i) {
        auto& h = buffers.headers[static_cast<size_t>(i)];
        std::memcpy(from.data(), &buffers.from[static_cast<size_t>(i)], h.msg_hdr.msg_namelen);
        from.resize(h.msg_hdr.msg_namelen);
        if (name.empty() || from != named) {
          named = from;
          name = source_name(from);
        }
        auto at = std::max(last_at, kernel_time(h.msg_hdr, offset).value_or(now));
        last_at = at;
        std::span<const uint8_t> datagram(buffers.data.data() + i * rtp_max_datagram,
                                          std::min<size_t>(h.msg_len, rtp_max_datagram));
        s->account.add(name, at, datagram);
        if (s->save) {
          save_payload(*s->save, datagram);
        }
      }
      s->last_datagram = now;
      if (s->total_bytes > 0 && s->account.unique_bytes() >= s->total_bytes) {
        s->finished = true;
        s->done.set();
        co_return;
      }
      if (static_cast<size_t>(n) < rtp_batch) {
        break;
      }
      if (round % 8 == 0) {
        co_await asio::post(ex, asio::use_awaitable);
      }
    }
  }
}

// RTCP is counted, and its BYE ends the stream; the stream's accounting is the RTP's.
asio::awaitable<void> receive_rtcp(std::shared_ptr<session_stream> s) {
  std::vector<uint8_t> buf(2048);
  udp::endpoint from;
  for (;;) {
    auto [ec, n] = co_await s->rtcp.async_receive_from(asio::buffer(buf), from, use_tuple);
    if (ec) {
      co_return;
    }
    ++s->rtcp_packets;
    if (!s->goodbye && rtcp_bye(std::span<const uint8_t>(buf.data(), n), s->ssrc)) {
      s->goodbye = true;
      s->done.set();
    }
  }
}

// ---- one session ----

// What every session shares: the options and what the manifest says.
struct play_plan {
  rtsp_play_options opts;
  rtsp_url url;
  bool verify = false;
  std::vector<segment_check> segments;  // empty: not known
  uint64_t total_bytes = 0;             // when from the start at scale 1: the end of the stream
};

struct session_outcome {
  stream_stats stats;
  uint64_t rtcp_packets = 0;
  std::optional<double> duration;  // the SDP's
  std::vector<std::string> errors;
};

struct setup_reply {
  std::string session;
  std::chrono::milliseconds timeout{60'000};
  std::optional<uint32_t> ssrc;
};

result<setup_reply> read_setup(const push::rtsp_response& res, uint16_t client_rtp) {
  setup_reply out;
  auto session = res.header("Session");
  out.session = std::string(push::session_id(session));
  if (out.session.empty()) {
    return make_error(errc::protocol_error, "SETUP: no Session in the response");
  }
  if (auto t = param(session, "timeout")) {
    auto secs = number<uint32_t>(*t);
    if (!secs || *secs == 0) {
      return make_error(errc::protocol_error, fmt::format("SETUP: a bad session timeout {}", *t));
    }
    out.timeout = std::chrono::milliseconds(uint64_t{*secs} * 1000);
  }
  auto transport = res.header("Transport");
  if (auto ssrc = param(transport, "ssrc")) {
    out.ssrc = number<uint32_t>(*ssrc, 16);
    if (!out.ssrc) {
      return make_error(errc::protocol_error, fmt::format("SETUP: a bad ssrc {}", *ssrc));
    }
  }
  if (auto cp = param(transport, "client_port")) {
    auto first = number<uint16_t>(cp->substr(0, cp->find('-')));
    if (first != client_rtp) {
      return make_error(
          errc::protocol_error,
          fmt::format("SETUP: the server answered client_port {}, not {}", *cp, client_rtp));
    }
  }
  return out;
}

// The sequence number PLAY's RTP-Info announces for the first datagram, if any.
std::optional<uint16_t> announced_seq(const push::rtsp_response& res) {
  auto info = res.header("RTP-Info");
  auto seq = param(info.substr(0, info.find(',')), "seq");
  return seq ? number<uint16_t>(*seq) : std::nullopt;
}

constexpr std::chrono::milliseconds after_goodbye{200};

// After PLAY: waits for the end (every byte, or silence), keeping the session alive meanwhile.
asio::awaitable<void> await_end(rtsp_connection& conn, std::shared_ptr<session_stream> s,
                                const play_plan& plan, const setup_reply& setup,
                                std::vector<std::string>& errors) {
  auto interval =
      std::max<std::chrono::milliseconds>(setup.timeout / 2, std::chrono::milliseconds(200));
  auto next_keep_alive = steady::now() + interval;
  asio::steady_timer pause(co_await asio::this_coro::executor);
  for (;;) {
    auto now = steady::now();
    // After a BYE, the datagrams sent before it may still wait in the RTP socket: a short quiet.
    auto quiet =
        s->goodbye ? std::min(plan.opts.read_timeout, after_goodbye) : plan.opts.read_timeout;
    auto silent_until = s->last_datagram + quiet;
    if (s->finished || now >= silent_until) {
      co_return;
    }
    if (plan.opts.keep_alive && now >= next_keep_alive) {
      auto r = co_await conn.exchange("GET_PARAMETER", plan.url.url,
                                      one_header("Session", setup.session));
      if (!r) {
        errors.push_back(r.err().detail);
        co_return;
      }
      next_keep_alive = steady::now() + interval;
      continue;
    }
    auto until = plan.opts.keep_alive ? std::min(silent_until, next_keep_alive) : silent_until;
    if (s->goodbye) {  // `done` is set for good: sleep instead
      pause.expires_at(until);
      co_await pause.async_wait(use_tuple);
    } else {
      co_await s->done.wait_for(until - now);
    }
  }
}

// DESCRIBE and SETUP: the track, the UDP ports, the session.
struct prepared {
  udp::socket rtp;
  udp::socket rtcp;
  setup_reply setup;
};
asio::awaitable<result<prepared>> describe_and_setup(rtsp_connection& conn, const play_plan& plan,
                                                     session_outcome& out) {
  auto ex = co_await asio::this_coro::executor;
  VODGRID_CO_TRY(auto described, co_await conn.exchange("DESCRIBE", plan.url.url,
                                                        one_header("Accept", "application/sdp")));
  auto base = std::string(described.header("Content-Base"));
  VODGRID_CO_TRY(auto sdp,
                 parse_sdp(described.body, base.empty() ? plan.url.url : base, plan.url.url));
  out.duration = sdp.duration;
  // Loopback when the director is; otherwise every address, as the engines may reach this host on
  // another interface than the director's connection.
  auto local = conn.local_address();
  auto bind_to = local.is_loopback() ? local
                 : local.is_v6()     ? asio::ip::address(asio::ip::address_v6::any())
                                     : asio::ip::address(asio::ip::address_v4::any());
  VODGRID_CO_TRY(auto ports, open_port_pair(ex, bind_to));
  uint16_t port = ports.first.local_endpoint().port();
  VODGRID_CO_TRY(auto set_up,
                 co_await conn.exchange(
                     "SETUP", sdp.control,
                     one_header("Transport",
                                fmt::format("RTP/AVP;unicast;client_port={}-{}", port, port + 1))));
  VODGRID_CO_TRY(auto setup, read_setup(set_up, port));
  co_return prepared{std::move(ports.first), std::move(ports.second), std::move(setup)};
}

// PLAY, then the stream until its end; the stream's account when PLAY succeeded.
asio::awaitable<result<std::shared_ptr<session_stream>>> play_and_receive(rtsp_connection& conn,
                                                                          const play_plan& plan,
                                                                          prepared& prep,
                                                                          session_outcome& out) {
  auto ex = co_await asio::this_coro::executor;
  auto headers = one_header("Session", prep.setup.session);
  if (plan.opts.seek) {
    headers.emplace_back("Range", push::write_range(*plan.opts.seek, std::nullopt));
  }
  if (plan.opts.scale != 1) {
    headers.emplace_back("Scale", fmt::format("{}", plan.opts.scale));
  }
  VODGRID_CO_TRY(auto played, co_await conn.exchange("PLAY", plan.url.url, std::move(headers)));
  stream_account::options ao;
  ao.ssrc = prep.setup.ssrc;
  ao.first_seq = announced_seq(played);  // a first datagram lost is a gap too
  ao.scale = plan.opts.scale;
  if (plan.verify) {
    ao.segments = plan.segments;
  }
  // Datagrams that came before PLAY's response wait in the socket's buffer.
  auto s = std::make_shared<session_stream>(ex, std::move(prep.rtp), std::move(prep.rtcp),
                                            std::move(ao));
  s->ssrc = prep.setup.ssrc;
  s->total_bytes = plan.total_bytes;
  s->last_datagram = steady::now();
  if (!plan.opts.save.empty()) {
    s->save = std::make_unique<std::ofstream>(plan.opts.save, std::ios::binary | std::ios::trunc);
    if (!*s->save) {
      co_return make_error(errc::io_error, "cannot write " + plan.opts.save);
    }
  }
  net::task_group receivers(ex);
  receivers.spawn(receive_rtp(s));
  receivers.spawn(receive_rtcp(s));
  co_await await_end(conn, s, plan, prep.setup, out.errors);
  boost::system::error_code ec;
  s->rtp.close(ec);
  s->rtcp.close(ec);
  co_await receivers.close(std::chrono::seconds(5));
  s->account.finish();
  co_return s;
}

asio::awaitable<session_outcome> run_session(std::shared_ptr<const play_plan> plan) {
  auto ex = co_await asio::this_coro::executor;
  session_outcome out;
  rtsp_connection conn(ex, plan->opts.exchange_timeout);
  if (auto c = co_await conn.connect(plan->url.host, plan->url.port); !c) {
    out.errors.push_back(c.err().detail);
    co_return out;
  }
  auto prep = co_await describe_and_setup(conn, *plan, out);
  if (!prep) {
    out.errors.push_back(prep.err().detail);
    co_return out;
  }
  auto s = co_await play_and_receive(conn, *plan, *prep, out);
  if (!s) {
    out.errors.push_back(s.err().detail);
    // A courtesy when the director answered: a session PLAY refused may still hold resources.
    if (s.err().code == errc::protocol_error) {
      auto ignored = co_await conn.exchange("TEARDOWN", plan->url.url,
                                            one_header("Session", prep->setup.session));
    }
    co_return out;
  }
  out.stats = (*s)->account.stats();
  out.rtcp_packets = (*s)->rtcp_packets;
  if (!(*s)->receive_error.empty()) {
    out.errors.push_back((*s)->receive_error);
  }
  if (out.stats.packets == 0) {
    out.errors.push_back(
        fmt::format("no RTP datagram within {} ms of PLAY", plan->opts.read_timeout.count()));
  } else if (plan->total_bytes > 0 && out.stats.bytes < plan->total_bytes) {
    out.errors.push_back(fmt::format("the stream stopped after {} of the program's {} bytes",
                                     out.stats.bytes, plan->total_bytes));
  }
  if (out.stats.seq_overflow) {
    out.errors.push_back("sequence numbers jumped further than can be tracked");
  }
  auto torn =
      co_await conn.exchange("TEARDOWN", plan->url.url, one_header("Session", prep->setup.session));
  if (!torn) {
    out.errors.push_back(torn.err().detail);
  }
  conn.close();
  co_return out;
}

asio::awaitable<void> run_session_into(std::shared_ptr<const play_plan> plan,
                                       std::shared_ptr<std::vector<session_outcome>> slots,
                                       size_t slot) {
  (*slots)[slot] = co_await run_session(std::move(plan));
}

// ---- the viewers together ----

// The program's segments from its manifest (GET /v1/programs/{id} on the director's port).
asio::awaitable<result<std::vector<api::segment_entry>>> fetch_segments(std::string url,
                                                                        rtsp_play_options o) {
  net::client_options co;
  co.connect_timeout = o.exchange_timeout;
  co.request_timeout = o.exchange_timeout;
  co.read_timeout = o.exchange_timeout;
  co.max_body = 16 << 20;
  net::http_client client(co_await asio::this_coro::executor, co);
  auto shown = url.substr(0, url.find('?'));  // not the token
  VODGRID_CO_TRY(auto res, co_await client.get(url));
  if (res.status != 200) {
    co_return make_error(errc::unavailable, fmt::format("GET {} answered {}{}", shown, res.status,
                                                        refusal_detail(res.body)));
  }
  auto m = api::decode<api::program_manifest>(res.body);
  if (!m) {
    co_return make_error(errc::protocol_error,
                         fmt::format("GET {}: not a program manifest: {}", shown, m.err().detail));
  }
  co_return std::move(m->segments);
}

void add_session(rtsp_report& rep, const session_outcome& s) {
  auto& st = s.stats;
  rep.segments += st.segments_ok;
  rep.segments_failed += st.segments_missing;
  rep.digest_mismatches += st.digest_mismatches;
  rep.packets += st.packets;
  rep.bytes += st.bytes;
  rep.rejected += st.rejected;
  rep.rtcp_packets += s.rtcp_packets;
  rep.seq_gaps += st.seq_gaps;
  rep.duplicates += st.duplicates;
  rep.handoffs += st.handoffs;
  rep.longest_gap = std::max(rep.longest_gap, st.longest_gap);
  rep.longest_handoff_gap = std::max(rep.longest_handoff_gap, st.longest_handoff_gap);
  rep.longest_inside_gap = std::max(rep.longest_inside_gap, st.longest_inside_gap);
  rep.jitter_us.merge(st.jitter_us);
  for (auto& [src, n] : st.sources) {
    auto it = std::find_if(rep.engines.begin(), rep.engines.end(),
                           [&](auto& e) { return e.first == src; });
    if (it == rep.engines.end()) {
      rep.engines.emplace_back(src, n);
    } else {
      it->second += n;
    }
  }
  if (st.excess_bytes > 0) {
    rep.errors.push_back(fmt::format("{} bytes past the program's end", st.excess_bytes));
  }
  for (auto& e : s.errors) {
    if (rep.errors.size() < 20) {
      rep.errors.push_back(e);
    }
  }
}

// The plan every session follows; an error when the options or the manifest forbid playing.
asio::awaitable<result<play_plan>> make_plan(rtsp_play_options opts) {
  if (auto why = invalid_options(opts)) {
    co_return make_error(errc::invalid_argument, *why);
  }
  VODGRID_CO_TRY(auto url, parse_rtsp_url(opts.url, opts.token));
  play_plan plan;
  plan.url = std::move(url);
  bool from_start = opts.scale == 1 && (!opts.seek || *opts.seek == 0);
  plan.verify = opts.verify && from_start;
  plan.opts = std::move(opts);
  if (!from_start) {
    co_return plan;  // the stream ends by silence
  }
  auto segs = co_await fetch_segments(plan.url.manifest_url, plan.opts);
  if (!segs) {
    if (plan.verify) {
      co_return make_error(segs.err().code, "cannot verify: " + segs.err().detail);
    }
    co_return plan;
  }
  for (auto& s : *segs) {
    plan.segments.push_back({s.size, s.sha256});
    plan.total_bytes += s.size;
  }
  co_return plan;
}

}  // namespace

std::optional<std::string> invalid_options(const rtsp_play_options& o) {
  if (o.viewers < 1 || o.viewers > 10000) {
    return "viewers must be within 1..10000";
  }
  if (!o.save.empty() && o.viewers != 1) {
    return "--save writes one viewer's stream: use it with one viewer";
  }
  if (!std::isfinite(o.scale) || o.scale == 0 || std::abs(o.scale) > 64) {
    return fmt::format("scale {} is not a finite number other than 0 within -64..64", o.scale);
  }
  if (o.seek && (!std::isfinite(*o.seek) || *o.seek < 0)) {
    return fmt::format("seek {} is not a position in seconds from the start", *o.seek);
  }
  if (o.read_timeout.count() <= 0 || o.exchange_timeout.count() <= 0) {
    return "the timeouts must be positive";
  }
  if (auto u = parse_rtsp_url(o.url, o.token); !u) {
    return u.err().detail;
  }
  return std::nullopt;
}

asio::awaitable<rtsp_report> play_rtsp(rtsp_play_options opts) {
  auto ex = co_await asio::this_coro::executor;
  auto t0 = steady::now();
  rtsp_report rep;
  rep.viewers = opts.viewers;
  auto plan = co_await make_plan(std::move(opts));
  if (!plan) {
    rep.errors.push_back(plan.err().detail);
    co_return rep;
  }
  rep.verified = plan->verify;
  auto shared = std::make_shared<const play_plan>(std::move(*plan));
  // Each session's outcome lands in its slot; the group's close is the wait for all of them.
  auto outcomes = std::make_shared<std::vector<session_outcome>>(shared->opts.viewers);
  net::task_group sessions(ex);
  for (uint32_t v = 0; v < shared->opts.viewers; ++v) {
    sessions.spawn(run_session_into(shared, outcomes, v));
  }
  co_await sessions.close(std::chrono::hours(24 * 365));
  std::optional<double> duration;
  for (auto& o : *outcomes) {
    add_session(rep, o);
    duration = duration ? duration : o.duration;
  }
  if (duration) {
    rep.media_seconds = std::max(0.0, *duration - shared->opts.seek.value_or(0));
  }
  rep.jitter_p50 = static_cast<double>(rep.jitter_us.quantile(0.5)) / 1e6;
  rep.jitter_p99 = static_cast<double>(rep.jitter_us.quantile(0.99)) / 1e6;
  rep.jitter_max = static_cast<double>(rep.jitter_us.max()) / 1e6;
  rep.seconds = std::chrono::duration<double>(steady::now() - t0).count();
  co_return rep;
}

}  // namespace vodgrid::console
