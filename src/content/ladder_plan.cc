// The ladder's rungs (transcode.h: the named rungs, --renditions, the default ladder) and the
// RFC 6381 codec strings of what the content engine writes (transcode_run.h).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <new>

#include "content/transcode_run.h"

namespace vodgrid::content {

namespace {

// Caps of a sensible operator's ladder for H.264 at x264's veryfast and CRF 23: low enough that
// the top rung streams over a 6 Mb/s link, high enough that a hard scene keeps its quality.
struct named_rung {
  int height;
  uint64_t max_bitrate;
};
constexpr named_rung named_rungs[] = {
    {1080, 5'000'000}, {720, 2'800'000}, {480, 1'400'000}, {360, 800'000}, {240, 400'000}};
constexpr int default_heights[] = {1080, 720, 480, 360};

std::string names_list() {
  std::string s;
  for (auto& r : named_rungs) {
    s += fmt::format("{}{}p", s.empty() ? "" : ", ", r.height);
  }
  return s;
}

}  // namespace

ladder_rung rung_for_height(int height) {
  for (auto& r : named_rungs) {
    if (r.height == height) {
      return {fmt::format("{}p", height), height, r.max_bitrate};
    }
  }
  // x264's bits grow about as the pixel count to the 0.75: scale 1080p's cap so.
  double ratio = std::pow(static_cast<double>(height) / 1080.0, 1.5);
  auto cap = static_cast<uint64_t>(5'000'000.0 * ratio);
  return {fmt::format("{}p", height), height, std::max<uint64_t>(cap, 200'000)};
}

result<std::vector<ladder_rung>> parse_renditions(std::string_view list) {
  std::vector<ladder_rung> rungs;
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    std::string_view item =
        list.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    pos = comma == std::string_view::npos ? list.size() + 1 : comma + 1;
    while (!item.empty() && item.front() == ' ') {
      item.remove_prefix(1);
    }
    while (!item.empty() && item.back() == ' ') {
      item.remove_suffix(1);
    }
    if (item.empty()) {
      if (list.empty()) {
        break;
      }
      return make_error(errc::invalid_argument,
                        fmt::format("renditions '{}': an empty name in the list", list));
    }
    std::string_view digits = item;
    if (digits.back() == 'p' || digits.back() == 'P') {
      digits.remove_suffix(1);
    }
    int height = 0;
    bool numeric =
        !digits.empty() && digits.size() <= 4 &&
        std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (numeric) {
      height = std::stoi(std::string(digits));
    }
    auto named = std::find_if(std::begin(named_rungs), std::end(named_rungs),
                              [&](const named_rung& r) { return r.height == height; });
    if (named == std::end(named_rungs)) {
      return make_error(errc::invalid_argument,
                        fmt::format("the rendition '{}' is not one of {}", item, names_list()));
    }
    if (std::any_of(rungs.begin(), rungs.end(), [&](auto& r) { return r.height == height; })) {
      return make_error(errc::invalid_argument,
                        fmt::format("the rendition '{}' is named twice", item));
    }
    rungs.push_back(rung_for_height(height));
  }
  if (rungs.empty()) {
    return make_error(errc::invalid_argument,
                      fmt::format("no renditions named: give some of {}", names_list()));
  }
  std::sort(rungs.begin(), rungs.end(), [](auto& a, auto& b) { return a.height > b.height; });
  return rungs;
}

std::vector<ladder_rung> default_ladder(int height) {
  std::vector<ladder_rung> rungs;
  int even = height & ~1;
  if (even < 1080 && std::find(std::begin(default_heights), std::end(default_heights), even) ==
                         std::end(default_heights)) {
    rungs.push_back(rung_for_height(even));
  }
  for (int h : default_heights) {
    if (h <= height) {
      rungs.push_back(rung_for_height(h));
    }
  }
  return rungs;
}

std::string avc_codec_string(const uint8_t* p, int n) {
  if (n >= 4 && p[0] == 1) {  // avcC: version, profile, compatibility, level
    return fmt::format("avc1.{:02x}{:02x}{:02x}", p[1], p[2], p[3]);
  }
  // Annex B: the NAL unit of type 7 after a start code.
  for (int i = 0; i + 6 < n; ++i) {
    if (p[i] == 0 && p[i + 1] == 0 && p[i + 2] == 1 && (p[i + 3] & 0x1f) == 7) {
      return fmt::format("avc1.{:02x}{:02x}{:02x}", p[i + 4], p[i + 5], p[i + 6]);
    }
  }
  return {};
}

std::string hevc_codec_string(int profile, int level) {
  if (profile <= 0) {
    profile = 1;  // Main
  }
  if (level <= 0) {
    level = 93;  // 3.1
  }
  // The compatibility flags are written bit-reversed: profile p's own flag becomes 1 << p.
  uint32_t reversed = 1u << std::min(profile, 31);
  return fmt::format("hvc1.{}.{:x}.L{}.B0", profile, reversed, level);
}

std::string aac_codec_string(int profile) {
  switch (profile) {
    case 4:  // FF_PROFILE_AAC_HE
      return "mp4a.40.5";
    case 28:  // FF_PROFILE_AAC_HE_V2
      return "mp4a.40.29";
    default:
      return "mp4a.40.2";
  }
}

frame_ptr new_frame() {
  AVFrame* f = av_frame_alloc();
  if (f == nullptr) {
    throw std::bad_alloc();
  }
  return frame_ptr(f);
}

}  // namespace vodgrid::content
