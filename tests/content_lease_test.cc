// The publish schedule on one content manager at a time (issue 18, item 3): the lease row on SQLite
// and PostgreSQL, and two real content managers over one catalog, the holder killed.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <csignal>

#include "base/time.h"
#include "content/lease.h"
#include "db/db.h"
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

test::run_result ingest_at(const std::string& content, const std::string& source,
                           const std::string& id, wall_clock::time_point at) {
  return test::run({test::vodgrid_binary(), "ingest", source, "--title", id, "--id", id, "--grid",
                    content, "--remux", "--publish-at", format_rfc3339(at)},
                   120s);
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

  // Due 3 s from now; the holder dies at once: the standby publishes it after the lease lapses.
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
