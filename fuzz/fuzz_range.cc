// Range parsing (src/net/range.h): the first 8 bytes are the representation size, the rest the
// Range header. Checks that a satisfiable range lies inside the representation.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "net/range.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint64_t total = 0;
  if (size >= 8) {
    std::memcpy(&total, data, 8);
    data += 8;
    size -= 8;
  }
  // Keep small sizes frequent: they are where the edge cases are.
  if (total & 1) {
    total = (total >> 1) % 4096;
  }
  auto d = vodgrid::net::decide_range(std::string_view(reinterpret_cast<const char*>(data), size),
                                      total);
  if (d.kind == vodgrid::net::range_kind::satisfiable) {
    if (d.range.length == 0 || d.range.first >= total || d.range.length > total - d.range.first) {
      std::abort();
    }
  }
  return 0;
}
