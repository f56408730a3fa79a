// The registry's database: stations, programs with their distribution parameters, and where every
// segment lives. Locations are kept per (program, station) as a bitmap of the segments that
// station holds whole — one row per program a station holds, not one per segment copy — so that
// 10^5 programs × 10^3 segments × 10^3 stations fit (docs/registry.md has the sizing).
// Threading: not thread-safe; the registry daemon calls it from its one database thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

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

struct location_change {
  segment_key key;
  bool held = true;  // false: the station no longer holds it
};

// A set of segment indices as a little bitmap (bit i of byte i/8).
class segment_bits {
 public:
  segment_bits() = default;
  explicit segment_bits(std::string bytes) : bytes_(std::move(bytes)) {}
  bool test(uint32_t i) const;
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

  // Applies one station's changes in one transaction; durable when it returns.
  status apply(const station_id& station, const std::vector<location_change>& changes);
  // Stations holding the segment whole.
  result<std::vector<std::string>> holders(const segment_key& key);
  // Per station, how many segments of the program it holds.
  result<std::map<std::string, uint64_t>> counts(const program_id& id);

  db::connection& connection() { return *db_; }

 private:
  explicit location_db(std::unique_ptr<db::connection> c) : db_(std::move(c)) {}
  std::unique_ptr<db::connection> db_;
};

}  // namespace vodgrid::registry
