// Private to the store: segment_store::impl, the state that its three files share (open.cc opens
// the data directories and rebuilds the index, write.cc puts and removes on a directory's worker,
// store.cc is the public face), and the pure choice of a data directory for a new segment.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/thread_pool.hpp>

#include "base/log.h"
#include "store/layout_impl.h"
#include "store/store.h"

namespace vodgrid::store {

struct fs_space {
  uint64_t free_bytes = 0;
  uint64_t total_bytes = 0;
  uint64_t device = 0;
};
// statvfs and stat of `p`; all zero if either fails.
fs_space space_of(const std::filesystem::path& p);

// What the choice of directory reads of one data directory.
struct dir_load {
  uint64_t device = 0;          // directories on one filesystem share it
  uint64_t free_bytes = 0;      // of the directory's filesystem
  uint64_t used_bytes = 0;      // held segments
  uint64_t reserved_bytes = 0;  // puts in progress
};
// The index of the directory for a new segment. Free space belongs to a filesystem, so filesystems
// are compared by free space less the puts in flight on all their directories, and the directories
// of the winning filesystem by the bytes they hold and have reserved; ties go to the first.
// Precondition: `dirs` is not empty.
size_t choose_dir(const std::vector<dir_load>& dirs);

// Wakes an operation that waits for another operation on the same key to finish.
using key_waiter = boost::asio::experimental::concurrent_channel<void(boost::system::error_code)>;

struct segment_store::impl {
  struct data_dir {
    explicit data_dir(std::filesystem::path root) : paths(std::move(root)) {}
    layout::dir_paths paths;
    dev_t device = 0;
    int lock_fd = -1;
    std::unique_ptr<boost::asio::thread_pool> worker;  // one thread: this directory's I/O channel
    // Guarded by impl::mu.
    uint64_t segments = 0;
    uint64_t used_bytes = 0;
    // Puts in progress; shared with the incoming segments, which may outlive the store.
    std::shared_ptr<std::atomic<uint64_t>> reserved = std::make_shared<std::atomic<uint64_t>>(0);
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
    reservation(std::shared_ptr<std::atomic<uint64_t>> r, uint64_t bytes)
        : r_(std::move(r)), bytes_(bytes) {}
    reservation(reservation&& o) noexcept : r_(std::move(o.r_)), bytes_(o.bytes_) {}
    reservation& operator=(reservation&&) = delete;
    ~reservation() {
      if (r_) {
        r_->fetch_sub(bytes_);
      }
    }

   private:
    std::shared_ptr<std::atomic<uint64_t>> r_;
    uint64_t bytes_;
  };

  explicit impl(options o);
  ~impl();

  boost::asio::any_io_executor worker_of(uint32_t dir) const {
    return dirs[dir]->worker->get_executor();
  }

  std::filesystem::path path_of(const segment_info& info) const {
    return layout::segment_path(dirs[info.dir]->paths, info.key, info.size, info.sha256);
  }

  std::string next_name() { return fmt::format("{:016x}-{}", name_prefix, name_seq++); }

  // --- opening (open.cc) -------------------------------------------------------------------------

  // Creates the directories of `d`, takes its lock and records its device.
  status prepare_dir(data_dir& d);
  // Moves a bad file or directory of `d` aside.
  status quarantine(const data_dir& d, const std::filesystem::path& path, std::string_view why);

  struct scanned {
    status st;
    std::vector<segment_info> found;
  };
  // Runs on the directory's worker: empties tmp/ and lists the good segments of seg/, moving the
  // bad ones aside.
  scanned scan_dir(uint32_t dir);
  status scan_program_dir(uint32_t dir, const program_id& program,
                          const std::filesystem::path& pdir, std::vector<segment_info>& found);
  // Scans every directory in parallel on its worker, then builds the index.
  status load();

  // --- per-key exclusion (store.cc) --------------------------------------------------------------

  boost::asio::awaitable<key_guard> lock_key(segment_key key);
  void unlock_key(const segment_key& key);

  // --- put and remove, on the worker of the directory (write.cc) ---------------------------------

  // Picks the directory for a new segment (choose_dir) and reserves `bytes` on it; the caller
  // hands the bytes back through a `reservation` (or an incoming_segment).
  uint32_t reserve_dir(uint64_t bytes);
  void discard(const std::filesystem::path& path);
  status make_program_dir(const data_dir& d, const std::filesystem::path& pdir);
  status write_durably(const segment_info& info, std::string_view data);
  // fsync of the temp file `tmp`, the program directory, the rename into place, the directory's
  // fsync; on a failure nothing is left under the final name (write_durably's second half).
  status commit_durably(const segment_info& info, const std::filesystem::path& tmp);
  // On the worker: the digest `actual` of the bytes checked against `expected`, then the data
  // written (put) or the incoming file committed, the index told. Held already: as put() answers.
  struct incoming_file {
    const segment_key& key;
    uint64_t size;
    uint32_t dir;
    const std::filesystem::path& tmp;
  };
  result<segment_info> commit_on_worker(const incoming_file& in, const sha256_digest& actual,
                                        const sha256_digest& expected,
                                        const std::optional<segment_info>& held);
  result<segment_info> put_on_worker(const segment_key& key, std::string_view data,
                                     const sha256_digest& expected, uint32_t dir,
                                     const std::optional<segment_info>& held);
  // What put and commit share: nullopt when the bytes are to be held, else the answer (the held
  // info again, or digest_mismatch / conflict).
  static std::optional<result<segment_info>> check_arrival(const segment_key& key,
                                                           const sha256_digest& actual,
                                                           const sha256_digest& expected,
                                                           const std::optional<segment_info>& held);
  // Records a segment made durable on disk in the index and its directory's counts.
  void index_held(const segment_info& info);
  std::pair<status, bool> remove_on_worker(const segment_info& info);
  // Tells the listener, if any, that `info` was added or removed.
  void notify(const segment_info& info, bool added);

  // Set at open, then read-only (name_seq is atomic).
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

}  // namespace vodgrid::store
