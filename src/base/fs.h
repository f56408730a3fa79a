// Small durable-file helpers for daemons' own state files (not segments: see src/store).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "base/result.h"

namespace vodgrid {

// Replaces `path` with `content` atomically and durably: temp file, fsync, rename, fsync of the
// directory. Creates the directory if missing. ENOSPC is errc::no_space.
status write_file_durably(const std::filesystem::path& path, std::string_view content);
// Reads a whole file; errc::not_found if it does not exist.
result<std::string> read_file(const std::filesystem::path& path, uint64_t max_bytes = 1ull << 30);

}  // namespace vodgrid
