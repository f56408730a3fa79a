// Static files of the web root for browsers (the watch page, the dashboard): see web_files.h.
#include "net/web_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <memory>

namespace vodgrid::net {

namespace fs = std::filesystem;

const char* web_content_type(std::string_view name) {
  static constexpr std::array<std::pair<std::string_view, const char*>, 6> types{{
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
  }};
  for (auto& [ext, type] : types) {
    if (name.ends_with(ext)) {
      return type;
    }
  }
  return nullptr;
}

bool plain_file_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || name.front() == '.') {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

reply web_file_reply(const fs::path& root, std::string_view rel, const char* type) {
  std::error_code ec;
  auto path = fs::canonical(root / rel, ec);
  auto [end, _] = std::mismatch(root.begin(), root.end(), path.begin(), path.end());
  if (ec || end != root.end()) {
    return error_reply(http::status::not_found, "not_found", fmt::format("no such file: {}", rel));
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (fd >= 0) {
      ::close(fd);
    }
    return error_reply(http::status::not_found, "not_found", fmt::format("no such file: {}", rel));
  }
  reply r;
  r.content_type = type;
  auto owner = std::shared_ptr<void>(nullptr, [fd](void*) { ::close(fd); });  // with the reply
  r.file = file_slice{owner, fd, 0, static_cast<uint64_t>(st.st_size)};
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  return r;
}

result<fs::path> find_web_root(const fs::path& configured, const fs::path& marker,
                               const std::vector<fs::path>& candidates) {
  std::error_code ec;
  if (!configured.empty()) {
    if (!fs::is_regular_file(configured / marker, ec)) {
      return make_error(errc::invalid_argument, fmt::format("[web] root {}: no {} there",
                                                            configured.string(), marker.string()));
    }
    return fs::canonical(configured, ec);
  }
  for (auto& c : candidates) {
    if (fs::is_regular_file(c / marker, ec)) {
      return fs::canonical(c, ec);
    }
  }
  return fs::path();
}

std::vector<fs::path> default_web_roots(const fs::path& source_dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    out.push_back(exe.parent_path().parent_path() / "share" / "vodgrid" / "web");
  }
  out.push_back(source_dir);
  return out;
}

}  // namespace vodgrid::net
