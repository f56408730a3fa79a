// HLS media playlist parsing (src/api/hls.h). A playlist that parses must have sane durations.
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
  return 0;
}
