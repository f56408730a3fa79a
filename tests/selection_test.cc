// Unit tests of the director's tables: heartbeats, locations, the choice of an engine (claim 18)
// for a console, for another station (`holder`) and for a new program's copies.
#include <gtest/gtest.h>

#include <map>

#include "director/tables.h"

namespace vodgrid::director {

// Failures print a slot as its number.
void PrintTo(engine_slot s, std::ostream* os) {
  *os << "slot " << index_of(s);
}

namespace {

using namespace std::chrono_literals;

constexpr engine_slot slot(uint32_t i) {
  return engine_slot{i};
}

candidate c(uint32_t e, uint32_t streams, uint32_t max = 10, bool up = true) {
  return candidate{slot(e), up, streams, max, 0, 0};
}

TEST(ChooseEngine, PicksTheLeastLoadedRelativeToItsLimit) {
  EXPECT_EQ(choose_engine({c(0, 5), c(1, 2), c(2, 7)}, std::nullopt, 0), slot(1));
  // 5 of 100 is lighter than 2 of 10.
  EXPECT_EQ(choose_engine({c(0, 5, 100), c(1, 2, 10)}, std::nullopt, 0), slot(0));
}

TEST(ChooseEngine, SkipsEnginesDownOrAtTheirLimit) {
  EXPECT_EQ(choose_engine({c(0, 0, 10, false), c(1, 9)}, std::nullopt, 0), slot(1));
  EXPECT_EQ(choose_engine({c(0, 10), c(1, 3, 10, false)}, std::nullopt, 0), std::nullopt);
  EXPECT_EQ(choose_engine({}, std::nullopt, 0), std::nullopt);
  candidate busy{slot(0), true, 0, 10, 1000, 1000};  // bandwidth budget used up
  EXPECT_EQ(choose_engine({busy, c(1, 9)}, std::nullopt, 0), slot(1));
}

TEST(ChooseEngine, PrefersThePreloadedEngineWhenNearlyAsLight) {
  EXPECT_EQ(choose_engine({c(0, 2), c(1, 3)}, slot(1), 0), slot(1));
  EXPECT_EQ(choose_engine({c(0, 2), c(1, 8)}, slot(1), 0), slot(0));
  EXPECT_EQ(choose_engine({c(0, 2), c(1, 10)}, slot(1), 0), slot(0));
}

TEST(ChooseEngine, ALateEngineServesOnlyWhenNoPunctualOneQualifies) {
  auto late = [](uint32_t e, uint32_t streams) {
    auto x = c(e, streams);
    x.punctual = false;
    return x;
  };
  // The lighter engine is late: the punctual one, whatever the rotation or the preload hint.
  for (uint64_t r = 0; r < 4; ++r) {
    EXPECT_EQ(choose_engine({late(0, 0), c(1, 8)}, std::nullopt, r), slot(1)) << r;
    EXPECT_EQ(choose_engine({late(0, 0), c(1, 8)}, slot(0), r), slot(1)) << r;
  }
  // The punctual one at its limit (or down): the late one rather than none.
  EXPECT_EQ(choose_engine({late(0, 3), c(1, 10)}, std::nullopt, 0), slot(0));
  EXPECT_EQ(choose_engine({late(0, 3), c(1, 0, 10, false)}, std::nullopt, 0), slot(0));
  // Among late ones, the least loaded as ever.
  EXPECT_EQ(choose_engine({late(0, 5), late(1, 2)}, std::nullopt, 0), slot(1));
}

TEST(ChooseEngine, RotationSharesTiesAcrossEngines) {
  std::map<engine_slot, int> hits;
  for (uint64_t r = 0; r < 9; ++r) {
    ++hits[*choose_engine({c(0, 1), c(1, 1), c(2, 1)}, std::nullopt, r)];
  }
  EXPECT_EQ(hits.size(), 3u);
  EXPECT_EQ(hits[slot(0)], 3);
}

api::heartbeat beat(std::string name, uint64_t epoch, uint64_t seq, bool full,
                    std::vector<uint32_t> added = {}, std::vector<uint32_t> removed = {}) {
  api::heartbeat hb;
  hb.engine = *engine_id::parse(name);
  hb.url = "http://" + name;
  hb.epoch = epoch;
  hb.seq = seq;
  hb.full = full;
  hb.load.max_streams = 2;
  for (auto i : added) {
    hb.added.push_back({{*program_id::parse("p"), segment_index{i}}, 1, {}});
  }
  for (auto i : removed) {
    hb.removed.push_back({*program_id::parse("p"), segment_index{i}});
  }
  return hb;
}

segment_key key(uint32_t i) {
  return {*program_id::parse("p"), segment_index{i}};
}

TEST(StationTables, HeartbeatsBuildTheLocationTable) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  EXPECT_FALSE(t.apply(beat("a", 1, 1, true, {0, 1}), now).resync);
  EXPECT_FALSE(t.apply(beat("b", 9, 1, true, {1}), now).resync);
  EXPECT_EQ(t.holders(key(0)).size(), 1u);
  EXPECT_EQ(t.holders(key(1)).size(), 2u);
  EXPECT_FALSE(t.apply(beat("a", 1, 2, false, {2}, {0}), now).resync);
  EXPECT_TRUE(t.holders(key(0)).empty());
  EXPECT_EQ(t.holders(key(2)).size(), 1u);
}

// The changes reported to the registry are kept until drained; a director without a registry
// keeps none (nothing would drain them), and its tables change all the same.
TEST(StationTables, ChangesAreKeptForTheRegistryOnlyWhileAsked) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  t.apply(beat("a", 1, 1, true, {0, 1}), now);
  auto first = t.drain_changes();
  ASSERT_EQ(first.size(), 4u);  // segments 0 and 1: the station's first copy, and engine a's
  for (auto& c : first) {
    EXPECT_TRUE(c.held);
    EXPECT_FALSE(c.filling);
  }
  EXPECT_TRUE(t.drain_changes().empty());

  t.keep_changes(false);
  t.apply(beat("a", 1, 2, false, {2}, {0}), now);
  t.note_copy(slot(0), key(3));
  t.note_removal(slot(0), key(1));
  EXPECT_TRUE(t.drain_changes().empty());
  EXPECT_TRUE(t.holders(key(0)).empty());
  EXPECT_TRUE(t.holders(key(1)).empty());
  EXPECT_EQ(t.holders(key(2)), std::vector<engine_slot>{slot(0)});
  EXPECT_EQ(t.holders(key(3)), std::vector<engine_slot>{slot(0)});

  t.keep_changes(true);  // from now on only
  t.apply(beat("a", 1, 3, false, {5}), now);
  auto later = t.drain_changes();
  ASSERT_EQ(later.size(), 2u);
  for (auto& c : later) {
    EXPECT_EQ(c.key, key(5));
    EXPECT_TRUE(c.held);
  }
}

// An engine's slot is given at its first heartbeat and kept when it restarts (a new epoch).
TEST(StationTables, AnEngineKeepsTheSlotOfItsFirstHeartbeat) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  t.apply(beat("a", 1, 1, true), now);
  t.apply(beat("b", 1, 1, true), now);
  EXPECT_EQ(t.find_engine("a"), slot(0));
  EXPECT_EQ(t.find_engine("b"), slot(1));
  EXPECT_EQ(t.find_engine("c"), std::nullopt);
  t.apply(beat("a", 2, 1, true), now);  // restarted
  EXPECT_EQ(t.find_engine("a"), slot(0));
  EXPECT_EQ(t.all_engines(), (std::vector<engine_slot>{slot(0), slot(1)}));
  EXPECT_EQ(t.engine(slot(1)).name.str(), "b");
}

TEST(StationTables, AGapOrANewEpochAsksForTheWholeInventory) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  EXPECT_TRUE(t.apply(beat("a", 1, 5, false, {0}), now).resync);  // never heard of it
  t.apply(beat("a", 1, 1, true, {0}), now);
  EXPECT_TRUE(t.apply(beat("a", 1, 3, false, {1}), now).resync);  // seq 2 lost
  EXPECT_TRUE(t.holders(key(1)).empty());
  EXPECT_TRUE(t.apply(beat("a", 2, 2, false, {1}), now).resync);  // restarted
  // A full inventory replaces what was known.
  EXPECT_FALSE(t.apply(beat("a", 2, 1, true, {1}), now).resync);
  EXPECT_TRUE(t.holders(key(0)).empty());
  EXPECT_EQ(t.holders(key(1)).size(), 1u);
}

// A large full heartbeat is decoded off the loop: a newer one may be applied before it.
TEST(StationTables, AnOlderFullInventoryAppliedLateChangesNothing) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  t.apply(beat("a", 1, 1, true, {0, 1}), now);
  EXPECT_FALSE(t.apply(beat("a", 1, 3, true, {1}), now).resync);     // 0 evicted meanwhile
  EXPECT_FALSE(t.apply(beat("a", 1, 2, true, {0, 1}), now).resync);  // the older one, late
  EXPECT_TRUE(t.holders(key(0)).empty());
  EXPECT_EQ(t.holders(key(1)).size(), 1u);
  // The sequence goes on from the newer one.
  EXPECT_FALSE(t.apply(beat("a", 1, 4, false, {2}), now).resync);
  EXPECT_EQ(t.holders(key(2)).size(), 1u);
}

// Issue 16, item 5: a whole inventory applied in slices, each published. A segment the engine
// keeps is never without it between slices (a console there would be sent to another station);
// the end is what applying it at once gives.
TEST(StationTables, AWholeInventoryInSlicesNeverLosesASegmentItKeeps) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  std::vector<uint32_t> first;
  std::vector<uint32_t> second;
  for (uint32_t i = 0; i < 3000; ++i) {
    first.push_back(i);
    second.push_back(i + 1000);
  }
  t.apply(beat("a", 1, 1, true, first), now);
  station_tables::apply_job job;
  EXPECT_FALSE(t.begin_apply(beat("a", 2, 1, true, second), now, job).resync);
  int slices = 0;
  while (!t.apply_slice(job, 0us)) {  // a slice a change (every 8 steps without one)
    ++slices;
    for (uint32_t i = 1000; i < 3000; i += 7) {
      auto s = t.published(key(i));
      ASSERT_TRUE(s.seg && s.seg->whole == std::vector<engine_slot>{slot(0)})
          << "segment " << i << " after slice " << slices;
    }
  }
  EXPECT_GT(slices, 100);
  for (uint32_t i : {0u, 500u, 999u}) {
    EXPECT_TRUE(t.holders(key(i)).empty()) << i;
    EXPECT_FALSE(t.published(key(i)).seg) << i;
  }
  for (uint32_t i : {1000u, 2999u, 3000u, 3999u}) {
    EXPECT_EQ(t.holders(key(i)), std::vector<engine_slot>{slot(0)}) << i;
    auto s = t.published(key(i));
    ASSERT_TRUE(s.seg) << i;
    EXPECT_EQ(s.seg->whole, std::vector<engine_slot>{slot(0)}) << i;
  }
  EXPECT_EQ(t.engine(slot(0)).held.size(), 3000u);
  EXPECT_EQ(t.location_count(), 3000u);
}

// A restarted engine that lost part of its disk: while its whole inventory is applied in slices,
// it is never up and listed for a segment it no longer holds (consoles would get 404s, and
// maintenance would count its lost copy as an up holder); it is up once that is so.
TEST(StationTables, ARestartedEngineIsNeverUpAndListedForASegmentItLost) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  std::vector<uint32_t> first;
  std::vector<uint32_t> second;
  for (uint32_t i = 0; i < 3000; ++i) {
    first.push_back(i);
    if (i >= 1000) {
      second.push_back(i);
    }
  }
  for (uint32_t i = 3000; i < 4000; ++i) {
    second.push_back(i);
  }
  t.apply(beat("a", 1, 1, true, first), now);
  station_tables::apply_job job;
  EXPECT_FALSE(t.begin_apply(beat("a", 2, 1, true, second), now, job).resync);
  int slices = 0;
  int slices_up = 0;
  auto check = [&] {
    auto& e = t.engine(slot(0));
    bool up = t.is_up(e, now);
    EXPECT_EQ(t.published_engines()->at(0).last_seen, e.last_seen);
    if (!up) {
      return;
    }
    ++slices_up;
    for (uint32_t i = 0; i < 1000; i += 7) {
      ASSERT_TRUE(t.holders(key(i)).empty()) << "segment " << i << " after slice " << slices;
      ASSERT_FALSE(t.published(key(i)).seg) << "segment " << i << " after slice " << slices;
    }
  };
  check();
  while (!t.apply_slice(job, 0us)) {
    ++slices;
    check();
  }
  check();
  EXPECT_GT(slices, 100);
  EXPECT_GT(slices_up, 1);  // back in rotation before the segments it gained are all listed
  EXPECT_TRUE(t.is_up(t.engine(slot(0)), now));
  EXPECT_EQ(t.engine(slot(0)).held.size(), 3000u);
  EXPECT_EQ(t.location_count(), 3000u);
  EXPECT_EQ(t.holders(key(3999)), std::vector<engine_slot>{slot(0)});
}

// A copy or a removal noted between the slices of a whole inventory (written before it) stays as
// noted, and the engine's set and the locations agree: the next inventory naming the segment again
// lists the engine for it.
TEST(StationTables, CopiesAndRemovalsNotedBetweenSlicesStayAndTheTablesAgree) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  std::vector<uint32_t> all;
  for (uint32_t i = 0; i < 3000; ++i) {
    all.push_back(i);
  }
  t.apply(beat("a", 1, 1, true, all), now);
  station_tables::apply_job job;
  EXPECT_FALSE(t.begin_apply(beat("a", 1, 2, true, all), now, job).resync);
  int slices = 0;
  while (!t.apply_slice(job, 0us)) {
    if (++slices == 20) {
      t.note_removal(slot(0), key(2999));  // eviction granted
      t.note_copy(slot(0), key(5000));     // copy done
    }
  }
  ASSERT_GE(slices, 20);
  auto agree = [&](uint32_t i) {
    bool held = t.engine(slot(0)).held.contains(key(i));
    bool listed = t.holders(key(i)) == std::vector<engine_slot>{slot(0)};
    EXPECT_EQ(held, listed) << "segment " << i;
    return held && listed;
  };
  EXPECT_FALSE(agree(2999));
  EXPECT_TRUE(agree(5000));
  EXPECT_TRUE(agree(0));
  t.apply(beat("a", 1, 3, true, all), now);
  EXPECT_TRUE(agree(2999));
  EXPECT_FALSE(agree(5000));
  EXPECT_EQ(t.engine(slot(0)).held.size(), 3000u);
  EXPECT_EQ(t.location_count(), 3000u);
}

// Issue 16, item 5: a slice's budget counts the publication of its changes (each copies the
// shard of the segment it changed), not only the changes: with a publication fixed at 1 µs a
// segment, a slice of 8 µs publishes at most 8 shards, for a delta and for a whole inventory
// alike, and the tables end as applying the heartbeats at once would leave them.
TEST(StationTables, ASliceCountsThePublicationOfItsChangesInItsBudget) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  std::vector<uint32_t> first;
  std::vector<uint32_t> added;
  std::vector<uint32_t> removed;
  std::vector<uint32_t> whole;
  for (uint32_t i = 0; i < 3000; ++i) {
    first.push_back(i);
    whole.push_back(i + 2000);
  }
  for (uint32_t i = 0; i < 1000; ++i) {
    added.push_back(3000 + i);
    removed.push_back(i);
  }
  t.apply(beat("a", 1, 1, true, first), now);
  t.fix_publish_cost(1us);
  auto in_slices = [&](api::heartbeat hb) {
    station_tables::apply_job job;
    EXPECT_FALSE(t.begin_apply(std::move(hb), now, job).resync);
    int slices = 0;
    bool done = false;
    while (!done) {
      uint64_t before = t.shards_published();
      done = t.apply_slice(job, 8us);
      ++slices;
      EXPECT_LE(t.shards_published() - before, 8u) << "slice " << slices;
    }
    return slices;
  };
  EXPECT_GE(in_slices(beat("a", 1, 2, false, added, removed)), 2000 / 8);
  EXPECT_TRUE(t.holders(key(999)).empty());
  EXPECT_EQ(t.holders(key(1000)), std::vector<engine_slot>{slot(0)});
  EXPECT_EQ(t.holders(key(3999)), std::vector<engine_slot>{slot(0)});
  // Keeps 2000-3999, drops 1000-1999, adds 4000-4999.
  EXPECT_GE(in_slices(beat("a", 1, 3, true, whole)), 2000 / 8);
  EXPECT_TRUE(t.holders(key(1999)).empty());
  EXPECT_FALSE(t.published(key(1999)).seg);
  EXPECT_EQ(t.holders(key(2000)), std::vector<engine_slot>{slot(0)});
  auto s = t.published(key(4999));
  ASSERT_TRUE(s.seg);
  EXPECT_EQ(s.seg->whole, std::vector<engine_slot>{slot(0)});
  EXPECT_EQ(t.engine(slot(0)).held.size(), 3000u);
  EXPECT_EQ(t.location_count(), 3000u);
}

// Copies arriving (the engine's whole `filling` list) are applied in slices too: those it no
// longer names end, the new ones begin, within the same budget.
TEST(StationTables, CopiesArrivingAreAppliedInSlicesWithinTheBudget) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  auto hb = beat("a", 1, 1, true, {});
  for (uint32_t i = 0; i < 500; ++i) {
    hb.filling.push_back(key(i));
  }
  t.apply(std::move(hb), now);
  EXPECT_EQ(t.filling(key(0)), std::vector<engine_slot>{slot(0)});
  t.fix_publish_cost(1us);
  hb = beat("a", 1, 2, false);
  for (uint32_t i = 250; i < 750; ++i) {
    hb.filling.push_back(key(i));
  }
  station_tables::apply_job job;
  t.begin_apply(std::move(hb), now, job);
  int slices = 0;
  bool done = false;
  while (!done) {
    uint64_t before = t.shards_published();
    done = t.apply_slice(job, 4us);
    ++slices;
    EXPECT_LE(t.shards_published() - before, 4u) << "slice " << slices;
  }
  EXPECT_GE(slices, 500 / 4);
  EXPECT_TRUE(t.filling(key(249)).empty());
  EXPECT_FALSE(t.published(key(249)).seg);
  EXPECT_EQ(t.filling(key(250)), std::vector<engine_slot>{slot(0)});
  EXPECT_EQ(t.filling(key(749)), std::vector<engine_slot>{slot(0)});
  EXPECT_EQ(t.engine(slot(0)).filling.size(), 500u);
}

// An engine wrote heartbeat 2 and took an order (a copy arriving, another done) before the
// director applied it: heartbeat 2 reaches the director after the order's answer, naming neither.
// The director keeps both, and a console sent meanwhile goes to the engine, not elsewhere (the
// Eviction.EvictionsReachTheRegistry failure of stop 28); heartbeat 3 is what the engine says then.
TEST(StationTables, AHeartbeatWrittenBeforeAnOrderLeavesWhatTheOrdersAnswerNoted) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  t.apply(beat("a", 7, 1, true, {0}), now);
  t.note_filling(slot(0), key(1), api::heartbeat_mark{7, 2});
  t.note_copy(slot(0), key(2), api::heartbeat_mark{7, 2});
  t.apply(beat("a", 7, 2, false), now);
  EXPECT_EQ(t.filling(key(1)), std::vector<engine_slot>{slot(0)});
  EXPECT_EQ(t.choose(key(1), now), slot(0));
  EXPECT_EQ(t.holders(key(2)), std::vector<engine_slot>{slot(0)});
  // A whole inventory written before the order does not drop the copy either.
  t.note_copy(slot(0), key(3), api::heartbeat_mark{7, 3});
  t.apply(beat("a", 7, 3, true, {0, 2}), now);
  EXPECT_EQ(t.holders(key(3)), std::vector<engine_slot>{slot(0)});
  // Heartbeat 4 was written after the answers: the copy of 1 has ended (failed), 3 was evicted.
  t.apply(beat("a", 7, 4, false, {}, {3}), now);
  EXPECT_TRUE(t.filling(key(1)).empty());
  EXPECT_EQ(t.choose(key(1), now), std::nullopt);
  EXPECT_TRUE(t.holders(key(3)).empty());
  EXPECT_EQ(t.holders(key(2)), std::vector<engine_slot>{slot(0)});
  EXPECT_TRUE(t.engine(slot(0)).noted.empty());
}

// An answer older than a heartbeat already applied changes nothing: that heartbeat said what
// became of the order (here the copy had ended before heartbeat 3 was written). So does a mark of
// another epoch noted outside an apply: the engine's next heartbeats decide.
TEST(StationTables, AnOrdersAnswerOlderThanAnAppliedHeartbeatChangesNothing) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  t.apply(beat("a", 7, 1, true, {0}), now);
  t.apply(beat("a", 7, 2, false), now);
  t.apply(beat("a", 7, 3, false), now);
  t.note_filling(slot(0), key(1), api::heartbeat_mark{7, 2});
  EXPECT_TRUE(t.filling(key(1)).empty());
  t.note_copy(slot(0), key(4), api::heartbeat_mark{7, 1});
  EXPECT_TRUE(t.holders(key(4)).empty());
  t.note_filling(slot(0), key(5), api::heartbeat_mark{8, 1});  // restarted since: no note
  EXPECT_EQ(t.filling(key(5)), std::vector<engine_slot>{slot(0)});
  t.apply(beat("a", 7, 4, false), now);
  EXPECT_TRUE(t.filling(key(5)).empty());
  EXPECT_TRUE(t.engine(slot(0)).noted.empty());
}

TEST(StationTables, ASilentEngineLeavesRotationAndReturns) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  t.apply(beat("a", 1, 1, true, {0}), now);
  t.apply(beat("b", 1, 1, true, {0}), now);
  auto later = now + 1500ms;
  t.apply(beat("b", 1, 2, false), later);  // only b keeps beating
  for (int i = 0; i < 2; ++i) {
    auto e = t.choose(key(0), later);
    ASSERT_TRUE(e);
    EXPECT_EQ(t.engine(*e).name.str(), "b");
  }
  EXPECT_EQ(t.up_holders(key(0), later), 1u);
  t.apply(beat("a", 1, 2, false), later);
  EXPECT_EQ(t.up_holders(key(0), later), 2u);
}

// A stopped engine stays up until the heartbeat timeout, but a console sent to it would wait: once
// it has missed two heartbeats (and at least 0.5 s), the consoles go to a punctual holder.
TEST(StationTables, AnEngineTwoHeartbeatsLateIsPassedOverWhileAPunctualOneHolds) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  t.apply(beat("a", 1, 1, true, {0, 1}), now);
  t.apply(beat("b", 1, 1, true, {0}), now);
  auto later = now + 600ms;  // a stopped beating at `now`
  {
    // Silent for two intervals but under half a second (a busy host's delay): still punctual.
    station_tables quick(1000ms, 100ms);
    quick.apply(beat("a", 1, 1, true, {0}), now);
    quick.apply(beat("b", 1, 1, true, {0}), now);
    quick.apply(beat("b", 1, 2, false), now + 400ms);
    std::map<std::string, int> hits;
    for (int i = 0; i < 2; ++i) {
      auto e = quick.choose(key(0), now + 400ms);
      ASSERT_TRUE(e) << i;
      ++hits[quick.engine(*e).name.str()];
    }
    EXPECT_EQ(hits["a"], 1);
    EXPECT_EQ(hits["b"], 1);
  }
  t.apply(beat("b", 1, 2, false), later);
  EXPECT_EQ(t.up_holders(key(0), later), 2u);  // still up: not yet a lost copy
  for (int i = 0; i < 2; ++i) {                // b's limit (max_streams = 2)
    auto e = t.choose(key(0), later);
    ASSERT_TRUE(e) << i;
    EXPECT_EQ(t.engine(*e).name.str(), "b") << i;
  }
  // Segment 1 only a holds: late, it still serves rather than none.
  auto e = t.choose(key(1), later);
  ASSERT_TRUE(e);
  EXPECT_EQ(t.engine(*e).name.str(), "a");
  // Within two intervals of its last heartbeat an engine is punctual: both share the work.
  std::map<std::string, int> hits;
  t.apply(beat("a", 1, 2, false), later + 100ms);
  t.apply(beat("b", 1, 3, false), later + 100ms);
  for (int i = 0; i < 2; ++i) {
    auto e = t.choose(key(0), later + 550ms);
    ASSERT_TRUE(e) << i;
    ++hits[t.engine(*e).name.str()];
  }
  EXPECT_EQ(hits["a"], 1);
  EXPECT_EQ(hits["b"], 1);
}

TEST(StationTables, ConsolesSentSinceTheLastHeartbeatCountAsLoad) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  t.apply(beat("a", 1, 1, true, {0}), now);  // max_streams = 2
  t.apply(beat("b", 1, 1, true, {0}), now);
  std::map<std::string, int> hits;
  for (int i = 0; i < 4; ++i) {
    auto e = t.choose(key(0), now);
    ASSERT_TRUE(e) << i;
    ++hits[t.engine(*e).name.str()];
  }
  EXPECT_EQ(hits["a"], 2);
  EXPECT_EQ(hits["b"], 2);
  EXPECT_FALSE(t.choose(key(0), now));  // both at their limit until they report
  // a reports 0 active streams, written once its consoles have connected (a heartbeat within 50 ms
  // of them would not count them yet).
  auto later = now + 100ms;
  t.apply(beat("a", 1, 2, false), later);
  auto e = t.choose(key(0), later);
  ASSERT_TRUE(e);
  EXPECT_EQ(t.engine(*e).name.str(), "a");
}

TEST(StationTables, ConsolesSentJustBeforeAHeartbeatStillCount) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  t.apply(beat("a", 1, 1, true, {0}), now);  // max_streams = 2
  ASSERT_TRUE(t.choose(key(0), now));
  ASSERT_TRUE(t.choose(key(0), now));
  t.apply(beat("a", 1, 2, false), now + 10ms);  // written before they connected
  EXPECT_FALSE(t.choose(key(0), now + 10ms));
}

// Placement (issue 10): a copy goes to the engine with the least load and share of space in use,
// and copies ordered before the engines report again are spread, not all sent to one.
api::heartbeat space_beat(std::string name, uint64_t seq, uint64_t used, uint64_t free,
                          uint32_t streams = 0) {
  auto hb = beat(std::move(name), 1, seq, seq == 1);
  hb.load.max_streams = 10;
  hb.load.active_streams = streams;
  hb.load.used_bytes = used;
  hb.load.free_bytes = free;
  return hb;
}

// A console slow to connect (a busy host) still counts at its engine until the engine reports it
// arrived, however many heartbeats that takes; otherwise the director sends more consoles to an
// engine already full, which hands them on, by the same view, to another full one.
api::heartbeat counted_beat(uint64_t seq, uint64_t consoles, uint32_t active = 0) {
  auto hb = space_beat("a", seq, 0, 1'000'000, active);
  hb.added.push_back({key(0), 1, {}});  // (again after the first: no change)
  hb.load.max_streams = 2;
  hb.load.consoles = consoles;
  return hb;
}

TEST(StationTables, ConsolesOnTheirWayCountUntilTheEngineReportsThem) {
  station_tables t(10s, 250ms);
  auto now = steady::now();
  t.apply(counted_beat(1, 0), now);  // max_streams = 2
  ASSERT_TRUE(t.choose(key(0), now));
  ASSERT_TRUE(t.choose(key(0), now));
  t.apply(counted_beat(2, 0), now + 300ms);  // neither has connected yet
  EXPECT_FALSE(t.choose(key(0), now + 300ms));
  t.apply(counted_beat(3, 1, 1), now + 400ms);  // one streams, one is still on its way
  EXPECT_FALSE(t.choose(key(0), now + 400ms));
  t.apply(counted_beat(4, 2, 1), now + 500ms);  // both came; one has ended
  ASSERT_TRUE(t.choose(key(0), now + 500ms));
  EXPECT_FALSE(t.choose(key(0), now + 500ms));
  // The last one sent never comes (its player gave up): it counts for two seconds, no longer.
  t.apply(counted_beat(5, 2, 1), now + 1s);
  EXPECT_FALSE(t.choose(key(0), now + 1s));
  t.apply(counted_beat(6, 2, 1), now + 3100ms);
  ASSERT_TRUE(t.choose(key(0), now + 3100ms));
  // Two consoles straight to the engine, not sent by the director, hide none it sends.
  t.apply(counted_beat(7, 5, 0), now + 3200ms);  // the one sent at 3.1 s came, and two more
  ASSERT_TRUE(t.choose(key(0), now + 3200ms));
  t.apply(counted_beat(8, 5, 0), now + 3500ms);  // the one sent at 3.2 s is on its way
  ASSERT_TRUE(t.choose(key(0), now + 3500ms));
  EXPECT_FALSE(t.choose(key(0), now + 3500ms));
}

// The ledger's rule (console_ledger in tables.h): sent = received + unmatched + in flight, in
// flight between 0 and the consoles sent since the last heartbeat at least 2 s old. The engine's
// heartbeats come every 250 ms from t0, its first (`restarted`: its first here).
TEST(ConsoleLedger, AConsoleSentCountsUntilTheEngineReceivesIt) {
  console_ledger l;
  auto t0 = steady::now();
  EXPECT_EQ(l.on_heartbeat(0, 0, true, 0, t0), 0u);
  EXPECT_EQ(l.on_heartbeat(1, 0, false, 0, t0 + 250ms), 1u);  // sent, on its way
  EXPECT_EQ(l.on_heartbeat(1, 0, false, 0, t0 + 500ms), 1u);  // however slowly
  EXPECT_EQ(l.on_heartbeat(1, 1, false, 0, t0 + 750ms), 0u);  // received
  EXPECT_EQ(l.on_heartbeat(3, 2, false, 0, t0 + 1s), 1u);     // two more sent, one received
}

TEST(ConsoleLedger, AConsoleNeverReceivedCountsForTwoSecondsAndHidesNoLaterOne) {
  console_ledger l;
  auto t0 = steady::now();
  l.on_heartbeat(0, 0, true, 0, t0);
  EXPECT_EQ(l.on_heartbeat(1, 0, false, 0, t0 + 250ms), 1u);   // sent after t0
  EXPECT_EQ(l.on_heartbeat(1, 0, false, 0, t0 + 2s), 1u);      // t0 is 2 s old: it may still come
  EXPECT_EQ(l.on_heartbeat(1, 0, false, 0, t0 + 2250ms), 0u);  // sent before 250 ms: never comes
  EXPECT_EQ(l.on_heartbeat(2, 0, false, 0, t0 + 2500ms), 1u);  // the next one sent counts
}

TEST(ConsoleLedger, ARestartedEngineCountsOnlyTheConsolesJustSentThenReconcilesAgain) {
  console_ledger l;
  auto t0 = steady::now();
  l.on_heartbeat(0, 0, true, 0, t0);
  EXPECT_EQ(l.on_heartbeat(10, 10, false, 0, t0 + 250ms), 0u);
  // A new epoch: the engine's count starts again at 0, the director's goes on.
  EXPECT_EQ(l.on_heartbeat(11, 0, true, 1, t0 + 500ms), 1u);
  EXPECT_EQ(l.on_heartbeat(12, 1, false, 0, t0 + 750ms), 1u);  // that one came, one more sent
  EXPECT_EQ(l.on_heartbeat(12, 2, false, 0, t0 + 1s), 0u);
}

TEST(ConsoleLedger, AnEngineThatDoesNotCountItsConsolesGetsThoseJustSent) {
  console_ledger l;
  auto t0 = steady::now();
  EXPECT_EQ(l.on_heartbeat(0, std::nullopt, true, 0, t0), 0u);
  EXPECT_EQ(l.on_heartbeat(5, std::nullopt, false, 2, t0 + 250ms), 2u);
  EXPECT_EQ(l.on_heartbeat(9, std::nullopt, false, 0, t0 + 500ms), 0u);
}

TEST(ConsoleLedger, ConsolesReceivedWithoutTheDirectorHideNoneItSends) {
  console_ledger l;
  auto t0 = steady::now();
  l.on_heartbeat(0, 0, true, 0, t0);
  EXPECT_EQ(l.on_heartbeat(1, 3, false, 0, t0 + 250ms), 0u);  // the one sent and two straight to it
  EXPECT_EQ(l.on_heartbeat(2, 3, false, 0, t0 + 500ms), 1u);
}

// An engine's count that goes down in an epoch (it cannot, but a director must not trust that):
// no more are in flight than were sent lately, and for no longer than they may take to come.
TEST(ConsoleLedger, AnEngineCountGoingBackwardsHoldsNoMoreThanTheConsolesSentLately) {
  console_ledger l;
  auto t0 = steady::now();
  l.on_heartbeat(0, 0, true, 0, t0);
  EXPECT_EQ(l.on_heartbeat(10, 10, false, 0, t0 + 250ms), 0u);
  EXPECT_EQ(l.on_heartbeat(10, 10, false, 0, t0 + 3s), 0u);
  EXPECT_EQ(l.on_heartbeat(11, 4, false, 0, t0 + 3250ms), 1u);  // one sent since 3 s, 6 "lost"
  EXPECT_EQ(l.on_heartbeat(11, 4, false, 0, t0 + 5500ms), 0u);  // it never came either
  EXPECT_EQ(l.on_heartbeat(12, 4, false, 0, t0 + 5750ms), 1u);  // the next one sent counts
}

// note_full counts an engine full until its next heartbeat by consoles no console stands for.
TEST(ConsoleLedger, PhantomsAreNeverInFlightAfterTheNextHeartbeat) {
  console_ledger l;
  auto t0 = steady::now();
  l.on_heartbeat(0, 0, true, 0, t0);
  l.add_phantoms(2);  // (and sent_counter::add_extra(2))
  EXPECT_EQ(l.on_heartbeat(2, 0, false, 0, t0 + 250ms), 0u);
  EXPECT_EQ(l.on_heartbeat(3, 0, false, 0, t0 + 500ms), 1u);
}

TEST(StationTables, ACopyGoesToTheEngineWithTheMostRoomAndTheLeastLoad) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  // One filesystem (the same free bytes for all); a holds the most, c streams the most.
  t.apply(space_beat("a", 1, 600, 1000), now);
  t.apply(space_beat("b", 1, 100, 1000), now);
  t.apply(space_beat("c", 1, 100, 1000, 9), now);
  auto r = t.choose_receiver(key(0), 10, now);
  ASSERT_TRUE(r);
  EXPECT_EQ(t.engine(*r).name.str(), "b");
  // Not an engine that already holds it or is receiving it, nor one excluded.
  t.note_ordered(*r, 10);
  t.note_filling(*r, key(0));
  auto next = t.choose_receiver(key(0), 10, now);
  ASSERT_TRUE(next);
  EXPECT_NE(t.engine(*next).name.str(), "b");
  EXPECT_FALSE(t.choose_receiver(key(0), 10, now, next, false) == next);
}

TEST(StationTables, CopiesOrderedBetweenHeartbeatsAreSpreadOverTheEngines) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  for (auto name : {"a", "b", "c"}) {
    t.apply(space_beat(name, 1, 0, 1'000'000), now);
  }
  std::map<std::string, int> got;
  for (uint32_t i = 0; i < 30; ++i) {
    auto r = t.choose_receiver(key(i), 1000, now);
    ASSERT_TRUE(r);
    t.note_ordered(*r, 1000);  // counted when chosen: the engines report it at their next beat
    ++got[t.engine(*r).name.str()];
  }
  EXPECT_EQ(got["a"], 10);
  EXPECT_EQ(got["b"], 10);
  EXPECT_EQ(got["c"], 10);
}

TEST(StationTables, AnEngineWithoutRoomIsNoReceiverWhenRoomIsNeeded) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  t.apply(space_beat("a", 1, 990, 5), now);
  EXPECT_FALSE(t.choose_receiver(key(0), 10, now, std::nullopt, true));
  EXPECT_TRUE(t.choose_receiver(key(0), 10, now, std::nullopt, false));  // it may evict
  EXPECT_TRUE(t.choose_receiver(key(0), 5, now, std::nullopt, true));
}

TEST(StationTables, AnEngineGoneLessThanTheGraceStillCountsAsACopy) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  t.apply(beat("a", 1, 1, true, {0}), now);
  t.apply(beat("b", 1, 1, true, {0}), now);
  auto later = now + 3s;  // b beats on; a went silent at `now`: out of rotation since now + 1 s
  t.apply(beat("b", 1, 2, false), later);
  EXPECT_EQ(t.up_holders(key(0), later), 1u);
  EXPECT_EQ(t.present_copies(key(0), later, 5000ms), 2u);  // within the grace: it may come back
  EXPECT_EQ(t.present_copies(key(0), later, 1000ms), 1u);  // past it: its copy is lost
  // A copy arriving at an engine in rotation counts.
  t.note_filling(*t.find_engine("b"), key(1));
  EXPECT_EQ(t.present_copies(key(1), later, 0ms), 1u);
}

// `holder`: the engine named to another station, or to an engine of ours sending a console on.
api::heartbeat load_beat(std::string name, std::vector<uint32_t> held, uint32_t streams,
                         uint64_t bytes_per_second = 0, uint64_t max_bytes_per_second = 0) {
  auto hb = beat(std::move(name), 1, 1, true, std::move(held));
  hb.load.max_streams = 10;
  hb.load.active_streams = streams;
  hb.load.bytes_per_second = bytes_per_second;
  hb.load.max_bytes_per_second = max_bytes_per_second;
  return hb;
}

TEST(StationTables, TheHolderNamedIsTheLeastLoadedUpAndUnderItsLimits) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  t.apply(load_beat("a", {0}, 5), now);
  t.apply(load_beat("b", {0}, 2), now);
  t.apply(load_beat("c", {0}, 10), now);                // at its stream limit
  t.apply(load_beat("d", {0, 3}, 0, 1000, 1000), now);  // at its bandwidth budget
  auto name = [&](std::optional<engine_slot> e) { return e ? t.engine(*e).name.str() : "none"; };
  EXPECT_EQ(name(t.least_loaded(key(0), now, copy_kind::whole)), "b");
  EXPECT_EQ(name(t.least_loaded(key(0), now, copy_kind::whole, t.find_engine("b"))), "a");
  EXPECT_EQ(name(t.least_loaded(key(0), now + 1500ms, copy_kind::whole)),
            "none");                                                       // all silent: down
  EXPECT_EQ(name(t.least_loaded(key(1), now, copy_kind::whole)), "none");  // nobody holds it
  EXPECT_EQ(name(t.least_loaded(key(3), now, copy_kind::whole)), "none");  // only d, at its budget
  // Naming an engine counts no console against it: asked again, the same answer.
  EXPECT_EQ(name(t.least_loaded(key(0), now, copy_kind::whole)), "b");
  EXPECT_EQ(t.engine(*t.find_engine("b")).assigned, 0u);
}

TEST(StationTables, TheHolderNamedFollowsTheConsoleChoiceRule) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  t.apply(load_beat("a", {0}, 3), now);
  t.apply(load_beat("b", {0}, 3), now);
  // Ties go to the first holder, every time (no rotation): copies from other stations are few.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(t.engine(*t.least_loaded(key(0), now, copy_kind::whole)).name.str(), "a");
  }
  // What choose() would pick for a console, without the preload hint, when loads differ.
  t.apply(load_beat("c", {0}, 1), now);
  EXPECT_EQ(t.least_loaded(key(0), now, copy_kind::whole), t.peek(key(0), now));
}

TEST(StationTables, AnEngineReceivingASegmentIsNamedOnlyAmongThoseReceivingIt) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  t.apply(load_beat("a", {0}, 1), now);
  t.apply(load_beat("b", {}, 4), now);
  t.apply(load_beat("c", {}, 2), now);
  t.note_filling(*t.find_engine("b"), key(0));
  t.note_filling(*t.find_engine("c"), key(0));
  EXPECT_EQ(t.engine(*t.least_loaded(key(0), now, copy_kind::whole)).name.str(), "a");
  EXPECT_EQ(t.engine(*t.least_loaded(key(0), now, copy_kind::filling)).name.str(), "c");
  EXPECT_EQ(
      t.engine(*t.least_loaded(key(0), now, copy_kind::filling, t.find_engine("c"))).name.str(),
      "b");
}

// A new program's placement: `copies` consecutive engines from the segment's position, the copies
// already in the station first.
TEST(StationTables, SegmentsOfANewProgramAreSpreadOverConsecutiveEngines) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  for (auto n : {"a", "b", "c"}) {
    t.apply(load_beat(n, {}, 0), now);
  }
  auto up = t.up_engines(now);
  ASSERT_EQ(up.size(), 3u);
  EXPECT_EQ(t.spread(key(0), 0, up, 2, now), (std::vector<engine_slot>{up[0], up[1]}));
  EXPECT_EQ(t.spread(key(1), 1, up, 2, now), (std::vector<engine_slot>{up[1], up[2]}));
  EXPECT_EQ(t.spread(key(2), 2, up, 2, now), (std::vector<engine_slot>{up[2], up[0]}));
  EXPECT_EQ(t.spread(key(4), 4, up, 5, now), (std::vector<engine_slot>{up[1], up[2], up[0]}));
}

TEST(StationTables, ACopyAlreadyHeldCountsTowardsTheSpreadUnlessItsEngineIsDown) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  t.apply(load_beat("a", {}, 0), now);
  t.apply(load_beat("b", {}, 0), now);
  t.apply(load_beat("c", {0}, 0), now);
  auto up = t.up_engines(now);
  engine_slot c = *t.find_engine("c");
  EXPECT_EQ(t.spread(key(0), 0, up, 2, now), (std::vector<engine_slot>{c, up[0]}));
  EXPECT_EQ(t.spread(key(0), 2, up, 2, now), (std::vector<engine_slot>{c, up[0]}));  // c not twice
  // c silent: its copy does not count, and it is not among the up engines.
  auto later = now + 1500ms;
  t.apply(beat("a", 1, 2, false), later);
  t.apply(beat("b", 1, 2, false), later);
  auto still = t.up_engines(later);
  ASSERT_EQ(still.size(), 2u);
  EXPECT_EQ(t.spread(key(0), 0, still, 2, later), still);
}

// An engine that came back leaves more copies than the placement: one is dropped.
TEST(StationTables, TheSurplusCopyDroppedIsTheOneWithTheLeastRoomAndTheMostLoad) {
  station_tables t(1000ms, 250ms);
  auto now = steady::now();
  auto held = [](std::string n, uint64_t used, uint32_t streams) {
    auto hb = space_beat(std::move(n), 1, used, 1000, streams);
    hb.added.push_back({key(0), 1, {}});
    return hb;
  };
  t.apply(held("a", 100, 1), now);
  t.apply(held("b", 800, 1), now);  // the fullest
  t.apply(held("c", 100, 2), now);
  auto none = [](engine_slot) { return false; };
  auto name = [&](std::optional<engine_slot> e) { return e ? t.engine(*e).name.str() : "none"; };
  EXPECT_EQ(name(t.surplus_copy(key(0), now, 2, none)), "b");
  EXPECT_EQ(name(t.surplus_copy(key(0), now, 3, none)), "none");  // exactly the placement
  // A replica made for load is neither dropped nor counted towards the placement.
  engine_slot b = *t.find_engine("b");
  auto b_for_load = [b](engine_slot e) { return e == b; };
  EXPECT_EQ(name(t.surplus_copy(key(0), now, 2, b_for_load)), "none");
  EXPECT_EQ(name(t.surplus_copy(key(0), now, 1, b_for_load)), "c");
  // An engine out of rotation holds no copy that counts.
  auto later = now + 1500ms;
  t.apply(space_beat("a", 2, 100, 1000, 1), later);
  t.apply(space_beat("c", 2, 100, 1000, 2), later);
  EXPECT_EQ(name(t.surplus_copy(key(0), later, 2, none)), "none");
  EXPECT_EQ(name(t.surplus_copy(key(0), later, 1, none)), "c");
}

// The cheap first test of a hot segment on every redirect.
TEST(NearLimits, StreamsOrBandwidthAtThePercentOfTheLimit) {
  engine_entry e;
  e.load.max_streams = 10;
  e.load.active_streams = 7;
  EXPECT_FALSE(near_limits(e, 80));
  e.assigned = 1;  // consoles sent since its heartbeat count
  EXPECT_TRUE(near_limits(e, 80));
  EXPECT_FALSE(near_limits(e, 81));
  e.assigned = 0;
  e.load.bytes_per_second = 900;  // no budget: bandwidth does not count
  EXPECT_FALSE(near_limits(e, 80));
  e.load.max_bytes_per_second = 1000;
  EXPECT_TRUE(near_limits(e, 90));
  EXPECT_FALSE(near_limits(e, 91));
}

}  // namespace
}  // namespace vodgrid::director
