// The registry's database: stations, programs with their distribution parameters, and where every
// segment lives. Locations are kept per (program, station) as a bitmap of the segments that
// station holds whole — one row per program a station holds, not one per segment copy — so that
// 10^5 programs × 10^3 segments × 10^3 stations fit (docs/registry.md has the sizing). That table
// is the index source lookups read; beside it, per (program, station, engine), two bitmaps say
// which segments each engine holds whole and which it is receiving.
// Threading: not thread-safe; the registry daemon calls it from its one database thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/api.h"
#include "base/ids.h"
#include "base/result.h"
#include "db/db.h"

namespace vodgrid::registry {

struct station_record {
  station_id name;
  std::string director_url;
  bool home = false;
  double x_km = 0, y_km = 0;
  uint64_t uplink_bits_per_second = 0;
};

struct program_record {
  program_id id;
  std::string manifest_json;         // api::program_manifest as JSON
  std::vector<std::string> targets;  // stations that must hold it
  uint32_t prefetch =
      0;  // segments to pre-position at each target, from the start (api::distribution)
};

// A change at the station as a whole (no engine) or at one of its engines, as a director reports
// it; api.h gives the meaning of each kind.
using api::location_change;

// Where one segment lives at one station.
struct station_locations {
  std::string station;
  bool complete = false;             // the station holds it whole: a source
  std::vector<std::string> engines;  // its engines holding it whole, by name
  std::vector<std::string> filling;  // its engines receiving it, by name: never a source
};

// A set of segment indices as a little bitmap (bit i of byte i/8).
class segment_bits {
 public:
  segment_bits() = default;
  explicit segment_bits(std::string bytes) : bytes_(std::move(bytes)) {}
  bool test(uint32_t i) const;
  // Clearing drops trailing zero bytes, so a bitmap of copies in flight stays as short as they.
  void set(uint32_t i, bool on);
  uint64_t count() const;
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

class location_db {
 public:
  // Opens (db::open URL) and creates the schema if missing.
  static result<std::unique_ptr<location_db>> open(const std::string& url);

  status put_station(const station_record& s);
  result<std::vector<station_record>> stations();

  status put_program(const program_record& p);
  result<std::optional<program_record>> program(const program_id& id);
  result<std::vector<program_record>> programs();
  // The first `limit` programs by id without their manifests (manifest_json empty), and how many
  // programs there are in all: what the dashboard lists, at a cost that does not grow with them.
  result<std::pair<std::vector<program_record>, uint64_t>> program_page(size_t limit);

  // Applies one station's changes, in order, in one transaction; durable when it returns.
  // Station-level changes move the station index (holders, counts); engine changes move only the
  // per-engine rows. An engine's whole-segment change, held or not, also ends its filling of it.
  status apply(const station_id& station, const std::vector<location_change>& changes);
  // A station's report numbered `seq` (api::station_report::seq, rising across its director's
  // restarts): applied as apply() does, with the seq recorded in the same transaction, only if
  // seq is above every one applied for the station. An older or repeated one changes nothing
  // (applied false) and gets the station's last applied seq: a report repeated on another registry
  // daemon after a timeout may otherwise be committed late by the stalled one, over newer reports.
  // seq 0 (a director that numbers none): applied as it comes.
  struct report_outcome {
    bool applied = true;
    uint64_t last_seq = 0;  // the station's last applied seq, when not applied
  };
  result<report_outcome> apply_report(const station_id& station, uint64_t seq,
                                      const std::vector<location_change>& changes);
  // Stations holding the segment whole (the station index; filling copies are never here).
  result<std::vector<std::string>> holders(const segment_key& key);
  // Every station holding the segment whole or with an engine holding or receiving it, by name.
  result<std::vector<station_locations>> locations(const segment_key& key);
  // Per station, how many segments of the program it holds.
  result<std::map<std::string, uint64_t>> counts(const program_id& id);
  // Segments held whole at `station`, per program: what a restarted director checks its view
  // against.
  result<std::map<std::string, uint64_t>> held_by(const station_id& station);

  db::connection& connection() { return *db_; }

 private:
  explicit location_db(std::unique_ptr<db::connection> c) : db_(std::move(c)) {}
  // Parts of apply, inside its transaction: one program's changes.
  status apply_station(const program_id& program, const station_id& station,
                       const std::vector<const location_change*>& list);
  status apply_engines(const program_id& program, const station_id& station,
                       const std::vector<const location_change*>& list);
  std::unique_ptr<db::connection> db_;
};

}  // namespace vodgrid::registry
