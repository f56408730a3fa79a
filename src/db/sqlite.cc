// The SQLite backend: one sqlite3 handle in WAL mode with synchronous=FULL, statements prepared
// once and cached by their text.
#include <sqlite3.h>

#include <fmt/format.h>
#include <functional>
#include <string>
#include <unordered_map>

#include "db/backend.h"

namespace vodgrid::db::detail {

namespace {

constexpr int busy_timeout_ms = 5000;
constexpr size_t max_cached_statements = 256;

struct string_hash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Busy and locked databases and constraint violations are conflicts (in_transaction retries
// them); a full disk is no_space; the rest io_error.
error sqlite_error(int rc, sqlite3* db, std::string_view what) {
  std::string msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  std::string detail = fmt::format("sqlite: {}: {}", what, msg);
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CONSTRAINT:
      return make_error(errc::conflict, std::move(detail));
    case SQLITE_FULL:
      return make_error(errc::no_space, std::move(detail));
    default:
      return make_error(errc::io_error, std::move(detail));
  }
}

// Leaves a cached statement ready for its next use, whatever happened to this one; an open
// statement would otherwise keep its read transaction.
class statement_use {
 public:
  explicit statement_use(sqlite3_stmt* s) : s_(s) {}
  ~statement_use() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  statement_use(const statement_use&) = delete;
  statement_use& operator=(const statement_use&) = delete;

 private:
  sqlite3_stmt* s_;
};

value read_column(sqlite3_stmt* s, int i) {
  switch (sqlite3_column_type(s, i)) {
    case SQLITE_INTEGER:
      return static_cast<int64_t>(sqlite3_column_int64(s, i));
    case SQLITE_FLOAT:
      return sqlite3_column_double(s, i);
    case SQLITE_TEXT: {
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
      return std::string(p, static_cast<size_t>(sqlite3_column_bytes(s, i)));
    }
    case SQLITE_BLOB: {
      const auto* p = static_cast<const char*>(sqlite3_column_blob(s, i));
      auto n = static_cast<size_t>(sqlite3_column_bytes(s, i));
      return blob{p == nullptr ? std::string() : std::string(p, n)};
    }
    default:
      return std::monostate{};
  }
}

class sqlite_connection final : public connection {
 public:
  explicit sqlite_connection(sqlite3* db) : db_(db) {}
  ~sqlite_connection() override {
    clear_cache();
    sqlite3_close_v2(db_);
  }
  sqlite_connection(const sqlite_connection&) = delete;
  sqlite_connection& operator=(const sqlite_connection&) = delete;

  dialect kind() const override { return dialect::sqlite; }

  result<int64_t> exec(std::string_view sql, const std::vector<value>& params) override {
    auto st = prepare(sql, params);
    if (!st) {
      return st.err();
    }
    statement_use use(*st);
    int rc;
    while ((rc = sqlite3_step(*st)) == SQLITE_ROW) {
    }
    if (rc != SQLITE_DONE) {
      return sqlite_error(rc, db_, "exec");
    }
    return sqlite3_stmt_readonly(*st) ? int64_t{0} : static_cast<int64_t>(sqlite3_changes64(db_));
  }

  result<std::vector<row>> query(std::string_view sql, const std::vector<value>& params) override {
    auto st = prepare(sql, params);
    if (!st) {
      return st.err();
    }
    statement_use use(*st);
    std::vector<row> rows;
    int rc;
    while ((rc = sqlite3_step(*st)) == SQLITE_ROW) {
      int n = sqlite3_column_count(*st);
      row r;
      r.cols.reserve(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) {
        r.cols.push_back(read_column(*st, i));
      }
      rows.push_back(std::move(r));
    }
    if (rc != SQLITE_DONE) {
      return sqlite_error(rc, db_, "query");
    }
    return rows;
  }

  status exec_script(std::string_view sql) override {
    std::string text(sql);
    char* msg = nullptr;
    int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &msg);
    if (rc != SQLITE_OK) {
      std::string m = msg != nullptr ? msg : sqlite3_errstr(rc);
      sqlite3_free(msg);
      error e = sqlite_error(rc, nullptr, "script");
      e.detail = fmt::format("sqlite: script: {}", m);
      return e;
    }
    return {};
  }

  // IMMEDIATE: the write lock is taken now, waiting up to the busy timeout, so that a transaction
  // that reads and then writes cannot fail half-way on a lock upgrade, and its reads stay true
  // until it commits.
  status begin() override { return simple("BEGIN IMMEDIATE"); }
  status commit() override { return simple("COMMIT"); }
  status rollback() override {
    if (sqlite3_get_autocommit(db_) != 0) {
      return {};  // no transaction open (or SQLite already rolled it back after an error)
    }
    return simple("ROLLBACK");
  }

 private:
  status simple(std::string_view sql) {
    auto r = exec(sql, {});
    if (!r) {
      return r.err();
    }
    return {};
  }

  // Whether [tail, end) holds another statement (rather than spaces, ';' and comments).
  bool more_statements(const char* tail, const char* end) {
    sqlite3_stmt* next = nullptr;
    int rc = sqlite3_prepare_v3(db_, tail, static_cast<int>(end - tail), 0, &next, nullptr);
    sqlite3_finalize(next);
    return rc != SQLITE_OK || next != nullptr;
  }

  void clear_cache() {
    for (auto& [text, st] : cache_) {
      sqlite3_finalize(st);
    }
    cache_.clear();
  }

  // The cached statement for `sql`, with `params` bound. Text and blobs are bound without a copy:
  // statement_use clears the bindings before `params` can go.
  result<sqlite3_stmt*> prepare(std::string_view sql, const std::vector<value>& params) {
    sqlite3_stmt* st = nullptr;
    if (auto it = cache_.find(sql); it != cache_.end()) {
      st = it->second;
    } else {
      auto rw = rewrite_sql(sql, {.placeholder = '?', .strip_for_update = true});
      const char* tail = nullptr;
      int rc = sqlite3_prepare_v3(db_, rw.sql.data(), static_cast<int>(rw.sql.size()),
                                  SQLITE_PREPARE_PERSISTENT, &st, &tail);
      if (rc != SQLITE_OK) {
        return sqlite_error(rc, db_, "prepare");
      }
      if (st == nullptr) {
        return make_error(errc::invalid_argument, "sqlite: empty statement");
      }
      if (more_statements(tail, rw.sql.data() + rw.sql.size())) {
        sqlite3_finalize(st);
        return make_error(errc::invalid_argument,
                          "sqlite: more than one statement (use exec_script)");
      }
      if (cache_.size() >= max_cached_statements) {
        clear_cache();
      }
      cache_.emplace(std::string(sql), st);
    }
    // ?N counts up to the highest N, as $N does on PostgreSQL.
    if (auto s = check_params(sqlite3_bind_parameter_count(st), params); !s) {
      return s.err();
    }
    for (size_t i = 0; i < params.size(); ++i) {
      int n = static_cast<int>(i + 1);
      int rc = std::visit(
          [&](const auto& v) -> int {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::monostate>) {
              return sqlite3_bind_null(st, n);
            } else if constexpr (std::is_same_v<T, int64_t>) {
              return sqlite3_bind_int64(st, n, v);
            } else if constexpr (std::is_same_v<T, double>) {
              return sqlite3_bind_double(st, n, v);
            } else if constexpr (std::is_same_v<T, std::string>) {
              return sqlite3_bind_text64(st, n, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8);
            } else {
              // A null pointer would bind NULL: an empty blob needs zeroblob.
              return v.bytes.empty() ? sqlite3_bind_zeroblob(st, n, 0)
                                     : sqlite3_bind_blob64(st, n, v.bytes.data(), v.bytes.size(),
                                                           SQLITE_STATIC);
            }
          },
          params[i]);
      if (rc != SQLITE_OK) {
        sqlite3_clear_bindings(st);
        return sqlite_error(rc, db_, "bind");
      }
    }
    return st;
  }

  sqlite3* db_;
  std::unordered_map<std::string, sqlite3_stmt*, string_hash, std::equal_to<>> cache_;
};

}  // namespace

result<std::unique_ptr<connection>> open_sqlite(const std::string& path) {
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    return make_error(errc::io_error, fmt::format("sqlite: open {}: {}", path, msg));
  }
  auto c = std::make_unique<sqlite_connection>(db);
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, busy_timeout_ms);
  // journal_mode answers with the mode it got: "wal", or "memory" for an in-memory database.
  auto mode = c->query("PRAGMA journal_mode=WAL", {});
  if (!mode) {
    return make_error(mode.err().code == errc::conflict ? errc::conflict : errc::io_error,
                      fmt::format("{} (opening {})", mode.err().detail, path));
  }
  if (mode->empty() || !std::holds_alternative<std::string>(mode->front().cols.at(0)) ||
      (mode->front().text(0) != "wal" && mode->front().text(0) != "memory")) {
    return make_error(errc::io_error, fmt::format("sqlite: {}: cannot use WAL", path));
  }
  for (const char* pragma : {"PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON"}) {
    if (auto r = c->exec(pragma, {}); !r) {
      return make_error(errc::io_error, fmt::format("{} (opening {})", r.err().detail, path));
    }
  }
  return std::unique_ptr<connection>(std::move(c));
}

}  // namespace vodgrid::db::detail
