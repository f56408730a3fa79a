#include "api/hls.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <map>

namespace vodgrid::api {

namespace {

bool starts_with(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

error bad_line(size_t line, std::string_view what) {
  return make_error(errc::invalid_argument, fmt::format("playlist line {}: {}", line, what));
}

// The lines of a playlist, without their line ends; the first is checked to be #EXTM3U.
result<std::vector<std::string_view>> playlist_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (lines.empty() && line.size() >= 3 && static_cast<unsigned char>(line[0]) == 0xEF) {
      line.remove_prefix(3);  // a UTF-8 byte order mark
    }
    if (line.find('\0') != std::string_view::npos) {
      return bad_line(lines.size() + 1, "contains a NUL byte");
    }
    lines.push_back(line);
  }
  if (lines.empty()) {
    return make_error(errc::invalid_argument, "empty playlist");
  }
  if (lines.front() != "#EXTM3U") {
    return bad_line(1, "not an HLS playlist (no #EXTM3U)");
  }
  return lines;
}

// An attribute list (RFC 8216, 4.2): NAME=value pairs, values quoted or not; quotes removed.
result<std::map<std::string, std::string, std::less<>>> attributes(std::string_view s) {
  std::map<std::string, std::string, std::less<>> out;
  while (!s.empty()) {
    size_t eq = s.find('=');
    if (eq == 0 || eq == std::string_view::npos) {
      return make_error(errc::invalid_argument, "an attribute without a name or a value");
    }
    std::string name(s.substr(0, eq));
    s.remove_prefix(eq + 1);
    std::string value;
    if (!s.empty() && s[0] == '"') {
      size_t close = s.find('"', 1);
      if (close == std::string_view::npos) {
        return make_error(errc::invalid_argument, "an unterminated quoted string");
      }
      value = s.substr(1, close - 1);
      s.remove_prefix(close + 1);
    } else {
      value = s.substr(0, s.find(','));
      s.remove_prefix(value.size());
    }
    if (!s.empty()) {
      if (s[0] != ',') {
        return make_error(errc::invalid_argument, "attributes must be separated by commas");
      }
      s.remove_prefix(1);
    }
    out[std::move(name)] = std::move(value);
  }
  return out;
}

template <class T>
bool parse_number(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string attr(const std::map<std::string, std::string, std::less<>>& a, std::string_view k) {
  auto it = a.find(k);
  return it == a.end() ? std::string() : it->second;
}

// An #EXT-X-STREAM-INF's attributes into `v` (its URI comes on the next line).
status read_stream_inf(std::string_view list, variant_stream& v) {
  VODGRID_TRY(auto a, attributes(list));
  if (!parse_number(attr(a, "BANDWIDTH"), v.bandwidth) || v.bandwidth == 0) {
    return make_error(errc::invalid_argument, "#EXT-X-STREAM-INF without a valid BANDWIDTH");
  }
  if (auto avg = attr(a, "AVERAGE-BANDWIDTH");
      !avg.empty() && !parse_number(avg, v.average_bandwidth)) {
    return make_error(errc::invalid_argument, "a bad AVERAGE-BANDWIDTH");
  }
  v.codecs = attr(a, "CODECS");
  if (auto res = attr(a, "RESOLUTION"); !res.empty()) {
    auto x = res.find('x');
    if (x == std::string::npos || !parse_number(std::string_view(res).substr(0, x), v.width) ||
        !parse_number(std::string_view(res).substr(x + 1), v.height) || v.width <= 0 ||
        v.height <= 0 || v.width > 16384 || v.height > 16384) {
      return make_error(errc::invalid_argument, "a bad RESOLUTION: " + res);
    }
  }
  if (auto fr = attr(a, "FRAME-RATE"); !fr.empty()) {
    v.frame_rate = std::strtod(fr.c_str(), nullptr);
    if (!std::isfinite(v.frame_rate) || v.frame_rate < 0 || v.frame_rate > 1000) {
      return make_error(errc::invalid_argument, "a bad FRAME-RATE: " + fr);
    }
  }
  v.audio = attr(a, "AUDIO");
  return {};
}

}  // namespace

bool is_multivariant(std::string_view text) {
  return text.find("#EXT-X-STREAM-INF") != std::string_view::npos;
}

result<multivariant_playlist> parse_multivariant_playlist(std::string_view text) {
  VODGRID_TRY(auto lines, playlist_lines(text));
  multivariant_playlist pl;
  std::optional<variant_stream> pending;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    size_t line_no = i + 1;
    if (line.empty()) {
      continue;
    }
    if (pl.variants.size() + pl.media.size() > max_renditions) {
      return bad_line(line_no, fmt::format("more than {} renditions", max_renditions));
    }
    if (starts_with(line, "#EXT-X-STREAM-INF:")) {
      variant_stream v;
      if (auto st = read_stream_inf(line.substr(18), v); !st) {
        return bad_line(line_no, st.err().detail);
      }
      pending = std::move(v);
    } else if (starts_with(line, "#EXT-X-MEDIA:")) {
      auto a = attributes(line.substr(13));
      if (!a) {
        return bad_line(line_no, a.err().detail);
      }
      alternative_media m{attr(*a, "TYPE"), attr(*a, "GROUP-ID"),         attr(*a, "LANGUAGE"),
                          attr(*a, "NAME"), attr(*a, "DEFAULT") == "YES", attr(*a, "URI")};
      pl.media.push_back(std::move(m));
    } else if (starts_with(line, "#EXTINF")) {
      return bad_line(line_no, "a media playlist, not a multivariant one");
    } else if (line[0] != '#') {
      if (!pending) {
        return bad_line(line_no, "a URI without #EXT-X-STREAM-INF");
      }
      pending->uri = line;
      pl.variants.push_back(std::move(*pending));
      pending.reset();
    }
  }
  if (pending) {
    return make_error(errc::invalid_argument,
                      "playlist ends with an #EXT-X-STREAM-INF without its URI");
  }
  if (pl.variants.empty()) {
    return make_error(errc::invalid_argument, "a multivariant playlist without variants");
  }
  if (pl.variants.size() + pl.media.size() > max_renditions) {
    return make_error(errc::invalid_argument,
                      fmt::format("more than {} renditions", max_renditions));
  }
  return pl;
}

namespace {

// The query carried to the renditions' URIs, unless it cannot sit inside a quoted attribute.
std::string_view safe_query(std::string_view query) {
  for (char c : query) {
    if (c == '"' || static_cast<unsigned char>(c) < 0x21 || c == 0x7f) {
      return {};
    }
  }
  return query;
}

std::string rendition_uri(const program_manifest& m, const rendition& r, std::string_view query) {
  return fmt::format("../{}{}{}/index.m3u8{}", m.id.str(), rendition_separator, r.name, query);
}

// The video codecs of a CODECS list ("avc1.64001f,mp4a.40.2" → "avc1.64001f"): an I-frame stream
// has no audio.
std::string video_codecs(std::string_view codecs) {
  static constexpr std::string_view video[] = {"avc1", "avc3", "hvc1", "hev1", "dvh1",
                                               "dvhe", "av01", "vp09", "mp4v"};
  std::string out;
  while (!codecs.empty()) {
    auto c = codecs.substr(0, codecs.find(','));
    codecs.remove_prefix(std::min(codecs.size(), c.size() + 1));
    if (std::any_of(std::begin(video), std::end(video),
                    [&](std::string_view v) { return c.starts_with(v); })) {
      out += (out.empty() ? "" : ",") + std::string(c);
    }
  }
  return out;
}

// An #EXT-X-MEDIA line of an audio or subtitles rendition, in group `group`.
std::string media_line(const program_manifest& m, const rendition& r, std::string_view group,
                       std::string_view query) {
  std::string out = fmt::format("#EXT-X-MEDIA:TYPE={},GROUP-ID=\"{}\"",
                                r.kind == rendition_kind::audio ? "AUDIO" : "SUBTITLES", group);
  if (!r.language.empty()) {
    out += fmt::format(",LANGUAGE=\"{}\"", r.language);
  }
  out += fmt::format(",NAME=\"{}\",DEFAULT={},AUTOSELECT=YES,URI=\"{}\"\n",
                     r.title.empty() ? r.name : r.title, r.is_default ? "YES" : "NO",
                     rendition_uri(m, r, query));
  return out;
}

}  // namespace

std::string write_multivariant_playlist(const program_manifest& m, std::string_view query) {
  query = safe_query(query);
  constexpr std::string_view audio_group = "audio", subtitles_group = "subs";
  std::string out = "#EXTM3U\n#EXT-X-VERSION:4\n#EXT-X-INDEPENDENT-SEGMENTS\n";
  const rendition* audio = nullptr;  // the default audio (else the first): its codec joins CODECS
  bool subtitles = false;
  for (auto& r : m.renditions) {
    if (r.kind == rendition_kind::video) {
      continue;
    }
    out += media_line(m, r, r.kind == rendition_kind::audio ? audio_group : subtitles_group, query);
    if (r.kind == rendition_kind::audio && (!audio || (r.is_default && !audio->is_default))) {
      audio = &r;
    }
    subtitles = subtitles || r.kind == rendition_kind::subtitles;
  }
  for (auto& r : m.renditions) {
    if (r.kind != rendition_kind::video) {
      continue;
    }
    // A variant's BANDWIDTH and CODECS cover what it plays with: its audio rendition too.
    uint64_t bandwidth = r.bandwidth + (audio ? audio->bandwidth : 0);
    out += fmt::format("#EXT-X-STREAM-INF:BANDWIDTH={}", bandwidth);
    if (r.average_bandwidth > 0) {
      out += fmt::format(",AVERAGE-BANDWIDTH={}",
                         r.average_bandwidth + (audio ? audio->average_bandwidth : 0));
    }
    std::string codecs = r.codecs;
    if (audio && !audio->codecs.empty() && codecs.find(audio->codecs) == std::string::npos) {
      codecs += (codecs.empty() ? "" : ",") + audio->codecs;
    }
    if (!codecs.empty()) {
      out += fmt::format(",CODECS=\"{}\"", codecs);
    }
    if (r.width > 0 && r.height > 0) {
      out += fmt::format(",RESOLUTION={}x{}", r.width, r.height);
    }
    if (r.frame_rate > 0) {
      out += fmt::format(",FRAME-RATE={:.3f}", r.frame_rate);
    }
    if (audio) {
      out += fmt::format(",AUDIO=\"{}\"", audio_group);
    }
    if (subtitles) {
      out += fmt::format(",SUBTITLES=\"{}\"", subtitles_group);
    }
    out += '\n';
    out += rendition_uri(m, r, query);
    out += '\n';
  }
  // Trick play (claim 21's HLS side): each video rendition's I-frame playlist.
  for (auto& r : m.renditions) {
    if (r.kind != rendition_kind::video || r.iframe_bandwidth == 0) {
      continue;
    }
    out += fmt::format("#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH={}", r.iframe_bandwidth);
    if (r.iframe_average_bandwidth > 0) {
      out += fmt::format(",AVERAGE-BANDWIDTH={}", r.iframe_average_bandwidth);
    }
    if (auto codecs = video_codecs(r.codecs); !codecs.empty()) {
      out += fmt::format(",CODECS=\"{}\"", codecs);
    }
    if (r.width > 0 && r.height > 0) {
      out += fmt::format(",RESOLUTION={}x{}", r.width, r.height);
    }
    out += fmt::format(",URI=\"../{}{}{}/iframes.m3u8{}\"\n", m.id.str(), rendition_separator,
                       r.name, query);
  }
  return out;
}

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
    out += fmt::format("#EXTINF:{:.6f},\nsegments/{}{}{}\n", s.duration, s.index.v,
                       segment_extension(m.format), query);
  }
  out += "#EXT-X-ENDLIST\n";
  return out;
}

namespace {

// One entry of an I-frame playlist: a key frame, lasting until the next one (the last, until the
// program's end).
struct iframe_entry {
  const segment_entry* segment;
  const key_frame* frame;
  double lasts;  // seconds
};

result<std::vector<iframe_entry>> iframe_entries(const program_manifest& m) {
  if (!m.renditions.empty()) {
    return make_error(
        errc::not_found,
        fmt::format("program {} has several renditions: each has its I-frame playlist, "
                    "{}{}{}/iframes.m3u8",
                    m.id.str(), m.id.str(), rendition_separator, m.renditions.front().name));
  }
  if (m.format != segment_format::mpegts) {
    return make_error(
        errc::not_found,
        fmt::format("program {} is subtitles: it has no I-frame playlist", m.id.str()));
  }
  std::vector<iframe_entry> out;
  std::vector<double> at;  // each frame's time in the program
  double start = 0;
  for (auto& s : m.segments) {
    if (s.key_frames.empty()) {
      return make_error(errc::not_found,
                        fmt::format("program {} has no key frame index (segment {}): load it again "
                                    "for an I-frame playlist",
                                    m.id.str(), s.index.v));
    }
    for (auto& f : s.key_frames) {
      out.push_back({&s, &f, 0});
      at.push_back(start + std::min(f.seconds, s.duration));
    }
    start += s.duration;
  }
  for (size_t i = 0; i < out.size(); ++i) {
    double next = i + 1 < out.size() ? at[i + 1] : start;
    out[i].lasts = std::max(0.0, next - at[i]);
  }
  return out;
}

}  // namespace

iframe_rates iframe_rates_of(const program_manifest& m) {
  auto entries = iframe_entries(m);
  iframe_rates r;
  if (!entries) {
    return r;
  }
  double peak = 0, bytes = 0, seconds = 0;
  for (auto& e : *entries) {
    bytes += static_cast<double>(e.frame->length);
    seconds += e.lasts;
    if (e.lasts > 0) {
      peak = std::max(peak, static_cast<double>(e.frame->length) * 8 / e.lasts);
    }
  }
  r.bandwidth = static_cast<uint64_t>(std::ceil(peak));
  r.average_bandwidth = seconds > 0 ? static_cast<uint64_t>(std::ceil(bytes * 8 / seconds)) : 0;
  return r;
}

result<std::string> write_iframe_playlist(const program_manifest& m, std::string_view query) {
  VODGRID_TRY(auto frames, iframe_entries(m));
  double target = 1;
  for (auto& f : frames) {
    target = std::max(target, std::ceil(f.lasts));
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
  for (auto& [s, f, lasts] : frames) {
    if (s != mapped && s->psi_bytes > 0) {
      out += fmt::format("#EXT-X-MAP:URI=\"segments/{}.ts{}\",BYTERANGE=\"{}@0\"\n", s->index.v,
                         quoted_query, s->psi_bytes);
      mapped = s;
    }
    out += fmt::format("#EXTINF:{:.6f},\n#EXT-X-BYTERANGE:{}@{}\nsegments/{}.ts{}\n", lasts,
                       f->length, f->offset, s->index.v, query);
  }
  out += "#EXT-X-ENDLIST\n";
  return out;
}

}  // namespace vodgrid::api
