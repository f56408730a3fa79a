#include "base/fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <cerrno>
#include <cstring>

namespace vodgrid {

namespace {

error sys_error(std::string_view what, const std::filesystem::path& p) {
  int e = errno;
  return make_error(e == ENOSPC ? errc::no_space : errc::io_error,
                    fmt::format("{} {}: {}", what, p.string(), std::strerror(e)));
}

status fsync_path(const std::filesystem::path& p, int flags) {
  int fd = ::open(p.c_str(), flags | O_CLOEXEC);
  if (fd < 0) {
    return sys_error("open", p);
  }
  int rc = ::fsync(fd);
  auto err = rc != 0 ? sys_error("fsync", p) : error{};
  ::close(fd);
  if (rc != 0) {
    return err;
  }
  return {};
}

}  // namespace

status write_file_durably(const std::filesystem::path& path, std::string_view content) {
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) {
    return make_error(errc::io_error,
                      fmt::format("create {}: {}", path.parent_path().string(), ec.message()));
  }
  auto tmp = path;
  tmp += fmt::format(".tmp.{}", ::getpid());
  int fd = ::open(tmp.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) {
    return sys_error("create", tmp);
  }
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      auto e = sys_error("write", tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return e;
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    auto e = sys_error("fsync", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return e;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    auto e = sys_error("rename", tmp);
    ::unlink(tmp.c_str());
    return e;
  }
  return fsync_path(path.parent_path(), O_RDONLY | O_DIRECTORY);
}

result<std::string> read_file(const std::filesystem::path& path, uint64_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return make_error(errc::not_found, fmt::format("{} does not exist", path.string()));
    }
    return sys_error("open", path);
  }
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      auto e = sys_error("read", path);
      ::close(fd);
      return e;
    }
    if (n == 0) {
      break;
    }
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {
      ::close(fd);
      return make_error(errc::too_large,
                        fmt::format("{} is larger than {} bytes", path.string(), max_bytes));
    }
  }
  ::close(fd);
  return out;
}

}  // namespace vodgrid
