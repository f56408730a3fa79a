// HLS playlist parsing (src/api/hls.h), media and multivariant. A media playlist that parses must
// have sane durations; a multivariant one at most max_renditions variants, each with its URI.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "api/hls.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto p = vodgrid::api::parse_media_playlist(
      std::string_view(reinterpret_cast<const char*>(data), size));
  if (p) {
    for (auto& s : p->segments) {
      if (!std::isfinite(s.duration) || s.duration < 0) {
        std::abort();
      }
    }
  }
  auto mv = vodgrid::api::parse_multivariant_playlist(
      std::string_view(reinterpret_cast<const char*>(data), size));
  if (mv && (mv->variants.size() + mv->media.size() > vodgrid::api::max_renditions ||
             mv->variants.front().uri.empty() || mv->variants.front().bandwidth == 0)) {
    std::abort();
  }
  return 0;
}
