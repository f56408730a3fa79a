#include "console/player.h"

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/object.hpp>

#include <algorithm>
#include <exception>
#include <memory>
#include <thread>

#include "api/api.h"
#include "api/hls.h"
#include "base/sha256.h"
#include "net/client.h"
#include "net/task_group.h"

namespace vodgrid::console {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using steady = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string play_report::to_text() const {
  std::string out = fmt::format(
      "viewers {}  segments {}  failed {}  bytes {}  retries {}  stalls {} (longest {:.2f} s)  "
      "digest mismatches {}  wall {:.2f} s  media {:.2f} s per viewer\n",
      viewers, segments, segments_failed, bytes, retries, stalls, longest_stall, digest_mismatches,
      seconds, media_seconds);
  if (!renditions.empty()) {
    out += "renditions:";
    for (auto& r : renditions) {
      out += " " + r;
    }
    out += "\n";
  }
  out += "engines:";
  for (auto& [e, n] : engines) {
    out += fmt::format(" {}={}", e, n);
  }
  out += "\n";
  for (auto& e : errors) {
    out += "error: " + e + "\n";
  }
  out += ok() ? "result: ok\n" : "result: FAILED\n";
  return out;
}

json::value play_report::to_json() const {
  json::object eng;
  for (auto& [e, n] : engines) {
    eng[e] = n;
  }
  json::array errs, rends;
  for (auto& e : errors) {
    errs.push_back(json::value(e));
  }
  for (auto& r : renditions) {
    rends.push_back(json::value(r));
  }
  return json::object{{"viewers", viewers},
                      {"segments", segments},
                      {"segments_failed", segments_failed},
                      {"bytes", bytes},
                      {"retries", retries},
                      {"stalls", stalls},
                      {"longest_stall", longest_stall},
                      {"digest_mismatches", digest_mismatches},
                      {"seconds", seconds},
                      {"media_seconds", media_seconds},
                      {"engines", eng},
                      {"renditions", rends},
                      {"errors", errs},
                      {"ok", ok()}};
}

void play_report::merge(const play_report& other) {
  viewers += other.viewers;
  segments += other.segments;
  segments_failed += other.segments_failed;
  bytes += other.bytes;
  retries += other.retries;
  stalls += other.stalls;
  longest_stall = std::max(longest_stall, other.longest_stall);
  digest_mismatches += other.digest_mismatches;
  seconds = std::max(seconds, other.seconds);
  media_seconds = std::max(media_seconds, other.media_seconds);
  for (auto& [e, n] : other.engines) {
    engines[e] += n;
  }
  for (auto& r : other.renditions) {
    if (std::find(renditions.begin(), renditions.end(), r) == renditions.end()) {
      renditions.push_back(r);
    }
  }
  for (auto& e : other.errors) {
    if (errors.size() < max_errors) {
      errors.push_back(e);
    }
  }
}

std::optional<std::string> invalid_options(const play_options& o) {
  if (o.viewers < 1) {
    return "at least one viewer";
  }
  if (o.threads > max_play_threads) {
    return fmt::format("--threads must be within 1..{}", max_play_threads);
  }
  return std::nullopt;
}

namespace {

struct shared_state {
  play_options opts;
  play_report report;
  // A rendition's playlist played (its path, without the query), once however many viewers.
  void played(const std::string& url) {
    auto name = url.substr(0, url.find('?'));
    if (auto at = name.find("/v1/programs/"); at != std::string::npos) {
      name = name.substr(at);
    }
    if (std::find(report.renditions.begin(), report.renditions.end(), name) ==
        report.renditions.end()) {
      report.renditions.push_back(std::move(name));
    }
  }
  void error(std::string e) {
    if (report.errors.size() < play_report::max_errors) {
      report.errors.push_back(std::move(e));
    }
  }
};

std::string with_token(const std::string& url, const std::string& token) {
  if (token.empty() || url.find("?token=") != std::string::npos ||
      url.find("&token=") != std::string::npos) {
    return url;  // the URL carries its own token
  }
  return url + (url.find('?') == std::string::npos ? "?" : "&") + "token=" + token;
}

// The manifest URL that goes with a playlist URL: .../v1/programs/{id}/index.m3u8 →
// .../v1/programs/{id}.
std::string manifest_url(const std::string& playlist_url) {
  auto q = playlist_url.find('?');
  std::string base = playlist_url.substr(0, q);
  constexpr std::string_view tail = "/index.m3u8";
  if (base.size() > tail.size() &&
      base.compare(base.size() - tail.size(), tail.size(), tail) == 0) {
    base.resize(base.size() - tail.size());
    return base + (q == std::string::npos ? "" : playlist_url.substr(q));
  }
  return {};
}

asio::awaitable<void> sleep_for(steady::duration d) {
  if (d <= steady::duration::zero()) {
    co_return;
  }
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(use_tuple);
}

// The bytes of a segment's body a viewer holds at once (plus as much in the socket's read buffer).
constexpr size_t piece_window = 64 * 1024;

// One segment, through the director, retried until delivered and verified or attempts run out.
// Returns the bytes delivered, 0 on failure.
asio::awaitable<uint64_t> fetch_segment(net::http_client& client, std::shared_ptr<shared_state> st,
                                        std::string director_url, const sha256_digest* expected,
                                        size_t index) {
  auto& rep = st->report;
  std::string last_error;
  for (uint32_t attempt = 0; attempt < st->opts.max_attempts; ++attempt) {
    if (attempt > 0) {
      ++rep.retries;
      co_await sleep_for(std::chrono::milliseconds(std::min<uint32_t>(100 * attempt, 1000)));
    }
    auto redirect = co_await client.get(director_url);
    if (!redirect) {
      last_error = "director: " + redirect.err().detail;
      continue;
    }
    if (redirect->status != 302) {
      last_error = fmt::format("director answered {} for segment {}: {}", redirect->status, index,
                               redirect->body.substr(0, 200));
      if (redirect->status == 404 || redirect->status == 401 || redirect->status == 403) {
        break;  // retrying cannot help
      }
      continue;
    }
    auto location = net::resolve_url(director_url, redirect->header("Location"));
    if (!location) {
      last_error = "bad Location from the director";
      continue;
    }
    auto engine = net::parse_http_url(*location);
    auto from = engine ? engine->origin() : *location;
    // The body is hashed as it arrives and dropped: a viewer holds a window, never a segment.
    uint64_t got = 0;
    std::optional<sha256_hasher> hasher;
    if (expected) {
      hasher.emplace();
    }
    net::http_client::piece_sink sink;
    sink.on_head = [](const net::client_response& head) { return head.status == 200; };
    sink.on_piece = [&got, &hasher](std::string_view piece) {
      got += piece.size();
      if (hasher) {
        hasher->update(piece);
      }
    };
    sink.window = piece_window;
    auto res = co_await client.get_pieces(*location, {}, std::move(sink));
    if (!res) {
      last_error = fmt::format("engine {}: {}", from, res.err().detail);
      continue;
    }
    if (res->status != 200) {
      last_error = fmt::format("engine {} answered {} for segment {}", from, res->status, index);
      continue;
    }
    if (hasher && hasher->finish() != *expected) {
      ++rep.digest_mismatches;
      last_error = fmt::format("segment {} from {} does not match its SHA-256", index, from);
      continue;
    }
    ++rep.engines[from];
    co_return got;
  }
  st->error(fmt::format("segment {}: {}", index, last_error));
  co_return 0;
}

// A GET of the playlist or the manifest, asked again (as for a segment) while the director does not
// answer or answers that it cannot now: a director being restarted costs a viewer a moment.
asio::awaitable<result<net::client_response>> get_retrying(net::http_client& client,
                                                           std::shared_ptr<shared_state> st,
                                                           std::string url) {
  auto res = co_await client.get(url);
  for (uint32_t attempt = 1; attempt < st->opts.max_attempts; ++attempt) {
    if (res && res->status < 500) {
      break;
    }
    ++st->report.retries;
    co_await sleep_for(std::chrono::milliseconds(std::min<uint32_t>(100 * attempt, 1000)));
    res = co_await client.get(url);
  }
  co_return res;
}

// The SHA-256 of each segment, from the program manifest beside the playlist; nothing when the
// director publishes none, or one of another length than the playlist's.
asio::awaitable<std::optional<std::vector<sha256_digest>>> manifest_digests(
    net::http_client& client, std::shared_ptr<shared_state> st, const std::string& playlist_url,
    size_t segments) {
  // (No co_await inside a conditional expression: GCC 12 destroys its temporaries twice.)
  auto murl = manifest_url(playlist_url);
  if (murl.empty()) {
    co_return std::nullopt;
  }
  auto mres = co_await get_retrying(client, st, murl);
  if (!mres || mres->status != 200) {
    co_return std::nullopt;
  }
  auto m = api::decode<api::program_manifest>(mres->body);
  if (!m || m->segments.size() != segments) {
    co_return std::nullopt;
  }
  std::vector<sha256_digest> digests;
  for (auto& s : m->segments) {
    digests.push_back(s.sha256);
  }
  co_return digests;
}

// One media playlist played through, each segment fetched and verified; the media seconds played.
asio::awaitable<double> play_media(net::http_client& client, std::shared_ptr<shared_state> st,
                                   std::string playlist_url, api::media_playlist pl) {
  auto& rep = st->report;
  std::vector<sha256_digest> digests;
  if (st->opts.verify) {
    auto d = co_await manifest_digests(client, st, playlist_url, pl.segments.size());
    if (!d) {
      st->error("cannot verify: the director publishes no matching SHA-256 list for " +
                playlist_url.substr(0, playlist_url.find('?')));
      co_return 0;
    }
    digests = std::move(*d);
  }
  double media = 0;
  auto playback_start = steady::time_point{};
  double buffered_until = 0;  // media time up to which segments have arrived
  for (size_t i = 0; i < pl.segments.size(); ++i) {
    auto& seg = pl.segments[i];
    if (st->opts.realtime && i > 0) {
      // Fetch segment i once segment i-1 starts playing: one segment of buffer, as a set-top box.
      auto start_prev = playback_start +
                        std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(
                            buffered_until - pl.segments[i - 1].duration));
      co_await sleep_for(start_prev - steady::now());
    }
    auto seg_url = net::resolve_url(playlist_url, seg.uri);
    uint64_t got = 0;
    if (seg_url) {
      got =
          co_await fetch_segment(client, st, *seg_url, st->opts.verify ? &digests[i] : nullptr, i);
    } else {
      st->error(fmt::format("segment {}: bad URI {}", i, seg.uri));
    }
    if (got == 0) {
      ++rep.segments_failed;
    } else {
      ++rep.segments;
      rep.bytes += got;
    }
    auto now = steady::now();
    if (i == 0) {
      playback_start = now;
    } else if (st->opts.realtime) {
      auto due = playback_start + std::chrono::duration_cast<steady::duration>(
                                      std::chrono::duration<double>(buffered_until));
      if (now > due) {
        ++rep.stalls;
        rep.longest_stall =
            std::max(rep.longest_stall, std::chrono::duration<double>(now - due).count());
        playback_start += now - due;  // playback waited for the segment
      }
    }
    buffered_until += seg.duration;
    media += seg.duration;
  }
  co_return media;
}

// A GET of a playlist that must answer 200; the error otherwise, for the report.
asio::awaitable<result<std::string>> get_playlist(net::http_client& client,
                                                  std::shared_ptr<shared_state> st,
                                                  std::string url) {
  auto res = co_await get_retrying(client, st, url);
  if (!res) {
    co_return make_error(errc::unavailable, "playlist: " + res.err().detail);
  }
  if (res->status != 200) {
    co_return make_error(errc::unavailable,
                         fmt::format("playlist: {} {}", res->status, res->body.substr(0, 200)));
  }
  co_return std::move(res->body);
}

// The variants of a multivariant playlist (flow 9), resolved: each, or the first (the top
// rendition) alone.
result<std::vector<std::string>> variant_urls(const play_options& opts,
                                              const std::string& playlist_url,
                                              const std::string& text) {
  VODGRID_TRY(auto mv, api::parse_multivariant_playlist(text));
  std::vector<std::string> out;
  for (auto& v : mv.variants) {
    auto url = net::resolve_url(playlist_url, v.uri);
    if (!url) {
      return make_error(errc::invalid_argument, "bad variant URI " + v.uri);
    }
    out.push_back(*url);
    if (!opts.every_rendition) {
      break;
    }
  }
  return out;
}

// A media playlist's text parsed and played; a multivariant one's renditions one after another.
asio::awaitable<double> play_playlist(net::http_client& client, std::shared_ptr<shared_state> st,
                                      std::string playlist_url, std::string text) {
  if (!api::is_multivariant(text)) {
    auto pl = api::parse_media_playlist(text);
    if (!pl) {
      st->error("playlist: " + pl.err().detail);
      co_return 0;
    }
    co_return co_await play_media(client, st, playlist_url, std::move(*pl));
  }
  auto urls = variant_urls(st->opts, playlist_url, text);
  if (!urls) {
    st->error("playlist: " + urls.err().detail);
    co_return 0;
  }
  double media = 0;
  for (auto& url : *urls) {
    auto body = co_await get_playlist(client, st, url);
    if (!body) {
      st->error(body.err().detail);
      continue;
    }
    auto pl = api::parse_media_playlist(*body);
    if (!pl) {
      st->error("playlist " + url.substr(0, url.find('?')) + ": " + pl.err().detail);
      continue;
    }
    st->played(url);
    media += co_await play_media(client, st, url, std::move(*pl));
  }
  co_return media;
}

asio::awaitable<void> run_viewer(std::shared_ptr<shared_state> st) {
  auto ex = co_await asio::this_coro::executor;
  net::client_options co;
  co.connect_timeout = std::chrono::seconds(2);
  co.request_timeout = st->opts.attempt_timeout;
  co.read_timeout = st->opts.read_timeout;
  net::http_client client(ex, co);
  std::string playlist_url = with_token(st->opts.url, st->opts.token);
  auto text = co_await get_playlist(client, st, playlist_url);
  if (!text) {
    st->error(text.err().detail);
  } else {
    st->report.media_seconds = co_await play_playlist(client, st, playlist_url, std::move(*text));
  }
}

}  // namespace

asio::awaitable<play_report> play(play_options opts) {
  auto ex = co_await asio::this_coro::executor;
  auto st = std::make_shared<shared_state>();
  st->opts = std::move(opts);
  st->report.viewers = st->opts.viewers;
  auto t0 = steady::now();
  net::task_group viewers(ex);
  for (uint32_t v = 0; v < st->opts.viewers; ++v) {
    viewers.spawn(run_viewer(st));
  }
  // Every viewer ends on its own (its attempts are bounded): the bound only says "never".
  if (auto left = co_await viewers.close(std::chrono::hours(24 * 365)); left > 0) {
    st->error(fmt::format("{} viewers did not finish", left));
  }
  st->report.seconds = std::chrono::duration<double>(steady::now() - t0).count();
  co_return st->report;
}

play_report play_on_threads(play_options opts) {
  uint32_t threads = opts.threads;
  if (threads == 0) {
    threads = std::max(1u, std::thread::hardware_concurrency());
  }
  threads = std::clamp(threads, 1u, std::max(1u, opts.viewers));
  // Thread i plays viewers i, i + threads, ...: its share of the round-robin.
  std::vector<play_report> reports(threads);
  std::vector<std::thread> workers;
  auto t0 = steady::now();
  for (uint32_t i = 0; i < threads; ++i) {
    play_options mine = opts;
    mine.viewers = opts.viewers / threads + (i < opts.viewers % threads ? 1 : 0);
    workers.emplace_back([mine, &out = reports[i]] {
      asio::io_context io;
      asio::co_spawn(io, play(mine), [&out](std::exception_ptr e, play_report r) {
        out = std::move(r);
        if (e) {
          out.viewers = 0;  // play() lets nothing escape; should it, the thread's viewers failed
          out.errors.push_back("a console thread failed");
        }
      });
      io.run();
    });
  }
  for (auto& w : workers) {
    w.join();
  }
  play_report all;
  for (auto& r : reports) {
    all.merge(r);
  }
  all.viewers = opts.viewers;
  all.seconds = std::chrono::duration<double>(steady::now() - t0).count();
  return all;
}

}  // namespace vodgrid::console
