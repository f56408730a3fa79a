// The content engine's downloads from providers (claim 2): a media file over http(s), resumed with
// a Range request when the connection drops, and an existing HLS VOD playlist, whose MPEG-TS
// segments are joined into one transport stream for the packager to cut again at keyframes (a
// multivariant playlist: each of its variants so).
// libcurl does the transfers: redirects, TLS, timeouts and ranges are its trade, not ours.
// Blocking: call these off any event loop.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "api/hls.h"
#include "base/result.h"

namespace vodgrid::content {

// The timeouts bound a provider's server, outside the grid, not a daemon of it: [timing] does not
// cover them, and the ingest keeps these defaults.
struct download_options {
  int connect_timeout_ms = 10'000;
  int io_timeout_ms = 30'000;  // an attempt that receives nothing for this long fails
  int attempts = 6;            // the first and the resumes after a dropped connection
  uint64_t max_bytes = 64ull << 30;
  // (bytes in the file so far, the total if known or 0). Return false to cancel.
  std::function<bool(uint64_t, uint64_t)> progress;
};

struct download_report {
  uint64_t bytes = 0;
  int resumes = 0;  // attempts that went on from where a dropped one stopped
};

// http:// or https://
bool is_url(std::string_view s);
// A name (or URL path) ending in .m3u8 / .m3u: an HLS playlist rather than a media file.
bool is_playlist(std::string_view s);

// Downloads `url` to `dest` (created or replaced). A transfer cut short is resumed from the bytes
// already written (Range: bytes=N-); a server that answers a resume with the whole file is read
// from the start again. Errors: invalid_argument for a URL scheme other than http(s) and for a
// 4xx answer; unavailable when the provider cannot be reached or keeps failing (5xx, dropped
// connections) after every attempt; too_large past max_bytes; conflict when progress cancelled it;
// io_error/no_space for the local disk. Nothing is left at `dest` on failure.
result<download_report> download(const std::string& url, const std::filesystem::path& dest,
                                 const download_options& o);

// Reads a playlist (a local path or an http(s) URL): a multivariant one, each variant's and
// alternative medium's URI resolved against it (a URL, or a path beside a local playlist), or
// nullopt for a media playlist. `scratch` is where a remote playlist is read to (removed after).
// Errors: invalid_argument for a playlist that cannot be read or parsed, naming it; download's.
result<std::optional<api::multivariant_playlist>> read_multivariant(
    const std::string& playlist, const std::filesystem::path& scratch, const download_options& o);

// Reads a playlist (a local path or an http(s) URL) and writes its segments, in order, as one
// MPEG-TS file at `dest`. Refuses a live playlist (no #EXT-X-ENDLIST), a multivariant playlist
// (read_multivariant reads those), and a segment that is not MPEG-TS. progress gets (segments
// done, total).
result<download_report> fetch_hls(const std::string& playlist, const std::filesystem::path& dest,
                                  const download_options& o);

}  // namespace vodgrid::content
