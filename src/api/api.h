// The request and reply types that cross the wire between daemons and consoles, with their JSON
// mapping: one place per type. Decoders validate everything (names, indices, digests, ranges) and
// return errc::invalid_argument naming the first field at fault by its path, as in
// "heartbeat.added[3].sha256: must be 64 hex digits".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "base/ids.h"
#include "base/result.h"
#include "base/sha256.h"
#include "base/time.h"

namespace vodgrid::api {

// HTTP header carrying a segment's SHA-256 (hex) on PUT and on every segment reply.
inline constexpr const char* sha256_header = "X-Vodgrid-Sha256";
// HTTP header naming the engine that served a segment.
inline constexpr const char* engine_header = "X-Vodgrid-Engine";
// HTTP header on an engine's GET of a segment from another engine (a copy): names the receiver.
inline constexpr const char* copy_header = "X-Vodgrid-Copy";
// HTTP header on an engine's answer to a fetch order: "<epoch>/<seq>", the last heartbeat it had
// written when it answered. A heartbeat up to that one cannot know what the order changed; one may
// still be on its way to the director (station_tables' notes).
inline constexpr const char* heartbeat_header = "X-Vodgrid-Heartbeat";
struct heartbeat_mark {
  uint64_t epoch = 0;
  uint64_t seq = 0;
};
std::string to_header(const heartbeat_mark& m);
std::optional<heartbeat_mark> parse_heartbeat_mark(std::string_view v);

struct segment_ref {  // one held segment copy
  segment_key key;
  uint64_t size = 0;
  sha256_digest sha256{};
};

struct engine_load {
  uint32_t active_streams = 0;
  uint64_t bytes_per_second = 0;  // sent, averaged over the last heartbeat interval
  uint64_t free_bytes = 0;
  uint64_t total_bytes = 0;
  uint32_t max_streams = 0;
  uint64_t max_bytes_per_second = 0;  // 0: unlimited
  uint64_t used_bytes = 0;            // segment bytes held
  uint64_t max_disk_bytes = 0;        // the engine's disk budget for segments; 0: the filesystems'
  // Console requests for segments it has received since it started (served, handed on or
  // refused), counted when each is decided: the director tells from it which of the consoles it
  // sent are still on their way (director/tables.h, consoles_in_flight). nullopt: an engine that
  // does not say.
  std::optional<uint64_t> consoles;
};

// A copy from other engines that ended since the last heartbeat (claim 20: "copy done").
struct copy_result {
  segment_key key;
  std::string source;  // the URL that delivered the last byte, or the last one tried
  uint64_t bytes = 0;
  double seconds = 0;
  bool ok = false;
  std::string error;  // why it failed
};

// POST /v1/engines/{name}/heartbeat (engine → director). `full` carries the whole inventory in
// `added` and replaces what the director knew; otherwise `added`/`removed` are changes since
// heartbeat `seq - 1` of the same `epoch` (one per engine process start).
struct heartbeat {
  engine_id engine;
  std::string url;
  uint64_t epoch = 0;
  uint64_t seq = 0;
  bool full = false;
  engine_load load;
  std::vector<segment_ref> added;
  std::vector<segment_key> removed;
  std::vector<segment_key> filling;  // every segment it is receiving now (not a change list)
  std::vector<copy_result> copies;
};
// The director's answer: resync asks for a full heartbeat next. `ticket_keys` (issue 17, item 2):
// the station's session-ticket keys, newest first, each its 80 bytes (net::ticket_key: name, AES
// key, HMAC key; base64url on the wire), tickets made with ticket_keys[ticket_key_in_use]. Sent
// only over TLS to an engine of the station (grid_config::shares_ticket_keys); empty otherwise.
inline constexpr size_t ticket_key_bytes = 80;
inline constexpr size_t max_ticket_keys = 8;
struct heartbeat_reply {
  bool resync = false;
  std::vector<std::string> ticket_keys;
  uint32_t ticket_key_in_use = 0;
};

// A random access point of a segment (its video key frame), for I-frame playlists: the bytes from
// its first packet up to the next video PES start.
struct key_frame {
  uint64_t offset = 0;
  uint64_t length = 0;
  double seconds = 0;  // its PTS after the segment's first video PTS
  bool operator==(const key_frame&) const = default;
};

struct segment_entry {
  segment_index index;
  double duration = 0;  // seconds
  uint64_t size = 0;
  sha256_digest sha256{};
  // From the loader's index of the segment (empty for programs loaded before it kept one): the
  // leading PAT and PMT bytes, and the key frames in the order of their offsets.
  uint64_t psi_bytes = 0;
  std::vector<key_frame> key_frames;
};

// Adaptive bitrate (DESIGN.md flow 9): a program of several renditions carries only their list;
// each rendition is an ordinary program of its own, named "{program}--{rendition}", with its
// segments. "--" in a program id is reserved for renditions (only the content manager makes such
// ids). The attributes are those of the multivariant playlist (RFC 8216, 4.3.4.1-2).
enum class rendition_kind { video, audio, subtitles };
std::string_view to_string(rendition_kind k);

inline constexpr std::string_view rendition_separator = "--";
inline constexpr size_t max_renditions = 32;      // renditions of one program
inline constexpr size_t max_rendition_name = 16;  // characters of a rendition's name

struct rendition {
  std::string name;  // "720p", "audio-fr": a valid name of at most 16 characters, without "--"
  rendition_kind kind = rendition_kind::video;
  uint64_t bandwidth = 0;          // bits/s, peak (BANDWIDTH); positive
  uint64_t average_bandwidth = 0;  // bits/s (AVERAGE-BANDWIDTH); 0: unknown
  std::string codecs;              // RFC 6381, e.g. "avc1.64001f,mp4a.40.2"; may be empty
  int width = 0, height = 0;       // video; 0: unknown
  double frame_rate = 0;           // video; 0: unknown
  std::string language;            // audio, subtitles: RFC 5646 ("fr", "en-US"); may be empty
  std::string title;               // EXT-X-MEDIA NAME; empty: the name
  bool is_default = false;         // EXT-X-MEDIA DEFAULT
  // Video: its I-frame playlist's (EXT-X-I-FRAME-STREAM-INF) BANDWIDTH, the key frames' peak rate
  // (each frame's bytes over the time until the next), and AVERAGE-BANDWIDTH, all their bytes
  // over the duration (api::iframe_rates_of its manifest); 0: it has none (no key frame index).
  uint64_t iframe_bandwidth = 0;
  uint64_t iframe_average_bandwidth = 0;
  auto operator<=>(const rendition&) const = default;
};

// The program id of rendition `name` of `program`; nullopt when the result is no valid name.
std::optional<program_id> rendition_id(const program_id& program, std::string_view name);
// The program a rendition belongs to ("film" for "film--720p"); nullopt for an ordinary program.
std::optional<program_id> parent_of(const program_id& id);
// Whose entitlement a viewer's token must carry to play `id`: its parent for a rendition.
inline program_id entitlement_of(const program_id& id) {
  return parent_of(id).value_or(id);
}

// What a program's segments are: MPEG-TS (video, audio), or WebVTT (a subtitles rendition). The
// store and the copies between engines treat both as bytes; only the URLs a console sees differ
// ("segments/{n}.ts" or "segments/{n}.vtt"), so that the engine answers with the right
// Content-Type. docs/renditions.md, "Subtitles".
enum class segment_format { mpegts, webvtt };
// ".ts" or ".vtt": the extension of the segment URLs of a program of that format.
std::string_view segment_extension(segment_format f);
// "video/mp2t" or "text/vtt".
const char* segment_content_type(segment_format f);

// A program as the station knows it: POST /v1/programs (loader → director), GET /v1/programs/{id}.
// Either segments (an ordinary program or a rendition) or renditions (a program of several), never
// both.
struct program_manifest {
  program_id id;
  std::string title;
  std::string state;  // "loading" | "ready" (set by the director)
  // Whether consoles may play it (claim 11), set by the content manager: "inactive" (loaded,
  // waiting for its publish time), "published" or "withdrawn". A program loaded without a
  // content manager is published at once.
  std::string availability = "published";
  std::string publish_at;               // RFC 3339 UTC, or empty: for the viewers' 404 reason
  std::vector<segment_entry> segments;  // indices 0..n-1 in order
  // JSON "format": "webvtt", absent for MPEG-TS (every other manifest keeps its shape).
  segment_format format = segment_format::mpegts;
  // A program of several renditions: video first, highest bandwidth first; at least one video.
  std::vector<rendition> renditions;
  double duration() const;  // of its segments (0 for a program of several renditions)
};

struct engine_ref {
  engine_id name;
  std::string url;
};

// Reply to POST /v1/programs: which engines must receive each segment.
struct placement {
  std::vector<std::vector<engine_ref>> targets;  // targets[i]: engines for segment i
};

// The values of program_manifest::availability.
inline constexpr std::string_view availability_inactive = "inactive";
inline constexpr std::string_view availability_published = "published";
inline constexpr std::string_view availability_withdrawn = "withdrawn";
bool valid_availability(std::string_view a);

// POST /v1/programs/{id}/availability (content manager → director and registry).
struct availability_change {
  std::string availability;
  std::string publish_at;  // RFC 3339 UTC or empty
};

// POST /v1/orders/fetch (director or loader → engine): copy a segment from `sources` (URLs, tried
// in order; a copy cut short resumes from the next with a range). The engine serves the segment
// while it arrives. `wait`: answer when the copy is done (201), or as soon as it has started (202).
struct fetch_order {
  segment_key key;
  sha256_digest sha256{};
  uint64_t size = 0;                 // 0: whatever the source says
  std::vector<std::string> sources;  // at least one; JSON "source" (one) or "sources"
  bool wait = true;
};

// POST /v1/engines/{name}/evictions (engine → director): segments the engine would evict, least
// recently used first, and how many bytes it must free; the director answers with the ones it
// allows (same shape, bytes 0).
struct eviction_request {
  uint64_t bytes = 0;
  std::vector<segment_key> segments;
};

// POST /v1/orders/preload (director → engine).
struct preload_order {
  segment_key key;
};

// PUT /v1/stations/{name} (director → registry).
struct station_registration {
  station_id name;
  std::string director_url;
  bool home = false;
  double x_km = 0, y_km = 0;
  uint64_t uplink_bits_per_second = 0;
};

// One change of where a segment lives, at the reporting station as a whole or at one of its
// engines (docs/registry.md, "Locations per engine"):
//  - engine empty: the station now holds the segment whole (held) or no longer does;
//  - engine set, filling false: that engine now holds it whole (held) or no longer holds it
//    (removed or evicted);
//  - engine set, filling true: that engine started receiving it (held) or stopped (finished or
//    failed; a finish also comes as a whole-segment change).
struct location_change {
  segment_key key;
  bool held = true;
  std::optional<engine_id> engine;  // an engine of the station; empty: the station as a whole
  bool filling = false;             // only with an engine
};

// A finished copy from another station: feeds the cost model's measured throughput.
struct copy_sample {
  station_id source;
  uint64_t bytes = 0;
  double seconds = 0;
};

// POST /v1/stations/{name}/report (director → registry): load, location changes, copy samples.
struct station_report {
  // Numbers the station's reports, rising across its director's restarts (the wall clock in
  // microseconds, or one more than the last): the registry applies a report only above the last it
  // applied, so that one committed late by a stalled registry daemon changes nothing. 0: none.
  uint64_t seq = 0;
  double load = 0;  // streams in use over stream capacity
  uint64_t sending_bits_per_second = 0;
  uint32_t engines_up = 0;
  std::vector<location_change> changes;
  std::vector<copy_sample> copies;
};

// PUT /v1/programs/{id} (ingest → registry) and POST /v1/programs/{id}/distribute (registry →
// director): the program, the stations that must hold it, and how much to pre-position.
struct distribution {
  program_manifest manifest;
  std::vector<std::string> targets;  // empty: every station but the home
  // Segments from the start that each target copies ahead; the rest come on a miss (claim 14).
  uint32_t prefetch = segment_index::max;  // segment_index::max (or more): all of them
};

// What a source's cost was computed from (registry/cost.h, cost_breakdown): for operators.
struct source_cost {
  double available_bits_per_second = 0;  // what the source can spare for this copy
  double distance_km = 0;
  double transfer_seconds = 0;
  double latency_seconds = 0;
  double load_factor = 1;
  double home_penalty_seconds = 0;
};

// One entry of GET /v1/programs/{id}/segments/{n}/sources, cheapest first.
struct source {
  station_id station;
  std::string director_url;
  double cost = 0;  // expected seconds until a copy from it is done
  source_cost inputs;
};

// The reply of GET /v1/programs/{id}/segments/{n}/sources?for=<station> (registry → director): the
// stations holding the segment, cheapest first, the asker left out.
struct source_list {
  segment_key key;
  std::vector<source> sources;
};

// The reply of GET /v1/programs/{id}/segments/{n}/holder (director → engine or another station's
// director): the engine to fetch the segment from, and its URL for it (signed when asked for a
// console of another station).
struct holder_reply {
  engine_id engine;
  std::string url;
};

// POST /v1/programs (operator → content manager): ingest a program from `source`. The decoder
// checks the shape; the content manager checks meaning (the source exists, the stations are in the
// grid, publish_at is not past).
struct ingest_request {
  program_id id;
  std::string title;
  std::string source;  // an absolute local path (file or folder) or an http(s) URL
  std::optional<wall_clock::time_point> publish_at;  // nullopt: now ("now" on the wire)
  std::vector<station_id> stations;                  // that pre-position it; empty: all but home
  uint32_t prefetch = segment_index::max;            // segments each station copies ahead
  double target_seconds = 4;                         // segment length the packager aims at
  // Empty: the source remuxed as one program, as it comes (no renditions). "auto": transcoded into
  // the default ladder of the source; "720p,360p": into those rungs (content/transcode.h). A
  // multivariant HLS source is kept as its own renditions whatever this says.
  std::string renditions;
};

boost::json::value to_json(const station_registration& v);
boost::json::value to_json(const station_report& v);
boost::json::value to_json(const distribution& v);
boost::json::value to_json(const segment_ref& v);
boost::json::value to_json(const engine_load& v);
boost::json::value to_json(const heartbeat& v);
boost::json::value to_json(const heartbeat_reply& v);
boost::json::value to_json(const segment_entry& v);
boost::json::value to_json(const rendition& v);
boost::json::value to_json(const program_manifest& v);
boost::json::value to_json(const placement& v);
boost::json::value to_json(const fetch_order& v);
boost::json::value to_json(const preload_order& v);
boost::json::value to_json(const availability_change& v);
boost::json::value to_json(const eviction_request& v);
boost::json::value to_json(const source& v);
boost::json::value to_json(const source_list& v);
boost::json::value to_json(const holder_reply& v);
boost::json::value to_json(const ingest_request& v);

template <class T>
result<T> from_json(const boost::json::object& o);
template <>
result<heartbeat> from_json<heartbeat>(const boost::json::object& o);
template <>
result<heartbeat_reply> from_json<heartbeat_reply>(const boost::json::object& o);
template <>
result<program_manifest> from_json<program_manifest>(const boost::json::object& o);
template <>
result<rendition> from_json<rendition>(const boost::json::object& o);
template <>
result<placement> from_json<placement>(const boost::json::object& o);
template <>
result<fetch_order> from_json<fetch_order>(const boost::json::object& o);
template <>
result<preload_order> from_json<preload_order>(const boost::json::object& o);
template <>
result<eviction_request> from_json<eviction_request>(const boost::json::object& o);
template <>
result<availability_change> from_json<availability_change>(const boost::json::object& o);
template <>
result<station_registration> from_json<station_registration>(const boost::json::object& o);
template <>
result<station_report> from_json<station_report>(const boost::json::object& o);
template <>
result<distribution> from_json<distribution>(const boost::json::object& o);
// The `sources` of a source_list alone.
template <>
result<std::vector<source>> from_json<std::vector<source>>(const boost::json::object& o);
template <>
result<source_list> from_json<source_list>(const boost::json::object& o);
template <>
result<holder_reply> from_json<holder_reply>(const boost::json::object& o);
template <>
result<ingest_request> from_json<ingest_request>(const boost::json::object& o);

// Parses a JSON object body; errc::invalid_argument with the parser's reason otherwise.
result<boost::json::object> parse_object(std::string_view body);

// Parses a body and decodes it: the common path of every handler and client.
template <class T>
result<T> decode(std::string_view body) {
  VODGRID_TRY(auto o, parse_object(body));
  return from_json<T>(o);
}

}  // namespace vodgrid::api
