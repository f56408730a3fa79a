// A program of several renditions (adaptive bitrate, alternative audio, subtitles): what the
// content engine makes of a source before the grid loads it. Each rendition is an ordinary HLS VOD
// folder (what director::load_program takes) and becomes an ordinary program to the registry, the
// directors and the engines, named "{program}--{rendition}"; the program itself carries only the
// list, from which the director writes the multivariant playlist (DESIGN.md flow 9).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "content/packager.h"

namespace vodgrid::content {

enum class rendition_kind { video, audio, subtitles };

struct rendition_info {
  // Its folder within the output folder and the suffix of its program id: "720p", "audio-fr",
  // "subs-en". A valid name (base/ids.h) of at most 16 characters.
  std::string name;
  rendition_kind kind = rendition_kind::video;
  uint64_t bandwidth = 0;  // bits/s: the largest segment's rate (EXT-X-STREAM-INF BANDWIDTH)
  uint64_t average_bandwidth = 0;  // bits/s: all segments' bytes over the duration
  std::string codecs;              // RFC 6381, e.g. "avc1.64001f,mp4a.40.2"
  int width = 0, height = 0;       // video only
  double frame_rate = 0;           // video only
  std::string language;            // RFC 5646 ("fr", from the source's "fra"); audio, subtitles
  std::string title;               // EXT-X-MEDIA NAME: "English", "Français", or the track's title
  bool is_default = false;         // EXT-X-MEDIA DEFAULT (the first audio and subtitle track)
  package_result media;            // the folder's segments: out_dir / name / "index.m3u8"
};

struct ladder_result {
  std::vector<rendition_info> renditions;  // video renditions first, highest first
  // Tracks of the source that were not kept, each with why ("audio track 3 (dts): ..."): named in
  // the ingest's output and the catalog, never dropped in silence.
  std::vector<std::string> dropped;
};

// Whether `program` leaves room for "--{rendition}" within the 64 characters of a name, and does
// not itself contain "--" (reserved for renditions).
inline bool valid_ladder_program(std::string_view program) {
  return program.size() + 2 + 16 <= 64 && program.find("--") == std::string_view::npos;
}

}  // namespace vodgrid::content
