// The consoles' RTSP 1.0 connections (DESIGN.md flow 8, docs/push.md): on the director's own port,
// told from HTTP by the first request line. DESCRIBE gives the SDP of one MP2T stream; SETUP makes
// a session bound to the console's address; PLAY (Range, Scale) orders an engine holding the
// segment at that position to stream to the console (claims 16, 18); PAUSE and TEARDOWN reach the
// engine streaming it (claim 17). Viewer tokens as for HTTP (claim 23).
#include <fmt/format.h>
#include <boost/algorithm/string/case_conv.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>

#include <openssl/rand.h>

#include <deque>
#include <list>
#include <random>

#include "auth/client.h"
#include "director/impl.h"
#include "push/rtp.h"
#include "push/rtsp.h"

namespace vodgrid::director {

namespace {

using push::rtsp_request;
using push::rtsp_response;

constexpr std::string_view public_methods =
    "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";
constexpr size_t max_push_sessions = 100'000;
constexpr auto rtsp_write_timeout = std::chrono::seconds(10);

// A refusal with its reason, as JSON like the HTTP API's errors.
rtsp_response refusal(int status, std::string_view code, std::string_view detail) {
  rtsp_response r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/json");
  r.body = json::serialize(json::object{{"error", code}, {"detail", detail}}) + "\n";
  return r;
}

rtsp_response refusal(const error& e) {
  return refusal(static_cast<int>(net::status_of(e.code)), to_string(e.code), e.detail);
}

// An HTTP refusal (a token check's) as an RTSP one: the codes are the same.
rtsp_response refusal(const reply& r) {
  rtsp_response out;
  out.status = static_cast<int>(r.status);
  out.headers.emplace_back("Content-Type", "application/json");
  out.body = r.body;
  return out;
}

asio::ip::address canonical(asio::ip::address a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  }
  return a;
}

// A session id is all a console shows to act on its session: from the system's CSPRNG, so that
// ids seen reveal nothing of others (mt19937's outputs would give its state away).
std::string random_session_id() {
  uint64_t v = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&v), sizeof v) != 1) {
    throw std::runtime_error("the system's random generator failed");
  }
  return fmt::format("{:016x}", v);
}

}  // namespace

// rtsp://HOST[:PORT]/v1/programs/{id}[/][track1][?token=T]: the program, and the request context
// a token check reads (the query, an Authorization header, the peer).
result<rtsp_target> parse_rtsp_target(const push::rtsp_request& req, const tcp_endpoint& peer) {
  auto u = boost::urls::parse_uri(req.uri);
  auto scheme = u ? boost::algorithm::to_lower_copy(std::string(u->scheme())) : std::string();
  if (!u || !(scheme == "rtsp" || scheme == "rtsps") || !u->has_authority()) {
    return make_error(errc::invalid_argument,
                      "the request URI must be rtsp://HOST/v1/programs/ID (or rtsps://)");
  }
  std::vector<std::string> parts;
  for (auto seg : u->segments()) {
    parts.emplace_back(seg);
  }
  while (!parts.empty() && (parts.back().empty() || parts.back() == "track1")) {
    parts.pop_back();
  }
  if (parts.size() != 3 || parts[0] != "v1" || parts[1] != "programs" ||
      !program_id::parse(parts[2])) {
    return make_error(errc::not_found, "no such resource: " + std::string(u->encoded_path()) +
                                           " (programs are at rtsp://HOST/v1/programs/ID)");
  }
  rtsp_target t;
  t.program = *program_id::parse(parts[2]);
  t.base = fmt::format("{}://{}/v1/programs/{}", scheme, std::string_view(u->encoded_authority()),
                       parts[2]);
  if (u->has_query()) {
    t.query = "?" + std::string(u->encoded_query());
  }
  for (auto p : u->params()) {
    t.ctx.add_query(p.key, p.has_value ? p.value : std::string());
  }
  t.ctx.remote = peer;
  if (auto a = req.header("Authorization"); !a.empty()) {
    t.ctx.req.set(http::field::authorization, a);
  }
  return t;
}

// An interleaved session's relay (RTSPS): the UDP pair the engines stream to, each datagram put
// into the console's connection on its channel. Only datagrams of the session's SSRC pass: the
// ports are open to anyone who can reach the director, and the SSRC is known only to the console,
// the director and the engines.
struct rtsp_relay {
  std::string session;
  uint32_t ssrc = 0;
  uint8_t channel_rtp = 0;
  uint8_t channel_rtcp = 1;
  asio::ip::udp::socket rtp;
  asio::ip::udp::socket rtcp;
  bool started = false;
  rtsp_relay(asio::any_io_executor ex) : rtp(ex), rtcp(ex) {}
};

// What goes out on the connection: responses and interleaved frames, in order, sent by one writer
// coroutine (a TLS stream takes one write at a time, and frames arrive while a request is
// answered). A console that does not read its connection loses frames past `frames_limit`
// bytes queued, never responses.
struct rtsp_link {
  static constexpr size_t frames_limit = 2 << 20;
  net::foreign_connection& c;
  asio::steady_timer wake;
  std::deque<std::string> queue;
  size_t queued = 0;
  bool closing = false;
  bool broken = false;
  std::list<rtsp_relay> relays;
  // While a request is answered, frames wait here and follow its answer: a PLAY's first RTP
  // arrives before its reply is written, and clients skip data that comes before the reply they
  // wait for (ffmpeg's ff_rtsp_read_reply does).
  bool answering = false;
  std::vector<std::string> held;
  size_t running = 0;  // coroutines of the connection still running (writer, relays)
  asio::steady_timer all_done;

  rtsp_link(net::foreign_connection& conn, asio::any_io_executor ex)
      : c(conn), wake(ex), all_done(ex) {}

  void put(std::string bytes) {
    queued += bytes.size();
    queue.push_back(std::move(bytes));
    wake.cancel();
  }

  asio::awaitable<void> write_loop() {
    std::string batch;
    while (!broken) {
      if (queue.empty()) {
        if (closing) {
          break;
        }
        wake.expires_at(steady::time_point::max());
        co_await wake.async_wait(use_tuple);
        continue;
      }
      batch.clear();
      while (!queue.empty() && batch.size() < 64 * 1024) {  // one TLS write for what waits
        batch += queue.front();
        queued -= queue.front().size();
        queue.pop_front();
      }
      auto [ec, n] = co_await c.stream.write(asio::buffer(batch));
      broken = broken || ec;
    }
  }

  asio::awaitable<void> relay_loop(asio::ip::udp::socket& sock, uint8_t channel, uint32_t ssrc,
                                   bool rtcp) {
    std::array<uint8_t, 2048> buf{};
    while (!closing && !broken) {
      auto [ec, n] = co_await sock.async_receive(asio::buffer(buf), use_tuple);
      if (ec == asio::error::operation_aborted || !sock.is_open()) {
        break;
      }
      size_t at = rtcp ? 4 : 8;  // the sender's SSRC in an RTCP packet, the SSRC in RTP
      if (ec || n < at + 4 || n > 0xffff) {
        continue;
      }
      uint32_t from = uint32_t{buf[at]} << 24 | uint32_t{buf[at + 1]} << 16 |
                      uint32_t{buf[at + 2]} << 8 | uint32_t{buf[at + 3]};
      if (from != ssrc || queued > frames_limit) {
        continue;
      }
      auto head = push::interleaved_header(channel, static_cast<uint16_t>(n));
      std::string frame(reinterpret_cast<const char*>(head.data()), head.size());
      frame.append(reinterpret_cast<const char*>(buf.data()), n);
      if (answering) {
        queued += frame.size();
        held.push_back(std::move(frame));
      } else {
        put(std::move(frame));
      }
    }
  }

  void answered(std::string response) {
    answering = false;
    put(std::move(response));
    for (auto& f : held) {
      queued -= f.size();
      put(std::move(f));
    }
    held.clear();
  }

  void spawn(asio::any_io_executor ex, asio::awaitable<void> task) {
    ++running;
    asio::co_spawn(ex, std::move(task), [this](std::exception_ptr) {
      if (--running == 0) {
        all_done.cancel();
      }
    });
  }
};

namespace {

// A UDP socket on `host`'s first free port.
result<asio::ip::udp::socket> open_udp(asio::any_io_executor ex, const asio::ip::address& host) {
  asio::ip::udp::socket sock(ex);
  boost::system::error_code ec;
  sock.open(host.is_v6() ? asio::ip::udp::v6() : asio::ip::udp::v4(), ec);
  if (!ec) {
    sock.bind({host, 0}, ec);
  }
  if (ec) {
    return make_error(errc::unavailable, "cannot bind a UDP port for the relay: " + ec.message());
  }
  return sock;
}

}  // namespace

asio::awaitable<void> director_daemon::impl::rtsp_connection(net::foreign_connection& c) {
  std::string in = std::move(c.already_read);
  std::array<char, 4096> buf{};
  auto idle = grid.timing.rtsp_session_timeout + std::chrono::seconds(10);
  auto ex = co_await asio::this_coro::executor;
  rtsp_link link(c, ex);
  link.spawn(ex, link.write_loop());
  while (!stopping && !link.broken) {
    auto frame = push::interleaved_frame(in);
    push::rtsp_request req;
    push::parse_outcome p;
    if (!frame) {
      p = push::parse_request(in, req);
    } else if (frame->size > 0) {
      // The console's RTCP (receiver reports) inside the connection: a keep-alive of its session.
      for (auto& r : link.relays) {
        auto it = push_sessions.find(r.session);
        if (it != push_sessions.end() && frame->channel == r.channel_rtcp) {
          it->second.touched = steady::now();
        }
      }
      in.erase(0, frame->size);
      continue;
    }
    if (frame || p.state == push::parse_state::need_more) {
      c.set_deadline(steady::now() + idle);
      auto [ec, n] = co_await c.stream.read_some(asio::buffer(buf));
      c.set_deadline(steady::time_point::max());
      if (ec || n == 0) {
        break;
      }
      in.append(buf.data(), n);
      continue;
    }
    rtsp_response resp;
    bool bad = p.state == push::parse_state::bad;
    if (bad) {
      rtsp_errors->inc();
      resp = refusal(p.status, "bad_request", p.why);
    } else {
      in.erase(0, p.consumed);
      link.answering = true;
      resp = co_await rtsp_answer(std::move(req), c.remote, link);
    }
    resp.cseq = req.cseq;
    link.answered(push::write_response(resp));
    for (auto& r : link.relays) {
      if (!r.started) {
        r.started = true;
        link.spawn(ex, link.relay_loop(r.rtp, r.channel_rtp, r.ssrc, false));
        link.spawn(ex, link.relay_loop(r.rtcp, r.channel_rtcp, r.ssrc, true));
      }
    }
    if (bad || link.queued > rtsp_link::frames_limit * 2) {
      break;  // a console that sends requests and reads no answers is cut off
    }
  }
  // The interleaved sessions end with their connection: their streams have nowhere else to go.
  for (auto& r : link.relays) {
    if (auto it = push_sessions.find(r.session); it != push_sessions.end()) {
      if (it->second.now == push_session::phase::playing && !stopping) {
        co_await stop_stream(r.session);
      }
      end_session(r.session);
    }
  }
  // The answers queued go out (a refusal before the connection closes), within the write timeout.
  link.closing = true;
  for (auto& r : link.relays) {
    boost::system::error_code ec;
    r.rtp.close(ec);
    r.rtcp.close(ec);
  }
  link.wake.cancel();
  c.set_deadline(steady::now() + rtsp_write_timeout);
  while (link.running > 0) {
    link.all_done.expires_at(steady::time_point::max());
    co_await link.all_done.async_wait(use_tuple);
  }
  c.set_deadline(steady::time_point::max());
}

asio::awaitable<push::rtsp_response> director_daemon::impl::rtsp_answer(push::rtsp_request req,
                                                                        tcp_endpoint peer,
                                                                        rtsp_link& link) {
  auto console = canonical(peer.address());
  auto sid = std::string(push::session_id(req.header("Session")));
  push_session* s = nullptr;
  if (!sid.empty()) {
    auto it = push_sessions.find(sid);
    if (it == push_sessions.end() || it->second.console != console) {
      rtsp_errors->inc();
      co_return refusal(454, "session_not_found", "no such session: " + sid);
    }
    s = &it->second;
    s->touched = steady::now();
  }
  const auto& m = req.method;
  rtsp_response r;
  if (m == "OPTIONS" || m == "GET_PARAMETER" || m == "SET_PARAMETER") {
    r.headers.emplace_back("Public", std::string(public_methods));
  } else if (m == "DESCRIBE") {
    r = co_await rtsp_describe(std::move(req), peer);
  } else if (m == "SETUP") {
    r = co_await rtsp_setup(std::move(req), peer, link);
  } else if (m == "PLAY" || m == "PAUSE" || m == "TEARDOWN") {
    if (!s) {
      rtsp_errors->inc();
      co_return refusal(454, "session_not_found",
                        m + " needs the Session header of a SETUP on this connection's console");
    }
    if (m == "PLAY") {
      r = co_await rtsp_play(std::move(req), sid);
    } else if (m == "PAUSE") {
      r = co_await rtsp_pause(sid);
    } else {
      r = co_await rtsp_teardown(sid);
    }
  } else if (m == "ANNOUNCE" || m == "RECORD" || m == "REDIRECT") {
    r = refusal(405, "method_not_allowed", m + " is not offered: this server plays programs");
    r.headers.emplace_back("Allow", std::string(public_methods));
  } else {
    r = refusal(501, "not_implemented", "unknown method " + m);
  }
  if (r.status >= 400) {
    rtsp_errors->inc();
  }
  if (!sid.empty() && r.status < 300 && push_sessions.contains(sid)) {
    r.headers.emplace_back(
        "Session",
        fmt::format("{};timeout={}", sid,
                    std::max<int64_t>(1, grid.timing.rtsp_session_timeout.count() / 1000)));
  }
  co_return r;
}

// The program of a request and the viewer's right to it: the manifest, or the refusal.
asio::awaitable<result<const api::program_manifest*>> director_daemon::impl::rtsp_program(
    rtsp_target& t, std::optional<push::rtsp_response>& refused) {
  if (auth) {
    // The token first: nothing about the program (whether it exists, when it publishes) is told
    // to a console without the right to it. A rendition plays with its program's entitlement.
    auth::requirement req{auth::token_kind::viewer, api::entitlement_of(t.program),
                          auth::client_address(t.ctx)};
    if (auto no = co_await token_refusal(t.ctx, std::move(req))) {
      refused = refusal(*no);
      co_return make_error(errc::unauthorized, "refused");
    }
  }
  auto m = co_await find_program(t.program.str());
  if (m && !(*m)->renditions.empty()) {
    // A program of several renditions: RTSP plays one stream, its top video rendition (video
    // first, highest first), which carries the audio when the source muxed it in.
    t.program = *api::rendition_id((*m)->id, (*m)->renditions.front().name);
    m = co_await find_program(t.program.str());
  }
  if (m && (*m)->format != api::segment_format::mpegts) {
    m = make_error(errc::not_found, fmt::format("program {} is subtitles (WebVTT): RTSP carries "
                                                "MPEG-TS only",
                                                t.program.str()));
  }
  if (!m) {
    refused = refusal(m.err());
    co_return m.err();
  }
  co_return m;
}

asio::awaitable<push::rtsp_response> director_daemon::impl::rtsp_describe(push::rtsp_request req,
                                                                          tcp_endpoint peer) {
  auto t = parse_rtsp_target(req, peer);
  if (!t) {
    co_return refusal(t.err());
  }
  std::optional<rtsp_response> refused;
  auto m = co_await rtsp_program(*t, refused);
  if (!m) {
    co_return std::move(*refused);
  }
  auto host = station->director.listen.host;
  rtsp_response r;
  r.headers.emplace_back("Content-Type", "application/sdp");
  r.headers.emplace_back("Content-Base", t->base + "/");
  r.body = fmt::format(
      "v=0\r\no=- {} 1 IN IP4 {}\r\ns={}\r\nt=0 0\r\na=tool:vodgrid\r\na=range:npt=0-{:.3f}\r\n"
      "m=video 0 RTP/AVP 33\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:33 MP2T/90000\r\n"
      "a=control:{}/track1{}\r\n",
      std::hash<std::string>{}(t->program.str()) & 0xffffffff, host,
      (*m)->title.empty() ? t->program.str() : (*m)->title, (*m)->duration(), t->base, t->query);
  co_return r;
}

asio::awaitable<push::rtsp_response> director_daemon::impl::rtsp_setup(push::rtsp_request req,
                                                                       tcp_endpoint peer,
                                                                       rtsp_link& link) {
  auto t = parse_rtsp_target(req, peer);
  if (!t) {
    co_return refusal(t.err());
  }
  if (!req.header("Session").empty()) {
    co_return refusal(459, "aggregate_operation_not_allowed",
                      "a session has one stream: SETUP without a Session makes a new one");
  }
  // Over RTSPS the stream goes inside the TLS connection (interleaved), never in the clear over
  // UDP: what ffmpeg (rtsps:// implies -rtsp_transport tcp) and GStreamer's rtspsrc ask for. On a
  // plain connection the console chooses: UDP from the engines, or inside the connection through
  // the director's relay (a console behind NAT; one whose RTP stack takes a source's datagrams
  // from one address only, as GStreamer's does: the engines of a hand-off send from several).
  auto tr = push::parse_transport(req.header("Transport"), link.c.tls ? push::lower_transport::tcp
                                                                      : push::lower_transport::any);
  if (!tr) {
    co_return refusal(461, "unsupported_transport", tr.err().detail);
  }
  auto console = canonical(peer.address());
  if (!tr->destination.empty()) {
    boost::system::error_code ec;
    auto dest = asio::ip::make_address(tr->destination, ec);
    if (ec || canonical(dest) != console) {
      co_return refusal(403, "forbidden",
                        "streams go only to the address that asks for them (destination=" +
                            tr->destination + ")");
    }
  }
  if (!tr->interleaved && (tr->client_rtp < 1024 || tr->client_rtcp < 1024)) {
    co_return refusal(461, "unsupported_transport",
                      fmt::format("client_port {}-{} is out of range: 1024-65535", tr->client_rtp,
                                  tr->client_rtcp));
  }
  if (push_sessions.size() >= max_push_sessions) {
    co_return refusal(453, "not_enough_bandwidth", "the director holds as many sessions as it may");
  }
  std::optional<rtsp_response> refused;
  auto m = co_await rtsp_program(*t, refused);
  if (!m) {
    co_return std::move(*refused);
  }
  push_session s;
  do {
    s.id = random_session_id();
  } while (push_sessions.contains(s.id));
  s.program = t->program;
  s.console = console;
  s.stream_host = console;
  s.rtp_port = tr->client_rtp;
  s.rtcp_port = tr->client_rtcp;
  s.state.ssrc = static_cast<uint32_t>(push_rng());
  if (tr->interleaved) {
    boost::system::error_code ec;
    auto host = asio::ip::make_address(station->director.listen.host, ec);
    if (ec || host.is_unspecified()) {
      host = asio::ip::address_v4::loopback();  // engines of this host reach the relay there
    }
    auto rtp = open_udp(io.get_executor(), host);
    if (!rtp) {
      co_return refusal(453, "not_enough_bandwidth", rtp.err().detail);
    }
    auto rtcp = open_udp(io.get_executor(), host);
    if (!rtcp) {
      co_return refusal(453, "not_enough_bandwidth", rtcp.err().detail);
    }
    auto& r = link.relays.emplace_back(io.get_executor());
    r.rtp = std::move(*rtp);
    r.rtcp = std::move(*rtcp);
    r.session = s.id;
    r.ssrc = s.state.ssrc;
    r.channel_rtp = tr->channel_rtp;
    r.channel_rtcp = tr->channel_rtcp;
    s.interleaved = true;
    s.stream_host = host;
    s.rtp_port = r.rtp.local_endpoint(ec).port();
    s.rtcp_port = r.rtcp.local_endpoint(ec).port();
  }
  s.state.seq = static_cast<uint16_t>(push_rng());
  s.state.rtp_base = static_cast<uint32_t>(push_rng());
  s.touched = steady::now();
  rtsp_response r;
  r.headers.emplace_back(
      "Transport", push::write_transport(*tr, rtcp_sink_port, rtcp_sink_port + 1, s.state.ssrc));
  r.headers.emplace_back(
      "Session",
      fmt::format("{};timeout={}", s.id,
                  std::max<int64_t>(1, grid.timing.rtsp_session_timeout.count() / 1000)));
  push_by_ssrc[s.state.ssrc] = s.id;
  logger->info("director {}: RTSP session {} for {} to {}{}", station->name.str(), s.id,
               s.program.str(), console.to_string(),
               s.interleaved ? fmt::format(" inside its {} connection (relay port {})",
                                           link.c.tls ? "TLS" : "TCP", s.rtp_port)
                             : fmt::format(":{}", s.rtp_port));
  push_sessions.emplace(s.id, std::move(s));
  co_return r;
}

// PLAY: where to start (Range; else where the session stopped; else the start), at which Scale,
// on the engine the tables choose (claim 18). A PLAY while playing moves the stream (a seek).
asio::awaitable<push::rtsp_response> director_daemon::impl::rtsp_play(push::rtsp_request req,
                                                                      std::string sid) {
  std::optional<push::npt_range> range;
  if (auto h = req.header("Range"); !h.empty()) {
    auto parsed = push::parse_range(h);
    if (!parsed) {
      co_return refusal(457, "invalid_range", parsed.err().detail);
    }
    range = *parsed;
  }
  double scale = 1;
  if (auto h = req.header("Scale"); !h.empty()) {
    auto parsed = push::parse_scale(h);
    if (!parsed || std::abs(*parsed) < 1) {
      co_return refusal(
          400, "bad_request",
          parsed ? "Scale must be at least 1 in magnitude: no slow motion" : parsed.err().detail);
    }
    scale = *parsed;
  }
  auto it = push_sessions.find(sid);
  auto m = ready_program(it->second.program.str());
  if (!m) {
    co_return refusal(m.err());
  }
  double duration = (*m)->duration();
  if (it->second.now == push_session::phase::playing && it->second.engine) {
    co_await stop_stream(sid);  // where it stopped is where "now" is
    it = push_sessions.find(sid);
    if (it == push_sessions.end()) {
      co_return refusal(454, "session_not_found", "the session ended meanwhile");
    }
    m = ready_program(it->second.program.str());  // the catalog may have changed meanwhile
    if (!m) {
      co_return refusal(m.err());
    }
  }
  auto& s = it->second;
  ++s.generation;  // a stream started for an earlier request no longer counts
  auto start = plan_start(**m, s, range ? range->start : std::nullopt);
  if (!start) {
    co_return refusal(457, "invalid_range", start.err().detail);
  }
  start->state.scale = scale;
  auto pos = co_await start_stream(sid, std::move(*start), {});
  if (!pos) {
    co_return refusal(pos.err());
  }
  push_plays->inc();
  it = push_sessions.find(sid);
  rtsp_response r;
  r.headers.emplace_back("Range", push::write_range(pos->npt, duration));
  if (scale != 1) {
    r.headers.emplace_back("Scale", fmt::format("{}", scale));
  }
  uint32_t rtptime =
      pos->state.rtp_base + static_cast<uint32_t>(std::llround(pos->npt * push::rtp_clock_hz));
  auto t = parse_rtsp_target(req, {});
  r.headers.emplace_back("RTP-Info",
                         fmt::format("url={};seq={};rtptime={}", t ? t->base + "/track1" : req.uri,
                                     pos->state.seq, rtptime));
  co_return r;
}

asio::awaitable<push::rtsp_response> director_daemon::impl::rtsp_pause(std::string sid) {
  auto it = push_sessions.find(sid);
  if (it->second.now == push_session::phase::playing) {
    co_await stop_stream(sid);
    it = push_sessions.find(sid);
    if (it != push_sessions.end()) {
      it->second.now = push_session::phase::paused;
    }
  }
  co_return rtsp_response{};
}

asio::awaitable<push::rtsp_response> director_daemon::impl::rtsp_teardown(std::string sid) {
  if (push_sessions.find(sid)->second.now == push_session::phase::playing) {
    co_await stop_stream(sid);
  }
  end_session(sid);
  co_return rtsp_response{};
}

void director_daemon::impl::end_session(const std::string& sid) {
  auto it = push_sessions.find(sid);
  if (it == push_sessions.end()) {
    return;
  }
  push_by_ssrc.erase(it->second.state.ssrc);
  push_sessions.erase(it);
}

}  // namespace vodgrid::director
