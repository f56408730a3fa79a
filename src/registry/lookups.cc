// Where a segment is: the cheapest sources for a station that seeks it (claim 15, cost.h) and its
// locations per station and engine.
#include <fmt/format.h>
#include <boost/json/serialize.hpp>

#include <algorithm>

#include "registry/impl.h"

namespace vodgrid::registry {

// The manifest of a program the registry knows that has segment `idx`; errc::not_found otherwise.
asio::awaitable<result<api::program_manifest>> registry_daemon::impl::manifest_with(
    const program_id& id, segment_index idx) {
  auto p = co_await on_db([&] { return db->program(id); });
  if (!p) {
    co_return p.err();
  }
  if (!*p) {
    co_return make_error(errc::not_found, "no such program: " + id.str());
  }
  auto m = api::decode<api::program_manifest>((*p)->manifest_json);
  if (!m || idx.v >= m->segments.size()) {
    co_return make_error(errc::not_found,
                         fmt::format("program {} has no segment {}", id.str(), idx.v));
  }
  co_return std::move(*m);
}

asio::awaitable<reply> registry_daemon::impl::sources(request_context& ctx) {
  auto id = program_id::parse(ctx.params[0]);
  auto idx = segment_index::parse(ctx.params[1]);
  auto seeker_name = std::string(ctx.query_param("for"));
  auto* seeker_cfg = grid.find_station(seeker_name);
  if (!id || !idx) {
    co_return net::error_reply(
        make_error(errc::invalid_argument, "bad program or segment in " + ctx.path));
  }
  if (!seeker_cfg) {
    co_return net::error_reply(
        make_error(errc::invalid_argument, "'for' must name a station of the grid"));
  }
  auto m = co_await manifest_with(*id, *idx);
  if (!m) {
    co_return net::error_reply(m.err());
  }
  segment_key key{*id, *idx};
  auto holders = co_await on_db([&] { return db->holders(key); });
  auto recs = co_await on_db([&] { return db->stations(); });
  if (!holders || !recs) {
    co_return net::error_reply(!holders ? holders.err() : recs.err());
  }
  std::map<std::string, std::string> urls;
  std::vector<station_inputs> inputs;
  for (auto& h : *holders) {
    for (auto& s : *recs) {
      if (s.name.str() != h) {
        continue;
      }
      auto l = stations.count(h) ? stations.at(h) : live{};
      station_inputs in;
      in.name = h;
      in.home = s.home;
      in.up = is_up(h);
      in.x_km = s.x_km;
      in.y_km = s.y_km;
      in.uplink_bits_per_second = s.uplink_bits_per_second;
      in.sending_bits_per_second = l.sending_bits_per_second;
      in.load = l.load;
      in.copy_bits_per_second = l.copy_bits_per_second;
      inputs.push_back(in);
      urls[h] = s.director_url;
    }
  }
  station_inputs seeker;
  seeker.name = seeker_name;
  seeker.x_km = seeker_cfg->x_km;
  seeker.y_km = seeker_cfg->y_km;
  api::source_list list{key, {}};
  for (auto& [in, b] : costs.rank(inputs, seeker, m->segments[idx->v].size)) {
    auto name = station_id::parse(in.name);  // a name the database took from a registration
    if (!name) {
      continue;
    }
    list.sources.push_back({*name,
                            urls[in.name],
                            b.cost,
                            {b.available_bits_per_second, b.distance_km, b.transfer_seconds,
                             b.latency_seconds, b.load_factor, b.home_penalty_seconds}});
  }
  lookups->inc();
  co_return net::json_reply(api::to_json(list));
}

// GET /v1/programs/{id}/segments/{n}/locations: where the segment lives, per station and engine,
// filling copies included (operators and tools; sources() is what directors use).
asio::awaitable<reply> registry_daemon::impl::locations(request_context& ctx) {
  auto id = program_id::parse(ctx.params[0]);
  auto idx = segment_index::parse(ctx.params[1]);
  if (!id || !idx) {
    co_return net::error_reply(
        make_error(errc::invalid_argument, "bad program or segment in " + ctx.path));
  }
  auto m = co_await manifest_with(*id, *idx);
  if (!m) {
    co_return net::error_reply(m.err());
  }
  segment_key key{*id, *idx};
  auto where = co_await on_db([&] { return db->locations(key); });
  if (!where) {
    co_return net::error_reply(where.err());
  }
  json::array out;
  for (auto& s : *where) {
    json::array engines, filling;
    for (auto& e : s.engines) {
      engines.push_back(json::value(e));
    }
    for (auto& e : s.filling) {
      filling.push_back(json::value(e));
    }
    out.push_back(json::object{{"station", s.station},
                               {"complete", s.complete},
                               {"engines", engines},
                               {"filling", filling}});
  }
  co_return net::json_reply(
      json::object{{"program", id->str()}, {"segment", idx->v}, {"stations", out}});
}

}  // namespace vodgrid::registry
