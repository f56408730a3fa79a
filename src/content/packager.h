// The content engine's packager: remuxes a media file (MP4, MKV or MPEG-TS holding H.264 or H.265
// video and optionally AAC audio) into an HLS VOD folder of MPEG-TS segments, without transcoding.
// The folder is what director::load_program takes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/sha256.h"

namespace vodgrid::content {

struct package_options {
  // A local path, or an http(s):// URL (read through FFmpeg, each read bounded by io_timeout_ms).
  std::string input;
  // Receives index.m3u8 and seg00000.ts, seg00001.ts, ...; created if missing, refused (conflict)
  // if it holds anything.
  std::filesystem::path out_dir;
  // Seconds of video per segment before the packager cuts at the next keyframe; 0.5 to 60.
  double target_seconds = 4;
  // Bytes: the largest segment (the engines' default max_segment_bytes). A segment that grows past
  // it, because the input's keyframes are too far apart, fails the packaging with too_large.
  uint64_t max_segment_bytes = 64ull << 20;
  // Bytes: the largest program, all segments together; past it, too_large.
  uint64_t max_bytes = 64ull << 30;
  // Each segment and the playlist fsynced before they count (see below). The content manager turns
  // it off: its output is a scratch folder, loaded into the engines (which store durably) and
  // removed; after a crash the ingest is failed and started again, never resumed from the folder.
  bool durable = true;
  // Milliseconds: the deadline of each read of a URL input (a provider's server, outside the grid,
  // so not a [timing] key; the ingest downloads remote sources first and keeps the default).
  int io_timeout_ms = 30'000;
  // Called after each segment on the packaging thread: (seconds packaged, the input's stated
  // duration in seconds, 0 if it states none).
  std::function<void(double done_seconds, double total_seconds)> progress;
};

struct packaged_segment {
  uint32_t index = 0;
  double duration = 0;  // seconds, from the video pts of this and the next segment's keyframe
  uint64_t size = 0;    // bytes
  sha256_digest sha256{};
  std::string file;  // name within out_dir: "seg00000.ts"
};

struct package_result {
  std::vector<packaged_segment> segments;
  double duration = 0;      // seconds: the sum of the segments' durations
  std::string video_codec;  // FFmpeg's name: "h264" or "hevc"
  std::string audio_codec;  // "aac", or empty when the input has no audio
  int width = 0;
  int height = 0;
  uint64_t bitrate = 0;      // bits per second of the packaged program (segment bytes / duration)
  int64_t video_frames = 0;  // video frames written
  std::filesystem::path playlist;  // out_dir / "index.m3u8"
};

// Packages `opts.input` into `opts.out_dir`. Blocking (CPU and disk): call it off any event loop.
// Safe to call from several threads at once on different out_dirs.
//
// Cutting rule: the first segment starts at the first video keyframe (video and audio before it
// are dropped); a new segment starts at a video keyframe once the current segment holds at least
// target_seconds of video, measured in the video stream's pts. So every segment opens with a
// keyframe and lasts between target_seconds and target_seconds + one GOP, except the last.
// Timestamps are carried over unchanged, so the segments play back to back as the input did.
//
// Each segment is written to a temporary name, fsynced (when durable) and renamed; the playlist is
// written last, the same way, and lists every segment. On failure everything written is removed
// again (out_dir too if this call created it), so no playlist is left behind.
//
// Errors: invalid_argument for bad options and for bad input, with the reason (no such file, not
// a media file, a container other than MP4/MKV/MPEG-TS, no video stream, an unsupported codec, a
// truncated or damaged file, no keyframe, an HTTP 4xx); conflict for a non-empty out_dir;
// too_large past a size limit; unavailable when a URL cannot be reached or read; io_error or
// no_space for the local disk.
//
// The first call routes FFmpeg's log (process-wide) to the "content" logger at debug level; the
// message that explains a failure is carried in the error's detail instead.
result<package_result> package(const package_options& opts);

}  // namespace vodgrid::content
