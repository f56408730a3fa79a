// HLS media playlists (RFC 8216) as vodgrid reads and writes them: VOD playlists of MPEG-TS
// segments. Pure text processing, no I/O.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "api/api.h"
#include "base/result.h"

namespace vodgrid::api {

struct media_segment {
  double duration = 0;  // from #EXTINF, seconds
  std::string uri;      // as written: absolute or relative to the playlist
};

struct media_playlist {
  double target_duration = 0;
  bool endlist = false;
  std::vector<media_segment> segments;
};

// Parses a media playlist. Refuses, with the line at fault: a missing #EXTM3U, a master playlist
// (#EXT-X-STREAM-INF: pass one of its variants), encrypted segments, byte-range or fMP4
// (#EXT-X-MAP) segments, an #EXTINF without a URI or with a bad duration, more than
// segment_index::max entries.
result<media_playlist> parse_media_playlist(std::string_view text);

// Writes the VOD playlist of a program: segment URIs are "segments/{n}.ts" relative to the
// playlist, followed by `query` (e.g. "?token=...") when not empty.
std::string write_vod_playlist(const program_manifest& m, std::string_view query);

// Writes the I-frame playlist of a program (RFC 8216 4.3.3.6, the HLS side of claim 21): each key
// frame as a byte range of its segment, lasting until the next key frame, after an EXT-X-MAP of
// that segment's PAT and PMT; URIs as in write_vod_playlist. not_found when a segment has no key
// frame index (a program loaded before the loader kept one).
result<std::string> write_iframe_playlist(const program_manifest& m, std::string_view query);

}  // namespace vodgrid::api
