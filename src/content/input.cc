// The packager's input side: the options checked, the input opened with only the protocols its
// kind allows, probed so that only the accepted demuxers ever parse it, its streams chosen and
// checked (H.264/H.265 video, at most one AAC audio), and after the remux the check that the video
// reaches the end the container states.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <new>
#include <utility>

#include "content/fetch.h"
#include "content/packager_run.h"

namespace vodgrid::content {

status packager::check_options() const {
  return check_package_options(o_);
}

status check_package_options(const package_options& o) {
  if (o.input.empty()) {
    return make_error(errc::invalid_argument, "no input given");
  }
  if (o.out_dir.empty()) {
    return make_error(errc::invalid_argument, "no output folder given");
  }
  if (!(o.target_seconds >= 0.5 && o.target_seconds <= 60)) {
    return make_error(
        errc::invalid_argument,
        fmt::format("target_seconds must be between 0.5 and 60, not {}", o.target_seconds));
  }
  if (o.max_segment_bytes == 0 || o.max_bytes == 0 || o.io_timeout_ms <= 0) {
    return make_error(errc::invalid_argument,
                      "max_segment_bytes, max_bytes and io_timeout_ms must be positive");
  }
  return {};
}

status open_media(const package_options& o, av_capture& capture, media_input& in) {
  auto bad_input = [&](std::string what) {
    return make_error(errc::invalid_argument, fmt::format("{}: {}", o.input, what));
  };
  auto reason = [&](int averr) {
    return capture.last_error.empty() ? av_text(averr) : capture.last_error;
  };
  std::string url;
  std::string protocols;
  dictionary opts;
  if (is_url(o.input)) {
    in.remote = true;
    url = o.input;
    protocols = "http,https,tcp,tls";
    av_dict_set_int(&opts.d, "rw_timeout", int64_t{o.io_timeout_ms} * 1000, 0);
  } else {
    std::error_code ec;
    auto st = fs::status(o.input, ec);
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
    url = "file:" + fs::absolute(o.input, ec).string();
    protocols = "file";
  }
  av_dict_set(&opts.d, "protocol_whitelist", protocols.c_str(), 0);
  capture.last_error.clear();
  int r = avio_open2(&in.pb, url.c_str(), AVIO_FLAG_READ, nullptr, &opts.d);
  if (r < 0) {
    // A 4xx names a bad source; anything else on a URL (refused, timed out, 5xx) may pass.
    bool client_error = r == AVERROR_HTTP_BAD_REQUEST || r == AVERROR_HTTP_UNAUTHORIZED ||
                        r == AVERROR_HTTP_FORBIDDEN || r == AVERROR_HTTP_NOT_FOUND ||
                        r == AVERROR_HTTP_OTHER_4XX;
    return in.remote && !client_error
               ? make_error(errc::unavailable,
                            fmt::format("{}: cannot open: {}", o.input, reason(r)))
               : bad_input(fmt::format("cannot open: {}", reason(r)));
  }

  // Probe first, so that only the accepted demuxers ever parse the input; by content alone, not
  // by the name's extension.
  const AVInputFormat* format = nullptr;
  r = av_probe_input_buffer2(in.pb, &format, nullptr, nullptr, 0, 0);
  if (r < 0 || format == nullptr) {
    if (in.remote && r != AVERROR_INVALIDDATA && r != AVERROR_EOF) {
      return make_error(errc::unavailable, fmt::format("{}: cannot read: {}", o.input, reason(r)));
    }
    return bad_input("not a media file (no container format recognised)");
  }
  std::string_view name = format->name;
  in.is_ts = name == "mpegts";
  if (std::find(std::begin(accepted_containers), std::end(accepted_containers), name) ==
      std::end(accepted_containers)) {
    return bad_input(fmt::format("container {} is not supported: MP4, MKV or MPEG-TS only",
                                 format->long_name != nullptr ? format->long_name : format->name));
  }

  in.fmt = avformat_alloc_context();
  if (in.fmt == nullptr) {
    throw std::bad_alloc();
  }
  in.fmt->pb = in.pb;
  dictionary fopts;
  av_dict_set(&fopts.d, "protocol_whitelist", protocols.c_str(), 0);
  capture.last_error.clear();
  r = avformat_open_input(&in.fmt, url.c_str(), format, &fopts.d);  // frees in.fmt on failure
  if (r < 0) {
    return bad_input(fmt::format("truncated or damaged: {}", reason(r)));
  }
  capture.last_error.clear();
  r = avformat_find_stream_info(in.fmt, nullptr);
  if (r < 0) {
    return bad_input(fmt::format("cannot read its streams: {}", reason(r)));
  }
  return {};
}

media_input::~media_input() {
  avformat_close_input(&fmt);
  avio_closep(&pb);
}

status packager::open_input() {
  media_input m;
  auto st = open_media(o_, capture_, m);
  in_pb_ = std::exchange(m.pb, nullptr);
  in_ = std::exchange(m.fmt, nullptr);
  remote_ = m.remote;
  is_ts_ = m.is_ts;
  return st;
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

}  // namespace vodgrid::content
