#include "net/range.h"

#include <limits>

namespace vodgrid::net {

namespace {

constexpr uint64_t huge = std::numeric_limits<uint64_t>::max();

// Parses 1*DIGIT; saturates at `huge` instead of overflowing. False if not all digits or empty.
bool parse_u64(std::string_view s, uint64_t& out) {
  if (s.empty()) {
    return false;
  }
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return false;
    }
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (huge - d) / 10) {
      v = huge;
    } else if (v != huge) {
      v = v * 10 + d;
    }
  }
  out = v;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

range_decision decide_range(std::string_view header, uint64_t size) {
  range_decision whole;
  header = trim(header);
  constexpr std::string_view unit = "bytes=";
  if (header.size() < unit.size()) {
    return whole;
  }
  for (size_t i = 0; i < unit.size(); ++i) {  // the unit is case-insensitive
    char c = header[i];
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
    if (c != unit[i]) {
      return whole;
    }
  }
  std::string_view spec = trim(header.substr(unit.size()));
  if (spec.find(',') != std::string_view::npos) {
    return whole;  // several ranges: served whole, never assembled
  }
  auto dash = spec.find('-');
  if (dash == std::string_view::npos) {
    return whole;
  }
  std::string_view a = trim(spec.substr(0, dash));
  std::string_view b = trim(spec.substr(dash + 1));
  uint64_t first = 0;
  uint64_t last = 0;
  if (a.empty()) {  // suffix: the last n bytes
    uint64_t n = 0;
    if (!parse_u64(b, n)) {
      return whole;
    }
    if (n == 0 || size == 0) {
      return {range_kind::unsatisfiable, {}};
    }
    n = std::min(n, size);
    return {range_kind::satisfiable, {size - n, n}};
  }
  if (!parse_u64(a, first)) {
    return whole;
  }
  if (b.empty()) {
    last = huge;
  } else if (!parse_u64(b, last) || last < first) {
    return whole;  // a reversed range is invalid syntax: ignored
  }
  if (first >= size) {
    return {range_kind::unsatisfiable, {}};
  }
  last = std::min(last, size - 1);
  return {range_kind::satisfiable, {first, last - first + 1}};
}

}  // namespace vodgrid::net
