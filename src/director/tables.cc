// The station tables (tables.h) and the pure choices made on them: an engine for a console or for
// another station, a receiver for a copy, the spread of a new program, the copy to drop.
#include "director/tables.h"

#include <algorithm>

namespace vodgrid::director {

namespace {

bool qualifies(const candidate& c) {
  if (!c.up || c.max_streams == 0 || c.streams >= c.max_streams) {
    return false;
  }
  return c.max_bytes_per_second == 0 || c.bytes_per_second < c.max_bytes_per_second;
}

}  // namespace

double load_of(const candidate& c) {
  double l = static_cast<double>(c.streams) / std::max<uint32_t>(c.max_streams, 1);
  if (c.max_bytes_per_second) {
    l = std::max(
        l, static_cast<double>(c.bytes_per_second) / static_cast<double>(c.max_bytes_per_second));
  }
  return l;
}

std::optional<engine_slot> choose_engine(const std::vector<candidate>& holders,
                                         std::optional<engine_slot> preferred, uint64_t rotation) {
  std::optional<engine_slot> best;
  double best_load = 0;
  size_t n = holders.size();
  for (size_t k = 0; k < n; ++k) {
    const candidate& c = holders[(k + rotation) % n];
    if (!qualifies(c)) {
      continue;
    }
    double l = load_of(c);
    if (!best || l < best_load) {
      best = c.engine;
      best_load = l;
    }
  }
  if (best && preferred) {
    for (auto& c : holders) {
      if (c.engine == *preferred && qualifies(c) &&
          load_of(c) <= best_load + 1.0 / std::max<uint32_t>(c.max_streams, 1)) {
        return c.engine;
      }
    }
  }
  return best;
}

bool near_limits(const engine_entry& e, uint32_t percent) {
  return (e.load.active_streams + e.assigned) * 100ull >= uint64_t{e.load.max_streams} * percent ||
         (e.load.max_bytes_per_second > 0 &&
          e.load.bytes_per_second * 100 >= e.load.max_bytes_per_second * percent);
}

receiver_rank rank_receiver(const engine_entry& e, uint64_t bytes) {
  // Copies it is receiving are not in its used bytes yet: each counted as about this one's size.
  uint64_t used = e.load.used_bytes + e.pending_bytes + e.filling.size() * bytes;
  // A budget is the engine's capacity; without one, its share of the filesystems it writes to.
  double capacity = e.load.max_disk_bytes > 0 ? static_cast<double>(e.load.max_disk_bytes)
                                              : static_cast<double>(e.load.used_bytes) +
                                                    static_cast<double>(e.load.free_bytes);
  receiver_rank r;
  r.room = e.load.max_disk_bytes == 0 ? used + bytes <= e.load.used_bytes + e.load.free_bytes
                                      : used + bytes <= e.load.max_disk_bytes;
  double space = capacity > 0 ? static_cast<double>(used) / capacity : 1.0;
  double streams = static_cast<double>(e.load.active_streams + e.assigned) /
                   std::max<uint32_t>(e.load.max_streams, 1);
  r.score = streams + space;
  return r;
}

std::optional<engine_slot> station_tables::choose_receiver(const segment_key& key, uint64_t bytes,
                                                           steady::time_point now,
                                                           std::optional<engine_slot> exclude,
                                                           bool need_room) const {
  std::optional<engine_slot> best;
  receiver_rank best_rank;
  size_t best_count = 0;
  for (engine_slot i : all_engines()) {
    auto& e = engine(i);
    if (i == exclude || !is_up(e, now) || e.held.contains(key) || e.filling.contains(key) ||
        e.load.active_streams + e.assigned >= e.load.max_streams) {
      continue;
    }
    auto r = rank_receiver(e, bytes);
    if (need_room && !r.room) {
      continue;
    }
    size_t count = e.held.size() + e.filling.size();  // equal ranks: the fewer segments
    bool better =
        !best || (r.room && !best_rank.room) ||
        (r.room == best_rank.room &&
         (r.score < best_rank.score || (r.score == best_rank.score && count < best_count)));
    if (better) {
      best = i;
      best_rank = r;
      best_count = count;
    }
  }
  return best;
}

std::optional<engine_slot> station_tables::surplus_copy(
    const segment_key& key, steady::time_point now, size_t copies,
    const std::function<bool(engine_slot)>& for_load) const {
  std::optional<engine_slot> worst;
  double worst_score = 0;
  size_t up = 0;
  size_t replicas = 0;
  for (engine_slot h : holders(key)) {
    if (!is_up(engine(h), now)) {
      continue;
    }
    ++up;
    if (for_load(h)) {
      ++replicas;
      continue;
    }
    double score = rank_receiver(engine(h), 0).score;
    if (!worst || score > worst_score) {
      worst = h;
      worst_score = score;
    }
  }
  if (up <= copies + replicas) {
    return std::nullopt;
  }
  return worst;
}

size_t station_tables::present_copies(const segment_key& key, steady::time_point now,
                                      std::chrono::milliseconds grace) const {
  size_t n = 0;
  for (engine_slot i : holders(key)) {
    auto& e = engine(i);
    n += is_up(e, now) || now - e.last_seen <= timeout_ + grace ? 1 : 0;
  }
  for (engine_slot i : filling(key)) {
    n += is_up(engine(i), now) ? 1 : 0;
  }
  return n;
}

api::heartbeat_reply station_tables::apply(const api::heartbeat& hb, steady::time_point now) {
  auto idx = find_engine(hb.engine.str());
  bool known = idx.has_value();
  if (!idx) {
    idx = engine_slot{static_cast<uint32_t>(engines_.size())};
    engines_.push_back(std::make_unique<engine_entry>());
    engines_.back()->name = hb.engine;
  }
  engine_entry& e = engine_mut(*idx);
  if (known && hb.full && e.epoch == hb.epoch && hb.seq <= e.seq) {
    // An inventory older than one applied (a large one decoded off the loop while the engine,
    // its request timed out, sent a newer one): it would bring back what the newer one dropped.
    return {};
  }
  bool continues = e.epoch == hb.epoch && hb.seq == e.seq + 1;
  if (!hb.full && !continues) {
    return {true};
  }
  e.url = hb.url;
  e.epoch = hb.epoch;
  e.seq = hb.seq;
  e.last_seen = now;
  e.load = hb.load;
  e.pending_bytes = 0;  // what was ordered before it is in its used bytes, or still arriving
  // A console sent within the last moment may not have reached the engine when it wrote this.
  constexpr auto in_flight = std::chrono::milliseconds(50);
  while (!e.recent.empty() && now - e.recent.front() > in_flight) {
    e.recent.pop_front();
  }
  e.assigned = static_cast<uint32_t>(e.recent.size());
  if (hb.full) {
    auto old = e.held;
    for (auto& k : old) {
      remove_location(*idx, k);
    }
  }
  for (auto& k : hb.removed) {
    remove_location(*idx, k);
  }
  for (auto& s : hb.added) {
    add_location(*idx, s.key);
  }
  // `filling` is the engine's whole list: copies it no longer names have ended.
  std::unordered_set<segment_key> now_filling(hb.filling.begin(), hb.filling.end());
  std::vector<segment_key> ended;
  for (auto& k : e.filling) {
    if (!now_filling.contains(k)) {
      ended.push_back(k);
    }
  }
  for (auto& k : ended) {
    remove_filling(*idx, k);
  }
  for (auto& k : hb.filling) {
    if (!e.held.contains(k)) {
      add_filling(*idx, k);
    }
  }
  return {false};
}

void station_tables::add_filling(engine_slot engine, const segment_key& key) {
  if (engine_mut(engine).filling.insert(key).second) {
    filling_[key].push_back(engine);
    note_engine_change(engine, key, true, true);
  }
}

void station_tables::remove_filling(engine_slot engine, const segment_key& key) {
  if (engine_mut(engine).filling.erase(key) == 0) {
    return;
  }
  note_engine_change(engine, key, true, false);
  auto it = filling_.find(key);
  if (it != filling_.end()) {
    std::erase(it->second, engine);
    if (it->second.empty()) {
      filling_.erase(it);
    }
  }
}

void station_tables::note_engine_change(engine_slot engine, const segment_key& key, bool filling,
                                        bool held) {
  engine_changes_[{key, engine, filling}] = held;
}

const std::vector<engine_slot>& station_tables::filling(const segment_key& key) const {
  static const std::vector<engine_slot> none;
  auto it = filling_.find(key);
  return it == filling_.end() ? none : it->second;
}

bool station_tables::hot(const segment_key& key, steady::time_point now, uint32_t percent) const {
  bool any = false;
  for (copy_kind kind : {copy_kind::whole, copy_kind::filling}) {
    for (auto& c : candidates(key, now, kind)) {
      if (!c.up) {
        continue;
      }
      any = true;
      if (load_of(c) * 100 < percent) {
        return false;
      }
    }
  }
  return any;
}

std::vector<engine_slot> station_tables::sources_by_load(const segment_key& key,
                                                         steady::time_point now) const {
  std::vector<std::pair<double, engine_slot>> up;
  for (auto& c : candidates(key, now)) {
    if (c.up) {
      up.emplace_back(load_of(c), c.engine);
    }
  }
  std::sort(up.begin(), up.end());
  std::vector<engine_slot> out;
  for (auto& [l, i] : up) {
    out.push_back(i);
  }
  return out;
}

void station_tables::add_location(engine_slot engine, const segment_key& key) {
  remove_filling(engine, key);  // a whole copy is no longer arriving
  if (engine_mut(engine).held.insert(key).second) {
    note_engine_change(engine, key, false, true);
    auto& l = locations_[key];
    l.push_back(engine);
    if (l.size() == 1) {
      changes_[key] = true;
    }
  }
}

std::vector<api::location_change> station_tables::drain_changes() {
  std::vector<api::location_change> out;
  out.reserve(changes_.size());
  for (auto& [k, held] : changes_) {
    out.push_back({k, held});
  }
  changes_.clear();
  for (auto& [what, held] : engine_changes_) {
    auto& [k, slot, filling] = what;
    out.push_back({k, held, engine(slot).name, filling});
  }
  engine_changes_.clear();
  return out;
}

void station_tables::remove_location(engine_slot engine, const segment_key& key) {
  if (engine_mut(engine).held.erase(key) == 0) {
    return;
  }
  note_engine_change(engine, key, false, false);
  auto it = locations_.find(key);
  if (it == locations_.end()) {
    return;
  }
  std::erase(it->second, engine);
  if (it->second.empty()) {
    locations_.erase(it);
    changes_[key] = false;
  }
}

const std::vector<engine_slot>& station_tables::holders(const segment_key& key) const {
  static const std::vector<engine_slot> none;
  auto it = locations_.find(key);
  return it == locations_.end() ? none : it->second;
}

const std::vector<candidate>& station_tables::candidates(const segment_key& key,
                                                         steady::time_point now,
                                                         copy_kind kind) const {
  std::vector<candidate>& out = scratch_;
  out.clear();
  for (engine_slot i : kind == copy_kind::filling ? filling(key) : holders(key)) {
    const engine_entry& e = engine(i);
    out.push_back(candidate{i, is_up(e, now), e.load.active_streams + e.assigned,
                            e.load.max_streams, e.load.bytes_per_second,
                            e.load.max_bytes_per_second});
  }
  return out;
}

std::optional<engine_slot> station_tables::choose(const segment_key& key, steady::time_point now,
                                                  std::optional<engine_slot> preferred) {
  auto c = choose_engine(candidates(key, now), preferred, rotation_++);
  if (!c && filling_.contains(key)) {
    c = choose_engine(candidates(key, now, copy_kind::filling), std::nullopt, rotation_);
  }
  if (c) {
    note_sent(*c, now);
  }
  return c;
}

void station_tables::note_sent(engine_slot engine, steady::time_point now) {
  auto& e = engine_mut(engine);
  ++e.assigned;
  e.recent.push_back(now);
  if (e.recent.size() > 4096) {
    e.recent.pop_front();  // far more than any heartbeat's worth; the count is an estimate
  }
}

std::optional<engine_slot> station_tables::peek(const segment_key& key,
                                                steady::time_point now) const {
  return choose_engine(candidates(key, now), std::nullopt, rotation_);
}

std::optional<engine_slot> station_tables::least_loaded(const segment_key& key,
                                                        steady::time_point now, copy_kind kind,
                                                        std::optional<engine_slot> exclude) const {
  candidates(key, now, kind);
  if (exclude) {
    std::erase_if(scratch_, [&](const candidate& c) { return c.engine == *exclude; });
  }
  return choose_engine(scratch_, std::nullopt, 0);
}

std::vector<engine_slot> station_tables::spread(const segment_key& key, size_t position,
                                                const std::vector<engine_slot>& up, size_t copies,
                                                steady::time_point now) const {
  std::vector<engine_slot> out;
  for (engine_slot h : holders(key)) {  // copies already held count
    if (is_up(engine(h), now) && out.size() < copies) {
      out.push_back(h);
    }
  }
  for (size_t k = 0; k < up.size() && out.size() < copies; ++k) {
    engine_slot e = up[(position + k) % up.size()];
    if (std::find(out.begin(), out.end(), e) == out.end()) {
      out.push_back(e);
    }
  }
  return out;
}

size_t station_tables::up_holders(const segment_key& key, steady::time_point now) const {
  size_t n = 0;
  for (engine_slot i : holders(key)) {
    n += is_up(engine(i), now) ? 1 : 0;
  }
  return n;
}

std::vector<engine_slot> station_tables::all_engines() const {
  std::vector<engine_slot> out;
  out.reserve(engines_.size());
  for (size_t i = 0; i < engines_.size(); ++i) {
    out.push_back(engine_slot{static_cast<uint32_t>(i)});
  }
  return out;
}

std::vector<engine_slot> station_tables::up_engines(steady::time_point now) const {
  std::vector<engine_slot> out;
  for (engine_slot i : all_engines()) {
    if (is_up(engine(i), now)) {
      out.push_back(i);
    }
  }
  return out;
}

std::optional<engine_slot> station_tables::find_engine(std::string_view name) const {
  for (engine_slot i : all_engines()) {
    if (engine(i).name.str() == name) {
      return i;
    }
  }
  return std::nullopt;
}

}  // namespace vodgrid::director
