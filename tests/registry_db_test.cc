// The registry's database layer (registry::location_db) on both backends — SQLite in a temporary
// folder and a real PostgreSQL server shared by the run — plus the segment bitmap it stores.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <optional>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include "registry/location_db.h"
#include "support/postgres.h"
#include "support/support.h"

namespace vodgrid::registry {
namespace {

using test::temp_dir;

template <class T>
T must(result<T> r) {
  if (!r) {
    throw std::runtime_error(fmt::format("{}: {}", to_string(r.err().code), r.err().detail));
  }
  return std::move(r).value();
}

void must(status s) {
  if (!s) {
    throw std::runtime_error(fmt::format("{}: {}", to_string(s.err().code), s.err().detail));
  }
}

station_id sid(std::string_view s) {
  return *station_id::parse(s);
}
program_id pid(std::string_view s) {
  return *program_id::parse(s);
}
segment_key key(std::string_view program, uint32_t index) {
  return segment_key{pid(program), segment_index{index}};
}
location_change held(std::string_view program, uint32_t index, bool on = true) {
  return location_change{key(program, index), on};
}
// An engine's change: it holds the segment whole (or no longer does).
location_change whole(std::string_view engine, std::string_view program, uint32_t index,
                      bool on = true) {
  return location_change{key(program, index), on, *engine_id::parse(engine), false};
}
// An engine's change: it started receiving the segment (or stopped).
location_change filling(std::string_view engine, std::string_view program, uint32_t index,
                        bool on = true) {
  return location_change{key(program, index), on, *engine_id::parse(engine), true};
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

using names = std::vector<std::string>;

class LocationDb : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (postgresql()) {
      url_ = test::fresh_postgres_schema("reg");
    } else {
      url_ = "sqlite://" + (dir_.path() / "registry.db").string();
    }
    db_ = reopen();
  }

  bool postgresql() const { return GetParam() == "postgresql"; }
  std::unique_ptr<location_db> reopen() { return must(location_db::open(url_)); }
  names holders(location_db& d, const segment_key& k) { return sorted(must(d.holders(k))); }
  names holders(const segment_key& k) { return holders(*db_, k); }
  // "station: complete? engines | filling" per station, for compact expectations.
  names locations(location_db& d, const segment_key& k) {
    names out;
    for (auto& s : must(d.locations(k))) {
      out.push_back(fmt::format("{}:{} {}|{}", s.station, s.complete ? "complete" : "partial",
                                fmt::join(s.engines, ","), fmt::join(s.filling, ",")));
    }
    return out;
  }
  names locations(const segment_key& k) { return locations(*db_, k); }
  int64_t engine_rows() {
    auto rows = must(db_->connection().query("SELECT COUNT(*) FROM engine_holdings"));
    return rows.front().i64(0);
  }

  temp_dir dir_;
  std::string url_;
  std::unique_ptr<location_db> db_;
};

INSTANTIATE_TEST_SUITE_P(Backends, LocationDb, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

TEST_P(LocationDb, StationsRoundTrip) {
  must(db_->put_station({sid("home"), "http://127.0.0.1:8710", true, 0, 0, 10'000'000'000}));
  must(db_->put_station({sid("edge"), "http://127.0.0.1:8720", false, 120.5, -7.25, 1'000'000}));
  auto list = must(db_->stations());
  ASSERT_EQ(list.size(), 2u);
  // Ordered by name.
  EXPECT_EQ(list[0].name.str(), "edge");
  EXPECT_EQ(list[0].director_url, "http://127.0.0.1:8720");
  EXPECT_FALSE(list[0].home);
  EXPECT_DOUBLE_EQ(list[0].x_km, 120.5);
  EXPECT_DOUBLE_EQ(list[0].y_km, -7.25);
  EXPECT_EQ(list[0].uplink_bits_per_second, 1'000'000u);
  EXPECT_EQ(list[1].name.str(), "home");
  EXPECT_EQ(list[1].director_url, "http://127.0.0.1:8710");
  EXPECT_TRUE(list[1].home);
  EXPECT_EQ(list[1].uplink_bits_per_second, 10'000'000'000u);
}

TEST_P(LocationDb, PutStationAgainUpdatesIt) {
  must(db_->put_station({sid("edge"), "http://127.0.0.1:8720", false, 1, 2, 3}));
  must(db_->put_station({sid("edge"), "http://127.0.0.1:9999", false, 4, 5, 6}));
  auto list = must(db_->stations());
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].director_url, "http://127.0.0.1:9999");
  EXPECT_DOUBLE_EQ(list[0].x_km, 4);
  EXPECT_DOUBLE_EQ(list[0].y_km, 5);
  EXPECT_EQ(list[0].uplink_bits_per_second, 6u);
}

TEST_P(LocationDb, ProgramsRoundTrip) {
  std::string manifest = R"({"id":"movie","title":"A \"quoted\" title","segments":[]})";
  must(db_->put_program({pid("movie"), manifest, {"edge", "far-1", "far_2"}, 5}));
  must(db_->put_program({pid("news"), "{}", {}, 0}));

  auto p = must(db_->program(pid("movie")));
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->id.str(), "movie");
  EXPECT_EQ(p->manifest_json, manifest);
  EXPECT_EQ(p->targets, (names{"edge", "far-1", "far_2"}));
  EXPECT_EQ(p->prefetch, 5u);

  auto n = must(db_->program(pid("news")));
  ASSERT_TRUE(n.has_value());
  EXPECT_TRUE(n->targets.empty());
  EXPECT_EQ(n->prefetch, 0u);

  auto all = must(db_->programs());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].id.str(), "movie");
  EXPECT_EQ(all[0].targets, (names{"edge", "far-1", "far_2"}));
  EXPECT_EQ(all[1].id.str(), "news");
}

TEST_P(LocationDb, PutProgramAgainReplacesTargetsAndPrefetch) {
  must(db_->put_program({pid("movie"), "{\"v\":1}", {"a", "b"}, 3}));
  must(db_->put_program({pid("movie"), "{\"v\":2}", {"c"}, 0}));
  auto p = must(db_->program(pid("movie")));
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->manifest_json, "{\"v\":2}");
  EXPECT_EQ(p->targets, (names{"c"}));
  EXPECT_EQ(p->prefetch, 0u);
  EXPECT_EQ(must(db_->programs()).size(), 1u);
}

TEST_P(LocationDb, UnknownProgramIsEmpty) {
  EXPECT_FALSE(must(db_->program(pid("nothing"))).has_value());
  must(db_->put_program({pid("movie"), "{}", {}, 0}));
  EXPECT_FALSE(must(db_->program(pid("nothing"))).has_value());
  EXPECT_TRUE(must(db_->programs()).size() == 1);
}

TEST_P(LocationDb, HoldersListExactlyTheStationsHoldingTheIndex) {
  must(db_->apply(sid("a"), {held("movie", 0), held("movie", 1), held("movie", 7)}));
  must(db_->apply(sid("b"), {held("movie", 1), held("movie", 8)}));
  must(db_->apply(sid("c"), {held("other", 0)}));
  EXPECT_EQ(holders(key("movie", 0)), (names{"a"}));
  EXPECT_EQ(holders(key("movie", 1)), (names{"a", "b"}));
  EXPECT_EQ(holders(key("movie", 2)), names{});
  EXPECT_EQ(holders(key("movie", 7)), (names{"a"}));
  EXPECT_EQ(holders(key("movie", 8)), (names{"b"}));
  EXPECT_EQ(holders(key("movie", 9)), names{});
  EXPECT_EQ(holders(key("movie", 100'000)), names{});
  EXPECT_EQ(holders(key("other", 0)), (names{"c"}));
  EXPECT_EQ(holders(key("unknown", 0)), names{});
}

// A report repeated on another registry daemon after a timeout, committed late by the stalled one
// (issue 18): older than one applied, it changes nothing; each station numbers its own reports.
TEST_P(LocationDb, AReportOlderThanOneAppliedChangesNothing) {
  EXPECT_TRUE(must(db_->apply_report(sid("a"), 100, {held("movie", 5)})).applied);
  EXPECT_TRUE(
      must(db_->apply_report(sid("a"), 101, {held("movie", 5, false), held("movie", 6)})).applied);
  auto stalled = reopen();  // the other daemon's connection
  auto late = must(stalled->apply_report(sid("a"), 100, {held("movie", 5)}));
  EXPECT_FALSE(late.applied);
  EXPECT_EQ(late.last_seq, 101u);
  auto repeat = must(stalled->apply_report(sid("a"), 101, {held("movie", 7)}));
  EXPECT_FALSE(repeat.applied);
  EXPECT_EQ(repeat.last_seq, 101u);
  EXPECT_EQ(holders(key("movie", 5)), names{});
  EXPECT_EQ(holders(key("movie", 6)), (names{"a"}));
  EXPECT_EQ(holders(key("movie", 7)), names{});
  EXPECT_TRUE(must(stalled->apply_report(sid("b"), 7, {held("movie", 5)})).applied);
  EXPECT_EQ(holders(key("movie", 5)), (names{"b"}));
  must(db_->apply(sid("a"), {held("movie", 8)}));  // unnumbered: applied as it comes
  EXPECT_TRUE(must(db_->apply_report(sid("a"), 102, {held("movie", 5)})).applied);
  EXPECT_EQ(holders(key("movie", 5)), (names{"a", "b"}));
  EXPECT_EQ(holders(key("movie", 8)), (names{"a"}));
  // The seq is in the database: a registry restarted (a new connection) still refuses an old one.
  auto restarted = reopen();
  EXPECT_FALSE(must(restarted->apply_report(sid("a"), 101, {held("movie", 9)})).applied);
  EXPECT_EQ(holders(key("movie", 9)), names{});
}

// Two registry daemons applying reports of one station at once (a director's report repeated on
// the second while the first still works on it, then a newer one): whatever the interleaving, the
// newer report's changes stand.
TEST_P(LocationDb, ReportsRacingOnTwoConnectionsKeepTheNewer) {
  auto other = reopen();
  for (uint32_t i = 0; i < 30; ++i) {
    uint64_t seq = 10 * (i + 1);
    std::optional<result<location_db::report_outcome>> older_done;
    std::thread older([&] {
      older_done =
          other->apply_report(sid("a"), seq, {held("race", i, false), held("race", i + 100)});
    });
    auto newer = db_->apply_report(sid("a"), seq + 1, {held("race", i)});
    older.join();
    ASSERT_TRUE(newer) << newer.err().detail;
    ASSERT_TRUE(*older_done) << older_done->err().detail;
    EXPECT_TRUE(newer->applied);
    // The older one was applied first, or refused after the newer.
    EXPECT_TRUE((*older_done)->applied || (*older_done)->last_seq == seq + 1) << "report " << i;
    EXPECT_EQ(holders(key("race", i)), (names{"a"})) << "report " << i;
  }
}

TEST_P(LocationDb, NotHeldRemoves) {
  must(db_->apply(sid("a"), {held("movie", 3), held("movie", 4)}));
  must(db_->apply(sid("b"), {held("movie", 3)}));
  must(db_->apply(sid("a"), {held("movie", 3, false)}));
  EXPECT_EQ(holders(key("movie", 3)), (names{"b"}));
  EXPECT_EQ(holders(key("movie", 4)), (names{"a"}));
  must(db_->apply(sid("a"), {held("movie", 4, false)}));
  EXPECT_EQ(holders(key("movie", 4)), names{});
  auto counts = must(db_->counts(pid("movie")));
  EXPECT_EQ(counts["b"], 1u);
  // A station holding nothing any more counts zero (whether or not it is listed).
  EXPECT_EQ(counts.count("a") ? counts.at("a") : 0u, 0u);
}

TEST_P(LocationDb, NotHeldForSomethingNeverHeldChangesNothing) {
  must(db_->apply(sid("a"), {held("movie", 5, false), held("movie", 999'999, false)}));
  EXPECT_EQ(holders(key("movie", 5)), names{});
  must(db_->apply(sid("a"), {held("movie", 2), held("movie", 64, false)}));
  EXPECT_EQ(holders(key("movie", 2)), (names{"a"}));
  EXPECT_EQ(must(db_->counts(pid("movie")))["a"], 1u);
}

TEST_P(LocationDb, CountsPerStation) {
  std::vector<location_change> many;
  for (uint32_t i = 0; i < 50; ++i) {
    many.push_back(held("movie", i));
  }
  must(db_->apply(sid("a"), many));
  must(db_->apply(sid("b"), {held("movie", 0), held("movie", 49), held("other", 3)}));
  auto counts = must(db_->counts(pid("movie")));
  EXPECT_EQ(counts, (std::map<std::string, uint64_t>{{"a", 50}, {"b", 2}}));
  EXPECT_EQ(must(db_->counts(pid("other"))), (std::map<std::string, uint64_t>{{"b", 1}}));
  EXPECT_TRUE(must(db_->counts(pid("unknown"))).empty());
}

TEST_P(LocationDb, OneApplyTouchesSeveralPrograms) {
  must(db_->apply(sid("a"), {held("p1", 0), held("p2", 5), held("p3", 9), held("p1", 2),
                             held("p2", 6, false), held("p2", 7)}));
  EXPECT_EQ(holders(key("p1", 0)), (names{"a"}));
  EXPECT_EQ(holders(key("p1", 2)), (names{"a"}));
  EXPECT_EQ(holders(key("p2", 5)), (names{"a"}));
  EXPECT_EQ(holders(key("p2", 6)), names{});
  EXPECT_EQ(holders(key("p2", 7)), (names{"a"}));
  EXPECT_EQ(holders(key("p3", 9)), (names{"a"}));
  EXPECT_EQ(must(db_->counts(pid("p1")))["a"], 2u);
  EXPECT_EQ(must(db_->counts(pid("p2")))["a"], 2u);
  EXPECT_EQ(must(db_->counts(pid("p3")))["a"], 1u);
}

TEST_P(LocationDb, LaterChangeInOneBatchWins) {
  must(db_->apply(sid("a"), {held("movie", 1), held("movie", 1, false), held("movie", 2, false),
                             held("movie", 2)}));
  EXPECT_EQ(holders(key("movie", 1)), names{});
  EXPECT_EQ(holders(key("movie", 2)), (names{"a"}));
}

TEST_P(LocationDb, IndicesFarApartInOneBitmap) {
  must(db_->apply(sid("a"), {held("movie", 0), held("movie", 999'999)}));
  EXPECT_EQ(holders(key("movie", 0)), (names{"a"}));
  EXPECT_EQ(holders(key("movie", 999'999)), (names{"a"}));
  EXPECT_EQ(holders(key("movie", 999'998)), names{});
  EXPECT_EQ(holders(key("movie", 1)), names{});
  EXPECT_EQ(must(db_->counts(pid("movie")))["a"], 2u);
  must(db_->apply(sid("a"), {held("movie", 999'999, false)}));
  EXPECT_EQ(holders(key("movie", 999'999)), names{});
  EXPECT_EQ(holders(key("movie", 0)), (names{"a"}));
  EXPECT_EQ(must(db_->counts(pid("movie")))["a"], 1u);
}

TEST_P(LocationDb, ReapplyingIsIdempotent) {
  std::vector<location_change> batch = {held("movie", 0), held("movie", 3), held("other", 1)};
  must(db_->apply(sid("a"), batch));
  must(db_->apply(sid("a"), batch));
  must(db_->apply(sid("a"), batch));
  EXPECT_EQ(holders(key("movie", 0)), (names{"a"}));
  EXPECT_EQ(holders(key("movie", 3)), (names{"a"}));
  EXPECT_EQ(must(db_->counts(pid("movie")))["a"], 2u);
  EXPECT_EQ(must(db_->counts(pid("other")))["a"], 1u);
  std::vector<location_change> removal = {held("movie", 3, false)};
  must(db_->apply(sid("a"), removal));
  must(db_->apply(sid("a"), removal));
  EXPECT_EQ(must(db_->counts(pid("movie")))["a"], 1u);
}

TEST_P(LocationDb, EmptyApplyIsHarmless) {
  must(db_->apply(sid("a"), {}));
  EXPECT_TRUE(must(db_->counts(pid("movie"))).empty());
}

TEST_P(LocationDb, AppliedChangesAreVisibleToANewConnection) {
  must(db_->put_station({sid("a"), "http://127.0.0.1:1", false, 0, 0, 0}));
  must(db_->put_program({pid("movie"), "{}", {"a"}, 2}));
  must(db_->apply(sid("a"), {held("movie", 0), held("movie", 500)}));
  must(db_->apply(sid("b"), {held("movie", 500)}));
  // Another connection, while the first is still open: what apply acknowledged is committed.
  auto other = reopen();
  EXPECT_EQ(holders(*other, key("movie", 0)), (names{"a"}));
  EXPECT_EQ(holders(*other, key("movie", 500)), (names{"a", "b"}));
  EXPECT_EQ(must(other->stations()).size(), 1u);
  EXPECT_TRUE(must(other->program(pid("movie"))).has_value());
  // Opening again (the schema already there) keeps everything.
  db_.reset();
  auto again = reopen();
  EXPECT_EQ(holders(*again, key("movie", 500)), (names{"a", "b"}));
  EXPECT_EQ(must(again->counts(pid("movie"))),
            (std::map<std::string, uint64_t>{{"a", 2}, {"b", 1}}));
}

// Applies, then crashes without closing anything: SQLite's writer is a child process that just
// ends; PostgreSQL's server is SIGKILLed and started again on the same data.
TEST_P(LocationDb, AppliedChangesSurviveACrash) {
  std::vector<location_change> batch = {held("movie", 1), held("movie", 12'345), held("news", 0)};
  if (postgresql()) {
    must(db_->apply(sid("a"), batch));
    db_.reset();
    test::shared_postgres().kill(SIGKILL);
    test::shared_postgres().restart();
  } else {
    db_.reset();
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      int code = 0;
      try {
        auto d = reopen();
        must(d->apply(sid("a"), batch));
        (void)d.release();  // never closed: the process just ends
      } catch (...) {
        code = 1;
      }
      ::_exit(code);
    }
    int st = 0;
    ASSERT_EQ(::waitpid(child, &st, 0), child);
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "the writer failed";
  }
  auto d = reopen();
  EXPECT_EQ(holders(*d, key("movie", 1)), (names{"a"}));
  EXPECT_EQ(holders(*d, key("movie", 12'345)), (names{"a"}));
  EXPECT_EQ(holders(*d, key("news", 0)), (names{"a"}));
  EXPECT_EQ(must(d->counts(pid("movie")))["a"], 2u);
}

// --- locations per engine ---

TEST_P(LocationDb, EngineChangesAreListedPerStation) {
  must(db_->apply(sid("a"), {whole("a-1", "movie", 0), whole("a-2", "movie", 0),
                             whole("a-1", "movie", 1), held("movie", 0)}));
  must(db_->apply(sid("b"), {whole("b-1", "movie", 0), held("movie", 0)}));
  EXPECT_EQ(locations(key("movie", 0)), (names{"a:complete a-1,a-2|", "b:complete b-1|"}));
  // An engine holding segment 1 says nothing of the station index: that takes a station change.
  EXPECT_EQ(locations(key("movie", 1)), (names{"a:partial a-1|"}));
  EXPECT_EQ(holders(key("movie", 1)), names{});
  EXPECT_EQ(must(db_->counts(pid("movie"))), (std::map<std::string, uint64_t>{{"a", 1}, {"b", 1}}));
  EXPECT_EQ(locations(key("movie", 2)), names{});
  EXPECT_EQ(locations(key("unknown", 0)), names{});
  // One row per (program, station, engine).
  EXPECT_EQ(engine_rows(), 3);
}

TEST_P(LocationDb, AnEvictionClearsTheEngineBit) {
  must(db_->apply(sid("a"), {whole("a-1", "movie", 0), whole("a-1", "movie", 1),
                             whole("a-2", "movie", 1), held("movie", 0), held("movie", 1)}));
  // a-1 evicts segment 1; a-2 still holds it, so the station does too.
  must(db_->apply(sid("a"), {whole("a-1", "movie", 1, false)}));
  EXPECT_EQ(locations(key("movie", 1)), (names{"a:complete a-2|"}));
  EXPECT_EQ(locations(key("movie", 0)), (names{"a:complete a-1|"}));
  // a-2 loses it too: the station's last copy, reported beside it.
  must(db_->apply(sid("a"), {whole("a-2", "movie", 1, false), held("movie", 1, false)}));
  EXPECT_EQ(locations(key("movie", 1)), names{});
  EXPECT_EQ(holders(key("movie", 1)), names{});
  EXPECT_EQ(holders(key("movie", 0)), (names{"a"}));
  // a-2 holds nothing of the program any more: its row is gone.
  EXPECT_EQ(engine_rows(), 1);
  must(db_->apply(sid("a"), {whole("a-1", "movie", 0, false)}));
  EXPECT_EQ(engine_rows(), 0);
}

TEST_P(LocationDb, AFillingCopyIsNeverASource) {
  must(db_->apply(sid("b"), {filling("b-1", "movie", 2)}));
  EXPECT_EQ(holders(key("movie", 2)), names{});
  EXPECT_EQ(locations(key("movie", 2)), (names{"b:partial |b-1"}));
  EXPECT_TRUE(must(db_->counts(pid("movie"))).empty());
  // The copy finishes: the engine holds it whole, the station reports its first copy, and the
  // end of the filling comes last.
  must(db_->apply(sid("b"), {whole("b-1", "movie", 2), held("movie", 2)}));
  EXPECT_EQ(locations(key("movie", 2)), (names{"b:complete b-1|"}));
  EXPECT_EQ(holders(key("movie", 2)), (names{"b"}));
  must(db_->apply(sid("b"), {filling("b-1", "movie", 2, false)}));
  EXPECT_EQ(locations(key("movie", 2)), (names{"b:complete b-1|"}));
}

TEST_P(LocationDb, AFailedFillLeavesNothing) {
  must(db_->apply(sid("b"), {filling("b-1", "movie", 4), filling("b-2", "movie", 4)}));
  EXPECT_EQ(locations(key("movie", 4)), (names{"b:partial |b-1,b-2"}));
  must(db_->apply(sid("b"), {filling("b-1", "movie", 4, false)}));
  EXPECT_EQ(locations(key("movie", 4)), (names{"b:partial |b-2"}));
  must(db_->apply(sid("b"), {filling("b-2", "movie", 4, false)}));
  EXPECT_EQ(locations(key("movie", 4)), names{});
  EXPECT_EQ(engine_rows(), 0);
}

TEST_P(LocationDb, MixedChangesInOneBatchApplyInOrder) {
  must(db_->apply(sid("a"), {filling("a-1", "movie", 0), whole("a-1", "movie", 0), held("movie", 0),
                             whole("a-2", "movie", 5), filling("a-2", "movie", 6),
                             whole("a-2", "movie", 5, false), held("other", 1),
                             filling("a-1", "other", 1), whole("a-1", "other", 1)}));
  EXPECT_EQ(locations(key("movie", 0)), (names{"a:complete a-1|"}));
  EXPECT_EQ(locations(key("movie", 5)), names{});
  EXPECT_EQ(locations(key("movie", 6)), (names{"a:partial |a-2"}));
  EXPECT_EQ(locations(key("other", 1)), (names{"a:complete a-1|"}));
  EXPECT_EQ(holders(key("movie", 0)), (names{"a"}));
  EXPECT_EQ(holders(key("movie", 6)), names{});
}

TEST_P(LocationDb, EngineRowsSurviveReopening) {
  must(db_->apply(sid("a"), {whole("a-1", "movie", 999'999), filling("a-2", "movie", 3)}));
  db_.reset();
  auto again = reopen();
  EXPECT_EQ(locations(*again, key("movie", 999'999)), (names{"a:partial a-1|"}));
  EXPECT_EQ(locations(*again, key("movie", 3)), (names{"a:partial |a-2"}));
}

// A database made before engine rows existed: opening it adds the table and keeps the rest.
TEST_P(LocationDb, OpeningAnOlderDatabaseAddsTheEngineTable) {
  db_.reset();
  {
    auto old = must(db::open(url_));
    must(old->exec_script(R"(
      DROP TABLE IF EXISTS engine_holdings;
      DROP TABLE IF EXISTS holdings;
      DROP TABLE IF EXISTS programs;
      DROP TABLE IF EXISTS stations;
      CREATE TABLE stations (name TEXT PRIMARY KEY, director_url TEXT NOT NULL,
        home BIGINT NOT NULL, x_km DOUBLE PRECISION NOT NULL, y_km DOUBLE PRECISION NOT NULL,
        uplink_bps BIGINT NOT NULL);
      CREATE TABLE programs (id TEXT PRIMARY KEY, manifest TEXT NOT NULL, targets TEXT NOT NULL,
        prefetch BIGINT NOT NULL);
      CREATE TABLE holdings (program TEXT NOT NULL, station TEXT NOT NULL, bits BLOB NOT NULL,
        held BIGINT NOT NULL, PRIMARY KEY (program, station));
      INSERT INTO stations VALUES ('a', 'http://127.0.0.1:1', 0, 1, 2, 3);
    )"));
    must(old->exec("INSERT INTO holdings VALUES ('movie', 'a', $1, 1)",
                   {db::blob{std::string("\x02", 1)}}));
  }
  db_ = reopen();
  EXPECT_EQ(holders(key("movie", 1)), (names{"a"}));
  EXPECT_EQ(must(db_->stations()).size(), 1u);
  must(db_->apply(sid("a"), {whole("a-1", "movie", 1)}));
  EXPECT_EQ(locations(key("movie", 1)), (names{"a:complete a-1|"}));
}

// --- segment_bits ---

TEST(SegmentBits, EmptyHoldsNothing) {
  segment_bits b;
  EXPECT_EQ(b.count(), 0u);
  EXPECT_FALSE(b.test(0));
  EXPECT_FALSE(b.test(999'999));
  EXPECT_TRUE(b.bytes().empty());
}

TEST(SegmentBits, SetTestAndCount) {
  segment_bits b;
  for (uint32_t i : {0u, 1u, 7u, 8u, 9u, 63u}) {
    b.set(i, true);
  }
  for (uint32_t i = 0; i < 80; ++i) {
    bool expect = i == 0 || i == 1 || i == 7 || i == 8 || i == 9 || i == 63;
    EXPECT_EQ(b.test(i), expect) << i;
  }
  EXPECT_EQ(b.count(), 6u);
  b.set(7, true);  // again: no change
  EXPECT_EQ(b.count(), 6u);
  b.set(7, false);
  EXPECT_FALSE(b.test(7));
  EXPECT_TRUE(b.test(8));
  EXPECT_EQ(b.count(), 5u);
}

TEST(SegmentBits, LittleEndianBitsWithinBytes) {
  segment_bits b;
  b.set(0, true);
  b.set(10, true);
  ASSERT_EQ(b.bytes().size(), 2u);
  EXPECT_EQ(static_cast<uint8_t>(b.bytes()[0]), 0x01);
  EXPECT_EQ(static_cast<uint8_t>(b.bytes()[1]), 0x04);
  segment_bits from(std::string("\x80\x01", 2));
  EXPECT_TRUE(from.test(7));
  EXPECT_TRUE(from.test(8));
  EXPECT_FALSE(from.test(0));
  EXPECT_EQ(from.count(), 2u);
}

TEST(SegmentBits, GrowsToTheHighestSetBit) {
  segment_bits b;
  b.set(999'999, true);
  EXPECT_EQ(b.bytes().size(), 999'999u / 8 + 1);
  EXPECT_TRUE(b.test(999'999));
  EXPECT_FALSE(b.test(999'998));
  EXPECT_FALSE(b.test(1'000'000));
  EXPECT_EQ(b.count(), 1u);
  b.set(5, true);
  EXPECT_EQ(b.bytes().size(), 999'999u / 8 + 1);  // setting below the end does not grow it
  EXPECT_EQ(b.count(), 2u);
}

TEST(SegmentBits, ClearingBeyondTheEndDoesNotGrow) {
  segment_bits b;
  b.set(3, true);
  b.set(10'000, false);
  EXPECT_EQ(b.bytes().size(), 1u);
  EXPECT_EQ(b.count(), 1u);
  EXPECT_TRUE(b.test(3));
  segment_bits empty;
  empty.set(0, false);
  EXPECT_TRUE(empty.bytes().empty());
}

TEST(SegmentBits, ClearingTheHighestBitsShrinksIt) {
  segment_bits b;
  b.set(2, true);
  b.set(999, true);
  b.set(999, false);
  EXPECT_EQ(b.bytes().size(), 1u);
  b.set(2, false);
  EXPECT_TRUE(b.bytes().empty());
}

TEST(SegmentBits, CountsEveryBitOfEveryByte) {
  segment_bits b(std::string(1000, '\xff'));
  EXPECT_EQ(b.count(), 8000u);
  for (uint32_t i = 0; i < 8000; i += 2) {
    b.set(i, false);
  }
  EXPECT_EQ(b.count(), 4000u);
  EXPECT_FALSE(b.test(7998));
  EXPECT_TRUE(b.test(7999));
}

}  // namespace
}  // namespace vodgrid::registry
