#include "content/fetch.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include "api/hls.h"
#include "base/fs.h"
#include "base/log.h"

namespace vodgrid::content {

namespace fs = std::filesystem;

bool is_url(std::string_view s) {
  return s.starts_with("http://") || s.starts_with("https://");
}

bool is_playlist(std::string_view s) {
  if (auto q = s.find_first_of("?#"); q != std::string_view::npos && is_url(s)) {
    s = s.substr(0, q);
  }
  return s.ends_with(".m3u8") || s.ends_with(".m3u");
}

namespace {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct file_closer {
  void operator()(std::FILE* f) const {
    if (f) {
      std::fclose(f);
    }
  }
};

// One transfer's state, shared with libcurl's callbacks.
struct transfer {
  std::FILE* out = nullptr;
  uint64_t offset = 0;   // bytes in the file when this attempt started
  uint64_t written = 0;  // bytes in the file now
  uint64_t max_bytes = 0;
  long status = 0;         // of the last response header block (redirects have their own)
  bool restarted = false;  // the server ignored our Range: the file is written from 0 again
  bool too_large = false;
  bool write_failed = false;
  int write_errno = 0;
  const download_options* opts = nullptr;
  uint64_t total = 0;
  bool cancelled = false;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<transfer*>(user);
  std::string_view line(data, size * n);
  if (line.starts_with("HTTP/")) {
    auto sp = line.find(' ');
    if (sp != std::string_view::npos) {
      t->status = std::strtol(std::string(line.substr(sp + 1, 3)).c_str(), nullptr, 10);
    }
  }
  return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<transfer*>(user);
  size_t len = size * n;
  if (t->status >= 300) {
    return len;  // an error page: not the provider's file
  }
  if (t->offset > 0 && t->status == 200 && !t->restarted) {
    // Asked for the rest, got the whole: start over rather than append the beginning twice.
    if (::ftruncate(fileno(t->out), 0) != 0 || std::fseek(t->out, 0, SEEK_SET) != 0) {
      t->write_failed = true;
      t->write_errno = errno;
      return 0;
    }
    t->restarted = true;
    t->written = 0;
  }
  if (t->written + len > t->max_bytes) {
    t->too_large = true;
    return 0;
  }
  if (std::fwrite(data, 1, len, t->out) != len) {
    t->write_failed = true;
    t->write_errno = errno;
    return 0;
  }
  t->written += len;
  return len;
}

int on_progress(void* user, curl_off_t dltotal, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<transfer*>(user);
  if (dltotal > 0 && t->status < 300) {
    t->total = (t->restarted ? 0 : t->offset) + static_cast<uint64_t>(dltotal);
  }
  if (t->opts->progress && !t->opts->progress(t->written, t->total)) {
    t->cancelled = true;
    return 1;
  }
  return 0;
}

// Whether a failed attempt is worth resuming: the connection broke or stalled.
bool transient(CURLcode c) {
  switch (c) {
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_COULDNT_CONNECT:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
      return true;
    default:
      return false;
  }
}

std::string redact(const std::string& url) {
  // Provider URLs may carry credentials in their query; logs and errors keep the path only.
  auto q = url.find('?');
  return q == std::string::npos ? url : url.substr(0, q) + "?…";
}

// The easy handle's options for one download: http(s) only, redirects followed, the caller's
// deadlines, and the transfer's callbacks.
void configure(CURL* c, const std::string& url, const download_options& o, transfer& t,
               char* errbuf) {
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o.connect_timeout_ms));
  // "Nothing for io_timeout": under 1 byte/s for that long.
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME,
                   std::max(1L, static_cast<long>(o.io_timeout_ms / 1000)));
  curl_easy_setopt(c, CURLOPT_USERAGENT, "vodgrid-content/0.1");
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
}

// A failure on our side of an attempt (cancelled, too large, a write that failed): never retried.
std::optional<error> local_failure(const transfer& t, const std::string& url, const fs::path& dest,
                                   uint64_t max_bytes) {
  if (t.cancelled) {
    return make_error(errc::conflict, "the download was cancelled");
  }
  if (t.too_large) {
    return make_error(errc::too_large,
                      fmt::format("{} is larger than {} bytes", redact(url), max_bytes));
  }
  if (t.write_failed) {
    return make_error(t.write_errno == ENOSPC ? errc::no_space : errc::io_error,
                      fmt::format("writing {}: {}", dest.string(), std::strerror(t.write_errno)));
  }
  return std::nullopt;
}

}  // namespace

result<download_report> download(const std::string& url, const fs::path& dest,
                                 const download_options& o) {
  if (!is_url(url)) {
    return make_error(
        errc::invalid_argument,
        fmt::format("{}: only http:// and https:// sources can be downloaded", redact(url)));
  }
  global_init();
  std::unique_ptr<std::FILE, file_closer> out(std::fopen(dest.c_str(), "wb"));
  if (!out) {
    return make_error(errno == ENOSPC ? errc::no_space : errc::io_error,
                      fmt::format("cannot create {}: {}", dest.string(), std::strerror(errno)));
  }
  auto fail = [&](error e) -> result<download_report> {
    out.reset();
    std::error_code ec;
    fs::remove(dest, ec);
    return e;
  };
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) {
    return fail(make_error(errc::internal, "curl_easy_init failed"));
  }
  transfer t;
  t.out = out.get();
  t.max_bytes = o.max_bytes;
  t.opts = &o;
  download_report rep;
  char errbuf[CURL_ERROR_SIZE] = {};
  CURL* c = curl.get();
  configure(c, url, o, t, errbuf);
  std::string last_reason;
  for (int attempt = 0; attempt < std::max(1, o.attempts); ++attempt) {
    if (attempt > 0) {
      // A pause before a resume that grows with each drop (0.2 s .. 3.2 s): the pacing of retries
      // toward a provider, which io_timeout_ms already bounds, not an operator's setting.
      std::this_thread::sleep_for(std::chrono::milliseconds(100 << std::min(attempt, 5)));
      if (t.written > 0) {
        ++rep.resumes;
      }
    }
    t.offset = t.written;
    t.status = 0;
    t.restarted = false;
    errbuf[0] = 0;
    curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, static_cast<curl_off_t>(t.offset));
    CURLcode rc = curl_easy_perform(c);
    std::fflush(t.out);
    if (auto e = local_failure(t, url, dest, o.max_bytes)) {
      return fail(std::move(*e));
    }
    if (rc == CURLE_OK && t.status == 416 && t.offset > 0 && t.total != 0 && t.offset >= t.total) {
      rc = CURLE_OK;  // the dropped attempt had in fact received everything
      t.status = 206;
    }
    if (rc == CURLE_OK && (t.status == 200 || t.status == 206)) {
      if (std::fflush(t.out) != 0 || ::fsync(fileno(t.out)) != 0) {
        return fail(make_error(errno == ENOSPC ? errc::no_space : errc::io_error,
                               fmt::format("writing {}: {}", dest.string(), std::strerror(errno))));
      }
      rep.bytes = t.written;
      return rep;
    }
    if (rc == CURLE_OK && t.status >= 400 && t.status < 500 && t.status != 408 && t.status != 429) {
      return fail(make_error(errc::invalid_argument, fmt::format("the provider answered {} for {}",
                                                                 t.status, redact(url))));
    }
    if (rc == CURLE_OK) {
      last_reason = fmt::format("the provider answered {}", t.status);
    } else if (transient(rc)) {
      last_reason = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    } else {
      return fail(make_error(
          errc::unavailable,
          fmt::format("{}: {}", redact(url), errbuf[0] ? errbuf : curl_easy_strerror(rc))));
    }
    log::get("content")->warn("download of {}: {} after {} bytes; attempt {} of {}", redact(url),
                              last_reason, t.written, attempt + 1, o.attempts);
  }
  return fail(make_error(errc::unavailable, fmt::format("{}: {} (gave up after {} attempts)",
                                                        redact(url), last_reason, o.attempts)));
}

namespace {

// The playlist's text, from a file or a URL (at most 16 MiB).
result<std::string> read_playlist(const std::string& where, const fs::path& scratch,
                                  const download_options& o) {
  if (!is_url(where)) {
    auto t = read_file(where, 16 << 20);
    if (!t) {
      return make_error(t.err().code == errc::not_found ? errc::invalid_argument : t.err().code,
                        fmt::format("cannot read the playlist {}: {}", where, t.err().detail));
    }
    return t;
  }
  download_options po = o;
  po.max_bytes = 16 << 20;
  po.progress = nullptr;
  auto got = download(where, scratch, po);
  if (!got) {
    return got.err();
  }
  auto t = read_file(scratch, 16 << 20);
  std::error_code ec;
  fs::remove(scratch, ec);
  return t;
}

// Where a playlist's segment URI points: a URL, or a path next to a local playlist.
result<std::string> resolve(const std::string& playlist, const std::string& uri) {
  if (is_url(playlist)) {
    auto base = boost::urls::parse_uri(playlist);
    auto ref = boost::urls::parse_uri_reference(uri);
    if (!base || !ref) {
      return make_error(errc::invalid_argument, "bad segment URI in the playlist: " + uri);
    }
    boost::urls::url out(*base);
    if (auto r = out.resolve(*ref); !r) {
      return make_error(errc::invalid_argument, "bad segment URI in the playlist: " + uri);
    }
    return std::string(out.buffer());
  }
  if (is_url(uri)) {
    return uri;
  }
  if (uri.find("://") != std::string::npos || uri.starts_with("/") ||
      uri.find('\0') != std::string::npos) {
    return make_error(errc::invalid_argument,
                      "a local playlist may name only segments beside it: " + uri);
  }
  auto p = fs::path(playlist).parent_path() / uri;
  auto norm = p.lexically_normal();
  auto dir = fs::path(playlist).parent_path().lexically_normal();
  auto rel = norm.lexically_relative(dir);
  if (rel.empty() || *rel.begin() == "..") {
    return make_error(errc::invalid_argument,
                      "a local playlist may name only segments beside it: " + uri);
  }
  return norm.string();
}

status append_file(std::FILE* out, const fs::path& from) {
  std::unique_ptr<std::FILE, file_closer> in(std::fopen(from.c_str(), "rb"));
  if (!in) {
    return make_error(errc::invalid_argument, fmt::format("cannot read segment {}: {}",
                                                          from.string(), std::strerror(errno)));
  }
  char buf[1 << 16];
  size_t n;
  bool first = true;
  while ((n = std::fread(buf, 1, sizeof buf, in.get())) > 0) {
    if (first && buf[0] != 0x47) {
      return make_error(errc::invalid_argument,
                        fmt::format("segment {} is not MPEG-TS", from.filename().string()));
    }
    first = false;
    if (std::fwrite(buf, 1, n, out) != n) {
      return make_error(errno == ENOSPC ? errc::no_space : errc::io_error,
                        fmt::format("writing: {}", std::strerror(errno)));
    }
  }
  if (first) {
    return make_error(errc::invalid_argument,
                      fmt::format("segment {} is empty", from.filename().string()));
  }
  return {};
}

}  // namespace

result<std::optional<api::multivariant_playlist>> read_multivariant(const std::string& playlist,
                                                                    const fs::path& scratch,
                                                                    const download_options& o) {
  auto text = read_playlist(playlist, scratch, o);
  if (!text) {
    return text.err();
  }
  if (!api::is_multivariant(*text)) {
    return std::optional<api::multivariant_playlist>();
  }
  auto pl = api::parse_multivariant_playlist(*text);
  if (!pl) {
    return make_error(errc::invalid_argument, fmt::format("{}: {}", playlist, pl.err().detail));
  }
  for (auto& v : pl->variants) {
    VODGRID_TRY(v.uri, resolve(playlist, v.uri));
  }
  for (auto& m : pl->media) {
    if (!m.uri.empty()) {
      VODGRID_TRY(m.uri, resolve(playlist, m.uri));
    }
  }
  return std::optional<api::multivariant_playlist>(std::move(*pl));
}

result<download_report> fetch_hls(const std::string& playlist, const fs::path& dest,
                                  const download_options& o) {
  auto scratch = fs::path(dest.string() + ".part");
  auto text = read_playlist(playlist, scratch, o);
  if (!text) {
    return text.err();
  }
  auto pl = api::parse_media_playlist(*text);
  if (!pl) {
    return make_error(errc::invalid_argument, fmt::format("{}: {}", playlist, pl.err().detail));
  }
  if (!pl->endlist) {
    return make_error(errc::invalid_argument,
                      fmt::format("{}: not a VOD playlist (no #EXT-X-ENDLIST)", playlist));
  }
  if (pl->segments.empty()) {
    return make_error(errc::invalid_argument, fmt::format("{}: no segments", playlist));
  }
  std::unique_ptr<std::FILE, file_closer> out(std::fopen(dest.c_str(), "wb"));
  if (!out) {
    return make_error(errno == ENOSPC ? errc::no_space : errc::io_error,
                      fmt::format("cannot create {}: {}", dest.string(), std::strerror(errno)));
  }
  auto fail = [&](error e) -> result<download_report> {
    out.reset();
    std::error_code ec;
    fs::remove(dest, ec);
    fs::remove(scratch, ec);
    return e;
  };
  download_report rep;
  uint64_t total_bytes = 0;
  for (size_t i = 0; i < pl->segments.size(); ++i) {
    auto where = resolve(playlist, pl->segments[i].uri);
    if (!where) {
      return fail(where.err());
    }
    fs::path file = *where;
    if (is_url(*where)) {
      download_options so = o;
      so.max_bytes = o.max_bytes - std::min(o.max_bytes, total_bytes);
      so.progress = nullptr;
      auto got = download(*where, scratch, so);
      if (!got) {
        return fail(got.err());
      }
      rep.resumes += got->resumes;
      file = scratch;
    }
    if (auto st = append_file(out.get(), file); !st) {
      return fail(st.err());
    }
    std::error_code ec;
    total_bytes += fs::file_size(file, ec);
    if (total_bytes > o.max_bytes) {
      return fail(make_error(errc::too_large,
                             fmt::format("{} is larger than {} bytes", playlist, o.max_bytes)));
    }
    if (is_url(*where)) {
      fs::remove(scratch, ec);
    }
    if (o.progress && !o.progress(i + 1, pl->segments.size())) {
      return fail(make_error(errc::conflict, "the download was cancelled"));
    }
  }
  if (std::fflush(out.get()) != 0 || ::fsync(fileno(out.get())) != 0) {
    return fail(make_error(errno == ENOSPC ? errc::no_space : errc::io_error,
                           fmt::format("writing {}: {}", dest.string(), std::strerror(errno))));
  }
  rep.bytes = total_bytes;
  return rep;
}

}  // namespace vodgrid::content
