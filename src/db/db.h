// The storage layer every database of vodgrid goes through: one interface, two backends — SQLite
// (the embedded default) and PostgreSQL through libpq (production). SQL is written once with
// `$1, $2, ...` placeholders and portable types; the backends translate what differs.
// Threading: a connection is used by one thread at a time; daemons give it a thread of its own.
//
// The portable subset (what runs unchanged on both backends; see README.md):
//  - Column types: BIGINT, DOUBLE PRECISION, TEXT and BLOB. Write `BLOB` in DDL and run DDL through
//    exec_script: on PostgreSQL exec_script rewrites the word BLOB (outside quotes and comments) to
//    BYTEA, so `blob` must not be used as a name. exec() and query() do not rewrite it.
//  - Placeholders $1..$N, each number used any number of times, in any order; a statement takes
//    exactly as many parameters as its highest number.
//  - INSERT ... ON CONFLICT (cols) DO UPDATE SET ... / DO NOTHING, RETURNING, CREATE TABLE/INDEX
//    IF NOT EXISTS. No auto-increment columns: callers choose their keys.
//  - Read-modify-write: inside in_transaction, read the rows with `SELECT ... FOR UPDATE` (a
//    trailing plain FOR UPDATE), then write. PostgreSQL (READ COMMITTED) locks the rows until
//    commit; SQLite drops the clause, since begin() takes the database's write lock (BEGIN
//    IMMEDIATE). Where one statement does it (`UPDATE ... SET n = n + 1 ... RETURNING n`), prefer
//    that.
//  - After a statement fails inside a transaction, roll back: PostgreSQL aborts the transaction
//    (a later commit fails with the first error), SQLite keeps it.
//
// Errors: errc::conflict for constraint violations, serialization failures, deadlocks and a busy
// database (in_transaction retries these); errc::unavailable when the server cannot be reached or
// the connection dropped (the next call reconnects once); errc::invalid_argument for a wrong
// number of parameters; errc::no_space for a full disk; errc::io_error for the rest (syntax errors
// included), the detail carrying the backend's message.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/result.h"

namespace vodgrid::db {

// Bytes, kept apart from text so that each backend binds them as BLOB/BYTEA.
struct blob {
  std::string bytes;
  bool operator==(const blob&) const = default;
};

// A parameter or a column value. Columns come back by what they hold: integers (and PostgreSQL
// NUMERIC values without a fraction, like SUM(BIGINT)) as int64_t, floating point as double, text
// as std::string, BLOB/BYTEA as blob, NULL as monostate.
using value = std::variant<std::monostate, int64_t, double, std::string, blob>;

struct row {
  std::vector<value> cols;
  bool is_null(size_t i) const { return std::holds_alternative<std::monostate>(cols.at(i)); }
  int64_t i64(size_t i) const;  // integers; errors (throws) on another type
  double f64(size_t i) const;   // doubles or integers
  const std::string& text(size_t i) const;
  const std::string& bytes(size_t i) const;  // blobs
};

enum class dialect { sqlite, postgresql };

class connection {
 public:
  virtual ~connection() = default;
  virtual dialect kind() const = 0;
  // Runs one statement (no result rows expected); returns the number of rows changed.
  virtual result<int64_t> exec(std::string_view sql, const std::vector<value>& params = {}) = 0;
  virtual result<std::vector<row>> query(std::string_view sql,
                                         const std::vector<value>& params = {}) = 0;
  // Runs several statements separated by ';' without parameters (schema creation). On PostgreSQL
  // the word BLOB becomes BYTEA. Call it between begin() and commit() for all or nothing (both
  // backends have transactional DDL).
  virtual status exec_script(std::string_view sql) = 0;
  // Transactions; commit is durable when it returns (SQLite WAL + synchronous=FULL; PostgreSQL
  // with synchronous_commit on). SQLite's begin() takes the write lock (BEGIN IMMEDIATE), so
  // transactions on one SQLite database run one at a time; PostgreSQL's runs at the server's
  // default isolation (READ COMMITTED). rollback() outside a transaction does nothing.
  virtual status begin() = 0;
  virtual status commit() = 0;
  virtual status rollback() = 0;
};

// Opens a database by URL:
//   sqlite:///absolute/path/file.db   sqlite:relative/path.db   sqlite::memory:
//   postgresql://user@host:port/dbname   (any libpq connection URI; postgres:// too)
// Errors: errc::invalid_argument for an unknown scheme, errc::unavailable when the server cannot
// be reached, errc::io_error for a file that cannot be opened.
result<std::unique_ptr<connection>> open(std::string_view url);

// Runs `fn` inside a transaction, retrying on serialization failures and busy databases (up to
// `attempts`); commits if fn returns success, rolls back otherwise. fn returns status or
// result<T>, and must be safe to run again: every attempt starts from a fresh transaction. A
// failed commit counts like a failed fn. Not nestable.
template <class Fn>
auto in_transaction(connection& c, Fn fn, int attempts = 5) -> decltype(fn());

}  // namespace vodgrid::db

#include "db/db_impl.h"
