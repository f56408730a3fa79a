// FFmpeg glue for the packager (ffmpeg.h): the log callback, packets, and the Annex B checks.
#include "content/ffmpeg.h"

#include <cstdarg>
#include <mutex>
#include <new>
#include <string_view>

extern "C" {
#include <libavutil/log.h>
}

namespace vodgrid::content {

namespace {

constexpr int max_forwarded_messages = 50;  // FFmpeg messages logged per packaging run

void on_av_log(void* avcl, int level, const char* format, va_list vl) {
  if (level > AV_LOG_WARNING) {
    return;
  }
  char line[1024];
  int print_prefix = 0;
  va_list copy;
  va_copy(copy, vl);
  av_log_format_line2(avcl, level, format, copy, line, sizeof line, &print_prefix);
  va_end(copy);
  std::string_view msg(line);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == '\r' || msg.back() == ' ')) {
    msg.remove_suffix(1);
  }
  if (msg.empty()) {
    return;
  }
  const char* who = "ffmpeg";
  if (avcl != nullptr) {
    const AVClass* cls = *static_cast<const AVClass**>(avcl);
    if (cls != nullptr && cls->item_name != nullptr) {
      who = cls->item_name(avcl);
    }
  }
  // Debug only: what fails a packaging reaches the caller in its error, and what does not (a
  // decoder probing a stream that starts mid-GOP) is noise.
  if (t_capture != nullptr) {
    if (level <= AV_LOG_ERROR) {
      t_capture->last_error = std::string(msg);
    }
    if (++t_capture->forwarded > max_forwarded_messages) {
      return;  // a damaged stream can make a decoder complain once per frame
    }
  }
  packager_logger()->debug("{}: {}", who, msg);
}

}  // namespace

thread_local av_capture* t_capture = nullptr;

std::shared_ptr<spdlog::logger> packager_logger() {
  static auto l = log::get("content");
  return l;
}

std::string av_text(int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(err, buf, sizeof buf);
  return buf;
}

void init_ffmpeg() {
  static std::once_flag once;
  std::call_once(once, [] { av_log_set_callback(on_av_log); });
}

packet_ptr new_packet() {
  AVPacket* p = av_packet_alloc();
  if (p == nullptr) {
    throw std::bad_alloc();
  }
  return packet_ptr(p);
}

bool starts_with_start_code(const uint8_t* p, int n) {
  return (n >= 3 && p[0] == 0 && p[1] == 0 && p[2] == 1) ||
         (n >= 4 && p[0] == 0 && p[1] == 0 && p[2] == 0 && p[3] == 1);
}

// Emulation prevention keeps 00 00 01 out of NAL payloads, so every match is a NAL start.
bool has_sps(const uint8_t* p, int n, AVCodecID codec) {
  for (int i = 0; i + 3 < n; ++i) {
    if (p[i] == 0 && p[i + 1] == 0 && p[i + 2] == 1) {
      uint8_t h = p[i + 3];
      if (codec == AV_CODEC_ID_H264 ? (h & 0x1f) == 7 : ((h >> 1) & 0x3f) == 33) {
        return true;
      }
      i += 2;
    }
  }
  return false;
}

}  // namespace vodgrid::content
