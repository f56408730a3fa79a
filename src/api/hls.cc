#include "api/hls.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace vodgrid::api {

namespace {

bool starts_with(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

error bad_line(size_t line, std::string_view what) {
  return make_error(errc::invalid_argument, fmt::format("playlist line {}: {}", line, what));
}

}  // namespace

result<media_playlist> parse_media_playlist(std::string_view text) {
  media_playlist pl;
  size_t line_no = 0;
  bool first = true;
  bool pending = false;
  double pending_duration = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (first) {
      if (line.size() >= 3 && static_cast<unsigned char>(line[0]) == 0xEF) {
        line.remove_prefix(3);  // a UTF-8 byte order mark
      }
      if (line != "#EXTM3U") {
        return bad_line(line_no, "not an HLS playlist (no #EXTM3U)");
      }
      first = false;
      continue;
    }
    if (line.empty()) {
      continue;
    }
    if (line.find('\0') != std::string_view::npos) {
      return bad_line(line_no, "contains a NUL byte");
    }
    if (line[0] == '#') {
      if (starts_with(line, "#EXTINF:")) {
        std::string num(line.substr(8, line.find(',') - 8));
        char* end = nullptr;
        double d = std::strtod(num.c_str(), &end);
        if (num.empty() || end != num.c_str() + num.size() || !std::isfinite(d) || d <= 0 ||
            d > 3600) {
          return bad_line(line_no, "bad #EXTINF duration");
        }
        pending = true;
        pending_duration = d;
      } else if (starts_with(line, "#EXT-X-TARGETDURATION:")) {
        pl.target_duration = std::atof(std::string(line.substr(22)).c_str());
      } else if (starts_with(line, "#EXT-X-ENDLIST")) {
        pl.endlist = true;
      } else if (starts_with(line, "#EXT-X-STREAM-INF")) {
        return bad_line(line_no, "a master playlist: give the URL of one of its media playlists");
      } else if (starts_with(line, "#EXT-X-KEY:") &&
                 line.find("METHOD=NONE") == std::string_view::npos) {
        return bad_line(line_no, "encrypted segments are not supported");
      } else if (starts_with(line, "#EXT-X-BYTERANGE")) {
        return bad_line(line_no, "byte-range segments are not supported");
      } else if (starts_with(line, "#EXT-X-MAP")) {
        return bad_line(line_no, "fMP4 segments (#EXT-X-MAP) are not supported; MPEG-TS only");
      }
      continue;
    }
    if (!pending) {
      return bad_line(line_no, "a URI without #EXTINF");
    }
    if (pl.segments.size() >= segment_index::max) {
      return bad_line(line_no, "too many segments");
    }
    pl.segments.push_back({pending_duration, std::string(line)});
    pending = false;
  }
  if (first) {
    return make_error(errc::invalid_argument, "empty playlist");
  }
  if (pending) {
    return make_error(errc::invalid_argument, "playlist ends with an #EXTINF without its URI");
  }
  if (pl.segments.empty()) {
    return make_error(errc::invalid_argument, "playlist has no segments");
  }
  return pl;
}

std::string write_vod_playlist(const program_manifest& m, std::string_view query) {
  double target = 1;
  for (auto& s : m.segments) {
    target = std::max(target, std::ceil(s.duration));
  }
  std::string out = fmt::format(
      "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:{}\n"
      "#EXT-X-MEDIA-SEQUENCE:0\n",
      static_cast<int>(target));
  for (auto& s : m.segments) {
    out += fmt::format("#EXTINF:{:.6f},\nsegments/{}.ts{}\n", s.duration, s.index.v, query);
  }
  out += "#EXT-X-ENDLIST\n";
  return out;
}

result<std::string> write_iframe_playlist(const program_manifest& m, std::string_view query) {
  struct frame {
    const segment_entry* s;
    const key_frame* f;
    double at;  // seconds into the program
  };
  std::vector<frame> frames;
  double start = 0;
  for (auto& s : m.segments) {
    if (s.key_frames.empty()) {
      return make_error(errc::not_found,
                        fmt::format("program {} has no key frame index (segment {}): load it again "
                                    "for an I-frame playlist",
                                    m.id.str(), s.index.v));
    }
    for (auto& f : s.key_frames) {
      frames.push_back({&s, &f, start + std::min(f.seconds, s.duration)});
    }
    start += s.duration;
  }
  // Each frame lasts until the next one (the last, until the program's end).
  std::vector<double> lasts(frames.size());
  double target = 1;
  for (size_t i = 0; i < frames.size(); ++i) {
    double next = i + 1 < frames.size() ? frames[i + 1].at : start;
    lasts[i] = std::max(0.0, next - frames[i].at);
    target = std::max(target, std::ceil(lasts[i]));
  }
  // Version 5: EXT-X-MAP in an I-frame playlist.
  std::string out = fmt::format(
      "#EXTM3U\n#EXT-X-VERSION:5\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:{}\n"
      "#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-I-FRAMES-ONLY\n",
      static_cast<int>(target));
  // A quoted attribute cannot hold a '"' (no URI has one; a hostile query might).
  std::string quoted_query;
  for (char c : query) {
    quoted_query += c == '"' ? std::string("%22") : std::string(1, c);
  }
  const segment_entry* mapped = nullptr;
  for (size_t i = 0; i < frames.size(); ++i) {
    auto& [s, f, at] = frames[i];
    if (s != mapped && s->psi_bytes > 0) {
      out += fmt::format("#EXT-X-MAP:URI=\"segments/{}.ts{}\",BYTERANGE=\"{}@0\"\n", s->index.v,
                         quoted_query, s->psi_bytes);
      mapped = s;
    }
    out += fmt::format("#EXTINF:{:.6f},\n#EXT-X-BYTERANGE:{}@{}\nsegments/{}.ts{}\n", lasts[i],
                       f->length, f->offset, s->index.v, query);
  }
  out += "#EXT-X-ENDLIST\n";
  return out;
}

}  // namespace vodgrid::api
