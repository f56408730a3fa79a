// The storage layer: one suite run on both backends (SQLite in a temporary folder, a real
// PostgreSQL server started for the run), plus the SQL rewriter and open()'s errors.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include "db/backend.h"
#include "db/db.h"
#include "support/postgres.h"
#include "support/support.h"

namespace vodgrid::db {
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

bool contains_nocase(std::string haystack, std::string needle) {
  for (auto* s : {&haystack, &needle}) {
    for (char& c : *s) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  return haystack.find(needle) != std::string::npos;
}

std::string all_bytes(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    s[i] = static_cast<char>((i * 7919 + i / 256) & 0xff);
  }
  return s;
}

class Db : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (postgresql()) {
      url_ = test::fresh_postgres_schema("t");
    } else {
      url_ = "sqlite://" + (dir_.path() / "test.db").string();
    }
    c_ = reopen();
  }

  bool postgresql() const { return GetParam() == "postgresql"; }
  std::unique_ptr<connection> reopen() { return must(open(url_)); }

  void make_counter(connection& c) {
    must(c.exec_script("CREATE TABLE counter (k TEXT PRIMARY KEY, n BIGINT NOT NULL);"));
    must(c.exec("INSERT INTO counter (k, n) VALUES ('c', 0)"));
  }

  int64_t counter(connection& c) {
    return must(c.query("SELECT n FROM counter WHERE k = 'c'")).at(0).i64(0);
  }

  // Writes a committed row 1 and an uncommitted row 2 to `t`, then crashes: SQLite's writer is a
  // child process that exits without closing anything; PostgreSQL's server is SIGKILLed and
  // started again on the same data.
  void write_then_crash() {
    auto write = [](connection& c) {
      must(in_transaction(c, [&]() -> status {
        auto n = c.exec("INSERT INTO t (k, v) VALUES ($1, $2)", {int64_t{1}, "committed"});
        return n ? status{} : status{n.err()};
      }));
      must(c.begin());
      must(c.exec("INSERT INTO t (k, v) VALUES ($1, $2)", {int64_t{2}, "uncommitted"}));
    };
    if (postgresql()) {
      auto c = reopen();
      write(*c);
      test::shared_postgres().kill(SIGKILL);
      test::shared_postgres().restart();
      return;
    }
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int code = 0;
      try {
        auto c = reopen();
        write(*c);
        (void)c.release();  // never closed: the process just ends
      } catch (...) {
        code = 1;
      }
      ::_exit(code);
    }
    int st = 0;
    ASSERT_EQ(::waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "the writer failed";
  }

  temp_dir dir_;
  std::string url_;
  std::unique_ptr<connection> c_;
};

INSTANTIATE_TEST_SUITE_P(Backends, Db, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

TEST_P(Db, ReportsItsDialect) {
  EXPECT_EQ(c_->kind(), postgresql() ? dialect::postgresql : dialect::sqlite);
}

TEST_P(Db, EveryValueTypeRoundTrips) {
  must(c_->exec_script(
      "CREATE TABLE t (k BIGINT PRIMARY KEY, i BIGINT, d DOUBLE PRECISION, s TEXT, b BLOB);"));
  const std::string nuls("\0a\0\xff\0", 5);
  std::vector<std::vector<value>> rows = {
      {int64_t{1}, std::numeric_limits<int64_t>::max(), 3.141592653589793, "héllo ✓", blob{nuls}},
      {int64_t{2}, std::numeric_limits<int64_t>::min(), -0.1, std::string(), blob{}},
      {int64_t{3}, int64_t{0}, 1e308, "it's \"quoted\" $1 ?1", blob{all_bytes(1 << 20)}},
      {int64_t{4}, int64_t{-1}, 5e-324, "x", blob{"\\x00"}},
      {int64_t{5}, std::monostate{}, std::monostate{}, std::monostate{}, std::monostate{}},
      {int64_t{6}, int64_t{42}, std::numeric_limits<double>::infinity(), "y", blob{"z"}},
  };
  for (const auto& r : rows) {
    EXPECT_EQ(must(c_->exec("INSERT INTO t (k, i, d, s, b) VALUES ($1, $2, $3, $4, $5)", r)), 1);
  }
  auto got = must(c_->query("SELECT k, i, d, s, b FROM t ORDER BY k"));
  ASSERT_EQ(got.size(), rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(got[i].cols, rows[i]) << "row " << i + 1;
  }
  EXPECT_EQ(got[2].bytes(4).size(), size_t{1} << 20);
  EXPECT_TRUE(got[4].is_null(1));
  EXPECT_EQ(got[0].f64(1), static_cast<double>(std::numeric_limits<int64_t>::max()));
  EXPECT_THROW((void)got[0].i64(2), std::logic_error);

  // Aggregates come back as integers on both (PostgreSQL's SUM(BIGINT) is NUMERIC).
  auto agg = must(c_->query("SELECT COUNT(*), SUM(k), MAX(s) FROM t"));
  EXPECT_EQ(agg.at(0).i64(0), 6);
  EXPECT_EQ(agg.at(0).i64(1), 21);
  EXPECT_EQ(agg.at(0).text(2), "y");
}

TEST_P(Db, BlobsSelectedByValue) {
  must(c_->exec_script("CREATE TABLE t (k BIGINT PRIMARY KEY, b BLOB NOT NULL);"));
  const std::string a("\0\0\1", 3);
  const std::string b("\0\0\2", 3);
  must(c_->exec("INSERT INTO t (k, b) VALUES (1, $1), (2, $2)", {blob{a}, blob{b}}));
  auto got = must(c_->query("SELECT k FROM t WHERE b = $1", {blob{b}}));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].i64(0), 2);
}

TEST_P(Db, ParametersInAnyOrderAndRepeated) {
  must(c_->exec_script("CREATE TABLE t (k BIGINT PRIMARY KEY, a TEXT, b TEXT);"));
  must(c_->exec("INSERT INTO t (b, k, a) VALUES ($3, $1, $2)", {int64_t{7}, "first", "second"}));
  auto got = must(c_->query("SELECT a, b FROM t WHERE k = $1", {int64_t{7}}));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].text(0), "first");
  EXPECT_EQ(got[0].text(1), "second");
  auto same = must(
      c_->query("SELECT k FROM t WHERE a = $2 AND k = $1 AND k + 0 = $1", {int64_t{7}, "first"}));
  EXPECT_EQ(same.size(), 1u);
  auto literal = must(c_->query("SELECT '$1', $1 -- $2\n", {"x"}));
  EXPECT_EQ(literal.at(0).text(0), "$1");
  EXPECT_EQ(literal.at(0).text(1), "x");
}

TEST_P(Db, WrongParameterCountIsInvalidArgument) {
  must(c_->exec_script("CREATE TABLE t (k BIGINT PRIMARY KEY);"));
  auto few = c_->exec("INSERT INTO t (k) VALUES ($1)", {});
  ASSERT_FALSE(few);
  EXPECT_EQ(few.err().code, errc::invalid_argument);
  auto many = c_->query("SELECT k FROM t WHERE k = $1", {int64_t{1}, int64_t{2}});
  ASSERT_FALSE(many);
  EXPECT_EQ(many.err().code, errc::invalid_argument);
  auto nul = c_->query("SELECT $1", {std::string("a\0b", 3)});
  ASSERT_FALSE(nul);
  EXPECT_EQ(nul.err().code, errc::invalid_argument);
}

TEST_P(Db, UpdateAndDeleteCountRows) {
  must(c_->exec_script("CREATE TABLE t (k BIGINT PRIMARY KEY, v BIGINT);"));
  for (int64_t k = 1; k <= 5; ++k) {
    must(c_->exec("INSERT INTO t (k, v) VALUES ($1, $2)", {k, k % 2}));
  }
  EXPECT_EQ(must(c_->exec("UPDATE t SET v = 10 WHERE v = $1", {int64_t{1}})), 3);
  EXPECT_EQ(must(c_->exec("UPDATE t SET v = 11 WHERE k = 99")), 0);
  EXPECT_EQ(must(c_->exec("DELETE FROM t WHERE v = 10")), 3);
  EXPECT_EQ(must(c_->exec("DELETE FROM t")), 2);
}

TEST_P(Db, SyntaxErrorIsAnErrorWithTheMessage) {
  auto r = c_->exec("SELEC 1");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::io_error);
  EXPECT_TRUE(contains_nocase(r.err().detail, "syntax error")) << r.err().detail;
  auto q = c_->query("SELECT * FROM no_such_table");
  ASSERT_FALSE(q);
  EXPECT_TRUE(contains_nocase(q.err().detail, "no_such_table")) << q.err().detail;
  auto s = c_->exec_script("CREATE TABLE t (k BIGINT); CREATE TABLE (;");
  ASSERT_FALSE(s);
  EXPECT_TRUE(contains_nocase(s.err().detail, "syntax error")) << s.err().detail;
  // The connection still works.
  EXPECT_EQ(must(c_->query("SELECT 1")).at(0).i64(0), 1);
}

TEST_P(Db, UniqueViolationIsConflict) {
  must(c_->exec_script("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT NOT NULL);"));
  must(c_->exec("INSERT INTO t (k, v) VALUES ($1, 'v')", {"a"}));
  auto r = c_->exec("INSERT INTO t (k, v) VALUES ($1, 'w')", {"a"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::conflict);
  EXPECT_TRUE(contains_nocase(r.err().detail, "unique")) << r.err().detail;
  auto not_null = c_->exec("INSERT INTO t (k, v) VALUES ('b', NULL)");
  ASSERT_FALSE(not_null);
  EXPECT_EQ(not_null.err().code, errc::conflict);
}

TEST_P(Db, ForeignKeysAreEnforced) {
  must(c_->exec_script(
      "CREATE TABLE parent (k BIGINT PRIMARY KEY);"
      "CREATE TABLE child (k BIGINT PRIMARY KEY, p BIGINT NOT NULL REFERENCES parent (k));"));
  auto r = c_->exec("INSERT INTO child (k, p) VALUES (1, 99)");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::conflict);
}

TEST_P(Db, UpsertInsertsThenUpdates) {
  must(c_->exec_script("CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL);"));
  const char* upsert =
      "INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = kv.v + excluded.v "
      "RETURNING v";
  EXPECT_EQ(must(c_->query(upsert, {"a", int64_t{5}})).at(0).i64(0), 5);
  EXPECT_EQ(must(c_->query(upsert, {"a", int64_t{3}})).at(0).i64(0), 8);
  EXPECT_EQ(must(c_->exec("INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING",
                          {"a", int64_t{100}})),
            0);
  auto got = must(c_->query("SELECT k, v FROM kv"));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].i64(1), 8);
}

TEST_P(Db, TransactionCommitsOnSuccess) {
  must(c_->exec_script("CREATE TABLE t (k BIGINT PRIMARY KEY);"));
  auto r = in_transaction(*c_, [&]() -> result<int64_t> {
    for (int64_t k = 1; k <= 3; ++k) {
      if (auto n = c_->exec("INSERT INTO t (k) VALUES ($1)", {k}); !n) {
        return n.err();
      }
    }
    return must(c_->query("SELECT COUNT(*) FROM t")).at(0).i64(0);
  });
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(*r, 3);
  auto other = reopen();  // another connection sees it
  EXPECT_EQ(must(other->query("SELECT COUNT(*) FROM t")).at(0).i64(0), 3);
}

TEST_P(Db, TransactionRollsBackOnFailure) {
  must(c_->exec_script("CREATE TABLE t (k BIGINT PRIMARY KEY);"));
  int calls = 0;
  status s = in_transaction(*c_, [&]() -> status {
    ++calls;
    must(c_->exec("INSERT INTO t (k) VALUES (1), (2)"));
    return make_error(errc::not_found, "no such thing");
  });
  ASSERT_FALSE(s);
  EXPECT_EQ(s.err().code, errc::not_found);
  EXPECT_EQ(s.err().detail, "no such thing");
  EXPECT_EQ(calls, 1);  // only conflicts are retried
  EXPECT_EQ(must(c_->query("SELECT COUNT(*) FROM t")).at(0).i64(0), 0);

  // A thrown exception rolls back too, and leaves the connection usable.
  auto throws = [&]() -> status {
    must(c_->exec("INSERT INTO t (k) VALUES (3)"));
    throw std::runtime_error("boom");
  };
  EXPECT_THROW((void)in_transaction(*c_, throws), std::runtime_error);
  EXPECT_EQ(must(c_->query("SELECT COUNT(*) FROM t")).at(0).i64(0), 0);
  must(c_->exec("INSERT INTO t (k) VALUES (4)"));
}

TEST_P(Db, TransactionRetriesConflictsThenCommits) {
  must(c_->exec_script("CREATE TABLE t (k BIGINT PRIMARY KEY);"));
  int calls = 0;
  status s = in_transaction(*c_, [&]() -> status {
    ++calls;
    must(c_->exec("INSERT INTO t (k) VALUES ($1)", {int64_t{calls}}));
    if (calls < 3) {
      return make_error(errc::conflict, "try again");
    }
    return {};
  });
  ASSERT_TRUE(s) << s.err().detail;
  EXPECT_EQ(calls, 3);
  auto got = must(c_->query("SELECT k FROM t"));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].i64(0), 3);

  calls = 0;
  status gave_up = in_transaction(
      *c_,
      [&]() -> status {
        ++calls;
        return make_error(errc::conflict, "always");
      },
      4);
  ASSERT_FALSE(gave_up);
  EXPECT_EQ(gave_up.err().code, errc::conflict);
  EXPECT_EQ(calls, 4);
}

TEST_P(Db, RollbackWithoutTransactionIsHarmless) {
  must(c_->rollback());
  must(c_->begin());
  must(c_->rollback());
  must(c_->rollback());
}

TEST_P(Db, ConcurrentReadModifyWriteLosesNoUpdate) {
  make_counter(*c_);
  constexpr int threads = 2;
  constexpr int increments = 200;
  std::atomic<int> failures{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      auto c = open(url_);
      if (!c) {
        failures += increments;
        return;
      }
      connection& conn = **c;
      for (int i = 0; i < increments; ++i) {
        status s = in_transaction(conn, [&]() -> status {
          // The portable read-modify-write: lock the row as it is read.
          auto got = conn.query("SELECT n FROM counter WHERE k = $1 FOR UPDATE", {"c"});
          if (!got) {
            return got.err();
          }
          auto n =
              conn.exec("UPDATE counter SET n = $1 WHERE k = $2", {got->at(0).i64(0) + 1, "c"});
          return n ? status{} : status{n.err()};
        });
        if (!s) {
          ++failures;
        }
      }
    });
  }
  for (auto& w : workers) {
    w.join();
  }
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(counter(*c_), threads * increments);
}

TEST_P(Db, CommittedWriteSurvivesACrash) {
  must(c_->exec_script("CREATE TABLE t (k BIGINT PRIMARY KEY, v TEXT NOT NULL);"));
  c_.reset();
  write_then_crash();
  auto c = reopen();
  auto got = must(c->query("SELECT k, v FROM t ORDER BY k"));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].i64(0), 1);
  EXPECT_EQ(got[0].text(1), "committed");
}

// PostgreSQL only: what a dropped connection does.
class Postgres : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = test::fresh_postgres_schema("t");
    c_ = must(open(url_));
  }
  std::string url_;
  std::unique_ptr<connection> c_;
};

TEST_F(Postgres, ReconnectsOnTheCallAfterTheServerCameBack) {
  must(c_->exec_script("CREATE TABLE t (k BIGINT PRIMARY KEY);"));
  must(c_->begin());
  must(c_->exec("INSERT INTO t (k) VALUES (1)"));
  test::shared_postgres().kill(SIGKILL);
  test::shared_postgres().restart();
  // The call that finds the connection gone fails; the transaction went with it.
  auto lost = c_->exec("INSERT INTO t (k) VALUES (2)");
  ASSERT_FALSE(lost);
  EXPECT_EQ(lost.err().code, errc::unavailable) << lost.err().detail;
  // Until it is rolled back, the transaction's statements fail rather than run on their own.
  auto again = c_->exec("INSERT INTO t (k) VALUES (3)");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.err().code, errc::unavailable) << again.err().detail;
  must(c_->rollback());
  must(c_->exec("INSERT INTO t (k) VALUES (4)"));
  auto got = must(c_->query("SELECT k FROM t"));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].i64(0), 4);
}

TEST_F(Postgres, CommitAfterAFailedStatementReportsThatFailure) {
  must(c_->exec_script("CREATE TABLE t (k BIGINT PRIMARY KEY);"));
  must(c_->exec("INSERT INTO t (k) VALUES (1)"));
  must(c_->begin());
  must(c_->exec("INSERT INTO t (k) VALUES (2)"));
  ASSERT_FALSE(c_->exec("INSERT INTO t (k) VALUES (1)"));
  status s = c_->commit();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.err().code, errc::conflict);
  EXPECT_TRUE(contains_nocase(s.err().detail, "rolled back")) << s.err().detail;
  EXPECT_EQ(must(c_->query("SELECT COUNT(*) FROM t")).at(0).i64(0), 1);
}

TEST_F(Postgres, BlobColumnsAreBytea) {
  must(c_->exec_script("CREATE TABLE t (b BLOB, \"blob note\" TEXT DEFAULT 'BLOB');"));
  auto got = must(c_->query(
      "SELECT data_type, column_default FROM information_schema.columns WHERE table_name = 't' AND "
      "table_schema = current_schema() ORDER BY ordinal_position"));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].text(0), "bytea");
  EXPECT_EQ(got[1].text(0), "text");
  EXPECT_TRUE(contains_nocase(got[1].text(1), "'BLOB'")) << got[1].text(1);
}

TEST_F(Postgres, SerializationFailureIsConflict) {
  must(c_->exec_script("CREATE TABLE t (k BIGINT PRIMARY KEY, n BIGINT NOT NULL);"));
  must(c_->exec("INSERT INTO t (k, n) VALUES (1, 0)"));
  auto other = must(open(url_));
  must(c_->begin());
  must(c_->exec("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"));
  EXPECT_EQ(must(c_->query("SELECT n FROM t WHERE k = 1")).at(0).i64(0), 0);
  must(other->exec("UPDATE t SET n = 5 WHERE k = 1"));
  auto r = c_->exec("UPDATE t SET n = 1 WHERE k = 1");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::conflict) << r.err().detail;
  must(c_->rollback());
}

TEST_F(Postgres, SynchronousCommitOffIsTurnedBackOn) {
  auto c = must(open(test::shared_postgres().url() + "?options=-csynchronous_commit%3Doff"));
  EXPECT_EQ(must(c->query("SHOW synchronous_commit")).at(0).text(0), "on");
}

TEST(Sqlite, BusyDatabaseIsConflict) {
  temp_dir d;
  std::string url = "sqlite://" + (d.path() / "busy.db").string();
  auto a = must(open(url));
  auto b = must(open(url));
  must(b->exec("PRAGMA busy_timeout = 0"));  // fail at once rather than wait 5 s
  must(a->begin());
  status s = b->begin();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.err().code, errc::conflict) << s.err().detail;
  must(a->commit());
  must(b->begin());
  must(b->commit());
}

TEST(DbOpen, UnknownSchemeIsInvalidArgument) {
  auto r = open("mysql://user:secret@host/db");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::invalid_argument);
  EXPECT_EQ(r.err().detail.find("secret"), std::string::npos) << r.err().detail;
  EXPECT_EQ(open("sqlite:").err().code, errc::invalid_argument);
  EXPECT_EQ(open("sqlite://host/x.db").err().code, errc::invalid_argument);
}

TEST(DbOpen, PostgresqlWithNothingListeningIsUnavailable) {
  auto r = open(fmt::format("postgresql://vodgrid@127.0.0.1:{}/vodgrid", test::free_port()));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::unavailable) << r.err().detail;
}

TEST(DbOpen, SqliteInAMissingFolderIsIoError) {
  temp_dir d;
  auto r = open("sqlite://" + (d.path() / "no" / "such" / "x.db").string());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::io_error) << r.err().detail;
}

TEST(DbOpen, SqliteUrlForms) {
  auto mem = must(open("sqlite::memory:"));
  EXPECT_EQ(must(mem->query("SELECT 1 + 1")).at(0).i64(0), 2);
  temp_dir d;
  auto abs = must(open("sqlite://" + (d.path() / "a.db").string()));
  must(abs->exec_script("CREATE TABLE t (k BIGINT);"));
  EXPECT_TRUE(std::filesystem::exists(d.path() / "a.db"));
  EXPECT_EQ(must(abs->query("PRAGMA journal_mode")).at(0).text(0), "wal");
  EXPECT_EQ(must(abs->query("PRAGMA synchronous")).at(0).i64(0), 2);  // FULL
  EXPECT_EQ(must(abs->query("PRAGMA foreign_keys")).at(0).i64(0), 1);
}

TEST(SqlRewrite, PlaceholdersOutsideLiteralsAndComments) {
  auto r = detail::rewrite_sql(
      "SELECT '$1', \"$2\", E'\\'$3', $$ $4 $$, $t$ $5 $t$ /* $6 /* $7 */ */, a$8, $2 -- $9\n"
      ", $10",
      {.placeholder = '?'});
  EXPECT_EQ(r.params, 10);
  EXPECT_EQ(r.sql,
            "SELECT '$1', \"$2\", E'\\'$3', $$ $4 $$, $t$ $5 $t$ /* $6 /* $7 */ */, a$8, ?2 -- $9\n"
            ", ?10");
  EXPECT_EQ(detail::rewrite_sql("SELECT 1", {}).params, 0);
}

TEST(SqlRewrite, BlobBecomesByteaInCodeOnly) {
  auto r = detail::rewrite_sql(
      "CREATE TABLE t (a BLOB, b blob NOT NULL, \"blob\" TEXT, c TEXT "
      "DEFAULT 'blob', blobs TEXT) -- blob",
      {.blob_to_bytea = true});
  EXPECT_EQ(
      r.sql,
      "CREATE TABLE t (a BYTEA, b BYTEA NOT NULL, \"blob\" TEXT, c TEXT DEFAULT 'blob', blobs "
      "TEXT) -- blob");
}

TEST(SqlRewrite, TrailingForUpdateIsDroppedWhenAsked) {
  detail::rewrite_options strip{.strip_for_update = true};
  EXPECT_EQ(detail::rewrite_sql("SELECT n FROM t WHERE k = $1 FOR UPDATE", strip).sql,
            "SELECT n FROM t WHERE k = $1");
  EXPECT_EQ(detail::rewrite_sql("select n from t for  update ;\n", strip).sql, "select n from t");
  EXPECT_EQ(detail::rewrite_sql("SELECT 'for update'", strip).sql, "SELECT 'for update'");
  EXPECT_EQ(detail::rewrite_sql("SELECT n FROM t FOR UPDATE", {}).sql,
            "SELECT n FROM t FOR UPDATE");
}

}  // namespace
}  // namespace vodgrid::db
