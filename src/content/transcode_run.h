// One transcoding run (package_ladder in transcode.h), shared by the files that implement it:
// transcode.cc the run (streams, the read loop, the end), transcode_video.cc the video graph and
// the x264 encoders, transcode_audio.cc the audio tracks, ts_folder.cc each rendition's folder,
// transcode_subtitles.cc the subtitle tracks (WebVTT), ladder_plan.cc the rungs and the RFC 6381
// codec strings. Private to src/content.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "content/ffmpeg.h"
#include "content/packager_run.h"
#include "content/segment_writer.h"
#include "content/transcode.h"

extern "C" {
#include <libavfilter/avfilter.h>
#include <libavformat/avformat.h>
}

namespace vodgrid::content {

// RFC 6381 codec strings. "avc1.PPCCLL" from the first H.264 sequence parameter set in an Annex B
// access unit (or avcC extradata); empty when there is none.
std::string avc_codec_string(const uint8_t* p, int n);
// "hvc1.P.C.TL.B0" from FFmpeg's profile and level of an H.265 stream (general tier and the
// compatibility flag of the profile alone: what a player needs to pick the decoder).
std::string hevc_codec_string(int profile, int level);
// "mp4a.40.2" for AAC-LC, ".5" HE-AAC, ".29" HE-AAC v2 (FFmpeg's AAC profiles).
std::string aac_codec_string(int profile);

// A stream's metadata tag ("title"), or empty.
std::string stream_tag(const AVStream* s, const char* key);
// The stream's language as an RFC 5646 tag and name part ("fr" for "fra"), or empty when it states
// none (or "und").
std::string language_of(const AVStream* s);
// A player's label for a track of `lang` with no title of its own ("Français"), else `lang`.
std::string language_name(const std::string& lang);
// "stream 3 (subtitle hdmv_pgs_subtitle, eng)": how `dropped` names a track.
std::string describe_stream(const AVStream* s);

// µs of PCR lead over DTS in every rendition's MPEG-TS muxer, as the ffmpeg command line sets it.
// The muxer also adds twice that to every timestamp (FFmpeg's mpegtsenc; ffmpeg's TS start at
// 1.4 s), which the WebVTT segments' X-TIMESTAMP-MAP must follow: transcode_test checks it.
inline constexpr int64_t ts_max_delay_us = 700'000;

// Writes dir/index.m3u8 for `segments` (vod_playlist_text): durably when o.durable, else at least
// never torn under its final name.
status write_playlist(const package_options& o, const fs::path& dir,
                      const std::vector<packaged_segment>& segments);

// Owning wrappers of FFmpeg's contexts.
struct codec_free {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
using codec_ptr = std::unique_ptr<AVCodecContext, codec_free>;
struct graph_free {
  void operator()(AVFilterGraph* g) const { avfilter_graph_free(&g); }
};
using graph_ptr = std::unique_ptr<AVFilterGraph, graph_free>;
struct frame_free {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
using frame_ptr = std::unique_ptr<AVFrame, frame_free>;
frame_ptr new_frame();  // throws std::bad_alloc

// One rendition's folder: what package() writes (segment files written to temporary names,
// hashed, fsynced when durable, renamed; the playlist last), from one MPEG-TS muxer whose output
// moves to the next file at each cut, so timestamps and continuity counters run on. Everything it
// wrote, and the folder, is removed on destruction unless keep() was called.
class ts_folder {
 public:
  ts_folder(const package_options& o, fs::path dir) : o_(o), dir_(std::move(dir)) {
    sink_.max_segment = o.max_segment_bytes;
    sink_.max_total = o.max_bytes;
  }
  ts_folder(const ts_folder&) = delete;
  ts_folder& operator=(const ts_folder&) = delete;
  ~ts_folder();

  // Creates the folder and a muxer of the encoders' streams (in that order); opens segment 0.
  status open(const std::vector<const AVCodecContext*>& streams);
  // Writes a packet of stream `index`, its timestamps in `tb`. Consumes the packet's data.
  status write(AVPacket* pkt, int index, AVRational tb);
  // Ends the current segment, `duration` seconds long, and opens the next.
  status cut(double duration);
  // Ends the last segment and writes the playlist.
  status finish(double duration);
  void keep() { kept_ = true; }

  const fs::path& dir() const { return dir_; }
  const std::vector<packaged_segment>& segments() const { return segments_; }
  uint64_t bytes() const { return sink_.committed_bytes; }
  bool empty_segment() const { return sink_.current && sink_.current->size() == 0 && !wrote_; }

 private:
  status open_segment();
  status commit(double duration, bool trailer_written);
  error write_error(int averr) const;

  const package_options& o_;
  fs::path dir_;
  AVFormatContext* out_ = nullptr;
  AVIOContext* pb_ = nullptr;
  segment_sink sink_;
  std::vector<fs::path> written_;
  std::vector<packaged_segment> segments_;
  bool created_ = false;
  bool kept_ = false;
  bool wrote_ = false;  // a packet went into the current segment
};

// A video rung being encoded.
struct video_out {
  ladder_rung rung;
  int width = 0;
  int height = 0;
  AVFilterContext* sink = nullptr;  // owned by the graph
  codec_ptr enc;
  std::unique_ptr<ts_folder> folder;
  size_t next_cut = 1;    // index into transcoder::keys_ of the next segment's start
  int64_t seg_start = 0;  // pts (encoder time base) of the current segment's keyframe
  int64_t end = 0;        // pts of the end of the last frame written
  int64_t last_pts = AV_NOPTS_VALUE;
  int64_t frames = 0;
  std::string avc;               // "avc1.PPCCLL", from the first keyframe
  std::deque<packet_ptr> audio;  // the default audio's packets, written once the video passes them
};

// An audio track being encoded to AAC (every track: an audio-only rendition; the default one also
// into every video rendition).
struct audio_out {
  int stream = -1;
  std::string name, language, title;
  bool is_default = false;
  codec_ptr dec;
  graph_ptr graph;
  AVFilterContext* src = nullptr;
  AVFilterContext* sink = nullptr;
  codec_ptr enc;
  std::unique_ptr<ts_folder> folder;
  std::deque<packet_ptr> pending;  // encoded, waiting for the video's cut decisions to pass them
  size_t next_cut = 1;
  int64_t seg_start = AV_NOPTS_VALUE;  // encoder time base
  int64_t end = 0;
  int64_t next_pts = AV_NOPTS_VALUE;  // the resampled frames' running pts
};

// One cue of a subtitle track: its times in seconds of the source's clock (the program's are known
// once the first video frame is), its text as WebVTT cue text (FFmpeg's webvtt encoder's).
struct subtitle_cue {
  double start = 0;
  double end = 0;  // NAN: the source stated no end; the next cue's start ends it
  std::string text;
};

// A text subtitle track (mov_text, subrip, ass, webvtt, ...) made a WebVTT rendition "subs-{lang}":
// its cues are decoded as they are read and kept (a film's are some hundred kilobytes), then
// written at the end, one WebVTT segment per video segment with the same durations. The folder and
// everything in it are removed on destruction unless kept.
struct subtitle_out {
  int stream = -1;
  std::string name, language, title;
  bool is_default = false;
  codec_ptr dec;  // the source's codec, to ASS events
  codec_ptr enc;  // FFmpeg's webvtt encoder: ASS events to WebVTT cue text
  std::vector<subtitle_cue> cues;
  fs::path dir;
  std::vector<packaged_segment> segments;
  uint64_t bytes = 0;
  std::vector<fs::path> written;
  bool created = false;
  bool kept = false;

  subtitle_out() = default;
  subtitle_out(const subtitle_out&) = delete;
  subtitle_out& operator=(const subtitle_out&) = delete;
  ~subtitle_out();
};

// One transcoding run. Owns every FFmpeg object it makes and, until it succeeds, every file.
class transcoder {
 public:
  transcoder(const package_options& o, const ladder_options& l)
      : o_(o), l_(l), saved_capture_(t_capture) {
    t_capture = &capture_;
  }
  transcoder(const transcoder&) = delete;
  transcoder& operator=(const transcoder&) = delete;
  ~transcoder();

  result<ladder_result> run();

 private:
  // transcode.cc
  status select_streams();
  status prepare_out_dir();
  status read_loop();
  status finish();
  status check_complete() const;
  status cancelled() const;
  ladder_result result_of();
  // transcode_video.cc
  status open_video();
  status open_video_graph(const AVFrame* first);
  status open_encoder(video_out& v, const AVFrame* first);
  status on_video_packet(AVPacket* pkt);
  status receive_video_frames();
  status filter_video(AVFrame* frame);
  status encode_video(video_out& v, AVFrame* frame);
  status on_encoded(video_out& v, AVPacket* pkt);
  status flush_video();
  // transcode_audio.cc
  status open_audios();
  status open_audio(audio_out& a);
  status on_audio_packet(audio_out& a, AVPacket* pkt);
  status receive_audio_frames(audio_out& a);
  status open_audio_graph(audio_out& a, const AVFrame* first);
  status filter_audio(audio_out& a, AVFrame* frame);
  status encode_audio(audio_out& a, AVFrame* frame);
  status on_audio_encoded(audio_out& a, AVPacket* pkt);
  status write_audio_only(audio_out& a, bool all);
  // Writes the default audio queued for `v` up to `upto` (in `tb`): before it, or also at it.
  status write_muxed_audio(video_out& v, int64_t upto, AVRational tb, bool inclusive);
  status flush_audio(audio_out& a);
  // transcode_subtitles.cc
  void select_subtitles();
  status open_subtitles();
  status on_subtitle_packet(subtitle_out& s, AVPacket* pkt);
  status write_subtitles(subtitle_out& s);
  // The 90 kHz MPEG-TS timestamp of the program's start (its first video frame) in every
  // rendition's transport stream: the WebVTT segments' X-TIMESTAMP-MAP.
  int64_t program_start_mpegts() const;

  error bad_input(std::string what) const {
    return make_error(errc::invalid_argument, fmt::format("{}: {}", o_.input, what));
  }
  std::string reason(int averr) const {
    return capture_.last_error.empty() ? av_text(averr) : capture_.last_error;
  }
  double seconds(int64_t ticks) const { return static_cast<double>(ticks) * av_q2d(etb_); }
  status program_size() const;

  const package_options& o_;
  const ladder_options& l_;
  av_capture capture_;
  av_capture* saved_capture_;
  media_input in_;
  bool created_dir_ = false;
  bool done_ = false;
  std::vector<std::string> dropped_;

  // Video: one decoder, one graph (deinterlace, split, a scale per rung), an encoder per rung.
  int vin_ = -1;
  AVRational vtb_{1, 1};   // the input stream's time base
  AVRational etb_{1, 25};  // the encoders' time base: a frame's duration when the rate is known
  AVRational rate_{0, 1};
  codec_ptr vdec_;
  graph_ptr vgraph_;
  AVFilterContext* vsrc_ = nullptr;
  std::vector<video_out> videos_;
  int64_t keyint_ = 250;  // frames: x264's longest GOP, past every forced keyframe's distance
  int64_t origin_ = AV_NOPTS_VALUE;  // encoder pts of the first frame: the keyframe grid's origin
  int64_t target_ticks_ = 0;
  std::vector<int64_t> keys_;         // encoder pts of every forced keyframe: the segments' starts
  int64_t decided_ = AV_NOPTS_VALUE;  // encoder pts of the last frame whose keyframe is decided
  int64_t last_in_pts_ = AV_NOPTS_VALUE;
  int64_t decoded_end_ = AV_NOPTS_VALUE;  // input pts of the end of the last decoded frame

  std::vector<std::unique_ptr<audio_out>> audios_;  // the default first
  audio_out* main_audio_ = nullptr;
  std::vector<std::unique_ptr<subtitle_out>> subtitles_;
};

}  // namespace vodgrid::content
