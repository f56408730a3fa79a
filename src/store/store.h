// The segment store of one engine: segments kept as files over one or more data directories, each
// directory an independent I/O channel with its own worker thread (claim 3). A segment counts as
// held only once its bytes matched their SHA-256 and were made durable (temp file, fsync, rename,
// fsync of the directory); a file left by a crash before the rename is never served.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "base/ids.h"
#include "base/result.h"
#include "base/sha256.h"

namespace vodgrid::store {

// What the store knows of one held segment.
struct segment_info {
  segment_key key;
  uint64_t size = 0;
  sha256_digest sha256{};
  uint32_t dir = 0;  // index into options::data_dirs
};

// File operations the store performs, behind an interface so that tests can inject faults (no
// space, a failed fsync, a crash between write and rename). All paths are absolute.
class file_ops {
 public:
  virtual ~file_ops() = default;
  // Creates `path` exclusively and writes all of `data`; returns errc::no_space on ENOSPC.
  virtual status write_file(const std::filesystem::path& path, std::string_view data) = 0;
  virtual status fsync_file(const std::filesystem::path& path) = 0;
  virtual status rename(const std::filesystem::path& from, const std::filesystem::path& to) = 0;
  virtual status fsync_dir(const std::filesystem::path& dir) = 0;
  // errc::not_found if `path` does not exist.
  virtual status remove(const std::filesystem::path& path) = 0;
};
std::unique_ptr<file_ops> posix_file_ops();

struct options {
  std::vector<std::filesystem::path> data_dirs;  // at least one; created if missing
  uint64_t max_segment_bytes = 64 << 20;         // larger puts are refused with errc::too_large
  bool verify_on_open = false;                   // re-hash every file when opening (slow)
  std::shared_ptr<file_ops> fs;                  // null: posix_file_ops()
};

// An open file of a held segment, for sendfile. Owns the descriptor.
class segment_file {
 public:
  segment_file(int fd, uint64_t size) : fd_(fd), size_(size) {}
  segment_file(segment_file&& o) noexcept : fd_(std::exchange(o.fd_, -1)), size_(o.size_) {}
  segment_file& operator=(segment_file&&) = delete;
  segment_file(const segment_file&) = delete;
  ~segment_file();
  int fd() const { return fd_; }
  uint64_t size() const { return size_; }

 private:
  int fd_ = -1;
  uint64_t size_ = 0;
};

// A segment written as it arrives (an engine's copy from another engine): a temp file in the data
// directory chosen for it, sized at once (sparse), its bytes appended in order by its one writer,
// hashed as they are appended, and readable behind the written offset through fd() (sendfile, a
// read-only mapping). Nothing is held until segment_store::commit; dropped uncommitted, the temp
// file goes with it. It needs nothing of
// the store once made: it may outlive it (an engine's last cut-through reply).
// Threading: one writer thread; fd() may be read from any.
class incoming_segment {
 public:
  incoming_segment(const incoming_segment&) = delete;
  incoming_segment& operator=(const incoming_segment&) = delete;
  ~incoming_segment();
  const segment_key& key() const { return key_; }
  uint64_t size() const { return size_; }
  int fd() const { return fd_; }  // read-write, the file's full size from the start
  uint64_t written() const { return written_; }
  // Writes `data` at written() and hashes it (pwrite, into the page cache; it blocks only when the
  // kernel throttles writers of dirty pages). Errors: invalid_argument past the size, no_space,
  // io_error (the segment cannot be committed after one).
  status append(std::string_view data);

 private:
  friend class segment_store;
  incoming_segment() = default;
  segment_key key_;
  uint64_t size_ = 0;
  uint64_t written_ = 0;
  sha256_hasher hasher_;                 // of the bytes appended so far: commit needs no read back
  std::optional<sha256_digest> digest_;  // the hasher's, once finished (at the first commit)
  bool failed_ = false;                  // an append failed part way: the file's bytes are unknown
  int fd_ = -1;
  uint32_t dir_ = 0;
  std::filesystem::path tmp_;
  bool committed_ = false;  // renamed into place: not the temp file's to remove any more
  // The bytes set aside on the directory for its choice, handed back at commit or destruction.
  std::shared_ptr<std::atomic<uint64_t>> reserved_;
};

struct dir_stats {
  std::filesystem::path path;
  uint64_t segments = 0;
  uint64_t used_bytes = 0;
  uint64_t free_bytes = 0;  // statvfs f_bavail * f_frsize
  uint64_t total_bytes = 0;
  uint64_t device = 0;  // st_dev: directories on one filesystem share it
};

// The bytes of the segments of every directory, and the free and total bytes of the filesystems
// under them, each filesystem counted once however many directories it holds.
struct space_totals {
  uint64_t used_bytes = 0;
  uint64_t free_bytes = 0;
  uint64_t total_bytes = 0;
};
space_totals totals(const std::vector<dir_stats>& dirs);

// Thread-safety: every member may be called from any thread; the index is guarded by one mutex.
// The awaitable members run their disk work on the chosen directory's worker and resume on the
// caller's executor. Every awaitable must have completed before the store is destroyed; the
// destructor joins the workers. A data directory is open in at most one store (D/LOCK, flock);
// open() of a directory in use is errc::conflict.
class segment_store {
 public:
  // Creates missing directories, removes leftover temp files, and rebuilds the index from the
  // files on disk (files whose name or size does not match are moved aside to <dir>/quarantine).
  static result<std::unique_ptr<segment_store>> open(options opts);
  ~segment_store();

  // Stores `data` as `key` if its SHA-256 is `expected`; nothing is written on a mismatch
  // (errc::digest_mismatch). Putting a segment already held with the same digest succeeds without
  // writing; with another digest it is errc::conflict. The directory is the one with the most
  // free space; directories on one filesystem share its free space, so among them the one holding
  // the fewest bytes. Puts and removes of one key are serialised: a put that finds another put or
  // remove of its key in progress waits for it, then answers as if it had come after it (same
  // digest: the held info; another digest: errc::conflict; the first failed: it writes itself).
  // Errors: too_large, digest_mismatch, conflict, no_space, io_error (nothing is held then).
  boost::asio::awaitable<result<segment_info>> put(segment_key key, std::string data,
                                                   sha256_digest expected);
  // Starts a segment that arrives over time: its temp file, `size` bytes, on the directory put()
  // would choose. Errors: too_large, invalid_argument (size 0), no_space, io_error.
  result<std::shared_ptr<incoming_segment>> begin_put(segment_key key, uint64_t size);
  // Makes a whole incoming segment held as put() does (the digest of the appended bytes checked,
  // then on the directory's worker fsync, rename, directory fsync; held already: as put()
  // answers). The segment's fd stays valid, now the held file's. Errors: as put()'s, and
  // invalid_argument for a segment not wholly appended or whose last append failed.
  boost::asio::awaitable<result<segment_info>> commit(std::shared_ptr<incoming_segment> in,
                                                      sha256_digest expected);
  // Removes a held segment (errc::not_found if not held). An io_error from the directory fsync
  // after the unlink still leaves the segment removed (the listener has been told).
  boost::asio::awaitable<status> remove(segment_key key);
  // Asks the kernel to bring the segment into the page cache (posix_fadvise WILLNEED + readahead).
  boost::asio::awaitable<status> preload(segment_key key);

  std::optional<segment_info> find(const segment_key& key) const;
  result<segment_file> open_segment(const segment_key& key) const;
  std::vector<segment_info> list() const;
  std::vector<dir_stats> stats() const;

  // Called (from the worker thread of the segment's directory, outside the lock, before the put or
  // remove resumes its caller) after a segment is added or removed; not for an idempotent put.
  // It must not block for long: it holds up that directory's I/O.
  using listener = std::function<void(const segment_info&, bool added)>;
  void set_listener(listener l);

 private:
  struct impl;
  explicit segment_store(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace vodgrid::store
