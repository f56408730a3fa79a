// The publish schedule on one content manager at a time (issue 18, item 3): the lease row on SQLite
// and PostgreSQL, and two real content managers over one catalog, the holder killed.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <csignal>
#include <latch>
#include <thread>

#include "base/time.h"
#include "content/catalog.h"
#include "content/lease.h"
#include "db/db.h"
#include "support/orders.h"
#include "support/postgres.h"
#include "support/support.h"

namespace vodgrid {
namespace {

using namespace std::chrono_literals;

void one_holder_at_a_time(db::connection& c) {
  ASSERT_TRUE(content::lease::create_table(c));
  content::lease a("publish", "a", 600ms), b("publish", "b", 600ms);
  auto got = a.acquire(c);
  ASSERT_TRUE(got) << got.err().detail;
  EXPECT_TRUE(*got);
  EXPECT_FALSE(*b.acquire(c));
  EXPECT_TRUE(*a.acquire(c));  // renewed
  EXPECT_EQ(*content::lease::holder(c, "publish"), std::optional<std::string>("a"));
  std::this_thread::sleep_for(400ms);
  EXPECT_FALSE(*b.acquire(c));  // renewed 400 ms ago: still a's
  std::this_thread::sleep_for(400ms);
  EXPECT_TRUE(*b.acquire(c));  // lapsed: b takes it
  EXPECT_FALSE(*a.acquire(c));
  EXPECT_EQ(*content::lease::holder(c, "publish"), std::optional<std::string>("b"));
  // a release by one who does not hold it changes nothing; by the holder, frees it at once
  ASSERT_TRUE(a.release(c));
  EXPECT_FALSE(*a.acquire(c));
  ASSERT_TRUE(b.release(c));
  EXPECT_EQ(*content::lease::holder(c, "publish"), std::nullopt);
  EXPECT_TRUE(*a.acquire(c));
  // Another lease is another row.
  content::lease other("other", "b", 600ms);
  EXPECT_TRUE(*other.acquire(c));
}

TEST(ContentLease, OneHolderAtATimeUntilItLapsesOnSqlite) {
  test::temp_dir dir;
  auto c = db::open("sqlite://" + (dir.path() / "content.db").string());
  ASSERT_TRUE(c);
  one_holder_at_a_time(**c);
}

TEST(ContentLease, OneHolderAtATimeUntilItLapsesOnPostgresql) {
  auto c = db::open(test::fresh_postgres_schema("lease"));
  ASSERT_TRUE(c) << c.err().detail;
  one_holder_at_a_time(**c);
}

// Several content managers over one catalog (issue 18): an ingest is orphaned only once its owner's
// heartbeat is stale; a live owner's renewals keep all of its ingests, and an ingest that ended is
// nobody's to recover.
void orphans_by_heartbeat(db::connection& c) {
  auto opened = content::catalog::open(c);
  ASSERT_TRUE(opened) << opened.err().detail;
  auto& cat_ = *opened;
  using content::program_state;
  const auto t0 = *parse_rfc3339("2026-11-25T20:00:00Z");
  auto film = [&](std::string id) {
    content::program_entry p;
    p.id = *program_id::parse(id);
    p.title = "A film";
    p.source = "/srv/film.mp4";
    p.created_at = t0;
    p.publish_at = t0 + 1h;
    return p;
  };
  ASSERT_TRUE(cat_->create(film("live"), "a#1"));
  ASSERT_TRUE(cat_->create(film("dead"), "b#1"));
  ASSERT_TRUE(cat_->create(film("done"), "a#1"));
  ASSERT_TRUE(cat_->change_state(*program_id::parse("done"), program_state::inactive, t0));
  auto ids = [](const vodgrid::result<std::vector<program_id>>& r) {
    std::vector<std::string> out;
    for (auto& id : *r) {
      out.push_back(id.str());
    }
    return out;
  };
  auto fresh = cat_->orphaned_ingests(10s);
  ASSERT_TRUE(fresh) << fresh.err().detail;
  EXPECT_TRUE(fresh->empty());
  for (int i = 0; i < 4; ++i) {  // a renews, b is gone
    std::this_thread::sleep_for(500ms);
    ASSERT_TRUE(cat_->heartbeat("a#1"));
  }
  auto stale = cat_->orphaned_ingests(1200ms);
  ASSERT_TRUE(stale) << stale.err().detail;
  EXPECT_EQ(ids(stale), std::vector<std::string>{"dead"});
  // Failed, it is no longer an ingest; ingested again by another, it is that one's.
  ASSERT_TRUE(cat_->change_state(*program_id::parse("dead"), program_state::failed, t0, "gone"));
  EXPECT_TRUE(cat_->orphaned_ingests(1200ms)->empty());
  ASSERT_TRUE(cat_->create(film("dead"), "a#1"));
  EXPECT_TRUE(cat_->orphaned_ingests(1200ms)->empty());
  // The owner gone too: everything it ran is orphaned.
  std::this_thread::sleep_for(1300ms);
  EXPECT_EQ(ids(cat_->orphaned_ingests(1200ms)), (std::vector<std::string>{"dead", "live"}));
}

TEST(ContentLease, AnIngestIsOrphanedOnlyOnceItsOwnersHeartbeatIsStaleOnSqlite) {
  test::temp_dir dir;
  auto c = db::open("sqlite://" + (dir.path() / "content.db").string());
  ASSERT_TRUE(c);
  orphans_by_heartbeat(**c);
}

TEST(ContentLease, AnIngestIsOrphanedOnlyOnceItsOwnersHeartbeatIsStaleOnPostgresql) {
  auto c = db::open(test::fresh_postgres_schema("ingests"));
  ASSERT_TRUE(c) << c.err().detail;
  orphans_by_heartbeat(**c);
}

// Two or more content managers starting at once over one PostgreSQL catalog: every one creates the
// tables or finds them (CREATE TABLE IF NOT EXISTS alone races in the server's catalog).
TEST(ContentLease, ManagersCreatingTheTablesAtOnceOnPostgresqlAllSucceed) {
  constexpr int managers = 6;
  for (int round = 0; round < 8; ++round) {
    auto url = test::fresh_postgres_schema("race");
    std::vector<std::unique_ptr<db::connection>> conns;
    for (int i = 0; i < managers; ++i) {
      auto c = db::open(url);
      ASSERT_TRUE(c) << c.err().detail;
      conns.push_back(std::move(*c));
    }
    std::latch go(managers);
    std::vector<std::string> errors(managers);
    std::vector<std::thread> threads;
    for (int i = 0; i < managers; ++i) {
      threads.emplace_back([&, i] {
        go.arrive_and_wait();
        auto cat = content::catalog::open(*conns[i]);
        auto st = cat ? content::lease::create_table(*conns[i]) : status{cat.err()};
        if (!st) {
          errors[i] = st.err().detail;
        }
      });
    }
    for (auto& t : threads) {
      t.join();
    }
    for (auto& e : errors) {
      EXPECT_EQ(e, "") << "round " << round;
    }
  }
}

double publishes(const std::string& url) {
  return test::metric(url, "vodgrid_content_publishes_total");
}

bool holds_lease(const std::string& url) {
  auto r = test::http_get(url + "/healthz");
  return r && r->body.find("\"publish_lease\":true") != std::string::npos;
}

std::string state_of(const std::string& content, const std::string& id) {
  auto r = test::http_get(content + "/v1/programs/" + id);
  if (!r || r->status != 200) {
    return {};
  }
  auto at = r->body.find("\"state\":\"");
  return at == std::string::npos ? std::string()
                                 : r->body.substr(at + 9, r->body.find('"', at + 9) - at - 9);
}

// Publishes at `at`, or at once without it (a time of "now" would be in the past by the time the
// manager reads it on a loaded machine).
test::run_result ingest_at(const std::string& content, const std::string& source,
                           const std::string& id,
                           std::optional<wall_clock::time_point> at = std::nullopt) {
  auto argv = std::vector<std::string>({test::vodgrid_binary(), "ingest", source, "--title", id,
                                        "--id", id, "--grid", content, "--remux"});
  if (at) {
    argv.insert(argv.end(), {"--publish-at", format_rfc3339(*at)});
  }
  return test::run(argv, 120s);
}

// Two content managers over one catalog: only the lease holder publishes, including a program
// ingested through the standby; the holder killed, the standby takes the schedule over once the
// lease lapses and publishes what is due.
TEST(ContentLease, OnlyTheHolderPublishesAndAStandbyTakesOverWhenItIsKilled) {
  constexpr auto lease = 1500ms;
  test::grid_fixture g({{"home", 2}}, {}, true, false,
                       {.content_managers = 2, .publish_lease = lease});
  g.start("content-2");
  auto first = g.content_url(), standby = g.content_url("content-2");
  ASSERT_TRUE(test::eventually([&] { return holds_lease(first); }));
  EXPECT_FALSE(holds_lease(standby));
  EXPECT_TRUE(test::eventually([&] {
    return g.log_of("content-2").find("standby; the publish schedule is held by") !=
           std::string::npos;
  })) << g.log_of("content-2");

  test::temp_dir src;
  auto sample = test::make_sample(src.path(), 3, 1);
  auto in = ingest_at(standby, sample.string(), "film", wall_clock::now() + 4s);
  ASSERT_EQ(in.status, 0) << in.err;
  ASSERT_TRUE(test::eventually([&] { return state_of(first, "film") == "published"; }, 15s))
      << state_of(first, "film");
  EXPECT_EQ(publishes(first), 1);
  EXPECT_EQ(publishes(standby), 0);

  // Due 3 s from now; the holder dies: the standby publishes it after the lease lapses. The holder
  // is stopped before the ingest, so that however long the ingest takes (over 3 s under ASan on a
  // busy machine), the holder cannot publish it before it is killed.
  g.signal("content", SIGSTOP);
  in = ingest_at(standby, sample.string(), "later", wall_clock::now() + 3s);
  ASSERT_EQ(in.status, 0) << in.err;
  auto killed = std::chrono::steady_clock::now();
  g.kill("content", SIGKILL);
  ASSERT_TRUE(test::eventually([&] { return holds_lease(standby); }, 10s)) << g.log_of("content-2");
  auto took = std::chrono::steady_clock::now() - killed;
  EXPECT_LT(took, lease + lease / 3 + 2s);  // lapsed, then the standby's next try
  ASSERT_TRUE(test::eventually([&] { return state_of(standby, "later") == "published"; }, 15s))
      << state_of(standby, "later") << g.log_of("content-2");
  EXPECT_EQ(publishes(standby), 1);
  EXPECT_NE(g.log_of("content-2").find("holds the publish schedule"), std::string::npos);

  // The first one back at the same address: it stays standby while the other renews.
  g.start("content");
  std::this_thread::sleep_for(lease);
  EXPECT_FALSE(holds_lease(first));
  EXPECT_TRUE(holds_lease(standby));
}

// An ingest runs on the manager that took it, whichever holds the lease: a holder restarted (which
// takes its lease back at once) leaves the other manager's live ingest alone; an ingest whose
// manager died is failed by the holder once that manager's heartbeat lapses.
TEST(ContentLease, TheHolderFailsOnlyTheIngestsOfAManagerGone) {
  constexpr auto lease = 1500ms;
  test::grid_fixture g({{"home", 2}}, {}, true, false,
                       {.content_managers = 2, .publish_lease = lease});
  g.start("content-2");
  auto first = g.content_url(), second = g.content_url("content-2");
  ASSERT_TRUE(test::eventually([&] { return holds_lease(first); }));
  test::temp_dir src;
  auto sample = test::make_sample(src.path(), 3, 1);
  uintmax_t size = 0;  // the playlist and its segments
  for (auto& f : std::filesystem::directory_iterator(src.path())) {
    size += f.file_size();
  }
  // Downloaded in about 8 s.
  test::slow_source provider(src.path(), {"--rate", std::to_string(size / 8 + 1)});
  auto start_ingest = [&](const std::string& id) {
    auto body = fmt::format(R"({{"id":"{}","title":"{}","source":"{}"}})", id, id,
                            provider.url(sample.filename().string()));
    auto r = test::http(boost::beast::http::verb::post, second + "/v1/programs", body);
    ASSERT_TRUE(r && r->status == 202) << (r ? r->body : r.err().detail);
  };
  start_ingest("live");
  ASSERT_TRUE(test::eventually([&] { return provider.requests(sample.filename().string()) > 0; }));
  g.kill("content", SIGKILL);
  g.start("content");
  ASSERT_TRUE(test::eventually([&] { return holds_lease(first); }, 5s));
  std::this_thread::sleep_for(lease);  // rounds of the holder: the ingest is not its to fail
  EXPECT_EQ(state_of(first, "live"), "ingesting") << g.log_of("content");
  ASSERT_TRUE(test::eventually(
      [&] {
        auto s = state_of(second, "live");
        return s != "ingesting" && !s.empty();
      },
      60s))
      << state_of(second, "live") << g.log_of("content-2");
  EXPECT_NE(state_of(second, "live"), "failed") << g.log_of("content") << g.log_of("content-2");

  // The ingesting manager killed mid-download: its ingest is failed by the holder once its
  // heartbeat is older than the lease.
  start_ingest("orphan");
  ASSERT_TRUE(test::eventually([&] { return provider.requests(sample.filename().string()) > 1; }));
  g.kill("content-2", SIGKILL);
  auto killed = std::chrono::steady_clock::now();
  ASSERT_TRUE(test::eventually([&] { return state_of(first, "orphan") == "failed"; }, 10s))
      << g.log_of("content");
  EXPECT_LT(std::chrono::steady_clock::now() - killed, lease + lease / 3 + 2s);
}

// A change one manager still pushes to a station that is away, changed again through the other
// manager, which then dies: the first pushes what the catalog says when the station returns, not
// what it queued.
TEST(ContentLease, AManagerPushesTheCatalogsStateNotTheOneItQueued) {
  test::grid_fixture g({{"home", 2}, {"edge", 2}}, {}, true, false,
                       {.content_managers = 2, .publish_lease = 1500ms});
  g.start("content-2");
  auto first = g.content_url(), second = g.content_url("content-2");
  test::temp_dir src;
  auto sample = test::make_sample(src.path(), 3, 1);
  auto in = ingest_at(first, sample.string(), "film");
  ASSERT_EQ(in.status, 0) << in.err << g.log_of("content");
  auto edge_playlist = g.director_url("edge") + "/v1/programs/film/index.m3u8";
  auto answers = [](const std::string& url) {
    auto r = test::http_get(url);
    return r && r->status == 200;
  };
  ASSERT_TRUE(test::eventually([&] { return answers(edge_playlist); }, 15s));
  auto post = [](const std::string& url) {
    auto r = test::http(boost::beast::http::verb::post, url);
    return r ? r->status : 0u;
  };
  g.kill("edge", SIGKILL);
  ASSERT_EQ(post(first + "/v1/programs/film/withdraw"), 200u);  // the first queues "withdrawn"
  ASSERT_EQ(post(second + "/v1/programs/film/publish"), 200u);  // the catalog: published
  g.kill("content-2", SIGKILL);
  g.start("edge");
  ASSERT_TRUE(test::eventually([&] { return answers(g.director_url("edge") + "/healthz"); }, 15s));
  // The first's next round reaches the edge (its pauses grow to 5 s).
  std::this_thread::sleep_for(7s);
  auto r = test::http_get(edge_playlist);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200u) << r->body << g.log_of("content");
}

// A clean stop gives the lease up: the standby need not wait for it to lapse.
TEST(ContentLease, ACleanStopHandsTheScheduleOverAtOnce) {
  constexpr auto lease = 10s;
  test::grid_fixture g({{"home", 2}}, {}, true, false,
                       {.content_managers = 2, .publish_lease = lease});
  g.start("content-2");
  ASSERT_TRUE(test::eventually([&] { return holds_lease(g.content_url()); }));
  auto stopped = std::chrono::steady_clock::now();
  g.kill("content", SIGTERM);
  ASSERT_TRUE(test::eventually([&] { return holds_lease(g.content_url("content-2")); }, 10s));
  // Its next try, a third of the lease, not the lease.
  EXPECT_LT(std::chrono::steady_clock::now() - stopped, lease / 3 + 2s);
}

}  // namespace
}  // namespace vodgrid
