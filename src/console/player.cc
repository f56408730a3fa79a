#include "console/player.h"

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>

#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

#include "api/api.h"
#include "api/hls.h"
#include "base/sha256.h"
#include "console/limits.h"
#include "console/segment_reader.h"
#include "net/client.h"
#include "net/task_group.h"
#include "net/use_tuple.h"

namespace vodgrid::console {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using steady = std::chrono::steady_clock;
using net::use_tuple;

std::optional<std::string> invalid_options(const play_options& o) {
  if (o.viewers < 1) {
    return "at least one viewer";
  }
  if (o.threads > max_play_threads) {
    return fmt::format("--threads must be within 1..{}", max_play_threads);
  }
  if (o.buffer < 1 || o.buffer > max_play_buffer) {
    return fmt::format("--buffer must be within 1..{} segments", max_play_buffer);
  }
  if (o.model.enabled) {
    if (auto why = invalid_model(o.model)) {
      return why;
    }
    for (auto& p : o.programs) {
      if (!program_id::parse(p)) {
        return fmt::format("--programs: '{}' is not a program id", p);
      }
    }
  } else if (!o.programs.empty()) {
    return "--programs is for --model";
  }
  return std::nullopt;
}

namespace {

struct shared_state {
  play_options opts;
  // Where every viewer of this play (one thread) reads segment bodies into: see segment_reader.
  std::vector<char> read_buffer = std::vector<char>(read_buffer_bytes);
  play_report report;
  std::vector<double> arrivals;  // --model: of every viewer of the play, by index
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
  template <class F>
  void progress(F f) {
    if (opts.progress) {
      f(*opts.progress);
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

// "host:port" of a URL, or the URL itself when it is not one we read.
std::string host_port(const std::string& url) {
  auto u = net::parse_http_url(url);
  return u ? fmt::format("{}:{}", u->host, u->port) : url;
}

// "http://host:port" of a URL (an engine, as the report has always named it), or the URL itself.
std::string origin_of(const std::string& url) {
  auto u = net::parse_http_url(url);
  return u ? u->origin() : url;
}

double seconds_between(steady::time_point a, steady::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

steady::duration to_duration(double seconds) {
  return std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(seconds));
}

asio::awaitable<void> sleep_until(steady::time_point t) {
  if (t <= steady::now()) {
    co_return;
  }
  asio::steady_timer timer(co_await asio::this_coro::executor, t);
  co_await timer.async_wait(use_tuple);
}

asio::awaitable<void> sleep_for(steady::duration d) {
  co_await sleep_until(steady::now() + d);
}

struct fetched {
  uint64_t bytes = 0;  // 0: not delivered
  double ttfb = 0;     // seconds from the first ask at the director to the engine's reply head
};

// One segment, through the director, retried until delivered and verified or attempts run out.
asio::awaitable<fetched> fetch_segment(net::http_client& client, segment_reader& reader,
                                       std::shared_ptr<shared_state> st, std::string director_url,
                                       const sha256_digest* expected, size_t index) {
  auto& rep = st->report;
  std::string last_error;
  auto asked = steady::now();
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
    auto from = origin_of(*location);  // the engine as `engines` in the report names it
    // The body is hashed as it arrives and dropped: a viewer holds no segment, only the thread's
    // read buffer while a piece is hashed.
    uint64_t got = 0;
    std::optional<sha256_hasher> hasher;
    if (expected) {
      hasher.emplace();
    }
    steady::time_point head_at;
    auto on_head = [&head_at](unsigned status) {
      head_at = steady::now();
      return status == 200;
    };
    auto on_piece = [&got, &hasher](std::string_view piece) {
      got += piece.size();
      if (hasher) {
        hasher->update(piece);
      }
    };
    auto res = co_await reader.get(*location, on_head, on_piece);
    if (!res) {
      last_error = fmt::format("engine {}: {}", from, res.err().detail);
      continue;
    }
    if (*res != 200) {
      last_error = fmt::format("engine {} answered {} for segment {}", from, *res, index);
      continue;
    }
    if (hasher && hasher->finish() != *expected) {
      ++rep.digest_mismatches;
      last_error = fmt::format("segment {} from {} does not match its SHA-256", index, from);
      continue;
    }
    auto [seen, first] = rep.engines.try_emplace(from, 0);
    ++seen->second;
    if (first && st->opts.engine_seen) {
      st->opts.engine_seen(from);
    }
    ++rep.stations[host_port(director_url)];
    co_return fetched{got, seconds_between(asked, head_at)};
  }
  st->error(fmt::format("segment {}: {}", index, last_error));
  co_return fetched{};
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

// What one viewer saw while it played a series of steps.
struct viewer_stats {
  steady::time_point start;  // its arrival
  std::optional<double> startup;
  uint64_t stalls = 0;
  double stalled = 0;
  double paused = 0;
  uint64_t bytes = 0;
  double media_fetched = 0;  // seconds of the segments delivered, whole
  steady::time_point first_play, end;
};

// When step j may be asked for, in real time: a seek's target once the viewer seeks (the end of
// the step before and its pause), any other step once the step `buffer` before it starts playing.
steady::time_point ask_at(const std::vector<play_step>& steps,
                          const std::vector<steady::time_point>& play_at, size_t j,
                          uint32_t buffer) {
  if (j == 0) {
    return {};
  }
  if (steps[j].seek) {
    return play_at[j - 1] + to_duration(steps[j - 1].seconds + steps[j].pause_before);
  }
  return j >= buffer ? play_at[j - buffer] : steady::time_point{};
}

// The steps of one media playlist played (fetched, verified, paced in real time): each step's
// playback start is when its segment arrived or when the step before ended, whichever is later.
asio::awaitable<void> play_steps(net::http_client& client, segment_reader& reader,
                                 std::shared_ptr<shared_state> st, std::string playlist_url,
                                 const api::media_playlist& pl, std::vector<sha256_digest> digests,
                                 std::vector<play_step> steps, viewer_stats& vs) {
  auto& rep = st->report;
  bool realtime = st->opts.realtime || st->opts.model.enabled;
  std::vector<steady::time_point> play_at(steps.size());
  for (size_t j = 0; j < steps.size(); ++j) {
    auto& step = steps[j];
    if (realtime) {
      co_await sleep_until(ask_at(steps, play_at, j, st->opts.buffer));
    }
    auto& seg = pl.segments[step.segment];
    auto seg_url = net::resolve_url(playlist_url, seg.uri);
    fetched got;
    if (seg_url) {
      got =
          co_await fetch_segment(client, reader, st, *seg_url,
                                 digests.empty() ? nullptr : &digests[step.segment], step.segment);
    } else {
      st->error(fmt::format("segment {}: bad URI {}", step.segment, seg.uri));
    }
    auto now = steady::now();
    if (got.bytes == 0) {
      ++rep.segments_failed;
      st->progress([](play_progress& p) { ++p.failed; });
    } else {
      ++rep.segments;
      rep.bytes += got.bytes;
      rep.ttfb.add(got.ttfb);
      vs.bytes += got.bytes;
      vs.media_fetched += seg.duration;
      st->progress([&](play_progress& p) {
        ++p.segments;
        p.bytes += got.bytes;
      });
    }
    if (j == 0) {
      play_at[j] = now;
      vs.first_play = now;
      vs.startup = seconds_between(vs.start, now);
      continue;
    }
    auto due = play_at[j - 1] + to_duration(steps[j - 1].seconds + step.pause_before);
    vs.paused += step.pause_before;
    play_at[j] = std::max(now, due);
    if (realtime && now > due && !step.seek) {  // a seek's wait is the viewer's own doing
      ++vs.stalls;
      ++rep.stalls;
      vs.stalled += seconds_between(due, now);
      rep.longest_stall = std::max(rep.longest_stall, seconds_between(due, now));
      st->progress([](play_progress& p) { ++p.stalls; });
    }
  }
  vs.end = steps.empty() ? steady::now() : play_at.back() + to_duration(steps.back().seconds);
  if (realtime) {
    co_await sleep_until(vs.end);  // the viewer stays until it has watched what it meant to
  } else {
    vs.end = steady::now();
  }
}

// Every segment once, in order: the steps of a viewer without a model.
std::vector<play_step> straight_through(const api::media_playlist& pl) {
  std::vector<play_step> steps(pl.segments.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    steps[i].segment = i;
    steps[i].seconds = pl.segments[i].duration;
  }
  return steps;
}

// One media playlist played through (or as `record`'s plan says); the media seconds fetched.
asio::awaitable<double> play_media(net::http_client& client, segment_reader& reader,
                                   std::shared_ptr<shared_state> st, std::string playlist_url,
                                   api::media_playlist pl, viewer_stats& vs,
                                   viewer_record* record) {
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
  std::vector<play_step> steps;
  if (record) {
    std::vector<double> durations;
    double total = 0;
    for (auto& s : pl.segments) {
      durations.push_back(s.duration);
      total += s.duration;
    }
    auto plan = plan_viewer(st->opts.model, record->viewer, total);
    record->watch_seconds = plan.watch_seconds;
    for (auto& e : plan.events) {
      ++(e.what == viewer_event::kind::seek ? record->seeks : record->pauses);
    }
    steps = schedule(plan, durations);
  } else {
    steps = straight_through(pl);
  }
  double before = vs.media_fetched;
  co_await play_steps(client, reader, st, playlist_url, pl, std::move(digests), std::move(steps),
                      vs);
  co_return vs.media_fetched - before;
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
result<std::vector<std::string>> variant_urls(bool every_rendition, const std::string& playlist_url,
                                              const std::string& text) {
  VODGRID_TRY(auto mv, api::parse_multivariant_playlist(text));
  std::vector<std::string> out;
  for (auto& v : mv.variants) {
    auto url = net::resolve_url(playlist_url, v.uri);
    if (!url) {
      return make_error(errc::invalid_argument, "bad variant URI " + v.uri);
    }
    out.push_back(*url);
    if (!every_rendition) {
      break;
    }
  }
  return out;
}

// A media playlist's text parsed and played; a multivariant one's renditions one after another
// (a --model viewer: its first, the top rendition, alone).
asio::awaitable<double> play_playlist(net::http_client& client, segment_reader& reader,
                                      std::shared_ptr<shared_state> st, std::string playlist_url,
                                      std::string text, viewer_stats& vs, viewer_record* record) {
  if (!api::is_multivariant(text)) {
    auto pl = api::parse_media_playlist(text);
    if (!pl) {
      st->error("playlist: " + pl.err().detail);
      co_return 0;
    }
    co_return co_await play_media(client, reader, st, playlist_url, std::move(*pl), vs, record);
  }
  auto urls = variant_urls(st->opts.every_rendition && record == nullptr, playlist_url, text);
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
    media += co_await play_media(client, reader, st, url, std::move(*pl), vs, record);
  }
  co_return media;
}

// The playlist URL of program `id` at the director that `url` names.
std::string program_playlist(const std::string& url, const std::string& id) {
  auto u = net::parse_http_url(url);
  return (u ? u->origin() : url) + "/v1/programs/" + id + "/index.m3u8";
}

// The viewer's share of the play's figures, once it has ended.
void account_viewer(shared_state& st, const viewer_stats& vs, viewer_record* record) {
  auto& rep = st.report;
  if (vs.startup) {
    rep.startup.add(*vs.startup);
    rep.stall_seconds.add(vs.stalled);
    bool paced = st.opts.realtime || st.opts.model.enabled;
    if (paced && vs.media_fetched > 0) {  // its rendition's rate, while it played or stalled
      double active = seconds_between(vs.first_play, vs.end) - vs.paused;
      rep.needed_bytes += vs.bytes / vs.media_fetched * std::max(0.0, active);
    }
  }
  rep.stalled_seconds += vs.stalled;
  rep.viewers_stalled += vs.stalls > 0 ? 1 : 0;
  if (record) {
    record->startup = vs.startup.value_or(-1);
    record->stalls = vs.stalls;
    record->stalled_seconds = vs.stalled;
    rep.seeks += record->seeks;
    rep.pauses += record->pauses;
    ++rep.programs[record->program];
    rep.viewer_records.push_back(*record);
  }
}

asio::awaitable<void> run_viewer(std::shared_ptr<shared_state> st, uint32_t viewer,
                                 steady::time_point t0) {
  auto ex = co_await asio::this_coro::executor;
  std::optional<viewer_record> record;
  std::string url = st->opts.url;
  if (st->opts.model.enabled) {
    record.emplace();
    record->viewer = viewer;
    record->arrival = st->arrivals[viewer];
    record->program =
        st->opts.programs[pick_program(st->opts.model, viewer, st->opts.programs.size())];
    url = program_playlist(url, record->program);
    co_await sleep_until(t0 + to_duration(record->arrival));
  }
  st->progress([](play_progress& p) { ++p.viewers_playing; });
  net::client_options co;
  co.connect_timeout = std::chrono::seconds(2);
  co.request_timeout = st->opts.attempt_timeout;
  co.read_timeout = st->opts.read_timeout;
  net::http_client client(ex, co);
  segment_reader_options ro;
  ro.connect_timeout = co.connect_timeout;
  ro.exchange_timeout = st->opts.attempt_timeout;
  ro.read_timeout = st->opts.read_timeout;
  ro.max_body = co.max_body;
  segment_reader reader(ex, ro, st->read_buffer);
  viewer_stats vs;
  vs.start = steady::now();
  std::string playlist_url = with_token(url, st->opts.token);
  auto text = co_await get_playlist(client, st, playlist_url);
  if (!text) {
    st->error(text.err().detail);
  } else {
    auto media = co_await play_playlist(client, reader, st, playlist_url, std::move(*text), vs,
                                        record ? &*record : nullptr);
    st->report.media_seconds = std::max(st->report.media_seconds, media);
  }
  account_viewer(*st, vs, record ? &*record : nullptr);
  st->progress([](play_progress& p) {
    --p.viewers_playing;
    ++p.viewers_done;
  });
}

// The catalog's programs a viewer may play (ready and published, not one of a program's
// renditions), in the director's order.
asio::awaitable<result<std::vector<std::string>>> catalog(std::string url, std::string token) {
  net::http_client client(co_await asio::this_coro::executor);
  auto u = net::parse_http_url(url);
  if (!u) {
    co_return u.err();
  }
  auto res = co_await client.get(with_token(u->origin() + "/v1/programs", token));
  if (!res) {
    co_return make_error(errc::unavailable, "catalog: " + res.err().detail);
  }
  if (res->status != 200) {
    co_return make_error(errc::unavailable,
                         fmt::format("catalog: {} {}", res->status, res->body.substr(0, 200)));
  }
  std::vector<std::string> out;
  try {
    auto doc = json::parse(res->body);  // held: the loop reads into it
    for (auto& p : doc.at("programs").as_array()) {
      auto& o = p.as_object();
      auto avail = o.if_contains("availability");
      // A rendition ("film--360p") is listed as a program of its own; a viewer picks the program.
      std::string_view id = o.at("id").as_string();
      if (o.at("state").as_string() == "ready" &&
          (!avail || avail->as_string() == api::availability_published) &&
          id.find(api::rendition_separator) == std::string_view::npos) {
        out.push_back(std::string(o.at("id").as_string()));
      }
    }
  } catch (const std::exception& e) {
    co_return make_error(errc::unavailable, std::string("catalog: unreadable: ") + e.what());
  }
  if (out.empty()) {
    co_return make_error(errc::not_found, "catalog: the director has no program ready to play");
  }
  co_return out;
}

}  // namespace

asio::awaitable<play_report> play(play_options opts) {
  auto ex = co_await asio::this_coro::executor;
  auto st = std::make_shared<shared_state>();
  st->opts = std::move(opts);
  auto& o = st->opts;
  st->report.viewers = o.viewers;
  auto t0 = steady::now();
  if (o.model.enabled) {
    if (o.programs.empty()) {
      auto c = co_await catalog(o.url, o.token);
      if (!c) {
        st->error(c.err().detail);
        co_return st->report;
      }
      o.programs = std::move(*c);
    }
    st->arrivals = arrival_times(o.model, std::max(o.all_viewers, o.viewers));
  }
  net::task_group viewers(ex);
  for (uint32_t v = 0; v < o.viewers; ++v) {
    auto index = o.first_viewer + v * o.viewer_stride;
    if (o.model.enabled && index >= st->arrivals.size()) {
      break;  // play_on_threads's arithmetic says this cannot be
    }
    viewers.spawn(run_viewer(st, index, t0));
  }
  // Every viewer ends on its own (its attempts are bounded): the bound only says "never".
  if (auto left = co_await viewers.close(std::chrono::hours(24 * 365)); left > 0) {
    st->error(fmt::format("{} viewers did not finish", left));
  }
  st->report.seconds = seconds_between(t0, steady::now());
  co_return st->report;
}

namespace {

// The live one-line progress on stderr, every second until stopped; only on a terminal.
class progress_line {
 public:
  progress_line(const play_progress& p, uint32_t viewers) {
    if (!isatty(STDERR_FILENO)) {
      return;
    }
    thread_ = std::thread([this, &p, viewers] {
      auto t0 = steady::now();
      std::unique_lock lock(mu_);
      while (!cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; })) {
        double t = seconds_between(t0, steady::now());
        auto line = fmt::format(
            "\r{:.0f} s  viewers {} playing, {} of {} done  segments {}  {:.1f} MB/s  stalls {}  "
            "failed {}  ",
            t, p.viewers_playing.load(), p.viewers_done.load(), viewers, p.segments.load(),
            t > 0 ? p.bytes.load() / t / 1e6 : 0.0, p.stalls.load(), p.failed.load());
        std::fputs(line.c_str(), stderr);
      }
      std::fputs("\r\033[K", stderr);  // the report follows on a clean line
    });
  }
  ~progress_line() {
    if (thread_.joinable()) {
      {
        std::lock_guard lock(mu_);
        stop_ = true;
      }
      cv_.notify_one();
      thread_.join();
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

// The catalog, asked once for every thread; the error as a report.
std::optional<play_report> resolve_programs(play_options& opts) {
  if (!opts.model.enabled || !opts.programs.empty()) {
    return std::nullopt;
  }
  asio::io_context io;
  auto f = asio::co_spawn(io, catalog(opts.url, opts.token), asio::use_future);
  io.run();
  auto c = f.get();
  if (!c) {
    play_report r;
    r.viewers = opts.viewers;
    r.errors.push_back(c.err().detail);
    return r;
  }
  opts.programs = std::move(*c);
  return std::nullopt;
}

}  // namespace

play_report play_on_threads(play_options opts) {
  if (auto failed = resolve_programs(opts)) {
    return *failed;
  }
  uint32_t threads = opts.threads;
  if (threads == 0) {
    threads = std::max(1u, std::thread::hardware_concurrency());
  }
  threads = std::clamp(threads, 1u, std::max(1u, opts.viewers));
  play_progress progress;
  limits_probe probe(opts.url);
  std::optional<progress_line> line;
  line.emplace(progress, opts.viewers);
  // Thread i plays viewers i, i + threads, ...: its share of the round-robin.
  std::vector<play_report> reports(threads);
  std::vector<std::thread> workers;
  auto t0 = steady::now();
  for (uint32_t i = 0; i < threads; ++i) {
    play_options mine = opts;
    mine.viewers = opts.viewers / threads + (i < opts.viewers % threads ? 1 : 0);
    mine.first_viewer = i;
    mine.viewer_stride = threads;
    mine.all_viewers = opts.viewers;
    mine.progress = &progress;
    mine.engine_seen = [&probe](const std::string& origin) { probe.saw_engine(origin); };
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
  line.reset();
  play_report all;
  for (auto& r : reports) {
    all.merge(r);
  }
  all.viewers = opts.viewers;
  all.seconds = seconds_between(t0, steady::now());
  probe.finish(all, threads);
  return all;
}

}  // namespace vodgrid::console
