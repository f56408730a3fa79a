#include "base/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
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

// The temp file, write, fsync, rename and directory fsync of write_file_durably and
// write_secret_durably. `secret`: the file is 0600 before the first byte is written.
status write_durably(const std::filesystem::path& path, std::string_view content, bool secret) {
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) {
    return make_error(errc::io_error,
                      fmt::format("create {}: {}", path.parent_path().string(), ec.message()));
  }
  auto tmp = path;
  tmp += fmt::format(".tmp.{}", ::getpid());
  int fd = ::open(tmp.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, secret ? 0600 : 0644);
  if (fd < 0) {
    return sys_error("create", tmp);
  }
  // An old temp file of the same name keeps its mode through O_CREAT: set it.
  if (secret && ::fchmod(fd, 0600) != 0) {
    auto e = sys_error("chmod", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return e;
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

}  // namespace

status write_file_durably(const std::filesystem::path& path, std::string_view content) {
  return write_durably(path, content, false);
}

status make_private_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return make_error(errc::io_error, fmt::format("create {}: {}", dir.string(), ec.message()));
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    return sys_error("stat", dir);
  }
  // A shared folder (another owner's, or a sticky one like /tmp) is left alone: the files' own
  // 0600 protects them there, and its other users need it as it is.
  if (st.st_uid != ::geteuid() || (st.st_mode & S_ISVTX) != 0 || (st.st_mode & 077) == 0) {
    return {};
  }
  if (::chmod(dir.c_str(), 0700) != 0) {
    return sys_error("chmod", dir);
  }
  return {};
}

status write_secret_durably(const std::filesystem::path& path, std::string_view content) {
  if (!path.parent_path().empty()) {
    VODGRID_TRY(make_private_dir(path.parent_path()));
  }
  return write_durably(path, content, true);
}

status create_private_file(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) {
      return {};
    }
    return sys_error("create", path);
  }
  // O_CREAT's mode passes through the umask, which only removes bits: 0600 stays 0600 or less.
  int rc = ::fchmod(fd, 0600);
  auto e = rc != 0 ? sys_error("chmod", path) : error{};
  ::close(fd);
  if (rc != 0) {
    return e;
  }
  return {};
}

status check_private_file(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return make_error(errc::not_found, fmt::format("{} does not exist", path.string()));
    }
    return sys_error("stat", path);
  }
  if ((st.st_mode & 077) != 0) {
    return make_error(errc::forbidden,
                      fmt::format("{} holds a secret but has mode {:04o}: group and others must "
                                  "have no access (chmod 600 {})",
                                  path.string(), st.st_mode & 07777, path.string()));
  }
  return {};
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
