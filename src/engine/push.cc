// The engine's push streams (DESIGN.md flow 8, docs/push.md): orders to stream a session to a
// console (from the director, or from another engine handing a stream off or swapping it), the
// pacer's events (what comes next, the hand-off at a segment's end, the end, a segment still
// arriving that starves the stream), the swap back of claim 22 and the position reports. The pacer
// (src/push) sends the datagrams on its own thread; this file decides, on the io thread.
#include <sys/mman.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "engine/decisions.h"
#include "engine/impl.h"

namespace vodgrid::engine {

std::optional<error> push_order_refusal(const api::push_order& o) {
  auto bad = [](std::string what) { return make_error(errc::invalid_argument, std::move(what)); };
  if (!api::valid_push_session(o.session)) {
    return bad("session must be 16 lower-case hex digits");
  }
  boost::system::error_code ec;
  asio::ip::make_address(o.console_host, ec);
  if (ec) {
    return bad("console_host " + o.console_host + " is not an IP address");
  }
  if (o.rtp_port == 0 || o.rtcp_port == 0) {
    return bad("rtp_port and rtcp_port must be 1..65535");
  }
  double s = o.state.scale;
  if (!std::isfinite(s) || s == 0 || std::abs(s) > 64) {
    return bad("scale must be finite, not 0, and within ±64");
  }
  if (!std::isfinite(o.npt_start) || o.npt_start < 0 || !std::isfinite(o.duration) ||
      o.duration <= 0) {
    return bad("npt_start must be a time and duration positive");
  }
  if (o.offset && o.seek) {
    return bad("an order has an offset or a seek, not both");
  }

  if (o.seek && (!std::isfinite(*o.seek) || *o.seek < 0 || *o.seek >= o.duration)) {
    return bad(fmt::format("seek must be within the segment's {} s", o.duration));
  }
  return std::nullopt;
}

result<uint64_t> push_start_offset(const api::push_order& o, const push::ts_index& ix,
                                   uint64_t size) {
  bool backward = o.state.scale < 0;
  constexpr uint64_t P = push::ts_packet_bytes;
  if (o.offset) {
    if (backward && *o.offset >= size) {
      return size;
    }
    if (*o.offset % P != 0 || *o.offset >= size) {
      return make_error(errc::invalid_argument,
                        fmt::format("offset {} is not a packet boundary inside the segment's {} "
                                    "bytes",
                                    *o.offset, size));
    }
    return *o.offset;
  }
  if (o.seek && ix.size < size && (ix.pcrs.empty() || *o.seek > ix.pcrs.back().seconds)) {
    // Past what has arrived of a segment still arriving (claim 21): where the seek falls if the
    // bitrate holds. The stream starves there at once and moves to an engine holding it all.
    auto at = static_cast<uint64_t>(*o.seek / o.duration * static_cast<double>(size));
    return std::min(at / P * P, (size - 1) / P * P);
  }
  if (o.seek) {
    uint64_t at = push::offset_for(ix, *o.seek);
    // Backward, the pacer sends the key frames before the offset: the one at the seek is first.
    return backward ? std::min(at + P, size) : at;
  }
  return backward ? size : 0;
}

std::optional<api::push_position> push_resume_point(const api::push_position& tail_end,
                                                    std::optional<segment_key> next) {
  bool backward = tail_end.state.scale < 0;
  api::push_position p = tail_end;
  if (next) {
    p.key = *next;
  } else if (backward && tail_end.key.index.v == 0) {
    return std::nullopt;
  } else {
    p.key.index.v = backward ? tail_end.key.index.v - 1 : tail_end.key.index.v + 1;
  }
  p.offset = backward ? push_from_end : 0;
  return p;
}

bool push_swap_when_starved(double scale, bool sought) {
  return scale != 1 || sought;
}

std::optional<std::string> push_swap_back_choice(const std::vector<push_candidate>& ours,
                                                 const std::set<segment_key>& held_there,
                                                 std::string_view incoming) {
  for (auto& c : ours) {
    if (!c.leaving && c.session != incoming && held_there.contains(c.key)) {
      return c.session;
    }
  }
  return std::nullopt;
}

using namespace std::chrono_literals;

namespace {

// Indexes kept at most: a few kB each.
constexpr size_t max_cached_indexes = 4096;

api::push_state to_api(const push::stream_state& s) {
  return {s.ssrc, s.seq, s.rtp_base, s.scale, s.origin_unix_ns, s.origin_npt};
}

push::stream_state to_pacer(const api::push_state& s) {
  return {s.ssrc, s.seq, s.rtp_base, s.scale, s.origin_unix_ns, s.origin_npt};
}

api::push_position to_api(const push::stream_position& p) {
  return {p.session, p.key, p.offset, p.npt, to_api(p.state)};
}

std::string body_of(const json::value& v) {
  return json::serialize(v);
}

// The keys of an engine's inventory (GET /v1/segments), nullopt when it is not one.
std::optional<std::set<segment_key>> inventory_keys(std::string_view body) {
  auto o = api::parse_object(body);
  if (!o || !o->contains("segments") || !o->at("segments").is_array()) {
    return std::nullopt;
  }
  std::set<segment_key> keys;
  for (auto& e : o->at("segments").as_array()) {
    if (!e.is_object() || !e.as_object().contains("program") ||
        !e.as_object().at("program").is_string() || !e.as_object().contains("index") ||
        !e.as_object().at("index").is_number()) {
      return std::nullopt;
    }
    boost::system::error_code ec;
    auto p = program_id::parse(e.as_object().at("program").as_string());
    auto i = e.as_object().at("index").to_number<uint32_t>(ec);
    if (!p || ec) {
      return std::nullopt;
    }
    keys.insert({*p, segment_index{i}});
  }
  return keys;
}

}  // namespace

status engine_daemon::impl::start_push() {
  push::pacer_options o;
  o.cname = self->name.str();
  boost::system::error_code ec;
  asio::ip::make_address(self->listen.host, ec);
  // Streams leave from the engine's listen address (a name there: from every address).
  o.bind_host = ec ? "0.0.0.0" : self->listen.host;
  pacer = std::make_unique<push::pacer>(o, [this](push::stream_event e) { on_push_event(e); });
  if (auto st = pacer->start(); !st) {
    return st;
  }
  net::client_options c;
  c.connect_timeout = grid.timing.connect;
  c.request_timeout = grid.timing.exchange;
  // A peer silent for push_silence within a reply has lost the stream anyway: the director
  // resumes it elsewhere after that long.
  c.read_timeout = grid.timing.push_silence;
  c.max_body = 16 << 20;  // an inventory of many segments is the largest reply
  c.bearer = [this] { return auth ? auth->token() : std::string(); };
  control = std::make_unique<net::http_client>(io.get_executor(), c);
  tasks.spawn(push_report_loop());
  return {};
}

void engine_daemon::impl::register_push_metrics() {
  auto& m = server->metrics();
  m.gauge_fn("vodgrid_engine_push_streams", "RTP push streams sent by this engine",
             [this] { return pacer ? static_cast<double>(pacer->streams()) : 0.0; });
  m.gauge_fn("vodgrid_engine_push_realtime",
             "1 when the thread sending RTP runs at a real-time priority (SCHED_FIFO)",
             [this] { return pacer && pacer->counters().realtime ? 1.0 : 0.0; });
  push_datagrams = &m.counter("vodgrid_engine_push_datagrams_total", "RTP datagrams sent");
  push_late = &m.counter("vodgrid_engine_push_late_total",
                         "RTP datagrams sent more than 2 ms after they were due");
  push_send_errors = &m.counter("vodgrid_engine_push_send_errors_total",
                                "RTP and RTCP datagrams the kernel refused");
  const char* handoffs = "Push streams handed to (out) or taken from (in) another engine";
  push_handoffs_out = &m.counter("vodgrid_engine_push_handoffs_total", handoffs, "dir=\"out\"");
  push_handoffs_in = &m.counter("vodgrid_engine_push_handoffs_total", handoffs, "dir=\"in\"");
  const char* swaps = "Push streams swapped to (out) or from (in) an engine (claims 21-22)";
  push_swaps_out = &m.counter("vodgrid_engine_push_swaps_total", swaps, "dir=\"out\"");
  push_swaps_in = &m.counter("vodgrid_engine_push_swaps_total", swaps, "dir=\"in\"");
}

void engine_daemon::impl::count_push(push_stream& p, const segment_key& key) {
  usage->stream_moved(p.counted, key);
  p.counted = key;
}

void engine_daemon::impl::forget_push(const std::string& sid) {
  auto it = pushes.find(sid);
  if (it == pushes.end()) {
    return;
  }
  usage->stream_ended(it->second.counted, false);
  pushes.erase(it);
}

// Key frame and PCR indexes of the segments streamed here. In memory, not stored with the
// segment: one pass over bytes the stream maps anyway rebuilds one, a segment's bytes never change
// under its key (its digest), and there is nothing to clean up when a copy is evicted. `keep`:
// cache it (a whole segment); the least recently used goes past max_cached_indexes.
std::shared_ptr<const push::ts_index> engine_daemon::impl::ts_index_of(const segment_key& key,
                                                                       std::string_view bytes,
                                                                       bool keep) {
  auto now = steady::now();
  if (auto it = ts_indexes.find(key); keep && it != ts_indexes.end()) {
    it->second.used = now;
    return it->second.index;
  }
  auto ix = push::index_ts(bytes);
  if (!ix) {
    return nullptr;
  }
  auto shared = std::make_shared<const push::ts_index>(std::move(*ix));
  if (keep) {
    if (ts_indexes.size() >= max_cached_indexes) {
      auto oldest = std::min_element(ts_indexes.begin(), ts_indexes.end(), [](auto& a, auto& b) {
        return a.second.used < b.second.used;
      });
      ts_indexes.erase(oldest);
    }
    ts_indexes[key] = {shared, now};
  }
  return shared;
}

// A held segment, mapped read-only: the mapping outlives the descriptor, and an eviction of the
// file (its pages stay until the last stream lets go).
result<push::segment_source> engine_daemon::impl::held_source(const segment_key& key) {
  VODGRID_TRY(auto file, store->open_segment(key));
  size_t n = file.size();
  if (n == 0) {
    return make_error(errc::invalid_argument, key.str() + " is empty");
  }
  void* p = ::mmap(nullptr, n, PROT_READ, MAP_SHARED, file.fd(), 0);
  if (p == MAP_FAILED) {
    return make_error(errc::io_error, "mmap " + key.str() + ": " + std::strerror(errno));
  }
  // Read ahead now, so that the pacer's thread seldom waits on the disk for a page.
  ::madvise(p, n, MADV_WILLNEED);
  push::segment_source src;
  src.owner =
      std::shared_ptr<const void>(p, [n](const void* q) { ::munmap(const_cast<void*>(q), n); });
  src.data = static_cast<const char*>(p);
  src.size = n;
  src.index = ts_index_of(key, {src.data, n}, true);
  if (!src.index) {
    return make_error(errc::invalid_argument, key.str() + " is not MPEG-TS");
  }
  usage->used(key, steady::now());
  return src;
}

// A segment still arriving: its bytes as they come (its file in the store, mapped read-only: the
// copy writes the same pages the pacer reads), its `available` moved on by follow_fill, indexed as
// far as it has arrived.
asio::awaitable<result<push::segment_source>> engine_daemon::impl::filling_source(
    std::shared_ptr<fill> f) {
  if (f->servable == 0) {
    co_await f->wait_beyond(0);
  }
  if (f->failure || f->size == 0 || !f->file) {
    co_return make_error(errc::unavailable, "the copy of " + f->order.key.str() + " failed");
  }
  if (!f->mapping) {
    size_t n = f->size;
    void* p = ::mmap(nullptr, n, PROT_READ, MAP_SHARED, f->file->fd(), 0);
    if (p == MAP_FAILED) {
      co_return make_error(errc::io_error,
                           "mmap " + f->order.key.str() + ": " + std::strerror(errno));
    }
    f->mapping =
        std::shared_ptr<const void>(p, [n](const void* q) { ::munmap(const_cast<void*>(q), n); });
  }
  const char* data = static_cast<const char*>(f->mapping.get());
  uint64_t have = f->servable / push::ts_packet_bytes * push::ts_packet_bytes;
  push::segment_source src;
  src.index = ts_index_of(f->order.key, {data, have}, false);
  if (!src.index) {
    co_return make_error(errc::invalid_argument, f->order.key.str() + " is not MPEG-TS");
  }
  auto available = std::make_shared<std::atomic<uint64_t>>(have);
  src.owner = f;  // and with it the mapping
  src.data = data;
  src.size = f->size;
  src.available = available;
  tasks.spawn(follow_fill(f, available));
  co_return src;
}

// Moves a growing source's `available` on as the copy arrives (on the io thread, where the copy
// writes: the pacer reads the bytes after an acquire of the count). When the copy is whole its
// index is cached; when it fails, the streams on it stop and their director resumes them.
asio::awaitable<void> engine_daemon::impl::follow_fill(
    std::shared_ptr<fill> f, std::shared_ptr<std::atomic<uint64_t>> available) {
  while (!f->ended && available.use_count() > 1) {
    co_await f->wait_beyond(available->load());
    available->store(f->servable, std::memory_order_release);
  }
  available->store(f->servable, std::memory_order_release);
  if (f->failure) {
    co_await push_failed_fill(f->order.key);
  } else if (f->ended && f->servable == f->size && f->mapping) {
    ts_index_of(f->order.key, {static_cast<const char*>(f->mapping.get()), f->size}, true);
  }
}

asio::awaitable<void> engine_daemon::impl::push_failed_fill(segment_key key) {
  if (!pacer || stopping) {
    co_return;
  }
  for (auto& p : pacer->positions()) {
    if (p.key != key || !pushes.contains(p.session) || pushes.at(p.session).handed_off) {
      continue;
    }
    if (!pacer || stopping) {
      co_return;  // the engine stopped during the last report
    }
    auto at = pacer->stop(p.session);
    forget_push(p.session);
    if (at) {
      api::push_ended e{self->name, to_api(*at), "failed", "the copy of " + key.str() + " failed"};
      co_await to_director(fmt::format("/v1/push/sessions/{}/ended", p.session), api::to_json(e));
    }
  }
}

// The bytes of a segment to stream: held here, or being received (cut-through).
asio::awaitable<result<push::segment_play>> engine_daemon::impl::push_segment(segment_key key,
                                                                              double npt_start,
                                                                              double duration) {
  push::segment_play play;
  play.key = key;
  play.npt_start = npt_start;
  play.duration = duration;
  auto held = held_source(key);
  if (held) {
    play.source = std::move(*held);
    co_return play;
  }
  if (held.err().code != errc::not_found) {
    co_return held.err();
  }
  auto f = fills.find(key);
  if (f == fills.end()) {
    co_return make_error(errc::not_found, "this engine does not hold segment " + key.str());
  }
  auto arriving = co_await filling_source(f->second);
  if (!arriving) {
    co_return arriving.err();
  }
  play.source = std::move(*arriving);
  co_return play;
}

// POST /v1/push/streams: stream a session to its console from a segment held or arriving here.
asio::awaitable<reply> engine_daemon::impl::push_start(request_context& ctx) {
  auto order = api::decode<api::push_order>(ctx.req.body());
  if (!order) {
    co_return net::error_reply(order.err());
  }
  if (auto why = push_order_refusal(*order)) {
    co_return net::error_reply(*why);
  }
  // A clock far from now would send a burst of the segment at once, or hold the stream for ever.
  auto now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  if (order->state.origin_unix_ns != 0 &&
      std::abs(order->state.origin_unix_ns - now_ns) > int64_t{60'000'000'000}) {
    co_return net::error_reply(
        make_error(errc::invalid_argument, "origin_unix_ns must be 0 or within a minute of now"));
  }
  if (!pacer || stopping) {
    co_return net::error_reply(make_error(errc::unavailable, "the engine is stopping"));
  }
  if (!co_await push_make_way(order->session)) {
    co_return net::error_reply(
        make_error(errc::conflict, "session " + order->session + " streams here already"));
  }
  // A swap back from an engine we are swapping to is an exchange: it takes no new place.
  bool exchange = order->swap && order->from && swapping_to.contains(order->from->str());
  if (!exchange && at_stream_limit(false, usage->active, self->max_streams) &&
      !(order->swap && co_await push_swap_back(*order))) {
    auto r = net::error_reply(
        make_error(errc::unavailable, fmt::format("engine {} is at its limit of {} streams",
                                                  self->name.str(), self->max_streams)));
    r.headers.emplace_back("Retry-After", "1");
    co_return r;
  }
  auto play = co_await push_segment(order->key, order->npt_start, order->duration);
  if (!play) {
    co_return net::error_reply(play.err());
  }
  auto offset = push_start_offset(*order, *play->source.index, play->source.size);
  if (!offset) {
    co_return net::error_reply(offset.err());
  }
  play->offset = *offset;
  co_return co_await start_pushing(std::move(*order), std::move(*play));
}

asio::awaitable<reply> engine_daemon::impl::start_pushing(api::push_order order,
                                                          push::segment_play play) {
  if (!pacer || pushes.contains(order.session)) {
    co_return net::error_reply(
        make_error(errc::conflict, "session " + order.session + " streams here already"));
  }
  auto host = asio::ip::make_address(order.console_host);
  push::stream_spec spec;
  spec.session = order.session;
  spec.rtp_to = {host, order.rtp_port};
  spec.rtcp_to = {host, order.rtcp_port};
  spec.state = to_pacer(order.state);
  spec.first = play;
  bool growing = play.source.available != nullptr;
  if (auto st = pacer->add(std::move(spec)); !st) {
    co_return net::error_reply(st.err());
  }
  api::push_position at{
      order.session, order.key, play.offset,
      order.npt_start + push::due_at(*play.source.index, play.offset, order.duration), order.state};
  auto& p = pushes[order.session];
  p.order = order;
  p.segments[order.key] = {order.npt_start, order.duration};
  p.sought = growing && play.offset > 0;
  ++usage->active;
  count_push(p, order.key);
  logger->info("{}: session {} streams {} from byte {} to {}:{} at scale {}{}", self->name.str(),
               order.session, order.key.str(), play.offset, order.console_host, order.rtp_port,
               order.state.scale, order.from ? " (from " + order.from->str() + ")" : "");
  if (order.from) {
    (order.swap ? push_swaps_in : push_handoffs_in)->inc();
    api::push_taken t{self->name, at, order.from, order.swap};
    tasks.spawn([](impl* d, std::string sid, api::push_taken t) -> asio::awaitable<void> {
      co_await d->to_director(fmt::format("/v1/push/sessions/{}/taken", sid), api::to_json(t));
    }(this, order.session, std::move(t)));
  }
  co_return net::json_reply(api::to_json(at), http::status::created);
}

// A session coming back to this engine (a hand-off back at 4x, a swap back) while its old stream
// here still sends the segment it handed off: the old one goes at its boundary, when the new one
// starts. False when the session streams here and is not leaving.
asio::awaitable<bool> engine_daemon::impl::push_make_way(std::string sid) {
  auto it = pushes.find(sid);
  if (it == pushes.end()) {
    co_return true;
  }
  if (!it->second.handed_off) {
    co_return false;
  }
  auto now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  auto wait = std::chrono::nanoseconds(it->second.leaves_at_ns - now_ns);
  if (wait > std::chrono::nanoseconds(0)) {
    asio::steady_timer t(io, std::min<steady::duration>(wait, grid.timing.push_silence));
    co_await t.async_wait(use_tuple);
  }
  if (pacer) {
    pacer->stop(sid);
  }
  forget_push(sid);
  co_return true;
}

// POST /v1/push/streams/{sid}/stop: where the stream stopped (PAUSE, TEARDOWN, a resume
// elsewhere).
asio::awaitable<reply> engine_daemon::impl::push_stop(request_context& ctx) {
  const auto& sid = ctx.params.at(0);
  if (!api::valid_push_session(sid)) {
    co_return net::error_reply(
        make_error(errc::invalid_argument, "session must be 16 lower-case hex digits"));
  }
  auto at = pacer ? pacer->stop(sid) : std::nullopt;
  // Forgotten either way: a stream between two segments (restarting, handing off) is not in the
  // pacer, and must not start again after this stop.
  forget_push(sid);
  if (!at) {
    co_return net::error_reply(make_error(errc::not_found, "no stream of session " + sid));
  }
  co_return net::json_reply(api::to_json(to_api(*at)));
}

void engine_daemon::impl::on_push_event(push::stream_event e) {
  asio::post(io, [this, e = std::move(e)]() mutable {
    if (!stopping) {
      tasks.spawn(push_event(std::move(e)));
    }
  });
}

asio::awaitable<void> engine_daemon::impl::push_event(push::stream_event e) {
  switch (e.kind) {
    case push::event_kind::next_wanted:
      co_await push_next_wanted(std::move(e.at));
      break;
    case push::event_kind::handoff_due:
      co_await push_hand_off(std::move(e.at));
      break;
    case push::event_kind::ended:
      co_await push_ended(std::move(e.at));
      break;
    case push::event_kind::starved:
      co_await push_starved(std::move(e.at));
      break;
  }
}

// Near the end of the last queued segment: the director says what follows and who streams it
// (claims 16, 18). Here: queue it; another engine: hand the stream to it at the boundary.
asio::awaitable<void> engine_daemon::impl::push_next_wanted(push::stream_position at) {
  auto it = pushes.find(at.session);
  if (it == pushes.end()) {
    co_return;
  }
  it->second.asking = true;
  api::push_next_request rq{self->name, at.key, at.state.scale, false};
  result<net::client_response> res = make_error(errc::unavailable, "not asked");
  // A few tries: the director may not have taken in yet that we stream the session (this asks at
  // once when the segment is shorter than next_lead, perhaps before it has our 201).
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (attempt > 0) {
      asio::steady_timer t(io, std::chrono::milliseconds(50 << attempt));
      co_await t.async_wait(use_tuple);
    }
    res = co_await to_director(fmt::format("/v1/push/sessions/{}/next", at.session),
                               api::to_json(rq));
    if (stopping || !pushes.contains(at.session) || (res && res->status == 200)) {
      break;
    }
  }
  it = pushes.find(at.session);
  if (it == pushes.end()) {
    co_return;
  }
  auto& p = it->second;
  p.asking = false;
  auto next = res && res->status == 200
                  ? api::decode<api::push_next_reply>(res->body)
                  : result<api::push_next_reply>(
                        make_error(errc::unavailable, res ? res->body : res.err().detail));
  if (!next) {
    logger->warn("{}: no word from the director on what follows {} in session {}: {}",
                 self->name.str(), at.key.str(), at.session, next.err().detail);
  } else if (next->end) {
    p.program_end = true;
    if (pacer) {
      // A BYE after the last datagram: consoles stop at once. A stream gone already needs none.
      (void)pacer->program_ends(at.session);
    }
  } else {
    p.next = *next;
    if (p.ended_at) {
      // The stream ran out first (a short tail: trick play, a rewind): push_ended goes on.
    } else if (next->engine.name == self->name) {
      co_await push_append(at.session, std::move(*next));
    } else if (pacer) {
      (void)pacer->hand_off(at.session);  // gone meanwhile: its `ended` goes on with p.next
    }
  }
  it = pushes.find(at.session);
  if (it != pushes.end() && it->second.ended_at) {
    auto ended = std::move(*it->second.ended_at);
    it->second.ended_at.reset();
    co_await push_ended(std::move(ended));
  }
}

asio::awaitable<void> engine_daemon::impl::push_append(std::string sid, api::push_next_reply next) {
  auto play = co_await push_segment(next.key, next.npt_start, next.duration);
  auto it = pushes.find(sid);
  if (it == pushes.end() || !pacer) {
    co_return;
  }
  auto& p = it->second;
  if (!p.next || p.next->key != next.key) {
    co_return;  // the stream ended meanwhile and push_ended started it again with `next`
  }
  status st = play ? status() : status(play.err());
  if (play) {
    play->offset = p.order.state.scale < 0 ? play->source.size : 0;
    st = pacer->append(sid, std::move(*play));
  }
  if (!st) {
    // The stream ends after its tail; push_ended has the director resume it at `next`.
    logger->warn("{}: session {} cannot go on with {}: {}", self->name.str(), sid, next.key.str(),
                 st.err().detail);
    co_return;
  }
  p.next.reset();
  p.segments[next.key] = {next.npt_start, next.duration};
  count_push(p, next.key);
}

// Handoff_lead before the boundary: the next engine gets the session with the state its first
// datagram continues from (claim 16). If it refuses, the director resumes the stream elsewhere.
asio::awaitable<void> engine_daemon::impl::push_hand_off(push::stream_position at) {
  auto it = pushes.find(at.session);
  if (it == pushes.end() || !it->second.next) {
    co_return;
  }
  auto& p = it->second;
  p.handed_off = true;  // from now on the pacer only finishes the segment
  p.leaves_at_ns = at.state.origin_unix_ns;
  auto target = *p.next;
  if (co_await push_hand_to(at, target) || co_await push_keep(at, target)) {
    co_return;
  }
  auto from = push_resume_point(to_api(at), target.key);
  api::push_ended e{self->name, *from, "failed",
                    "engine " + target.engine.name.str() + " refused the hand-off"};
  co_await to_director(fmt::format("/v1/push/sessions/{}/ended", at.session), api::to_json(e));
}

// The next engine refused the hand-off (it died, it is full): this engine goes on with the
// segment itself when it holds it, from the boundary on the same clock and sequence. Whether it
// does.
asio::awaitable<bool> engine_daemon::impl::push_keep(push::stream_position at,
                                                     api::push_next_reply next) {
  auto it = pushes.find(at.session);
  if (it == pushes.end() || !store->find(next.key)) {
    co_return false;
  }
  // The stream here sends the rest of its segment and goes at the boundary; then it starts again.
  // Meanwhile it is ours again: reported, and not tidied away as handed off.
  it->second.handed_off = false;
  auto now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  auto wait = std::chrono::nanoseconds(it->second.leaves_at_ns - now_ns) + 5ms;
  asio::steady_timer t(io, std::clamp<steady::duration>(wait, 0ms, grid.timing.push_silence));
  co_await t.async_wait(use_tuple);
  if (!pacer || !pushes.contains(at.session)) {
    co_return false;
  }
  pacer->stop(at.session);
  if (!co_await push_restart(at, next)) {
    forget_push(at.session);
    co_return false;
  }
  logger->info("{}: session {} goes on here with {}: {} refused it", self->name.str(), at.session,
               next.key.str(), next.engine.name.str());
  co_return true;
}

// Orders `target` to go on with the session from the state `at` (the end of our last segment):
// a hand-off. Whether it took it.
asio::awaitable<bool> engine_daemon::impl::push_hand_to(push::stream_position at,
                                                        api::push_next_reply target) {
  auto it = pushes.find(at.session);
  if (it == pushes.end()) {
    co_return false;
  }
  const auto& first = it->second.order;
  api::push_order o;
  o.session = at.session;
  o.key = target.key;
  o.npt_start = target.npt_start;
  o.duration = target.duration;
  if (at.state.scale > 0) {
    o.offset = 0;  // backward, no offset: from the end
  }
  o.console_host = first.console_host;
  o.rtp_port = first.rtp_port;
  o.rtcp_port = first.rtcp_port;
  o.state = to_api(at.state);
  o.from = self->name;
  if (!co_await push_order_to(target.engine.url, o)) {
    co_return false;
  }
  push_handoffs_out->inc();
  logger->info("{}: session {} handed to {} for {}", self->name.str(), at.session,
               target.engine.name.str(), target.key.str());
  co_return true;
}

// The stream is gone: the program is over; or it ran out before the director's answer, which is
// carried out now from where it ended; or nothing could follow (the director then resumes it
// from the next segment).
asio::awaitable<void> engine_daemon::impl::push_ended(push::stream_position at) {
  auto it = pushes.find(at.session);
  if (it == pushes.end()) {
    co_return;
  }
  auto& p = it->second;
  if (p.asking) {
    p.ended_at = at;  // decided when the director has answered
    co_return;
  }
  auto next = p.handed_off ? std::nullopt : p.next;
  bool end = p.program_end;
  if (!end && next) {
    bool here = next->engine.name == self->name;
    if (here ? co_await push_restart(at, *next) : co_await push_hand_to(at, *next)) {
      if (!here) {
        forget_push(at.session);
      }
      co_return;
    }
  }
  forget_push(at.session);
  api::push_ended e{self->name, to_api(at), "end", {}};
  auto resume = push_resume_point(e.at, next ? std::optional(next->key) : std::nullopt);
  if (!end && resume) {
    e.reason = "failed";
    e.at = *resume;
    e.detail = "nothing could follow " + at.key.str() + " here";
  }
  co_await to_director(fmt::format("/v1/push/sessions/{}/ended", at.session), api::to_json(e));
}

// A stream that ran out here before the segment after it was queued starts again with it, on the
// same clock and sequence. Whether it did.
asio::awaitable<bool> engine_daemon::impl::push_restart(push::stream_position at,
                                                        api::push_next_reply next) {
  auto play = co_await push_segment(next.key, next.npt_start, next.duration);
  auto it = pushes.find(at.session);
  if (!play || it == pushes.end() || !pacer) {
    co_return false;
  }
  auto& p = it->second;
  auto host = asio::ip::make_address(p.order.console_host);
  push::stream_spec spec;
  spec.session = at.session;
  spec.rtp_to = {host, p.order.rtp_port};
  spec.rtcp_to = {host, p.order.rtcp_port};
  spec.state = at.state;
  play->offset = at.state.scale < 0 ? play->source.size : 0;
  spec.first = std::move(*play);
  if (!pacer->add(std::move(spec))) {
    co_return false;
  }
  p.handed_off = false;
  p.next.reset();
  p.segments[next.key] = {next.npt_start, next.duration};
  count_push(p, next.key);
  co_return true;
}

// A stream that needs bytes of a segment still arriving: in trick play or after a seek (claims
// 21-22), move it to an engine holding the whole segment; at 1x, wait here.
asio::awaitable<void> engine_daemon::impl::push_starved(push::stream_position at) {
  auto it = pushes.find(at.session);
  if (it == pushes.end()) {
    co_return;
  }
  auto& p = it->second;
  bool sought = p.sought && at.key == p.order.key;
  if (p.swapping || p.handed_off || !push_swap_when_starved(at.state.scale, sought) ||
      !p.segments.contains(at.key)) {
    co_return;
  }
  p.swapping = true;
  // Held from here: the whole copy starts at the very datagram this stream would send next, even
  // if bytes arrive meanwhile, so that the console sees none twice.
  auto held = pacer ? pacer->hold(at.session) : std::nullopt;
  if (!held || held->key != at.key) {
    p.swapping = false;  // gone, or the segment arrived and the stream went past it
    if (held) {
      (void)pacer->release(at.session);
    }
    co_return;
  }
  at = std::move(*held);
  api::push_order o;
  o.session = at.session;
  o.key = at.key;
  o.npt_start = p.segments[at.key].npt_start;
  o.duration = p.segments[at.key].duration;
  if (at.packets == 0 && at.key == p.order.key && p.order.seek) {
    o.seek = p.order.seek;  // nothing sent yet: the holder finds the key frame of the seek
  } else {
    o.offset = at.offset;
  }
  o.console_host = p.order.console_host;
  o.rtp_port = p.order.rtp_port;
  o.rtcp_port = p.order.rtcp_port;
  o.state = to_api(at.state);
  o.from = self->name;
  o.swap = true;
  api::push_next_request rq{self->name, at.key, at.state.scale, true};
  auto res =
      co_await to_director(fmt::format("/v1/push/sessions/{}/next", at.session), api::to_json(rq));
  auto whole =
      res && res->status == 200
          ? api::decode<api::push_next_reply>(res->body)
          : result<api::push_next_reply>(make_error(errc::unavailable, "no engine holds it whole"));
  bool moved = false;
  if (whole && !whole->end && whole->engine.name != self->name) {
    swapping_to.insert(whole->engine.name.str());
    moved = co_await push_order_to(whole->engine.url, o);
    swapping_to.erase(whole->engine.name.str());
  }
  if (moved) {
    if (pacer) {
      pacer->stop(at.session);
    }
    forget_push(at.session);
    push_swaps_out->inc();
    logger->info("{}: session {} swapped to {} ({} is still arriving here)", self->name.str(),
                 at.session, whole->engine.name.str(), at.key.str());
  } else if (it = pushes.find(at.session); it != pushes.end()) {
    it->second.swapping = false;
    if (pacer) {
      (void)pacer->release(at.session);  // it goes on here as the bytes arrive
    }
    logger->warn("{}: session {} waits for {} here: no engine holding it whole took it",
                 self->name.str(), at.session, at.key.str());
  }
}

// Claim 22: at our limit, a swap is taken by handing one of our own streams, one whose segment
// the sender holds whole, back to the sender. Whether room was made.
asio::awaitable<bool> engine_daemon::impl::push_swap_back(api::push_order incoming) {
  const auto* sender = incoming.from ? grid.find_engine(incoming.from->str()) : nullptr;
  if (!sender || !pacer) {
    co_return false;
  }
  auto res = co_await control->get(sender->listen.url() + "/v1/segments");
  auto held = res && res->status == 200 ? inventory_keys(res->body) : std::nullopt;
  if (!held) {
    co_return false;
  }
  if (!pacer || stopping) {
    co_return false;  // the engine stopped meanwhile
  }
  auto positions = pacer->positions();
  std::vector<push_candidate> ours;
  for (auto& pos : positions) {
    auto it = pushes.find(pos.session);
    if (it != pushes.end()) {
      bool leaving =
          it->second.handed_off || it->second.swapping || !it->second.segments.contains(pos.key);
      ours.push_back({pos.session, pos.key, leaving});
    }
  }
  auto choice = push_swap_back_choice(ours, *held, incoming.session);
  if (!choice) {
    co_return false;
  }
  // Held while the sender takes it: the sender starts at the very datagram this engine would
  // send next, so that the console sees none twice.
  auto at = pacer->hold(*choice);
  if (!at) {
    co_return false;
  }
  auto& p = pushes.at(*choice);
  if (!held->contains(at->key) || !p.segments.contains(at->key)) {
    (void)pacer->release(*choice);  // it went on to a segment the sender lacks
    co_return false;
  }
  auto& pos = *at;
  p.swapping = true;
  api::push_order o{*choice,
                    pos.key,
                    p.segments[pos.key].npt_start,
                    p.segments[pos.key].duration,
                    pos.offset,
                    std::nullopt,
                    p.order.console_host,
                    p.order.rtp_port,
                    p.order.rtcp_port,
                    to_api(pos.state),
                    self->name,
                    true};
  bool moved = co_await push_order_to(sender->listen.url(), o);
  if (auto it = pushes.find(*choice); it != pushes.end()) {
    it->second.swapping = false;
  }
  if (!moved || !pacer) {
    if (pacer) {
      (void)pacer->release(*choice);
    }
    co_return false;
  }
  pacer->stop(*choice);
  forget_push(*choice);
  push_swaps_out->inc();
  logger->info("{}: session {} swapped back to {} to make room for session {}", self->name.str(),
               *choice, sender->name.str(), incoming.session);
  co_return true;
}

// Orders an engine to stream a session (a hand-off or a swap); whether it took it.
asio::awaitable<bool> engine_daemon::impl::push_order_to(std::string url, api::push_order o) {
  auto res = co_await control->send_json(http::verb::post, url + "/v1/push/streams",
                                         body_of(api::to_json(o)));
  if (res && res->status == 201) {
    co_return true;
  }
  logger->warn("{}: {} did not take session {}: {}", self->name.str(), url, o.session,
               res ? fmt::format("{} {}", res->status, res->body) : res.err().detail);
  co_return false;
}

// Every push_report: where each stream is, to the director (claim 17); it names the streams to
// stop (the session moved elsewhere or ended). Streams handed off are neither reported nor
// stopped: the next engine has the session while this one sends the rest of the segment.
asio::awaitable<void> engine_daemon::impl::push_report_loop() {
  while (!stopping) {
    if (co_await stop_requested.wait_for(grid.timing.push_report) || !pacer) {
      break;
    }
    auto c = pacer->counters();
    push_datagrams->set(static_cast<double>(c.datagrams));
    push_late->set(static_cast<double>(c.late));
    push_send_errors->set(static_cast<double>(c.send_errors));
    std::unordered_set<std::string> live;
    api::push_report rep{self->name, {}};
    for (auto& pos : pacer->positions()) {
      live.insert(pos.session);
      auto it = pushes.find(pos.session);
      if (it != pushes.end() && !it->second.handed_off) {
        rep.streams.push_back(to_api(pos));
      }
    }
    std::vector<std::string> gone;  // handed off, and the pacer has sent the rest
    for (auto& [sid, p] : pushes) {
      if (p.handed_off && !live.contains(sid)) {
        gone.push_back(sid);
      }
    }
    for (auto& sid : gone) {
      forget_push(sid);
    }
    if (rep.streams.empty() && !report_empty) {
      continue;
    }
    report_empty = !rep.streams.empty();
    auto res = co_await to_director("/v1/push/positions", api::to_json(rep));
    auto reply = res && res->status == 200
                     ? api::decode<api::push_report_reply>(res->body)
                     : result<api::push_report_reply>(make_error(errc::unavailable, "no reply"));
    for (auto& sid : reply ? reply->stop : std::vector<std::string>{}) {
      auto it = pushes.find(sid);
      if (pacer && it != pushes.end() && !it->second.handed_off) {
        logger->info("{}: session {} stopped: the director has moved it", self->name.str(), sid);
        pacer->stop(sid);
        forget_push(sid);
      }
    }
  }
}

asio::awaitable<result<net::client_response>> engine_daemon::impl::to_director(std::string path,
                                                                               json::value body) {
  co_return co_await control->send_json(http::verb::post, station->director.listen.url() + path,
                                        body_of(body));
}

}  // namespace vodgrid::engine
