// FFmpeg glue for the packager: its log routed to ours (and the last error kept for the packaging
// running on this thread, since FFmpeg gives many reasons only to its log), owning wrappers of its
// packets and dictionaries, and the Annex B checks on H.264/H.265 access units. Private to
// src/content.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/log.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavutil/dict.h>
}

namespace vodgrid::content {

std::shared_ptr<spdlog::logger> packager_logger();

// FFmpeg's text for an AVERROR.
std::string av_text(int err);

// While a packaging runs on a thread, the log callback keeps the last error logged there.
struct av_capture {
  std::string last_error;
  int forwarded = 0;
};
extern thread_local av_capture* t_capture;

// Routes FFmpeg's log to the "content" logger; once per process.
void init_ffmpeg();

struct packet_free {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
using packet_ptr = std::unique_ptr<AVPacket, packet_free>;

packet_ptr new_packet();  // throws std::bad_alloc

struct dictionary {
  AVDictionary* d = nullptr;
  dictionary() = default;
  dictionary(const dictionary&) = delete;
  dictionary& operator=(const dictionary&) = delete;
  ~dictionary() { av_dict_free(&d); }
};

// True when `p` starts with an Annex B start code (00 00 01 or 00 00 00 01).
bool starts_with_start_code(const uint8_t* p, int n);

// True when an Annex B access unit carries a sequence parameter set (H.264 type 7, H.265 33).
bool has_sps(const uint8_t* p, int n, AVCodecID codec);

}  // namespace vodgrid::content
