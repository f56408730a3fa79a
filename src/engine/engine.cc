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

#include <map>
#include <mutex>
#include <optional>
#include <random>

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

  // Inventory changes since the last heartbeat the director acknowledged. Written by store workers.
  // Only the last event per segment counts: a store then a delete within one interval is a delete.
  std::mutex changes_mu;
  std::map<segment_key, std::optional<api::segment_ref>> changes;  // nullopt: removed

  uint64_t epoch = std::random_device{}() * 4294967296ull + std::random_device{}();
  uint64_t seq = 0;
  bool need_full = true;
  double last_bytes_sent = 0;
  steady::time_point last_beat = steady::now();

  net::metric_value* fetches_ok = nullptr;
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

// Holds a segment file open and counts the stream until the server releases the slice.
struct stream_guard {
  store::segment_file file;
  std::shared_ptr<uint32_t> active;
  stream_guard(store::segment_file f, std::shared_ptr<uint32_t> a)
      : file(std::move(f)), active(std::move(a)) {
    ++*active;
  }
  ~stream_guard() { --*active; }
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
  copts.request_timeout = std::chrono::seconds(30);
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
  if (d.server) {
    co_await d.server->stop(drain);
  }
  asio::steady_timer t(d.io);
  while (d.heartbeat_running) {
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
  bytes_sent = &m.counter("vodgrid_http_body_bytes_sent_total", "Reply body bytes sent");
  m.gauge_fn("vodgrid_engine_segments", "Segments held",
             [this] { return static_cast<double>(store->list().size()); });
  m.gauge_fn("vodgrid_engine_free_bytes", "Free bytes over all data directories", [this] {
    double f = 0;
    for (auto& s : store->stats()) {
      f += static_cast<double>(s.free_bytes);
    }
    return f;
  });
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

asio::awaitable<reply> engine_daemon::impl::get_segment(request_context& ctx) {
  if (auth) {
    auto* signer = auth->signer();
    status sig = signer ? signer->verify(ctx.req.target(), auth::unix_now())
                        : status(make_error(errc::unauthorized, "not yet logged in at auth"));
    if (!sig) {
      auto refused = co_await refuse_segment(ctx, sig.err());
      if (refused) {
        co_return std::move(*refused);
      }
    }
  }
  auto key = key_from(ctx);
  if (!key) {
    co_return net::error_reply(key.err());
  }
  if (*active_streams >= self->max_streams) {
    auto r = net::error_reply(make_error(errc::unavailable, "engine at its stream limit"));
    r.headers.emplace_back("Retry-After", "1");
    co_return r;
  }
  auto file = store->open_segment(*key);
  if (!file) {
    co_return net::error_reply(file.err());
  }
  auto info = store->find(*key);
  uint64_t size = file->size();
  std::string digest = info ? to_hex(info->sha256) : std::string();
  std::string etag;
  etag.reserve(digest.size() + 2);
  etag += '"';
  etag += digest;
  etag += '"';
  reply r;
  r.content_type = "video/mp2t";
  r.headers.reserve(6);  // one allocation for the headers, Content-Range included
  r.headers.emplace_back("Accept-Ranges", "bytes");
  r.headers.emplace_back("ETag", std::move(etag));
  std::string_view our_etag = r.headers.back().second;  // stable: no reallocation after reserve
  r.headers.emplace_back("Cache-Control", "public, max-age=31536000, immutable");
  r.headers.emplace_back(api::sha256_header, std::move(digest));
  r.headers.emplace_back(api::engine_header, self->name.str());
  net::byte_range range{0, size};
  auto range_hdr = ctx.req[http::field::range];
  // If-Range with another validator than ours: send the whole segment (RFC 9110 §13.1.5).
  auto if_range = ctx.req[http::field::if_range];
  if (!range_hdr.empty() && (if_range.empty() || std::string_view(if_range) == our_etag)) {
    auto dec = net::decide_range(range_hdr, size);
    if (dec.kind == net::range_kind::unsatisfiable) {
      auto e = net::error_reply(http::status::range_not_satisfiable, "range_not_satisfiable",
                                fmt::format("the segment has {} bytes", size));
      e.headers.emplace_back("Content-Range", fmt::format("bytes */{}", size));
      co_return e;
    }
    if (dec.kind == net::range_kind::satisfiable) {
      range = dec.range;
      r.status = http::status::partial_content;
      r.headers.emplace_back("Content-Range", fmt::format("bytes {}-{}/{}", range.first,
                                                          range.first + range.length - 1, size));
    }
  }
  auto guard = std::make_shared<stream_guard>(std::move(*file), active_streams);
  int fd = guard->file.fd();
  r.file = net::file_slice{guard, fd, range.first, range.length};
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

asio::awaitable<reply> engine_daemon::impl::fetch(request_context& ctx) {
  auto order = api::decode<api::fetch_order>(ctx.req.body());
  if (!order) {
    co_return net::error_reply(order.err());
  }
  if (auto held = store->find(order->key); held && held->sha256 == order->sha256) {
    co_return net::json_reply(api::to_json(api::segment_ref{held->key, held->size, held->sha256}));
  }
  auto src = net::parse_http_url(order->source);
  if (!src) {
    co_return net::error_reply(src.err());
  }
  net::http_client::header_list headers;
  if (auth && !auth->token().empty()) {
    headers.emplace_back("Authorization", "Bearer " + auth->token());  // claims 24, 25
  }
  auto res = co_await client->request(http::verb::get, order->source, {}, std::move(headers));
  if (!res) {
    fetches_failed->inc();
    logger->warn("{}: fetch {} from {} failed: {}", self->name.str(), order->key.str(),
                 order->source, res.err().detail);
    co_return net::error_reply(make_error(errc::protocol_error, "source: " + res.err().detail));
  }
  if (res->status != 200) {
    fetches_failed->inc();
    co_return net::error_reply(
        make_error(errc::protocol_error,
                   fmt::format("source answered {} for {}", res->status, order->source)));
  }
  auto put = co_await store->put(order->key, std::move(res->body), order->sha256);
  if (!put) {
    fetches_failed->inc();
    logger->warn("{}: fetch {} from {}: {}", self->name.str(), order->key.str(), order->source,
                 put.err().detail);
    co_return net::error_reply(put.err());
  }
  fetches_ok->inc();
  co_return net::json_reply(api::to_json(api::segment_ref{put->key, put->size, put->sha256}),
                            http::status::created);
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
  for (auto& s : store->stats()) {
    hb.load.free_bytes += s.free_bytes;
    hb.load.total_bytes += s.total_bytes;
  }
  hb.load.max_streams = self->max_streams;
  hb.load.max_bytes_per_second = self->max_bytes_per_second;

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
    heartbeat_timer.expires_after(grid.heartbeat_interval);
    co_await heartbeat_timer.async_wait(use_tuple);
  }
  heartbeat_running = false;
}

}  // namespace vodgrid::engine
