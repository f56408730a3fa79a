// The packager: one libavformat demuxer in, H.264/H.265 converted to Annex B by the mp4toannexb
// bitstream filters, and one MPEG-TS muxer whose output is switched from file to file at the cut
// points (as FFmpeg's own HLS muxer does), so timestamps and continuity counters run on across
// segments and the segments concatenate into one valid transport stream. This file holds the run's
// remux and cutting and the output folder; the input's checks are input.cc's, the FFmpeg glue
// ffmpeg.h, the segment files, the muxer's sink and the playlist text segment_writer.h.
#include "content/packager.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <memory>
#include <new>

#include "base/fs.h"
#include "base/ids.h"
#include "content/packager_run.h"

extern "C" {
#include <libavformat/avio.h>
#include <libavutil/opt.h>
}

namespace vodgrid::content {

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

status packager::prepare_out_dir() {
  return content::prepare_out_dir(o_.out_dir, created_dir_);
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
  auto seg = std::make_unique<segment_writer>(o_.out_dir, index, o_.durable);
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
  packager_logger()->info("packaged {} into {}: {} segments, {:.2f} s, {} {}x{}{}{}, {} frames",
                          o_.input, o_.out_dir.string(), res.segments.size(), res.duration,
                          res.video_codec, res.width, res.height,
                          res.audio_codec.empty() ? "" : " + ", res.audio_codec, res.video_frames);
  return res;
}

result<package_result> package(const package_options& opts) {
  init_ffmpeg();
  packager p(opts);
  return p.run();
}

}  // namespace vodgrid::content
