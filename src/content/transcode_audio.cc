// The transcoder's audio (transcode_run.h): each track decoded, resampled to 48 kHz stereo in
// frames of 1024 samples and encoded once to AAC-LC. Its packets go to its audio-only rendition,
// cut at the first packet at or after each forced video keyframe (so they wait until the video's
// keyframe decisions have passed them), and, for the default track, into every video rendition,
// where they wait until the video written has reached them (so a segment holds the audio of its
// own time, not the encoder's delay ahead).
#include <fmt/format.h>

#include <algorithm>
#include <new>

#include "content/transcode_run.h"

extern "C" {
#include <libavfilter/buffersink.h>
#include <libavfilter/buffersrc.h>
#include <libavutil/channel_layout.h>
#include <libavutil/samplefmt.h>
}

namespace vodgrid::content {

namespace {

constexpr int out_rate = 48'000;
// Packets an audio track may hold while waiting for the video (about 7 minutes): past it, the
// source's audio runs so far ahead of its video that it is refused rather than buffered.
constexpr size_t max_queued_audio = 20'000;

}  // namespace

status transcoder::open_audios() {
  for (auto& a : audios_) {
    if (auto st = open_audio(*a); !st) {
      return st;
    }
  }
  return {};
}

status transcoder::open_audio(audio_out& a) {
  const AVStream* s = in_.fmt->streams[a.stream];
  const AVCodec* codec = avcodec_find_decoder(s->codecpar->codec_id);
  a.dec.reset(avcodec_alloc_context3(codec));
  if (!a.dec) {
    throw std::bad_alloc();
  }
  avcodec_parameters_to_context(a.dec.get(), s->codecpar);
  a.dec->pkt_timebase = s->time_base;
  capture_.last_error.clear();
  if (int r = avcodec_open2(a.dec.get(), codec, nullptr); r < 0) {
    return bad_input(
        fmt::format("cannot decode audio stream {} ({}): {}", a.stream, codec->name, reason(r)));
  }
  const AVCodec* aac = avcodec_find_encoder(AV_CODEC_ID_AAC);
  if (aac == nullptr) {
    return make_error(errc::internal, "this FFmpeg has no AAC encoder");
  }
  a.enc.reset(avcodec_alloc_context3(aac));
  if (!a.enc) {
    throw std::bad_alloc();
  }
  AVCodecContext* c = a.enc.get();
  c->sample_fmt = AV_SAMPLE_FMT_FLTP;
  c->sample_rate = out_rate;
  av_channel_layout_default(&c->ch_layout, 2);
  c->bit_rate = static_cast<int64_t>(l_.audio_bitrate);
  c->time_base = AVRational{1, out_rate};
  c->profile = FF_PROFILE_AAC_LOW;
  if (int r = avcodec_open2(c, aac, nullptr); r < 0) {
    return make_error(errc::internal, fmt::format("the AAC encoder: {}", reason(r)));
  }
  a.folder = std::make_unique<ts_folder>(o_, o_.out_dir / a.name);
  return a.folder->open({c});
}

// abuffer → aresample to 48 kHz → stereo float planar → abuffersink in frames of the encoder's
// size (1024).
status transcoder::open_audio_graph(audio_out& a, const AVFrame* first) {
  a.graph.reset(avfilter_graph_alloc());
  if (!a.graph) {
    throw std::bad_alloc();
  }
  AVChannelLayout layout{};
  if (first->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC || first->ch_layout.nb_channels == 0) {
    av_channel_layout_default(&layout, std::max(1, first->ch_layout.nb_channels));
  } else {
    av_channel_layout_copy(&layout, &first->ch_layout);
  }
  char name[128] = {};
  av_channel_layout_describe(&layout, name, sizeof name);
  av_channel_layout_uninit(&layout);
  AVRational tb = in_.fmt->streams[a.stream]->time_base;
  const char* fmt_name = av_get_sample_fmt_name(static_cast<AVSampleFormat>(first->format));
  std::string args =
      fmt::format("time_base={}/{}:sample_rate={}:sample_fmt={}:channel_layout={}", tb.num, tb.den,
                  first->sample_rate, fmt_name != nullptr ? fmt_name : "none", name);
  AVFilterContext* resample = nullptr;
  AVFilterContext* format = nullptr;
  std::string format_args =
      fmt::format("sample_fmts=fltp:channel_layouts=stereo:sample_rates={}", out_rate);
  bool ok = avfilter_graph_create_filter(&a.src, avfilter_get_by_name("abuffer"), "in",
                                         args.c_str(), nullptr, a.graph.get()) >= 0 &&
            avfilter_graph_create_filter(&resample, avfilter_get_by_name("aresample"), "resample",
                                         fmt::format("{}", out_rate).c_str(), nullptr,
                                         a.graph.get()) >= 0 &&
            avfilter_graph_create_filter(&format, avfilter_get_by_name("aformat"), "format",
                                         format_args.c_str(), nullptr, a.graph.get()) >= 0 &&
            avfilter_graph_create_filter(&a.sink, avfilter_get_by_name("abuffersink"), "out",
                                         nullptr, nullptr, a.graph.get()) >= 0 &&
            avfilter_link(a.src, 0, resample, 0) >= 0 &&
            avfilter_link(resample, 0, format, 0) >= 0 &&
            avfilter_link(format, 0, a.sink, 0) >= 0 &&
            avfilter_graph_config(a.graph.get(), nullptr) >= 0;
  if (!ok) {
    return bad_input(fmt::format("audio stream {} ({}) cannot be resampled", a.stream, args));
  }
  av_buffersink_set_frame_size(a.sink, static_cast<unsigned>(a.enc->frame_size));
  return {};
}

status transcoder::on_audio_packet(audio_out& a, AVPacket* pkt) {
  capture_.last_error.clear();
  int r = avcodec_send_packet(a.dec.get(), pkt);
  if (r < 0 && r != AVERROR(EAGAIN)) {
    if (in_.is_ts && r == AVERROR_INVALIDDATA) {
      return {};  // a damaged frame of a transport stream: skipped, as ffmpeg does
    }
    return bad_input(fmt::format("truncated or damaged: a bad frame in audio stream {}: {}",
                                 a.stream, reason(r)));
  }
  return receive_audio_frames(a);
}

status transcoder::receive_audio_frames(audio_out& a) {
  auto frame = new_frame();
  for (;;) {
    int r = avcodec_receive_frame(a.dec.get(), frame.get());
    if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) {
      return {};
    }
    if (r < 0) {
      if (in_.is_ts && r == AVERROR_INVALIDDATA) {
        continue;
      }
      return bad_input(fmt::format("audio stream {} cannot be decoded: {}", a.stream, reason(r)));
    }
    frame->pts = frame->best_effort_timestamp;
    auto st = filter_audio(a, frame.get());
    av_frame_unref(frame.get());
    if (!st) {
      return st;
    }
  }
}

status transcoder::filter_audio(audio_out& a, AVFrame* frame) {
  if (!a.graph) {
    if (frame == nullptr) {
      return {};
    }
    if (auto st = open_audio_graph(a, frame); !st) {
      return st;
    }
  }
  int r = frame != nullptr ? av_buffersrc_add_frame_flags(a.src, frame, AV_BUFFERSRC_FLAG_KEEP_REF)
                           : av_buffersrc_add_frame(a.src, nullptr);
  if (r < 0) {
    // A change of layout or rate midway the graph was not built for.
    return bad_input(
        fmt::format("audio stream {} changes its format midway: {}", a.stream, reason(r)));
  }
  auto out = new_frame();
  for (;;) {
    r = av_buffersink_get_frame(a.sink, out.get());
    if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) {
      return {};
    }
    if (r < 0) {
      return make_error(errc::internal, fmt::format("the audio filter graph: {}", reason(r)));
    }
    if (out->pts == AV_NOPTS_VALUE) {
      out->pts = a.next_pts;
    } else {
      out->pts = av_rescale_q(out->pts, av_buffersink_get_time_base(a.sink), a.enc->time_base);
    }
    a.next_pts = out->pts + out->nb_samples;
    auto st = encode_audio(a, out.get());
    av_frame_unref(out.get());
    if (!st) {
      return st;
    }
  }
}

status transcoder::encode_audio(audio_out& a, AVFrame* frame) {
  capture_.last_error.clear();
  if (int r = avcodec_send_frame(a.enc.get(), frame); r < 0) {
    return make_error(errc::internal, fmt::format("the AAC encoder: {}", reason(r)));
  }
  auto pkt = new_packet();
  for (;;) {
    int r = avcodec_receive_packet(a.enc.get(), pkt.get());
    if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) {
      return {};
    }
    if (r < 0) {
      return make_error(errc::internal, fmt::format("the AAC encoder: {}", reason(r)));
    }
    if (auto st = on_audio_encoded(a, pkt.get()); !st) {
      return st;
    }
    av_packet_unref(pkt.get());
  }
}

status transcoder::on_audio_encoded(audio_out& a, AVPacket* pkt) {
  auto clone = [&] {
    AVPacket* c = av_packet_clone(pkt);
    if (c == nullptr) {
      throw std::bad_alloc();
    }
    return packet_ptr(c);
  };
  if (&a == main_audio_) {
    for (auto& v : videos_) {
      v.audio.push_back(clone());
    }
  }
  a.pending.push_back(clone());
  if (a.pending.size() > max_queued_audio ||
      (!videos_.empty() && videos_.front().audio.size() > max_queued_audio)) {
    return bad_input(fmt::format("audio stream {} runs minutes ahead of the video", a.stream));
  }
  return write_audio_only(a, false);
}

// Writes the audio-only rendition's packets whose cut is decided (the video's keyframe decisions
// have reached their time), or all of them at the end.
status transcoder::write_audio_only(audio_out& a, bool all) {
  AVRational atb = a.enc->time_base;
  while (!a.pending.empty()) {
    AVPacket* p = a.pending.front().get();
    int64_t t = p->pts != AV_NOPTS_VALUE ? p->pts : p->dts;
    if (!all && (decided_ == AV_NOPTS_VALUE || av_compare_ts(t, atb, decided_, etb_) > 0)) {
      return {};
    }
    if (a.seg_start == AV_NOPTS_VALUE) {
      a.seg_start = t;
    }
    bool passed = false;
    while (a.next_cut < keys_.size() && av_compare_ts(t, atb, keys_[a.next_cut], etb_) >= 0) {
      passed = true;
      ++a.next_cut;
    }
    if (passed && !a.folder->empty_segment()) {
      if (auto st = a.folder->cut(static_cast<double>(t - a.seg_start) * av_q2d(atb)); !st) {
        return st;
      }
      a.seg_start = t;
    }
    a.end = std::max(a.end, t + std::max<int64_t>(p->duration, 1));
    if (auto st = a.folder->write(p, 0, atb); !st) {
      return st;
    }
    a.pending.pop_front();
  }
  return {};
}

status transcoder::write_muxed_audio(video_out& v, int64_t upto, AVRational tb, bool inclusive) {
  if (main_audio_ == nullptr) {
    return {};
  }
  AVRational atb = main_audio_->enc->time_base;
  while (!v.audio.empty()) {
    AVPacket* p = v.audio.front().get();
    int64_t t = p->pts != AV_NOPTS_VALUE ? p->pts : p->dts;
    if (upto != INT64_MAX) {
      int c = av_compare_ts(t, atb, upto, tb);
      if (c > 0 || (c == 0 && !inclusive)) {
        return {};
      }
    }
    if (auto st = v.folder->write(p, 1, atb); !st) {
      return st;
    }
    v.audio.pop_front();
  }
  return {};
}

status transcoder::flush_audio(audio_out& a) {
  capture_.last_error.clear();
  avcodec_send_packet(a.dec.get(), nullptr);
  if (auto st = receive_audio_frames(a); !st) {
    return st;
  }
  if (a.graph) {
    if (auto st = filter_audio(a, nullptr); !st) {
      return st;
    }
  }
  return encode_audio(a, nullptr);
}

}  // namespace vodgrid::content
