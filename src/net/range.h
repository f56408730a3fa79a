// Single byte ranges per RFC 9110 §14: the only kind vodgrid serves. Pure logic, no I/O.
#pragma once

#include <cstdint>
#include <string_view>

namespace vodgrid::net {

struct byte_range {
  uint64_t first = 0;
  uint64_t length = 0;  // first + length <= representation size
};

enum class range_kind {
  none,           // no Range header, an unknown unit, bad syntax, or several ranges: send 200 whole
  satisfiable,    // send 206 with `range`
  unsatisfiable,  // send 416 with Content-Range: bytes */size
};

struct range_decision {
  range_kind kind = range_kind::none;
  byte_range range;
};

// Decides how to answer `Range: header` for a representation of `size` bytes. Follows RFC 9110:
// "bytes=a-b" (b clamped to size-1), "bytes=a-" and "bytes=-n" (suffix). Multi-range requests are
// answered with the whole representation (a server MAY ignore Range), as are malformed ones;
// numbers too large for 64 bits are treated as "beyond the end", never wrapped.
range_decision decide_range(std::string_view header, uint64_t size);

}  // namespace vodgrid::net
