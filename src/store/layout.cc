// Segment file names and paths inside a data directory, and the POSIX error mapping.
#include "store/layout_impl.h"

#include <cerrno>
#include <charconv>
#include <system_error>

namespace vodgrid::store::layout {

std::string segment_file_name(segment_index index, uint64_t size, const sha256_digest& digest) {
  return std::to_string(index.v) + "-" + std::to_string(size) + "-" + to_hex(digest) + ".ts";
}

std::optional<parsed_name> parse_segment_file_name(std::string_view name) {
  constexpr std::string_view suffix = ".ts";
  if (name.size() <= suffix.size() || !name.ends_with(suffix)) {
    return std::nullopt;
  }
  std::string_view stem = name.substr(0, name.size() - suffix.size());
  size_t first = stem.find('-');
  if (first == std::string_view::npos) {
    return std::nullopt;
  }
  size_t second = stem.find('-', first + 1);
  if (second == std::string_view::npos) {
    return std::nullopt;
  }
  std::optional<segment_index> index = segment_index::parse(stem.substr(0, first));
  std::string_view size_text = stem.substr(first + 1, second - first - 1);
  std::optional<sha256_digest> digest = parse_sha256_hex(stem.substr(second + 1));
  if (!index || !digest || size_text.empty()) {
    return std::nullopt;
  }
  uint64_t size = 0;
  auto [end, ec] = std::from_chars(size_text.data(), size_text.data() + size_text.size(), size);
  if (ec != std::errc{} || end != size_text.data() + size_text.size()) {
    return std::nullopt;
  }
  // Only the canonical spelling: no leading zeros, lowercase hex. Anything else was not written by
  // the store, and the path built back from the parsed parts would not find it.
  if (segment_file_name(*index, size, *digest) != name) {
    return std::nullopt;
  }
  return parsed_name{*index, size, *digest};
}

std::filesystem::path program_dir(const dir_paths& d, const program_id& program) {
  return d.seg / program.str();
}

std::filesystem::path segment_path(const dir_paths& d, const segment_key& key, uint64_t size,
                                   const sha256_digest& digest) {
  return program_dir(d, key.program) / segment_file_name(key.index, size, digest);
}

error sys_error(std::string_view op, const std::filesystem::path& path, int err) {
  errc code = (err == ENOSPC || err == EDQUOT) ? errc::no_space : errc::io_error;
  return make_error(
      code, std::string(op) + " " + path.string() + ": " + std::generic_category().message(err));
}

}  // namespace vodgrid::store::layout
