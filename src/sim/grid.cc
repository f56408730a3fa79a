// The simulated grid: console requests, copies between stations, placement, replicas of hot
// segments and evictions, each decided by the function the daemons call (see grid.h).
#include "sim/grid.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>

#include <fmt/format.h>

#include "engine/decisions.h"

namespace vodgrid::sim {

namespace {

director::steady::time_point at(double seconds) {
  return director::steady::time_point(std::chrono::duration_cast<director::steady::duration>(
      std::chrono::duration<double>(seconds)));
}

template <class A, class B>
double distance2(const A& a, const B& b) {
  double dx = a.x_km - b.x_km, dy = a.y_km - b.y_km;
  return dx * dx + dy * dy;
}

constexpr uint32_t no_engine = UINT32_MAX;
// Holders past this many are found through the per-station orders rather than scanned.
constexpr size_t scan_limit = 256;

}  // namespace

grid_sim::grid_sim(const options& o, const world& w)
    : o_(o),
      w_(w),
      bytes_(static_cast<uint64_t>(o.segment_seconds * static_cast<double>(o.bits_per_second) / 8)),
      packager_bytes_(static_cast<uint64_t>(o.packager_segment_seconds *
                                            static_cast<double>(o.bits_per_second) / 8)),
      lookups_per_segment_(static_cast<uint64_t>(
          std::max(1.0, std::round(o.segment_seconds / o.packager_segment_seconds)))) {
  stations_.resize(w.stations.size());
  inputs_.resize(w.stations.size());
  places_.resize(w.stations.size());
  any_program_ = *program_id::parse("p");
  for (size_t i = 0; i < stations_.size(); ++i) {
    auto& s = stations_[i];
    auto& spec = w.stations[i];
    places_[i] = {spec.x_km, spec.y_km, spec.uplink_bits_per_second};
    s.spec = &spec;
    auto& in = inputs_[i];
    in.name = spec.name;
    in.home = spec.home;
    in.x_km = spec.x_km;
    in.y_km = spec.y_km;
    in.uplink_bits_per_second = static_cast<uint64_t>(spec.uplink_bits_per_second);
    s.first_engine = static_cast<uint32_t>(engines_.size());
    for (uint32_t e = 0; e < o.engines; ++e) {
      sim_engine en;
      en.station = static_cast<uint16_t>(i);
      en.entry.name = *engine_id::parse(fmt::format("{}-{}", spec.name, e + 1));
      en.entry.epoch = 1;
      en.entry.sent = no_consoles_sent_;
      en.entry.load.max_streams = o.max_streams;
      // The home holds every program whole: it is not held to a budget here.
      en.entry.load.max_disk_bytes = spec.home ? 0 : o.max_disk_bytes;
      en.entry.load.total_bytes =
          spec.home ? UINT64_MAX / 4 : o.max_disk_bytes + o.max_disk_bytes / 4;
      en.entry.load.free_bytes = en.entry.load.total_bytes;
      engines_.push_back(std::move(en));
    }
  }
  holders_.resize(w.segment_count);
  sessions_.resize(w.sessions.size());
  for (size_t i = 0; i < w.sessions.size(); ++i) {
    auto& spec = w.sessions[i];
    auto& s = sessions_[i];
    s.first_segment = w.first_segment[spec.program];
    s.station = spec.station;
    s.segments = spec.segments;
  }
  stamp_.assign(stations_.size(), 0);
  uint16_t n = static_cast<uint16_t>(stations_.size());
  nearest_.resize(n);
  for (uint16_t i = 0; i < n; ++i) {
    auto& list = nearest_[i];
    for (uint16_t j = 0; j < n; ++j) {
      if (j != i) {
        list.push_back(j);
      }
    }
    auto& me = w.stations[i];
    std::stable_sort(list.begin(), list.end(), [&](uint16_t a, uint16_t b) {
      return distance2(w.stations[a], me) < distance2(w.stations[b], me);
    });
  }
  for (uint16_t i = 1; i < n; ++i) {
    best_connected_.push_back(i);
  }
  std::stable_sort(best_connected_.begin(), best_connected_.end(), [&](uint16_t a, uint16_t b) {
    return w.stations[a].uplink_bits_per_second > w.stations[b].uplink_bits_per_second;
  });
  by_uplink_rank_.resize(n);
  for (uint16_t i = 0; i < n; ++i) {
    by_uplink_rank_[i] = i;
  }
  std::stable_sort(by_uplink_rank_.begin(), by_uplink_rank_.end(), [&](uint16_t a, uint16_t b) {
    return w.stations[a].uplink_bits_per_second > w.stations[b].uplink_bits_per_second;
  });
  uplink_rank_.resize(n);
  for (uint16_t k = 0; k < n; ++k) {
    uplink_rank_[by_uplink_rank_[k]] = k;
  }
  if (o.preposition) {
    prefetch_total_ =
        uint64_t{std::min(o.prepositioned_programs, o.programs)} * o.prefetch_segments;
  }
}

bool grid_sim::holds_whole(uint16_t station, uint32_t seg) const {
  return holding_of(station, seg).whole != 0;
}

grid_sim::dense_test grid_sim::whole_holders(uint32_t seg) const {
  return dense_test{dense_holders_[holders_[seg].dense - 1].data()};
}

holding grid_sim::holding_of(uint16_t station, uint32_t seg) const {
  auto& s = stations_[station];
  if (s.spec->home) {
    return {static_cast<uint16_t>((1u << o_.engines) - 1), 0, no_copies};
  }
  auto it = s.holds.find(seg);
  return it == s.holds.end() ? holding{} : it->second;
}

// --- Console requests -------------------------------------------------------------------------

void grid_sim::arrive(uint32_t session, double now) {
  ++sessions_now_;
  out_.peak_sessions = std::max(out_.peak_sessions, sessions_now_);
  auto& s = sessions_[session];
  s.watched = 0;
  auto t = serve(session, s.first_segment, now);
  if (t == tier::refused) {
    --sessions_now_;
    return;
  }
  segment_end_at(session, now + o_.segment_seconds);
}

// In the queue of segment ends, in event order: at its back but for a tie of times.
void grid_sim::segment_end_at(uint32_t session, double at) {
  event ev{at, session, false};
  auto it = ends_.end();
  while (it != ends_.begin() && *std::prev(it) > ev) {
    --it;
  }
  ends_.insert(it, ev);
}

void grid_sim::segment_end(uint32_t session, double now) {
  auto& s = sessions_[session];
  uint32_t e = s.engine;
  if (e != no_engine) {
    auto& en = engines_[e];
    --en.entry.load.active_streams;
    auto& st = stations_[en.station];
    --st.streams;
    if (s.copy != no_copies) {
      --st.copies[s.copy].streams;  // streamed, so not evicted: still the same copy
    }
    sync_load(e);
    s.engine = no_engine;
    s.copy = no_copies;
  }
  if (++s.watched >= s.segments) {
    --sessions_now_;
    return;
  }
  auto t = serve(session, s.first_segment + s.watched, now);
  if (t == tier::refused) {
    --sessions_now_;
    return;
  }
  segment_end_at(session, now + o_.segment_seconds);
}

// What the director does with a console's request for `seg` (director/playback.cc, segment()):
// an engine of the station by status and load; a replica when every holder is near its limits;
// else a copy from the cheapest other station into an engine of ours that serves it as it
// arrives, or, when none of ours can take it, an engine of that station.
grid_sim::tier grid_sim::serve(uint32_t session, uint32_t seg, double now) {
  uint16_t st = sessions_[session].station;
  auto h = holding_of(st, seg);
  tier result = tier::refused;
  if (h.whole | h.filling) {
    auto e = choose_console_engine(st, seg, h.whole);
    if (!e && !h.whole) {
      e = choose_console_engine(st, seg, h.filling);
    }
    if (e) {
      // Claim 19 (choose_for_console): the chosen engine near its limits and so every other
      // engine serving the segment: a replica before consoles have to wait for it.
      auto near = [&](uint32_t g) {
        return director::near_limits(engines_[g].entry, o_.hot_load_percent);
      };
      bool hot = near(*e);
      for (uint32_t b = 0; hot && b < o_.engines; ++b) {
        hot = !((h.whole | h.filling) >> b & 1) || near(stations_[st].first_engine + b);
      }
      if (hot && h.whole && local_copy(st, seg, false, now)) {
        ++out_.replicas;
      }
      attach(session, *e, seg, now);
      ++out_.requests.engine;
      return tier::engine;
    }
    // Every holder at its limits (wait_for_replica): another engine receives a replica.
    if (h.whole && local_copy(st, seg, false, now)) {
      ++out_.replicas;
      if (auto r = choose_console_engine(st, seg, holding_of(st, seg).whole)) {
        attach(session, *r, seg, now);
        ++out_.requests.station;
        return tier::station;
      }
    }
  }
  // The fall back (fall_back): a copy from the cheapest other station.
  auto src = pick_source(st, seg, now);
  if (src) {
    result = *src == 0 ? tier::home : tier::other;
    auto recv = choose_receiver(st, seg, false);
    if (recv && make_room(*recv, now) && start_copy(st, seg, *recv, *src, false, now)) {
      attach(session, *recv, seg, now);
    } else if (auto there = choose_console_engine(*src, seg, holding_of(*src, seg).whole)) {
      // No engine of ours can take it: an engine of the source streams to the console.
      attach(session, *there, seg, now);
      out_.bytes_between_stations += bytes_;
      out_.bytes_from_home += *src == 0 ? bytes_ : 0;
      out_.bytes_over_slow_uplinks +=
          stations_[*src].spec->uplink_bits_per_second < o_.slow_uplink_bits_per_second ? bytes_
                                                                                        : 0;
    } else {
      result = tier::refused;
    }
  }
  switch (result) {
    case tier::home:
      ++out_.requests.home;
      break;
    case tier::other:
      ++out_.requests.other_station;
      break;
    default:
      ++out_.requests.refused;
      break;
  }
  return result;
}

// director::choose_engine among the station's engines in `mask`; its global index.
std::optional<uint32_t> grid_sim::choose_console_engine(uint16_t station, uint32_t seg,
                                                        uint16_t mask) {
  (void)seg;
  auto& s = stations_[station];
  candidates_.clear();
  for (uint32_t b = 0; b < o_.engines; ++b) {
    if (mask >> b & 1) {
      auto& l = engines_[s.first_engine + b].entry.load;
      candidates_.push_back({director::engine_slot{b}, true, l.active_streams, l.max_streams,
                             l.bytes_per_second, l.max_bytes_per_second});
    }
  }
  auto chosen = director::choose_engine(candidates_, std::nullopt, s.rotation++);
  if (!chosen) {
    return std::nullopt;
  }
  return s.first_engine + director::index_of(*chosen);
}

void grid_sim::attach(uint32_t session, uint32_t engine, uint32_t seg, double now) {
  auto& en = engines_[engine];
  auto& st = stations_[en.station];
  ++en.entry.load.active_streams;
  en.peak_streams = std::max(en.peak_streams, en.entry.load.active_streams);
  ++st.streams;
  st.peak_streams = std::max(st.peak_streams, st.streams);
  uint32_t place = no_copies;
  if (!st.spec->home) {
    // The caller has just looked the holding up: this look-up finds it in the cache.
    auto h = holding_of(en.station, seg);
    uint32_t bit = engine - st.first_engine;
    if (((h.whole | h.filling) >> bit & 1) != 0) {
      place = h.copies + bit;
      auto& c = st.copies[place];
      ++c.streams;
      if (c.last_used != now) {
        c.last_used = now;
        if ((h.whole >> bit & 1) != 0) {
          used(engine, seg, now);
        }
      }
    }
  }
  sessions_[session].engine = engine;
  sessions_[session].copy = place;
  sync_load(engine);
}

// --- Copies -----------------------------------------------------------------------------------

// station_tables::choose_receiver over the station's engines: up, neither holding nor receiving
// the segment, under its stream limit; one with room first, then director::rank_receiver's score,
// then the fewer segments.
std::optional<uint32_t> grid_sim::choose_receiver(uint16_t station, uint32_t seg, bool need_room) {
  auto& s = stations_[station];
  auto h = holding_of(station, seg);
  std::optional<uint32_t> best;
  director::receiver_rank best_rank;
  size_t best_count = 0;
  for (uint32_t b = 0; b < o_.engines; ++b) {
    auto& e = engines_[s.first_engine + b];
    if (((h.whole | h.filling) >> b & 1) ||
        e.entry.load.active_streams >= e.entry.load.max_streams) {
      continue;
    }
    auto r = director::rank_receiver(e.entry, bytes_);
    if (need_room && !r.room) {
      continue;
    }
    size_t count = e.held;
    bool better =
        !best || (r.room && !best_rank.room) ||
        (r.room == best_rank.room &&
         (r.score < best_rank.score || (r.score == best_rank.score && count < best_count)));
    if (better) {
      best = s.first_engine + b;
      best_rank = r;
      best_count = count;
    }
  }
  return best;
}

// The engine's make_room (engine/eviction.cc): bytes_over_budget, the least recently used copies
// offered by eviction_offer, the director allowing those held elsewhere. The engine also evicts
// after its heartbeats, in the quiet; here that is room for a twentieth of its budget more.
bool grid_sim::make_room(uint32_t engine, double now) {
  auto& en = engines_[engine];
  auto& l = en.entry.load;
  auto space = [&] {
    return engine::disk_space{l.used_bytes, l.total_bytes - l.used_bytes, l.total_bytes};
  };
  if (engine::bytes_over_budget(space(), bytes_, l.max_disk_bytes) == 0) {
    return true;
  }
  uint64_t over =
      engine::bytes_over_budget(space(), bytes_ + l.max_disk_bytes / 20, l.max_disk_bytes);
  gather_eviction_candidates(engine, over);
  auto offer = engine::eviction_offer(std::move(eviction_scratch_), over);
  uint64_t freed = 0;
  uint16_t st = en.station;
  uint32_t bit = engine - stations_[st].first_engine;
  for (auto& key : offer) {
    if (freed >= over) {
      break;
    }
    uint32_t seg = key.index.v;
    // The director allows it when another engine of ours holds it whole, else asks the registry
    // whether another station does (the home always does).
    if ((holding_of(st, seg).whole & ~(1u << bit)) == 0) {
      registry_request(now, lookups_per_segment_);
    }
    evict(engine, seg, now);
    freed += bytes_;
  }
  return engine::bytes_over_budget(space(), bytes_, l.max_disk_bytes) == 0;
}

// eviction_offer's candidates, into eviction_scratch_: the engine's whole copies, oldest use first,
// until those not being streamed come to four times `over` and 16 MiB more. eviction_offer offers
// the oldest of those not being streamed, about twice `over` (and 16 MiB): so its offer is the one
// it would make of every copy held but for the order among copies of one last use, whose order
// its sort leaves open anyway. Reading the few oldest from the engine's uses rather than every copy
// it holds (thousands, sorted at each pass) is what keeps eviction cheap at this scale.
//
// Each candidate's key names the simulation's global segment number in its index, under one
// program name: eviction_offer orders by last use alone and returns the keys it offers, so the
// offer is the same, without looking up a program and copying its name per candidate.
void grid_sim::gather_eviction_candidates(uint32_t engine, uint64_t over) {
  auto& en = engines_[engine];
  uint64_t want = 4 * over + (16u << 20);
  uint64_t gathered = 0;
  uint32_t pass = ++en.passes;
  eviction_scratch_.clear();
  for (auto* q : {&en.never_used, &en.uses}) {
    // The uses walked past their time (or repeated) go as they are met: each is walked once.
    size_t kept = 0, next = 0;
    for (; next < q->size() && gathered < want; ++next) {
      auto [t, seg] = (*q)[next];
      auto* c = whole_copy(engine, seg);
      if (!c || c->last_used != t || c->gathered == pass) {
        continue;  // gone (or gone and arriving again), used since, or met already
      }
      c->gathered = pass;
      (*q)[kept++] = (*q)[next];
      bool streaming = c->streams > 0;
      eviction_scratch_.push_back(
          {segment_key{any_program_, segment_index{seg}}, bytes_, at(t), streaming});
      gathered += streaming ? 0 : bytes_;
    }
    q->erase(q->begin() + static_cast<std::ptrdiff_t>(kept),
             q->begin() + static_cast<std::ptrdiff_t>(next));
  }
}

// A whole copy of `seg` on the engine last used at `when` (0: never asked for): used now, or
// just arrived (then its last use, when a console was served as it arrived, may be older than
// others' and goes in its place). Copies still arriving are in neither queue: an engine filling
// up with copies from slow links would otherwise be walked through them at every pass. The uses
// past their time are dropped once they outnumber the copies held twice over.
void grid_sim::used(uint32_t engine, uint32_t seg, double when) {
  auto& en = engines_[engine];
  auto& q = when == 0 ? en.never_used : en.uses;
  if (q.empty() || q.back().first <= when) {
    q.push_back({when, seg});
  } else {
    // After every use up to `when`: std::upper_bound's place, searched from the back in doubling
    // steps, since an arriving copy's last use is minutes old, near the back of thousands.
    size_t hi = q.size() - 1;  // q[hi] is later than `when`
    size_t lo = 0;
    for (size_t step = 1; hi > 0; step *= 2) {
      size_t probe = hi > step ? hi - step : 0;
      if (q[probe].first <= when) {
        lo = probe + 1;
        break;
      }
      hi = probe;
    }
    auto first = q.begin() + static_cast<std::ptrdiff_t>(lo);
    auto last = q.begin() + static_cast<std::ptrdiff_t>(hi);
    q.insert(
        std::upper_bound(first, last, when, [](double t, const use& u) { return t < u.first; }),
        use{when, seg});
  }
  if (q.size() <= 2 * size_t{en.held} + 1024) {
    return;
  }
  uint32_t pass = ++en.passes;
  std::erase_if(q, [&](const use& u) {
    auto* c = whole_copy(engine, u.second);
    if (!c || c->last_used != u.first || c->gathered == pass) {
      return true;
    }
    c->gathered = pass;
    return false;
  });
}

void grid_sim::evict(uint32_t engine, uint32_t seg, double now) {
  auto& en = engines_[engine];
  en.entry.load.used_bytes -= bytes_;
  en.entry.load.free_bytes += bytes_;
  ++out_.evictions;
  set_holding(en.station, seg, engine, true, false);
  location_report(en.station, now);
}

// The registry's candidates for a lookup, into scratch_ids_: every holder (the home last) when
// there are at most `candidates`; else the nearest half and the best connected half.
void grid_sim::gather_candidates(uint16_t seeker, uint32_t seg) {
  scratch_ids_.clear();
  ++stamp_now_;
  auto add = [&](uint16_t i) {
    if (i != seeker && stamp_[i] != stamp_now_) {
      stamp_[i] = stamp_now_;
      scratch_ids_.push_back(i);
    }
  };
  auto& hs = holders_[seg].stations;
  size_t half = o_.candidates / 2;
  if (hs.size() + 1 <= o_.candidates) {
    for (uint16_t h : hs) {
      add(h);
    }
  } else if (hs.size() <= scan_limit) {
    auto& by = by_scratch_;
    by.clear();
    auto me = places_[seeker];
    for (uint16_t h : hs) {
      by.emplace_back(distance2(places_[h], me), h);
    }
    // The `half` smallest in order: (key, station) pairs are distinct, so any way of finding them
    // gives the same list; a selection and a sort of the few is cheaper than a partial sort.
    auto smallest = [&] {
      auto mid = by.begin() + static_cast<std::ptrdiff_t>(half);
      std::nth_element(by.begin(), mid, by.end());
      std::sort(by.begin(), mid);
    };
    smallest();
    for (size_t k = 0; k < half; ++k) {
      add(by[k].second);
    }
    // The best connected: the smallest places in the order by uplink, the same order as
    // (-uplink, station) pairs.
    auto& ranks = rank_scratch_;
    ranks.clear();
    for (uint16_t h : hs) {
      ranks.push_back(uplink_rank_[h]);
    }
    auto mid = ranks.begin() + static_cast<std::ptrdiff_t>(half);
    std::nth_element(ranks.begin(), mid, ranks.end());
    std::sort(ranks.begin(), mid);
    for (size_t k = 0; k < half; ++k) {
      add(by_uplink_rank_[ranks[k]]);
    }
  } else {
    auto whole = whole_holders(seg);
    size_t n = 0;
    for (uint16_t i : nearest_[seeker]) {
      if (i != 0 && whole(i)) {
        add(i);
        if (++n == half) {
          break;
        }
      }
    }
    n = 0;
    for (uint16_t i : best_connected_) {
      if (whole(i)) {
        add(i);
        if (++n == half) {
          break;
        }
      }
    }
  }
  add(0);
}

// The station a copy of `seg` to `seeker` comes from: the first the registry's ranking names
// (registry/lookups.cc and cost_model::rank), or the nearest holder for the baseline.
std::optional<uint16_t> grid_sim::pick_source(uint16_t seeker, uint32_t seg, double now) {
  registry_request(now, lookups_per_segment_);  // the director asks per packager segment
  if (o_.sources == source_policy::nearest) {
    auto me = places_[seeker];
    auto& hs = holders_[seg].stations;
    std::optional<uint16_t> best;
    if (hs.size() <= scan_limit) {
      double best_d = distance2(places_[0], me);
      best = seeker != 0 ? std::optional<uint16_t>(0) : std::nullopt;
      for (uint16_t h : hs) {
        double d = distance2(places_[h], me);
        if (h != seeker && (!best || d < best_d)) {
          best = h;
          best_d = d;
        }
      }
    } else {
      auto whole = whole_holders(seg);
      for (uint16_t i : nearest_[seeker]) {
        if (whole(i)) {
          best = i;
          break;
        }
      }
    }
    return best;
  }
  gather_candidates(seeker, seg);
  auto best = o_.costs.cheapest(
      scratch_ids_.size(),
      [&](size_t k) -> const registry::station_inputs& { return inputs_[scratch_ids_[k]]; },
      inputs_[seeker], packager_bytes_);
  if (!best) {
    return std::nullopt;
  }
  return scratch_ids_[best->first];
}

// A copy from station `source` into engine `engine` of `seeker`: at the source's uplink shared
// with the copies it is already sending (and the seeker's with those it receives), fixed at the
// start, plus the round trips the cost model counts.
bool grid_sim::start_copy(uint16_t seeker, uint32_t seg, uint32_t engine, uint16_t source,
                          bool prefetch, double now) {
  auto& src = stations_[source];
  auto& dst = stations_[seeker];
  // Links are taken as symmetric: the seeker's link also bounds what it receives.
  double rate = std::min(src.spec->uplink_bits_per_second / (src.copies_out + 1),
                         dst.spec->uplink_bits_per_second / (dst.copies_in + 1));
  auto b = o_.costs.cost(inputs_[source], inputs_[seeker], packager_bytes_);
  double seconds = static_cast<double>(bytes_) * 8 / rate + b.latency_seconds;
  uint32_t id;
  if (!free_copies_.empty()) {
    id = free_copies_.back();
    free_copies_.pop_back();
  } else {
    id = static_cast<uint32_t>(copies_.size());
    copies_.emplace_back();
  }
  copies_[id] = {seg, source, seeker, engine, rate, now, prefetch};
  ++src.copies_out;
  ++dst.copies_in;
  inputs_[source].sending_bits_per_second += static_cast<uint64_t>(rate);
  auto& en = engines_[engine];
  set_holding(seeker, seg, engine, false, true)->last_used = now;
  en.entry.load.used_bytes += bytes_;
  en.entry.load.free_bytes -= bytes_;
  location_report(seeker, now);
  ++out_.copies_between_stations;
  out_.bytes_between_stations += bytes_;
  out_.bytes_from_home += source == 0 ? bytes_ : 0;
  out_.bytes_over_slow_uplinks +=
      src.spec->uplink_bits_per_second < o_.slow_uplink_bits_per_second ? bytes_ : 0;
  copy_seconds_ += seconds;
  events_.push({now + seconds, id, true});
  return true;
}

void grid_sim::copy_done(uint32_t id, double now) {
  auto c = copies_[id];
  free_copies_.push_back(id);
  auto& src = stations_[c.from];
  --src.copies_out;
  --stations_[c.to].copies_in;
  auto rate = static_cast<uint64_t>(c.bits_per_second);
  auto& in = inputs_[c.from];
  in.sending_bits_per_second -= std::min(rate, in.sending_bits_per_second);
  // The measured throughput of copies from it (the directors' copy samples), smoothed.
  double& measured = in.copy_bits_per_second;
  measured = measured == 0 ? c.bits_per_second : 0.8 * measured + 0.2 * c.bits_per_second;
  auto& arrived = arrived_whole(c.to, c.segment, c.engine);
  used(c.engine, c.segment, arrived.last_used);
  location_report(c.to, now);
  place(c.to, c.segment, now);
  if (c.prefetch) {
    out_.prefetch_done_seconds = now;
    --stations_[c.to].prefetch_workers;
    prefetch(c.to, now);
  }
}

// A copy between two engines of the station (a replica for load, or placement): from a whole copy
// to the receiver choose_receiver names. Over the station's own network, which the model treats
// as instant.
bool grid_sim::local_copy(uint16_t station, uint32_t seg, bool need_room, double now) {
  if (!holds_whole(station, seg)) {
    return false;
  }
  auto recv = choose_receiver(station, seg, need_room);
  if (!recv || (!need_room && !make_room(*recv, now))) {
    return false;
  }
  auto& en = engines_[*recv];
  set_holding(station, seg, *recv, true, true);
  used(*recv, seg, 0);
  en.entry.load.used_bytes += bytes_;
  en.entry.load.free_bytes -= bytes_;
  location_report(station, now);
  out_.bytes_within_stations += bytes_;
  return true;
}

// director/placement.cc: every segment the station holds on `copies` engines in rotation (no more
// engines than it has), copied from within the station to engines with room.
void grid_sim::place(uint16_t station, uint32_t seg, double now) {
  auto h = holding_of(station, seg);
  size_t want = std::min(o_.copies, o_.engines);
  size_t have = static_cast<size_t>(std::popcount(static_cast<uint32_t>(h.whole | h.filling)));
  while (have < want && local_copy(station, seg, true, now)) {
    ++have;
  }
}

// director/copies.cc distribute() and prefetch_worker(): the first `prefetch` segments of each
// distributed program, in the distribution's order, by `parallel_copies` workers, each a copy
// from the cheapest other station; a segment the station holds or receives is skipped.
void grid_sim::prefetch(uint16_t station, double now) {
  auto& s = stations_[station];
  if (s.spec->home) {
    return;
  }
  while (s.prefetch_workers < o_.parallel_copies && s.prefetch_next < prefetch_total_) {
    uint32_t j = s.prefetch_next++;
    uint32_t p = j / o_.prefetch_segments;
    uint32_t i = j % o_.prefetch_segments;
    if (i >= w_.program_segments[p]) {
      continue;
    }
    uint32_t seg = segment_of(p, i);
    auto h = holding_of(station, seg);
    if (h.whole | h.filling) {
      continue;
    }
    auto recv = choose_receiver(station, seg, false);
    if (!recv || !make_room(*recv, now)) {
      continue;
    }
    auto src = pick_source(station, seg, now);
    if (src && start_copy(station, seg, *recv, *src, true, now)) {
      ++s.prefetch_workers;
      ++out_.prefetch_copies;
    }
  }
}

// --- Bookkeeping ------------------------------------------------------------------------------

held_copy* grid_sim::set_holding(uint16_t station, uint32_t seg, uint32_t engine, bool whole,
                                 bool on) {
  auto& s = stations_[station];
  uint32_t b = engine - s.first_engine;
  auto bit = static_cast<uint16_t>(1u << b);
  auto& h = s.holds[seg];
  if (h.copies == no_copies) {
    // A place for the segment's copies: one left by a segment no longer held, else a new one.
    if (!s.free_copies.empty()) {
      h.copies = s.free_copies.back();
      s.free_copies.pop_back();
    } else {
      h.copies = static_cast<uint32_t>(s.copies.size());
      s.copies.resize(s.copies.size() + o_.engines);
    }
  }
  bool had = h.whole != 0;
  bool held_before = ((h.whole | h.filling) & bit) != 0;
  auto& mask = whole ? h.whole : h.filling;
  mask = on ? static_cast<uint16_t>(mask | bit) : static_cast<uint16_t>(mask & ~bit);
  bool has = h.whole != 0;
  bool held_after = ((h.whole | h.filling) & bit) != 0;
  auto& count = engines_[engine].held;
  count = count + (held_after ? 1 : 0) - (held_before ? 1 : 0);
  held_copy* c = nullptr;
  if (on) {
    c = &s.copies[h.copies + b];
    *c = held_copy{};
  }
  if ((h.whole | h.filling) == 0) {
    s.free_copies.push_back(h.copies);
    s.holds.erase(seg);
  }
  if (had != has) {
    whole_holder_changed(station, seg, has);
  }
  return c;
}

// set_holding(filling, off) then (whole, on), in one look-up: the engine's copy has arrived. Its
// held_copy as it was while it arrived.
held_copy& grid_sim::arrived_whole(uint16_t station, uint32_t seg, uint32_t engine) {
  auto& s = stations_[station];
  uint32_t b = engine - s.first_engine;
  auto bit = static_cast<uint16_t>(1u << b);
  auto& h = s.holds[seg];
  bool had = h.whole != 0;
  h.filling = static_cast<uint16_t>(h.filling & ~bit);
  h.whole = static_cast<uint16_t>(h.whole | bit);
  auto& c = s.copies[h.copies + b];
  if (!had) {
    whole_holder_changed(station, seg, true);
  }
  return c;
}

// The engine's whole copy of `seg`, or null (none, or still arriving).
held_copy* grid_sim::whole_copy(uint32_t engine, uint32_t seg) {
  auto& en = engines_[engine];
  auto& s = stations_[en.station];
  uint32_t b = engine - s.first_engine;
  auto it = s.holds.find(seg);
  if (it == s.holds.end() || (it->second.whole >> b & 1) == 0) {
    return nullptr;
  }
  return &s.copies[it->second.copies + b];
}

// The registry's holders: stations with a whole copy.
void grid_sim::whole_holder_changed(uint16_t station, uint32_t seg, bool has) {
  auto& sh = holders_[seg];
  auto& hs = sh.stations;
  if (has) {
    hs.push_back(station);
  } else {
    std::erase(hs, station);
  }
  if (sh.dense != 0) {
    auto& word = dense_holders_[sh.dense - 1][station >> 6];
    uint64_t b = uint64_t{1} << (station & 63);
    word = has ? word | b : word & ~b;
  } else if (hs.size() > scan_limit) {
    auto& bits = dense_holders_.emplace_back((stations_.size() + 63) / 64, 0);
    sh.dense = static_cast<uint32_t>(dense_holders_.size());
    for (uint16_t h : hs) {
      bits[h >> 6] |= uint64_t{1} << (h & 63);
    }
  }
}

// The registry link reports changes every 250 ms: one request per station per slot with changes.
void grid_sim::location_report(uint16_t station, double now) {
  auto slot = static_cast<int64_t>(now * 4);
  auto& s = stations_[station];
  if (slot != s.last_report_slot) {
    s.last_report_slot = slot;
    registry_request(now);
  }
}

void grid_sim::registry_request(double now, uint64_t n) {
  auto second = static_cast<size_t>(std::max(now, 0.0));
  if (second >= registry_per_second_.size()) {
    registry_per_second_.resize(second + 3600, 0);
  }
  registry_per_second_[second] += static_cast<uint32_t>(n);
  out_.registry_requests += n;
}

void grid_sim::sync_load(uint32_t engine) {
  auto& en = engines_[engine];
  en.entry.load.bytes_per_second = uint64_t{en.entry.load.active_streams} * o_.bits_per_second / 8;
  auto& st = stations_[en.station];
  inputs_[en.station].load =
      static_cast<double>(st.streams) / (static_cast<double>(o_.engines) * o_.max_streams);
}

outcome grid_sim::run() {
  for (uint16_t i = 0; i < stations_.size(); ++i) {
    prefetch(i, 0);
  }
  size_t next = 0;
  auto& sessions = w_.sessions;
  while (next < sessions.size() || !events_.empty() || !ends_.empty()) {
    // The earliest event: of the segment ends' front and the copy ends' top.
    bool end_first = !ends_.empty() && (events_.empty() || events_.top() > ends_.front());
    const event* top = end_first ? &ends_.front() : events_.empty() ? nullptr : &events_.top();
    if (next < sessions.size() && (!top || sessions[next].arrival <= top->at)) {
      arrive(static_cast<uint32_t>(next), sessions[next].arrival);
      ++next;
      continue;
    }
    auto ev = *top;
    if (end_first) {
      ends_.pop_front();
    } else {
      events_.pop();
    }
    if (ev.copy) {
      copy_done(ev.id, ev.at);
    } else {
      segment_end(ev.id, ev.at);
    }
  }
  out_.sessions = sessions.size();
  out_.mean_copy_seconds = out_.copies_between_stations
                               ? copy_seconds_ / static_cast<double>(out_.copies_between_stations)
                               : 0;
  out_.registry_mean_per_second = static_cast<double>(out_.registry_requests) / 86400;
  for (auto v : registry_per_second_) {
    out_.registry_peak_per_second = std::max<uint64_t>(out_.registry_peak_per_second, v);
  }
  const sim_engine* busiest = nullptr;
  for (auto& e : engines_) {
    if (!busiest || e.peak_streams > busiest->peak_streams) {
      busiest = &e;
    }
  }
  if (busiest) {
    out_.busiest_engine = busiest->entry.name.str();
    out_.busiest_engine_streams = busiest->peak_streams;
  }
  std::vector<uint32_t> peaks;
  double disk_sum = 0;
  for (auto& s : stations_) {
    if (s.spec->home) {
      continue;
    }
    peaks.push_back(s.peak_streams);
    double disk = 0;
    for (uint32_t b = 0; b < o_.engines; ++b) {
      disk += static_cast<double>(engines_[s.first_engine + b].entry.load.used_bytes);
    }
    disk_sum += disk;
    out_.max_station_disk_bytes = std::max(out_.max_station_disk_bytes, disk);
  }
  if (!peaks.empty()) {
    std::sort(peaks.begin(), peaks.end());
    out_.busiest_station_streams = peaks.back();
    out_.p99_station_streams = peaks[std::min(peaks.size() - 1, peaks.size() * 99 / 100)];
    out_.mean_station_disk_bytes = disk_sum / static_cast<double>(peaks.size());
  }
  return out_;
}

}  // namespace vodgrid::sim
