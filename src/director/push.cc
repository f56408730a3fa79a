// The engines' side of push streaming (DESIGN.md flow 8): the director starts and stops streams at
// its engines, answers "what comes next" near each segment's end (claims 16, 18: and orders that
// engine to preload it), learns of hand-offs, ends and positions, resumes the streams of an engine
// gone silent on another holder (claim 17), and ends sessions with no keep-alive.
#include <fmt/format.h>
#include <boost/json/serialize.hpp>

#include "auth/client.h"
#include "auth/token.h"
#include "director/impl.h"
#include "push/rtp.h"

namespace vodgrid::director {

std::optional<program_point> point_at(const api::program_manifest& m, double npt) {
  double start = 0;
  for (auto& s : m.segments) {
    if (npt < start + s.duration) {
      return program_point{s.index, start, std::max(0.0, npt - start)};
    }
    start += s.duration;
  }
  return std::nullopt;
}

double segment_start(const api::program_manifest& m, segment_index index) {
  double start = 0;
  for (size_t i = 0; i < index.v && i < m.segments.size(); ++i) {
    start += m.segments[i].duration;
  }
  return start;
}

std::optional<segment_index> next_segment(const api::program_manifest& m, segment_index current,
                                          double scale) {
  if (scale < 0) {
    if (current.v == 0) {
      return std::nullopt;
    }
    return segment_index{current.v - 1};
  }
  if (current.v + 1 >= m.segments.size()) {
    return std::nullopt;
  }
  return segment_index{current.v + 1};
}

namespace {

std::string session_url(const std::string& engine_url, std::string_view sid, std::string_view op) {
  return fmt::format("{}/v1/push/streams/{}{}", engine_url, sid, op);
}

}  // namespace

result<stream_start> director_daemon::impl::plan_start(const api::program_manifest& m,
                                                       const push_session& s,
                                                       std::optional<double> npt) const {
  stream_start st;
  st.state = s.at ? s.at->state : s.state;
  st.state.origin_unix_ns = 0;  // the engine starts the stream's clock at its first datagram
  st.state.origin_npt = 0;
  if (npt) {
    auto p = point_at(m, *npt);
    if (!p) {
      return make_error(
          errc::invalid_argument,
          fmt::format("npt {:.3f} is not before the program's end ({:.3f} s)", *npt, m.duration()));
    }
    st.key = {m.id, p->index};
    if (p->into > 0) {
      st.seek = p->into;
    }
  } else if (s.at && !s.ended) {
    if (s.at->key.index.v >= m.segments.size()) {
      return make_error(errc::invalid_argument, "the session is at the program's end");
    }
    st.key = s.at->key;
    st.offset = s.at->offset;
    // Stopped at the very end of a segment (a PAUSE at its boundary): on from the next one.
    if (st.state.scale > 0 && *st.offset >= m.segments[st.key.index.v].size) {
      auto n = next_segment(m, st.key.index, st.state.scale);
      if (!n) {
        return make_error(errc::invalid_argument, "the session is at the program's end");
      }
      st.key.index = *n;
      st.offset = 0;
    }
  } else {
    if (m.segments.empty()) {
      return make_error(errc::not_found, "program " + m.id.str() + " has no segments");
    }
    st.key = {m.id, segment_index{0}};
  }
  if (st.key.index.v >= m.segments.size()) {
    return make_error(errc::not_found, "the session's position is past the program");
  }
  st.npt_start = segment_start(m, st.key.index);
  st.duration = m.segments[st.key.index.v].duration;
  return st;
}

// An engine of ours for a stream of `key`, none of `tried`: the tables' choice for a console
// (claim 18, the preloaded engine preferred) when nothing was tried, else the first other holder
// up and under its limits (whole copies first); when none here can, a copy from another station
// (claim 14). whole: only a whole copy, at its limit or not (a swap, claims 21-22).
asio::awaitable<result<engine_slot>> director_daemon::impl::push_engine_for(
    segment_key key, std::vector<engine_slot> tried, bool whole) {
  auto now = steady::now();
  std::optional<engine_slot> e;
  if (tried.empty() && !whole) {
    e = choose_for_console(key, now);
  }
  // For a swap (whole), an engine at its limit will do: it takes the stream by swapping one of its
  // own back to the asker (claim 22).
  auto usable = [&](engine_slot x) {
    auto& en = tables.engine(x);
    return tables.is_up(en, now) && std::find(tried.begin(), tried.end(), x) == tried.end() &&
           (whole || en.load.active_streams + en.assigned_now() < en.load.max_streams);
  };
  for (auto* list : {&tables.holders(key), whole ? nullptr : &tables.filling(key)}) {
    for (size_t i = 0; !e && list && i < list->size(); ++i) {
      if (usable((*list)[i])) {
        e = (*list)[i];
      }
    }
  }
  if (!e && !whole && grid.registry && tables.holders(key).empty()) {
    auto f = co_await fall_back(key);
    if (f && f->engine && usable(*f->engine)) {
      e = f->engine;
    }
  }
  if (!e) {
    co_return make_error(
        errc::unavailable,
        fmt::format("no engine of station {} {} {} and can stream it", station->name.str(),
                    whole ? "holds all of" : "holds", key.str()));
  }
  tables.note_sent(*e, now);
  co_return *e;
}

// Orders an engine to stream session `sid` from `st`, trying the station's holders in turn.
asio::awaitable<result<api::push_position>> director_daemon::impl::start_stream(
    std::string sid, stream_start st, std::vector<engine_slot> tried) {
  error last = make_error(errc::unavailable, "no engine took the stream");
  auto first = push_sessions.find(sid);
  if (first == push_sessions.end()) {
    co_return make_error(errc::not_found, "the session ended");
  }
  const uint64_t generation = first->second.generation;
  for (size_t attempt = 0; attempt <= tables.engine_count(); ++attempt) {
    auto e = co_await push_engine_for(st.key, tried, false);
    if (!e) {
      co_return attempt == 0 ? e.err() : last;
    }
    tried.push_back(*e);
    auto it = push_sessions.find(sid);
    if (it == push_sessions.end()) {
      co_return make_error(errc::not_found, "the session ended");
    }
    auto& s = it->second;
    api::push_order o{sid,
                      st.key,
                      st.npt_start,
                      st.duration,
                      st.offset,
                      st.seek,
                      s.stream_host.to_string(),
                      s.rtp_port,
                      s.rtcp_port,
                      st.state,
                      std::nullopt,
                      false};
    auto url = tables.engine(*e).url;
    // The engine may ask what comes next (a short segment) before its reply is read here: it is
    // the session's engine-to-be from now on.
    s.next_engine = *e;
    auto res = co_await client->send_json(http::verb::post, url + "/v1/push/streams",
                                          json::serialize(api::to_json(o)));
    if (!res || res->status != 201) {
      if (auto again = push_sessions.find(sid);
          again != push_sessions.end() && again->second.next_engine == *e) {
        again->second.next_engine.reset();
      }
      last = make_error(errc::unavailable, fmt::format("engine {} refused the stream: {}",
                                                       tables.engine(*e).name.str(),
                                                       res ? res->body : res.err().detail));
      logger->warn("director {}: {}", station->name.str(), last.detail);
      continue;
    }
    auto pos = api::decode<api::push_position>(res->body);
    it = push_sessions.find(sid);
    if (!pos || it == push_sessions.end() || it->second.generation != generation) {
      // Stopped, played again or ended while the order was on its way: this stream is not wanted.
      tasks.spawn(send_stop(url, sid));
      co_return pos ? make_error(errc::conflict, "the session was stopped or moved meanwhile")
                    : pos.err();
    }
    auto& now_s = it->second;
    now_s.now = push_session::phase::playing;
    if (now_s.next_engine == *e || !now_s.engine) {
      now_s.engine = *e;  // unless the engine already handed the stream on (a short segment)
    }
    if (now_s.next_engine == *e) {
      now_s.next_engine.reset();
    }
    now_s.at = *pos;
    now_s.ended = false;
    now_s.heard = steady::now();
    co_return *pos;
  }
  co_return last;
}

asio::awaitable<void> director_daemon::impl::send_stop(std::string engine_url, std::string sid) {
  co_await client->send_json(http::verb::post, session_url(engine_url, sid, "/stop"), "{}");
}

// Stops the session's stream where it is and keeps that position (the last one reported when the
// engine does not answer).
asio::awaitable<void> director_daemon::impl::stop_stream(std::string sid) {
  auto it = push_sessions.find(sid);
  if (it == push_sessions.end()) {
    co_return;
  }
  ++it->second.generation;
  if (!it->second.engine) {
    co_return;
  }
  auto url = tables.engine(*it->second.engine).url;
  auto res = co_await client->send_json(http::verb::post, session_url(url, sid, "/stop"), "{}");
  it = push_sessions.find(sid);
  if (it == push_sessions.end()) {
    co_return;
  }
  if (res && res->status == 200) {
    if (auto pos = api::decode<api::push_position>(res->body)) {
      it->second.at = *pos;
    }
  }
  if (auto n = it->second.next_engine) {
    // A hand-off may be under way. Awaited: a PLAY that follows may order the same engine, and its
    // order must come after this stop.
    co_await send_stop(tables.engine(*n).url, sid);
    it = push_sessions.find(sid);
    if (it == push_sessions.end()) {
      co_return;
    }
  }
  it->second.engine.reset();
  it->second.next_engine.reset();
  it->second.now = push_session::phase::ready;
}

// The session of an engine's request about it, if that engine streams it (or is taking it over).
status director_daemon::impl::speaks_for(const request_context& ctx,
                                         const engine_id& engine) const {
  if (!auth) {
    return {};
  }
  auto t = auth::parse_token(auth::token_of(ctx));
  if (!t || t->body.subject != engine.str()) {
    return make_error(errc::forbidden,
                      fmt::format("the token is not engine {}'s: an engine speaks for itself only",
                                  engine.str()));
  }
  return {};
}

result<push_session*> director_daemon::impl::engine_session(const request_context& ctx,
                                                            const std::string& sid,
                                                            const engine_id& engine,
                                                            engine_slot& slot) {
  if (auto st = speaks_for(ctx, engine); !st) {
    return st.err();
  }
  auto it = push_sessions.find(sid);
  if (it == push_sessions.end()) {
    return make_error(errc::not_found, "no such session: " + sid);
  }
  auto e = tables.find_engine(engine.str());
  if (!e) {
    return make_error(errc::forbidden, "engine " + engine.str() + " is not in this station");
  }
  slot = *e;
  return &it->second;
}

// POST /v1/push/sessions/{sid}/next: the segment after the asker's and the engine for it (claims
// 16, 18), told to preload it; or an engine holding all of the asker's segment (whole: a swap).
asio::awaitable<reply> director_daemon::impl::push_next(request_context& ctx) {
  auto rq = api::decode<api::push_next_request>(ctx.req.body());
  if (!rq) {
    co_return net::error_reply(rq.err());
  }
  engine_slot asker{};
  auto s = engine_session(ctx, ctx.params[0], rq->engine, asker);
  if (!s) {
    co_return net::error_reply(s.err());
  }
  if ((*s)->engine != asker && (*s)->next_engine != asker) {
    co_return net::error_reply(
        make_error(errc::conflict,
                   "engine " + rq->engine.str() + " does not stream session " + ctx.params[0]));
  }
  auto m = ready_program(rq->key.program.str());
  if (!m || rq->key.index.v >= (*m)->segments.size()) {
    co_return net::error_reply(make_error(errc::not_found, "no such segment " + rq->key.str()));
  }
  api::push_next_reply out;
  segment_key next = rq->key;
  if (!rq->whole) {
    auto n = next_segment(**m, rq->key.index, rq->scale);
    if (!n) {
      out.end = true;
      co_return net::json_reply(api::to_json(out));
    }
    next.index = *n;
  }
  std::vector<engine_slot> tried;
  if (rq->whole) {
    tried.push_back(asker);
  }
  auto e = co_await push_engine_for(next, std::move(tried), rq->whole);
  if (!e) {
    co_return unavailable_reply(e.err());
  }
  auto it = push_sessions.find(ctx.params[0]);
  if (it == push_sessions.end()) {
    co_return net::error_reply(make_error(errc::not_found, "the session ended"));
  }
  if (*e != asker) {
    it->second.next_engine = *e;
  }
  preload_orders->inc();
  tasks.spawn(send_preload(tables.engine(*e).url + "/v1/orders/preload", api::preload_order{next}));
  out.key = next;
  out.npt_start = segment_start(**m, next.index);
  out.duration = (*m)->segments[next.index.v].duration;
  out.engine = {tables.engine(*e).name, tables.engine(*e).url};
  co_return net::json_reply(api::to_json(out));
}

// POST /v1/push/sessions/{sid}/taken: a hand-off (claim 16) or a swap (claims 21-22) arrived.
asio::awaitable<reply> director_daemon::impl::push_taken(request_context& ctx) {
  auto t = api::decode<api::push_taken>(ctx.req.body());
  if (!t) {
    co_return net::error_reply(t.err());
  }
  engine_slot e{};
  auto s = engine_session(ctx, ctx.params[0], t->engine, e);
  if (!s) {
    co_return net::error_reply(s.err());
  }
  auto& sess = **s;
  auto from = t->from ? tables.find_engine(t->from->str()) : std::nullopt;
  bool expected = sess.engine == e || sess.next_engine == e || (from && sess.engine == from);
  if (sess.now != push_session::phase::playing || !expected) {
    // A hand-off that raced a PAUSE or a move: the stream is not the session's (the engine's next
    // report is answered with a stop).
    co_return net::error_reply(make_error(
        errc::conflict, "session " + ctx.params[0] + " is not streamed by " + t->engine.str()));
  }
  take_over(sess, e, t->at);
  (t->swap ? push_swaps : push_handoffs)->inc();
  co_return net::json_reply(json::object{});
}

void director_daemon::impl::take_over(push_session& s, engine_slot e,
                                      const api::push_position& at) {
  if (s.engine != e) {
    ++s.handoffs;
  }
  s.engine = e;
  if (s.next_engine == e) {
    s.next_engine.reset();  // (one named after it, by its own `next`, stays)
  }
  s.at = at;
  s.heard = steady::now();
  s.now = push_session::phase::playing;
  s.ended = false;
}

// POST /v1/push/sessions/{sid}/ended: the stream left its engine without a hand-off: the program
// is over, or the engine could not go on and the session is resumed elsewhere.
asio::awaitable<reply> director_daemon::impl::push_ended(request_context& ctx) {
  auto rq = api::decode<api::push_ended>(ctx.req.body());
  if (!rq) {
    co_return net::error_reply(rq.err());
  }
  engine_slot e{};
  auto s = engine_session(ctx, ctx.params[0], rq->engine, e);
  if (!s) {
    co_return net::error_reply(s.err());
  }
  if ((*s)->engine != e && (*s)->next_engine != e) {
    co_return net::json_reply(json::object{});  // an old stream's word: the session moved on
  }
  (*s)->at = rq->at;
  if (rq->reason == "end") {
    (*s)->ended = true;
    (*s)->engine.reset();
    (*s)->next_engine.reset();
  } else {
    logger->warn("director {}: engine {} could not go on with session {}: {}", station->name.str(),
                 rq->engine.str(), ctx.params[0], rq->detail);
    tasks.spawn(resume(ctx.params[0], e));
  }
  co_return net::json_reply(json::object{});
}

// POST /v1/push/positions: where each of an engine's streams is; the reply names the streams it
// must stop (the sessions moved elsewhere or ended).
asio::awaitable<reply> director_daemon::impl::push_positions(request_context& ctx) {
  auto rep = api::decode<api::push_report>(ctx.req.body());
  if (!rep) {
    co_return net::error_reply(rep.err());
  }
  if (auto st = speaks_for(ctx, rep->engine); !st) {
    co_return net::error_reply(st.err());
  }
  auto e = tables.find_engine(rep->engine.str());
  if (!e) {
    co_return net::error_reply(
        make_error(errc::forbidden, "engine " + rep->engine.str() + " is not in this station"));
  }
  api::push_report_reply out;
  for (auto& p : rep->streams) {
    auto it = push_sessions.find(p.session);
    if (it == push_sessions.end()) {
      out.stop.push_back(p.session);
      continue;
    }
    auto& s = it->second;
    if (s.next_engine == *e) {
      take_over(s, *e, p);  // its report came before its `taken`
    } else if (s.engine == *e) {
      s.at = p;
      s.heard = steady::now();
    } else {
      out.stop.push_back(p.session);
    }
  }
  co_return net::json_reply(api::to_json(out));
}

// Claim 17: the session goes on at another holder from the last position reported. The old engine
// is told to stop in case it is only slow.
asio::awaitable<void> director_daemon::impl::resume(std::string sid, engine_slot from) {
  auto it = push_sessions.find(sid);
  if (it == push_sessions.end() || it->second.resuming) {
    co_return;
  }
  it->second.resuming = true;
  ++it->second.generation;
  // The silent engine no longer streams the session: its reports, if it comes back, get a stop.
  it->second.engine.reset();
  it->second.next_engine.reset();
  tasks.spawn(send_stop(tables.engine(from).url, sid));
  auto m = ready_program(it->second.program.str());
  result<api::push_position> pos = make_error(errc::not_found, "the program is gone");
  if (m) {
    auto st = plan_start(**m, it->second, std::nullopt);
    if (st) {
      st->state.scale = it->second.at ? it->second.at->state.scale : 1;
      std::vector<engine_slot> tried(1, from);
      pos = co_await start_stream(sid, *st, std::move(tried));
      if (!pos && push_sessions.contains(sid)) {
        // The engine that gave up may be the only holder left up (it failed a hand-off, say):
        // it is asked again rather than leaving the session stopped.
        pos = co_await start_stream(sid, std::move(*st), {});
      }
    } else {
      pos = st.err();
    }
  }
  it = push_sessions.find(sid);
  if (it == push_sessions.end()) {
    co_return;
  }
  it->second.resuming = false;
  if (pos) {
    push_resumes->inc();
    ++it->second.resumes;
    logger->info("director {}: session {} resumed at {} offset {}", station->name.str(), sid,
                 pos->key.str(), pos->offset);
  } else {
    // Tried again after another silence (the engine that gave up counts as the session's until
    // then, so that the sweep finds it).
    it->second.heard = steady::now();
    if (!it->second.engine && it->second.now == push_session::phase::playing) {
      it->second.engine = from;
    }
    logger->warn("director {}: session {} could not be resumed: {}", station->name.str(), sid,
                 pos.err().detail);
  }
}

// Every tenth of a second: resume the sessions whose engine went silent; end those whose console
// went silent (no RTSP request or RTCP report for rtsp_session_timeout).
asio::awaitable<void> director_daemon::impl::push_sweep_loop() {
  asio::steady_timer t(io);
  while (!stopping) {
    t.expires_after(std::chrono::milliseconds(100));
    co_await t.async_wait(use_tuple);
    auto now = steady::now();
    std::vector<std::pair<std::string, engine_slot>> silent;
    std::vector<std::string> expired;
    for (auto& [id, s] : push_sessions) {
      if (now - s.touched > grid.timing.rtsp_session_timeout) {
        expired.push_back(id);
      } else if (stream_silent(s, now, grid.timing.push_silence)) {
        silent.emplace_back(id, *s.engine);
      }
    }
    for (auto& [id, e] : silent) {
      logger->warn("director {}: engine {} silent on session {}: resuming it elsewhere",
                   station->name.str(), tables.engine(e).name.str(), id);
      tasks.spawn(resume(id, e));
    }
    for (auto& id : expired) {
      auto it = push_sessions.find(id);
      if (it != push_sessions.end() && it->second.engine) {
        tasks.spawn(send_stop(tables.engine(*it->second.engine).url, id));
      }
      logger->info("director {}: session {} timed out", station->name.str(), id);
      end_session(id);
    }
  }
}

// The server_port pair of SETUP: consoles send their RTCP receiver reports here, which keep their
// sessions alive like a GET_PARAMETER.
status director_daemon::impl::open_rtcp_sink() {
  boost::system::error_code ec;
  auto host = asio::ip::make_address(station->director.listen.host, ec);
  if (ec) {
    return make_error(errc::invalid_argument, "bad listen address");
  }
  for (int attempt = 0; attempt < 50; ++attempt) {
    asio::ip::udp::socket a(io), b(io);
    a.open(host.is_v6() ? asio::ip::udp::v6() : asio::ip::udp::v4(), ec);
    a.bind({host, 0}, ec);
    if (ec) {
      return make_error(errc::unavailable, "cannot bind a UDP port: " + ec.message());
    }
    uint16_t p = a.local_endpoint().port();
    if (p % 2 != 0 || p == 65534) {
      continue;
    }
    b.open(a.local_endpoint().protocol(), ec);
    b.bind({host, static_cast<uint16_t>(p + 1)}, ec);
    if (ec) {
      continue;
    }
    rtcp_sink_port = p;
    rtcp_sinks.push_back(std::move(a));
    rtcp_sinks.push_back(std::move(b));
    tasks.spawn(rtcp_sink_loop(0));
    tasks.spawn(rtcp_sink_loop(1));
    return {};
  }
  return make_error(errc::unavailable, "no free pair of UDP ports for RTCP");
}

asio::awaitable<void> director_daemon::impl::rtcp_sink_loop(size_t which) {
  std::array<uint8_t, 2048> buf{};
  while (!stopping) {
    asio::ip::udp::endpoint from;
    auto [ec, n] =
        co_await rtcp_sinks[which].async_receive_from(asio::buffer(buf), from, use_tuple);
    if (ec == asio::error::operation_aborted || stopping) {
      break;
    }
    if (ec) {
      continue;
    }
    auto now = steady::now();
    for (uint32_t ssrc : push::rtcp_reported_sources({buf.data(), n})) {
      auto it = push_by_ssrc.find(ssrc);
      if (it == push_by_ssrc.end()) {
        continue;
      }
      auto s = push_sessions.find(it->second);
      auto a = from.address();
      if (a.is_v6() && a.to_v6().is_v4_mapped()) {
        a = asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
      }
      if (s != push_sessions.end() && s->second.console == a) {
        s->second.touched = now;
      }
    }
  }
}

}  // namespace vodgrid::director
