// Opening the store: each data directory is created if missing and locked, its tmp/ emptied and
// its seg/ walked on its own worker in parallel with the others; what does not look like a
// segment the store wrote is moved to quarantine/, and the index is built from the rest.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <future>
#include <set>

#include <boost/asio/post.hpp>

#include "store/impl.h"

namespace vodgrid::store {

namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

// The entries of a directory, sorted by name so that open() decides the same way every time.
result<std::vector<fs::path>> list_dir(const fs::path& dir) {
  std::error_code ec;
  std::vector<fs::path> out;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    out.push_back(it->path());
  }
  if (ec) {
    return make_error(errc::io_error, "list " + dir.string() + ": " + ec.message());
  }
  std::sort(out.begin(), out.end());
  return out;
}

result<sha256_digest> hash_file(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return layout::sys_error("open", path, errno);
  }
  sha256_hasher hasher;
  std::string buf(1 << 20, '\0');
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      int err = errno;
      ::close(fd);
      return layout::sys_error("read", path, err);
    }
    if (n == 0) {
      break;
    }
    hasher.update(std::string_view(buf.data(), static_cast<size_t>(n)));
  }
  ::close(fd);
  return hasher.finish();
}

}  // namespace

status segment_store::impl::prepare_dir(data_dir& d) {
  for (const fs::path& p : {d.paths.root, d.paths.seg, d.paths.tmp, d.paths.quarantine}) {
    std::error_code ec;
    fs::create_directories(p, ec);
    if (ec) {
      return make_error(errc::io_error, "create " + p.string() + ": " + ec.message());
    }
  }
  d.lock_fd = ::open(d.paths.lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (d.lock_fd < 0) {
    return layout::sys_error("open", d.paths.lock, errno);
  }
  if (::flock(d.lock_fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return make_error(errc::conflict,
                        "data directory " + d.paths.root.string() + " is open in another store");
    }
    return layout::sys_error("flock", d.paths.lock, errno);
  }
  struct stat st {};
  if (::stat(d.paths.root.c_str(), &st) != 0) {
    return layout::sys_error("stat", d.paths.root, errno);
  }
  d.device = st.st_dev;
  return {};
}

// Moves a bad file or directory of `d` aside. Open is idempotent, so a move lost in a crash is
// simply made again: no fsync.
status segment_store::impl::quarantine(const data_dir& d, const fs::path& path,
                                       std::string_view why) {
  std::string leaf = path.filename().string();
  if (path.parent_path() != d.paths.seg) {
    leaf = path.parent_path().filename().string() + "_" + leaf;
  }
  fs::path to = d.paths.quarantine / (next_name() + "-" + leaf.substr(0, 160));
  logger->warn("quarantining {}: {}", path.string(), why);
  return ops->rename(path, to);
}

// Runs on the directory's worker: empties tmp/ and lists the good segments of seg/, moving the
// bad ones aside.
segment_store::impl::scanned segment_store::impl::scan_dir(uint32_t dir) {
  const data_dir& d = *dirs[dir];
  scanned out;
  auto tmp_files = list_dir(d.paths.tmp);
  if (!tmp_files) {
    return {tmp_files.err(), {}};
  }
  for (const fs::path& p : *tmp_files) {
    std::error_code ec;
    fs::remove_all(p, ec);
    if (ec) {
      return {make_error(errc::io_error, "remove " + p.string() + ": " + ec.message()), {}};
    }
  }
  auto programs = list_dir(d.paths.seg);
  if (!programs) {
    return {programs.err(), {}};
  }
  for (const fs::path& pdir : *programs) {
    std::error_code ec;
    auto program = program_id::parse(pdir.filename().string());
    if (!program || !fs::is_directory(fs::symlink_status(pdir, ec))) {
      if (status st = quarantine(d, pdir, "not a program directory"); !st) {
        return {st, {}};
      }
      continue;
    }
    if (status st = scan_program_dir(dir, *program, pdir, out.found); !st) {
      return {st, {}};
    }
  }
  return out;
}

status segment_store::impl::scan_program_dir(uint32_t dir, const program_id& program,
                                             const fs::path& pdir,
                                             std::vector<segment_info>& found) {
  const data_dir& d = *dirs[dir];
  auto files = list_dir(pdir);
  if (!files) {
    return files.err();
  }
  std::set<segment_index> seen;
  for (const fs::path& f : *files) {
    std::string why;
    auto name = layout::parse_segment_file_name(f.filename().string());
    struct stat st {};
    if (!name) {
      why = "not a segment file name";
    } else if (::lstat(f.c_str(), &st) != 0) {
      return layout::sys_error("stat", f, errno);
    } else if (!S_ISREG(st.st_mode)) {
      why = "not a regular file";
    } else if (static_cast<uint64_t>(st.st_size) != name->size) {
      why = fmt::format("size {} but its name says {}", st.st_size, name->size);
    } else if (seen.contains(name->index)) {
      why = "a second file of segment " + std::to_string(name->index.v);
    } else if (opts.verify_on_open) {
      auto digest = hash_file(f);
      if (!digest) {
        return digest.err();
      }
      if (*digest != name->sha256) {
        why = "sha256 " + to_hex(*digest) + " does not match its name";
      }
    }
    if (!why.empty()) {
      if (status q = quarantine(d, f, why); !q) {
        return q;
      }
      continue;
    }
    seen.insert(name->index);
    found.push_back(segment_info{segment_key{program, name->index}, name->size, name->sha256, dir});
  }
  return {};
}

// Scans every directory in parallel on its worker, then builds the index; a key found in two
// directories is kept in the first and moved aside in the other.
status segment_store::impl::load() {
  std::vector<std::future<scanned>> scans;
  for (uint32_t i = 0; i < dirs.size(); ++i) {
    auto task = std::make_shared<std::packaged_task<scanned()>>([this, i] { return scan_dir(i); });
    scans.push_back(task->get_future());
    asio::post(*dirs[i]->worker, [task] { (*task)(); });
  }
  std::vector<scanned> results;
  for (auto& f : scans) {
    results.push_back(f.get());
  }
  for (const scanned& r : results) {
    if (!r.st) {
      return r.st;
    }
  }
  for (const scanned& r : results) {
    for (const segment_info& info : r.found) {
      auto it = index.find(info.key);
      if (it != index.end()) {
        std::string why = "also held in " + dirs[it->second.dir]->paths.root.string();
        if (status st = quarantine(*dirs[info.dir], path_of(info), why); !st) {
          return st;
        }
        continue;
      }
      index.emplace(info.key, info);
      dirs[info.dir]->segments += 1;
      dirs[info.dir]->used_bytes += info.size;
    }
  }
  return {};
}

result<std::unique_ptr<segment_store>> segment_store::open(options opts) {
  if (opts.data_dirs.empty()) {
    return make_error(errc::invalid_argument, "the store needs at least one data directory");
  }
  if (opts.max_segment_bytes == 0) {
    return make_error(errc::invalid_argument, "max_segment_bytes must be positive");
  }
  std::vector<fs::path> roots;
  for (const fs::path& p : opts.data_dirs) {
    std::error_code ec;
    fs::path abs = fs::absolute(p, ec).lexically_normal();
    if (ec || p.empty()) {
      return make_error(errc::invalid_argument, "bad data directory '" + p.string() + "'");
    }
    if (!abs.has_filename()) {
      abs = abs.parent_path();
    }
    if (std::find(roots.begin(), roots.end(), abs) != roots.end()) {
      return make_error(errc::invalid_argument, "data directory " + abs.string() + " given twice");
    }
    roots.push_back(abs);
  }
  auto p = std::make_unique<impl>(std::move(opts));
  for (fs::path& root : roots) {
    p->dirs.push_back(std::make_unique<impl::data_dir>(std::move(root)));
    if (status st = p->prepare_dir(*p->dirs.back()); !st) {
      return st.err();
    }
  }
  for (auto& d : p->dirs) {
    d->worker = std::make_unique<asio::thread_pool>(1);
  }
  if (status st = p->load(); !st) {
    return st.err();
  }
  p->logger->info("store open: {} segments in {} data directories", p->index.size(),
                  p->dirs.size());
  return std::unique_ptr<segment_store>(new segment_store(std::move(p)));
}

}  // namespace vodgrid::store
