// The content engine's transcoder: a source made into a ladder of renditions (adaptive bitrate),
// each an HLS VOD folder of MPEG-TS segments whose cuts fall at the same times in every rendition,
// plus an audio-only rendition per audio track and a WebVTT one per text subtitle track. The
// folders are what director::load_program takes; the list (renditions.h) is what the director
// writes the multivariant playlist from.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "content/packager.h"
#include "content/renditions.h"

namespace vodgrid::content {

// One rung of a video ladder: H.264 at `height` lines, the width from the source's display aspect
// ratio, constant quality (CRF) capped at `max_bitrate`.
struct ladder_rung {
  std::string name;          // "720p": the rendition's name
  int height = 0;            // lines, even
  uint64_t max_bitrate = 0;  // bits/s: x264's VBV maxrate (its buffer is twice that, 2 s)
};

struct ladder_options {
  // Today's single rendition: the source remuxed by package() (H.264/H.265 + AAC only), the
  // rendition named "source". No other field below applies.
  bool remux = false;
  // The video rungs, highest first (parse_renditions); empty: default_ladder of the source.
  std::vector<ladder_rung> rungs;
  // x264's preset: ultrafast … veryslow.
  std::string preset = "veryfast";
  // x264's constant rate factor under each rung's cap: 0–51, lower is better and larger.
  int crf = 23;
  // Bits/s of each AAC-LC stereo audio encoding.
  uint64_t audio_bitrate = 128'000;
  // Polled on the transcoding thread between frames: true gives up (errc::conflict, "the packaging
  // was cancelled"), everything written removed. The content manager's stop sets it.
  std::function<bool()> cancelled;
};

// The rung of a height: the named ones (1080p 5 Mb/s, 720p 2.8, 480p 1.4, 360p 0.8, 240p 0.4)
// and, for another height (a source's own), a cap scaled from 1080p's by the pixel count.
ladder_rung rung_for_height(int height);

// "720p,360p" (or "720,360") → those rungs, highest first. invalid_argument for an unknown name
// ("the rendition 'hd' is not one of 1080p, 720p, 480p, 360p, 240p"), a repeated one or an empty
// list.
result<std::vector<ladder_rung>> parse_renditions(std::string_view list);

// The default ladder of a source `height` lines high: those of 1080p, 720p, 480p, 360p that are
// not above it, topped by the source's own height when it is below 1080 and not one of them.
std::vector<ladder_rung> default_ladder(int height);

// Transcodes (or, with l.remux, remuxes) `opts.input` into `opts.out_dir`: one folder per
// rendition, out_dir/{name}/index.m3u8 and segNNNNN.ts, each what package() writes (durable when
// opts.durable, within max_segment_bytes; max_bytes bounds all renditions together). Blocking (CPU
// and disk): call it off any event loop; FFmpeg runs its own decoder and x264 threads.
//
// One decode of the source's video (H.264, H.265 or MPEG-2, deinterlaced when interlaced), scaled
// to each rung and encoded with libx264; keyframes forced at the first frame at or after every
// multiple of target_seconds from the first frame, and nowhere else, and every rendition cut at
// each of them: segment n of every video rendition starts at the same pts. The default audio track
// (the first marked default, else the first) is encoded once to AAC-LC stereo and muxed into every
// video rendition; every audio track is also an audio-only rendition ("audio-{language}" or
// "audio-{n}", the default first and is_default), cut at the first audio frame at or after each
// video cut. Every text subtitle track is a rendition "subs-{language}" of WebVTT segments, one per
// video segment with its duration. Tracks not kept (bitmap subtitles, data, audio no decoder
// reads) are named in `dropped`.
//
// opts.progress is called after each video segment (seconds of source transcoded, the stated
// duration). Errors as package()'s, and invalid_argument for a rung above the source.
result<ladder_result> package_ladder(const package_options& opts, const ladder_options& l);

}  // namespace vodgrid::content
