// Playback: what a console asks for. The HLS playlist; the 302 of each segment to an engine chosen
// by status and load (claim 18), with a replica ordered when every holder is at its limits (claim
// 19) and the fallback to a copy from, or an engine of, another station when none here can serve
// it (claim 14); the preload order to the engine of the next segment (claim 16); viewer tokens and
// signed redirects (claim 23).
#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/json/serialize.hpp>

#include "api/hls.h"
#include "auth/client.h"
#include "auth/url_signer.h"
#include "director/impl.h"

namespace vodgrid::director {

// The slow path of a token check (the fast one is token_verifier::allows): the full verification,
// with the keys fetched again when the token names one we do not know. The reply refusing the
// request, or nullopt when the token passes.
asio::awaitable<std::optional<reply>> director_daemon::impl::token_refusal(request_context& ctx,
                                                                           auth::requirement req) {
  auto token = auth::token_of(ctx);
  auto out = auth->verifier().verify(token, req);
  if (!out && out.why == auth::token_error::unknown_key) {
    out = co_await auth->keys().verify(std::string(token), std::move(req));
  }
  if (out) {
    co_return std::nullopt;
  }
  co_return unavailable_reply(out.as_error());  // the keys could not be fetched: ask again
}

asio::awaitable<reply> director_daemon::impl::playlist(request_context& ctx) {
  co_return co_await playlist_reply(
      ctx, [](const api::program_manifest& m, std::string_view query) -> result<std::string> {
        // A program of several renditions: the multivariant playlist, pointing at theirs.
        return m.renditions.empty() ? api::write_vod_playlist(m, query)
                                    : api::write_multivariant_playlist(m, query);
      });
}

asio::awaitable<reply> director_daemon::impl::iframe_playlist(request_context& ctx) {
  co_return co_await playlist_reply(ctx, &api::write_iframe_playlist);
}

asio::awaitable<reply> director_daemon::impl::playlist_reply(
    request_context& ctx,
    result<std::string> (*write)(const api::program_manifest&, std::string_view)) {
  if (auth) {
    // Claim 23: a viewer token entitled to the program, bound (if it says so) to this client.
    // A rendition plays with a token for its program (flow 9). Checked first: nothing about the
    // program (whether it exists, when it publishes) is told to a console without that right.
    if (auto id = program_id::parse(ctx.params[0])) {
      auth::requirement req{auth::token_kind::viewer, api::entitlement_of(*id),
                            auth::client_address(ctx)};
      if (auto refusal = co_await token_refusal(ctx, std::move(req))) {
        co_return std::move(*refusal);
      }
    }
  }
  auto m = co_await find_program(ctx.params[0]);
  if (!m) {
    co_return unavailable_reply(m.err());
  }
  // Whatever query the console used (a token) is carried to each segment URI.
  std::string query;
  auto target = ctx.req.target();
  if (auto q = target.find('?'); q != std::string_view::npos) {
    query = std::string(target.substr(q));
  }
  auto text = write(**m, query);
  if (!text) {
    co_return net::error_reply(text.err());
  }
  reply r;
  r.content_type = "application/vnd.apple.mpegurl";
  r.headers.emplace_back("Cache-Control", "no-cache");
  r.body = std::move(*text);
  co_return r;
}

asio::awaitable<void> director_daemon::impl::send_preload(std::string url,
                                                          api::preload_order order) {
  auto res =
      co_await client->send_json(http::verb::post, url, json::serialize(api::to_json(order)));
  if (!res || res->status >= 300) {
    logger->debug("director {}: preload {} at {} failed", station->name.str(), order.key.str(),
                  url);
  }
}

std::string director_daemon::impl::segment_url(engine_slot engine, const segment_key& key,
                                               std::string_view query,
                                               api::segment_format format) const {
  return segment_url_at(tables.engine(engine).url, key, query, format);
}

std::string director_daemon::impl::segment_url_at(std::string_view url, const segment_key& key,
                                                  std::string_view query,
                                                  api::segment_format format) {
  std::string out;
  // Room for a signature too (sign_at): one allocation a redirect.
  out.reserve(url.size() + key.program.str().size() + query.size() + 32 + 1 +
              auth::url_signer::query_max);
  out += url;
  out += "/v1/segments/";
  out += key.program.str();
  out += '/';
  out += std::to_string(key.index.v);
  out += api::segment_extension(format);
  out.append(query.data(), query.size());
  return out;
}

// A signed redirect is followed at once: it need outlive only the console's request to the engine
// and the clocks' skew. Not a setting: it is part of claim 23's "short-lived".
constexpr int64_t signature_lifetime_seconds = 30;

namespace {

// `url` (an engine's URL `base` and a path) signed for the engine with the station key.
// `now`: unix seconds, when the caller has read the clock already.
result<std::string> sign_at(const auth::url_signer* signer, std::string url, size_t base,
                            int64_t now = auth::unix_now()) {
  if (!signer) {
    return make_error(errc::unavailable, "not yet logged in at auth");
  }
  signer->append_signed_query(url, base, now + signature_lifetime_seconds);
  return url;
}

}  // namespace

result<std::string> director_daemon::impl::signed_url(std::string url, engine_slot engine) const {
  return sign_at(auth->signer(), std::move(url), tables.engine(engine).url.size());
}

result<std::string> director_daemon::impl::console_location(engine_slot engine,
                                                            const segment_key& key,
                                                            std::string_view query,
                                                            api::segment_format format) const {
  if (!auth) {
    return segment_url(engine, key, query, format);
  }
  return signed_url(segment_url(engine, key, {}, format), engine);
}

// The engine the tables choose for a console of `key`, the engine told to preload it preferred
// (claim 16). When the one chosen is near its limits and so is every other engine serving the
// segment, a replica is ordered before consoles have to wait for it (claim 19).
std::optional<engine_slot> director_daemon::impl::choose_for_console(const segment_key& key,
                                                                     steady::time_point now) {
  // The hint is kept until it expires: every console of this segment may use it.
  auto chosen = tables.choose(key, now, tables.hint(key, now));
  if (chosen && near_limits(tables.engine(*chosen), station->director.hot_load_percent) &&
      !replicas_in_flight.contains(key) &&
      tables.hot(key, now, station->director.hot_load_percent)) {
    start_replica(key);
  }
  return chosen;
}

// Claim 19: every holder is at its limits. Another engine receives a replica and this console goes
// there, served as the replica arrives. Consoles arriving together share one order; when they are
// more than the replica's engine takes, the rest order the next one.
asio::awaitable<std::optional<engine_slot>> director_daemon::impl::wait_for_replica(
    segment_key key) {
  std::optional<engine_slot> chosen;
  for (size_t round = 0; !chosen && round < tables.engine_count(); ++round) {
    auto got = co_await replicate_shared(key);
    if (!got) {
      break;  // no engine left with room
    }
    chosen = tables.choose(key, steady::now());
  }
  co_return chosen;
}

// A segment request refused; one that may pass (503) is counted by its reason: the program is
// not ready here ("program"), no station can serve it ("no_station"), no engine of this station
// can ("no_engine"), or the redirect cannot be signed yet ("signing").
reply director_daemon::impl::refuse_segment(std::string_view reason, const error& e) {
  if (e.code == errc::unavailable) {
    server->metrics()
        .counter("vodgrid_director_unavailable_total", unavailable_help,
                 fmt::format("reason=\"{}\"", reason))
        .inc();
  }
  return unavailable_reply(e);
}

// GET /v1/programs/{id}/segments/{n}.ts (.vtt for WebVTT segments): a 302 to an engine of ours
// (signed with auth), else to an engine of another station; 503 + Retry-After when no station can
// serve it. Runs on the connection's loop (issue 16): redirect_now, else the home loop.
asio::awaitable<reply> director_daemon::impl::segment(request_context& ctx) {
  redirect_progress done;
  if (auto r = redirect_now(ctx, done)) {
    co_return std::move(*r);
  }
  if (server->on_home_loop()) {
    co_return co_await segment_at_home(ctx, done);
  }
  co_return co_await asio::co_spawn(io.get_executor(), segment_at_home(ctx, done),
                                    asio::use_awaitable);
}

// The redirect from what the home loop publishes, on any loop: the token (token_verifier is
// thread-safe; verifying with the public keys is pure), the ready programs, the tables' views, the
// station key's signer. What changes the home loop's state goes there by post (at_home): a
// replica's last use, a replica when the segment is hot, the preload order.
std::optional<reply> director_daemon::impl::redirect_now(request_context& ctx,
                                                         redirect_progress& done) {
  // The token before anything about the program is told (whether it exists, when it publishes,
  // its segments).
  int64_t unix_now = auth ? auth::unix_now() : 0;  // one clock read for the token and the signature
  if (auto id = program_id::parse(ctx.params[0]); auth && id) {
    auto entitlement = api::entitlement_of(*id);
    auto token = auth::token_of(ctx);
    if (!auth->verifier().allows(token, auth::token_kind::viewer, &entitlement,
                                 ctx.remote.address(), unix_now)) {
      auth::requirement req{auth::token_kind::viewer, entitlement, auth::client_address(ctx)};
      auto out = auth->verifier().verify(token, req);
      if (!out && out.why == auth::token_error::unknown_key) {
        return std::nullopt;  // the keys are fetched at home
      }
      if (!out) {
        return unavailable_reply(out.as_error());
      }
    }
  }
  done.token_checked = true;
  // What this loop reads of the home loop's state, through its snapshots (base/snapshot.h): no
  // shared cache line written unless the home loop published something since.
  snapshot_pin pin;
  const ready_programs* programs = ready_view.read(pin);
  auto p = programs->find(ctx.params[0]);
  if (p == programs->end()) {
    return std::nullopt;  // not ready here: learnt from the registry, or refused, at home
  }
  const std::shared_ptr<const api::program_manifest>& m = p->second;
  auto idx = segment_index::parse(ctx.params[1]);
  auto format = m->format;
  auto ext = api::segment_extension(format);
  if (!idx || idx->v >= m->segments.size() || !ctx.path.ends_with(ext)) {
    return net::error_reply(
        make_error(errc::not_found,
                   fmt::format("program {} has no segment {} (its segments are segments/{{n}}{})",
                               ctx.params[0], ctx.path.substr(ctx.path.rfind('/') + 1), ext)));
  }
  const auth::url_signer* signer = nullptr;
  if (auth) {
    signer = auth->signer(pin);
    if (!signer) {
      return std::nullopt;  // not yet logged in at auth: refused, and counted, at home
    }
  }
  auto now = steady::now();
  segment_key key{m->id, *idx};
  hot.record(key, now);
  done.recorded = true;
  const engine_views* engines = tables.published_engines(pin);
  std::optional<engine_slot> chosen;
  {
    auto ref = tables.published(key);
    const segment_view* seg = ref.seg;
    std::optional<engine_slot> hint;
    if (seg && seg->hint && seg->hint_until > now) {
      hint = seg->hint;
    }
    chosen = tables.choose_on(*engines, seg, now, hint);
  }
  if (!chosen) {
    return std::nullopt;  // a replica, a copy or another station: at home
  }
  const engine_view& e = (*engines)[index_of(*chosen)];
  // What the pin's values give is read before any at_home, which on the home loop runs inline:
  // what it runs must not be able to end them under us (base/snapshot.h, snapshot_pin).
  std::string_view query;  // passed on as it came, with its '?'
  if (auto q = ctx.req.target().find('?'); q != std::string_view::npos) {
    query = ctx.req.target().substr(q);
  }
  auto location =
      signer ? sign_at(signer, segment_url_at(e.url, key, {}, format), e.url.size(), unix_now)
             : result<std::string>(segment_url_at(e.url, key, query, format));
  if (!location) {
    return unavailable_reply(location.err());  // (not reached: the signer is there)
  }
  bool hot_holder = near_limits(e, station->director.hot_load_percent);
  bool preload = false;
  if (ctx.req.method() == http::verb::get && key.index.v + 1 < m->segments.size()) {
    // Claim 16: the preload order, unless the next segment's hint holds (most consoles).
    auto ref = tables.published(segment_key{key.program, segment_index{key.index.v + 1}});
    if (const segment_view* seg = ref.seg) {
      auto h = seg->hint;
      preload = !(h && seg->hint_until > now && index_of(*h) < engines->size() &&
                  tables.is_up((*engines)[index_of(*h)], now));
    }
  }
  // Nothing read through `pin` is used from here on: at_home may run its work inline.
  if (preload) {
    at_home([this, m, key, now] { preload_next(*m, key, now); });
  }
  if (hot_holder) {
    // Claim 19: every holder near its limits orders a replica before consoles wait for it.
    at_home([this, key, hot_percent = station->director.hot_load_percent] {
      if (!replicas_in_flight.contains(key) && tables.hot(key, steady::now(), hot_percent)) {
        start_replica(key);
      }
    });
  }
  if (replica_count.load(std::memory_order_relaxed) > 0) {
    at_home([this, key, engine = *chosen, now] {
      if (auto rep = replicas.find({key, engine}); rep != replicas.end()) {
        rep->second = std::max(rep->second, now);
      }
    });
  }
  redirects->inc();
  return redirect_reply(std::move(*location));
}

// The redirect on the home loop, for what redirect_now leaves to it.
asio::awaitable<reply> director_daemon::impl::segment_at_home(request_context& ctx,
                                                              redirect_progress done) {
  if (auto id = program_id::parse(ctx.params[0]); auth && id && !done.token_checked) {
    auto entitlement = api::entitlement_of(*id);
    if (!auth->verifier().allows(auth::token_of(ctx), auth::token_kind::viewer, &entitlement,
                                 ctx.remote.address(), auth::unix_now())) {
      auth::requirement req{auth::token_kind::viewer, entitlement, auth::client_address(ctx)};
      if (auto refusal = co_await token_refusal(ctx, std::move(req))) {
        co_return std::move(*refusal);
      }
    }
  }
  auto m = ready_program(ctx.params[0]);
  if (!m && grid.registry && m.err().code == errc::not_found) {
    m = co_await find_program(ctx.params[0]);  // a program this station has not heard of yet
  }
  if (!m) {
    co_return refuse_segment("program", m.err());
  }
  auto idx = segment_index::parse(ctx.params[1]);
  auto format = (*m)->format;
  auto ext = api::segment_extension(format);
  if (!idx || idx->v >= (*m)->segments.size() || !ctx.path.ends_with(ext)) {
    co_return net::error_reply(
        make_error(errc::not_found,
                   fmt::format("program {} has no segment {} (its segments are segments/{{n}}{})",
                               ctx.params[0], ctx.path.substr(ctx.path.rfind('/') + 1), ext)));
  }
  auto now = steady::now();
  segment_key key{(*m)->id, *idx};
  if (!done.recorded) {
    hot.record(key, now);
  }
  auto chosen = choose_for_console(key, now);
  if (!chosen && tables.up_holders(key, now) > 0) {
    chosen = co_await wait_for_replica(key);
    now = steady::now();
    m = ready_program(ctx.params[0]);  // the catalog may have changed while we waited
    if (!m) {
      co_return net::error_reply(m.err());
    }
  }
  std::string elsewhere;  // an engine of another station, when none of ours can serve or receive
  if (!chosen && grid.registry) {
    auto f = co_await fall_back(key);
    now = steady::now();
    m = ready_program(ctx.params[0]);  // the catalog may have changed while we waited
    if (!m) {
      co_return net::error_reply(m.err());
    }
    if (!f) {
      co_return refuse_segment("no_station", f.err());
    }
    chosen = f->engine;
    elsewhere = std::move(f->elsewhere);
  }
  if (!chosen && elsewhere.empty()) {
    co_return refuse_segment(
        "no_engine",
        make_error(errc::unavailable,
                   fmt::format("no engine holding {} is up and under its limits", key.str())));
  }
  std::string_view query;  // passed on as it came, with its '?'
  if (auto q = ctx.req.target().find('?'); q != std::string_view::npos) {
    query = ctx.req.target().substr(q);
  }
  if (!chosen) {
    if (!auth) {
      elsewhere.append(query.data(), query.size());
    }
    co_return redirect_reply(std::move(elsewhere));  // signed by the other station, with auth
  }
  if (!replicas.empty()) {
    if (auto rep = replicas.find({key, *chosen}); rep != replicas.end()) {
      rep->second = now;
    }
  }
  auto location = console_location(*chosen, key, query, format);
  if (!location) {
    co_return refuse_segment("signing", location.err());
  }
  auto r = redirect_reply(std::move(*location));
  redirects->inc();
  if (ctx.req.method() == http::verb::get) {
    preload_next(**m, key, now);
  }
  co_return r;
}

// Claim 16: the engine that will serve the segment after `key` preloads it now. One order per
// segment while its hint holds, not one per console: many viewers of a program would otherwise send
// the same order over and over. The hinted engine is preferred for the next segment
// (choose_engine), so its preload is the one that counts.
void director_daemon::impl::preload_next(const api::program_manifest& m, const segment_key& key,
                                         steady::time_point now) {
  if (key.index.v + 1 >= m.segments.size()) {
    return;
  }
  segment_key next{key.program, segment_index{key.index.v + 1}};
  auto n = tables.peek(next, now);
  if (!n) {
    return;
  }
  auto ttl = std::chrono::duration_cast<steady::duration>(
      std::chrono::duration<double>(m.segments[key.index.v].duration * 2 + 1));
  if (!tables.hint_fresh(next, now)) {
    tables.set_hint(next, *n, now + ttl);
    preload_orders->inc();
    tasks.spawn(
        send_preload(tables.engine(*n).url + "/v1/orders/preload", api::preload_order{next}));
  }
}

// Claim 14, for a segment no engine of ours can serve: the station lacks it, or every engine
// holding it is down, hung or full. An engine of ours copies it from the cheapest other station and
// the console goes there at once (it serves the segment while it arrives); if no engine of ours can
// take it, the console goes to an engine of that station. errc::unavailable: no station could
// supply it, with why.
asio::awaitable<result<director_daemon::impl::fallback>> director_daemon::impl::fall_back(
    segment_key key) {
  bool lacked = tables.holders(key).empty() && tables.filling(key).empty();
  auto got = co_await copy_from_other_station_shared(key, false);
  fallback f;
  if (got) {
    f.engine = tables.choose(key, steady::now());
  }
  if (f.engine) {
    if (!lacked) {
      fallbacks_copied->inc();  // (a plain miss is not a fallback)
    }
    co_return f;
  }
  std::string why = got ? "no engine here can serve it" : got.err().detail;
  auto remote = co_await remote_holder(key);
  if (!remote) {
    co_return make_error(errc::unavailable,
                         fmt::format("no engine of station {} can serve {} and no other station "
                                     "could supply it: {}; {}",
                                     station->name.str(), key.str(), why, remote.err().detail));
  }
  fallbacks_remote->inc();
  f.elsewhere = std::move(*remote);
  co_return f;
}

}  // namespace vodgrid::director
