// The segment store: an in-memory index over the segment files of every data directory, durable
// puts through file_ops, and one worker thread per directory so that each is its own I/O channel.
#include "store/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <exception>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "base/log.h"
#include "store/layout_impl.h"

namespace vodgrid::store {

namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

struct fs_space {
  uint64_t free_bytes = 0;
  uint64_t total_bytes = 0;
  uint64_t device = 0;
};

fs_space space_of(const fs::path& p) {
  struct statvfs v {};
  struct stat st {};
  if (::statvfs(p.c_str(), &v) != 0 || ::stat(p.c_str(), &st) != 0) {
    return {};
  }
  return {static_cast<uint64_t>(v.f_bavail) * v.f_frsize,
          static_cast<uint64_t>(v.f_blocks) * v.f_frsize, static_cast<uint64_t>(st.st_dev)};
}

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

// Wakes an operation that waits for another operation on the same key to finish.
using key_waiter = asio::experimental::concurrent_channel<void(boost::system::error_code)>;

}  // namespace

struct segment_store::impl {
  struct data_dir {
    explicit data_dir(fs::path root) : paths(std::move(root)) {}
    layout::dir_paths paths;
    dev_t device = 0;
    int lock_fd = -1;
    std::unique_ptr<asio::thread_pool> worker;  // one thread: this directory's I/O channel
    // Guarded by impl::mu.
    uint64_t segments = 0;
    uint64_t used_bytes = 0;
    uint64_t reserved_bytes = 0;  // puts in progress
  };

  // While held, no other put or remove of the key runs; the index entry of the key cannot change.
  class key_guard {
   public:
    key_guard(impl* p, segment_key key) : p_(p), key_(std::move(key)) {}
    key_guard(key_guard&& o) noexcept : p_(std::exchange(o.p_, nullptr)), key_(std::move(o.key_)) {}
    key_guard& operator=(key_guard&&) = delete;
    ~key_guard() { release(); }
    void release() {
      if (p_ != nullptr) {
        std::exchange(p_, nullptr)->unlock_key(key_);
      }
    }

   private:
    impl* p_;
    segment_key key_;
  };

  // Bytes set aside on a directory by a put in progress, for the choice of directory.
  class reservation {
   public:
    reservation(impl* p, uint32_t dir, uint64_t bytes) : p_(p), dir_(dir), bytes_(bytes) {}
    reservation(reservation&& o) noexcept
        : p_(std::exchange(o.p_, nullptr)), dir_(o.dir_), bytes_(o.bytes_) {}
    reservation& operator=(reservation&&) = delete;
    ~reservation() {
      if (p_ != nullptr) {
        std::lock_guard lock(p_->mu);
        p_->dirs[dir_]->reserved_bytes -= bytes_;
      }
    }

   private:
    impl* p_;
    uint32_t dir_;
    uint64_t bytes_;
  };

  explicit impl(options o) : opts(std::move(o)), ops(opts.fs), logger(log::get("store")) {
    if (!ops) {
      ops = posix_file_ops();
    }
    std::random_device rd;
    name_prefix = (static_cast<uint64_t>(rd()) << 32) | rd();
  }

  ~impl() {
    for (auto& d : dirs) {
      if (d->worker) {
        d->worker->join();
      }
      if (d->lock_fd >= 0) {
        ::close(d->lock_fd);
      }
    }
  }

  asio::any_io_executor worker_of(uint32_t dir) const { return dirs[dir]->worker->get_executor(); }

  fs::path path_of(const segment_info& info) const {
    return layout::segment_path(dirs[info.dir]->paths, info.key, info.size, info.sha256);
  }

  std::string next_name() { return fmt::format("{:016x}-{}", name_prefix, name_seq++); }

  // --- opening ---------------------------------------------------------------------------------

  status prepare_dir(data_dir& d) {
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
  status quarantine(const data_dir& d, const fs::path& path, std::string_view why) {
    std::string leaf = path.filename().string();
    if (path.parent_path() != d.paths.seg) {
      leaf = path.parent_path().filename().string() + "_" + leaf;
    }
    fs::path to = d.paths.quarantine / (next_name() + "-" + leaf.substr(0, 160));
    logger->warn("quarantining {}: {}", path.string(), why);
    return ops->rename(path, to);
  }

  struct scanned {
    status st;
    std::vector<segment_info> found;
  };

  // Runs on the directory's worker: empties tmp/ and lists the good segments of seg/, moving the
  // bad ones aside.
  scanned scan_dir(uint32_t dir) {
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

  status scan_program_dir(uint32_t dir, const program_id& program, const fs::path& pdir,
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
      found.push_back(
          segment_info{segment_key{program, name->index}, name->size, name->sha256, dir});
    }
    return {};
  }

  // Scans every directory in parallel on its worker, then builds the index; a key found in two
  // directories is kept in the first and moved aside in the other.
  status load() {
    std::vector<std::future<scanned>> scans;
    for (uint32_t i = 0; i < dirs.size(); ++i) {
      auto task =
          std::make_shared<std::packaged_task<scanned()>>([this, i] { return scan_dir(i); });
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

  // --- per-key exclusion -----------------------------------------------------------------------

  asio::awaitable<key_guard> lock_key(segment_key key) {
    auto ex = co_await asio::this_coro::executor;
    for (;;) {
      std::shared_ptr<key_waiter> waiter;
      {
        std::lock_guard lock(mu);
        auto [it, inserted] = busy.try_emplace(key);
        if (!inserted) {
          waiter = std::make_shared<key_waiter>(ex, 1);
          it->second.push_back(waiter);
        }
      }
      if (!waiter) {
        co_return key_guard(this, std::move(key));
      }
      co_await waiter->async_receive(asio::use_awaitable);
    }
  }

  void unlock_key(const segment_key& key) {
    std::vector<std::shared_ptr<key_waiter>> waiters;
    {
      std::lock_guard lock(mu);
      auto it = busy.find(key);
      if (it == busy.end()) {
        return;
      }
      waiters = std::move(it->second);
      busy.erase(it);
    }
    for (auto& w : waiters) {
      w->try_send(boost::system::error_code{});
    }
  }

  // --- put and remove, on the worker of the directory ------------------------------------------

  // Picks the directory for a new segment and reserves `bytes` on it. Free space belongs to a
  // filesystem, so filesystems are compared by free space less the puts in flight on them, and the
  // directories of one filesystem by the bytes they hold.
  uint32_t choose_dir(uint64_t bytes) {
    std::vector<fs_space> space;
    for (const auto& d : dirs) {
      space.push_back(space_of(d->paths.root));
    }
    std::lock_guard lock(mu);
    auto fs_free = [&](size_t i) {
      uint64_t reserved = 0;
      for (const auto& d : dirs) {
        if (d->device == dirs[i]->device) {
          reserved += d->reserved_bytes;
        }
      }
      return space[i].free_bytes > reserved ? space[i].free_bytes - reserved : 0;
    };
    size_t best_fs = 0;
    for (size_t i = 1; i < dirs.size(); ++i) {
      if (fs_free(i) > fs_free(best_fs)) {
        best_fs = i;
      }
    }
    std::optional<size_t> best;
    for (size_t i = 0; i < dirs.size(); ++i) {
      const data_dir& d = *dirs[i];
      if (d.device != dirs[best_fs]->device) {
        continue;
      }
      if (!best ||
          d.used_bytes + d.reserved_bytes < dirs[*best]->used_bytes + dirs[*best]->reserved_bytes) {
        best = i;
      }
    }
    dirs[*best]->reserved_bytes += bytes;
    return static_cast<uint32_t>(*best);
  }

  // Best effort: the file was not acknowledged, and open() would clean up a temp file anyway.
  void discard(const fs::path& path) {
    status st = ops->remove(path);
    if (!st && st.err().code != errc::not_found) {
      logger->warn("cannot remove {}: {}", path.string(), st.err().detail);
    }
  }

  status make_program_dir(const data_dir& d, const fs::path& pdir) {
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
  status write_durably(const segment_info& info, std::string_view data) {
    const data_dir& d = *dirs[info.dir];
    fs::path tmp = d.paths.tmp / (next_name() + ".tmp");
    fs::path pdir = layout::program_dir(d.paths, info.key.program);
    fs::path final_path = path_of(info);
    status st = ops->write_file(tmp, data);
    if (st) {
      st = ops->fsync_file(tmp);
    }
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

  result<segment_info> put_on_worker(const segment_key& key, std::string_view data,
                                     const sha256_digest& expected, uint32_t dir,
                                     const std::optional<segment_info>& held) {
    sha256_digest actual = sha256(data);
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
    segment_info info{key, data.size(), expected, dir};
    if (status st = write_durably(info, data); !st) {
      logger->warn("put {} into {} failed: {}", key.str(), dirs[dir]->paths.root.string(),
                   st.err().detail);
      return st.err();
    }
    std::lock_guard lock(mu);
    index.emplace(key, info);
    dirs[dir]->segments += 1;
    dirs[dir]->used_bytes += info.size;
    return info;
  }

  // Returns whether the segment left the index (it has, once its file is unlinked, even if the
  // directory fsync then fails).
  std::pair<status, bool> remove_on_worker(const segment_info& info) {
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

  void notify(const segment_info& info, bool added) {
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

  options opts;
  std::shared_ptr<file_ops> ops;
  std::shared_ptr<spdlog::logger> logger;
  std::vector<std::unique_ptr<data_dir>> dirs;
  uint64_t name_prefix = 0;
  std::atomic<uint64_t> name_seq{0};

  mutable std::mutex mu;  // guards index, busy, on_change and the counters of every data_dir
  std::map<segment_key, segment_info> index;
  std::map<segment_key, std::vector<std::shared_ptr<key_waiter>>> busy;
  listener on_change;
};

segment_file::~segment_file() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

segment_store::segment_store(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

segment_store::~segment_store() = default;

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

asio::awaitable<result<segment_info>> segment_store::put(segment_key key, std::string data,
                                                         sha256_digest expected) {
  if (data.size() > impl_->opts.max_segment_bytes) {
    co_return make_error(errc::too_large, fmt::format("{}: {} bytes, the limit is {}", key.str(),
                                                      data.size(), impl_->opts.max_segment_bytes));
  }
  auto caller = co_await asio::this_coro::executor;
  impl::key_guard guard = co_await impl_->lock_key(key);
  std::optional<segment_info> held = find(key);
  std::optional<impl::reservation> reserved;
  uint32_t dir = 0;
  if (held) {
    dir = held->dir;
  } else {
    dir = impl_->choose_dir(data.size());
    reserved.emplace(impl_.get(), dir, data.size());
  }

  co_await asio::post(asio::bind_executor(impl_->worker_of(dir), asio::use_awaitable));
  result<segment_info> r = impl_->put_on_worker(key, data, expected, dir, held);
  reserved.reset();
  guard.release();
  if (r && !held) {
    impl_->notify(*r, true);
  }
  co_await asio::post(asio::bind_executor(caller, asio::use_awaitable));
  co_return r;
}

asio::awaitable<status> segment_store::remove(segment_key key) {
  auto caller = co_await asio::this_coro::executor;
  impl::key_guard guard = co_await impl_->lock_key(key);
  std::optional<segment_info> held = find(key);
  if (!held) {
    co_return make_error(errc::not_found, key.str() + " is not held");
  }

  co_await asio::post(asio::bind_executor(impl_->worker_of(held->dir), asio::use_awaitable));
  auto [st, removed] = impl_->remove_on_worker(*held);
  guard.release();
  if (removed) {
    impl_->notify(*held, false);
  }
  co_await asio::post(asio::bind_executor(caller, asio::use_awaitable));
  co_return st;
}

asio::awaitable<status> segment_store::preload(segment_key key) {
  std::optional<segment_info> held = find(key);
  if (!held) {
    co_return make_error(errc::not_found, key.str() + " is not held");
  }
  auto caller = co_await asio::this_coro::executor;

  co_await asio::post(asio::bind_executor(impl_->worker_of(held->dir), asio::use_awaitable));
  status st;
  fs::path path = impl_->path_of(*held);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    st = errno == ENOENT ? make_error(errc::not_found, key.str() + " was removed")
                         : layout::sys_error("open", path, errno);
  } else {
    // Both are hints: a filesystem that ignores them still serves the segment.
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
    ::readahead(fd, 0, held->size);
    ::close(fd);
  }
  co_await asio::post(asio::bind_executor(caller, asio::use_awaitable));
  co_return st;
}

std::optional<segment_info> segment_store::find(const segment_key& key) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->index.find(key);
  if (it == impl_->index.end()) {
    return std::nullopt;
  }
  return it->second;
}

result<segment_file> segment_store::open_segment(const segment_key& key) const {
  std::optional<segment_info> held = find(key);
  if (!held) {
    return make_error(errc::not_found, key.str() + " is not held");
  }
  fs::path path = impl_->path_of(*held);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return make_error(errc::not_found, key.str() + " was removed");
    }
    return layout::sys_error("open", path, errno);
  }
  return segment_file(fd, held->size);
}

std::vector<segment_info> segment_store::list() const {
  std::lock_guard lock(impl_->mu);
  std::vector<segment_info> out;
  out.reserve(impl_->index.size());
  for (const auto& [key, info] : impl_->index) {
    out.push_back(info);
  }
  return out;
}

std::vector<dir_stats> segment_store::stats() const {
  std::vector<dir_stats> out;
  {
    std::lock_guard lock(impl_->mu);
    for (const auto& d : impl_->dirs) {
      out.push_back(dir_stats{d->paths.root, d->segments, d->used_bytes, 0, 0});
    }
  }
  for (dir_stats& s : out) {
    fs_space space = space_of(s.path);
    s.free_bytes = space.free_bytes;
    s.total_bytes = space.total_bytes;
    s.device = space.device;
  }
  return out;
}

space_totals totals(const std::vector<dir_stats>& dirs) {
  space_totals t;
  std::vector<uint64_t> seen;
  for (const dir_stats& d : dirs) {
    t.used_bytes += d.used_bytes;
    if (std::find(seen.begin(), seen.end(), d.device) == seen.end()) {
      seen.push_back(d.device);
      t.free_bytes += d.free_bytes;
      t.total_bytes += d.total_bytes;
    }
  }
  return t;
}

void segment_store::set_listener(listener l) {
  std::lock_guard lock(impl_->mu);
  impl_->on_change = std::move(l);
}

}  // namespace vodgrid::store
