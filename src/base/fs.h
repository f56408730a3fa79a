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

// Secrets at rest (auth databases, auth.secret, key files): mode 0600 in a folder of mode 0700,
// whatever the process's umask, and refused when group or others may read them (as OpenSSH does).

// Creates `dir` (and its parents) if missing and sets it to 0700: it holds secrets. A folder of
// another owner or with the sticky bit (/tmp) is left as it is.
status make_private_dir(const std::filesystem::path& dir);
// write_file_durably with mode 0600, in a private folder (make_private_dir).
status write_secret_durably(const std::filesystem::path& path, std::string_view content);
// Creates an empty `path` with mode 0600 unless it exists (for a database about to be opened).
status create_private_file(const std::filesystem::path& path);
// errc::forbidden, with one line naming the file and its mode, when `path` is readable or
// writable by group or others; errc::not_found when it does not exist.
status check_private_file(const std::filesystem::path& path);

}  // namespace vodgrid
