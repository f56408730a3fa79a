// The content manager's program catalog (claims 2, 11), kept through the storage layer (SQLite or
// PostgreSQL): each program's title, source, publish time and targets, what the packager found
// (duration, codecs, dimensions, bitrate, frames), its segment list (durations, sizes, SHA-256) or
// its renditions and the tracks dropped, its lifecycle state and every change of that state with
// its time.
//
// Lifecycle:  ingesting ──▶ inactive ──▶ published ◀──▶ withdrawn
//                  │           │                          ▲
//                  └─▶ failed  └──────────────────────────┘
// A failed program's id may be ingested again (the record is replaced; its history is kept).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/api.h"
#include "base/ids.h"
#include "base/result.h"
#include "base/time.h"
#include "db/db.h"

namespace vodgrid::content {

enum class program_state { ingesting, inactive, published, withdrawn, failed };
std::string_view to_string(program_state s);
std::optional<program_state> parse_state(std::string_view s);
// Whether the lifecycle allows from → to.
bool can_change(program_state from, program_state to);

struct program_entry {
  program_id id;
  std::string title;
  std::string source;  // the provider's file, URL or playlist
  program_state state = program_state::ingesting;
  wall_clock::time_point publish_at{};
  std::vector<std::string> targets;        // stations that pre-position it; empty: all but the home
  uint32_t prefetch = segment_index::max;  // segments each target copies ahead (api::distribution)
  wall_clock::time_point created_at{};
  wall_clock::time_point updated_at{};
  std::string error;  // why it failed
  // From the packager (zero until packaged).
  double duration = 0;
  std::string video_codec, audio_codec;
  int width = 0, height = 0;
  uint64_t bitrate = 0;
  int64_t video_frames = 0;
  size_t segment_count = 0;
  std::vector<api::segment_entry> segments;  // filled by catalog::get only
  // A program of several renditions (flow 9): their list (each loaded as "{id}--{name}"; the
  // program itself then has no segments) and the source's tracks that were not kept, each with
  // why. Recorded with what the packager found, so that a failed ingest knows what to remove.
  std::vector<api::rendition> renditions;
  std::vector<std::string> dropped;
};

struct state_change {
  wall_clock::time_point at;
  program_state state;
  std::string detail;
};

class catalog {
 public:
  // Creates the tables if needed. The connection is used by one thread at a time (the manager's
  // database thread).
  static result<std::unique_ptr<catalog>> open(db::connection& conn);

  // A new program in state ingesting, its ingest run by `owner` (one content manager's run: see
  // heartbeat). errc::conflict if the id exists in any state but failed (a failed program is
  // replaced).
  status create(const program_entry& p, const std::string& owner);
  // Moves a program to `to` at `at`, recording the change; errc::conflict if the lifecycle does
  // not allow it (the reason names both states) or, given `only_from`, if the program is in
  // another state (checked in the same transaction), errc::not_found for an unknown id.
  status change_state(const program_id& id, program_state to, wall_clock::time_point at,
                      std::string detail = {},
                      std::optional<program_state> only_from = std::nullopt);
  // Records what the packager found, the segment list, the renditions and the tracks dropped
  // (state unchanged).
  status set_packaged(const program_entry& p);
  status set_publish_at(const program_id& id, wall_clock::time_point t);
  // Several content managers over one catalog (docs/registry.md): each ingesting program records
  // its owner and a heartbeat by the database's clock, which the owner renews for all of its
  // ingests at once while it runs. The ingests whose owner's heartbeat is older than `stale` (or
  // that have none) were left by a manager gone: only those may be failed by another.
  status heartbeat(const std::string& owner);
  result<std::vector<program_id>> orphaned_ingests(std::chrono::milliseconds stale);

  result<std::optional<program_entry>> get(const program_id& id);   // with its segments
  result<std::optional<program_entry>> find(const program_id& id);  // without
  result<std::vector<program_entry>> list();                        // without segments
  result<std::vector<state_change>> history(const program_id& id);

 private:
  explicit catalog(db::connection& c) : conn_(c) {}
  db::connection& conn_;
};

}  // namespace vodgrid::content
