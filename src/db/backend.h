// Private to db: what the two backends share — the SQL rewriter that turns the portable dialect of
// db.h into each backend's, and the backends' factories.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "db/db.h"

namespace vodgrid::db::detail {

struct rewrite_options {
  // Placeholders $N are written as <placeholder>N: '$' keeps them, '?' makes SQLite's ?N.
  char placeholder = '$';
  // The word BLOB becomes BYTEA (PostgreSQL DDL).
  bool blob_to_bytea = false;
  // A trailing `FOR UPDATE` is dropped (SQLite, whose transactions already hold the write lock).
  bool strip_for_update = false;
};

struct rewritten {
  std::string sql;
  int params = 0;  // the highest $N used; 0 when there is none
};

// Rewrites code only: string literals ('..', E'..', $tag$..$tag$), quoted identifiers and comments
// are copied as they are.
rewritten rewrite_sql(std::string_view sql, const rewrite_options& how);

// Checks that `params` fit a statement whose highest placeholder is $`wanted`, and that no text
// parameter holds a NUL byte (PostgreSQL cannot store one; blobs can).
status check_params(int wanted, const std::vector<value>& params);

result<std::unique_ptr<connection>> open_sqlite(const std::string& path);
result<std::unique_ptr<connection>> open_postgresql(const std::string& url);

}  // namespace vodgrid::db::detail
