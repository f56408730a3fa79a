// The transcoder's subtitles (transcode_run.h): each text subtitle track of the source decoded to
// ASS events by its FFmpeg decoder, each event made WebVTT cue text by FFmpeg's webvtt encoder
// (which turns ASS styling into WebVTT's <i>, <b>, ...), and the cues written at the end as one
// WebVTT segment per video segment, with the same durations, so that segment n of every rendition
// covers the same seconds. Bitmap subtitles (DVB, PGS, DVD) are pictures and stay in `dropped`.
//
// The segments are written by hand rather than by libavformat's webvtt muxer: that muxer writes
// "WEBVTT" and the cues but no X-TIMESTAMP-MAP header, which a segment of an HLS program needs (it
// says which MPEG-TS timestamp the cue times count from), and it would need a muxer per segment for
// a few lines of text each.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <new>

#include "api/api.h"
#include "content/transcode_run.h"

namespace vodgrid::content {

namespace {

// Cues one track may hold (a film has one or two thousand), and the bytes of one cue's text.
constexpr size_t max_cues = 200'000;
constexpr size_t max_cue_bytes = 16 << 10;

// WebVTT cue text as the encoder gives it, made safe inside a cue: line ends as "\n", no blank
// line (it would end the cue) and no "-->" (it would start a timing line), nothing trailing.
std::string clean_cue_text(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '\r') {
      c = '\n';
      if (i + 1 < in.size() && in[i + 1] == '\n') {
        ++i;
      }
    }
    if (c == '\0' || (c == '\n' && (out.empty() || out.back() == '\n'))) {
      continue;
    }
    if (c == '>' && out.ends_with("--")) {
      out += "&gt;";
      continue;
    }
    out += c;
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ' || out.back() == '\t')) {
    out.pop_back();
  }
  return out;
}

// "hh:mm:ss.mmm", as WebVTT writes a cue's times.
std::string vtt_time(double seconds) {
  auto ms = static_cast<int64_t>(std::llround(std::max(0.0, seconds) * 1000));
  return fmt::format("{:02d}:{:02d}:{:02d}.{:03d}", ms / 3'600'000, ms / 60'000 % 60,
                     ms / 1000 % 60, ms % 1000);
}

struct subtitle_free {
  void operator()(AVSubtitle* s) const { avsubtitle_free(s); }
};

}  // namespace

subtitle_out::~subtitle_out() {
  if (kept) {
    return;
  }
  std::error_code ec;
  for (auto& p : written) {
    fs::remove(p, ec);
  }
  if (created) {
    fs::remove(dir, ec);
  }
}

// Every text subtitle track becomes a rendition "subs-{language}" ("subs-{n}" without one or for
// a repeated one); the first marked default is the default. The others are named in `dropped`.
void transcoder::select_subtitles() {
  for (unsigned i = 0; i < in_.fmt->nb_streams; ++i) {
    const AVStream* s = in_.fmt->streams[i];
    if (s->codecpar->codec_type != AVMEDIA_TYPE_SUBTITLE) {
      continue;
    }
    const AVCodecDescriptor* d = avcodec_descriptor_get(s->codecpar->codec_id);
    int props = d != nullptr ? d->props : 0;
    if ((props & AV_CODEC_PROP_BITMAP_SUB) != 0) {
      dropped_.push_back(describe_stream(s) +
                         ": bitmap subtitles are pictures and cannot become WebVTT text");
      continue;
    }
    if ((props & AV_CODEC_PROP_TEXT_SUB) == 0 ||
        avcodec_find_decoder(s->codecpar->codec_id) == nullptr) {
      dropped_.push_back(describe_stream(s) + ": no decoder for this subtitle format");
      continue;
    }
    if (videos_.size() + audios_.size() + subtitles_.size() >= api::max_renditions) {
      dropped_.push_back(describe_stream(s) +
                         fmt::format(": a program has at most {} renditions", api::max_renditions));
      continue;
    }
    auto t = std::make_unique<subtitle_out>();
    t->stream = static_cast<int>(i);
    t->language = language_of(s);
    size_t n = subtitles_.size() + 1;
    std::string name = "subs-" + t->language;
    bool taken = t->language.empty() || std::any_of(subtitles_.begin(), subtitles_.end(),
                                                    [&](auto& o) { return o->name == name; });
    t->name = taken ? fmt::format("subs-{}", n) : name;
    t->title = stream_tag(s, "title");
    if (t->title.empty()) {
      t->title = t->language.empty() ? fmt::format("Subtitles {}", n) : language_name(t->language);
    }
    t->is_default =
        (s->disposition & AV_DISPOSITION_DEFAULT) != 0 &&
        std::none_of(subtitles_.begin(), subtitles_.end(), [](auto& o) { return o->is_default; });
    subtitles_.push_back(std::move(t));
  }
}

// The decoder and the webvtt encoder of each track. A track whose decoder or encoder refuses it is
// named in `dropped` rather than failing the program: its video and audio are still good.
status transcoder::open_subtitles() {
  const AVCodec* webvtt = avcodec_find_encoder(AV_CODEC_ID_WEBVTT);
  for (auto it = subtitles_.begin(); it != subtitles_.end();) {
    subtitle_out& t = **it;
    const AVStream* s = in_.fmt->streams[t.stream];
    const AVCodec* codec = avcodec_find_decoder(s->codecpar->codec_id);
    t.dec.reset(avcodec_alloc_context3(codec));
    if (!t.dec) {
      throw std::bad_alloc();
    }
    avcodec_parameters_to_context(t.dec.get(), s->codecpar);
    t.dec->pkt_timebase = s->time_base;
    capture_.last_error.clear();
    std::string why;
    if (int r = avcodec_open2(t.dec.get(), codec, nullptr); r < 0) {
      why = fmt::format("its {} decoder refused it: {}", codec->name, reason(r));
    } else if (webvtt == nullptr) {
      why = "this FFmpeg has no webvtt encoder";
    } else {
      t.enc.reset(avcodec_alloc_context3(webvtt));
      if (!t.enc) {
        throw std::bad_alloc();
      }
      t.enc->time_base = AVRational{1, 1000};
      // The encoder reads the styles of the ASS events from the decoder's ASS header.
      if (t.dec->subtitle_header != nullptr && t.dec->subtitle_header_size > 0) {
        auto size = static_cast<size_t>(t.dec->subtitle_header_size);
        t.enc->subtitle_header = static_cast<uint8_t*>(av_mallocz(size + 1));
        if (t.enc->subtitle_header == nullptr) {
          throw std::bad_alloc();
        }
        std::copy_n(t.dec->subtitle_header, size, t.enc->subtitle_header);
        t.enc->subtitle_header_size = t.dec->subtitle_header_size;
      }
      capture_.last_error.clear();
      if (int r = avcodec_open2(t.enc.get(), webvtt, nullptr); r < 0) {
        why = fmt::format("the webvtt encoder refused its styles: {}", reason(r));
      }
    }
    if (!why.empty()) {
      dropped_.push_back(describe_stream(s) + ": " + why);
      it = subtitles_.erase(it);
    } else {
      ++it;
    }
  }
  return {};
}

// A subtitle packet: decoded, its text made WebVTT, kept as a cue in the source's seconds. A
// packet its decoder cannot read is skipped (as ffmpeg does), not the whole program refused.
status transcoder::on_subtitle_packet(subtitle_out& t, AVPacket* pkt) {
  int64_t pts = pkt->pts != AV_NOPTS_VALUE ? pkt->pts : pkt->dts;
  if (pts == AV_NOPTS_VALUE) {
    return {};
  }
  AVSubtitle sub{};
  int got = 0;
  capture_.last_error.clear();
  if (avcodec_decode_subtitle2(t.dec.get(), &sub, &got, pkt) < 0 || got == 0) {
    return {};
  }
  std::unique_ptr<AVSubtitle, subtitle_free> owned(&sub);
  AVRational tb = in_.fmt->streams[t.stream]->time_base;
  double at = static_cast<double>(pts) * av_q2d(tb);
  double start = at + sub.start_display_time / 1000.0;
  if (!t.cues.empty() && std::isnan(t.cues.back().end)) {
    t.cues.back().end = start;  // a cue the source gave no end: this one ends it
  }
  if (sub.num_rects == 0) {
    return {};
  }
  std::string text(max_cue_bytes, '\0');
  int n = avcodec_encode_subtitle(t.enc.get(), reinterpret_cast<uint8_t*>(text.data()),
                                  static_cast<int>(text.size()), &sub);
  if (n <= 0) {
    return {};  // no text (a clearing event) or none the encoder could write
  }
  text.resize(static_cast<size_t>(n));
  text = clean_cue_text(text);
  if (text.empty()) {
    return {};
  }
  if (t.cues.size() >= max_cues) {
    return bad_input(fmt::format("subtitle stream {} has more than {} cues", t.stream, max_cues));
  }
  double end = NAN;
  if (pkt->duration > 0) {
    end = at + static_cast<double>(pkt->duration) * av_q2d(tb);
  } else if (sub.end_display_time > sub.start_display_time && sub.end_display_time != UINT32_MAX) {
    end = at + sub.end_display_time / 1000.0;
  }
  t.cues.push_back({start, end, std::move(text)});
  return {};
}

int64_t transcoder::program_start_mpegts() const {
  int64_t pts = av_rescale_q(origin_, etb_, AVRational{1, 90'000}) +
                2 * av_rescale(ts_max_delay_us, 90'000, AV_TIME_BASE);
  return pts & ((int64_t{1} << 33) - 1);  // PES timestamps have 33 bits
}

// The track's folder: segment n of the video's durations holding every cue that overlaps it (a
// cue across a cut is in both: players drop the repeat), its times in seconds of the program,
// which X-TIMESTAMP-MAP ties to the MPEG-TS timestamp of the program's first video frame.
status transcoder::write_subtitles(subtitle_out& t) {
  t.dir = o_.out_dir / t.name;
  std::error_code ec;
  if (!fs::create_directory(t.dir, ec)) {
    return make_error(errc::io_error,
                      fmt::format("create {}: {}", t.dir.string(),
                                  ec ? ec.message() : std::string("it exists already")));
  }
  t.created = true;
  const auto& video = videos_.front().folder->segments();
  double program = 0;
  for (auto& s : video) {
    program += s.duration;
  }
  double origin = seconds(origin_);
  std::vector<subtitle_cue> cues;
  for (auto& c : t.cues) {
    double start = std::max(0.0, c.start - origin);
    double end = std::isnan(c.end) ? program : c.end - origin;
    if (end > start && start < program) {
      cues.push_back({start, end, c.text});
    }
  }
  std::stable_sort(cues.begin(), cues.end(),
                   [](const subtitle_cue& a, const subtitle_cue& b) { return a.start < b.start; });
  std::string header =
      fmt::format("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:{},LOCAL:00:00:00.000\n", program_start_mpegts());
  double from = 0;
  for (size_t n = 0; n < video.size(); ++n) {
    bool last = n + 1 == video.size();
    double to = from + video[n].duration;
    std::string text = header;
    for (auto& c : cues) {
      if (c.start >= to && !last) {
        break;
      }
      if (c.end > from) {
        text += fmt::format("\n{} --> {}\n{}\n", vtt_time(c.start), vtt_time(c.end), c.text);
      }
    }
    if (text.size() > o_.max_segment_bytes) {
      return make_error(errc::too_large,
                        fmt::format("{}: a subtitles segment of {} bytes", o_.input, text.size()));
    }
    segment_writer w(t.dir, static_cast<uint32_t>(n), o_.durable, ".vtt");
    if (auto st = w.open(); !st) {
      return st;
    }
    if (auto st = w.write(reinterpret_cast<const uint8_t*>(text.data()), text.size()); !st) {
      return st;
    }
    auto seg = w.commit(video[n].duration);
    if (!seg) {
      return seg.err();
    }
    t.written.push_back(w.final_path());
    t.bytes += seg->size;
    t.segments.push_back(std::move(*seg));
    from = to;
  }
  if (auto st = write_playlist(o_, t.dir, t.segments); !st) {
    return st;
  }
  t.written.push_back(t.dir / "index.m3u8");
  return {};
}

}  // namespace vodgrid::content
