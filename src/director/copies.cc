// Copies of segments into the station's engines: fetch orders, sources at other stations (claims
// 12-14), one copy per segment at a time, replicas of hot segments (claims 19, 20), the
// pre-positioning of a distributed program (its prefetch queue and workers), and `holder`, which
// names an engine of ours for another station's copy or for a console sent on; and the other
// stations' side: their sources of a segment (`other_sources`) and the engine of theirs a console
// is sent to when none of ours can serve it (`remote_holder`).
#include <fmt/format.h>
#include <boost/json/serialize.hpp>

#include "director/impl.h"

namespace vodgrid::director {

// The engine of ours that should receive a copy: station_tables::choose_receiver with its size.
std::optional<engine_slot> director_daemon::impl::choose_receiver(
    const segment_key& key, std::optional<engine_slot> exclude) {
  return tables.choose_receiver(key, segment_size(key), steady::now(), exclude);
}

// Orders engine `target` to copy `key` from `sources` in turn. wait: answers when the copy is done;
// otherwise as soon as the engine receives it, which serves it meanwhile (cut-through).
asio::awaitable<result<engine_slot>> director_daemon::impl::order_fetch(
    engine_slot target, const segment_key& key, std::vector<std::string> sources, bool wait) {
  auto it = catalog.find(key.program);
  if (it == catalog.end() || key.index.v >= it->second.segments.size()) {
    co_return make_error(errc::not_found, "no such segment: " + key.str());
  }
  auto entry = it->second.segments[key.index.v];
  api::fetch_order order{key, entry.sha256, entry.size, std::move(sources), wait};
  auto url = tables.engine(target).url + "/v1/orders/fetch";
  auto& via = wait ? *copy_client : *client;
  tables.note_ordered(target, entry.size);
  auto f = co_await via.send_json(http::verb::post, url, json::serialize(api::to_json(order)));
  if (!f || (f->status != 201 && f->status != 200 && f->status != 202)) {
    tables.note_order_failed(target, entry.size);
    co_return make_error(errc::unavailable, fmt::format("engine {} did not take the copy of {}: {}",
                                                        tables.engine(target).name.str(), key.str(),
                                                        f ? f->body : f.err().detail));
  }
  auto mark = api::parse_heartbeat_mark(f->header(api::heartbeat_header));
  if (f->status == 202) {
    tables.note_filling(target, key, mark);
  } else {
    tables.note_copy(target, key, mark);
  }
  co_return target;
}

// Claims 12-14: ask the registry for sources, cheapest first; ask each source station's director
// which engine holds the segment; order an engine of ours to copy it from those engines in that
// order (a transfer cut short resumes from the next). The engine checks the digest before it counts
// the segment as held, so a failed copy leaves nothing behind.
asio::awaitable<result<engine_slot>> director_daemon::impl::copy_from_other_station(
    segment_key key, bool wait, std::optional<engine_slot> exclude) {
  if (!choose_receiver(key, exclude)) {  // asked again once the sources are known
    co_return make_error(errc::unavailable,
                         "no engine of this station is up and has room to receive " + key.str());
  }
  auto sources = co_await other_sources(key);
  if (!sources) {
    co_return sources.err();
  }
  std::string last = "no station holds it";
  std::vector<std::string> urls;
  constexpr size_t max_sources = 3;  // enough to ride out a dead source or two
  for (auto& src : *sources) {
    if (urls.size() == max_sources) {
      break;
    }
    auto h = co_await ask_holder(src, key, "whole=1");
    if (!h) {
      last = h.err().detail;
      continue;
    }
    station_of_origin[net::parse_http_url(h->url)->origin()] = src.station;
    urls.emplace_back(std::move(h->url));
  }
  if (urls.empty()) {
    co_return make_error(errc::unavailable, last);
  }
  auto target = choose_receiver(key, exclude);
  if (!target) {
    co_return make_error(errc::unavailable,
                         "no engine of this station is up and has room to receive " + key.str());
  }
  auto got = co_await order_fetch(*target, key, std::move(urls), wait);
  if (!got) {
    logger->warn("director {}: {}", station->name.str(), got.err().detail);
  }
  co_return got;
}

asio::awaitable<result<engine_slot>> director_daemon::impl::copy_outcome(
    std::shared_ptr<pending_copy> p) {
  if (!p->finished) {
    co_await p->done.async_wait(use_tuple);
  }
  co_return p->receiver;
}

// One operation per segment at a time: concurrent callers wait for the one in flight and share
// its outcome. The operation is a task of its own, so that stop waits for it whoever asked.
template <class Start>
std::shared_ptr<director_daemon::impl::pending_copy> director_daemon::impl::start_once(
    copies_in_flight& in_flight, segment_key key, Start start) {
  if (auto it = in_flight.find(key); it != in_flight.end()) {
    return it->second;
  }
  auto p = std::make_shared<pending_copy>(io);
  in_flight[key] = p;
  if (!tasks.spawn(run_once(in_flight, key, p, std::move(start)))) {
    in_flight.erase(key);
    p->receiver = make_error(errc::unavailable, "the director is stopping");
    p->finished = true;
  }
  return p;
}

template <class Start>
asio::awaitable<void> director_daemon::impl::run_once(copies_in_flight& in_flight, segment_key key,
                                                      std::shared_ptr<pending_copy> p,
                                                      Start start) {
  p->receiver = co_await start();
  p->finished = true;
  p->done.cancel();
  in_flight.erase(key);
}

// One copy from another station per segment at a time: concurrent requests for it wait for the
// same order.
asio::awaitable<result<engine_slot>> director_daemon::impl::copy_from_other_station_shared(
    segment_key key, bool wait, std::optional<engine_slot> exclude) {
  return copy_outcome(start_once(other_station_copies_in_flight, key, [this, key, wait, exclude] {
    return copy_from_other_station(key, wait, exclude);
  }));
}

// Claims 19, 20: every engine holding the segment is at its limits, so another engine receives a
// replica from the least loaded holder (a copy between engines is not held to the console limit),
// and serves it while it arrives. The heartbeat that reports it held ("copy done") reaches the
// registry with the station's next report.
asio::awaitable<result<engine_slot>> director_daemon::impl::replicate(
    segment_key key, std::optional<engine_slot> exclude) {
  auto now = steady::now();
  std::vector<std::string> sources;
  for (engine_slot h : tables.sources_by_load(key, now)) {
    if (h != exclude) {
      sources.push_back(segment_url(h, key));
    }
  }
  if (sources.empty()) {
    co_return make_error(errc::unavailable, "no engine of the station holds " + key.str());
  }
  auto target = choose_receiver(key, exclude);
  if (!target) {
    co_return make_error(errc::unavailable, "every engine of station " + station->name.str() +
                                                " is at its limits or holds " + key.str() +
                                                " already");
  }
  auto got = co_await order_fetch(*target, key, std::move(sources), false);
  if (got) {
    replicas[{key, *got}] = steady::now();
    replicas_changed();
    replicas_made->inc();
    logger->info("director {}: {} is hot; engine {} receives a replica", station->name.str(),
                 key.str(), tables.engine(*got).name.str());
  }
  co_return got;
}

std::shared_ptr<director_daemon::impl::pending_copy> director_daemon::impl::start_replica(
    segment_key key) {
  return start_once(replicas_in_flight, key, [this, key] { return replicate(key, std::nullopt); });
}

asio::awaitable<result<engine_slot>> director_daemon::impl::replicate_shared(segment_key key) {
  return copy_outcome(start_replica(key));
}

asio::awaitable<void> director_daemon::impl::prefetch_worker() {
  while (!prefetch_queue.empty() && !stopping) {
    auto key = prefetch_queue.front();
    prefetch_queue.pop_front();
    if (!tables.holders(key).empty() || catalog.find(key.program) == catalog.end()) {
      continue;
    }
    // A source may not have reported its copy yet: try a few times before leaving the segment to
    // the miss path. The backoff only paces retries while the source station's next report (every
    // few hundred ms) reaches the registry; it bounds no wait of a peer, so it is not a setting.
    for (int attempt = 0; attempt < 6 && !stopping; ++attempt) {
      ++prefetching;
      prefetching_peak = std::max(prefetching_peak, prefetching);
      auto r = co_await copy_from_other_station_shared(key, true);
      --prefetching;
      if (r || !tables.holders(key).empty()) {
        break;
      }
      if (attempt == 5) {
        logger->warn("director {}: prefetch of {} failed: {}", station->name.str(), key.str(),
                     r.err().detail);
      }
      if (co_await stop_requested.wait_for(std::chrono::milliseconds(250 << attempt))) {
        break;
      }
    }
  }
  --copy_workers;
}

asio::awaitable<reply> director_daemon::impl::distribute(request_context& ctx) {
  auto d = api::decode<api::distribution>(ctx.req.body());
  if (!d) {
    co_return net::error_reply(d.err());
  }
  if (d->manifest.id.str() != ctx.params[0]) {
    co_return net::error_reply(
        make_error(errc::invalid_argument, "the program in the body is not the one in the path"));
  }
  auto& m = d->manifest;
  auto it = catalog.find(m.id);
  bool known = it != catalog.end() && it->second.state == state_ready;
  if (!known) {
    // Served at once: what the station lacks is copied on the first request (claim 14).
    m.state = std::string(state_ready);
    catalog[m.id] = m;
    if (auto st = save_catalog(); !st) {
      catalog.erase(m.id);
      co_return net::error_reply(st.err());
    }
  }
  size_t n = std::min<size_t>(d->prefetch, m.segments.size());
  size_t queued = 0;
  for (size_t i = 0; i < n; ++i) {
    segment_key key{m.id, segment_index{static_cast<uint32_t>(i)}};
    if (tables.holders(key).empty()) {
      prefetch_queue.push_back(key);
      ++queued;
    }
  }
  while (copy_workers < station->director.parallel_copies && copy_workers < prefetch_queue.size()) {
    ++copy_workers;  // the worker counts itself out when the queue is empty
    if (!tasks.spawn(prefetch_worker())) {
      --copy_workers;  // stopping
      break;
    }
  }
  logger->info("director {}: program {} distributed here; {} segments to copy", station->name.str(),
               m.id.str(), queued);
  co_return net::json_reply(json::object{{"program", m.id.str()}, {"queued", queued}});
}

// GET /v1/programs/{id}/segments/{n}/holder: an engine of this station for the segment, for
// another station's copy or for one of our engines sending a console on. ?whole=1: only an engine
// holding it whole; ?exclude=<engine>: not that one (its copy failed, or it is the asker);
// ?supply=1: if none can serve it, have one receive it (a replica, or a copy from another station);
// ?excluded_full=1: the excluded engine refused a console at its stream limit (its copy is fine);
// ?excluded_lacks=1: a console was sent to the excluded engine, which does not hold the segment
// (our view of it was older than an eviction or a drop): its copy is forgotten;
// ?console=1: the URL is for a console another station's director sends here (signed, with auth).
asio::awaitable<reply> director_daemon::impl::holder(request_context& ctx) {
  auto id = program_id::parse(ctx.params[0]);
  auto idx = segment_index::parse(ctx.params[1]);
  if (!id || !idx) {
    co_return net::error_reply(
        make_error(errc::invalid_argument, "bad program or segment in " + ctx.path));
  }
  segment_key key{*id, *idx};
  bool whole = ctx.query_param("whole") == "1";
  bool supply = ctx.query_param("supply") == "1";  // none can serve it: have one receive it
  bool exclude_full = ctx.query_param("excluded_full") == "1";    // `exclude` refused a console
  bool exclude_lacks = ctx.query_param("excluded_lacks") == "1";  // `exclude` does not hold it
  bool console = ctx.query_param("console") == "1";  // for a console of another station: signed
  std::optional<engine_slot> exclude;
  if (auto ex = ctx.query_param("exclude"); !ex.empty()) {
    exclude = tables.find_engine(ex);
    if (exclude && exclude_full) {
      tables.note_full(*exclude);  // it refused a console: no more go there until it says so
    } else if (exclude && exclude_lacks && tables.engine(*exclude).held.contains(key)) {
      tables.note_removal(*exclude, key);  // no console goes there for it until it lists it
    } else if (exclude && tables.engine(*exclude).filling.count(key) && supply) {
      tables.end_filling(*exclude, key);  // its copy failed: no console goes there for it
    }
  }
  auto now = steady::now();
  auto e = tables.least_loaded(key, now, copy_kind::whole, exclude);
  if (!e && !whole) {
    e = tables.least_loaded(key, now, copy_kind::filling, exclude);
  }
  if (!e && supply) {
    auto m = ready_program(ctx.params[0]);
    if (m && idx->v < (*m)->segments.size()) {
      // (Two statements: GCC 12 mishandles co_await inside a conditional expression.)
      result<engine_slot> got = make_error(errc::unavailable, "");
      if (tables.holders(key).empty() && grid.registry) {
        got = co_await copy_from_other_station_shared(key, false, exclude);
      } else if (exclude_full) {
        got = co_await replicate_shared(key);  // the full engine may be a source: copies pass
      } else {
        got = co_await replicate(key, exclude);
      }
      if (got) {
        e = *got;
      }
    }
  }
  if (!e) {
    if (tables.holders(key).empty()) {
      co_return net::error_reply(
          make_error(errc::not_found,
                     fmt::format("station {} does not hold {}", station->name.str(), key.str())));
    }
    auto r = net::error_reply(make_error(
        errc::unavailable, "no engine holding " + key.str() + " is up and under its limits"));
    r.headers.emplace_back("Retry-After", "1");
    co_return r;
  }
  tables.note_sent(*e, now);
  auto format = api::segment_format::mpegts;  // a console of subtitles is sent to ".vtt"
  if (auto it = catalog.find(key.program); console && it != catalog.end()) {
    format = it->second.format;
  }
  auto url = segment_url(*e, key, {}, format);
  if (console && auth) {
    // Claim 23 across stations: the engine checks signatures of its own station's key.
    auto s = signed_url(std::move(url), *e);
    if (!s) {
      co_return unavailable_reply(s.err());
    }
    url = std::move(*s);
  }
  co_return net::json_reply(
      api::to_json(api::holder_reply{tables.engine(*e).name, std::move(url)}));
}

// The registry's sources of `key` other than this station, cheapest first.
asio::awaitable<result<std::vector<api::source>>> director_daemon::impl::other_sources(
    const segment_key& key) {
  auto res = co_await registry->get(
      *client, fmt::format("/v1/programs/{}/segments/{}/sources?for={}", key.program.str(),
                           key.index.v, station->name.str()));
  if (!res) {
    co_return make_error(errc::unavailable, "registry: " + res.err().detail);
  }
  if (res->status != 200) {
    co_return make_error(errc::unavailable,
                         fmt::format("registry answered {}: {}", res->status, res->body));
  }
  auto list = api::decode<api::source_list>(res->body);
  if (!list) {
    co_return list.err();
  }
  std::erase_if(list->sources, [&](const api::source& s) { return s.station == station->name; });
  co_return std::move(list->sources);
}

asio::awaitable<result<api::holder_reply>> director_daemon::impl::ask_holder(
    const api::source& src, const segment_key& key, std::string_view query) {
  auto h =
      co_await client->get(fmt::format("{}/v1/programs/{}/segments/{}/holder?{}", src.director_url,
                                       key.program.str(), key.index.v, query));
  if (!h || h->status != 200) {
    co_return make_error(errc::unavailable, fmt::format("station {}: {}", src.station.str(),
                                                        h ? h->body : h.err().detail));
  }
  auto reply = api::decode<api::holder_reply>(h->body);
  if (!reply || !net::parse_http_url(reply->url)) {
    co_return make_error(errc::unavailable,
                         fmt::format("station {} named no engine", src.station.str()));
  }
  co_return std::move(*reply);
}

// A console's fallback when no engine of ours can serve or receive `key`: an engine of the
// cheapest other station that names one (its URL signed there).
asio::awaitable<result<std::string>> director_daemon::impl::remote_holder(segment_key key) {
  auto sources = co_await other_sources(key);
  if (!sources) {
    co_return sources.err();
  }
  std::string last = "no other station holds it";
  for (auto& src : *sources) {
    auto h = co_await ask_holder(src, key, "console=1");
    if (h) {
      co_return std::move(h->url);
    }
    last = h.err().detail;
  }
  co_return make_error(errc::unavailable, last);
}

}  // namespace vodgrid::director
