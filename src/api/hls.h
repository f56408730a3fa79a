// HLS playlists (RFC 8216) as vodgrid reads and writes them: VOD media playlists of MPEG-TS
// segments, and multivariant playlists (a program of several renditions, DESIGN.md flow 9). Pure
// text processing, no I/O.
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

// One #EXT-X-STREAM-INF of a provider's multivariant playlist.
struct variant_stream {
  uint64_t bandwidth = 0;
  uint64_t average_bandwidth = 0;  // 0: not stated
  std::string codecs;
  int width = 0, height = 0;  // RESOLUTION; 0: not stated
  double frame_rate = 0;
  std::string audio;  // the AUDIO group it plays with, if any
  std::string uri;    // as written: absolute or relative to the playlist
};

// One #EXT-X-MEDIA of a provider's multivariant playlist.
struct alternative_media {
  std::string type;  // AUDIO, SUBTITLES, VIDEO or CLOSED-CAPTIONS
  std::string group_id, language, name;
  bool is_default = false;
  std::string uri;  // empty: the media is in the variants themselves
};

struct multivariant_playlist {
  std::vector<variant_stream> variants;  // in the playlist's order
  std::vector<alternative_media> media;
};

// Whether `text` is a multivariant playlist (it has an #EXT-X-STREAM-INF) rather than a media one.
bool is_multivariant(std::string_view text);

// Parses a multivariant playlist. Refuses, with the line at fault: a missing #EXTM3U, segments
// (#EXTINF: a media playlist), an #EXT-X-STREAM-INF without BANDWIDTH or without its URI, more
// than max_renditions variants or media, an attribute list it cannot read.
result<multivariant_playlist> parse_multivariant_playlist(std::string_view text);

// Writes the multivariant playlist of a program of several renditions (m.renditions not empty):
// an #EXT-X-STREAM-INF per video rendition (BANDWIDTH, AVERAGE-BANDWIDTH, CODECS, RESOLUTION,
// FRAME-RATE; AUDIO and SUBTITLES when the program has such renditions), an #EXT-X-MEDIA per
// audio or subtitles rendition, and an #EXT-X-I-FRAME-STREAM-INF per video rendition whose
// iframe_bandwidth is known (its "../{id}--{rendition}/iframes.m3u8"). URIs are relative,
// "../{id}--{rendition}/index.m3u8", followed by `query` (e.g. "?token=...") when it is not empty
// and safe inside a quoted attribute.
std::string write_multivariant_playlist(const program_manifest& m, std::string_view query);

// The rates of a program's I-frame playlist (write_iframe_playlist): `bandwidth` the peak of its
// entries' (a key frame's bytes over the time until the next one), `average_bandwidth` all the key
// frames' bytes over the program's duration, in bits/s. Zero when it has none (a program of
// renditions, subtitles, no key frame index).
struct iframe_rates {
  uint64_t bandwidth = 0;
  uint64_t average_bandwidth = 0;
};
iframe_rates iframe_rates_of(const program_manifest& m);

// Writes the VOD playlist of a program: segment URIs are "segments/{n}.ts" ("segments/{n}.vtt"
// for WebVTT) relative to the playlist, followed by `query` (e.g. "?token=...") when not empty.
std::string write_vod_playlist(const program_manifest& m, std::string_view query);

// Writes the I-frame playlist of a program (RFC 8216 4.3.3.6, the HLS side of claim 21): each key
// frame as a byte range of its segment, lasting until the next key frame, after an EXT-X-MAP of
// that segment's PAT and PMT; URIs as in write_vod_playlist. not_found when a segment has no key
// frame index (a program loaded before the loader kept one).
result<std::string> write_iframe_playlist(const program_manifest& m, std::string_view query);

}  // namespace vodgrid::api
