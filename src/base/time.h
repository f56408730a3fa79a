// Wall-clock times on the wire: RFC 3339 in UTC ("2026-11-25T23:59:00Z").
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "base/result.h"

namespace vodgrid {

using wall_clock = std::chrono::system_clock;

// "2026-11-25T23:59:00Z", to the second, or with milliseconds when they are not zero.
std::string format_rfc3339(wall_clock::time_point t);

// Accepts RFC 3339 date-times: "YYYY-MM-DDTHH:MM:SS" with an optional fraction and a "Z" or
// "+HH:MM"/"-HH:MM" offset ('t', 'z' and a space for 'T' are accepted, as RFC 3339 allows).
// errc::invalid_argument with the reason otherwise.
result<wall_clock::time_point> parse_rfc3339(std::string_view text);

}  // namespace vodgrid
