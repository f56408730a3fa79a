// The store's public face (put, remove and preload hop to the directory's worker and back to the
// caller; find, list and stats read the index under the lock), the life of impl, and the per-key
// exclusion that serialises the puts and removes of one key.
#include "store/store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <random>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "store/impl.h"

namespace vodgrid::store {

namespace asio = boost::asio;
namespace fs = std::filesystem;

fs_space space_of(const fs::path& p) {
  struct statvfs v {};
  struct stat st {};
  if (::statvfs(p.c_str(), &v) != 0 || ::stat(p.c_str(), &st) != 0) {
    return {};
  }
  return {static_cast<uint64_t>(v.f_bavail) * v.f_frsize,
          static_cast<uint64_t>(v.f_blocks) * v.f_frsize, static_cast<uint64_t>(st.st_dev)};
}

segment_store::impl::impl(options o) : opts(std::move(o)), ops(opts.fs), logger(log::get("store")) {
  if (!ops) {
    ops = posix_file_ops();
  }
  std::random_device rd;
  name_prefix = (static_cast<uint64_t>(rd()) << 32) | rd();
}

segment_store::impl::~impl() {
  for (auto& d : dirs) {
    if (d->worker) {
      d->worker->join();
    }
    if (d->lock_fd >= 0) {
      ::close(d->lock_fd);
    }
  }
}

// --- per-key exclusion ---------------------------------------------------------------------------

asio::awaitable<segment_store::impl::key_guard> segment_store::impl::lock_key(segment_key key) {
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

void segment_store::impl::unlock_key(const segment_key& key) {
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

// --- the public face -----------------------------------------------------------------------------

segment_file::~segment_file() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

segment_store::segment_store(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

segment_store::~segment_store() = default;

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
    dir = impl_->reserve_dir(data.size());
    reserved.emplace(impl_->dirs[dir]->reserved, data.size());
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

// --- segments arriving over time ----------------------------------------------------------------

incoming_segment::~incoming_segment() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
  if (!committed_ && !tmp_.empty()) {
    ::unlink(tmp_.c_str());  // best effort: open() empties tmp/ anyway
  }
  if (reserved_) {
    reserved_->fetch_sub(size_);
  }
}

status incoming_segment::append(std::string_view data) {
  if (failed_) {
    return make_error(errc::invalid_argument, key_.str() + ": an earlier write failed");
  }
  if (data.size() > size_ - written_) {
    return make_error(errc::invalid_argument,
                      fmt::format("{}: {} bytes at {} pass its size {}", key_.str(), data.size(),
                                  written_, size_));
  }
  hasher_.update(data);
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd_, data.data(), data.size(), static_cast<off_t>(written_));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      failed_ = true;
      return layout::sys_error("write", tmp_, n < 0 ? errno : ENOSPC);
    }
    data.remove_prefix(static_cast<size_t>(n));
    written_ += static_cast<uint64_t>(n);
  }
  return {};
}

result<std::shared_ptr<incoming_segment>> segment_store::begin_put(segment_key key, uint64_t size) {
  if (size > impl_->opts.max_segment_bytes) {
    return make_error(errc::too_large, fmt::format("{}: {} bytes, the limit is {}", key.str(), size,
                                                   impl_->opts.max_segment_bytes));
  }
  if (size == 0) {
    return make_error(errc::invalid_argument, key.str() + ": an empty segment");
  }
  std::shared_ptr<incoming_segment> in(new incoming_segment());
  in->key_ = std::move(key);
  in->dir_ = impl_->reserve_dir(size);
  in->reserved_ = impl_->dirs[in->dir_]->reserved;
  in->size_ = size;
  in->tmp_ = impl_->dirs[in->dir_]->paths.tmp / (impl_->next_name() + ".tmp");
  in->fd_ = ::open(in->tmp_.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0644);
  if (in->fd_ < 0) {
    return layout::sys_error("create", in->tmp_, errno);
  }
  if (::ftruncate(in->fd_, static_cast<off_t>(size)) != 0) {
    return layout::sys_error("truncate", in->tmp_, errno);
  }
  return in;
}

asio::awaitable<result<segment_info>> segment_store::commit(std::shared_ptr<incoming_segment> in,
                                                            sha256_digest expected) {
  if (in->failed_ || in->written_ != in->size_) {
    co_return make_error(errc::invalid_argument,
                         fmt::format("{}: {} of {} bytes written{}", in->key_.str(), in->written_,
                                     in->size_, in->failed_ ? ", the last write failed" : ""));
  }
  if (!in->digest_) {
    in->digest_ = in->hasher_.finish();
  }
  sha256_digest actual = *in->digest_;
  auto caller = co_await asio::this_coro::executor;
  impl::key_guard guard = co_await impl_->lock_key(in->key());
  std::optional<segment_info> held = find(in->key());

  co_await asio::post(asio::bind_executor(impl_->worker_of(in->dir_), asio::use_awaitable));
  result<segment_info> r = impl_->commit_on_worker(
      impl::incoming_file{in->key_, in->size_, in->dir_, in->tmp_}, actual, expected, held);
  if (r && !held) {
    in->committed_ = true;  // renamed into place; its bytes now count as used, not reserved
    in->reserved_->fetch_sub(in->size_);
    in->reserved_.reset();
  }
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
