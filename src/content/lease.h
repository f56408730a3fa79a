// A lease as a database row: one holder at a time, until it lapses by the database's own clock (so
// that the holders' clocks need not agree). The content manager's publish schedule runs under one
// (docs/registry.md): unlike an advisory lock it lives in the data, so it works on SQLite and
// survives a PostgreSQL failover, where a session-bound lock would vanish with the session.
// Threading: calls use the connection; run them where the connection is used (the database thread).
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "base/result.h"
#include "db/db.h"

namespace vodgrid::content {

// The database's now in milliseconds since the epoch, as an SQL expression of its dialect: the one
// clock that several content managers share (leases, ingest heartbeats).
std::string_view db_now_ms(db::dialect d);

// Runs a schema script (CREATE TABLE IF NOT EXISTS ...) in one transaction. On PostgreSQL under a
// transaction-scoped advisory lock: two managers starting at once would otherwise race in the
// server's catalog (IF NOT EXISTS is checked before the insert into pg_type, so the second fails
// with a unique violation instead of finding the table).
status create_schema(db::connection& c, std::string_view script);

class lease {
 public:
  // `name`: which lease ("publish"); `holder`: who asks, the same string across its restarts (a
  // holder restarted takes its lease back at once rather than wait for it to lapse).
  lease(std::string name, std::string holder, std::chrono::milliseconds ttl);

  static status create_table(db::connection& c);
  // Takes the lease if nobody holds it or its holder let it lapse, or renews it if ours; either
  // way it is ours for ttl from the database's now. false: another holds it.
  result<bool> acquire(db::connection& c) const;
  // Gives it up if ours (at a clean stop), so that a standby need not wait for it to lapse.
  status release(db::connection& c) const;
  // Who holds it now (nullopt: nobody, or it lapsed).
  static result<std::optional<std::string>> holder(db::connection& c, const std::string& name);

  const std::string& holder() const { return holder_; }
  std::chrono::milliseconds ttl() const { return ttl_; }

 private:
  std::string name_, holder_;
  std::chrono::milliseconds ttl_;
};

}  // namespace vodgrid::content
