// The station tables (tables.h) and the pure choices made on them: an engine for a console or for
// another station, a receiver for a copy, the spread of a new program, the copy to drop.
#include "director/tables.h"

#include <algorithm>
#include <limits>
#include <utility>

namespace vodgrid::director {

uint64_t sent_counter::bucket_of(steady::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  return static_cast<uint64_t>(ms / bucket_ms) & ((uint64_t{1} << (64 - count_bits)) - 1);
}

void sent_counter::add(steady::time_point now) {
  total_.fetch_add(1, std::memory_order_relaxed);
  uint64_t b = bucket_of(now);
  auto& slot = recent_[b % buckets];
  uint64_t v = slot.load(std::memory_order_relaxed);
  while (true) {
    uint64_t at = v >> count_bits;
    uint64_t next;
    if (at == b) {
      next = v + 1;
    } else if (at < b) {
      next = b << count_bits | 1;  // the slot's bucket has passed: it starts again
    } else {
      return;  // another thread's later clock took the slot: the total counts this one
    }
    if (slot.compare_exchange_weak(v, next, std::memory_order_relaxed)) {
      return;
    }
  }
}

uint32_t sent_counter::since(steady::time_point from, steady::time_point now) const {
  uint64_t lo = bucket_of(from);
  uint64_t hi = bucket_of(now);
  uint64_t n = 0;
  for (auto& slot : recent_) {
    uint64_t v = slot.load(std::memory_order_relaxed);
    uint64_t at = v >> count_bits;
    if (at >= lo && at <= hi) {
      n += v & ((uint64_t{1} << count_bits) - 1);
    }
  }
  return static_cast<uint32_t>(n);
}

// A console the director sends to an engine is counted as the engine's load from the redirect
// until the engine's heartbeat shows it arrived. Counting only those sent within 50 ms of a
// heartbeat, as before, forgot every console that took longer to connect: on a busy host (ASan,
// a loaded machine) the director then sent more consoles to engines already full, and each
// handed them on, by the same stale view, to another full one, past the 5 redirects a player
// follows. So the two counters are reconciled (console_ledger in tables.h states the equation):
// what the director sent less what the engine received, less the unmatched, is on its way. An
// engine that does not count its consoles (an older version), and each engine's first heartbeat
// of an epoch, get the older estimate.
uint32_t console_ledger::on_heartbeat(uint64_t sent, std::optional<uint64_t> received,
                                      bool restarted, uint32_t just_sent, steady::time_point now) {
  // The most still in flight: the consoles sent since the last heartbeat at least console_wait ago
  // (all, if none is that old: the ledger itself is younger).
  sent_marks_.push_back({now, sent});
  while (sent_marks_.size() > 1 && sent_marks_[1].at <= now - console_wait) {
    sent_marks_.pop_front();
  }
  auto& oldest = sent_marks_.front();
  auto recent = static_cast<int64_t>(oldest.at <= now - console_wait ? sent - oldest.sent : sent);
  if (!received || restarted) {
    phantoms_ = 0;
    unmatched_ = static_cast<int64_t>(sent) - static_cast<int64_t>(received.value_or(0)) -
                 static_cast<int64_t>(just_sent);
    return just_sent;
  }
  unmatched_ += static_cast<int64_t>(std::exchange(phantoms_, 0));
  // What the equation leaves in flight with `unmatched` as it was; beyond the bounds, the
  // difference is unmatched: received without the director below 0, never received above.
  int64_t unaccounted = static_cast<int64_t>(sent) - static_cast<int64_t>(*received) - unmatched_;
  int64_t in_flight = std::clamp<int64_t>(unaccounted, 0, recent);
  unmatched_ += unaccounted - in_flight;
  return static_cast<uint32_t>(in_flight);
}

uint32_t consoles_in_flight(engine_entry& e, const api::engine_load& load, bool restarted,
                            steady::time_point now) {
  constexpr auto just_sent = std::chrono::milliseconds(50);
  return e.consoles.on_heartbeat(e.sent_base, load.consoles, restarted,
                                 e.sent->since(now - just_sent, now), now);
}

// The published tables (tables.h): the engine views and the segment shards. Written by the home
// loop only; read by any.
struct station_tables::published_state {
  snapshot<engine_views> engines{std::make_shared<const engine_views>()};
  // Plain atomics, not snapshots: a thread's snapshot cache (base/snapshot.h, 1024 slots) would
  // be evicted on nearly every read by 16384 shards read at random, and one big enough to hold
  // them would cost each loop megabytes. The load's read-modify-writes are spread over 16384
  // lines, one per shard, so two loops meet only on the same shard at the same moment.
  struct alignas(64) shard_slot {
    std::atomic<std::shared_ptr<const shard>> value;
  };
  std::array<shard_slot, shard_count> shards;
};

station_tables::station_tables(std::chrono::milliseconds heartbeat_timeout,
                               std::chrono::milliseconds heartbeat_interval)
    : timeout_(heartbeat_timeout),
      // Two heartbeats, and no less than half a second, so that a busy host's scheduling delays
      // do not move consoles off an engine that is only a little behind.
      late_(std::max(2 * heartbeat_interval, std::chrono::milliseconds(500))),
      published_(std::make_unique<published_state>()) {}

station_tables::~station_tables() = default;

namespace {

size_t shard_of(const segment_key& key, size_t n) {
  return std::hash<segment_key>{}(key) % n;
}

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
  // A late engine may be stopped: a console sent there waits until it is killed or resumes, and a
  // player that does not retry loses the segment. So the punctual holders first; the late ones
  // only when none of those qualifies (better a late engine than a 503).
  for (bool punctual_only : {true, false}) {
    auto eligible = [&](const candidate& c) {
      return qualifies(c) && (c.punctual || !punctual_only);
    };
    std::optional<engine_slot> best;
    double best_load = 0;
    size_t n = holders.size();
    for (size_t k = 0; k < n; ++k) {
      const candidate& c = holders[(k + rotation) % n];
      if (!eligible(c)) {
        continue;
      }
      double l = load_of(c);
      if (!best || l < best_load) {
        best = c.engine;
        best_load = l;
      }
    }
    if (!best) {
      continue;
    }
    if (preferred) {
      for (auto& c : holders) {
        if (c.engine == *preferred && eligible(c) &&
            load_of(c) <= best_load + 1.0 / std::max<uint32_t>(c.max_streams, 1)) {
          return c.engine;
        }
      }
    }
    return best;
  }
  return std::nullopt;
}

bool near_limits(const engine_entry& e, uint32_t percent) {
  return (e.load.active_streams + e.assigned_now()) * 100ull >=
             uint64_t{e.load.max_streams} * percent ||
         (e.load.max_bytes_per_second > 0 &&
          e.load.bytes_per_second * 100 >= e.load.max_bytes_per_second * percent);
}

bool near_limits(const engine_view& e, uint32_t percent) {
  return (e.active_streams + e.assigned_now()) * 100ull >= uint64_t{e.max_streams} * percent ||
         (e.max_bytes_per_second > 0 &&
          e.bytes_per_second * 100 >= e.max_bytes_per_second * percent);
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
  double streams = static_cast<double>(e.load.active_streams + e.assigned_now()) /
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
        e.load.active_streams + e.assigned_now() >= e.load.max_streams) {
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

void station_tables::publish_engines() {
  auto v = std::make_shared<engine_views>();
  v->reserve(engines_.size());
  for (auto& e : engines_) {
    v->push_back(engine_view{e->url, e->epoch != 0, e->last_seen, e->load.active_streams,
                             e->load.max_streams, e->load.bytes_per_second,
                             e->load.max_bytes_per_second, e->assigned, e->sent_base, e->sent});
  }
  published_->engines.store(std::move(v));
}

std::shared_ptr<const engine_views> station_tables::published_engines() const {
  return published_->engines.load();
}

void station_tables::publish() {
  if (dirty_.empty()) {
    return;
  }
  auto start = measure_publish_ ? steady::now() : steady::time_point{};
  // By shard, so that each shard is copied once however many of its segments changed.
  std::vector<std::pair<size_t, size_t>> order;  // (shard, position in dirty_)
  order.reserve(dirty_.size());
  for (size_t i = 0; i < dirty_.size(); ++i) {
    order.emplace_back(shard_of(dirty_[i], shard_count), i);
  }
  std::sort(order.begin(), order.end());
  for (size_t i = 0; i < order.size();) {
    ++shards_published_;
    size_t s = order[i].first;
    auto old = published_->shards[s].value.load();
    auto next = old ? std::make_shared<shard>(*old) : std::make_shared<shard>();
    for (; i < order.size() && order[i].first == s; ++i) {
      const segment_key& k = dirty_[order[i].second];
      auto l = locations_.find(k);
      auto f = filling_.find(k);
      auto h = hints_.find(k);
      if (l == locations_.end() && f == filling_.end() && h == hints_.end()) {
        next->erase(k);
        continue;
      }
      segment_view& v = (*next)[k];
      v.whole = l == locations_.end() ? std::vector<engine_slot>{} : l->second;
      v.filling = f == filling_.end() ? std::vector<engine_slot>{} : f->second;
      v.hint = h == hints_.end() ? std::nullopt : std::optional<engine_slot>(h->second.engine);
      v.hint_until = h == hints_.end() ? steady::time_point{} : h->second.until;
    }
    published_->shards[s].value.store(next->empty() ? nullptr : std::shared_ptr<const shard>(next));
  }
  if (measure_publish_) {
    // A moving average per segment changed, each sample at most 50 µs (a publication preempted by
    // the scheduler would otherwise shorten the slices after it for long).
    auto per = std::min<std::chrono::nanoseconds>((steady::now() - start) / dirty_.size(),
                                                  std::chrono::microseconds(50));
    publish_cost_ += (per - publish_cost_) / 8;
  }
  dirty_.clear();
}

const engine_views* station_tables::published_engines(snapshot_pin& pin) const {
  return published_->engines.read(pin);
}

station_tables::segment_ref station_tables::published(const segment_key& key) const {
  segment_ref r;
  r.owner = published_->shards[shard_of(key, shard_count)].value.load();
  if (r.owner) {
    auto it = r.owner->find(key);
    r.seg = it == r.owner->end() ? nullptr : &it->second;
  }
  return r;
}

void station_tables::set_hint(const segment_key& key, engine_slot engine,
                              steady::time_point until) {
  if (hints_.size() > 100'000) {  // hints of consoles that went away
    auto now = steady::now();
    for (auto it = hints_.begin(); it != hints_.end();) {
      if (it->second.until <= now) {
        dirty_.push_back(it->first);
        it = hints_.erase(it);
      } else {
        ++it;
      }
    }
  }
  hints_[key] = hint_entry{engine, until};
  dirty_.push_back(key);
  publish();
}

std::optional<engine_slot> station_tables::hint(const segment_key& key,
                                                steady::time_point now) const {
  auto it = hints_.find(key);
  if (it == hints_.end() || it->second.until <= now) {
    return std::nullopt;
  }
  return it->second.engine;
}

bool station_tables::hint_fresh(const segment_key& key, steady::time_point now) const {
  auto h = hint(key, now);
  return h && is_up(engine(*h), now);
}

bool station_tables::note(engine_slot engine, const segment_key& key, engine_entry::note_kind kind,
                          std::optional<api::heartbeat_mark> mark) {
  engine_entry& e = engine_mut(engine);
  if (mark && mark->epoch == e.epoch) {
    if (mark->seq < e.seq) {
      return false;
    }
    e.noted[key] = {kind, mark->seq};
  } else if (e.applying) {
    e.noted[key] = {kind, e.seq};
  }
  return true;
}

void station_tables::add_filling(engine_slot engine, const segment_key& key) {
  if (engine_mut(engine).filling.insert(key).second) {
    dirty_.push_back(key);
    filling_[key].push_back(engine);
    note_engine_change(engine, key, true, true);
  }
}

void station_tables::remove_filling(engine_slot engine, const segment_key& key) {
  if (engine_mut(engine).filling.erase(key) == 0) {
    return;
  }
  dirty_.push_back(key);
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
  if (keep_changes_) {
    engine_changes_[{key, engine, filling}] = held;
  }
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
    dirty_.push_back(key);
    note_engine_change(engine, key, false, true);
    auto& l = locations_[key];
    if (std::find(l.begin(), l.end(), engine) != l.end()) {
      return;  // (held again while a whole inventory's slices were forgetting it)
    }
    l.push_back(engine);
    if (l.size() == 1 && keep_changes_) {
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
  forget_location(engine, key);
}

void station_tables::forget_location(engine_slot engine, const segment_key& key) {
  dirty_.push_back(key);
  note_engine_change(engine, key, false, false);
  auto it = locations_.find(key);
  if (it == locations_.end()) {
    return;
  }
  std::erase(it->second, engine);
  if (it->second.empty()) {
    locations_.erase(it);
    if (keep_changes_) {
      changes_[key] = false;
    }
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
    out.push_back(candidate{i, is_up(e, now), e.load.active_streams + e.assigned_now(),
                            e.load.max_streams, e.load.bytes_per_second,
                            e.load.max_bytes_per_second, is_punctual(e.last_seen, now)});
  }
  return out;
}

std::optional<engine_slot> station_tables::choose(const segment_key& key, steady::time_point now,
                                                  std::optional<engine_slot> preferred) const {
  auto seg = published(key);
  auto ev = published_engines();
  return choose_on(*ev, seg.seg, now, preferred);
}

std::optional<engine_slot> station_tables::choose_on(const engine_views& ev,
                                                     const segment_view* seg,
                                                     steady::time_point now,
                                                     std::optional<engine_slot> preferred) const {
  if (!seg) {
    return std::nullopt;
  }
  thread_local std::vector<candidate> scratch;  // not allocated per console
  auto fill = [&](const std::vector<engine_slot>& slots) -> const std::vector<candidate>& {
    scratch.clear();
    for (engine_slot i : slots) {
      if (index_of(i) >= ev.size()) {
        continue;  // (not possible: the engines are published before a shard names one)
      }
      const engine_view& e = ev[index_of(i)];
      scratch.push_back(candidate{i, is_up(e, now), e.active_streams + e.assigned_now(),
                                  e.max_streams, e.bytes_per_second, e.max_bytes_per_second,
                                  is_punctual(e.last_seen, now)});
    }
    return scratch;
  };
  uint64_t rotation = rotation_.fetch_add(1, std::memory_order_relaxed);
  auto c = choose_engine(fill(seg->whole), preferred, rotation);
  if (!c && !seg->filling.empty()) {
    c = choose_engine(fill(seg->filling), std::nullopt, rotation + 1);
  }
  if (c) {
    ev[index_of(*c)].sent->add(now);
  }
  return c;
}

std::optional<engine_slot> station_tables::peek(const segment_key& key,
                                                steady::time_point now) const {
  return choose_engine(candidates(key, now), std::nullopt,
                       rotation_.load(std::memory_order_relaxed));
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
