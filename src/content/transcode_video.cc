// The transcoder's video (transcode_run.h): one decoder; one filter graph, built at the first
// frame, that deinterlaces an interlaced source, splits it and scales a copy to each rung; an x264
// encoder per rung whose keyframes are forced at the first frame at or after every multiple of
// target_seconds and nowhere else; each rendition cut at each forced keyframe.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <new>

#include "content/transcode_run.h"

extern "C" {
#include <libavfilter/buffersink.h>
#include <libavfilter/buffersrc.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
}

namespace vodgrid::content {

namespace {

bool interlaced(AVFieldOrder f) {
  return f == AV_FIELD_TT || f == AV_FIELD_BB || f == AV_FIELD_TB || f == AV_FIELD_BT;
}

}  // namespace

status transcoder::open_video() {
  const AVStream* vs = in_.fmt->streams[vin_];
  vtb_ = vs->time_base;
  rate_ = av_guess_frame_rate(in_.fmt, const_cast<AVStream*>(vs), nullptr);
  if (rate_.num <= 0 || rate_.den <= 0) {
    rate_ = AVRational{25, 1};
  }
  // The encoders count in frames (as the ffmpeg command line's do): one tick a frame.
  etb_ = av_inv_q(rate_);
  double frames_per_segment = o_.target_seconds * av_q2d(rate_);
  // x264 must never place a keyframe of its own: its longest GOP is past the forced ones' distance.
  keyint_ = std::max<int64_t>(2, static_cast<int64_t>(std::ceil(frames_per_segment)) * 2);

  const AVCodec* codec = avcodec_find_decoder(vs->codecpar->codec_id);
  if (codec == nullptr) {
    return bad_input(fmt::format("no decoder for {}", avcodec_get_name(vs->codecpar->codec_id)));
  }
  vdec_.reset(avcodec_alloc_context3(codec));
  if (!vdec_) {
    throw std::bad_alloc();
  }
  avcodec_parameters_to_context(vdec_.get(), vs->codecpar);
  vdec_->pkt_timebase = vtb_;
  vdec_->thread_count = 0;  // one per core, as the ffmpeg command line does
  capture_.last_error.clear();
  if (int r = avcodec_open2(vdec_.get(), codec, nullptr); r < 0) {
    return bad_input(fmt::format("cannot decode its {} video: {}", codec->name, reason(r)));
  }
  return {};
}

// The graph at the first frame, from its size, format and aspect: buffer → [yadif] → split → per
// rung scale to the rung's height and the width of the display aspect, 4:2:0 → buffersink. Then
// the encoders and the folders (whose muxers need the encoders' parameters).
status transcoder::open_video_graph(const AVFrame* first) {
  vgraph_.reset(avfilter_graph_alloc());
  if (!vgraph_) {
    throw std::bad_alloc();
  }
  AVRational sar =
      first->sample_aspect_ratio.num > 0 ? first->sample_aspect_ratio : vdec_->sample_aspect_ratio;
  if (sar.num <= 0 || sar.den <= 0) {
    sar = AVRational{1, 1};
  }
  std::string args =
      fmt::format("video_size={}x{}:pix_fmt={}:time_base={}/{}:pixel_aspect={}/{}", first->width,
                  first->height, first->format, vtb_.num, vtb_.den, sar.num, sar.den);
  if (avfilter_graph_create_filter(&vsrc_, avfilter_get_by_name("buffer"), "in", args.c_str(),
                                   nullptr, vgraph_.get()) < 0) {
    return make_error(errc::internal, "FFmpeg's buffer filter refused " + args);
  }
  double dar = static_cast<double>(first->width) * av_q2d(sar) / first->height;
  bool deinterlace =
      interlaced(in_.fmt->streams[vin_]->codecpar->field_order) || first->interlaced_frame != 0;
  std::string desc =
      fmt::format("[in]{}split={}", deinterlace ? "yadif=deint=interlaced," : "", videos_.size());
  for (size_t i = 0; i < videos_.size(); ++i) {
    desc += fmt::format("[s{}]", i);
  }
  AVFilterInOut* outputs = avfilter_inout_alloc();  // the graph's open input, "in"
  AVFilterInOut* inputs = nullptr;                  // its open outputs, "o0", "o1", ...
  if (outputs == nullptr) {
    throw std::bad_alloc();
  }
  outputs->name = av_strdup("in");
  outputs->filter_ctx = vsrc_;
  for (size_t i = 0; i < videos_.size(); ++i) {
    video_out& v = videos_[i];
    v.height = v.rung.height;
    v.width = std::max(2, static_cast<int>(std::lround(v.height * dar / 2)) * 2);
    desc += fmt::format(";[s{0}]scale={1}:{2},format=yuv420p,setsar=1[o{0}]", i, v.width, v.height);
    if (avfilter_graph_create_filter(&v.sink, avfilter_get_by_name("buffersink"),
                                     fmt::format("o{}", i).c_str(), nullptr, nullptr,
                                     vgraph_.get()) < 0) {
      avfilter_inout_free(&outputs);
      avfilter_inout_free(&inputs);
      return make_error(errc::internal, "FFmpeg's buffersink filter failed");
    }
    AVFilterInOut* in = avfilter_inout_alloc();
    if (in == nullptr) {
      throw std::bad_alloc();
    }
    in->name = av_strdup(fmt::format("o{}", i).c_str());
    in->filter_ctx = v.sink;
    in->next = inputs;
    inputs = in;
  }
  capture_.last_error.clear();
  int r = avfilter_graph_parse_ptr(vgraph_.get(), desc.c_str(), &inputs, &outputs, nullptr);
  avfilter_inout_free(&outputs);
  avfilter_inout_free(&inputs);
  if (r >= 0) {
    r = avfilter_graph_config(vgraph_.get(), nullptr);
  }
  if (r < 0) {
    return make_error(errc::internal,
                      fmt::format("the video filter graph '{}' failed: {}", desc, reason(r)));
  }
  for (auto& v : videos_) {
    if (auto st = open_encoder(v, first); !st) {
      return st;
    }
    std::vector<const AVCodecContext*> streams = {v.enc.get()};
    if (main_audio_ != nullptr) {
      streams.push_back(main_audio_->enc.get());
    }
    v.folder = std::make_unique<ts_folder>(o_, o_.out_dir / v.rung.name);
    if (auto st = v.folder->open(streams); !st) {
      return st;
    }
  }
  return {};
}

status transcoder::open_encoder(video_out& v, const AVFrame* first) {
  const AVCodec* x264 = avcodec_find_encoder_by_name("libx264");
  if (x264 == nullptr) {
    return make_error(errc::internal, "this FFmpeg has no libx264 encoder");
  }
  v.enc.reset(avcodec_alloc_context3(x264));
  if (!v.enc) {
    throw std::bad_alloc();
  }
  AVCodecContext* c = v.enc.get();
  c->width = v.width;
  c->height = v.height;
  c->pix_fmt = AV_PIX_FMT_YUV420P;
  c->sample_aspect_ratio = AVRational{1, 1};
  c->time_base = etb_;
  c->framerate = rate_;
  c->gop_size = static_cast<int>(keyint_);
  c->rc_max_rate = static_cast<int64_t>(v.rung.max_bitrate);
  c->rc_buffer_size = static_cast<int>(std::min<uint64_t>(v.rung.max_bitrate * 2, INT32_MAX));
  c->color_range = first->color_range;
  c->colorspace = first->colorspace;
  c->color_primaries = first->color_primaries;
  c->color_trc = first->color_trc;
  c->thread_count = 0;
  dictionary opts;
  av_dict_set(&opts.d, "preset", l_.preset.c_str(), 0);
  av_dict_set_int(&opts.d, "crf", l_.crf, 0);
  av_dict_set(&opts.d, "forced-idr", "1", 0);
  av_dict_set(&opts.d, "x264-params", "scenecut=0", 0);
  capture_.last_error.clear();
  if (int r = avcodec_open2(c, x264, &opts.d); r < 0) {
    return make_error(errc::internal,
                      fmt::format("libx264 refused {}x{}: {}", v.width, v.height, reason(r)));
  }
  return {};
}

status transcoder::on_video_packet(AVPacket* pkt) {
  capture_.last_error.clear();
  int r = avcodec_send_packet(vdec_.get(), pkt);
  if (r < 0 && r != AVERROR(EAGAIN)) {
    double at = pkt->pts != AV_NOPTS_VALUE ? static_cast<double>(pkt->pts) * av_q2d(vtb_) : 0;
    if (in_.is_ts && r == AVERROR_INVALIDDATA) {
      return {};  // a damaged frame of a transport stream: the decoder conceals, as ffmpeg does
    }
    return bad_input(
        fmt::format("truncated or damaged: a bad video frame at {:.2f} s: {}", at, reason(r)));
  }
  return receive_video_frames();
}

status transcoder::receive_video_frames() {
  auto frame = new_frame();
  for (;;) {
    int r = avcodec_receive_frame(vdec_.get(), frame.get());
    if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) {
      return {};
    }
    if (r < 0) {
      return bad_input(fmt::format("the video cannot be decoded: {}", reason(r)));
    }
    int64_t pts = frame->best_effort_timestamp;
    int64_t step =
        frame->pkt_duration > 0 ? frame->pkt_duration : av_rescale_q(1, av_inv_q(rate_), vtb_);
    if (pts == AV_NOPTS_VALUE) {
      pts = last_in_pts_ == AV_NOPTS_VALUE ? 0 : last_in_pts_ + step;
    }
    frame->pts = pts;
    last_in_pts_ = pts;
    decoded_end_ = decoded_end_ == AV_NOPTS_VALUE ? pts + step : std::max(decoded_end_, pts + step);
    auto st = filter_video(frame.get());
    av_frame_unref(frame.get());
    if (!st) {
      return st;
    }
  }
}

// Pushes a decoded frame (nullptr: the end) through the graph and encodes what each rung's sink
// gives. The sinks give the same frames in the same order, so the keyframe decision, a function of
// the frame's pts and the previous one's, is the same in every rung.
status transcoder::filter_video(AVFrame* frame) {
  if (!vgraph_) {
    if (frame == nullptr) {
      return {};
    }
    if (auto st = open_video_graph(frame); !st) {
      return st;
    }
  }
  int r = frame != nullptr ? av_buffersrc_add_frame_flags(vsrc_, frame, AV_BUFFERSRC_FLAG_KEEP_REF)
                           : av_buffersrc_add_frame(vsrc_, nullptr);
  if (r < 0) {
    return make_error(errc::internal, fmt::format("the video filter graph: {}", reason(r)));
  }
  auto out = new_frame();
  for (auto& v : videos_) {
    for (;;) {
      r = av_buffersink_get_frame(v.sink, out.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) {
        break;
      }
      if (r < 0) {
        return make_error(errc::internal, fmt::format("the video filter graph: {}", reason(r)));
      }
      auto st = encode_video(v, out.get());
      av_frame_unref(out.get());
      if (!st) {
        return st;
      }
    }
  }
  for (auto& a : audios_) {
    if (auto st = write_audio_only(*a, false); !st) {
      return st;
    }
  }
  return {};
}

status transcoder::encode_video(video_out& v, AVFrame* frame) {
  if (frame != nullptr) {
    int64_t pts = av_rescale_q(frame->pts, av_buffersink_get_time_base(v.sink), etb_);
    if (v.last_pts != AV_NOPTS_VALUE && pts <= v.last_pts) {
      pts = v.last_pts + 1;  // x264 wants strictly rising timestamps
    }
    if (origin_ == AV_NOPTS_VALUE) {
      origin_ = pts;
    }
    // The segment of the keyframe grid a pts falls in: a keyframe opens each non-empty one.
    auto slot = [&](int64_t p) {
      return static_cast<int64_t>(
          std::floor(static_cast<double>(p - origin_) * av_q2d(etb_) / o_.target_seconds + 1e-9));
    };
    bool key = v.last_pts == AV_NOPTS_VALUE || slot(pts) != slot(v.last_pts);
    v.last_pts = pts;
    if (&v == &videos_.front()) {
      if (key) {
        keys_.push_back(pts);
      }
      decided_ = pts;
    }
    frame->pts = pts;
    frame->pict_type = key ? AV_PICTURE_TYPE_I : AV_PICTURE_TYPE_NONE;
    frame->key_frame = key ? 1 : 0;
  }
  capture_.last_error.clear();
  if (int r = avcodec_send_frame(v.enc.get(), frame); r < 0) {
    return make_error(errc::internal, fmt::format("libx264 ({}): {}", v.rung.name, reason(r)));
  }
  auto pkt = new_packet();
  for (;;) {
    int r = avcodec_receive_packet(v.enc.get(), pkt.get());
    if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) {
      return {};
    }
    if (r < 0) {
      return make_error(errc::internal, fmt::format("libx264 ({}): {}", v.rung.name, reason(r)));
    }
    if (auto st = on_encoded(v, pkt.get()); !st) {
      return st;
    }
  }
}

// An encoded packet into the rendition's folder: at a forced keyframe, the segment is cut first.
status transcoder::on_encoded(video_out& v, AVPacket* pkt) {
  bool key = (pkt->flags & AV_PKT_FLAG_KEY) != 0;
  if (key && v.avc.empty()) {
    v.avc = avc_codec_string(pkt->data, pkt->size);
  }
  if (key && v.next_cut < keys_.size() && pkt->pts == keys_[v.next_cut]) {
    if (auto st = write_muxed_audio(v, pkt->pts, etb_, false); !st) {
      return st;
    }
    if (auto st = v.folder->cut(seconds(pkt->pts - v.seg_start)); !st) {
      return st;
    }
    v.seg_start = pkt->pts;
    ++v.next_cut;
    if (auto st = program_size(); !st) {
      return st;
    }
    if (&v == &videos_.front() && o_.progress) {
      double total =
          in_.fmt->duration > 0 ? static_cast<double>(in_.fmt->duration) / AV_TIME_BASE : 0;
      o_.progress(seconds(pkt->pts - origin_), total);
    }
  } else if (v.frames == 0) {
    v.seg_start = pkt->pts;
  }
  int64_t dts = pkt->dts != AV_NOPTS_VALUE ? pkt->dts : pkt->pts;
  if (auto st = write_muxed_audio(v, dts, etb_, true); !st) {
    return st;
  }
  int64_t end = pkt->pts + std::max<int64_t>(pkt->duration, 1);
  v.end = std::max(v.end, end);
  ++v.frames;
  return v.folder->write(pkt, 0, etb_);
}

status transcoder::flush_video() {
  capture_.last_error.clear();
  avcodec_send_packet(vdec_.get(), nullptr);
  if (auto st = receive_video_frames(); !st) {
    return st;
  }
  if (!vgraph_) {
    return {};  // no frame was decoded
  }
  if (auto st = filter_video(nullptr); !st) {
    return st;
  }
  for (auto& v : videos_) {
    if (auto st = encode_video(v, nullptr); !st) {
      return st;
    }
  }
  return {};
}

}  // namespace vodgrid::content
