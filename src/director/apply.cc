// A heartbeat applied to the station tables (tables.h), in slices that hold the home loop for
// about a budget each (issue 16, item 5): its status and load at once (begin_apply), its segment
// changes a slice at a time (apply_slice, one heartbeat_slice each).
#include "director/tables.h"

#include <algorithm>
#include <limits>
#include <utility>

namespace vodgrid::director {

api::heartbeat_reply station_tables::apply(api::heartbeat hb, steady::time_point now) {
  apply_job job;
  auto rep = begin_apply(std::move(hb), now, job);
  while (!apply_slice(job, std::chrono::microseconds::max())) {
  }
  return rep;
}

api::heartbeat_reply station_tables::begin_apply(api::heartbeat hb, steady::time_point now,
                                                 apply_job& job) {
  job.stage = apply_stage::done;
  auto idx = find_engine(hb.engine.str());
  bool known = idx.has_value();
  if (!idx) {
    idx = engine_slot{static_cast<uint32_t>(engines_.size())};
    engines_.push_back(std::make_unique<engine_entry>());
    engines_.back()->name = hb.engine;
    publish_engines();  // before a shard may name it
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
  // A whole inventory from an engine that was down or restarted: it stays out of rotation until
  // the copies it no longer names are dropped (apply_stage::inventory_dropped), so that it is never
  // sent consoles, nor counted as a holder, for a segment it lost meanwhile.
  bool returning = hb.full && (!known || e.epoch != hb.epoch || !is_up(e, now));
  bool restarted = !known || e.epoch != hb.epoch;
  if (e.epoch != hb.epoch) {
    e.noted.clear();  // a restarted engine: what it lists is all there is
  } else {
    std::erase_if(e.noted, [&](auto& n) { return n.second.through < hb.seq; });
  }
  e.url = hb.url;
  e.epoch = hb.epoch;
  e.seq = hb.seq;
  e.last_seen = returning ? steady::time_point{} : now;
  job.seen = now;
  job.returning = returning;
  e.load = hb.load;
  e.pending_bytes = 0;  // what was ordered before it is in its used bytes, or still arriving
  // The consoles sent that had not reached the engine when it wrote this. (The total first: a
  // console sent in between counts twice until the next heartbeat, rather than not at all.)
  e.sent_base = e.sent->total();
  e.assigned = consoles_in_flight(e, hb.load, restarted, now);
  publish_engines();
  job.engine = *idx;
  job.hb = std::move(hb);
  job.stage = apply_stage::removed;
  e.applying = true;
  return {false};
}

// One slice of a heartbeat's apply: the job's stages from where the last slice stopped, until the
// heartbeat is applied or the slice's budget is spent, then the publication of what it changed.
// It lives for one slice; what the next slice needs is in the apply_job. A step is one segment
// changed, one key put into or taken out of a set, one bucket of a set looked at, one entry of a
// list freed: every stage stops between two steps, and at least one step is made a slice.
class station_tables::heartbeat_slice {
 public:
  heartbeat_slice(station_tables& t, apply_job& job, std::chrono::microseconds budget)
      : t_(t),
        job_(job),
        e_(t.engine_mut(job.engine)),
        hb_(job.hb),
        start_(steady::now()),
        // In nanoseconds, saturated (apply() passes microseconds::max()).
        budget_ns_(budget.count() >= std::numeric_limits<int64_t>::max() / 1000
                       ? std::numeric_limits<int64_t>::max()
                       : budget.count() * 1000) {}

  // True: the heartbeat is applied. False: the slice stopped at job.stage, its changes published.
  bool run() {
    while (job_.stage != apply_stage::done) {
      if (!run_stage()) {
        t_.publish();
        return false;
      }
    }
    return true;
  }

 private:
  using enum engine_entry::note_kind;

  // Runs the stage the job is at. False: out of time, the job resumes there. True: the stage is
  // done and job.stage names the next (its pos at 0).
  bool run_stage() {
    switch (job_.stage) {
      case apply_stage::removed:
        return drop_removed();
      case apply_stage::inventory_keys:
        return take_keys(hb_.added, apply_stage::inventory_dropped);
      case apply_stage::inventory_dropped:
        return drop_unnamed(e_.held, held, &station_tables::remove_location,
                            apply_stage::inventory_freed);
      case apply_stage::inventory_freed:
        return free_keys(apply_stage::added) && back_in_rotation();
      case apply_stage::added:
        return add_added();
      case apply_stage::filling_keys:
        return take_keys(hb_.filling, apply_stage::filling_ended);
      case apply_stage::filling_ended:
        return drop_unnamed(e_.filling, filling, &station_tables::remove_filling,
                            apply_stage::filling_freed);
      case apply_stage::filling_freed:
        return free_keys(apply_stage::filling_begun);
      case apply_stage::filling_begun:
        return begin_filling();
      case apply_stage::lists_freed:
        return free_lists();
      case apply_stage::done:
        return true;
    }
    return true;
  }

  // Whether the slice ends before its next step: when the time it has run (the clock read every
  // 8 steps) and the publication of what it changed (publish_cost_ a segment, checked at every
  // step that follows a change) reach the budget. Never before the slice's first step.
  bool out_of_time() {
    if (steps_++ == 0) {
      return false;
    }
    if (steps_ % 8 == 0) {
      elapsed_ns_ =
          std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now() - start_).count();
    } else if (t_.dirty_.empty()) {
      return false;
    }
    auto publishing = static_cast<int64_t>(t_.dirty_.size()) * t_.publish_cost_.count();
    return elapsed_ns_ + publishing >= budget_ns_;
  }

  bool next(apply_stage s) {
    job_.stage = s;
    job_.pos = 0;
    return true;
  }

  // Whether a change of `kind` to `k` was noted that this heartbeat may not know of (begin_apply
  // dropped the older notes): the heartbeat leaves `k` as noted.
  bool noted(const segment_key& k, engine_entry::note_kind kind) const {
    auto it = e_.noted.find(k);
    return it != e_.noted.end() && it->second.kind == kind;
  }

  // removed: the copies the heartbeat says the engine removed, a step each, but those noted held
  // since. It may stop between two: each removal changes the engine's set and the locations
  // together, and a copy not yet removed is listed as it was before the heartbeat came. A delta
  // goes on to its added list; a whole inventory first to the copies it no longer names.
  bool drop_removed() {
    for (; job_.pos < hb_.removed.size(); ++job_.pos) {
      if (out_of_time()) {
        return false;
      }
      if (!noted(hb_.removed[job_.pos], held)) {
        t_.remove_location(job_.engine, hb_.removed[job_.pos]);
      }
    }
    if (!hb_.full) {
      return next(apply_stage::added);
    }
    job_.keys.reserve(hb_.added.size());
    return next(apply_stage::inventory_keys);
  }

  static const segment_key& key_of(const api::segment_ref& r) { return r.key; }
  static const segment_key& key_of(const segment_key& k) { return k; }

  // inventory_keys, filling_keys: a whole list's keys (the inventory's, or the copies arriving)
  // put into job.keys, a step each, so that the engine's set can be compared with it. It may stop
  // anywhere: nothing reads job.keys before it is whole.
  template <class List>
  bool take_keys(const List& list, apply_stage then) {
    for (; job_.pos < list.size(); ++job_.pos) {
      if (out_of_time()) {
        return false;
      }
      job_.keys.insert(key_of(list[job_.pos]));
    }
    job_.buckets = 0;
    return next(then);
  }

  // inventory_dropped, filling_ended: drops (`drop`) from the engine's set `have` (its held or
  // its arriving copies) what job.keys does not name and no note of `kind` keeps, a step a
  // segment. The set is walked a bucket at a time (a step each), each bucket's keys to drop kept
  // in job.stale and checked against the notes again when dropped. It may stop between two steps:
  // a copy is dropped whole (the set and the locations together), a returning engine is out of
  // rotation until all are dropped, and erasing keeps the buckets, so the walk resumes where it
  // was; a change noted between slices may rehash them, and then the walk starts over (what it
  // dropped is gone).
  bool drop_unnamed(std::unordered_set<segment_key>& have, engine_entry::note_kind kind,
                    void (station_tables::*drop)(engine_slot, const segment_key&),
                    apply_stage then) {
    if (have.bucket_count() != job_.buckets) {
      job_.buckets = have.bucket_count();
      job_.pos = 0;
    }
    if (job_.pos == 0 && have.size() < 32) {
      // A few keys (the copies arriving, as a rule) in what may be many buckets (the set never
      // shrinks them): looked at in one step, through its list rather than its buckets.
      for (auto& k : have) {
        if (!job_.keys.contains(k) && !noted(k, kind)) {
          job_.stale.push_back(k);
        }
      }
      job_.pos = job_.buckets;
    }
    while (true) {
      while (!job_.stale.empty()) {
        if (out_of_time()) {
          return false;
        }
        if (!noted(job_.stale.back(), kind)) {
          (t_.*drop)(job_.engine, job_.stale.back());  // (nothing if it is no longer there)
        }
        job_.stale.pop_back();
      }
      if (job_.pos == job_.buckets) {
        break;
      }
      if (out_of_time()) {
        return false;
      }
      for (auto it = have.begin(job_.pos); it != have.end(job_.pos); ++it) {
        if (!job_.keys.contains(*it) && !noted(*it, kind)) {
          job_.stale.push_back(*it);
        }
      }
      ++job_.pos;
    }
    return next(then);
  }

  // inventory_freed, filling_freed: frees job.keys a key at a time (a set of 100k keys freed at
  // once holds the loop for ms). It may stop anywhere: the set is no longer read.
  bool free_keys(apply_stage then) {
    while (!job_.keys.empty()) {
      if (out_of_time()) {
        return false;
      }
      job_.keys.erase(job_.keys.begin());
    }
    job_.keys = std::unordered_set<segment_key>();  // (its buckets too)
    return next(then);
  }

  // The end of inventory_freed for a returning engine: what it is listed for, it holds (the
  // copies its inventory no longer names are dropped), so it is back in rotation. No step.
  bool back_in_rotation() {
    if (job_.returning) {
      job_.returning = false;
      e_.last_seen = job_.seen;
      t_.publish_engines();
    }
    return true;
  }

  // added: the copies the heartbeat says the engine gained, a step each, but those noted removed
  // since. (A segment a whole inventory keeps is already held: add_location leaves it.) It may
  // stop between two: a copy not yet added is left as it was before the heartbeat came (no
  // console is sent there for it yet).
  bool add_added() {
    for (; job_.pos < hb_.added.size(); ++job_.pos) {
      if (out_of_time()) {
        return false;
      }
      if (!noted(hb_.added[job_.pos].key, removed)) {
        t_.add_location(job_.engine, hb_.added[job_.pos].key);
      }
    }
    return next(apply_stage::filling_keys);
  }

  // filling_begun: the copies arriving that the engine's list (`filling`, its whole list, short
  // but not bounded) names and it does not hold, a step each. (Those it no longer names ended at
  // filling_ended, but for those it took after writing this heartbeat: noted.) It may stop between
  // two, as added may.
  bool begin_filling() {
    for (; job_.pos < hb_.filling.size(); ++job_.pos) {
      if (out_of_time()) {
        return false;
      }
      if (!e_.held.contains(hb_.filling[job_.pos])) {
        t_.add_filling(job_.engine, hb_.filling[job_.pos]);
      }
    }
    return next(apply_stage::lists_freed);
  }

  // lists_freed: the heartbeat's lists freed an entry at a time (a step each; it may stop
  // anywhere, they are no longer read), then the end of the apply: its changes published, the
  // notes it has seen dropped.
  bool free_lists() {
    if (!free_list(hb_.added) || !free_list(hb_.removed) || !free_list(hb_.filling)) {
      return false;
    }
    job_.stale = {};
    t_.publish();
    e_.applying = false;
    std::erase_if(e_.noted, [&](auto& n) { return n.second.through <= hb_.seq; });
    return next(apply_stage::done);
  }

  template <class List>
  bool free_list(List& list) {
    while (!list.empty()) {
      if (out_of_time()) {
        return false;
      }
      list.pop_back();
    }
    return true;
  }

  station_tables& t_;
  apply_job& job_;
  engine_entry& e_;
  api::heartbeat& hb_;
  const steady::time_point start_;
  const int64_t budget_ns_;
  int64_t elapsed_ns_ = 0;  // at the last reading of the clock
  size_t steps_ = 0;        // made in this slice
};

bool station_tables::apply_slice(apply_job& job, std::chrono::microseconds budget) {
  if (job.stage == apply_stage::done) {
    return true;
  }
  return heartbeat_slice(*this, job, budget).run();
}

}  // namespace vodgrid::director
