// One rendition's folder (ts_folder in transcode_run.h): an MPEG-TS muxer whose output moves from
// segment file to segment file at the cuts, as the packager's does, and the folder's playlist.
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <new>

#include "base/fs.h"
#include "base/ids.h"
#include "content/transcode_run.h"

extern "C" {
#include <libavutil/opt.h>
}

namespace vodgrid::content {

ts_folder::~ts_folder() {
  if (out_ != nullptr) {
    avformat_free_context(out_);
  }
  if (pb_ != nullptr) {
    av_freep(&pb_->buffer);
    avio_context_free(&pb_);
  }
  sink_.current.reset();  // unlinks an unfinished segment
  if (!kept_) {
    std::error_code ec;
    for (auto& p : written_) {
      fs::remove(p, ec);
    }
    if (created_) {
      fs::remove(dir_, ec);
    }
  }
}

status ts_folder::open(const std::vector<const AVCodecContext*>& streams) {
  std::error_code ec;
  if (!fs::create_directory(dir_, ec)) {
    return make_error(errc::io_error,
                      fmt::format("create {}: {}", dir_.string(),
                                  ec ? ec.message() : std::string("it exists already")));
  }
  created_ = true;
  if (avformat_alloc_output_context2(&out_, nullptr, "mpegts", nullptr) < 0) {
    return make_error(errc::internal, "FFmpeg lacks the mpegts muxer");
  }
  for (const AVCodecContext* c : streams) {
    AVStream* s = avformat_new_stream(out_, nullptr);
    if (s == nullptr) {
      throw std::bad_alloc();
    }
    if (avcodec_parameters_from_context(s->codecpar, c) < 0) {
      throw std::bad_alloc();
    }
    s->time_base = c->time_base;
  }
  out_->max_delay = ts_max_delay_us;
  // One muxer for the whole rendition: its timestamps must not be shifted at its first packet.
  out_->avoid_negative_ts = AVFMT_AVOID_NEG_TS_DISABLED;
  if (auto st = open_segment(); !st) {
    return st;
  }
  auto* buf = static_cast<uint8_t*>(av_malloc(io_buffer_size));
  if (buf == nullptr) {
    throw std::bad_alloc();
  }
  pb_ =
      avio_alloc_context(buf, io_buffer_size, 1, &sink_, nullptr, &segment_sink::write_cb, nullptr);
  if (pb_ == nullptr) {
    av_free(buf);
    throw std::bad_alloc();
  }
  out_->pb = pb_;
  if (int r = avformat_write_header(out_, nullptr); r < 0) {
    return write_error(r);
  }
  return {};
}

error ts_folder::write_error(int averr) const {
  if (sink_.failure) {
    return *sink_.failure;
  }
  return make_error(errc::internal,
                    fmt::format("{}: the muxer failed: {}", dir_.string(), av_text(averr)));
}

status ts_folder::write(AVPacket* pkt, int index, AVRational tb) {
  pkt->stream_index = index;
  av_packet_rescale_ts(pkt, tb, out_->streams[index]->time_base);
  pkt->pos = -1;
  int r = av_write_frame(out_, pkt);
  av_packet_unref(pkt);
  if (r < 0) {
    return write_error(r);
  }
  wrote_ = true;
  return {};
}

status ts_folder::open_segment() {
  auto seg =
      std::make_unique<segment_writer>(dir_, static_cast<uint32_t>(segments_.size()), o_.durable);
  if (auto st = seg->open(); !st) {
    return st;
  }
  sink_.current = std::move(seg);
  wrote_ = false;
  return {};
}

// Flushes what the muxer buffers (audio, the I/O buffer; after the trailer only the latter) into
// the current segment and commits it.
status ts_folder::commit(double duration, bool trailer_written) {
  if (int r = trailer_written ? 0 : av_write_frame(out_, nullptr); r < 0) {
    return write_error(r);
  }
  avio_flush(pb_);
  if (sink_.failure) {
    return *sink_.failure;
  }
  auto seg = sink_.current->commit(duration);
  if (!seg) {
    return seg.err();
  }
  written_.push_back(sink_.current->final_path());
  sink_.current.reset();
  sink_.committed_bytes += seg->size;
  segments_.push_back(std::move(*seg));
  return {};
}

status ts_folder::cut(double duration) {
  if (segments_.size() + 1 >= segment_index::max) {
    return make_error(errc::too_large,
                      fmt::format("{}: more than {} segments", o_.input, segment_index::max));
  }
  if (auto st = commit(duration, false); !st) {
    return st;
  }
  if (auto st = open_segment(); !st) {
    return st;
  }
  // The next segment opens with PAT and PMT, so that it plays on its own.
  av_opt_set(out_->priv_data, "mpegts_flags", "+resend_headers", 0);
  return {};
}

status write_playlist(const package_options& o, const fs::path& dir,
                      const std::vector<packaged_segment>& segments) {
  std::string text = vod_playlist_text(segments);
  auto path = dir / "index.m3u8";
  // As the packager's playlist: durable (its folder fsync also covers the segments' renames), or
  // at least never a torn file under its final name.
  if (o.durable) {
    return write_file_durably(path, text);
  }
  auto tmp = dir / ".index.m3u8.tmp";
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out || std::rename(tmp.c_str(), path.c_str()) != 0) {
    auto e = sys_error("write", path);
    std::remove(tmp.c_str());
    return e;
  }
  return {};
}

status ts_folder::finish(double duration) {
  if (int r = av_write_trailer(out_); r < 0) {
    return write_error(r);
  }
  if (auto st = commit(duration, true); !st) {
    return st;
  }
  if (auto st = write_playlist(o_, dir_, segments_); !st) {
    return st;
  }
  auto path = dir_ / "index.m3u8";
  written_.push_back(path);
  return {};
}

}  // namespace vodgrid::content
