// package_ladder (transcode.h): the transcoder's run, or with `remux` today's packager into one
// rendition named "source", described from the source (codec strings, frame rate) and with the
// streams the remux leaves out named in `dropped`.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "content/transcode_run.h"

namespace vodgrid::content {

namespace {

// What the remux takes (packager.cc's choice: the best video and the audio related to it) and
// what it leaves, from the source's own streams.
void describe_source(const package_options& o, rendition_info& r,
                     std::vector<std::string>& dropped) {
  av_capture capture;
  av_capture* saved = t_capture;
  t_capture = &capture;
  media_input in;
  if (open_media(o, capture, in)) {
    int vin = av_find_best_stream(in.fmt, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
    int ain = vin >= 0 ? av_find_best_stream(in.fmt, AVMEDIA_TYPE_AUDIO, -1, vin, nullptr, 0) : -1;
    std::string video, audio;
    for (unsigned i = 0; i < in.fmt->nb_streams; ++i) {
      const AVStream* s = in.fmt->streams[i];
      const AVCodecParameters* par = s->codecpar;
      if (static_cast<int>(i) == vin) {
        video = par->codec_id == AV_CODEC_ID_H264
                    ? avc_codec_string(par->extradata, par->extradata_size)
                    : hevc_codec_string(par->profile, par->level);
        AVRational rate = av_guess_frame_rate(in.fmt, const_cast<AVStream*>(s), nullptr);
        r.frame_rate = rate.num > 0 && rate.den > 0 ? av_q2d(rate) : 0;
      } else if (static_cast<int>(i) == ain) {
        audio = aac_codec_string(par->profile);
      } else {
        const char* type = av_get_media_type_string(par->codec_type);
        dropped.push_back(
            fmt::format("stream {} ({} {}): the remux keeps one video and one audio "
                        "track",
                        i, type != nullptr ? type : "unknown", avcodec_get_name(par->codec_id)));
      }
    }
    r.codecs = video.empty() || audio.empty() ? video + audio : video + "," + audio;
  }
  t_capture = saved;
}

result<ladder_result> remux_ladder(const package_options& o) {
  if (auto st = check_package_options(o); !st) {
    return st.err();
  }
  std::error_code ec;
  bool created = false;
  if (fs::exists(o.out_dir, ec)) {
    if (!fs::is_directory(o.out_dir, ec)) {
      return make_error(errc::invalid_argument,
                        fmt::format("{} is not a folder", o.out_dir.string()));
    }
    if (!fs::is_empty(o.out_dir, ec)) {
      return make_error(errc::conflict, fmt::format("{} is not empty", o.out_dir.string()));
    }
  } else {
    created = fs::create_directories(o.out_dir, ec);
  }
  package_options po = o;
  po.out_dir = o.out_dir / "source";
  auto packaged = package(po);
  if (!packaged) {
    if (created) {
      fs::remove_all(o.out_dir, ec);
    }
    return packaged.err();
  }
  ladder_result res;
  rendition_info r;
  r.name = "source";
  r.kind = rendition_kind::video;
  r.width = packaged->width;
  r.height = packaged->height;
  double peak = 0;
  for (auto& s : packaged->segments) {
    if (s.duration > 0) {
      peak = std::max(peak, static_cast<double>(s.size) * 8 / s.duration);
    }
  }
  r.bandwidth = static_cast<uint64_t>(std::ceil(peak));
  r.average_bandwidth = packaged->bitrate;
  describe_source(o, r, res.dropped);
  r.media = std::move(*packaged);
  res.renditions.push_back(std::move(r));
  return res;
}

}  // namespace

result<ladder_result> package_ladder(const package_options& opts, const ladder_options& l) {
  init_ffmpeg();
  if (l.remux) {
    return remux_ladder(opts);
  }
  transcoder t(opts, l);
  return t.run();
}

}  // namespace vodgrid::content
