// The director's view of its station: the engine table (status and load from heartbeats) and the
// segment location table (which engines hold which segment), and the choice of an engine for a
// console (claim 18: by status and load). No I/O; the daemon owns one instance on its io thread
// (the home loop), which also publishes what a console's choice reads for the other loops (issue
// 16).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "api/api.h"
#include "base/ids.h"
#include "base/snapshot.h"

namespace vodgrid::director {

using steady = std::chrono::steady_clock;

// An engine's slot in the station's engine table: given at its first heartbeat and kept for the
// director's life. Its own type, so that it is not mixed up with a count or a segment position;
// hashes and orders as its number.
enum class engine_slot : uint32_t {};
inline size_t index_of(engine_slot s) {
  return static_cast<size_t>(s);
}

// Which of a segment's copies a choice is made among: the whole ones, or those still arriving
// (an engine serves a segment while it receives it).
enum class copy_kind { whole, filling };

// Consoles sent to one engine, counted from any loop with atomics (issue 16): every console sent
// (`total`) and, in 16 ms buckets, those of the last moment, so that a heartbeat's apply can tell
// which consoles the engine may not have counted yet. Shared by the home loop's engine_entry and
// the engine views it publishes.
class sent_counter {
 public:
  void add(steady::time_point now);  // one console sent at `now`
  // `n` consoles counted as sent without being recent (note_full): gone at the next heartbeat.
  void add_extra(uint64_t n) { total_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t total() const { return total_.load(std::memory_order_relaxed); }
  // Consoles sent from `from` to `now` (to the bucket: up to 16 ms earlier), at most 128 ms back.
  uint32_t since(steady::time_point from, steady::time_point now) const;

 private:
  static constexpr int64_t bucket_ms = 16;
  static constexpr size_t buckets = 8;
  static constexpr int count_bits = 24;  // each bucket: its number << count_bits | its count
  static uint64_t bucket_of(steady::time_point t);
  std::atomic<uint64_t> total_{0};
  std::array<std::atomic<uint64_t>, buckets> recent_{};
};

// The consoles sent to one engine that it has not counted yet (consoles_in_flight), reckoned at
// each of its heartbeats from two counters that never meet: `sent`, the director's count of the
// consoles it sent there (sent_counter::total), and `received`, the engine's count of the consoles
// it received (api::engine_load::consoles). After every heartbeat:
//
//   sent = received + unmatched + in flight,   0 <= in flight <= sent - sent 2 s ago
//
// where "sent 2 s ago" is `sent` at the last heartbeat at least console_wait old (0 before there is
// one), and `unmatched` the consoles only one side counts: received without the director (a request
// straight to the engine) lower it, as soon as they are seen (in flight is never below 0); sent and
// never received (a player that gave up; a console note_full counted that no console stands for)
// raise it, once they are older than console_wait (2 s). A heartbeat without `received` (an engine
// that does not count its consoles) or of a restarted engine (its count starts again) cannot be
// reconciled: in flight is then the consoles sent just before it, and `unmatched` is set so that
// the equation holds from there.
class console_ledger {
 public:
  // At the heartbeat applied at `now`: the consoles sent that the engine has not received.
  // `sent`: the director's count, read as the heartbeat is applied; `received`: the engine's, if it
  // counts them; `restarted`: its first heartbeat here or of a new epoch; `just_sent`: the consoles
  // sent just before `now` (the estimate when the counters cannot be reconciled).
  uint32_t on_heartbeat(uint64_t sent, std::optional<uint64_t> received, bool restarted,
                        uint32_t just_sent, steady::time_point now);
  // `n` consoles added to `sent` (sent_counter::add_extra) that no console stands for.
  void add_phantoms(uint64_t n) { phantoms_ += n; }

  // A console sent longer ago than this and not received is taken never to come.
  static constexpr std::chrono::seconds console_wait{2};

 private:
  struct sent_mark {
    steady::time_point at;
    uint64_t sent;
  };
  // The consoles counted as sent that the engine will never count, less those it counted that the
  // director never sent: `sent - received - in flight` at the last heartbeat.
  int64_t unmatched_ = 0;
  // `sent` at each heartbeat of the last console_wait and the one before them: the consoles sent
  // since the oldest are the most that can still be in flight.
  std::deque<sent_mark> sent_marks_;
  // Consoles added to `sent` since the last heartbeat that no console stands for (note_full): the
  // next heartbeat counts them as unmatched at once.
  uint64_t phantoms_ = 0;
};

struct engine_entry {
  engine_id name;
  std::string url;
  uint64_t epoch = 0;
  uint64_t seq = 0;
  steady::time_point last_seen{};
  api::engine_load load;
  // Consoles sent to this engine that its last heartbeat may not count: those sent just before it
  // (still connecting when the engine wrote it); assigned_now() adds those sent since.
  uint32_t assigned = 0;
  uint64_t sent_base = 0;  // sent->total() at the last heartbeat
  std::shared_ptr<sent_counter> sent = std::make_shared<sent_counter>();
  uint32_t assigned_now() const {
    return assigned + static_cast<uint32_t>(sent->total() - sent_base);
  }
  console_ledger consoles;  // what consoles_in_flight keeps between heartbeats
  std::unordered_set<segment_key> held;
  std::unordered_set<segment_key> filling;  // segments it is receiving (and serving meanwhile)
  // Changes the director noted before this engine's heartbeats said so: a copy held, one removed,
  // one arriving, each with the last of its heartbeats that may not know of it (`through`, a seq);
  // those heartbeats leave the segment as noted. A note made from the engine's answer to an order
  // has the heartbeat mark of that answer (a heartbeat written before the engine took the order
  // may reach us after the answer); one without (an eviction allowed here) holds against the
  // heartbeat being applied, if any, whose slices began before it.
  enum class note_kind : uint8_t { held, removed, filling };
  struct change_note {
    note_kind kind;
    uint64_t through;
  };
  bool applying = false;
  std::unordered_map<segment_key, change_note> noted;
  // Bytes of copies ordered to it since its last heartbeat, which `load.used_bytes` does not count
  // yet: copies ordered in one burst are spread, not all sent to the engine that looked emptiest
  // (copies still arriving at a heartbeat count through `filling`).
  uint64_t pending_bytes = 0;
};

// The consoles sent to `e` that a heartbeat with `load`, applied at `now`, does not count: sent
// (e.sent_base, just read) and not yet received by the engine (load.consoles), however long they
// take to get there on a busy host (console_ledger, kept in e.consoles). `restarted`: the engine's
// first heartbeat here or its first of a new epoch (its count starts again).
uint32_t consoles_in_flight(engine_entry& e, const api::engine_load& load, bool restarted,
                            steady::time_point now);

// What a loop other than the home one reads of an engine to send it a console: a copy of its
// engine_entry made at its last heartbeat (the console counts are the shared atomics).
struct engine_view {
  std::string url;
  bool known = false;  // it has sent a heartbeat (epoch != 0)
  steady::time_point last_seen{};
  uint32_t active_streams = 0;
  uint32_t max_streams = 0;
  uint64_t bytes_per_second = 0;
  uint64_t max_bytes_per_second = 0;
  uint32_t assigned = 0;
  uint64_t sent_base = 0;
  std::shared_ptr<sent_counter> sent;
  uint32_t assigned_now() const {
    return assigned + static_cast<uint32_t>(sent->total() - sent_base);
  }
};
using engine_views = std::vector<engine_view>;  // by slot

// What a loop other than the home one reads of a segment: its holders, the engines receiving it,
// and the engine told to preload it while that hint holds (claim 16).
struct segment_view {
  std::vector<engine_slot> whole;
  std::vector<engine_slot> filling;
  std::optional<engine_slot> hint;
  steady::time_point hint_until{};
};

// What selection needs to know of one holder.
struct candidate {
  engine_slot engine{};
  bool up = false;
  uint32_t streams = 0;  // reported active streams plus consoles assigned since
  uint32_t max_streams = 0;
  uint64_t bytes_per_second = 0;
  uint64_t max_bytes_per_second = 0;  // 0: unlimited
  // Its last heartbeat within two intervals (at least 0.5 s). One that is late (stopped, its host
  // starved) is up until the heartbeat timeout but may not answer: passed over while a punctual
  // holder qualifies.
  bool punctual = true;
};

// An engine's load relative to its limits: the larger of streams and bandwidth, 1 at a limit.
double load_of(const candidate& c);

// Picks the engine for a console among the holders of a segment: up, under its stream and
// bandwidth limits, punctual if any such is, least loaded relative to its limit. `preferred` (an
// engine told to preload the segment) wins when it qualifies and its load is within one stream of
// the best. Ties go to the lowest `rotation`-shifted position, so equal engines share the work.
// nullopt when none qualifies.
std::optional<engine_slot> choose_engine(const std::vector<candidate>& holders,
                                         std::optional<engine_slot> preferred, uint64_t rotation);

// Whether engine `e` is at `percent` of its stream limit or of its bandwidth budget (counting the
// consoles assigned since its heartbeat). The engine chosen for a console being so is the cheap
// first test of a hot segment, made on every redirect (claim 19).
bool near_limits(const engine_entry& e, uint32_t percent);
bool near_limits(const engine_view& e, uint32_t percent);

// How an engine ranks as the receiver of a copy (claim 18's placement): the lower the better.
// Its stream load and the share of its space in use count alike, so that copies spread over the
// engines of a station by load and free space. `room`: it can take `bytes` without evicting.
struct receiver_rank {
  bool room = false;
  double score = 0;
};
receiver_rank rank_receiver(const engine_entry& e, uint64_t bytes);

class station_tables {
 public:
  // Engines beat every `heartbeat_interval` (one silent for two, and for at least 0.5 s, is late:
  // candidate::punctual) and leave rotation after `heartbeat_timeout` of silence.
  station_tables(std::chrono::milliseconds heartbeat_timeout,
                 std::chrono::milliseconds heartbeat_interval);
  ~station_tables();

  // Applies a heartbeat. Returns resync=true when the director cannot apply changes (unknown
  // engine, new epoch, missed sequence number): the engine then sends its whole inventory.
  api::heartbeat_reply apply(api::heartbeat hb, steady::time_point now);

  // The same in slices (issue 16, item 5: a whole inventory of 100k segments must not hold the
  // home loop for long; apply.cc): begin_apply applies the engine's status and load and answers as
  // apply would; apply_slice then makes the segment changes and publishes them, within about
  // `budget` counting the publication (the copies of the shards its changes touched, estimated
  // from the publications measured so far: publish_cost), and says whether it is done. Every step
  // of the apply is in slices: the changes, the sets built to compare a whole list (the inventory,
  // the copies arriving) with what the engine had, and the freeing of those sets and lists. A slice
  // makes at least one step. A whole inventory first drops what it no longer names, then adds what
  // it names and was not listed; a segment it keeps is never touched, so between slices the engine
  // is never listed for a segment it lacks (a restarted engine that lost part of its disk) and a
  // kept segment never looks lost. The engine's `held` and the locations change together, and
  // copies and removals noted between slices stay as noted. One heartbeat of an engine at a time
  // (the caller serializes them); other changes, other engines' heartbeats among them, may come
  // between slices.
  //
  // Where an apply resumes at its next slice, in the order of the stages (apply.cc says what each
  // does and where it may stop).
  enum class apply_stage : uint8_t {
    removed,            // the removed list applied
    inventory_keys,     // a whole inventory: its keys as a set (job.keys)
    inventory_dropped,  // the copies it no longer names dropped
    inventory_freed,    // that set freed; a returning engine back in rotation
    added,              // the added list applied
    filling_keys,       // the copies arriving (the engine's whole list): their keys as a set
    filling_ended,      // those it no longer names ended
    filling_freed,      // that set freed
    filling_begun,      // the new ones begun
    lists_freed,        // the heartbeat's lists freed, the apply's end
    done,
  };
  // An apply between slices: everything a slice leaves for the next.
  struct apply_job {
    engine_slot engine{};
    api::heartbeat hb;
    apply_stage stage = apply_stage::done;  // where the next slice starts
    size_t pos = 0;  // in the stage's list, or the bucket of the engine's set being walked
    // A whole list's keys as a set: the inventory's (inventory_keys to inventory_freed), the copies
    // arriving (filling_keys to filling_freed).
    std::unordered_set<segment_key> keys;
    size_t buckets = 0;              // the bucket count of the engine's set being walked
    std::vector<segment_key> stale;  // a bucket's keys the list no longer names, to drop
    steady::time_point seen{};       // the heartbeat's arrival
    bool returning = false;          // out of rotation until inventory_freed
  };
  api::heartbeat_reply begin_apply(api::heartbeat hb, steady::time_point now, apply_job& job);
  bool apply_slice(apply_job& job, std::chrono::microseconds budget);

  bool is_up(const engine_entry& e, steady::time_point now) const {
    return e.epoch != 0 && now - e.last_seen <= timeout_;
  }
  // Chooses an engine for segment `key` and counts the console against it: a holder of the whole
  // segment, else one receiving it (it serves while it receives). nullopt: none qualifies (none up,
  // or all at their limits). Reads only what is published (below): the same on every loop.
  std::optional<engine_slot> choose(const segment_key& key, steady::time_point now,
                                    std::optional<engine_slot> preferred = std::nullopt) const;

  // What the home loop publishes for the other loops (issue 16, docs/architecture.md "Every core"),
  // thread-safe to read: the engine views, swapped whole at each heartbeat, and the segments'
  // entries in shards, each shard copied and swapped with the changes of one call of a mutator
  // (apply, note_*, end_filling, set_hint), so that a heartbeat copies the few shards it touches,
  // never the whole table. A reader keeps what it loaded alive for as long as it reads it.
  std::shared_ptr<const engine_views> published_engines() const;
  using shard = std::unordered_map<segment_key, segment_view>;
  struct segment_ref {
    std::shared_ptr<const shard> owner;
    const segment_view* seg = nullptr;  // null: no engine holds or receives it, and no hint
  };
  segment_ref published(const segment_key& key) const;
  // The engine views for the redirect on any loop, through this thread's snapshot
  // (base/snapshot.h), which touches no shared cache line for writing: valid while `pin` lives.
  // (A segment's shard is loaded with published(key): see published_state in tables.cc.)
  const engine_views* published_engines(snapshot_pin& pin) const;
  // choose() on views the caller loaded (a reader on another loop loads them once per request).
  std::optional<engine_slot> choose_on(const engine_views& ev, const segment_view* seg,
                                       steady::time_point now,
                                       std::optional<engine_slot> preferred) const;
  bool is_up(const engine_view& e, steady::time_point now) const {
    return e.known && now - e.last_seen <= timeout_;
  }
  bool is_punctual(steady::time_point last_seen, steady::time_point now) const {
    return now - last_seen <= late_;
  }
  // The engine told to preload `key` (claim 16) until `until`; the hint is published with it.
  void set_hint(const segment_key& key, engine_slot engine, steady::time_point until);
  // The hint of `key` when it holds at `now`.
  std::optional<engine_slot> hint(const segment_key& key, steady::time_point now) const;
  // Whether the hint of `key` still holds at `now` and names an engine that is up.
  bool hint_fresh(const segment_key& key, steady::time_point now) const;
  // Whether every up engine holding or receiving `key` is at `percent` of its limits (and there is
  // at least one): the segment is hot (claim 19).
  bool hot(const segment_key& key, steady::time_point now, uint32_t percent) const;
  // The up holders of the whole segment, least loaded first: sources for a replica.
  std::vector<engine_slot> sources_by_load(const segment_key& key, steady::time_point now) const;
  // The engine choose() would pick, without counting a console.
  std::optional<engine_slot> peek(const segment_key& key, steady::time_point now) const;
  // The engine to name for `key` to another station or to an engine of ours sending a console on
  // (`holder`): by choose_engine's rule (up, under its limits, least loaded; ties to the first),
  // among the engines with a copy of `kind`; never `exclude`.
  // Counts no console. nullopt: none qualifies.
  std::optional<engine_slot> least_loaded(const segment_key& key, steady::time_point now,
                                          copy_kind kind,
                                          std::optional<engine_slot> exclude = std::nullopt) const;
  // The engines a new program's segment at `position` is placed on (claim 18), `copies` of them:
  // the up engines already holding it, then consecutive engines of `up` starting at position mod
  // n, so that every program is served by at least two engines and its load is shared by all.
  std::vector<engine_slot> spread(const segment_key& key, size_t position,
                                  const std::vector<engine_slot>& up, size_t copies,
                                  steady::time_point now) const;

  // The engine that should receive a copy of `key` (`bytes` long): up, neither holding nor
  // receiving it, under its stream limit, not `exclude`; one with room before one that must evict
  // (none of those when `need_room`), then the best rank_receiver. nullopt: none can.
  std::optional<engine_slot> choose_receiver(const segment_key& key, uint64_t bytes,
                                             steady::time_point now,
                                             std::optional<engine_slot> exclude = std::nullopt,
                                             bool need_room = false) const;
  // The copy of `key` to drop when more engines in rotation hold it than the placement's `copies`
  // (an engine came back): the one at the engine with the least room and the most load
  // (rank_receiver). Replicas made for load (`for_load(engine)`) are neither dropped nor counted:
  // they go when idle. nullopt: nothing beyond the placement.
  std::optional<engine_slot> surplus_copy(const segment_key& key, steady::time_point now,
                                          size_t copies,
                                          const std::function<bool(engine_slot)>& for_load) const;
  // Copies of `key` the station can count on: whole copies at engines that are up or were seen
  // within `grace` (they may come back), plus copies arriving at engines that are up.
  size_t present_copies(const segment_key& key, steady::time_point now,
                        std::chrono::milliseconds grace) const;
  // Every segment some engine holds (up or not) or receives, for the placement scan.
  template <class F>
  void for_each_segment(F f) const {
    for (auto& [key, engines] : locations_) {
      f(key);
    }
    for (auto& [key, engines] : filling_) {
      if (!locations_.contains(key)) {
        f(key);
      }
    }
  }

  // Engines (up or not) holding `key` whole.
  const std::vector<engine_slot>& holders(const segment_key& key) const;
  // Engines (up or not) receiving `key`.
  const std::vector<engine_slot>& filling(const segment_key& key) const;
  size_t up_holders(const segment_key& key, steady::time_point now) const;
  std::vector<engine_slot> up_engines(steady::time_point now) const;

  std::vector<engine_slot> all_engines() const;  // in slot order
  const engine_entry& engine(engine_slot i) const { return *engines_.at(index_of(i)); }
  engine_entry& engine_mut(engine_slot i) { return *engines_.at(index_of(i)); }
  size_t engine_count() const { return engines_.size(); }
  std::optional<engine_slot> find_engine(std::string_view name) const;
  size_t location_count() const { return locations_.size(); }

  // Counts a copy of `bytes` as ordered to an engine from the moment it is chosen, before the
  // order is even sent: copies chosen meanwhile (several are ordered at once) go elsewhere.
  void note_ordered(engine_slot engine, uint64_t bytes) {
    engine_mut(engine).pending_bytes += bytes;
  }
  // The order did not go through: its bytes no longer count.
  void note_order_failed(engine_slot engine, uint64_t bytes) {
    auto& p = engine_mut(engine).pending_bytes;
    p -= std::min(p, bytes);
  }
  // Records a copy an engine has just reported done, before its heartbeat says so. `mark`: the
  // engine's last heartbeat when it answered (api::heartbeat_header), if it said.
  void note_copy(engine_slot engine, const segment_key& key,
                 std::optional<api::heartbeat_mark> mark = std::nullopt) {
    if (note(engine, key, engine_entry::note_kind::held, mark)) {
      add_location(engine, key);
      publish();
    }
  }
  // Records a copy an engine has just accepted to receive, before its heartbeat says so.
  void note_filling(engine_slot engine, const segment_key& key,
                    std::optional<api::heartbeat_mark> mark = std::nullopt) {
    if (note(engine, key, engine_entry::note_kind::filling, mark)) {
      add_filling(engine, key);
      publish();
    }
  }
  // Forgets a copy an engine is allowed to evict, before its heartbeat says so.
  void note_removal(engine_slot engine, const segment_key& key) {
    note(engine, key, engine_entry::note_kind::removed, std::nullopt);
    remove_location(engine, key);
    publish();
  }
  // Forgets a copy that an engine reported failed, before its heartbeat says so.
  void end_filling(engine_slot engine, const segment_key& key) {
    remove_filling(engine, key);
    publish();
  }
  // Counts a console just sent to an engine, until a heartbeat written after it arrived. Home loop
  // only (engines_ may grow); other loops count on their engine_view's `sent`.
  void note_sent(engine_slot e, steady::time_point now) const { engine(e).sent->add(now); }
  // Records that an engine refused a console at its stream limit: it counts as full until its
  // next heartbeat.
  void note_full(engine_slot engine) {
    auto& e = engine_mut(engine);
    uint32_t a = e.assigned_now();
    if (e.load.active_streams + a < e.load.max_streams) {
      uint32_t n = e.load.max_streams - e.load.active_streams - a;
      e.sent->add_extra(n);
      e.consoles.add_phantoms(n);
    }
  }
  // What publishing costs per segment changed (the copy of its shard), which a slice counts in
  // its budget: measured at each publication (a moving average) unless fixed here (tests).
  std::chrono::nanoseconds publish_cost() const { return publish_cost_; }
  void fix_publish_cost(std::chrono::nanoseconds per_segment) {
    publish_cost_ = per_segment;
    measure_publish_ = false;
  }
  // Shards copied and published since the start.
  uint64_t shards_published() const { return shards_published_; }
  // Changes since the last call, for the registry: station-level ones (a segment gaining its first
  // whole copy in the station, or losing its last) and each engine's (holding, receiving).
  std::vector<api::location_change> drain_changes();
  // Whether changes are kept for drain_changes (by default they are). A director without a
  // registry never drains them: kept, they grew with every segment that ever came or went, and
  // with them the cost of each heartbeat's change (an ordered map's insert).
  void keep_changes(bool on) {
    keep_changes_ = on;
    if (!on) {
      changes_.clear();
      engine_changes_.clear();
    }
  }

 private:
  // The holders of `key` as candidates, in scratch_ (valid until the next call).
  const std::vector<candidate>& candidates(const segment_key& key, steady::time_point now,
                                           copy_kind kind = copy_kind::whole) const;
  void add_location(engine_slot engine, const segment_key& key);
  // Keeps a change against the heartbeats that may not know of it (engine_entry::noted). False:
  // a heartbeat written after `mark` has been applied (or is being applied), which says what became
  // of it: the change is not made.
  bool note(engine_slot engine, const segment_key& key, engine_entry::note_kind kind,
            std::optional<api::heartbeat_mark> mark);
  void remove_location(engine_slot engine, const segment_key& key);
  void forget_location(engine_slot engine, const segment_key& key);
  void add_filling(engine_slot engine, const segment_key& key);
  void remove_filling(engine_slot engine, const segment_key& key);
  void note_engine_change(engine_slot engine, const segment_key& key, bool filling, bool held);
  class heartbeat_slice;  // apply.cc: one slice of apply_slice
  // Publishes the shards of the segments changed since the last call (dirty_).
  void publish();
  void publish_engines();

  // About 6 segments a shard at 100k: publishing a change copies a shard of a few entries.
  static constexpr size_t shard_count = 16384;
  struct published_state;  // tables.cc: the atomics the other loops read

  std::chrono::milliseconds timeout_;
  std::chrono::milliseconds late_;  // two heartbeat intervals, at least 0.5 s
  std::vector<std::unique_ptr<engine_entry>> engines_;
  std::unordered_map<segment_key, std::vector<engine_slot>> locations_;
  std::unordered_map<segment_key, std::vector<engine_slot>> filling_;
  struct hint_entry {
    engine_slot engine{};
    steady::time_point until{};
  };
  std::unordered_map<segment_key, hint_entry> hints_;
  std::vector<segment_key> dirty_;               // changed since the last publish()
  std::chrono::nanoseconds publish_cost_{2000};  // per dirty_ entry (a first guess, then measured)
  bool measure_publish_ = true;
  uint64_t shards_published_ = 0;
  std::unique_ptr<published_state> published_;
  std::unordered_map<segment_key, bool> changes_;  // the last word on each segment since a drain
  // The same per (segment, engine, receiving or whole).
  std::map<std::tuple<segment_key, engine_slot, bool>, bool> engine_changes_;
  bool keep_changes_ = true;
  mutable std::vector<candidate> scratch_;  // candidates(): reused, not allocated per console
  // Below everything else: written by every loop.
  alignas(64) mutable std::atomic<uint64_t> rotation_{0};
};

}  // namespace vodgrid::director
