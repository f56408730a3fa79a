// One packaging run (package() in packager.h), shared by the files that implement it: input.cc
// opens, probes and checks the input; packager.cc remuxes, cuts and writes the output. Private to
// src/content.
#pragma once

#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "content/ffmpeg.h"
#include "content/packager.h"
#include "content/segment_writer.h"

extern "C" {
#include <libavcodec/bsf.h>
#include <libavformat/avformat.h>
}

namespace vodgrid::content {

inline constexpr double max_leading_seconds = 10;  // video before the first keyframe tolerated
inline constexpr size_t max_held_audio = 4096;     // audio packets held until the first keyframe
inline constexpr double truncation_slack = 1.0;    // seconds the video may end before its end
inline constexpr int io_buffer_size = 1 << 16;

// Demuxers accepted, by FFmpeg's name: MP4 (and its QuickTime family), Matroska, MPEG-TS.
inline constexpr std::string_view accepted_containers[] = {"mov,mp4,m4a,3gp,3g2,mj2",
                                                           "matroska,webm", "mpegts"};

// An input opened as the packager opens it (input.cc): only the protocols its kind allows (file
// for a path; http, https, tcp, tls for a URL, each read bounded by io_timeout_ms), probed by
// content so that only the accepted demuxers ever parse it, its streams' parameters read. Shared
// with the transcoder (transcode_run.h). Owns both contexts.
struct media_input {
  AVIOContext* pb = nullptr;
  AVFormatContext* fmt = nullptr;
  bool remote = false;
  bool is_ts = false;  // MPEG-TS, where damaged packets are common and survivable
  media_input() = default;
  media_input(const media_input&) = delete;
  media_input& operator=(const media_input&) = delete;
  ~media_input();
};

// invalid_argument for options out of their bounds (packager.h).
status check_package_options(const package_options& o);

// Opens o.input into `in`; errors as package()'s. `capture` must be the thread's t_capture.
status open_media(const package_options& o, av_capture& capture, media_input& in);

// One packaging run. Owns every FFmpeg object it makes and, until it succeeds, every file.
class packager {
 public:
  explicit packager(const package_options& o) : o_(o), saved_capture_(t_capture) {
    t_capture = &capture_;
    sink_.max_segment = o.max_segment_bytes;
    sink_.max_total = o.max_bytes;
  }
  packager(const packager&) = delete;
  packager& operator=(const packager&) = delete;
  ~packager();

  result<package_result> run();

 private:
  // input.cc
  status check_options() const;
  status open_input();
  status select_streams();
  status check_complete() const;
  // packager.cc
  status prepare_out_dir();
  status open_output();
  status remux();
  status on_video(AVPacket* pkt);
  status on_audio(AVPacket* pkt);
  status start(int64_t key_pts);
  status write(AVPacket* pkt, int out_index, AVRational in_tb);
  status drain_bsf();
  status cut(int64_t key_pts);
  status open_segment(uint32_t index);
  status finish_segment(int64_t video_ticks);
  status write_playlist();

  error bad_input(std::string what) const {
    return make_error(errc::invalid_argument, fmt::format("{}: {}", o_.input, what));
  }
  // FFmpeg's own words for a failure: the error it logged, else its error code's text.
  std::string reason(int averr) const {
    return capture_.last_error.empty() ? av_text(averr) : capture_.last_error;
  }
  error write_error(int averr) const;
  double video_seconds(int64_t ticks) const { return static_cast<double>(ticks) * av_q2d(vtb_); }

  const package_options& o_;
  av_capture capture_;
  av_capture* saved_capture_;
  bool remote_ = false;
  bool is_ts_ = false;  // MPEG-TS input, where damaged packets are common and survivable

  AVIOContext* in_pb_ = nullptr;
  AVFormatContext* in_ = nullptr;
  AVBSFContext* bsf_ = nullptr;
  AVFormatContext* out_ = nullptr;
  AVIOContext* out_pb_ = nullptr;
  segment_sink sink_;

  int vin_ = -1;  // input stream indices
  int ain_ = -1;
  AVRational vtb_{1, 1};  // input time bases
  AVRational atb_{1, 1};
  AVCodecID vcodec_ = AV_CODEC_ID_NONE;
  bool annexb_in_ = false;  // the input's video is Annex B already (MPEG-TS)
  int64_t target_ticks_ = 0;
  int64_t frame_ticks_ = 0;  // a frame's duration when a packet states none

  bool started_ = false;  // the first keyframe has been written
  int64_t first_video_ts_ = AV_NOPTS_VALUE;
  int64_t skipped_video_ = 0;  // video packets dropped before the first keyframe
  std::deque<packet_ptr> held_audio_;
  int64_t seg_start_ = 0;  // video pts of the current segment's keyframe
  int64_t video_end_ = AV_NOPTS_VALUE;
  int64_t frames_ = 0;

  bool created_dir_ = false;
  bool done_ = false;
  std::vector<fs::path> written_;
  std::vector<packaged_segment> segments_;
  double packaged_seconds_ = 0;
};

}  // namespace vodgrid::content
