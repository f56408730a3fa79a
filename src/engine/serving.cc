// Segment requests: GET/HEAD of a held segment (ranges, sendfile, the stream limit and its 307
// handoff), of a segment arriving (cut-through), PUT, DELETE, the inventory and preload orders; and
// the URL signature or engine token a GET needs when the grid has an auth server.
#include <boost/asio/co_spawn.hpp>

#include "auth/client.h"
#include "engine/decisions.h"
#include "engine/impl.h"
#include "net/range.h"

namespace vodgrid::engine {

net::range_decision segment_range(std::string_view range, std::string_view if_range,
                                  std::string_view etag, uint64_t size) {
  if (range.empty() || (!if_range.empty() && if_range != etag)) {
    return {};
  }
  return net::decide_range(range, size);
}

bool at_stream_limit(bool copy, uint32_t active_streams, uint32_t max_streams) {
  return !copy && active_streams >= max_streams;
}

// Counts a stream, in all and per segment, until the server lets go of its body (on the home
// loop) or the request gives it up (on its own loop).
struct stream_count {
  std::shared_ptr<segment_usage> usage;
  bool copy;
  segment_key key;
  uint32_t counted_in;  // the streams counted with it (this one included) when it started
  stream_count(std::shared_ptr<segment_usage> u, bool c, segment_key s)
      : usage(std::move(u)), copy(c), key(std::move(s)) {
    counted_in = usage->stream_started(key, copy);
  }
  stream_count(const stream_count&) = delete;
  stream_count& operator=(const stream_count&) = delete;
  ~stream_count() { usage->stream_ended(key, copy); }
};

// Counts a stream and then holds its segment file open, until the server releases the slice.
// Counted before the file is opened: eviction and DELETE ?if_idle (home loop), which check the
// count, never remove a segment that a GET on another loop is opening.
struct stream_guard {
  stream_count count;
  std::optional<store::segment_file> file;
  stream_guard(std::shared_ptr<segment_usage> u, bool copy, segment_key s)
      : count(std::move(u), copy, std::move(s)) {}
};

namespace {

result<segment_key> key_from(const request_context& ctx) {
  auto p = program_id::parse(ctx.params.at(0));
  auto i = segment_index::parse(ctx.params.at(1));
  if (!p || !i) {
    return make_error(errc::invalid_argument, "bad segment path: " + ctx.path);
  }
  return segment_key{*p, *i};
}

// A segment reply's Content-Type: the URL's extension says what the program's segments are
// (api::segment_format, chosen by the director's playlist); the store holds bytes either way.
const char* content_type_of(const request_context& ctx) {
  return api::segment_content_type(ctx.path.ends_with(".vtt") ? api::segment_format::webvtt
                                                              : api::segment_format::mpegts);
}

}  // namespace

// A segment request without a valid URL signature: the reply that refuses it, or nullopt for a copy
// by another engine, which passes with its engine token (claims 24, 25); anything else is refused
// with the signature's reason.
asio::awaitable<std::optional<reply>> engine_daemon::impl::segment_refusal(request_context& ctx,
                                                                           error why) {
  auto token = auth::token_of(ctx);
  if (why.code == errc::unauthorized && !token.empty()) {
    auth::requirement req{auth::token_kind::engine, std::nullopt, {}};
    auto out = auth->verifier().verify(token, req);
    if (!out && out.why == auth::token_error::unknown_key) {
      out = co_await auth->keys().verify(std::string(token), std::move(req));
    }
    if (out) {
      co_return std::nullopt;
    }
    co_return net::error_reply(out.as_error());
  }
  co_return net::error_reply(why);
}

void engine_daemon::impl::segment_headers(reply& r, std::string digest) const {
  std::string etag;
  etag.reserve(digest.size() + 2);
  etag += '"';
  etag += digest;
  etag += '"';
  r.content_type = "video/mp2t";
  r.headers.reserve(7);  // one allocation for the headers, Content-Range included
  r.headers.emplace_back("Accept-Ranges", "bytes");
  r.headers.emplace_back("ETag", std::move(etag));
  r.headers.emplace_back("Cache-Control", "public, max-age=31536000, immutable");
  r.headers.emplace_back(api::sha256_header, std::move(digest));
  r.headers.emplace_back(api::engine_header, self->name.str());
}

namespace {

// The byte range a segment request asks for (RFC 9110 §14): the whole segment, a range (206), or
// a 416 reply. If-Range with another validator than ours asks for the whole segment (§13.1.5).
std::optional<reply> apply_range(const request_context& ctx, reply& r, uint64_t size,
                                 net::byte_range& range) {
  range = {0, size};
  std::string_view our_etag = r.headers[1].second;
  auto dec =
      segment_range(ctx.req[http::field::range], ctx.req[http::field::if_range], our_etag, size);
  if (dec.kind == net::range_kind::unsatisfiable) {
    auto e = net::error_reply(http::status::range_not_satisfiable, "range_not_satisfiable",
                              fmt::format("the segment has {} bytes", size));
    e.headers.emplace_back("Content-Range", fmt::format("bytes */{}", size));
    return e;
  }
  if (dec.kind == net::range_kind::satisfiable) {
    range = dec.range;
    r.status = http::status::partial_content;
    r.headers.emplace_back("Content-Range", fmt::format("bytes {}-{}/{}", range.first,
                                                        range.first + range.length - 1, size));
  }
  return std::nullopt;
}

// 307 to the same segment at another engine of the station, with the request's query: a URL
// signature covers the path only, so it holds at every engine of the station.
reply moved_to(const std::string& url, const request_context& ctx) {
  auto t = std::string_view(ctx.req.target());
  auto q = t.find('?');
  reply moved;
  moved.status = http::status::temporary_redirect;
  moved.location =
      url + std::string(q == std::string_view::npos ? std::string_view() : t.substr(q));
  moved.no_store = true;
  moved.body = "{}\n";
  return moved;
}

}  // namespace

// The route is loop_affinity::any (issue 16): a held segment is sent by the loop that read the
// request, with no hop (held_segment); the rest (a copy with an engine token, the stream limit and
// its handoff, a segment arriving or missing, no signer yet) is the home loop's, which answers the
// request from the start.
asio::awaitable<reply> engine_daemon::impl::get_segment(request_context& ctx) {
  if (auto r = held_segment(ctx)) {
    co_return std::move(*r);
  }
  if (server->on_home_loop()) {
    co_return co_await segment_at_home(ctx);
  }
  co_return co_await asio::co_spawn(io, segment_at_home(ctx), asio::use_awaitable);
}

// What it touches is safe from any thread: the URL signer (a shared_ptr the session swaps; the
// check is one HMAC with per-thread state), the store (one mutex), `usage`, the metrics (atomic),
// and `self`, set at start.
std::optional<reply> engine_daemon::impl::held_segment(request_context& ctx) {
  // A copy by another engine is exempt from the console stream limit: it is what relieves it.
  bool copy = !ctx.req[api::copy_header].empty();
  if (auth) {
    // Unsigned (another engine's copy shows an engine token instead), badly signed, or not yet
    // logged in at auth: the home loop checks, refuses and logs in.
    auto signer = auth->shared_signer();
    if (!signer || !signer->verify(ctx.req.target(), auth::unix_now())) {
      return std::nullopt;
    }
    copy = false;
  }
  auto key = key_from(ctx);
  if (!key) {
    return net::error_reply(key.err());
  }
  auto guard = std::make_shared<stream_guard>(usage, copy, *key);
  if (!copy && guard->count.counted_in > self->max_streams) {
    return std::nullopt;  // at the limit: uncounted, and handed off at home
  }
  auto file = store->open_segment(*key);
  if (!file) {
    return std::nullopt;  // arriving, or not here
  }
  guard->file.emplace(std::move(*file));
  if (!copy) {
    ++usage->consoles;  // after its stream (stream_guard): segment_usage::consoles
  }
  if (!server->on_home_loop()) {
    served_off_home->inc();
  }
  return serve_held(ctx, std::move(guard));
}

asio::awaitable<reply> engine_daemon::impl::segment_at_home(request_context& ctx) {
  // A copy by another engine is exempt from the console stream limit: it is what relieves it.
  bool copy = !ctx.req[api::copy_header].empty();
  if (auth) {
    auto* signer = auth->signer();
    status sig = signer ? signer->verify(ctx.req.target(), auth::unix_now())
                        : status(make_error(errc::unauthorized, "not yet logged in at auth"));
    copy = false;
    if (!sig) {
      if (auto refusal = co_await segment_refusal(ctx, sig.err())) {
        co_return std::move(*refusal);
      }
      copy = true;  // an engine token
    }
  }
  auto key = key_from(ctx);
  if (!key) {
    co_return net::error_reply(key.err());
  }
  if (!copy) {
    // Decided below with no suspension before its stream is counted, if it gets one: on this loop
    // (the heartbeat's) no beat reads the count without the stream.
    ++usage->consoles;
  }
  if (at_stream_limit(copy, usage->active, self->max_streams)) {
    // The director counts the consoles it sent here until a heartbeat reports them arrived, but
    // not those that came otherwise (straight here, a push stream) since the last one: one sent
    // here beyond the limit is handed to another engine (which the director may have receive a
    // replica), not refused.
    if (auto url = co_await engine_elsewhere(*key, elsewhere::at_limit)) {
      handoffs->inc();
      co_return moved_to(*url, ctx);
    }
    auto r = net::error_reply(make_error(
        errc::unavailable, "engine at its stream limit, and no other engine can serve it now"));
    r.headers.emplace_back("Retry-After", "1");
    co_return r;
  }
  auto guard = std::make_shared<stream_guard>(usage, copy, *key);
  auto file = store->open_segment(*key);
  if (file) {
    guard->file.emplace(std::move(*file));
    co_return serve_held(ctx, std::move(guard));
  }
  guard.reset();
  if (!copy) {
    segment_misses->inc();
  }
  auto f = fills.find(*key);
  if (file.err().code == errc::not_found && f != fills.end()) {
    co_return co_await serve_filling(ctx, f->second, *key, copy);
  }
  if (file.err().code == errc::not_found && !copy) {
    // A console the director sent here on a view older than an eviction or a drop (a heartbeat
    // written before it reached the director after it): another engine of the station, which the
    // director names, forgetting this engine's copy. (A copy by another engine tries its next
    // source instead.)
    if (auto url = co_await engine_elsewhere(*key, elsewhere::not_held)) {
      co_return moved_to(*url, ctx);
    }
  }
  co_return net::error_reply(file.err());
}

// A held segment's reply, its stream counted and its file open in `guard`; thread-safe.
reply engine_daemon::impl::serve_held(request_context& ctx, std::shared_ptr<stream_guard> guard) {
  const segment_key& key = guard->count.key;
  if (!guard->count.copy) {
    segment_hits->inc();
  }
  usage->used(key, steady::now());
  auto info = store->find(key);
  uint64_t size = guard->file->size();
  reply r;
  segment_headers(r, info ? to_hex(info->sha256) : std::string());
  r.content_type = content_type_of(ctx);
  net::byte_range range;
  if (auto refused = apply_range(ctx, r, size, range)) {
    return std::move(*refused);
  }
  int fd = guard->file->fd();
  r.file = net::file_slice{std::move(guard), fd, range.first, range.length};
  return r;
}

// A console or engine asking for a segment this engine is receiving: it gets the bytes as they
// arrive (cut-through). Its head waits for the copy's first bytes, so that a copy failing before
// them sends it elsewhere instead of cutting its reply; a range starting past what has arrived
// (a seek ahead, claim 21) goes to an engine holding the whole segment, when there is one.
asio::awaitable<reply> engine_daemon::impl::serve_filling(request_context& ctx,
                                                          std::shared_ptr<fill> f,
                                                          const segment_key& key, bool copy) {
  usage->used(key, steady::now());
  auto counted = std::make_shared<stream_count>(usage, copy, key);
  if (f->servable == 0) {
    co_await f->wait_beyond(0);
  }
  if (f->failure) {
    co_return co_await send_elsewhere(ctx, key, f->failure->detail);
  }
  reply r;
  segment_headers(r, to_hex(f->order.sha256));
  r.content_type = content_type_of(ctx);
  net::byte_range range;
  if (auto refused = apply_range(ctx, r, f->size, range)) {
    co_return std::move(*refused);
  }
  if (range.first > f->received && !f->ended) {
    if (auto url = co_await engine_elsewhere(key, elsewhere::seek_ahead)) {
      co_return moved_to(*url, ctx);
    }
  }
  cut_through_streams->inc();
  r.stream = net::stream_slice{f, range.first, range.length, counted};
  co_return r;
}

// Asks the director for another engine of the station for the segment, as `why` needs (the
// holder endpoint's query, docs/protocol.md). Its URL, or nullopt.
asio::awaitable<std::optional<std::string>> engine_daemon::impl::engine_elsewhere(
    const segment_key& key, elsewhere why) {
  std::string_view query;
  switch (why) {
    case elsewhere::at_limit:
      query = "&supply=1&excluded_full=1";
      break;
    case elsewhere::copy_failed:
      query = "&supply=1";
      break;
    case elsewhere::seek_ahead:
      query = "&whole=1";
      break;
    case elsewhere::not_held:
      query = "&supply=1&excluded_lacks=1";
      break;
  }
  auto url = fmt::format("{}/v1/programs/{}/segments/{}/holder?exclude={}{}",
                         station->director.listen.url(), key.program.str(), key.index.v,
                         self->name.str(), query);
  auto res = co_await client->get(url);
  if (!res || res->status != 200) {
    co_return std::nullopt;
  }
  auto holder = api::decode<api::holder_reply>(res->body);
  if (!holder) {
    co_return std::nullopt;
  }
  co_return std::move(holder->url);
}

asio::awaitable<reply> engine_daemon::impl::send_elsewhere(request_context& ctx,
                                                           const segment_key& key,
                                                           std::string_view why) {
  if (auto url = co_await engine_elsewhere(key, elsewhere::copy_failed)) {
    co_return moved_to(*url, ctx);
  }
  auto r = net::error_reply(make_error(
      errc::unavailable, fmt::format("the copy of {} failed ({}) and no other engine of station {} "
                                     "can serve it now",
                                     key.str(), why, station->name.str())));
  r.headers.emplace_back("Retry-After", "1");
  co_return r;
}

asio::awaitable<reply> engine_daemon::impl::put_segment(request_context& ctx) {
  auto key = key_from(ctx);
  if (!key) {
    co_return net::error_reply(key.err());
  }
  auto digest = parse_sha256_hex(ctx.req[api::sha256_header]);
  if (!digest) {
    co_return net::error_reply(
        make_error(errc::invalid_argument,
                   fmt::format("a PUT needs the header {}: <64 hex digits>", api::sha256_header)));
  }
  bool had = store->find(*key).has_value();
  if (!had) {
    if (auto room = co_await make_room(ctx.req.body().size()); !room) {
      co_return net::error_reply(room.err());
    }
  }
  auto res = co_await store->put(*key, std::move(ctx.req.body()), *digest);
  if (!res) {
    logger->warn("{}: PUT {} refused: {}", self->name.str(), key->str(), res.err().detail);
    co_return net::error_reply(res.err());
  }
  co_return net::json_reply(api::to_json(api::segment_ref{res->key, res->size, res->sha256}),
                            had ? http::status::ok : http::status::created);
}

asio::awaitable<reply> engine_daemon::impl::delete_segment(request_context& ctx) {
  auto key = key_from(ctx);
  if (!key) {
    co_return net::error_reply(key.err());
  }
  if (ctx.query_param("if_idle") == "1" && (usage->streaming(*key) || fills.contains(*key))) {
    // The director dropping an idle replica: not while viewers stream it.
    co_return net::error_reply(
        make_error(errc::conflict, key->str() + " is being streamed or received here"));
  }
  auto res = co_await store->remove(*key);
  if (!res) {
    co_return net::error_reply(res.err());
  }
  reply r;
  r.status = http::status::no_content;
  co_return r;
}

asio::awaitable<reply> engine_daemon::impl::list_segments(request_context&) {
  json::array a;
  for (auto& s : store->list()) {
    a.push_back(api::to_json(api::segment_ref{s.key, s.size, s.sha256}));
  }
  co_return net::json_reply(json::object{{"engine", self->name.str()}, {"segments", a}});
}

asio::awaitable<reply> engine_daemon::impl::preload(request_context& ctx) {
  auto order = api::decode<api::preload_order>(ctx.req.body());
  if (!order) {
    co_return net::error_reply(order.err());
  }
  auto res = co_await store->preload(order->key);
  if (!res) {
    co_return net::error_reply(res.err());
  }
  preloads->inc();
  reply r;
  r.status = http::status::accepted;
  r.body = "{}\n";
  co_return r;
}

}  // namespace vodgrid::engine
