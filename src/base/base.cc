// Small pieces of base that need a translation unit: names, errc strings.
#include "base/ids.h"
#include "base/result.h"

#include <charconv>

namespace vodgrid {

std::string_view to_string(errc e) {
  switch (e) {
    case errc::ok:
      return "ok";
    case errc::invalid_argument:
      return "invalid_argument";
    case errc::not_found:
      return "not_found";
    case errc::conflict:
      return "conflict";
    case errc::unauthorized:
      return "unauthorized";
    case errc::forbidden:
      return "forbidden";
    case errc::too_large:
      return "too_large";
    case errc::range_not_satisfiable:
      return "range_not_satisfiable";
    case errc::unavailable:
      return "unavailable";
    case errc::timeout:
      return "timeout";
    case errc::digest_mismatch:
      return "digest_mismatch";
    case errc::io_error:
      return "io_error";
    case errc::no_space:
      return "no_space";
    case errc::protocol_error:
      return "protocol_error";
    case errc::internal:
      return "internal";
  }
  return "unknown";
}

bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > 64 || s.front() == '-') {
    return false;
  }
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

std::optional<segment_index> segment_index::parse(std::string_view s) {
  if (s.empty() || s.size() > 7 || (s.size() > 1 && s[0] == '0')) {
    return std::nullopt;
  }
  uint32_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || v >= max) {
    return std::nullopt;
  }
  return segment_index{v};
}

std::string segment_key::str() const {
  return program.str() + "/" + std::to_string(index.v);
}

}  // namespace vodgrid
