// Placement and repair (claim 18; issue 10): every segment a station holds is kept on `copies`
// distinct engines in rotation, however it arrived — a direct load, a distribution, or a console's
// miss. An engine out of rotation longer than `repair_grace` has its segments copied again (from a
// copy in the station, else from the cheapest other station); an engine that comes back with
// copies the station no longer needs has the surplus dropped, never a copy being streamed and never
// the last one. Consoles never wait for any of this: the miss path serves them meanwhile.
#include "director/impl.h"

namespace vodgrid::director {

uint64_t director_daemon::impl::segment_size(const segment_key& key) const {
  auto it = catalog.find(key.program);
  return it != catalog.end() && key.index.v < it->second.segments.size()
             ? it->second.segments[key.index.v].size
             : 0;
}

// Runs from the maintenance loop, at most once per [timing] placement_interval. Scans the segments
// the station holds (the home: every segment of its catalog, which it must hold whole) and starts
// what is needed: repairs up to parallel_copies in flight, and a few drops of surplus copies.
void director_daemon::impl::plan_placement(steady::time_point now) {
  if (stopping || now < next_placement) {
    return;
  }
  next_placement = now + grid.timing.placement_interval;
  // Right after a start not every engine has reported its inventory: what looks missing may not be.
  if (now - started < grid.heartbeat_timeout * 2) {
    return;
  }
  const size_t copies = station->director.copies;
  const size_t want = std::min(copies, tables.up_engines(now).size());
  const auto grace =
      std::chrono::duration_cast<std::chrono::milliseconds>(station->director.repair_grace);
  size_t repair_room = station->director.parallel_copies > repairing.size()
                           ? station->director.parallel_copies - repairing.size()
                           : 0;
  size_t drop_room = station->director.parallel_copies;
  size_t under = 0;
  std::vector<segment_key> to_repair;
  std::vector<std::pair<segment_key, engine_slot>> to_drop;
  auto consider = [&](const segment_key& key) {
    auto it = catalog.find(key.program);
    if (it == catalog.end() || it->second.state != state_ready ||
        key.index.v >= it->second.segments.size()) {
      return;  // a program being loaded is placed by its loader; an unknown one is not ours
    }
    size_t up = tables.up_holders(key, now);
    under += up < want ? 1 : 0;
    if (repairing.contains(key) || dropping.contains(key)) {
      return;
    }
    if (tables.present_copies(key, now, grace) < want) {
      if (repair_room > 0) {
        --repair_room;
        to_repair.push_back(key);
      }
      return;
    }
    if (up <= copies || drop_room == 0 || !tables.filling(key).empty()) {
      return;
    }
    auto worst = tables.surplus_copy(key, now, copies, [&](engine_slot h) {
      return replicas.contains({key, h});
    });
    if (worst) {
      --drop_room;
      to_drop.emplace_back(key, *worst);
    }
  };
  if (station->home) {
    for (auto& [id, m] : catalog) {
      for (auto& s : m.segments) {
        consider({id, s.index});
      }
    }
  } else {
    tables.for_each_segment(consider);
  }
  if (under != under_replicated) {
    if (under > 0 && under_replicated == 0) {
      logger->warn("director {}: {} segments have fewer than {} copies in rotation; repairing",
                   station->name.str(), under, want);
    } else if (under == 0) {
      logger->info("director {}: every segment has its {} copies again", station->name.str(), want);
    }
    under_replicated = under;
  }
  // Spawned after the scan: a coroutine may start at once and change the tables being scanned.
  for (auto& key : to_repair) {
    repairing.insert(key);
    tasks.spawn(repair(key));
  }
  for (auto& [key, engine] : to_drop) {
    tasks.spawn(drop_copy(key, engine, false));
  }
}

// One more copy of `key` in the station: from the least loaded engine of ours that holds it, else
// from the cheapest other station; to the engine with the most room and the least load that can
// take it without evicting anything.
asio::awaitable<void> director_daemon::impl::repair(segment_key key) {
  auto now = steady::now();
  std::vector<std::string> sources;
  for (engine_slot h : tables.sources_by_load(key, now)) {
    sources.push_back(segment_url(h, key));
  }
  auto target = tables.choose_receiver(key, segment_size(key), now, std::nullopt, true);
  result<engine_slot> got = make_error(errc::unavailable, "no engine in rotation has room for it");
  if (target && !sources.empty()) {
    got = co_await order_fetch(*target, key, std::move(sources), true);
  } else if (target && grid.registry) {
    got = co_await copy_from_other_station_shared(key, true);
  } else if (target) {
    got = make_error(errc::unavailable, "no engine in rotation holds it, and there is no registry");
  }
  if (got) {
    repairs_ok->inc();
    logger->debug("director {}: {} copied to engine {} (placement)", station->name.str(), key.str(),
                  tables.engine(*got).name.str());
  } else {
    repairs_failed->inc();
    logger->debug("director {}: repair of {} failed: {}", station->name.str(), key.str(),
                  got.err().detail);
  }
  repairing.erase(key);
}

asio::awaitable<void> director_daemon::impl::drop_copy(segment_key key, engine_slot engine,
                                                       bool replica) {
  dropping.insert(key);
  auto res = co_await client->request(http::verb::delete_, segment_url(engine, key) + "?if_idle=1");
  if (res && res->status == 204) {
    tables.note_removal(engine, key);
    (replica ? replicas_dropped : surplus_dropped)->inc();
    logger->info("director {}: {} at engine {} dropped: {}", station->name.str(), key.str(),
                 tables.engine(engine).name.str(),
                 replica ? "a replica made for load, idle" : "a copy beyond the placement");
  } else if (res && res->status == 409) {
    if (replica) {
      replicas.try_emplace({key, engine}, steady::now());  // streamed: judged again later
      replicas_changed();
    }
  } else if (!res || res->status != 404) {
    logger->warn("director {}: deleting {} at engine {} failed: {}", station->name.str(), key.str(),
                 tables.engine(engine).name.str(),
                 res ? std::to_string(res->status) : res.err().detail);
  }
  dropping.erase(key);
}

}  // namespace vodgrid::director
