// Strong types for the names that cross the wire: program ids, segment indices, engine and station
// names. Each is validated once at the edge, so nothing downstream can build a hostile path from
// one.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace vodgrid {

// A name is 1..64 characters of [A-Za-z0-9_-], not starting with '-'. Such a name is safe as a
// file name and as a URL path segment without escaping.
bool valid_name(std::string_view s);

template <class Tag>
class name_type {
 public:
  name_type() = default;
  // Returns nullopt unless valid_name(s).
  static std::optional<name_type> parse(std::string_view s) {
    if (!valid_name(s)) {
      return std::nullopt;
    }
    name_type n;
    n.v_ = std::string(s);
    return n;
  }
  const std::string& str() const { return v_; }
  auto operator<=>(const name_type&) const = default;

 private:
  std::string v_;
};

struct program_tag {};
struct engine_tag {};
struct station_tag {};
using program_id = name_type<program_tag>;
using engine_id = name_type<engine_tag>;
using station_id = name_type<station_tag>;

// Index of a segment within its program, from 0.
struct segment_index {
  static constexpr uint32_t max = 1'000'000;  // a program of over a million segments is refused
  uint32_t v = 0;
  static std::optional<segment_index> parse(std::string_view s);
  auto operator<=>(const segment_index&) const = default;
};

struct segment_key {
  program_id program;
  segment_index index;
  auto operator<=>(const segment_key&) const = default;
  std::string str() const;  // "program/index"
};

}  // namespace vodgrid

template <class Tag>
struct std::hash<vodgrid::name_type<Tag>> {
  size_t operator()(const vodgrid::name_type<Tag>& n) const noexcept {
    return std::hash<std::string>{}(n.str());
  }
};
template <>
struct std::hash<vodgrid::segment_key> {
  size_t operator()(const vodgrid::segment_key& k) const noexcept {
    return std::hash<std::string>{}(k.program.str()) * 1000003u ^ k.index.v;
  }
};
