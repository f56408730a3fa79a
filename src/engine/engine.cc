// The engine daemon's HTTP handlers and heartbeat loop.
#include "engine/engine.h"

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>

#include <charconv>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <unordered_map>

#include "api/api.h"
#include "auth/client.h"
#include "auth/guard.h"
#include "auth/session.h"
#include "base/log.h"
#include "net/client.h"
#include "net/http.h"
#include "net/range.h"
#include "store/store.h"

namespace vodgrid::engine {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using net::reply;
using net::request_context;
using steady = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {

// A segment being copied from other engines and served to consoles while it arrives (cut-through,
// claims 19-21). One per segment per engine: every order and console for it shares it. The bytes
// stay in memory until the copy is whole, then go to the store, which checks the digest and makes
// them durable; the last byte is held back from consoles until then, so that no console gets a
// whole reply of a copy that turned out bad. Lives on the engine's io thread.
class fill final : public net::growing_body {
 public:
  fill(asio::any_io_executor ex, api::fetch_order o)
      : order(std::move(o)), size(order.size), progress_(ex, steady::time_point::max()) {
    if (size > 0) {
      data.resize(size);
    }
  }
  std::string_view available() const override { return {data.data(), servable}; }
  asio::awaitable<void> wait_beyond(uint64_t have) override {
    while (servable <= have && !ended) {
      co_await progress_.async_wait(use_tuple);
    }
  }
  void advanced() { progress_.cancel(); }

  api::fetch_order order;
  std::string data;       // `size` bytes once the size is known; never reallocated after that
  uint64_t size = 0;      // 0 until the order or the first source tells
  uint64_t received = 0;  // bytes written into `data`
  uint64_t servable = 0;  // what consoles may have
  bool ended = false;
  std::optional<error> failure;  // set when it ended without a stored copy
  std::string source;            // the URL in use, or the last one tried
  steady::time_point started = steady::now();

 private:
  asio::steady_timer progress_;  // never expires; cancelled to wake every waiter on a change
};

}  // namespace

struct engine_daemon::impl {
  asio::io_context& io;
  grid_config grid;
  const engine_config* self = nullptr;
  const station_config* station = nullptr;
  std::shared_ptr<spdlog::logger> logger = log::get("engine");
  std::unique_ptr<net::http_server> server;
  std::unique_ptr<net::http_client> client;
  // With [auth]: the station key that checks the director's signatures, the keys that check other
  // engines' tokens, and our own engine token for copies.
  std::unique_ptr<auth::service_session> auth;
  uint16_t port = 0;
  bool stopping = false;
  bool heartbeat_running = false;
  asio::steady_timer heartbeat_timer{io};

  // Streams in flight: incremented when a segment reply starts, decremented when its file slice is
  // released by the server (after the last byte or a failure).
  std::shared_ptr<uint32_t> active_streams = std::make_shared<uint32_t>(0);
  std::shared_ptr<uint32_t> copy_streams = std::make_shared<uint32_t>(0);  // to other engines
  // The same per segment: a segment being streamed is never evicted.
  std::shared_ptr<std::unordered_map<segment_key, uint32_t>> streams_by_key =
      std::make_shared<std::unordered_map<segment_key, uint32_t>>();
  bool streaming(const segment_key& k) const { return streams_by_key->contains(k); }

  // Inventory changes since the last heartbeat the director acknowledged. Written by store workers.
  // Only the last event per segment counts: a store then a delete within one interval is a delete.
  std::mutex changes_mu;
  std::map<segment_key, std::optional<api::segment_ref>> changes;  // nullopt: removed

  uint64_t epoch = std::random_device{}() * 4294967296ull + std::random_device{}();
  uint64_t seq = 0;
  bool need_full = true;
  double last_bytes_sent = 0;
  steady::time_point last_beat = steady::now();

  // Copies in progress (cut-through), and the copies that ended since the last heartbeat.
  std::unordered_map<segment_key, std::shared_ptr<fill>> fills;
  std::vector<api::copy_result> copies_done;
  uint32_t background = 0;  // copies running; stop waits for them
  // When each held segment was last asked for: the order of eviction (least recently used first).
  std::unordered_map<segment_key, steady::time_point> last_used;
  bool evicting = false;

  net::metric_value* fetches_ok = nullptr;
  net::metric_value* evictions = nullptr;
  net::metric_value* cut_through_streams = nullptr;
  net::metric_value* handoffs = nullptr;
  net::metric_value* fetches_failed = nullptr;
  net::metric_value* preloads = nullptr;
  net::metric_value* bytes_sent = nullptr;

  // Declared last, destroyed first: its worker threads call on_store_change, which uses the
  // members above.
  std::unique_ptr<store::segment_store> store;

  impl(asio::io_context& i, grid_config g) : io(i), grid(std::move(g)) {}

  std::string url() const { return self->listen.url(); }

  void routes();
  asio::awaitable<reply> get_segment(request_context& ctx);
  asio::awaitable<std::optional<reply>> refuse_segment(request_context& ctx, error why);
  asio::awaitable<reply> put_segment(request_context& ctx);
  asio::awaitable<reply> delete_segment(request_context& ctx);
  asio::awaitable<reply> list_segments(request_context& ctx);
  asio::awaitable<reply> fetch(request_context& ctx);
  asio::awaitable<reply> preload(request_context& ctx);
  asio::awaitable<reply> serve_filling(request_context& ctx, std::shared_ptr<fill> f,
                                       const segment_key& key, bool copy);
  asio::awaitable<std::optional<std::string>> engine_elsewhere(const segment_key& key, bool whole,
                                                               bool get, bool full = false);
  asio::awaitable<reply> send_elsewhere(request_context& ctx, const segment_key& key, bool whole,
                                        bool get, std::string_view why);
  result<std::shared_ptr<fill>> start_fill(const api::fetch_order& order);
  asio::awaitable<void> run_fill(std::shared_ptr<fill> f);
  asio::awaitable<status> make_room(uint64_t bytes);
  void segment_headers(reply& r, std::string digest) const;
  asio::awaitable<void> heartbeat_loop();
  asio::awaitable<bool> beat();
  void on_store_change(const store::segment_info& s, bool was_added);
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

using key_counts = std::unordered_map<segment_key, uint32_t>;

// Counts a stream, in all and per segment, until the server lets go of its body.
struct stream_count {
  std::shared_ptr<uint32_t> active;
  std::shared_ptr<key_counts> by_key;
  segment_key key;
  stream_count(std::shared_ptr<uint32_t> a, std::shared_ptr<key_counts> k, segment_key s)
      : active(std::move(a)), by_key(std::move(k)), key(std::move(s)) {
    ++*active;
    ++(*by_key)[key];
  }
  stream_count(const stream_count&) = delete;
  stream_count& operator=(const stream_count&) = delete;
  ~stream_count() {
    --*active;
    if (auto it = by_key->find(key); it != by_key->end() && --it->second == 0) {
      by_key->erase(it);
    }
  }
};

// Holds a segment file open and counts the stream until the server releases the slice.
struct stream_guard {
  store::segment_file file;
  stream_count count;
  stream_guard(store::segment_file f, std::shared_ptr<uint32_t> a, std::shared_ptr<key_counts> k,
               segment_key s)
      : file(std::move(f)), count(std::move(a), std::move(k), std::move(s)) {}
};

}  // namespace

engine_daemon::engine_daemon(asio::io_context& io, grid_config grid, engine_id name)
    : impl_(std::make_unique<impl>(io, std::move(grid))) {
  impl_->self = impl_->grid.find_engine(name.str());
  impl_->station = impl_->grid.station_of_engine(name.str());
}

engine_daemon::~engine_daemon() = default;

uint16_t engine_daemon::port() const {
  return impl_->port;
}

status engine_daemon::start() {
  auto& d = *impl_;
  if (!d.self) {
    return make_error(errc::not_found, "no such engine in the config");
  }
  store::options so;
  so.data_dirs = d.self->data_dirs;
  so.max_segment_bytes = d.self->max_segment_bytes;
  auto st = store::segment_store::open(so);
  if (!st) {
    return st.err();
  }
  d.store = std::move(*st);
  auto listed = d.store->list();
  d.logger->info("{}: {} segments held in {} data directories", d.self->name.str(), listed.size(),
                 d.self->data_dirs.size());
  d.store->set_listener(
      [&d](const store::segment_info& s, bool added) { d.on_store_change(s, added); });

  net::server_options sopts;
  d.server = std::make_unique<net::http_server>(d.io.get_executor(), "engine " + d.self->name.str(),
                                                sopts);
  net::client_options copts;
  copts.max_body = d.self->max_segment_bytes;
  copts.connect_timeout = std::chrono::seconds(1);
  copts.request_timeout = std::chrono::seconds(30);
  // A source that stops sending mid-copy is left for the next one; a hung director misses a beat.
  copts.read_timeout = std::chrono::seconds(3);
  // Heartbeats, and the copies it fetches, carry its engine token (claims 24, 25).
  copts.bearer = [&d] { return d.auth ? d.auth->token() : std::string(); };
  d.client = std::make_unique<net::http_client>(d.io.get_executor(), copts);
  if (d.grid.auth) {
    d.auth = std::make_unique<auth::service_session>(d.io.get_executor(), d.grid.auth->listen.url(),
                                                     d.self->name.str(), d.self->data_dirs.at(0),
                                                     "engine " + d.self->name.str());
    if (auto st = d.auth->start(); !st) {
      return st;
    }
  }
  d.routes();
  auto port = d.server->listen(d.self->listen.host, d.self->listen.port);
  if (!port) {
    return port.err();
  }
  d.port = *port;
  d.heartbeat_running = true;
  asio::co_spawn(d.io, d.heartbeat_loop(), asio::detached);
  d.logger->info("{}: listening on {}:{}", d.self->name.str(), d.self->listen.host, d.port);
  return {};
}

asio::awaitable<void> engine_daemon::stop(std::chrono::milliseconds drain) {
  auto& d = *impl_;
  d.stopping = true;
  d.heartbeat_timer.cancel();
  if (d.auth) {
    d.auth->stop();
  }
  // Consoles waiting for copies in progress are let go: a stopping engine finishes none.
  for (auto& [key, f] : d.fills) {
    f->failure = make_error(errc::unavailable, "the engine is stopping");
    f->ended = true;
    f->advanced();
  }
  auto deadline = steady::now() + drain;
  if (d.server) {
    co_await d.server->stop(drain);
  }
  asio::steady_timer t(d.io);
  while (d.heartbeat_running || (d.background > 0 && steady::now() < deadline)) {
    t.expires_after(std::chrono::milliseconds(5));
    co_await t.async_wait(use_tuple);
  }
}

void engine_daemon::impl::on_store_change(const store::segment_info& s, bool was_added) {
  {
    std::lock_guard lock(changes_mu);
    if (was_added) {
      changes[s.key] = api::segment_ref{s.key, s.size, s.sha256};
    } else {
      changes[s.key] = std::nullopt;
    }
  }
  // Tell the director soon rather than at the next tick: a loader is waiting on it.
  asio::post(io, [this] { heartbeat_timer.cancel(); });
}

void engine_daemon::impl::routes() {
  using V = http::verb;
  std::string seg = "/v1/segments/{}/{}.ts";
  server->route(V::get, seg, [this](request_context& c) { return get_segment(c); });
  // What changes the store or orders work: the director's, a loader's (operator) or another
  // engine's token when the grid has an auth server (DESIGN.md flow 7).
  auto guarded = [this](asio::awaitable<reply> (impl::*fn)(request_context&)) {
    return auth::guarded(auth.get(), {auth::token_kind::engine, auth::token_kind::operator_},
                         [this, fn](request_context& c) { return (this->*fn)(c); });
  };
  server->route(V::put, seg, guarded(&impl::put_segment), self->max_segment_bytes);
  server->route(V::delete_, seg, guarded(&impl::delete_segment));
  server->route(V::get, "/v1/segments", [this](request_context& c) { return list_segments(c); });
  server->route(V::post, "/v1/orders/fetch", guarded(&impl::fetch));
  server->route(V::post, "/v1/orders/preload", guarded(&impl::preload));
  server->set_health([this] {
    return json::object{{"role", "engine"},
                        {"name", self->name.str()},
                        {"station", station->name.str()},
                        {"segments", store->list().size()},
                        {"active_streams", *active_streams}};
  });
  auto& m = server->metrics();
  m.gauge_fn("vodgrid_engine_active_streams", "Segment streams in flight",
             [this] { return static_cast<double>(*active_streams); });
  fetches_ok = &m.counter("vodgrid_engine_fetches_total", "Segment copies from other engines",
                          "result=\"ok\"");
  fetches_failed = &m.counter("vodgrid_engine_fetches_total", "Segment copies from other engines",
                              "result=\"failed\"");
  preloads = &m.counter("vodgrid_engine_preloads_total", "Preload orders carried out");
  evictions = &m.counter("vodgrid_engine_evictions_total", "Segments evicted to make room");
  cut_through_streams = &m.counter("vodgrid_engine_cut_through_streams_total",
                                   "Segment replies served while the segment was arriving");
  handoffs = &m.counter("vodgrid_engine_handoffs_total",
                        "Consoles sent to another engine because this one was at max_streams");
  m.gauge_fn("vodgrid_engine_copies_in_progress", "Segments being received",
             [this] { return static_cast<double>(fills.size()); });
  bytes_sent = &m.counter("vodgrid_http_body_bytes_sent_total", "Reply body bytes sent");
  m.gauge_fn("vodgrid_engine_segments", "Segments held",
             [this] { return static_cast<double>(store->list().size()); });
  m.gauge_fn("vodgrid_engine_free_bytes", "Free bytes of the filesystems of the data directories",
             [this] { return static_cast<double>(store::totals(store->stats()).free_bytes); });
}

// A segment request without a valid URL signature: a copy by another engine passes with its engine
// token (claims 24, 25); anything else is refused with the signature's reason.
asio::awaitable<std::optional<reply>> engine_daemon::impl::refuse_segment(request_context& ctx,
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
  auto range_hdr = ctx.req[http::field::range];
  auto if_range = ctx.req[http::field::if_range];
  std::string_view our_etag = r.headers[1].second;
  if (range_hdr.empty() || (!if_range.empty() && std::string_view(if_range) != our_etag)) {
    return std::nullopt;
  }
  auto dec = net::decide_range(range_hdr, size);
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
  moved.headers.emplace_back(
      "Location",
      url + std::string(q == std::string_view::npos ? std::string_view() : t.substr(q)));
  moved.headers.emplace_back("Cache-Control", "no-store");
  moved.body = "{}\n";
  return moved;
}

}  // namespace

asio::awaitable<reply> engine_daemon::impl::get_segment(request_context& ctx) {
  // A copy by another engine is exempt from the console stream limit: it is what relieves it.
  bool copy = !ctx.req[api::copy_header].empty();
  if (auth) {
    auto* signer = auth->signer();
    status sig = signer ? signer->verify(ctx.req.target(), auth::unix_now())
                        : status(make_error(errc::unauthorized, "not yet logged in at auth"));
    copy = false;
    if (!sig) {
      auto refused = co_await refuse_segment(ctx, sig.err());
      if (refused) {
        co_return std::move(*refused);
      }
      copy = true;  // an engine token
    }
  }
  auto key = key_from(ctx);
  if (!key) {
    co_return net::error_reply(key.err());
  }
  if (!copy && *active_streams >= self->max_streams) {
    // The director counts consoles between heartbeats by estimate; one sent here beyond the limit
    // is handed to another engine (which the director may have receive a replica), not refused.
    if (auto url = co_await engine_elsewhere(*key, false, true, true)) {
      handoffs->inc();
      co_return moved_to(*url, ctx);
    }
    auto r = net::error_reply(make_error(
        errc::unavailable, "engine at its stream limit, and no other engine can serve it now"));
    r.headers.emplace_back("Retry-After", "1");
    co_return r;
  }
  auto file = store->open_segment(*key);
  if (!file) {
    auto f = fills.find(*key);
    if (file.err().code == errc::not_found && f != fills.end()) {
      co_return co_await serve_filling(ctx, f->second, *key, copy);
    }
    co_return net::error_reply(file.err());
  }
  last_used[*key] = steady::now();
  auto info = store->find(*key);
  uint64_t size = file->size();
  reply r;
  segment_headers(r, info ? to_hex(info->sha256) : std::string());
  net::byte_range range;
  if (auto refused = apply_range(ctx, r, size, range)) {
    co_return std::move(*refused);
  }
  auto guard =
      std::make_shared<stream_guard>(std::move(*file), copy ? copy_streams : active_streams,
                                     streams_by_key, *key);  // a copy takes no console's place
  int fd = guard->file.fd();
  r.file = net::file_slice{guard, fd, range.first, range.length};
  co_return r;
}

// A console or engine asking for a segment this engine is receiving: it gets the bytes as they
// arrive (cut-through). Its head waits for the copy's first bytes, so that a copy failing before
// them sends it elsewhere instead of cutting its reply; a range starting past what has arrived
// (a seek ahead, claim 21) goes to an engine holding the whole segment, when there is one.
asio::awaitable<reply> engine_daemon::impl::serve_filling(request_context& ctx,
                                                          std::shared_ptr<fill> f,
                                                          const segment_key& key, bool copy) {
  last_used[key] = steady::now();
  auto counted =
      std::make_shared<stream_count>(copy ? copy_streams : active_streams, streams_by_key, key);
  if (f->servable == 0) {
    co_await f->wait_beyond(0);
  }
  if (f->failure) {
    co_return co_await send_elsewhere(ctx, key, false, true, f->failure->detail);
  }
  reply r;
  segment_headers(r, to_hex(f->order.sha256));
  net::byte_range range;
  if (auto refused = apply_range(ctx, r, f->size, range)) {
    co_return std::move(*refused);
  }
  if (range.first > f->received && !f->ended) {
    if (auto url = co_await engine_elsewhere(key, true, false)) {
      co_return moved_to(*url, ctx);
    }
  }
  cut_through_streams->inc();
  r.stream = net::stream_slice{f, range.first, range.length, counted};
  co_return r;
}

// Asks the director for another engine of the station that holds the segment (whole: only a
// complete copy; get: have one receive it if none holds it; full: this engine is at its stream
// limit). Its URL, or nullopt.
asio::awaitable<std::optional<std::string>> engine_daemon::impl::engine_elsewhere(
    const segment_key& key, bool whole, bool get, bool full) {
  auto url =
      fmt::format("{}/v1/programs/{}/segments/{}/holder?exclude={}{}{}{}",
                  station->director.listen.url(), key.program.str(), key.index.v, self->name.str(),
                  whole ? "&whole=1" : "", get ? "&get=1" : "", full ? "&full=1" : "");
  auto res = co_await client->get(url);
  if (!res || res->status != 200) {
    co_return std::nullopt;
  }
  auto o = api::parse_object(res->body);
  auto* u = o ? o->if_contains("url") : nullptr;
  if (!u || !u->is_string()) {
    co_return std::nullopt;
  }
  co_return std::string(u->as_string());
}

asio::awaitable<reply> engine_daemon::impl::send_elsewhere(request_context& ctx,
                                                           const segment_key& key, bool whole,
                                                           bool get, std::string_view why) {
  if (auto url = co_await engine_elsewhere(key, whole, get)) {
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
  if (ctx.query_param("if_idle") == "1" && (streaming(*key) || fills.contains(*key))) {
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

// POST /v1/orders/fetch: copy a segment from other engines (claims 12, 19). Orders for a segment
// already arriving share its copy: one upstream transfer per segment per engine.
asio::awaitable<reply> engine_daemon::impl::fetch(request_context& ctx) {
  auto order = api::decode<api::fetch_order>(ctx.req.body());
  if (!order) {
    co_return net::error_reply(order.err());
  }
  for (auto& src : order->sources) {
    if (auto u = net::parse_http_url(src); !u) {
      co_return net::error_reply(u.err());
    }
  }
  if (order->size > self->max_segment_bytes) {
    co_return net::error_reply(make_error(
        errc::too_large, fmt::format("{} bytes; this engine takes segments of at most {}",
                                     order->size, self->max_segment_bytes)));
  }
  if (auto held = store->find(order->key)) {
    if (held->sha256 != order->sha256) {
      co_return net::error_reply(make_error(
          errc::conflict, order->key.str() + " is held with sha256 " + to_hex(held->sha256)));
    }
    co_return net::json_reply(api::to_json(api::segment_ref{held->key, held->size, held->sha256}));
  }
  std::shared_ptr<fill> f;
  if (auto it = fills.find(order->key); it != fills.end()) {
    f = it->second;
    if (f->order.sha256 != order->sha256) {
      co_return net::error_reply(
          make_error(errc::conflict,
                     order->key.str() + " is arriving with sha256 " + to_hex(f->order.sha256)));
    }
  } else {
    if (auto room = co_await make_room(order->size); !room) {
      co_return net::error_reply(room.err());
    }
    auto started = start_fill(*order);
    if (!started) {
      co_return net::error_reply(started.err());
    }
    f = *started;
  }
  if (!order->wait) {
    co_return net::json_reply(json::object{{"program", order->key.program.str()},
                                           {"index", order->key.index.v},
                                           {"filling", true}},
                              http::status::accepted);
  }
  co_await f->wait_beyond(std::numeric_limits<uint64_t>::max() - 1);
  if (f->failure) {
    co_return net::error_reply(*f->failure);
  }
  co_return net::json_reply(api::to_json(api::segment_ref{f->order.key, f->size, f->order.sha256}),
                            http::status::created);
}

result<std::shared_ptr<fill>> engine_daemon::impl::start_fill(const api::fetch_order& order) {
  if (stopping) {
    return make_error(errc::unavailable, "the engine is stopping");
  }
  auto f = std::make_shared<fill>(io.get_executor(), order);
  fills.emplace(order.key, f);
  ++background;
  asio::co_spawn(io, run_fill(f), asio::detached);
  heartbeat_timer.cancel();  // the director learns at once that this engine is receiving it
  return f;
}

// Receives a segment from the order's sources in turn; a transfer cut short resumes at the next
// source with a range for the bytes still missing. Then the store checks and keeps it.
asio::awaitable<void> engine_daemon::impl::run_fill(std::shared_ptr<fill> f) {
  const auto& key = f->order.key;
  std::string last = "no source answered";
  for (auto& src : f->order.sources) {
    if (stopping || (f->size > 0 && f->received == f->size)) {
      break;
    }
    f->source = src;
    uint64_t base = f->received;
    net::http_client::header_list headers{{api::copy_header, self->name.str()}};
    if (base > 0) {
      headers.emplace_back("Range", fmt::format("bytes={}-", base));
    }
    std::optional<std::string> refused;
    net::http_client::body_sink sink;
    sink.on_head = [&](const net::client_response& h) -> result<std::span<char>> {
      uint64_t total = 0;
      if (base == 0 && h.status == 200) {
        auto len = h.header("Content-Length");
        auto [p, ec] = std::from_chars(len.data(), len.data() + len.size(), total);
        if (ec != std::errc() || p != len.data() + len.size()) {
          total = 0;
        }
      } else if (base > 0 && h.status == 206) {
        // Content-Range: bytes <base>-<size-1>/<size>
        auto cr = h.header("Content-Range");
        if (cr == fmt::format("bytes {}-{}/{}", base, f->size - 1, f->size)) {
          total = f->size;
        }
      }
      if (total == 0 || (f->size > 0 && total != f->size) || total > self->max_segment_bytes) {
        refused = fmt::format("{} answered {} ({} bytes) for {}", src, h.status, total, key.str());
        return make_error(errc::protocol_error, *refused);
      }
      if (f->size == 0) {
        f->size = total;
        f->data.resize(total);
      }
      return std::span<char>(f->data.data() + base, f->size - base);
    };
    sink.on_data = [&](size_t n) {
      f->received = base + n;
      f->servable = std::min(f->received, f->size - 1);  // the last byte waits for the digest
      f->advanced();
    };
    auto res = co_await client->get_into(src, std::move(headers), std::move(sink));
    if (!res) {
      last = fmt::format("{}: {}", src, res.err().detail);
    } else if (refused) {
      last = *refused;
    }
    if (f->received < f->size || f->size == 0) {
      logger->warn("{}: copy of {} from {} stopped at {} of {} bytes: {}", self->name.str(),
                   key.str(), src, f->received, f->size, last);
    }
  }
  if (f->size > 0 && f->received == f->size) {
    auto put = co_await store->put(key, f->data, f->order.sha256);
    if (put) {
      f->servable = f->size;
    } else {
      f->failure = put.err();
    }
  } else {
    f->failure = make_error(errc::protocol_error, "source: " + last);
  }
  f->ended = true;
  f->advanced();
  if (auto it = fills.find(key); it != fills.end() && it->second == f) {
    fills.erase(it);
  }
  double secs = std::chrono::duration<double>(steady::now() - f->started).count();
  copies_done.push_back(api::copy_result{key, f->source, f->received, secs, !f->failure,
                                         f->failure ? f->failure->detail : std::string()});
  if (f->failure) {
    fetches_failed->inc();
    logger->warn("{}: copy of {} failed: {}", self->name.str(), key.str(), f->failure->detail);
  } else {
    fetches_ok->inc();
  }
  heartbeat_timer.cancel();  // copy done (claim 20): the director hears of it now
  --background;
}

// Makes room for `bytes` more under the engine's disk budget (or in a nearly full filesystem) by
// evicting the least recently used segments the director allows: never one being streamed or
// arriving, never the last copy in the grid (the director checks its station and the registry).
// errc::no_space when not enough can go.
asio::awaitable<status> engine_daemon::impl::make_room(uint64_t bytes) {
  auto need = [&]() -> uint64_t {
    uint64_t want = bytes;
    for (auto& [key, f] : fills) {
      if (!store->find(key)) {
        want += f->size;  // room for copies in progress, until the store counts them
      }
    }
    auto [used, free, total] = store::totals(store->stats());  // a statvfs per directory
    uint64_t over = 0;
    if (self->max_disk_bytes > 0 && used + want > self->max_disk_bytes) {
      over = used + want - self->max_disk_bytes;
    }
    uint64_t reserve = total / 50;  // keep 2% of the filesystems free
    if (free < want + reserve) {
      over = std::max(over, want + reserve - free);
    }
    return over;
  };
  uint64_t over = need();
  if (over == 0) {
    co_return status{};
  }
  if (evicting) {
    co_return make_error(errc::no_space, "the engine is evicting to make room; try again");
  }
  evicting = true;
  // Candidates, least recently used first; segments never asked for count as oldest.
  std::vector<std::pair<steady::time_point, store::segment_info>> held;
  for (auto& s : store->list()) {
    auto it = last_used.find(s.key);
    held.emplace_back(it == last_used.end() ? steady::time_point{} : it->second, s);
  }
  std::sort(held.begin(), held.end(), [](auto& a, auto& b) { return a.first < b.first; });
  api::eviction_request offer{over, {}};
  uint64_t offered_bytes = 0;
  for (auto& [t, s] : held) {
    if (offered_bytes >= over * 2 + (16u << 20)) {
      break;  // offer twice what is needed: the director may keep some
    }
    if (!streaming(s.key)) {
      offer.segments.push_back(s.key);
      offered_bytes += s.size;
    }
  }
  auto res = co_await client->send_json(
      http::verb::post,
      fmt::format("{}/v1/engines/{}/evictions", station->director.listen.url(), self->name.str()),
      json::serialize(api::to_json(offer)));
  std::vector<segment_key> allowed;
  if (res && res->status == 200) {
    if (auto a = api::decode<api::eviction_request>(res->body)) {
      allowed = std::move(a->segments);
    }
  } else {
    logger->warn("{}: the director did not answer an eviction request: {}", self->name.str(),
                 res ? res->body : res.err().detail);
  }
  uint64_t freed = 0;
  for (auto& key : allowed) {
    if (freed >= over) {
      break;
    }
    auto info = store->find(key);
    // Streams hold the file open: an unlinked file still serves them, but the rule is to leave a
    // segment being streamed alone, and the director does not know every stream.
    if (!info || streaming(key)) {
      continue;
    }
    if (auto st = co_await store->remove(key); st) {
      freed += info->size;
      last_used.erase(key);
      evictions->inc();
      logger->info("{}: evicted {} ({} bytes)", self->name.str(), key.str(), info->size);
    }
  }
  evicting = false;
  if (!allowed.empty()) {
    // The director counted every allowed copy gone; the next heartbeat tells it which are not.
    need_full = true;
  }
  over = need();
  if (over > 0) {
    co_return make_error(errc::no_space,
                         fmt::format("engine {} has no room for {} more bytes: {} bytes over its "
                                     "budget and nothing more may be evicted",
                                     self->name.str(), bytes, over));
  }
  co_return status{};
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

asio::awaitable<bool> engine_daemon::impl::beat() {
  api::heartbeat hb;
  hb.engine = self->name;
  hb.url = url();
  hb.epoch = epoch;
  hb.seq = ++seq;
  hb.full = need_full;
  std::map<segment_key, std::optional<api::segment_ref>> changed;
  {
    std::lock_guard lock(changes_mu);
    changed.swap(changes);
  }
  if (hb.full) {
    for (auto& s : store->list()) {
      hb.added.push_back({s.key, s.size, s.sha256});
    }
  } else {
    for (auto& [key, ref] : changed) {
      if (ref) {
        hb.added.push_back(*ref);
      } else {
        hb.removed.push_back(key);
      }
    }
  }
  auto now = steady::now();
  double secs = std::chrono::duration<double>(now - last_beat).count();
  last_beat = now;
  hb.load.active_streams = *active_streams;
  double bytes_now = bytes_sent->get();
  hb.load.bytes_per_second =
      secs > 0 ? static_cast<uint64_t>((bytes_now - last_bytes_sent) / secs) : 0;
  last_bytes_sent = bytes_now;
  auto space = store::totals(store->stats());
  hb.load.free_bytes = space.free_bytes;
  hb.load.total_bytes = space.total_bytes;
  hb.load.max_streams = self->max_streams;
  hb.load.max_bytes_per_second = self->max_bytes_per_second;
  hb.load.used_bytes = space.used_bytes;
  hb.load.max_disk_bytes = self->max_disk_bytes;
  for (auto& [key, f] : fills) {
    hb.filling.push_back(key);
  }
  hb.copies.swap(copies_done);

  auto url =
      fmt::format("{}/v1/engines/{}/heartbeat", station->director.listen.url(), self->name.str());
  auto res = co_await client->send_json(http::verb::post, url, json::serialize(api::to_json(hb)));
  bool ok = res && res->status == 200;
  if (ok) {
    auto rep = api::decode<api::heartbeat_reply>(res->body);
    need_full = !rep || rep->resync;
  } else {
    // Whether the director applied it is unknown: the next heartbeat carries everything.
    need_full = true;
    // Copy results are kept for the next one (the list is bounded by the copies ordered).
    copies_done.insert(copies_done.begin(), hb.copies.begin(), hb.copies.end());
  }
  co_return ok;
}

asio::awaitable<void> engine_daemon::impl::heartbeat_loop() {
  bool was_ok = true;
  while (!stopping) {
    bool ok = co_await beat();
    if (ok != was_ok) {
      if (ok) {
        logger->info("{}: director {} reached", self->name.str(), station->director.listen.url());
      } else {
        logger->warn("{}: director {} unreachable; retrying", self->name.str(),
                     station->director.listen.url());
      }
      was_ok = ok;
    }
    if (stopping) {
      break;
    }
    if (!evicting) {
      // Near the budget or a full filesystem: evict in the quiet, not when a copy needs room.
      co_await make_room(0);
    }
    heartbeat_timer.expires_after(grid.heartbeat_interval);
    co_await heartbeat_timer.async_wait(use_tuple);
  }
  heartbeat_running = false;
}

}  // namespace vodgrid::engine
