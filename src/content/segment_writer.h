// The packager's output side: each segment written to a temporary file, hashed as written and made
// durable under its final name; the muxer's sink that switches from segment to segment and keeps
// the size limits; and the text of the VOD playlist. Private to src/content.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "content/packager.h"

extern "C" {
#include <libavformat/version.h>
}

namespace vodgrid::content {

namespace fs = std::filesystem;

// errno after a failed system call on `p`: errc::no_space for ENOSPC, errc::io_error otherwise.
error sys_error(std::string_view what, const fs::path& p);

// One segment being written: the muxer's bytes go to a temporary file and into the digest; commit
// makes it durable under its final name, "segNNNNN" and `ext` (".vtt" for subtitles). A segment
// never committed is unlinked.
class segment_writer {
 public:
  segment_writer(const fs::path& dir, uint32_t index, bool durable, std::string_view ext = ".ts")
      : durable_(durable),
        index_(index),
        name_(fmt::format("seg{:05d}{}", index, ext)),
        final_(dir / name_),
        tmp_(dir / ("." + name_ + ".tmp")) {}
  segment_writer(const segment_writer&) = delete;
  segment_writer& operator=(const segment_writer&) = delete;
  ~segment_writer() {
    if (fd_ >= 0) {
      ::close(fd_);
      ::unlink(tmp_.c_str());
    }
  }

  status open() {
    fd_ = ::open(tmp_.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      return sys_error("create", tmp_);
    }
    return {};
  }

  uint32_t index() const { return index_; }
  uint64_t size() const { return size_; }

  status write(const uint8_t* p, size_t n) {
    hasher_.update(std::string_view(reinterpret_cast<const char*>(p), n));
    size_ += n;
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) {
        continue;
      }
      if (w <= 0) {
        return sys_error("write", tmp_);
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
    return {};
  }

  result<packaged_segment> commit(double duration) {
    if (durable_ && ::fsync(fd_) != 0) {
      return sys_error("fsync", tmp_);
    }
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) {
      auto e = sys_error("close", tmp_);
      ::unlink(tmp_.c_str());
      return e;
    }
    if (::rename(tmp_.c_str(), final_.c_str()) != 0) {
      auto e = sys_error("rename", tmp_);
      ::unlink(tmp_.c_str());
      return e;
    }
    return packaged_segment{index_, duration, size_, hasher_.finish(), name_};
  }

  const fs::path& final_path() const { return final_; }

 private:
  bool durable_;
  uint32_t index_;
  std::string name_;
  fs::path final_;
  fs::path tmp_;
  int fd_ = -1;
  uint64_t size_ = 0;
  sha256_hasher hasher_;
};

#if LIBAVFORMAT_VERSION_MAJOR >= 61
using avio_write_buffer = const uint8_t*;  // FFmpeg 7 made the write callback's buffer const
#else
using avio_write_buffer = uint8_t*;
#endif

// The muxer's output: the current segment file, within the size limits. It keeps the first
// failure, since FFmpeg passes on only an AVERROR.
struct segment_sink {
  std::unique_ptr<segment_writer> current;
  uint64_t committed_bytes = 0;  // of the finished segments
  uint64_t max_segment = 0;
  uint64_t max_total = 0;
  std::optional<error> failure;

  int write(const uint8_t* buf, int size);  // bytes taken, or an AVERROR

  static int write_cb(void* opaque, avio_write_buffer buf, int size) {
    return static_cast<segment_sink*>(opaque)->write(buf, size);
  }
};

// The index.m3u8 of a VOD program of `segments` (RFC 8216): version 3, a target duration no
// shorter than any segment's duration rounded up, and each segment's EXTINF to the microsecond.
// Not api::write_vod_playlist: that one writes a station's playlist (URIs of the director's routes,
// from a manifest); this one the packager's folder (its own file names), which the loader reads.
std::string vod_playlist_text(const std::vector<packaged_segment>& segments);

// The output folder of a packaging run: created when missing (`created` set, so that a failure
// removes it again), refused when it is not a folder or holds anything.
status prepare_out_dir(const fs::path& dir, bool& created);

}  // namespace vodgrid::content
