// The simulated grid's state and the decisions it makes (private to src/sim): stations with their
// engines and holdings, the registry's holders, copies in flight, and what each console request
// does. Every choice is made by the project's own functions; this file keeps only the bookkeeping
// the daemons keep in their tables and databases.
#pragma once

#include <boost/heap/d_ary_heap.hpp>
#include <boost/unordered/unordered_flat_map.hpp>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "director/tables.h"
#include "engine/decisions.h"
#include "registry/cost.h"
#include "sim/sim.h"
#include "sim/world.h"

namespace vodgrid::sim {

constexpr uint32_t max_engines = 16;  // engines of a station: a bit each in a holding's masks

// One engine's copy of a segment (whole or still arriving: the station's holding says which).
struct held_copy {
  double last_used = 0;  // 0: never asked for (eviction offers it first)
  uint32_t streams = 0;
  uint32_t gathered = 0;  // the make_room pass that last took it as a candidate
};

// A copy's last use as it happened: (last_used, segment). Stale once the copy is used again or
// gone; make_room tells by its held_copy.
using use = std::pair<double, uint32_t>;

struct sim_engine {
  uint16_t station = 0;
  uint32_t peak_streams = 0;
  director::engine_entry entry;  // what the director's rules read: load, limits, disk
  uint32_t held = 0;             // copies it holds or receives
  // Its whole copies' uses, oldest first: never asked for, then the others by last use (the
  // simulated clock only goes on). make_room reads the oldest from here rather than every copy.
  // Vectors: the uses are appended, or inserted near the back, and read from the front once a
  // make_room pass (which then drops what it walked past, a move of the rest).
  std::vector<use> never_used, uses;
  uint32_t passes = 0;  // make_room passes
};

constexpr uint32_t no_copies = UINT32_MAX;

// Which engines of a station hold a segment whole, which are receiving it, and where their copies
// are: `copies` + (engine's bit) in the station's copies.
struct holding {
  uint16_t whole = 0;
  uint16_t filling = 0;
  uint32_t copies = no_copies;
};

struct sim_station {
  const station_spec* spec = nullptr;
  uint32_t first_engine = 0;
  uint32_t streams = 0;
  uint32_t peak_streams = 0;
  uint32_t copies_out = 0;  // copies it is sending
  uint32_t copies_in = 0;   // copies it is receiving from other stations
  uint64_t rotation = 0;    // choose_engine's tie breaker
  boost::unordered_flat_map<uint32_t, holding> holds;
  // The copies of each segment it holds, one per engine, in the same place: the holding names
  // them, and a console's session keeps its copy's place (no look-up when its segment ends).
  // Places of segments no longer held are reused.
  std::vector<held_copy> copies;
  std::vector<uint32_t> free_copies;
  uint32_t prefetch_next = 0;  // position in the distribution's queue
  uint32_t prefetch_workers = 0;
  int64_t last_report_slot = -1;  // the registry link's last report, in 250 ms slots
};

struct copy_in_flight {
  uint32_t segment = 0;
  uint16_t from = 0, to = 0;
  uint32_t engine = 0;  // the receiving engine (global index)
  double bits_per_second = 0;
  double started = 0;
  bool prefetch = false;
};

// A viewer session while it plays: what each of its segment ends reads, in one place (one cache
// miss per segment rather than one per array).
struct sim_session {
  uint32_t engine = UINT32_MAX;  // the engine streaming to it, or none
  uint32_t first_segment = 0;    // its program's first segment's global number
  uint32_t copy = no_copies;     // the copy streaming, in its station's copies (none at the home)
  uint16_t station = 0;
  uint16_t watched = 0;
  uint16_t segments = 1;  // how many it watches
};

struct event {
  double at = 0;
  uint32_t id = 0;
  bool copy = false;  // copy `id` ends; else session `id`'s segment ends
  bool operator>(const event& o) const {
    return at != o.at ? at > o.at : (copy != o.copy ? copy < o.copy : id > o.id);
  }
};

class grid_sim {
 public:
  grid_sim(const options& o, const world& w);
  outcome run();

 private:
  enum class tier { engine, station, other, home, refused };

  uint64_t segment_bytes() const { return bytes_; }
  uint32_t segment_of(uint32_t program, uint32_t index) const {
    return w_.first_segment[program] + index;
  }
  bool holds_whole(uint16_t station, uint32_t seg) const;
  // holds_whole for a segment of more than scan_limit holders, by a bit per station.
  struct dense_test {
    const uint64_t* bits;
    bool operator()(uint16_t station) const {
      return station == 0 || ((bits[station >> 6] >> (station & 63)) & 1) != 0;
    }
  };
  dense_test whole_holders(uint32_t seg) const;
  holding holding_of(uint16_t station, uint32_t seg) const;

  // Console requests.
  void arrive(uint32_t session, double now);
  void segment_end_at(uint32_t session, double at);
  void segment_end(uint32_t session, double now);
  tier serve(uint32_t session, uint32_t seg, double now);
  std::optional<uint32_t> choose_console_engine(uint16_t station, uint32_t seg, uint16_t mask);
  void attach(uint32_t session, uint32_t engine, uint32_t seg, double now);
  held_copy* whole_copy(uint32_t engine, uint32_t seg);

  // Copies.
  std::optional<uint32_t> choose_receiver(uint16_t station, uint32_t seg, bool need_room);
  bool make_room(uint32_t engine, double now);
  void used(uint32_t engine, uint32_t seg, double when);
  void gather_eviction_candidates(uint32_t engine, uint64_t over);
  void evict(uint32_t engine, uint32_t seg, double now);
  std::optional<uint16_t> pick_source(uint16_t seeker, uint32_t seg, double now);
  void gather_candidates(uint16_t seeker, uint32_t seg);
  bool start_copy(uint16_t seeker, uint32_t seg, uint32_t engine, uint16_t source, bool prefetch,
                  double now);
  void copy_done(uint32_t id, double now);
  bool local_copy(uint16_t station, uint32_t seg, bool need_room, double now);
  void place(uint16_t station, uint32_t seg, double now);
  void prefetch(uint16_t station, double now);

  // Bookkeeping.
  // The engine's copy of `seg` turned on or off (whole, or arriving); on: its held_copy, reset.
  held_copy* set_holding(uint16_t station, uint32_t seg, uint32_t engine, bool whole, bool on);
  held_copy& arrived_whole(uint16_t station, uint32_t seg, uint32_t engine);
  void whole_holder_changed(uint16_t station, uint32_t seg, bool has);
  void location_report(uint16_t station, double now);
  void registry_request(double now, uint64_t n = 1);
  void sync_load(uint32_t engine);

  const options& o_;
  const world& w_;
  uint64_t bytes_;
  uint64_t packager_bytes_;       // what the cost model prices: one packager segment
  uint64_t lookups_per_segment_;  // the packager segments a simulated one stands for
  std::vector<sim_station> stations_;
  // Per station what the registry knows of it, the cost model's input: apart from the stations'
  // other state, so that a lookup's ranking reads a hundred kilobytes that stay in the cache, not
  // a line of each station's record.
  std::vector<registry::station_inputs> inputs_;
  // The consoles sent to each engine since its heartbeat, which the director's rules read
  // (assigned_now): never any here, so one counter for every engine, which stays in the cache.
  std::shared_ptr<director::sent_counter> no_consoles_sent_ =
      std::make_shared<director::sent_counter>();
  std::vector<sim_engine> engines_;
  // Per segment: the stations other than the home that hold it whole, and, once it has had more
  // than scan_limit of them, 1 + the index of the same as a bit per station in dense_holders_
  // (0: none): the registry's scans of the nearest and best connected stations test these, not
  // each station's table (a cache miss each). Side by side, one cache line for both.
  struct segment_holders {
    std::vector<uint16_t> stations;
    uint32_t dense = 0;
  };
  std::vector<segment_holders> holders_;
  std::vector<std::vector<uint64_t>> dense_holders_;
  std::vector<copy_in_flight> copies_;
  std::vector<uint32_t> free_copies_;
  // Copy ends wait in a 4-ary heap: the same order as any priority queue (events are totally
  // ordered), with half the levels of a binary one, each a likely cache miss in a queue of tens of
  // thousands. Segment ends, the most of the events, come at a fixed time after the present, so in
  // order: they wait in a queue kept sorted (by event order), and the next event is the earlier of
  // the two fronts, the order the one heap of both gave.
  boost::heap::d_ary_heap<event, boost::heap::arity<4>, boost::heap::compare<std::greater<>>>
      events_;
  std::deque<event> ends_;
  std::vector<sim_session> sessions_;
  // Per station what distance and uplink comparisons read, packed (the specs are wide and
  // scattered): a lookup compares hundreds of holders.
  struct station_place {
    double x_km = 0, y_km = 0;
    double uplink_bits_per_second = 0;
  };
  std::vector<station_place> places_;
  std::vector<std::pair<double, uint16_t>> by_scratch_;       // gather_candidates' orders
  std::vector<engine::eviction_candidate> eviction_scratch_;  // make_room's candidates
  program_id any_program_;  // the program every eviction candidate's key names (make_room)
  std::vector<std::vector<uint16_t>> nearest_;  // per station: the others, nearest first
  std::vector<uint16_t> best_connected_;        // stations by uplink, widest first
  // Every station's place in the order by uplink (widest first, ties to the lower index): the
  // best connected of a few holders are the smallest of these, compared as integers.
  std::vector<uint16_t> uplink_rank_, by_uplink_rank_;
  std::vector<uint16_t> rank_scratch_;
  std::vector<uint32_t> registry_per_second_;
  std::vector<uint32_t> stamp_;  // candidate dedup
  uint32_t stamp_now_ = 0;
  std::vector<uint16_t> scratch_ids_;  // a lookup's candidates, for the ranking
  std::vector<director::candidate> candidates_;
  uint64_t prefetch_total_ = 0;  // queue length of each station's distribution
  uint64_t sessions_now_ = 0;
  double copy_seconds_ = 0;
  outcome out_;
};

}  // namespace vodgrid::sim
