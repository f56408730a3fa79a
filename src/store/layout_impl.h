// Private to the store: the on-disk layout of a data directory (paths and segment file names) and
// the mapping of POSIX errors onto errc.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "base/ids.h"
#include "base/result.h"
#include "base/sha256.h"

namespace vodgrid::store::layout {

// The directories of one data directory D. Segments live at D/seg/<program>/<name>, temp files in
// D/tmp, files found bad at open in D/quarantine; D/LOCK is flock()ed while a store has D open.
struct dir_paths {
  explicit dir_paths(std::filesystem::path r)
      : root(std::move(r)),
        seg(root / "seg"),
        tmp(root / "tmp"),
        quarantine(root / "quarantine"),
        lock(root / "LOCK") {}
  std::filesystem::path root;
  std::filesystem::path seg;
  std::filesystem::path tmp;
  std::filesystem::path quarantine;
  std::filesystem::path lock;
};

// "<index>-<size>-<sha256 lowercase hex>.ts": the name carries the size and digest, so that the
// rename into place is the single commit point and a torn file is recognisable at open.
std::string segment_file_name(segment_index index, uint64_t size, const sha256_digest& digest);

struct parsed_name {
  segment_index index;
  uint64_t size = 0;
  sha256_digest sha256{};
};
// Accepts only names that segment_file_name() produces (canonical decimals, lowercase hex).
std::optional<parsed_name> parse_segment_file_name(std::string_view name);

std::filesystem::path program_dir(const dir_paths& d, const program_id& program);
std::filesystem::path segment_path(const dir_paths& d, const segment_key& key, uint64_t size,
                                   const sha256_digest& digest);

// errc::no_space for ENOSPC and EDQUOT, errc::io_error otherwise; the detail names the operation,
// the path and the system's message.
error sys_error(std::string_view op, const std::filesystem::path& path, int err);

}  // namespace vodgrid::store::layout
