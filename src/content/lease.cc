// The lease row (lease.h). Time is the database's: milliseconds since the epoch by each dialect's
// own expression, so a manager whose clock is off neither steals a live lease nor keeps a dead one.
#include "content/lease.h"

#include <fmt/format.h>

namespace vodgrid::content {

std::string_view db_now_ms(db::dialect d) {
  return d == db::dialect::postgresql
             ? "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
             : "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";
}

status create_schema(db::connection& c, std::string_view script) {
  return db::in_transaction(c, [&]() -> status {
    if (c.kind() == db::dialect::postgresql) {
      // One key for every content schema: they are created once per catalog, so nothing waits.
      if (auto r = c.exec("SELECT pg_advisory_xact_lock(hashtext('vodgrid content schema'))"); !r) {
        return r.err();
      }
    }
    return c.exec_script(script);
  });
}

lease::lease(std::string name, std::string holder, std::chrono::milliseconds ttl)
    : name_(std::move(name)), holder_(std::move(holder)), ttl_(ttl) {}

status lease::create_table(db::connection& c) {
  return create_schema(
      c,
      "CREATE TABLE IF NOT EXISTS content_leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, "
      "expires_ms BIGINT NOT NULL)");
}

result<bool> lease::acquire(db::connection& c) const {
  // One statement: taken when free, lapsed or ours; else the row stays and nothing changes.
  auto now = db_now_ms(c.kind());
  auto n = c.exec(fmt::format("INSERT INTO content_leases (name, holder, expires_ms) "
                              "VALUES ($1, $2, {0} + $3) "
                              "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                              "expires_ms = excluded.expires_ms "
                              "WHERE content_leases.holder = excluded.holder "
                              "OR content_leases.expires_ms < {0}",
                              now),
                  {name_, holder_, static_cast<int64_t>(ttl_.count())});
  if (!n) {
    return n.err();
  }
  return *n == 1;
}

status lease::release(db::connection& c) const {
  auto n = c.exec("DELETE FROM content_leases WHERE name = $1 AND holder = $2", {name_, holder_});
  if (!n) {
    return n.err();
  }
  return {};
}

result<std::optional<std::string>> lease::holder(db::connection& c, const std::string& name) {
  auto rows = c.query(fmt::format("SELECT holder FROM content_leases WHERE name = $1 AND "
                                  "expires_ms >= {}",
                                  db_now_ms(c.kind())),
                      {name});
  if (!rows) {
    return rows.err();
  }
  if (rows->empty()) {
    return std::optional<std::string>();
  }
  return std::optional<std::string>(rows->front().text(0));
}

}  // namespace vodgrid::content
