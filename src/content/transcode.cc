// The transcoder's run (transcode_run.h): the options and streams checked, the output folder, the
// read loop that feeds the video and audio decoders, and the end (encoders drained, every folder
// finished, the renditions described). The video's path is transcode_video.cc's, the audio's
// transcode_audio.cc's.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>

#include "content/transcode_run.h"

namespace vodgrid::content {

namespace {

// ISO 639-2 codes (terminology and bibliographic) with a two-letter ISO 639-1 code, sorted.
constexpr std::pair<std::string_view, std::string_view> two_letter_codes[] = {
#include "languages.inc"
};

}  // namespace

// The stream's language as an RFC 5646 tag ("fr" for "fra" or "fre"), as HLS's LANGUAGE requires
// and as the rendition's name part; empty when it states none (or "und").
std::string language_of(const AVStream* s) {
  std::string lang = stream_tag(s, "language");
  std::transform(lang.begin(), lang.end(), lang.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  bool letters = lang.size() >= 2 && lang.size() <= 8 &&
                 std::all_of(lang.begin(), lang.end(), [](char c) { return c >= 'a' && c <= 'z'; });
  if (!letters || lang == "und") {
    return "";
  }
  auto it = std::lower_bound(std::begin(two_letter_codes), std::end(two_letter_codes), lang,
                             [](const auto& e, const std::string& k) { return e.first < k; });
  return it != std::end(two_letter_codes) && it->first == lang ? std::string(it->second) : lang;
}

std::string stream_tag(const AVStream* s, const char* key) {
  const AVDictionaryEntry* e = av_dict_get(s->metadata, key, nullptr, 0);
  return e != nullptr && e->value != nullptr ? e->value : "";
}

// A player's label for a track of `lang` with no title of its own.
std::string language_name(const std::string& lang) {
  static const std::pair<std::string_view, std::string_view> names[] = {
      {"eng", "English"},   {"en", "English"},   {"fra", "Français"},   {"fre", "Français"},
      {"fr", "Français"},   {"deu", "Deutsch"},  {"ger", "Deutsch"},    {"de", "Deutsch"},
      {"spa", "Español"},   {"es", "Español"},   {"ita", "Italiano"},   {"it", "Italiano"},
      {"por", "Português"}, {"pt", "Português"}, {"nld", "Nederlands"}, {"dut", "Nederlands"}};
  for (auto& [code, name] : names) {
    if (code == lang) {
      return std::string(name);
    }
  }
  return lang;
}

std::string describe_stream(const AVStream* s) {
  std::string lang = language_of(s);
  return fmt::format("stream {} ({} {}{}{})", s->index,
                     av_get_media_type_string(s->codecpar->codec_type) != nullptr
                         ? av_get_media_type_string(s->codecpar->codec_type)
                         : "unknown",
                     avcodec_get_name(s->codecpar->codec_id), lang.empty() ? "" : ", ", lang);
}

namespace {

constexpr std::string_view x264_presets[] = {"ultrafast", "superfast", "veryfast", "faster",
                                             "fast",      "medium",    "slow",     "slower",
                                             "veryslow",  "placebo"};

status check_ladder_options(const ladder_options& l) {
  if (std::find(std::begin(x264_presets), std::end(x264_presets), l.preset) ==
      std::end(x264_presets)) {
    return make_error(errc::invalid_argument,
                      fmt::format("x264 preset '{}' is not one of ultrafast … placebo", l.preset));
  }
  if (l.crf < 0 || l.crf > 51) {
    return make_error(errc::invalid_argument,
                      fmt::format("crf must be between 0 and 51, not {}", l.crf));
  }
  if (l.audio_bitrate < 32'000 || l.audio_bitrate > 512'000) {
    return make_error(errc::invalid_argument,
                      fmt::format("audio_bitrate must be between 32000 and 512000 bits/s, not {}",
                                  l.audio_bitrate));
  }
  for (auto& r : l.rungs) {
    if (r.height < 2 || r.height % 2 != 0 || r.max_bitrate == 0 || r.name.empty()) {
      return make_error(errc::invalid_argument,
                        fmt::format("rung '{}': an even height and a bitrate are needed", r.name));
    }
  }
  return {};
}

}  // namespace

transcoder::~transcoder() {
  // The folders remove what they wrote unless kept; then the output folder, if made here.
  videos_.clear();
  audios_.clear();
  subtitles_.clear();
  vgraph_.reset();
  vdec_.reset();
  if (!done_ && created_dir_) {
    std::error_code ec;
    fs::remove_all(o_.out_dir, ec);
  }
  t_capture = saved_capture_;
}

status transcoder::cancelled() const {
  if (l_.cancelled && l_.cancelled()) {
    return make_error(errc::conflict, "the packaging was cancelled");
  }
  return {};
}

status transcoder::select_streams() {
  vin_ = av_find_best_stream(in_.fmt, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (vin_ < 0) {
    return bad_input("no video stream");
  }
  const AVStream* vs = in_.fmt->streams[vin_];
  AVCodecID vcodec = vs->codecpar->codec_id;
  if (vcodec != AV_CODEC_ID_H264 && vcodec != AV_CODEC_ID_HEVC &&
      vcodec != AV_CODEC_ID_MPEG2VIDEO) {
    return bad_input(fmt::format("video codec {} is not supported: H.264, H.265 or MPEG-2 only",
                                 avcodec_get_name(vcodec)));
  }
  int height = vs->codecpar->height;
  if (height <= 0 || vs->codecpar->width <= 0) {
    return bad_input("the video states no picture size");
  }
  std::vector<ladder_rung> rungs = l_.rungs.empty() ? default_ladder(height) : l_.rungs;
  for (auto& r : rungs) {
    if (r.height > height) {
      return bad_input(
          fmt::format("the rendition {} is above the source's {} lines: a ladder never upscales",
                      r.name, height));
    }
  }
  for (auto& r : rungs) {
    video_out v;
    v.rung = r;
    videos_.push_back(std::move(v));
  }

  // Audio: every track a decoder reads, the default one first (the first marked default, else the
  // first); the rest of the streams are named in `dropped`.
  int main_index = -1;
  for (unsigned i = 0; i < in_.fmt->nb_streams; ++i) {
    const AVStream* s = in_.fmt->streams[i];
    if (s->codecpar->codec_type != AVMEDIA_TYPE_AUDIO) {
      continue;
    }
    if (avcodec_find_decoder(s->codecpar->codec_id) == nullptr ||
        s->codecpar->ch_layout.nb_channels == 0 || s->codecpar->sample_rate <= 0) {
      continue;
    }
    if (main_index < 0 ||
        ((s->disposition & AV_DISPOSITION_DEFAULT) != 0 &&
         (in_.fmt->streams[main_index]->disposition & AV_DISPOSITION_DEFAULT) == 0)) {
      main_index = static_cast<int>(i);
    }
  }
  std::vector<int> order;
  if (main_index >= 0) {
    order.push_back(main_index);
  }
  for (unsigned i = 0; i < in_.fmt->nb_streams; ++i) {
    const AVStream* s = in_.fmt->streams[i];
    auto type = s->codecpar->codec_type;
    if (static_cast<int>(i) == vin_ || static_cast<int>(i) == main_index) {
      continue;
    }
    if (type == AVMEDIA_TYPE_AUDIO) {
      if (avcodec_find_decoder(s->codecpar->codec_id) == nullptr) {
        dropped_.push_back(describe_stream(s) + ": no decoder for this audio codec");
      } else if (s->codecpar->ch_layout.nb_channels == 0 || s->codecpar->sample_rate <= 0) {
        dropped_.push_back(describe_stream(s) + ": no channels or sample rate stated");
      } else {
        order.push_back(static_cast<int>(i));
      }
    } else if (type == AVMEDIA_TYPE_VIDEO) {
      dropped_.push_back(describe_stream(s) + ((s->disposition & AV_DISPOSITION_ATTACHED_PIC) != 0
                                                   ? ": a cover picture, not a program's video"
                                                   : ": one video track is transcoded, the best"));
    } else if (type == AVMEDIA_TYPE_SUBTITLE) {
      continue;  // select_subtitles
    } else {
      dropped_.push_back(describe_stream(s) + ": neither audio nor video");
    }
  }
  for (size_t n = 0; n < order.size(); ++n) {
    const AVStream* s = in_.fmt->streams[order[n]];
    auto a = std::make_unique<audio_out>();
    a->stream = order[n];
    a->is_default = n == 0;
    a->language = language_of(s);
    std::string name = "audio-" + a->language;
    bool taken = a->language.empty() || std::any_of(audios_.begin(), audios_.end(),
                                                    [&](auto& o) { return o->name == name; });
    a->name = taken ? fmt::format("audio-{}", n + 1) : name;
    a->title = stream_tag(s, "title");
    if (a->title.empty()) {
      a->title = a->language.empty() ? fmt::format("Audio {}", n + 1) : language_name(a->language);
    }
    audios_.push_back(std::move(a));
  }
  if (!audios_.empty()) {
    main_audio_ = audios_.front().get();
  }
  select_subtitles();
  return {};
}

status transcoder::prepare_out_dir() {
  return content::prepare_out_dir(o_.out_dir, created_dir_);
}

status transcoder::read_loop() {
  auto pkt = new_packet();
  for (;;) {
    if (auto st = cancelled(); !st) {
      return st;
    }
    capture_.last_error.clear();
    int r = av_read_frame(in_.fmt, pkt.get());
    if (r == AVERROR_EOF) {
      return {};
    }
    double at =
        decoded_end_ == AV_NOPTS_VALUE ? 0 : static_cast<double>(decoded_end_) * av_q2d(vtb_);
    if (r < 0) {
      if (in_.remote && r != AVERROR_INVALIDDATA) {
        return make_error(errc::unavailable,
                          fmt::format("{}: read failed at {:.2f} s: {}", o_.input, at, reason(r)));
      }
      return bad_input(fmt::format("truncated or damaged at {:.2f} s: {}", at, reason(r)));
    }
    auto audio = std::find_if(audios_.begin(), audios_.end(),
                              [&](auto& a) { return a->stream == pkt->stream_index; });
    auto subs = std::find_if(subtitles_.begin(), subtitles_.end(),
                             [&](auto& s) { return s->stream == pkt->stream_index; });
    bool wanted = pkt->stream_index == vin_ || audio != audios_.end();
    if (wanted && (pkt->flags & AV_PKT_FLAG_CORRUPT) != 0 && !in_.is_ts) {
      // MP4 and MKV state every frame's size: a short one means the file ends inside it.
      return bad_input(fmt::format("truncated or damaged at {:.2f} s: a frame is cut short", at));
    }
    status st;
    if (pkt->stream_index == vin_) {
      st = on_video_packet(pkt.get());
    } else if (audio != audios_.end()) {
      st = on_audio_packet(**audio, pkt.get());
    } else if (subs != subtitles_.end()) {
      st = on_subtitle_packet(**subs, pkt.get());
    }
    av_packet_unref(pkt.get());
    if (!st) {
      return st;
    }
  }
}

// As the packager's check: a demuxer may read a truncated MP4 or MKV to where it stops without an
// error; refuse video that ends well before the end the container states (a TS states none).
status transcoder::check_complete() const {
  const AVStream* vs = in_.fmt->streams[vin_];
  double stated = NAN;
  if (vs->duration != AV_NOPTS_VALUE && vs->duration > 0) {
    int64_t start = vs->start_time != AV_NOPTS_VALUE ? vs->start_time : 0;
    stated = static_cast<double>(start + vs->duration) * av_q2d(vtb_);
  } else if (in_.fmt->duration > 0 && !in_.is_ts) {
    int64_t start = in_.fmt->start_time != AV_NOPTS_VALUE ? in_.fmt->start_time : 0;
    stated = static_cast<double>(start + in_.fmt->duration) / AV_TIME_BASE;
  }
  double covered = static_cast<double>(decoded_end_) * av_q2d(vtb_);
  if (!in_.is_ts && !std::isnan(stated) &&
      stated - covered > std::max(truncation_slack, 0.01 * stated)) {
    return bad_input(fmt::format(
        "truncated or damaged: the video stops at {:.2f} s but the container says {:.2f} s",
        covered, stated));
  }
  return {};
}

status transcoder::program_size() const {
  uint64_t total = 0;
  for (auto& v : videos_) {
    total += v.folder ? v.folder->bytes() : 0;
  }
  for (auto& a : audios_) {
    total += a->folder ? a->folder->bytes() : 0;
  }
  for (auto& t : subtitles_) {
    total += t->bytes;
  }
  if (total > o_.max_bytes) {
    return make_error(errc::too_large,
                      fmt::format("the program would exceed {} bytes (max_bytes)", o_.max_bytes));
  }
  return {};
}

status transcoder::finish() {
  if (auto st = flush_video(); !st) {
    return st;
  }
  for (auto& a : audios_) {
    if (auto st = flush_audio(*a); !st) {
      return st;
    }
  }
  if (origin_ == AV_NOPTS_VALUE) {
    return bad_input("the video stream has no frames");
  }
  if (auto st = check_complete(); !st) {
    return st;
  }
  for (auto& v : videos_) {
    if (auto st = write_muxed_audio(v, INT64_MAX, etb_, true); !st) {
      return st;
    }
    if (v.next_cut != keys_.size()) {
      return make_error(errc::internal,
                        fmt::format("{}: rendition {} has {} segments where {} keyframes were "
                                    "forced",
                                    o_.input, v.rung.name, v.next_cut, keys_.size()));
    }
    if (auto st = v.folder->finish(seconds(v.end - v.seg_start)); !st) {
      return st;
    }
  }
  for (auto& a : audios_) {
    if (auto st = write_audio_only(*a, true); !st) {
      return st;
    }
    double d = a->seg_start == AV_NOPTS_VALUE
                   ? 0
                   : static_cast<double>(a->end - a->seg_start) * av_q2d(a->enc->time_base);
    if (auto st = a->folder->finish(d); !st) {
      return st;
    }
  }
  for (auto& t : subtitles_) {
    if (auto st = write_subtitles(*t); !st) {
      return st;
    }
  }
  return program_size();
}

ladder_result transcoder::result_of() {
  ladder_result res;
  res.dropped = dropped_;
  auto fill = [&](rendition_info& r, const ts_folder& f) {
    r.media.segments = f.segments();
    double peak = 0;
    for (auto& s : f.segments()) {
      r.media.duration += s.duration;
      if (s.duration > 0) {
        peak = std::max(peak, static_cast<double>(s.size) * 8 / s.duration);
      }
    }
    if (r.media.duration > 0) {
      r.media.bitrate =
          static_cast<uint64_t>(static_cast<double>(f.bytes()) * 8 / r.media.duration);
    }
    r.bandwidth = static_cast<uint64_t>(std::ceil(peak));
    r.average_bandwidth = r.media.bitrate;
    r.media.playlist = f.dir() / "index.m3u8";
  };
  std::string aac = main_audio_ != nullptr ? aac_codec_string(main_audio_->enc->profile) : "";
  for (auto& v : videos_) {
    rendition_info r;
    r.name = v.rung.name;
    r.kind = rendition_kind::video;
    fill(r, *v.folder);
    r.codecs = aac.empty() ? v.avc : v.avc + "," + aac;
    r.width = r.media.width = v.width;
    r.height = r.media.height = v.height;
    r.frame_rate = av_q2d(rate_);
    r.media.video_codec = "h264";
    r.media.audio_codec = aac.empty() ? "" : "aac";
    r.media.video_frames = v.frames;
    res.renditions.push_back(std::move(r));
  }
  for (auto& a : audios_) {
    rendition_info r;
    r.name = a->name;
    r.kind = rendition_kind::audio;
    fill(r, *a->folder);
    r.codecs = aac_codec_string(a->enc->profile);
    r.language = a->language;
    r.title = a->title;
    r.is_default = a->is_default;
    r.media.audio_codec = "aac";
    res.renditions.push_back(std::move(r));
  }
  for (auto& t : subtitles_) {
    rendition_info r;
    r.name = t->name;
    r.kind = rendition_kind::subtitles;
    r.media.segments = t->segments;
    r.media.duration = videos_.front().folder ? res.renditions.front().media.duration : 0;
    if (r.media.duration > 0) {
      r.media.bitrate = static_cast<uint64_t>(static_cast<double>(t->bytes) * 8 / r.media.duration);
    }
    double peak = 0;
    for (auto& s : t->segments) {
      if (s.duration > 0) {
        peak = std::max(peak, static_cast<double>(s.size) * 8 / s.duration);
      }
    }
    r.bandwidth = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(peak)));
    r.average_bandwidth = r.media.bitrate;
    r.media.playlist = t->dir / "index.m3u8";
    r.language = t->language;
    r.title = t->title;
    r.is_default = t->is_default;
    res.renditions.push_back(std::move(r));
  }
  return res;
}

result<ladder_result> transcoder::run() {
  if (auto st = check_package_options(o_); !st) {
    return st.err();
  }
  if (auto st = check_ladder_options(l_); !st) {
    return st.err();
  }
  if (auto st = open_media(o_, capture_, in_); !st) {
    return st.err();
  }
  for (auto step : {&transcoder::select_streams, &transcoder::prepare_out_dir,
                    &transcoder::open_audios, &transcoder::open_subtitles, &transcoder::open_video,
                    &transcoder::read_loop, &transcoder::finish}) {
    if (auto st = (this->*step)(); !st) {
      return st.err();
    }
  }
  auto res = result_of();
  for (auto& v : videos_) {
    v.folder->keep();
  }
  for (auto& a : audios_) {
    a->folder->keep();
  }
  for (auto& t : subtitles_) {
    t->kept = true;
  }
  done_ = true;
  packager_logger()->info(
      "transcoded {} into {}: {} renditions, {} segments each, {:.2f} s{}", o_.input,
      o_.out_dir.string(), res.renditions.size(), keys_.size(),
      res.renditions.front().media.duration,
      res.dropped.empty() ? "" : fmt::format(", {} tracks dropped", res.dropped.size()));
  return res;
}

}  // namespace vodgrid::content
