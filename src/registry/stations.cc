// Stations: registration, the reports of their directors (load, location changes, copies), the live
// view that says which are up ([timing] station_silence_ms), and what each holds.
#include <fmt/format.h>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <set>

#include "auth/guard.h"
#include "registry/discovery.h"
#include "registry/impl.h"

namespace vodgrid::registry {

asio::awaitable<reply> registry_daemon::impl::put_station(request_context& ctx) {
  auto r = api::decode<api::station_registration>(ctx.req.body());
  if (!r) {
    co_return net::error_reply(r.err());
  }
  if (r->name.str() != ctx.params[0]) {
    co_return net::error_reply(
        make_error(errc::invalid_argument, "the station in the body is not the one in the path"));
  }
  auto* cfg = grid.find_station(r->name.str());
  if (!cfg) {
    co_return net::error_reply(
        make_error(errc::forbidden, "no station " + r->name.str() + " in the grid"));
  }
  if (auto u = net::parse_http_url(r->director_url); !u) {
    co_return net::error_reply(u.err());
  }
  // What the grid config says of the station wins over the body: a registration can neither send
  // copies elsewhere nor move the station or widen its uplink in the cost model.
  r->director_url = cfg->director.listen.url();
  station_record rec{r->name,   r->director_url, cfg->home,
                     cfg->x_km, cfg->y_km,       cfg->uplink_bits_per_second};
  auto st = co_await on_db([&] { return db->put_station(rec); });
  if (!st) {
    co_return net::error_reply(st.err());
  }
  stations[r->name.str()].last_report = steady::now();
  ++registrations[r->name.str()];
  logger->info("registry: station {} registered at {}", r->name.str(), r->director_url);
  // Catch-up: everything this station must hold, told again (it may have missed it while down).
  auto progs = co_await on_db([&] { return db->programs(); });
  size_t told = 0;
  if (progs) {
    for (auto& p : *progs) {
      auto m = api::decode<api::program_manifest>(p.manifest_json);
      if (!m) {
        continue;
      }
      api::distribution d{std::move(*m), p.targets, p.prefetch};
      auto targets = targets_of(d);
      if (std::find(targets.begin(), targets.end(), r->name.str()) != targets.end()) {
        tasks.spawn(notify(r->director_url, r->name.str(), std::move(d)));
        ++told;
      }
    }
  }
  co_return net::json_reply(json::object{{"station", r->name.str()}, {"programs", told}});
}

asio::awaitable<reply> registry_daemon::impl::report(request_context& ctx) {
  auto name = station_id::parse(ctx.params[0]);
  auto* cfg = name ? grid.find_station(name->str()) : nullptr;
  if (!cfg) {
    co_return net::error_reply(
        make_error(errc::forbidden, "no station " + ctx.params[0] + " in the grid"));
  }
  auto it = stations.find(name->str());
  if (it == stations.end()) {
    co_return net::error_reply(
        make_error(errc::conflict, "station " + name->str() + " has not registered"));
  }
  auto r = api::decode<api::station_report>(ctx.req.body());
  if (!r) {
    co_return net::error_reply(r.err());
  }
  if (!r->changes.empty()) {  // (one without changes writes nothing: no seq to check)
    auto& list = r->changes;
    for (auto& c : list) {
      // A station speaks only for its own engines: the config says which those are.
      if (c.engine && std::none_of(cfg->engines.begin(), cfg->engines.end(),
                                   [&](auto& e) { return e.name == *c.engine; })) {
        co_return net::error_reply(
            make_error(errc::invalid_argument,
                       fmt::format("engine {} is not an engine of station {} (change of {})",
                                   c.engine->str(), name->str(), c.key.str())));
      }
    }
    auto st = co_await on_db([&]() -> result<location_db::report_outcome> {
      if (auto checked = check_indices(list); !checked) {
        return checked.err();
      }
      return db->apply_report(*name, r->seq, list);
    });
    if (!st) {
      if (st.err().code == errc::invalid_argument) {
        logger->warn("registry: report of {} refused: {}", name->str(), st.err().detail);
      } else {
        logger->error("registry: recording {} changes of {}: {}", list.size(), name->str(),
                      st.err().detail);
      }
      co_return net::error_reply(st.err());
    }
    if (!st->applied) {
      // Answered (it was, or will never be, applied): a daemon that stalled commits it late. The
      // last seq applied lets a director whose clock went back across a restart number above it.
      logger->info("registry: report {} of {} is older than one applied ({}); it changes nothing",
                   r->seq, name->str(), st->last_seq);
      co_return net::json_reply(
          json::object{{"recorded", 0}, {"stale", true}, {"seq", st->last_seq}});
    }
    changes->inc(static_cast<double>(list.size()));
  }
  auto& l = stations[name->str()];
  l.last_report = steady::now();
  l.load = r->load;
  l.sending_bits_per_second = r->sending_bits_per_second;
  l.engines_up = r->engines_up;
  for (auto& c : r->copies) {
    // Only stations that registered have a live entry; a sample naming another is ignored.
    auto src_it = stations.find(c.source.str());
    if (c.bytes > 0 && src_it != stations.end()) {
      dash.link_bytes[{c.source.str(), name->str()}] += c.bytes;  // the dashboard's links
    }
    if (c.seconds > 0 && c.bytes > 0 && src_it != stations.end()) {
      auto& src = src_it->second;
      double bps = static_cast<double>(c.bytes) * 8 / c.seconds;
      src.copy_bits_per_second =
          src.copy_bits_per_second == 0 ? bps : 0.8 * src.copy_bits_per_second + 0.2 * bps;
    }
  }
  reports->inc();
  co_return net::json_reply(json::object{{"recorded", r->changes.size()}});
}

// On the database thread. Refuses a copy gained past the end of a program the registry knows. A
// program it does not know yet passes: the home station reports a program's locations before
// ingest sends its distribution. A loss past the end passes too: it can only clear a location
// recorded while the program was longer, and refusing it would leave that location for ever.
status registry_daemon::impl::check_indices(const std::vector<location_change>& list) {
  std::set<program_id> unknown;  // asked once per report
  for (auto& c : list) {
    if (!c.held || unknown.count(c.key.program)) {
      continue;
    }
    auto n = segment_count(c.key.program);
    if (!n) {
      return n.err();
    }
    if (!*n) {
      unknown.insert(c.key.program);
      continue;
    }
    if (c.key.index.v >= **n) {
      return make_error(errc::invalid_argument,
                        fmt::format("program {} has {} segments: there is no segment {}",
                                    c.key.program.str(), **n, c.key.index.v));
    }
  }
  return {};
}

// On the database thread: the segments of a program the registry knows, from segment_counts or
// its stored manifest (then kept); nullopt for a program it does not know (not kept: it may come).
result<std::optional<uint32_t>> registry_daemon::impl::segment_count(const program_id& program) {
  if (auto it = segment_counts.find(program); it != segment_counts.end()) {
    return std::optional<uint32_t>(it->second);
  }
  auto p = db->program(program);
  if (!p) {
    return p.err();
  }
  if (!*p) {
    return std::optional<uint32_t>();
  }
  auto m = api::decode<api::program_manifest>((*p)->manifest_json);
  if (!m) {
    return make_error(errc::io_error, "the stored manifest of " + program.str() +
                                          " does not decode: " + m.err().detail);
  }
  auto n = static_cast<uint32_t>(m->segments.size());
  segment_counts.emplace(program, n);
  return std::optional<uint32_t>(n);
}

asio::awaitable<reply> registry_daemon::impl::list_stations(request_context&) {
  auto recs = co_await on_db([&] { return db->stations(); });
  if (!recs) {
    co_return net::error_reply(recs.err());
  }
  json::array a;
  for (auto& s : *recs) {
    auto l = stations.count(s.name.str()) ? stations.at(s.name.str()) : live{};
    a.push_back(json::object{{"name", s.name.str()},
                             {"director_url", s.director_url},
                             {"home", s.home},
                             {"up", is_up(s.name.str())},
                             {"x_km", s.x_km},
                             {"y_km", s.y_km},
                             {"uplink_bits_per_second", s.uplink_bits_per_second},
                             {"sending_bits_per_second", l.sending_bits_per_second},
                             {"load", l.load},
                             {"engines_up", l.engines_up},
                             {"copy_bits_per_second", l.copy_bits_per_second}});
  }
  co_return net::json_reply(json::object{{"stations", a}});
}

// GET /v1/stations/{name}/held: per program, how many segments the station holds whole.
asio::awaitable<reply> registry_daemon::impl::station_held(request_context& ctx) {
  auto name = station_id::parse(ctx.params[0]);
  if (!name || !grid.find_station(ctx.params[0])) {
    co_return net::error_reply(
        make_error(errc::not_found, "no station " + ctx.params[0] + " in the grid"));
  }
  auto held = co_await on_db([&] { return db->held_by(*name); });
  if (!held) {
    co_return net::error_reply(held.err());
  }
  json::object programs;
  for (auto& [program, n] : *held) {
    programs[program] = n;
  }
  co_return net::json_reply(json::object{{"station", name->str()}, {"programs", programs}});
}

// GET /v1/grid: where the grid's services are, for the client commands that know only the
// registry's URL (DESIGN.md: --grid).
// Without a token (a client about to log in): the services only; the stations for any token.
asio::awaitable<reply> registry_daemon::impl::grid_info(request_context& ctx) {
  // "registry": this daemon; "registries": every daemon of the registry the grid names (its
  // [registry] urls), for a client to fail over between.
  json::array registries;
  for (auto& u : grid.registry->client_urls()) {
    registries.push_back(json::value(u));
  }
  json::object o{{"registry", grid.registry->listen.url()}, {"registries", std::move(registries)}};
  o["auth"] = grid.auth ? json::value(grid.auth->listen.url()) : json::value(nullptr);
  o["content"] = grid.content ? json::value(grid.content->listen.url()) : json::value(nullptr);
  auto who = co_await auth::reader_of(ctx, auth.get());
  if (who.anonymous) {
    co_return net::json_reply(o);
  }
  json::array stations;
  for (auto& s : grid.stations) {
    stations.push_back(json::object{
        {"name", s.name.str()}, {"home", s.home}, {"director_url", s.director.listen.url()}});
  }
  o["stations"] = stations;
  co_return net::json_reply(o);
}

asio::awaitable<reply> registry_daemon::impl::prometheus_targets(request_context& ctx) {
  if (auto ranges = grid.metrics_ranges(); !any_contains(ranges, ctx.remote.address())) {
    co_return net::error_reply(make_error(
        errc::forbidden, fmt::format("/v1/prometheus/targets is not open to {} (the grid's [grid] "
                                     "metrics_from does not list it)",
                                     ctx.remote.address().to_string())));
  }
  co_return net::json_reply(registry::prometheus_targets(grid));
}

}  // namespace vodgrid::registry
