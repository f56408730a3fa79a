// Keeping the station's disks in check: the evictions engines ask for (allowed only when another
// copy exists in the grid, docs/hot-segments.md), and the maintenance loop that deletes replicas
// made for load once idle and runs the placement scan (placement.cc).
#include "director/impl.h"

namespace vodgrid::director {

// POST /v1/engines/{name}/evictions: the engine names what it would evict, least recently used
// first; it may evict a copy only if another engine of the station holds the segment whole, or
// another station does (asked of the registry): never the last copy in the grid.
asio::awaitable<reply> director_daemon::impl::evictions(request_context& ctx) {
  auto req = api::decode<api::eviction_request>(ctx.req.body());
  if (!req) {
    co_return net::error_reply(req.err());
  }
  auto e = tables.find_engine(ctx.params[0]);
  if (!e) {
    co_return net::error_reply(
        make_error(errc::not_found, "no engine " + ctx.params[0] + " has reported here"));
  }
  api::eviction_request allowed;
  uint64_t freed = 0;
  for (auto& key : req->segments) {
    if (freed >= req->bytes) {
      break;
    }
    if (!tables.engine(*e).held.count(key)) {
      continue;
    }
    if (co_await held_elsewhere(key, *e)) {
      // Counted gone now, so that another engine asking to evict its copy of the same segment
      // before this one's heartbeat is told no (its full inventory follows the eviction).
      tables.note_removal(*e, key);
      allowed.segments.push_back(key);
      auto it = catalog.find(key.program);
      freed += it != catalog.end() && key.index.v < it->second.segments.size()
                   ? it->second.segments[key.index.v].size
                   : 0;
      replicas.erase({key, *e});
      replicas_changed();
      evictions_allowed->inc();
    } else {
      evictions_refused->inc();
    }
  }
  co_return net::json_reply(api::to_json(allowed));
}

// Whether a whole copy of `key` other than engine `engine`'s exists: at another up engine of the
// station, or at another station that the registry lists as a source.
asio::awaitable<bool> director_daemon::impl::held_elsewhere(const segment_key& key,
                                                            engine_slot engine) {
  auto now = steady::now();
  for (engine_slot h : tables.holders(key)) {
    if (h != engine && tables.is_up(tables.engine(h), now)) {
      co_return true;
    }
  }
  if (!grid.registry) {
    co_return false;
  }
  auto sources = co_await other_sources(key);
  co_return sources && !sources->empty();  // unknown is no
}

// Deletes replicas made for load once no console has been sent to them for replica_idle, keeping
// the station's placement (`copies` whole copies) of the segment, and runs the placement scan when
// it is due, and the rotation of the session-ticket keys.
asio::awaitable<void> director_daemon::impl::maintenance_loop() {
  while (true) {  // not `while (!co_await ...)`: GCC 12 miscompiles it
    // Not a setting of its own: fine enough for replica_idle (whole seconds), and no coarser than
    // the placement scan's period.
    if (co_await stop_requested.wait_for(std::min<std::chrono::milliseconds>(
            grid.timing.placement_interval, std::chrono::milliseconds(500)))) {
      break;
    }
    auto now = steady::now();
    for (auto it = replicas.begin(); it != replicas.end();) {
      auto& [what, used] = *it;
      auto& [key, engine] = what;
      if (now - used < station->director.replica_idle || tables.engine(engine).filling.count(key)) {
        ++it;  // in use, or still arriving: judged once it is whole
        continue;
      }
      if (tables.up_holders(key, now) > station->director.copies &&
          tables.engine(engine).held.count(key)) {
        tasks.spawn(drop_copy(key, engine, true));
      }
      it = replicas.erase(it);
    }
    replicas_changed();
    plan_placement(now);
    rotate_ticket_keys_when_due(now);
  }
}

}  // namespace vodgrid::director
