// RFC 3339 by hand: GCC 12's library has no std::chrono::parse, and the grammar is small.
#include "base/time.h"

#include <fmt/format.h>

#include <cctype>
#include <ctime>

namespace vodgrid {

std::string format_rfc3339(wall_clock::time_point t) {
  auto secs = std::chrono::floor<std::chrono::seconds>(t);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - secs).count();
  std::time_t tt = wall_clock::to_time_t(secs);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  std::string s = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", tm.tm_year + 1900,
                              tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  if (ms != 0) {
    s += fmt::format(".{:03}", ms);
  }
  return s + "Z";
}

namespace {

bool digits(std::string_view s, size_t at, size_t n, int& out) {
  if (at + n > s.size()) {
    return false;
  }
  out = 0;
  for (size_t i = at; i < at + n; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

}  // namespace

result<wall_clock::time_point> parse_rfc3339(std::string_view s) {
  auto bad = [&] {
    return make_error(
        errc::invalid_argument,
        fmt::format("'{}' is not an RFC 3339 time such as 2026-11-25T23:59:00Z", s.substr(0, 64)));
  };
  int y, mo, d, h, mi, se;
  if (s.size() < 20 || s.size() > 40 || !digits(s, 0, 4, y) || s[4] != '-' ||
      !digits(s, 5, 2, mo) || s[7] != '-' || !digits(s, 8, 2, d) ||
      !(s[10] == 'T' || s[10] == 't' || s[10] == ' ') || !digits(s, 11, 2, h) || s[13] != ':' ||
      !digits(s, 14, 2, mi) || s[16] != ':' || !digits(s, 17, 2, se)) {
    return bad();
  }
  static constexpr int days_in[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > days_in[mo - 1] ||
      (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || se > 60) {
    return bad();
  }
  // wall_clock counts nanoseconds in 64 bits: past April 2262 its time points overflow.
  if (y > 2261) {
    return make_error(
        errc::invalid_argument,
        fmt::format("'{}' is past 2261, the last year a time here can hold", s.substr(0, 64)));
  }
  size_t i = 19;
  std::chrono::milliseconds frac{0};
  if (i < s.size() && s[i] == '.') {
    ++i;
    int scale = 100, ms = 0;
    size_t start = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      ms += (s[i] - '0') * scale;
      scale /= 10;
      ++i;
    }
    if (i == start) {
      return bad();
    }
    frac = std::chrono::milliseconds(ms);
  }
  int offset_min = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    int oh, om;
    if (!digits(s, i + 1, 2, oh) || i + 3 >= s.size() || s[i + 3] != ':' ||
        !digits(s, i + 4, 2, om) || oh > 23 || om > 59) {
      return bad();
    }
    offset_min = (s[i] == '+' ? 1 : -1) * (oh * 60 + om);
    i += 6;
  } else {
    return bad();
  }
  if (i != s.size()) {
    return bad();
  }
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = std::min(se, 59);  // a leap second counts as the last second of its minute
  std::time_t t = ::timegm(&tm);
  return wall_clock::from_time_t(t) + frac - std::chrono::minutes(offset_min);
}

}  // namespace vodgrid
