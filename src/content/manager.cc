#include "content/manager.h"

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/system_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <mutex>
#include <set>

#include "api/api.h"
#include "auth/client.h"
#include "auth/guard.h"
#include "auth/session.h"
#include "base/log.h"
#include "base/time.h"
#include "content/catalog.h"
#include "content/fetch.h"
#include "content/packager.h"
#include "db/worker.h"
#include "director/loader.h"
#include "net/client.h"
#include "net/http.h"

namespace vodgrid::content {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
namespace fs = std::filesystem;
using net::reply;
using net::request_context;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
using steady = std::chrono::steady_clock;

namespace {

// What an ingest is doing, for GET /v1/programs/{id} and the progress bar of `vodgrid ingest`.
struct progress_info {
  std::string phase;  // "downloading", "packaging", "loading"
  double done = 0;
  double total = 0;  // 0: unknown
  std::string unit;  // "bytes", "seconds", "segments"
};

// A publish or withdrawal not yet acknowledged by every director (and the registry).
struct pending_change {
  api::availability_change change;
  std::set<std::string> stations;  // still to tell
  std::set<std::string> holders;   // the home and the program's targets: they will have it
  bool registry = false;           // still to tell
  int attempts = 0;
};

json::object to_json(const program_record& p, bool full) {
  json::object o{{"id", p.id.str()},
                 {"title", p.title},
                 {"state", to_string(p.state)},
                 {"source", p.source},
                 {"publish_at", format_rfc3339(p.publish_at)},
                 {"created_at", format_rfc3339(p.created_at)},
                 {"updated_at", format_rfc3339(p.updated_at)},
                 {"duration", p.duration},
                 {"video_codec", p.video_codec},
                 {"audio_codec", p.audio_codec},
                 {"width", p.width},
                 {"height", p.height},
                 {"bitrate", p.bitrate},
                 {"video_frames", p.video_frames},
                 {"segments", std::max(p.segments.size(), p.segment_count)}};
  json::array targets;
  for (auto& t : p.targets) {
    targets.push_back(json::value(t));
  }
  o["stations"] = targets;
  if (!p.error.empty()) {
    o["error"] = p.error;
  }
  if (full) {
    json::array segs;
    for (auto& s : p.segments) {
      segs.push_back(api::to_json(s));
    }
    o["segments"] = segs;
  }
  return o;
}

}  // namespace

struct content_manager::impl {
  asio::io_context& io;
  grid_config grid;
  std::shared_ptr<spdlog::logger> logger = log::get("content");
  std::unique_ptr<net::http_server> server;
  std::unique_ptr<net::http_client> client;
  std::unique_ptr<db::worker> db;
  std::unique_ptr<content::catalog> cat;  // used on the database thread only
  // With [auth]: its own token (for the directors and the registry) and the auth server's keys,
  // to check the operator token every change needs.
  std::unique_ptr<auth::service_session> auth;
  asio::thread_pool jobs{2};        // downloads and packaging
  std::atomic<bool> cancel{false};  // set at stop: downloads and packaging give up
  uint16_t port = 0;
  bool stopping = false;
  uint32_t background = 0;  // ingests and pushes in flight

  std::mutex progress_mu;
  std::map<program_id, progress_info> progress;  // ingests in flight
  std::map<program_id, std::unique_ptr<asio::system_timer>> schedule;
  std::map<program_id, pending_change> pending;
  asio::steady_timer push_wake;
  bool pushing = false;

  net::metric_value* ingests = nullptr;
  net::metric_value* failures = nullptr;
  net::metric_value* publishes = nullptr;

  impl(asio::io_context& i, grid_config g)
      : io(i), grid(std::move(g)), push_wake(i, steady::time_point::max()) {}
  ~impl() { jobs.join(); }

  const station_config& home() const { return *grid.home_station(); }

  // Runs a blocking job on the pool and resumes on the io thread.
  template <class F>
  asio::awaitable<std::invoke_result_t<F>> on_jobs(F f) {
    using R = std::invoke_result_t<F>;
    co_await asio::post(asio::bind_executor(jobs.get_executor(), asio::use_awaitable));
    std::optional<R> r;
    try {
      r.emplace(f());
    } catch (const std::exception& e) {
      r.emplace(make_error(errc::internal, e.what()));
    }
    co_await asio::post(asio::bind_executor(io.get_executor(), asio::use_awaitable));
    co_return std::move(*r);
  }

  void set_progress(const program_id& id, progress_info p) {
    std::lock_guard lock(progress_mu);
    progress[id] = std::move(p);
  }

  void routes();
  // nullopt when the request carries a valid operator token (or the grid has no auth server).
  asio::awaitable<std::optional<reply>> refuse_operator(request_context& ctx);
  asio::awaitable<reply> create(request_context& ctx);
  asio::awaitable<reply> list(request_context& ctx);
  asio::awaitable<reply> get(request_context& ctx);
  asio::awaitable<reply> publish(request_context& ctx);
  asio::awaitable<reply> withdraw(request_context& ctx);

  asio::awaitable<void> ingest(program_record p, double target_seconds);
  asio::awaitable<result<package_result>> fetch_and_package(const program_record& p,
                                                            const fs::path& work,
                                                            double target_seconds);
  asio::awaitable<void> fail(program_id id, std::string reason, bool loaded);
  asio::awaitable<void> remove_from_home(program_id id);
  void schedule_publish(const program_id& id, wall_clock::time_point at);
  asio::awaitable<void> publish_at_time(program_id id);
  asio::awaitable<status> change(const program_id& id, program_state to, std::string detail);
  void announce(const program_record& p);
  asio::awaitable<void> push_loop();
  asio::awaitable<std::set<std::string>> push_round(program_id id);
  // Tells the stations now (one round) and answers with the program and the stations that have
  // not acknowledged yet (they are told again until they do).
  asio::awaitable<reply> announce_and_reply(const program_record& p);
  asio::awaitable<void> recover();
};

content_manager::content_manager(asio::io_context& io, grid_config grid)
    : impl_(std::make_unique<impl>(io, std::move(grid))) {}

content_manager::~content_manager() = default;

uint16_t content_manager::port() const {
  return impl_->port;
}

status content_manager::start() {
  auto& d = *impl_;
  if (!d.grid.content) {
    return make_error(errc::invalid_argument, "the config has no [content]");
  }
  if (!d.grid.home_station()) {
    return make_error(errc::invalid_argument, "the config has no home station");
  }
  std::error_code ec;
  fs::create_directories(d.grid.content->work_dir, ec);
  if (ec) {
    return make_error(errc::io_error, fmt::format("cannot create {}: {}",
                                                  d.grid.content->work_dir.string(), ec.message()));
  }
  auto conn = db::open(d.grid.content->database);
  if (!conn) {
    return conn.err();
  }
  auto cat = catalog::open(**conn);
  if (!cat) {
    return cat.err();
  }
  d.cat = std::move(*cat);
  d.db = std::make_unique<db::worker>(std::move(*conn));
  d.server = std::make_unique<net::http_server>(d.io.get_executor(), "content");
  net::client_options co;
  co.request_timeout = std::chrono::seconds(10);
  co.bearer = [&d] { return d.auth ? d.auth->token() : std::string(); };
  d.client = std::make_unique<net::http_client>(d.io.get_executor(), co);
  if (d.grid.auth) {
    d.auth = std::make_unique<auth::service_session>(d.io.get_executor(), d.grid.auth->listen.url(),
                                                     "content", d.grid.content->work_dir,
                                                     "content manager");
    if (auto st = d.auth->start(); !st) {
      return st;
    }
  }
  d.routes();
  auto port = d.server->listen(d.grid.content->listen.host, d.grid.content->listen.port);
  if (!port) {
    return port.err();
  }
  d.port = *port;
  asio::co_spawn(d.io, d.recover(), asio::detached);
  d.logger->info("content manager: listening on {}:{}, catalog {}", d.grid.content->listen.host,
                 d.port, d.db->conn().kind() == db::dialect::sqlite ? "SQLite" : "PostgreSQL");
  return {};
}

asio::awaitable<void> content_manager::stop(std::chrono::milliseconds drain) {
  auto& d = *impl_;
  d.stopping = true;
  d.cancel = true;
  if (d.auth) {
    d.auth->stop();
  }
  auto deadline = steady::now() + drain;
  for (auto& [id, t] : d.schedule) {
    t->cancel();
  }
  d.push_wake.cancel();
  if (d.server) {
    co_await d.server->stop(drain);
  }
  asio::steady_timer t(d.io);
  while (d.background > 0 && steady::now() < deadline) {
    t.expires_after(std::chrono::milliseconds(10));
    co_await t.async_wait(use_tuple);
  }
}

void content_manager::impl::routes() {
  using V = http::verb;
  auto on = [this](V v, std::string pattern, asio::awaitable<reply> (impl::*fn)(request_context&),
                   uint64_t limit = 0) {
    server->route(
        v, std::move(pattern), [this, fn](request_context& c) { return (this->*fn)(c); }, limit);
  };
  on(V::post, "/v1/programs", &impl::create, 64 << 10);
  on(V::get, "/v1/programs", &impl::list);
  on(V::get, "/v1/programs/{}", &impl::get);
  on(V::post, "/v1/programs/{}/publish", &impl::publish);
  on(V::post, "/v1/programs/{}/withdraw", &impl::withdraw);
  server->set_health([this] {
    std::lock_guard lock(progress_mu);
    return json::object{
        {"role", "content"}, {"ingesting", progress.size()}, {"scheduled", schedule.size()}};
  });
  auto& m = server->metrics();
  ingests = &m.counter("vodgrid_content_ingests_total", "Programs ingested into the home station");
  failures = &m.counter("vodgrid_content_failures_total", "Ingests that failed");
  publishes = &m.counter("vodgrid_content_publishes_total", "Programs published");
}

asio::awaitable<std::optional<reply>> content_manager::impl::refuse_operator(request_context& ctx) {
  if (!auth) {
    co_return std::nullopt;
  }
  std::vector<auth::token_kind> kinds{auth::token_kind::operator_};  // (GCC 12: no braced list
                                                                     // as a coroutine argument)
  co_return co_await auth::refuse_unless(ctx, auth->keys(), std::move(kinds));
}

// --- The request: checked whole before anything is recorded. ---

asio::awaitable<reply> content_manager::impl::create(request_context& ctx) {
  auto refused = co_await refuse_operator(ctx);
  if (refused) {
    co_return std::move(*refused);
  }
  auto body = api::parse_object(ctx.req.body());
  if (!body) {
    co_return net::error_reply(body.err());
  }
  auto bad = [](std::string why) {
    return net::error_reply(make_error(errc::invalid_argument, std::move(why)));
  };
  auto str = [&](std::string_view k, size_t max) -> std::optional<std::string> {
    auto* v = body->if_contains(k);
    if (!v || !v->is_string() || v->as_string().empty() || v->as_string().size() > max) {
      return std::nullopt;
    }
    return std::string(v->as_string());
  };
  program_record p;
  auto id = str("id", 64);
  if (!id || !program_id::parse(*id)) {
    co_return bad("'id' must be 1-64 characters of [A-Za-z0-9_-]");
  }
  p.id = *program_id::parse(*id);
  auto title = str("title", 512);
  if (!title) {
    co_return bad("'title' must be a string of 1-512 characters");
  }
  p.title = *title;
  auto source = str("source", 4096);
  if (!source || source->find('\0') != std::string::npos) {
    co_return bad("'source' must name a file, a folder with one playlist, or an http(s) URL");
  }
  p.source = *source;
  if (!is_url(p.source)) {
    if (p.source.find("://") != std::string::npos) {
      co_return bad(
          fmt::format("source {}: only local paths and http(s) URLs are supported", p.source));
    }
    if (!fs::path(p.source).is_absolute()) {
      co_return bad("a local source must be an absolute path: " + p.source);
    }
    std::error_code ec;
    auto st = fs::status(p.source, ec);
    if (ec || !(fs::is_regular_file(st) || fs::is_directory(st))) {
      co_return bad("no such file: " + p.source);
    }
  }
  auto now = wall_clock::now();
  p.created_at = p.updated_at = now;
  p.publish_at = now;
  if (auto* pa = body->if_contains("publish_at"); pa && !pa->is_null()) {
    if (!pa->is_string()) {
      co_return bad("'publish_at' must be \"now\" or an RFC 3339 time");
    }
    std::string_view s = pa->as_string();
    if (s != "now") {
      auto t = parse_rfc3339(s);
      if (!t) {
        co_return bad("publish_at: " + t.err().detail);
      }
      if (*t < now - std::chrono::seconds(1)) {
        co_return bad(
            fmt::format("publish_at {} is in the past (now is {})", s, format_rfc3339(now)));
      }
      p.publish_at = *t;
    }
  }
  if (auto* st = body->if_contains("stations"); st && !st->is_null()) {
    if (!st->is_array() || st->as_array().size() > 1000) {
      co_return bad("'stations' must be an array of station names");
    }
    for (auto& s : st->as_array()) {
      if (!s.is_string() || !grid.find_station(s.as_string())) {
        co_return bad(fmt::format("'stations': no station {} in the grid",
                                  s.is_string() ? std::string(s.as_string()) : "(not a string)"));
      }
      p.targets.emplace_back(s.as_string());
    }
    if (!p.targets.empty() && !grid.registry) {
      co_return bad("'stations' needs a grid with a registry");
    }
  }
  if (auto* pf = body->if_contains("prefetch"); pf && !pf->is_null()) {
    if (!pf->is_int64() || pf->as_int64() < 0) {
      co_return bad("'prefetch' must be a count of segments");
    }
    p.prefetch = static_cast<uint32_t>(std::min<int64_t>(pf->as_int64(), segment_index::max));
  }
  double target_seconds = 4;
  if (auto* ts = body->if_contains("target_seconds"); ts && !ts->is_null()) {
    if (!ts->is_number() || ts->to_number<double>() < 0.5 || ts->to_number<double>() > 60) {
      co_return bad("'target_seconds' must be within 0.5..60");
    }
    target_seconds = ts->to_number<double>();
  }
  if (stopping) {
    co_return net::error_reply(make_error(errc::unavailable, "the content manager is stopping"));
  }
  {
    std::lock_guard lock(progress_mu);
    if (progress.contains(p.id)) {
      co_return net::error_reply(
          make_error(errc::conflict, fmt::format("program {} is being ingested", p.id.str())));
    }
  }
  auto created = co_await db->run([&](db::connection&) { return cat->create(p); });
  if (!created) {
    co_return net::error_reply(created.err());
  }
  set_progress(p.id, {"queued", 0, 0, ""});
  logger->info("program {} ({}): ingest from {}, publishes at {}", p.id.str(), p.title, p.source,
               format_rfc3339(p.publish_at));
  ++background;
  asio::co_spawn(io, ingest(p, target_seconds), asio::detached);
  co_return net::json_reply(to_json(p, false), http::status::accepted);
}

asio::awaitable<reply> content_manager::impl::list(request_context&) {
  auto all = co_await db->run([&](db::connection&) { return cat->list(); });
  if (!all) {
    co_return net::error_reply(all.err());
  }
  json::array a;
  for (auto& p : *all) {
    a.push_back(to_json(p, false));
  }
  co_return net::json_reply(json::object{{"programs", a}});
}

asio::awaitable<reply> content_manager::impl::get(request_context& ctx) {
  auto id = program_id::parse(ctx.params[0]);
  if (!id) {
    co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
  }
  auto p = co_await db->run([&](db::connection&) { return cat->get(*id); });
  if (!p) {
    co_return net::error_reply(p.err());
  }
  if (!*p) {
    co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
  }
  auto hist = co_await db->run([&](db::connection&) { return cat->history(*id); });
  auto o = to_json(**p, true);
  json::array h;
  if (hist) {
    for (auto& c : *hist) {
      h.push_back(json::object{
          {"at", format_rfc3339(c.at)}, {"state", to_string(c.state)}, {"detail", c.detail}});
    }
  }
  o["history"] = h;
  {
    std::lock_guard lock(progress_mu);
    if (auto it = progress.find(*id); it != progress.end()) {
      o["progress"] = json::object{{"phase", it->second.phase},
                                   {"done", it->second.done},
                                   {"total", it->second.total},
                                   {"unit", it->second.unit}};
    }
  }
  co_return net::json_reply(o);
}

asio::awaitable<status> content_manager::impl::change(const program_id& id, program_state to,
                                                      std::string detail) {
  auto now = wall_clock::now();
  co_return co_await db->run(
      [&](db::connection&) { return cat->change_state(id, to, now, detail); });
}

asio::awaitable<reply> content_manager::impl::publish(request_context& ctx) {
  auto refused = co_await refuse_operator(ctx);
  if (refused) {
    co_return std::move(*refused);
  }
  auto id = program_id::parse(ctx.params[0]);
  if (!id) {
    co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
  }
  auto now = wall_clock::now();
  auto st = co_await db->run([&](db::connection&) -> status {
    auto p = cat->get(*id);
    if (!p) {
      return p.err();
    }
    if (!*p) {
      return make_error(errc::not_found, "no such program: " + id->str());
    }
    if ((*p)->state == program_state::ingesting) {
      return make_error(errc::conflict, fmt::format("program {} is still being ingested; it "
                                                    "publishes at {} once it is in place",
                                                    id->str(), format_rfc3339((*p)->publish_at)));
    }
    if (auto s = cat->change_state(*id, program_state::published, now, "by the operator"); !s) {
      return s;
    }
    return cat->set_publish_at(*id, now);
  });
  if (!st) {
    co_return net::error_reply(st.err());
  }
  if (auto it = schedule.find(*id); it != schedule.end()) {
    it->second->cancel();
    schedule.erase(it);
  }
  auto p = co_await db->run([&](db::connection&) { return cat->get(*id); });
  if (!p || !*p) {
    co_return net::error_reply(p ? make_error(errc::not_found, "program deleted") : p.err());
  }
  publishes->inc();
  logger->info("program {}: published by the operator", id->str());
  co_return co_await announce_and_reply(**p);
}

asio::awaitable<reply> content_manager::impl::withdraw(request_context& ctx) {
  auto refused = co_await refuse_operator(ctx);
  if (refused) {
    co_return std::move(*refused);
  }
  auto id = program_id::parse(ctx.params[0]);
  if (!id) {
    co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
  }
  auto st = co_await change(*id, program_state::withdrawn, "by the operator");
  if (!st) {
    co_return net::error_reply(st.err());
  }
  if (auto it = schedule.find(*id); it != schedule.end()) {
    it->second->cancel();
    schedule.erase(it);
  }
  auto p = co_await db->run([&](db::connection&) { return cat->get(*id); });
  if (!p || !*p) {
    co_return net::error_reply(p ? make_error(errc::not_found, "program deleted") : p.err());
  }
  logger->info("program {}: withdrawn", id->str());
  co_return co_await announce_and_reply(**p);
}

asio::awaitable<reply> content_manager::impl::announce_and_reply(const program_record& p) {
  announce(p);
  auto missing = co_await push_round(p.id);
  auto o = to_json(p, false);
  json::array a;
  for (auto& s : missing) {
    a.push_back(json::value(s));
  }
  o["not_yet_told"] = a;
  co_return net::json_reply(o);
}

// --- The ingest: provider → packager → home station → registry → schedule. ---

asio::awaitable<result<package_result>> content_manager::impl::fetch_and_package(
    const program_record& p, const fs::path& work, double target_seconds) {
  download_options dl;
  auto id = p.id;
  dl.progress = [this, id](uint64_t done, uint64_t total) {
    set_progress(id,
                 {"downloading", static_cast<double>(done), static_cast<double>(total), "bytes"});
    return !cancel.load();
  };
  std::string input = p.source;
  bool playlist = is_playlist(p.source);
  if (!is_url(p.source) && fs::is_directory(p.source)) {
    // A folder holding one playlist: an HLS program packaged elsewhere.
    std::vector<fs::path> found;
    std::error_code ec;
    for (auto& e : fs::directory_iterator(p.source, ec)) {
      if (is_playlist(e.path().string())) {
        found.push_back(e.path());
      }
    }
    if (found.size() != 1) {
      co_return make_error(errc::invalid_argument,
                           fmt::format("{}: a folder source must hold exactly one .m3u8 ({} found)",
                                       p.source, found.size()));
    }
    input = found.front().string();
    playlist = true;
  }
  if (playlist) {
    auto hls_progress = [this, id](uint64_t done, uint64_t total) {
      set_progress(
          id, {"downloading", static_cast<double>(done), static_cast<double>(total), "segments"});
      return !cancel.load();
    };
    download_options ho = dl;
    ho.progress = hls_progress;
    auto joined = work / "source.ts";
    auto got = co_await on_jobs([&] { return fetch_hls(input, joined, ho); });
    if (!got) {
      co_return got.err();
    }
    input = joined.string();
  } else if (is_url(p.source)) {
    auto file = work / "source";
    auto got = co_await on_jobs([&] { return download(p.source, file, dl); });
    if (!got) {
      co_return got.err();
    }
    if (got->resumes > 0) {
      logger->info("program {}: download resumed {} times", p.id.str(), got->resumes);
    }
    input = file.string();
  }
  package_options po;
  po.input = input;
  po.out_dir = work / "hls";
  po.target_seconds = target_seconds;
  po.durable = false;  // a scratch folder: the engines keep the segments durably
  uint64_t smallest = UINT64_MAX;
  for (auto& e : home().engines) {
    smallest = std::min(smallest, e.max_segment_bytes);
  }
  po.max_segment_bytes = smallest;
  po.progress = [this, id](double done, double total) {
    set_progress(id, {"packaging", done, total, "seconds"});
  };
  set_progress(id, {"packaging", 0, 0, "seconds"});
  co_return co_await on_jobs([&] { return package(po); });
}

asio::awaitable<void> content_manager::impl::ingest(program_record p, double target_seconds) {
  auto work = grid.content->work_dir / p.id.str();
  std::error_code ec;
  fs::remove_all(work, ec);
  fs::create_directories(work, ec);
  ingests->inc();
  auto packaged = co_await fetch_and_package(p, work, target_seconds);
  if (!packaged) {
    co_await fail(p.id, packaged.err().detail, false);
    fs::remove_all(work, ec);
    --background;
    co_return;
  }
  p.duration = packaged->duration;
  p.video_codec = packaged->video_codec;
  p.audio_codec = packaged->audio_codec;
  p.width = packaged->width;
  p.height = packaged->height;
  p.bitrate = packaged->bitrate;
  p.video_frames = packaged->video_frames;
  for (auto& s : packaged->segments) {
    p.segments.push_back({segment_index{s.index}, s.duration, s.size, s.sha256});
  }
  auto recorded = co_await db->run([&](db::connection&) { return cat->set_packaged(p); });
  if (!recorded) {
    co_await fail(p.id, recorded.err().detail, false);
    fs::remove_all(work, ec);
    --background;
    co_return;
  }

  // Into the home station, inactive until its publish time.
  director::load_request lr;
  lr.director_url = home().director.listen.url();
  lr.id = p.id;
  lr.title = p.title;
  lr.source = (work / "hls").string();
  lr.availability = std::string(api::availability_inactive);
  lr.publish_at = format_rfc3339(p.publish_at);
  auto id = p.id;
  lr.progress = [this, id](size_t done, size_t total) {
    set_progress(id,
                 {"loading", static_cast<double>(done), static_cast<double>(total), "segments"});
  };
  set_progress(id, {"loading", 0, static_cast<double>(p.segments.size()), "segments"});
  net::client_options co;
  co.request_timeout = std::chrono::seconds(60);
  co.bearer = [this] { return auth ? auth->token() : std::string(); };
  net::http_client loader_client(io.get_executor(), co);
  auto manifest = co_await director::load_program(loader_client, lr);
  fs::remove_all(work, ec);  // the station holds the segments now (or nothing, on failure)
  if (!manifest) {
    co_await fail(p.id, "loading into the home station: " + manifest.err().detail, false);
    --background;
    co_return;
  }

  // Claim 11: the distribution parameters go to the registry, which pre-positions the program.
  if (grid.registry) {
    api::distribution d{*manifest, p.targets, p.prefetch};
    d.manifest.state.clear();
    auto r = co_await client->send_json(
        http::verb::put, fmt::format("{}/v1/programs/{}", grid.registry->listen.url(), p.id.str()),
        json::serialize(api::to_json(d)));
    if (!r || r->status != 200) {
      co_await fail(p.id,
                    fmt::format("the registry refused the distribution: {}",
                                r ? fmt::format("{} {}", r->status, r->body) : r.err().detail),
                    true);
      --background;
      co_return;
    }
  }
  auto st = co_await change(p.id, program_state::inactive,
                            fmt::format("publishes at {}", format_rfc3339(p.publish_at)));
  {
    std::lock_guard lock(progress_mu);
    progress.erase(p.id);
  }
  if (!st) {
    logger->error("program {}: {}", p.id.str(), st.err().detail);
    --background;
    co_return;
  }
  logger->info("program {}: {} segments, {:.1f} s in the home station; publishes at {}", p.id.str(),
               p.segments.size(), p.duration, format_rfc3339(p.publish_at));
  if (!stopping) {
    schedule_publish(p.id, p.publish_at);
  }
  --background;
}

asio::awaitable<void> content_manager::impl::fail(program_id id, std::string reason, bool loaded) {
  failures->inc();
  logger->warn("program {}: failed: {}", id.str(), reason);
  if (loaded) {
    co_await remove_from_home(id);
  }
  auto st = co_await change(id, program_state::failed, reason);
  if (!st) {
    logger->error("program {}: cannot record the failure: {}", id.str(), st.err().detail);
  }
  std::lock_guard lock(progress_mu);
  progress.erase(id);
}

asio::awaitable<void> content_manager::impl::remove_from_home(program_id id) {
  auto r = co_await client->request(
      http::verb::delete_,
      fmt::format("{}/v1/programs/{}", home().director.listen.url(), id.str()));
  if (!r || (r->status != 204 && r->status != 404)) {
    logger->warn("program {}: could not be removed from the home station: {}", id.str(),
                 r ? std::to_string(r->status) : r.err().detail);
  }
}

// --- Publishing: at the time, and the directors told until each has acknowledged. ---

void content_manager::impl::schedule_publish(const program_id& id, wall_clock::time_point at) {
  auto t = std::make_unique<asio::system_timer>(io, at);
  schedule[id] = std::move(t);
  ++background;
  asio::co_spawn(io, publish_at_time(id), asio::detached);
}

asio::awaitable<void> content_manager::impl::publish_at_time(program_id id) {
  auto it = schedule.find(id);
  if (it == schedule.end()) {
    --background;
    co_return;
  }
  auto* timer = it->second.get();
  auto [ec] = co_await timer->async_wait(use_tuple);
  if (ec || stopping) {
    --background;
    co_return;
  }
  if (auto cur = schedule.find(id); cur == schedule.end() || cur->second.get() != timer) {
    --background;  // rescheduled or cancelled meanwhile
    co_return;
  }
  schedule.erase(id);
  auto st = co_await change(id, program_state::published, "at its publish time");
  if (!st) {
    logger->warn("program {}: not published at its time: {}", id.str(), st.err().detail);
    --background;
    co_return;
  }
  auto p = co_await db->run([&](db::connection&) { return cat->get(id); });
  if (p && *p) {
    publishes->inc();
    logger->info("program {}: published", id.str());
    announce(**p);
  }
  --background;
}

void content_manager::impl::announce(const program_record& p) {
  pending_change c;
  c.change.availability = p.state == program_state::published   ? api::availability_published
                          : p.state == program_state::withdrawn ? api::availability_withdrawn
                                                                : api::availability_inactive;
  c.change.publish_at = format_rfc3339(p.publish_at);
  for (auto& s : grid.stations) {
    c.stations.insert(s.name.str());
    // No targets: every station (api::distribution); without a registry, the home alone.
    bool target = grid.registry &&
                  (p.targets.empty() ||
                   std::find(p.targets.begin(), p.targets.end(), s.name.str()) != p.targets.end());
    if (s.home || target) {
      c.holders.insert(s.name.str());
    }
  }
  c.registry = grid.registry.has_value();
  pending[p.id] = std::move(c);
  if (!pushing) {
    pushing = true;
    ++background;
    asio::co_spawn(io, push_loop(), asio::detached);
  } else {
    push_wake.cancel();
  }
}

// One attempt to tell the registry and every director still missing a program's change; what
// fails stays pending for the next round. Returns the stations still to tell.
asio::awaitable<std::set<std::string>> content_manager::impl::push_round(program_id id) {
  auto found = pending.find(id);
  if (found == pending.end()) {
    co_return std::set<std::string>{};
  }
  auto c = found->second;  // changes may arrive while this round awaits
  std::string body = json::serialize(api::to_json(c.change));
  if (c.registry) {
    auto r = co_await client->send_json(
        http::verb::post,
        fmt::format("{}/v1/programs/{}/availability", grid.registry->listen.url(), id.str()), body);
    if (r && (r->status == 200 || r->status == 404)) {
      c.registry = false;
    }
  }
  for (auto it = c.stations.begin(); it != c.stations.end();) {
    auto* s = grid.find_station(*it);
    auto r = co_await client->send_json(
        http::verb::post,
        fmt::format("{}/v1/programs/{}/availability", s->director.listen.url(), id.str()), body);
    // A station that holds it, or will once the registry's distribution reaches it, is told
    // until it answers; any other one only if it happens to know the program.
    bool expected = c.holders.contains(*it);
    if (r && r->status == 200) {
      it = c.stations.erase(it);
    } else if (r && r->status == 404 && (!expected || c.attempts >= 600)) {
      // Not a station of this program: it learns the change from the registry's copy if the
      // program is distributed there later.
      it = c.stations.erase(it);
    } else {
      ++it;
    }
  }
  ++c.attempts;
  auto cur = pending.find(id);
  if (cur != pending.end() && cur->second.change.availability == c.change.availability &&
      cur->second.change.publish_at == c.change.publish_at) {
    if (c.stations.empty() && !c.registry) {
      pending.erase(cur);
    } else {
      cur->second = c;
    }
  }
  co_return c.stations;
}

asio::awaitable<void> content_manager::impl::push_loop() {
  while (!pending.empty() && !stopping) {
    std::vector<program_id> ids;
    int max_attempts = 0;
    for (auto& [id, c] : pending) {
      ids.push_back(id);
    }
    for (auto& id : ids) {
      co_await push_round(id);
      if (auto it = pending.find(id); it != pending.end()) {
        max_attempts = std::max(max_attempts, it->second.attempts);
      }
    }
    if (pending.empty() || stopping) {
      break;
    }
    // Someone is still missing it: try again, less often the longer it takes.
    push_wake.expires_after(
        std::chrono::milliseconds(std::min(5000, 100 << std::min(max_attempts, 6))));
    co_await push_wake.async_wait(use_tuple);
  }
  pushing = false;
  --background;
}

// At start: finish what a stop interrupted.
asio::awaitable<void> content_manager::impl::recover() {
  ++background;
  auto all = co_await db->run([&](db::connection&) { return cat->list(); });
  if (!all) {
    logger->error("content manager: cannot read the catalog: {}", all.err().detail);
    --background;
    co_return;
  }
  for (auto& p : *all) {
    switch (p.state) {
      case program_state::ingesting: {
        std::error_code ec;
        fs::remove_all(grid.content->work_dir / p.id.str(), ec);
        co_await fail(p.id, "the content manager stopped during the ingest", true);
        break;
      }
      case program_state::inactive:
        schedule_publish(p.id, p.publish_at);
        announce(p);
        break;
      case program_state::published:
      case program_state::withdrawn:
        announce(p);
        break;
      case program_state::failed:
        break;
    }
  }
  --background;
}

}  // namespace vodgrid::content
