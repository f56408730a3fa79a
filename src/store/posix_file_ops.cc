// The real file operations of the store: plain POSIX calls, each error mapped onto errc with the
// path in its detail.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "store/layout_impl.h"
#include "store/store.h"

namespace vodgrid::store {

namespace {

namespace fs = std::filesystem;
using layout::sys_error;

status fsync_path(const fs::path& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return sys_error("open", path, errno);
  }
  int rc = 0;
  do {
    rc = ::fsync(fd);
  } while (rc != 0 && errno == EINTR);
  int err = errno;
  ::close(fd);
  if (rc != 0) {
    return sys_error("fsync", path, err);
  }
  return {};
}

class posix_ops final : public file_ops {
 public:
  status write_file(const fs::path& path, std::string_view data) override {
    int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) {
      return sys_error("create", path, errno);
    }
    const char* p = data.data();
    size_t left = data.size();
    while (left > 0) {
      ssize_t n = ::write(fd, p, left);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        int err = errno;
        ::close(fd);
        return sys_error("write", path, err);
      }
      if (n == 0) {
        // A regular file accepting nothing is a full device that did not say so.
        ::close(fd);
        return sys_error("write", path, ENOSPC);
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
    // Linux releases the descriptor even when close fails, so it is never retried.
    if (::close(fd) != 0 && errno != EINTR) {
      return sys_error("close", path, errno);
    }
    return {};
  }

  status fsync_file(const fs::path& path) override { return fsync_path(path, 0); }

  status rename(const fs::path& from, const fs::path& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return sys_error("rename", from.string() + " -> " + to.string(), errno);
    }
    return {};
  }

  status fsync_dir(const fs::path& dir) override { return fsync_path(dir, O_DIRECTORY); }

  status remove(const fs::path& path) override {
    if (::unlink(path.c_str()) != 0) {
      if (errno == ENOENT) {
        return make_error(errc::not_found, "unlink " + path.string() + ": no such file");
      }
      return sys_error("unlink", path, errno);
    }
    return {};
  }
};

}  // namespace

std::unique_ptr<file_ops> posix_file_ops() {
  return std::make_unique<posix_ops>();
}

}  // namespace vodgrid::store
