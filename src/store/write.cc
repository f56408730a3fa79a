// Put and remove: the choice of data directory for a new segment, and the work each does on its
// directory's worker (the durable write of temp file, fsync, rename and directory fsync; the
// unlink), updating the index and telling the listener once the disk says it is done.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <exception>

#include "store/impl.h"

namespace vodgrid::store {

namespace fs = std::filesystem;

size_t choose_dir(const std::vector<dir_load>& dirs) {
  auto fs_free = [&](size_t i) {
    uint64_t reserved = 0;
    for (const dir_load& d : dirs) {
      if (d.device == dirs[i].device) {
        reserved += d.reserved_bytes;
      }
    }
    return dirs[i].free_bytes > reserved ? dirs[i].free_bytes - reserved : 0;
  };
  size_t best_fs = 0;
  for (size_t i = 1; i < dirs.size(); ++i) {
    if (fs_free(i) > fs_free(best_fs)) {
      best_fs = i;
    }
  }
  std::optional<size_t> best;
  for (size_t i = 0; i < dirs.size(); ++i) {
    const dir_load& d = dirs[i];
    if (d.device != dirs[best_fs].device) {
      continue;
    }
    if (!best ||
        d.used_bytes + d.reserved_bytes < dirs[*best].used_bytes + dirs[*best].reserved_bytes) {
      best = i;
    }
  }
  return *best;
}

// statvfs runs outside the lock: it may block on the disk.
uint32_t segment_store::impl::reserve_dir(uint64_t bytes) {
  std::vector<fs_space> space;
  for (const auto& d : dirs) {
    space.push_back(space_of(d->paths.root));
  }
  std::lock_guard lock(mu);
  std::vector<dir_load> loads;
  for (size_t i = 0; i < dirs.size(); ++i) {
    const data_dir& d = *dirs[i];
    loads.push_back(dir_load{d.device, space[i].free_bytes, d.used_bytes, d.reserved->load()});
  }
  size_t best = choose_dir(loads);
  dirs[best]->reserved->fetch_add(bytes);
  return static_cast<uint32_t>(best);
}

// Best effort: the file was not acknowledged, and open() would clean up a temp file anyway.
void segment_store::impl::discard(const fs::path& path) {
  status st = ops->remove(path);
  if (!st && st.err().code != errc::not_found) {
    logger->warn("cannot remove {}: {}", path.string(), st.err().detail);
  }
}

status segment_store::impl::make_program_dir(const data_dir& d, const fs::path& pdir) {
  if (::mkdir(pdir.c_str(), 0755) == 0) {
    status st = ops->fsync_dir(d.paths.seg);
    if (!st) {
      ::rmdir(pdir.c_str());
    }
    return st;
  }
  if (errno == EEXIST) {
    return {};
  }
  return layout::sys_error("mkdir", pdir, errno);
}

// Temp file, fsync, rename into place, fsync of the directory. On any failure nothing is left
// under the final name, and the temp file is removed.
status segment_store::impl::write_durably(const segment_info& info, std::string_view data) {
  fs::path tmp = dirs[info.dir]->paths.tmp / (next_name() + ".tmp");
  status st = ops->write_file(tmp, data);
  if (!st) {
    discard(tmp);
    return st;
  }
  return commit_durably(info, tmp);
}

status segment_store::impl::commit_durably(const segment_info& info, const fs::path& tmp) {
  const data_dir& d = *dirs[info.dir];
  fs::path pdir = layout::program_dir(d.paths, info.key.program);
  fs::path final_path = path_of(info);
  status st = ops->fsync_file(tmp);
  if (st) {
    st = make_program_dir(d, pdir);
  }
  if (st) {
    st = ops->rename(tmp, final_path);
  }
  if (!st) {
    discard(tmp);
    return st;
  }
  st = ops->fsync_dir(pdir);
  if (!st) {
    discard(final_path);
    return st;
  }
  return {};
}

std::optional<result<segment_info>> segment_store::impl::check_arrival(
    const segment_key& key, const sha256_digest& actual, const sha256_digest& expected,
    const std::optional<segment_info>& held) {
  if (actual != expected) {
    return make_error(errc::digest_mismatch, key.str() + ": sha256 is " + to_hex(actual) +
                                                 ", expected " + to_hex(expected));
  }
  if (held) {
    if (held->sha256 == expected) {
      return *held;
    }
    return make_error(errc::conflict,
                      key.str() + " is already held with sha256 " + to_hex(held->sha256));
  }
  return std::nullopt;
}

void segment_store::impl::index_held(const segment_info& info) {
  std::lock_guard lock(mu);
  index.emplace(info.key, info);
  dirs[info.dir]->segments += 1;
  dirs[info.dir]->used_bytes += info.size;
}

result<segment_info> segment_store::impl::put_on_worker(const segment_key& key,
                                                        std::string_view data,
                                                        const sha256_digest& expected, uint32_t dir,
                                                        const std::optional<segment_info>& held) {
  if (auto answer = check_arrival(key, sha256(data), expected, held)) {
    return *answer;
  }
  segment_info info{key, data.size(), expected, dir};
  if (status st = write_durably(info, data); !st) {
    logger->warn("put {} into {} failed: {}", key.str(), dirs[dir]->paths.root.string(),
                 st.err().detail);
    return st.err();
  }
  index_held(info);
  return info;
}

result<segment_info> segment_store::impl::commit_on_worker(
    const incoming_file& in, const sha256_digest& actual, const sha256_digest& expected,
    const std::optional<segment_info>& held) {
  if (auto answer = check_arrival(in.key, actual, expected, held)) {
    return *answer;
  }
  segment_info info{in.key, in.size, expected, in.dir};
  if (status st = commit_durably(info, in.tmp); !st) {
    logger->warn("commit {} into {} failed: {}", in.key.str(), dirs[in.dir]->paths.root.string(),
                 st.err().detail);
    return st.err();
  }
  index_held(info);
  return info;
}

// Returns whether the segment left the index (it has, once its file is unlinked, even if the
// directory fsync then fails).
std::pair<status, bool> segment_store::impl::remove_on_worker(const segment_info& info) {
  fs::path path = path_of(info);
  status st = ops->remove(path);
  if (!st && st.err().code != errc::not_found) {
    return {st, false};
  }
  {
    std::lock_guard lock(mu);
    index.erase(info.key);
    dirs[info.dir]->segments -= 1;
    dirs[info.dir]->used_bytes -= info.size;
  }
  st = ops->fsync_dir(layout::program_dir(dirs[info.dir]->paths, info.key.program));
  return {st, true};
}

void segment_store::impl::notify(const segment_info& info, bool added) {
  listener l;
  {
    std::lock_guard lock(mu);
    l = on_change;
  }
  if (!l) {
    return;
  }
  try {
    l(info, added);
  } catch (const std::exception& e) {
    logger->error("segment listener threw on {}: {}", info.key.str(), e.what());
  }
}

}  // namespace vodgrid::store
