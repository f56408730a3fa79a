// The packager's output side (segment_writer.h): segment files, the muxer's sink, the playlist.
#include "content/segment_writer.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

extern "C" {
#include <libavutil/error.h>
}

namespace vodgrid::content {

error sys_error(std::string_view what, const fs::path& p) {
  int e = errno;
  return make_error(e == ENOSPC ? errc::no_space : errc::io_error,
                    fmt::format("{} {}: {}", what, p.string(), std::strerror(e)));
}

int segment_sink::write(const uint8_t* buf, int size) {
  if (failure) {
    return AVERROR(EIO);
  }
  if (!current) {
    failure = make_error(errc::internal, "the muxer wrote between segments");
    return AVERROR(EIO);
  }
  auto n = static_cast<uint64_t>(size);
  if (current->size() + n > max_segment) {
    failure = make_error(errc::too_large,
                         fmt::format("segment {} would exceed {} bytes: the input's keyframes "
                                     "are too far apart for max_segment_bytes",
                                     current->index(), max_segment));
    return AVERROR(EFBIG);
  }
  if (committed_bytes + current->size() + n > max_total) {
    failure = make_error(errc::too_large,
                         fmt::format("the program would exceed {} bytes (max_bytes)", max_total));
    return AVERROR(EFBIG);
  }
  if (auto st = current->write(buf, n); !st) {
    failure = st.err();
    return AVERROR(EIO);
  }
  return size;
}

std::string vod_playlist_text(const std::vector<packaged_segment>& segments) {
  double longest = 0;
  for (auto& s : segments) {
    longest = std::max(longest, s.duration);
  }
  // RFC 8216: each EXTINF rounded to the nearest integer must not exceed the target duration.
  auto target = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(longest - 1e-6)));
  std::string text = fmt::format(
      "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:0\n"
      "#EXT-X-PLAYLIST-TYPE:VOD\n",
      target);
  for (auto& s : segments) {
    text += fmt::format("#EXTINF:{:.6f},\n{}\n", s.duration, s.file);
  }
  text += "#EXT-X-ENDLIST\n";
  return text;
}

status prepare_out_dir(const fs::path& dir, bool& created) {
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) {
      return make_error(errc::invalid_argument, fmt::format("{} is not a folder", dir.string()));
    }
    if (!fs::is_empty(dir, ec)) {
      return make_error(errc::conflict, fmt::format("{} is not empty", dir.string()));
    }
    return {};
  }
  fs::create_directories(dir, ec);
  if (ec) {
    return make_error(errc::io_error, fmt::format("create {}: {}", dir.string(), ec.message()));
  }
  created = true;
  return {};
}

}  // namespace vodgrid::content
