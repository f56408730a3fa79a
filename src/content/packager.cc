// The packager: one libavformat demuxer in, H.264/H.265 converted to Annex B by the mp4toannexb
// bitstream filters, and one MPEG-TS muxer whose output is switched from file to file at the cut
// points (as FFmpeg's own HLS muxer does), so timestamps and continuity counters run on across
// segments and the segments concatenate into one valid transport stream. This file holds the run:
// probing and checking the input, remuxing and cutting; the FFmpeg glue is ffmpeg.h, the segment
// files, the muxer's sink and the playlist text segment_writer.h.
#include "content/packager.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <new>
#include <optional>

#include "base/fs.h"
#include "base/ids.h"
#include "content/ffmpeg.h"
#include "content/fetch.h"
#include "content/segment_writer.h"

extern "C" {
#include <libavcodec/bsf.h>
#include <libavformat/avformat.h>
#include <libavformat/avio.h>
#include <libavutil/opt.h>
}

namespace vodgrid::content {

namespace {

constexpr double max_leading_seconds = 10;  // video before the first keyframe that is tolerated
constexpr size_t max_held_audio = 4096;     // audio packets held back until the first keyframe
constexpr double truncation_slack = 1.0;    // seconds the video may end before the stated end
constexpr int io_buffer_size = 1 << 16;

// Demuxers accepted, by FFmpeg's name: MP4 (and its QuickTime family), Matroska, MPEG-TS.
constexpr std::string_view accepted_containers[] = {"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm",
                                                    "mpegts"};

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
  status check_options() const;
  status open_input();
  status select_streams();
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
  status check_complete() const;
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

packager::~packager() {
  if (out_ != nullptr) {
    avformat_free_context(out_);
  }
  if (out_pb_ != nullptr) {
    av_freep(&out_pb_->buffer);
    avio_context_free(&out_pb_);
  }
  av_bsf_free(&bsf_);
  avformat_close_input(&in_);
  avio_closep(&in_pb_);
  sink_.current.reset();  // unlinks an unfinished segment
  if (!done_) {
    std::error_code ec;
    for (auto& p : written_) {
      fs::remove(p, ec);
    }
    if (created_dir_) {
      fs::remove(o_.out_dir, ec);
    }
  }
  t_capture = saved_capture_;
}

status packager::check_options() const {
  if (o_.input.empty()) {
    return make_error(errc::invalid_argument, "no input given");
  }
  if (o_.out_dir.empty()) {
    return make_error(errc::invalid_argument, "no output folder given");
  }
  if (!(o_.target_seconds >= 0.5 && o_.target_seconds <= 60)) {
    return make_error(
        errc::invalid_argument,
        fmt::format("target_seconds must be between 0.5 and 60, not {}", o_.target_seconds));
  }
  if (o_.max_segment_bytes == 0 || o_.max_bytes == 0 || o_.io_timeout_ms <= 0) {
    return make_error(errc::invalid_argument,
                      "max_segment_bytes, max_bytes and io_timeout_ms must be positive");
  }
  return {};
}

status packager::open_input() {
  std::string url;
  std::string protocols;
  dictionary opts;
  if (is_url(o_.input)) {
    remote_ = true;
    url = o_.input;
    protocols = "http,https,tcp,tls";
    av_dict_set_int(&opts.d, "rw_timeout", int64_t{o_.io_timeout_ms} * 1000, 0);
  } else {
    std::error_code ec;
    auto st = fs::status(o_.input, ec);
    if (!fs::exists(st)) {
      return bad_input("no such file");
    }
    if (fs::is_directory(st)) {
      return bad_input("a folder, not a media file");
    }
    if (!fs::is_regular_file(st)) {
      return bad_input("not a regular file");
    }
    // "file:" keeps a colon in the name from being read as a protocol ("concat:", "pipe:").
    url = "file:" + fs::absolute(o_.input, ec).string();
    protocols = "file";
  }
  av_dict_set(&opts.d, "protocol_whitelist", protocols.c_str(), 0);
  capture_.last_error.clear();
  int r = avio_open2(&in_pb_, url.c_str(), AVIO_FLAG_READ, nullptr, &opts.d);
  if (r < 0) {
    // A 4xx names a bad source; anything else on a URL (refused, timed out, 5xx) may pass.
    bool client_error = r == AVERROR_HTTP_BAD_REQUEST || r == AVERROR_HTTP_UNAUTHORIZED ||
                        r == AVERROR_HTTP_FORBIDDEN || r == AVERROR_HTTP_NOT_FOUND ||
                        r == AVERROR_HTTP_OTHER_4XX;
    return remote_ && !client_error
               ? make_error(errc::unavailable,
                            fmt::format("{}: cannot open: {}", o_.input, reason(r)))
               : bad_input(fmt::format("cannot open: {}", reason(r)));
  }

  // Probe first, so that only the accepted demuxers ever parse the input; by content alone, not
  // by the name's extension.
  const AVInputFormat* format = nullptr;
  r = av_probe_input_buffer2(in_pb_, &format, nullptr, nullptr, 0, 0);
  if (r < 0 || format == nullptr) {
    if (remote_ && r != AVERROR_INVALIDDATA && r != AVERROR_EOF) {
      return make_error(errc::unavailable, fmt::format("{}: cannot read: {}", o_.input, reason(r)));
    }
    return bad_input("not a media file (no container format recognised)");
  }
  std::string_view name = format->name;
  is_ts_ = name == "mpegts";
  if (std::find(std::begin(accepted_containers), std::end(accepted_containers), name) ==
      std::end(accepted_containers)) {
    return bad_input(fmt::format("container {} is not supported: MP4, MKV or MPEG-TS only",
                                 format->long_name != nullptr ? format->long_name : format->name));
  }

  in_ = avformat_alloc_context();
  if (in_ == nullptr) {
    throw std::bad_alloc();
  }
  in_->pb = in_pb_;
  dictionary fopts;
  av_dict_set(&fopts.d, "protocol_whitelist", protocols.c_str(), 0);
  capture_.last_error.clear();
  r = avformat_open_input(&in_, url.c_str(), format, &fopts.d);  // frees in_ on failure
  if (r < 0) {
    return bad_input(fmt::format("truncated or damaged: {}", reason(r)));
  }
  capture_.last_error.clear();
  r = avformat_find_stream_info(in_, nullptr);
  if (r < 0) {
    return bad_input(fmt::format("cannot read its streams: {}", reason(r)));
  }
  return {};
}

status packager::select_streams() {
  vin_ = av_find_best_stream(in_, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (vin_ < 0) {
    return bad_input("no video stream");
  }
  AVStream* vs = in_->streams[vin_];
  vcodec_ = vs->codecpar->codec_id;
  if (vcodec_ != AV_CODEC_ID_H264 && vcodec_ != AV_CODEC_ID_HEVC) {
    return bad_input(fmt::format("video codec {} is not supported: H.264 or H.265 only",
                                 avcodec_get_name(vcodec_)));
  }
  ain_ = av_find_best_stream(in_, AVMEDIA_TYPE_AUDIO, -1, vin_, nullptr, 0);
  if (ain_ >= 0) {
    AVCodecID acodec = in_->streams[ain_]->codecpar->codec_id;
    if (acodec != AV_CODEC_ID_AAC) {
      return bad_input(
          fmt::format("audio codec {} is not supported: AAC only", avcodec_get_name(acodec)));
    }
    atb_ = in_->streams[ain_]->time_base;
  } else {
    ain_ = -1;
  }
  vtb_ = vs->time_base;
  target_ticks_ = std::llround(o_.target_seconds / av_q2d(vtb_));
  AVRational rate = vs->avg_frame_rate.num > 0 ? vs->avg_frame_rate : vs->r_frame_rate;
  if (rate.num > 0 && rate.den > 0) {
    frame_ticks_ = av_rescale_q(1, av_inv_q(rate), vtb_);
  }
  const AVCodecParameters* par = vs->codecpar;
  annexb_in_ =
      par->extradata_size == 0 || starts_with_start_code(par->extradata, par->extradata_size);
  return {};
}

status packager::prepare_out_dir() {
  std::error_code ec;
  if (fs::exists(o_.out_dir, ec)) {
    if (!fs::is_directory(o_.out_dir, ec)) {
      return make_error(errc::invalid_argument,
                        fmt::format("{} is not a folder", o_.out_dir.string()));
    }
    if (!fs::is_empty(o_.out_dir, ec)) {
      return make_error(errc::conflict, fmt::format("{} is not empty", o_.out_dir.string()));
    }
    return {};
  }
  fs::create_directories(o_.out_dir, ec);
  if (ec) {
    return make_error(errc::io_error,
                      fmt::format("create {}: {}", o_.out_dir.string(), ec.message()));
  }
  created_dir_ = true;
  return {};
}

status packager::open_output() {
  const char* filter = vcodec_ == AV_CODEC_ID_H264 ? "h264_mp4toannexb" : "hevc_mp4toannexb";
  const AVBitStreamFilter* f = av_bsf_get_by_name(filter);
  if (f == nullptr || av_bsf_alloc(f, &bsf_) < 0) {
    return make_error(errc::internal, fmt::format("FFmpeg lacks the {} filter", filter));
  }
  avcodec_parameters_copy(bsf_->par_in, in_->streams[vin_]->codecpar);
  bsf_->time_base_in = vtb_;
  capture_.last_error.clear();
  if (int r = av_bsf_init(bsf_); r < 0) {
    return bad_input(fmt::format("bad {} stream header: {}", avcodec_get_name(vcodec_), reason(r)));
  }

  if (avformat_alloc_output_context2(&out_, nullptr, "mpegts", nullptr) < 0) {
    return make_error(errc::internal, "FFmpeg lacks the mpegts muxer");
  }
  AVStream* vs = avformat_new_stream(out_, nullptr);
  if (vs == nullptr) {
    throw std::bad_alloc();
  }
  avcodec_parameters_copy(vs->codecpar, bsf_->par_out);  // Annex B headers, not avcC/hvcC
  vs->codecpar->codec_tag = 0;
  vs->time_base = bsf_->time_base_out;
  if (ain_ >= 0) {
    AVStream* as = avformat_new_stream(out_, nullptr);
    if (as == nullptr) {
      throw std::bad_alloc();
    }
    avcodec_parameters_copy(as->codecpar, in_->streams[ain_]->codecpar);
    as->codecpar->codec_tag = 0;
    as->time_base = atb_;
  }
  out_->max_delay = 700'000;  // µs of PCR lead over DTS, as the ffmpeg command line sets it
  // One muxer for the whole program: its timestamps must not be shifted at its first packet.
  out_->avoid_negative_ts = AVFMT_AVOID_NEG_TS_DISABLED;

  if (auto st = open_segment(0); !st) {
    return st;
  }
  auto* buf = static_cast<uint8_t*>(av_malloc(io_buffer_size));
  if (buf == nullptr) {
    throw std::bad_alloc();
  }
  out_pb_ =
      avio_alloc_context(buf, io_buffer_size, 1, &sink_, nullptr, &segment_sink::write_cb, nullptr);
  if (out_pb_ == nullptr) {
    av_free(buf);
    throw std::bad_alloc();
  }
  out_->pb = out_pb_;
  capture_.last_error.clear();
  if (int r = avformat_write_header(out_, nullptr); r < 0) {
    return write_error(r);
  }
  return {};
}

error packager::write_error(int averr) const {
  if (sink_.failure) {
    return *sink_.failure;
  }
  double at = video_end_ == AV_NOPTS_VALUE ? 0 : video_seconds(video_end_);
  return bad_input(fmt::format("cannot remux at {:.2f} s: {}", at, reason(averr)));
}

status packager::remux() {
  auto pkt = new_packet();
  for (;;) {
    capture_.last_error.clear();
    int r = av_read_frame(in_, pkt.get());
    if (r == AVERROR_EOF) {
      break;
    }
    if (r < 0) {
      double at = video_end_ == AV_NOPTS_VALUE ? 0 : video_seconds(video_end_);
      if (remote_ && r != AVERROR_INVALIDDATA) {
        return make_error(errc::unavailable,
                          fmt::format("{}: read failed at {:.2f} s: {}", o_.input, at, reason(r)));
      }
      return bad_input(fmt::format("truncated or damaged at {:.2f} s: {}", at, reason(r)));
    }
    bool wanted = pkt->stream_index == vin_ || pkt->stream_index == ain_;
    if (wanted && (pkt->flags & AV_PKT_FLAG_CORRUPT) != 0 && !is_ts_) {
      // MP4 and MKV state every frame's size: a short one means the file ends inside it.
      double at = video_end_ == AV_NOPTS_VALUE ? 0 : video_seconds(video_end_);
      return bad_input(fmt::format("truncated or damaged at {:.2f} s: a frame is cut short", at));
    }
    status st;
    if (pkt->stream_index == vin_) {
      st = on_video(pkt.get());
    } else if (pkt->stream_index == ain_) {
      st = on_audio(pkt.get());
    }
    av_packet_unref(pkt.get());
    if (!st) {
      return st;
    }
  }
  if (!started_) {
    return bad_input(first_video_ts_ == AV_NOPTS_VALUE
                         ? std::string("the video stream has no frames")
                         : fmt::format("no video keyframe in {} frames", skipped_video_));
  }
  if (auto st = drain_bsf(); !st) {
    return st;
  }
  if (auto st = check_complete(); !st) {
    return st;
  }
  capture_.last_error.clear();
  if (int r = av_write_trailer(out_); r < 0) {
    return write_error(r);
  }
  avio_flush(out_pb_);
  if (sink_.failure) {
    return *sink_.failure;
  }
  return finish_segment(video_end_ - seg_start_);
}

status packager::on_video(AVPacket* pkt) {
  int64_t ts = pkt->pts != AV_NOPTS_VALUE ? pkt->pts : pkt->dts;
  if (ts == AV_NOPTS_VALUE) {
    return bad_input("a video frame without a timestamp");
  }
  bool key = (pkt->flags & AV_PKT_FLAG_KEY) != 0;
  if (!started_) {
    if (first_video_ts_ == AV_NOPTS_VALUE) {
      first_video_ts_ = ts;
    }
    if (!key) {
      ++skipped_video_;
      if (video_seconds(ts - first_video_ts_) > max_leading_seconds) {
        return bad_input(
            fmt::format("no video keyframe in the first {:.0f} s (the stream cannot "
                        "be cut into independently playable segments)",
                        max_leading_seconds));
      }
      return {};
    }
    if (auto st = start(ts); !st) {
      return st;
    }
  } else if (key && ts - seg_start_ >= target_ticks_) {
    if (auto st = cut(ts); !st) {
      return st;
    }
  }
  int64_t dur = pkt->duration > 0 ? pkt->duration : frame_ticks_;
  video_end_ = video_end_ == AV_NOPTS_VALUE ? ts + dur : std::max(video_end_, ts + dur);
  ++frames_;

  // An Annex B keyframe without its parameter sets would not decode on its own: prepend them.
  const AVCodecParameters* par = in_->streams[vin_]->codecpar;
  if (key && annexb_in_ && par->extradata_size > 0 && !has_sps(pkt->data, pkt->size, vcodec_)) {
    auto with = new_packet();
    if (av_new_packet(with.get(), par->extradata_size + pkt->size) < 0) {
      throw std::bad_alloc();
    }
    std::memcpy(with->data, par->extradata, par->extradata_size);
    std::memcpy(with->data + par->extradata_size, pkt->data, pkt->size);
    av_packet_copy_props(with.get(), pkt);
    av_packet_unref(pkt);
    av_packet_move_ref(pkt, with.get());
  }

  capture_.last_error.clear();
  if (int r = av_bsf_send_packet(bsf_, pkt); r < 0) {
    return bad_input(fmt::format("truncated or damaged: a bad video frame at {:.2f} s: {}",
                                 video_seconds(ts), reason(r)));
  }
  return drain_bsf();
}

// Writes what the bitstream filter has ready (after a flush, everything it holds).
status packager::drain_bsf() {
  auto out = new_packet();
  for (;;) {
    int r = av_bsf_receive_packet(bsf_, out.get());
    if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) {
      return {};
    }
    if (r < 0) {
      double at = video_end_ == AV_NOPTS_VALUE ? 0 : video_seconds(video_end_);
      return bad_input(
          fmt::format("truncated or damaged: a bad video frame at {:.2f} s: {}", at, reason(r)));
    }
    if (auto st = write(out.get(), 0, bsf_->time_base_out); !st) {
      return st;
    }
  }
}

status packager::on_audio(AVPacket* pkt) {
  if (started_) {
    return write(pkt, 1, atb_);
  }
  AVPacket* copy = av_packet_clone(pkt);
  if (copy == nullptr) {
    throw std::bad_alloc();
  }
  held_audio_.emplace_back(copy);
  if (held_audio_.size() > max_held_audio) {
    held_audio_.pop_front();
  }
  return {};
}

// The first keyframe: the audio held back goes out first, all of it when the video started with a
// keyframe, else only what ends after the keyframe.
status packager::start(int64_t key_pts) {
  started_ = true;
  seg_start_ = key_pts;
  for (auto& a : held_audio_) {
    int64_t ts = a->pts != AV_NOPTS_VALUE ? a->pts : a->dts;
    if (skipped_video_ == 0 ||
        (ts != AV_NOPTS_VALUE && av_compare_ts(ts + a->duration, atb_, key_pts, vtb_) > 0)) {
      if (auto st = write(a.get(), 1, atb_); !st) {
        return st;
      }
    }
  }
  held_audio_.clear();
  return {};
}

status packager::write(AVPacket* pkt, int out_index, AVRational in_tb) {
  pkt->stream_index = out_index;
  av_packet_rescale_ts(pkt, in_tb, out_->streams[out_index]->time_base);
  pkt->pos = -1;
  capture_.last_error.clear();
  int r = av_write_frame(out_, pkt);
  av_packet_unref(pkt);
  if (r < 0) {
    return write_error(r);
  }
  return {};
}

// Ends the current segment just before the keyframe at `key_pts` and starts the next with it.
status packager::cut(int64_t key_pts) {
  if (segments_.size() + 1 >= segment_index::max) {
    return make_error(errc::too_large,
                      fmt::format("{}: more than {} segments", o_.input, segment_index::max));
  }
  // Flush the audio the muxer buffers into this segment, and the I/O buffer into its file.
  capture_.last_error.clear();
  if (int r = av_write_frame(out_, nullptr); r < 0) {
    return write_error(r);
  }
  avio_flush(out_pb_);
  if (sink_.failure) {
    return *sink_.failure;
  }
  if (auto st = finish_segment(key_pts - seg_start_); !st) {
    return st;
  }
  if (auto st = open_segment(static_cast<uint32_t>(segments_.size())); !st) {
    return st;
  }
  // The next segment opens with PAT and PMT, so that it plays on its own.
  av_opt_set(out_->priv_data, "mpegts_flags", "+resend_headers", 0);
  seg_start_ = key_pts;
  return {};
}

status packager::open_segment(uint32_t index) {
  auto seg = std::make_unique<segment_file>(o_.out_dir, index, o_.durable);
  if (auto st = seg->open(); !st) {
    return st;
  }
  sink_.current = std::move(seg);
  return {};
}

status packager::finish_segment(int64_t video_ticks) {
  auto seg = sink_.current->commit(video_seconds(video_ticks));
  if (!seg) {
    return seg.err();
  }
  written_.push_back(sink_.current->final_path());
  sink_.current.reset();
  sink_.committed_bytes += seg->size;
  packaged_seconds_ += seg->duration;
  segments_.push_back(std::move(*seg));
  if (o_.progress) {
    double total = in_->duration > 0 ? static_cast<double>(in_->duration) / AV_TIME_BASE : 0;
    o_.progress(packaged_seconds_, total);
  }
  return {};
}

// A demuxer may read a truncated file up to where it stops without any error (an MP4 whose index
// is whole but whose media data is cut short): refuse video that ends well before the end the
// container states. An MPEG-TS states no end of its own (FFmpeg estimates it from the last
// timestamps), so a TS cut short is packaged as the shorter program it is.
status packager::check_complete() const {
  const AVStream* vs = in_->streams[vin_];
  double stated = NAN;
  if (vs->duration != AV_NOPTS_VALUE && vs->duration > 0) {
    int64_t start = vs->start_time != AV_NOPTS_VALUE ? vs->start_time : 0;
    stated = video_seconds(start + vs->duration);
  } else if (in_->duration > 0) {
    int64_t start = in_->start_time != AV_NOPTS_VALUE ? in_->start_time : 0;
    stated = static_cast<double>(start + in_->duration) / AV_TIME_BASE;
  }
  double covered = video_seconds(video_end_);
  if (!std::isnan(stated) && stated - covered > std::max(truncation_slack, 0.01 * stated)) {
    return bad_input(fmt::format(
        "truncated or damaged: the video stops at {:.2f} s but the container says {:.2f} s",
        covered, stated));
  }
  return {};
}

status packager::write_playlist() {
  std::string text = vod_playlist_text(segments_);
  auto path = o_.out_dir / "index.m3u8";
  // Durable: temporary file, fsync, rename, then an fsync of the folder, which also makes the
  // segments' renames durable. Otherwise the same, without the fsyncs: still never a torn file
  // under its final name.
  if (o_.durable) {
    if (auto st = write_file_durably(path, text); !st) {
      return st;
    }
  } else {
    auto tmp = o_.out_dir / ".index.m3u8.tmp";
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out || ::rename(tmp.c_str(), path.c_str()) != 0) {
      ::unlink(tmp.c_str());
      return sys_error("write", path);
    }
  }
  written_.push_back(path);
  return {};
}

result<package_result> packager::run() {
  if (auto st = check_options(); !st) {
    return st.err();
  }
  for (auto step : {&packager::open_input, &packager::select_streams, &packager::prepare_out_dir,
                    &packager::open_output, &packager::remux, &packager::write_playlist}) {
    if (auto st = (this->*step)(); !st) {
      return st.err();
    }
  }
  package_result res;
  res.segments = segments_;
  res.duration = packaged_seconds_;
  res.video_codec = avcodec_get_name(vcodec_);
  if (ain_ >= 0) {
    res.audio_codec = avcodec_get_name(in_->streams[ain_]->codecpar->codec_id);
  }
  res.width = in_->streams[vin_]->codecpar->width;
  res.height = in_->streams[vin_]->codecpar->height;
  if (res.duration > 0) {
    res.bitrate =
        static_cast<uint64_t>(static_cast<double>(sink_.committed_bytes) * 8 / res.duration);
  }
  res.video_frames = frames_;
  res.playlist = o_.out_dir / "index.m3u8";
  done_ = true;
  packager_logger()->info("packaged {} into {}: {} segments, {:.2f} s, {} {}x{}{}{}, {} frames", o_.input,
                 o_.out_dir.string(), res.segments.size(), res.duration, res.video_codec, res.width,
                 res.height, res.audio_codec.empty() ? "" : " + ", res.audio_codec,
                 res.video_frames);
  return res;
}

}  // namespace

result<package_result> package(const package_options& opts) {
  init_ffmpeg();
  packager p(opts);
  return p.run();
}

}  // namespace vodgrid::content
