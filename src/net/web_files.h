// Static files of the web root (web/ of the source tree, share/vodgrid/web of an install) as the
// daemons serve them to browsers: the directors' watch page and the registry's dashboard. Only
// plain file names of a few known types, never a path leaving the root; bodies go with sendfile.
#pragma once

#include <filesystem>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "net/http.h"

namespace vodgrid::net {

// The Content-Type of a file the web root may serve, by its extension; nullptr: not served.
const char* web_content_type(std::string_view name);

// A file name of one folder: letters, digits, '.', '_' and '-', at most 64 characters, not starting
// with a dot (no "..", no hidden files, no folders).
bool plain_file_name(std::string_view name);

// `rel` under `root` (canonical) as a reply sent with sendfile, provided its real path (symbolic
// links resolved) stays inside the root and it is a regular file; a 404 otherwise.
reply web_file_reply(const std::filesystem::path& root, std::string_view rel, const char* type);

// The web root: `configured` ([web] root) when set, which must then hold `marker` (a typo must not
// leave a page missing in silence: errc::invalid_argument); else the first of `candidates` that
// holds it. An empty path when none does (the caller answers 503 and says why). Canonical.
result<std::filesystem::path> find_web_root(const std::filesystem::path& configured,
                                            const std::filesystem::path& marker,
                                            const std::vector<std::filesystem::path>& candidates);

// The places a binary looks for the web root when none is configured: share/vodgrid/web beside an
// installed binary (PREFIX/bin/vodgrid), then `source_dir` (web/ of the tree it was built from).
std::vector<std::filesystem::path> default_web_roots(const std::filesystem::path& source_dir);

}  // namespace vodgrid::net
