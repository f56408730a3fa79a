// The ingest (claim 2): the request's checks, then provider → packager → home station →
// registry → schedule. Downloads and packaging run on the job pool; a failure at any step marks the
// program failed and removes what reached the home station.
#include "base/fs.h"
#include "content/fetch.h"
#include "content/impl.h"
#include "director/loader.h"

namespace vodgrid::content {

namespace {

error bad(std::string why) {
  return make_error(errc::invalid_argument, std::move(why));
}

// The source: an http(s) URL, or an absolute path to a file or folder that exists.
status check_source(const std::string& source) {
  if (is_url(source)) {
    return {};
  }
  if (source.find("://") != std::string::npos) {
    return bad(fmt::format("source {}: only local paths and http(s) URLs are supported", source));
  }
  if (!fs::path(source).is_absolute()) {
    return bad("a local source must be an absolute path: " + source);
  }
  std::error_code ec;
  auto st = fs::status(source, ec);
  if (ec || !(fs::is_regular_file(st) || fs::is_directory(st))) {
    return bad("no such file: " + source);
  }
  return {};
}

// The publish time: none for now, otherwise not in the past. The second of slack is for a client's
// clock a moment behind ours, not an operator's setting.
result<wall_clock::time_point> publish_time(std::optional<wall_clock::time_point> at,
                                            wall_clock::time_point now) {
  if (!at) {
    return now;
  }
  if (*at < now - std::chrono::seconds(1)) {
    return bad(fmt::format("publish_at {} is in the past (now is {})", format_rfc3339(*at),
                           format_rfc3339(now)));
  }
  return *at;
}

// The targets of the distribution, each a station of the grid, which needs a registry to reach
// them.
result<std::vector<std::string>> target_stations(const std::vector<station_id>& stations,
                                                 const grid_config& grid) {
  std::vector<std::string> targets;
  for (auto& s : stations) {
    if (!grid.find_station(s.str())) {
      return bad(fmt::format("'stations': no station {} in the grid", s.str()));
    }
    targets.push_back(s.str());
  }
  if (!targets.empty() && !grid.registry) {
    return bad("'stations' needs a grid with a registry");
  }
  return targets;
}

}  // namespace

result<std::optional<std::string>> source_playlist(const std::string& source) {
  if (is_url(source) || !fs::is_directory(source)) {
    return is_playlist(source) ? std::optional<std::string>(source) : std::nullopt;
  }
  // A folder holding one playlist: an HLS program packaged elsewhere.
  std::vector<fs::path> found;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(source, ec)) {
    if (is_playlist(e.path().string())) {
      found.push_back(e.path());
    }
  }
  size_t all = found.size();
  if (found.size() > 1) {
    // A multivariant source whose media playlists lie beside it: the one multivariant playlist.
    std::erase_if(found, [](const fs::path& f) {
      auto text = read_file(f, 1 << 20);
      return !text || !api::is_multivariant(*text);
    });
  }
  if (found.size() != 1) {
    return make_error(errc::invalid_argument,
                      fmt::format("{}: a folder source must hold exactly one .m3u8, or one "
                                  "multivariant playlist among them ({} found)",
                                  source, all));
  }
  return std::optional<std::string>(found.front().string());
}

result<checked_ingest> parse_ingest_request(std::string_view body, const grid_config& grid,
                                            wall_clock::time_point now) {
  VODGRID_TRY(auto req, api::decode<api::ingest_request>(body));
  if (!valid_ladder_program(req.id.str())) {
    // "--" names renditions (flow 9), which only the content manager makes.
    return bad(
        fmt::format("program id {}: must be at most 46 characters and hold no \"--\" "
                    "(reserved for renditions)",
                    req.id.str()));
  }
  VODGRID_TRY(check_source(req.source));
  program_entry p;
  p.id = req.id;
  p.title = std::move(req.title);
  p.source = std::move(req.source);
  p.created_at = p.updated_at = now;
  VODGRID_TRY(p.publish_at, publish_time(req.publish_at, now));
  VODGRID_TRY(p.targets, target_stations(req.stations, grid));
  p.prefetch = req.prefetch;
  checked_ingest out{std::move(p), req.target_seconds};
  if (!req.renditions.empty()) {
    out.transcode = true;
    if (req.renditions != "auto") {
      VODGRID_TRY(out.ladder.rungs, parse_renditions(req.renditions));
    }
  }
  return out;
}

// Downloads the program's source into `work` when it is remote or an HLS playlist (joined into one
// transport stream); the file the packager reads.
asio::awaitable<result<std::string>> content_manager::impl::fetch_source(program_entry p,
                                                                         fs::path work) {
  download_options dl;
  auto id = p.id;
  dl.progress = [this, id](uint64_t done, uint64_t total) {
    set_progress(id,
                 {"downloading", static_cast<double>(done), static_cast<double>(total), "bytes"});
    return !cancel.load();
  };
  std::string input = p.source;
  auto found = source_playlist(p.source);
  if (!found) {
    co_return found.err();
  }
  if (*found) {
    input = **found;
    auto hls_progress = [this, id](uint64_t done, uint64_t total) {
      set_progress(
          id, {"downloading", static_cast<double>(done), static_cast<double>(total), "segments"});
      return !cancel.load();
    };
    download_options ho = dl;
    ho.progress = hls_progress;
    auto joined = work / "source.ts";
    auto got = co_await net::run_on(jobs, [&] { return fetch_hls(input, joined, ho); });
    if (!got) {
      co_return got.err();
    }
    input = joined.string();
  } else if (is_url(p.source)) {
    auto file = work / "source";
    auto got = co_await net::run_on(jobs, [&] { return download(p.source, file, dl); });
    if (!got) {
      co_return got.err();
    }
    if (got->resumes > 0) {
      logger->info("program {}: download resumed {} times", p.id.str(), got->resumes);
    }
    input = file.string();
  }
  co_return input;
}

asio::awaitable<result<package_result>> content_manager::impl::fetch_and_package(
    const program_entry& p, const fs::path& work, double target_seconds) {
  auto input = co_await fetch_source(p, work);
  if (!input) {
    co_return input.err();
  }
  auto id = p.id;
  auto po = scratch_packaging(id, *input, work, target_seconds, "packaging");
  set_progress(id, {"packaging", 0, 0, "seconds"});
  co_return co_await net::run_on(jobs, [&] { return package(po); });
}

asio::awaitable<void> content_manager::impl::ingest(program_entry p, double target_seconds,
                                                    std::optional<ladder_options> ladder) {
  auto work = grid.content->work_dir / p.id.str();
  std::error_code ec;
  fs::remove_all(work, ec);
  fs::create_directories(work, ec);
  ingests->inc();
  // A multivariant HLS source is kept as its renditions (flow 9).
  auto variants = co_await multivariant_source(p, work);
  if (!variants || *variants) {
    if (!variants) {
      co_await fail(p.id, variants.err().detail, std::vector<program_id>());
    } else {
      co_await ingest_variants(std::move(p), work, target_seconds, std::move(**variants));
    }
    fs::remove_all(work, ec);
    co_return;
  }
  if (ladder) {
    co_await transcode(std::move(p), work, target_seconds, std::move(*ladder));
    fs::remove_all(work, ec);
    co_return;
  }
  auto packaged = co_await fetch_and_package(p, work, target_seconds);
  if (!packaged) {
    co_await fail(p.id, packaged.err().detail, std::vector<program_id>());
    fs::remove_all(work, ec);
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
  auto recorded = co_await on_db([&] { return cat->set_packaged(p); });
  if (!recorded) {
    co_await fail(p.id, recorded.err().detail, std::vector<program_id>());
    fs::remove_all(work, ec);
    co_return;
  }
  // Into the home station, inactive until its publish time; then the registry.
  auto manifest = co_await load_into_home(p, p.id, work / "hls");
  fs::remove_all(work, ec);  // the station holds the segments now (or nothing, on failure)
  if (!manifest) {
    co_await fail(p.id, "loading into the home station: " + manifest.err().detail,
                  std::vector<program_id>());
    co_return;
  }
  if (auto distributed = co_await distribute(p, *manifest); !distributed) {
    co_await fail(p.id, distributed.err().detail, std::vector<program_id>(1, p.id));
    co_return;
  }
  co_await finish_ingest(std::move(p));
}

asio::awaitable<void> content_manager::impl::finish_ingest(program_entry p) {
  auto st = co_await change(p.id, program_state::inactive,
                            fmt::format("publishes at {}", format_rfc3339(p.publish_at)));
  {
    std::lock_guard lock(progress_mu);
    progress.erase(p.id);
  }
  if (!st) {
    logger->error("program {}: {}", p.id.str(), st.err().detail);
    co_return;
  }
  logger->info(
      "program {}: {} segments, {} renditions, {:.1f} s in the home station; publishes "
      "at {}",
      p.id.str(), p.segments.size(), p.renditions.size(), p.duration, format_rfc3339(p.publish_at));
  if (!stopping) {
    schedule_publish(p.id, p.publish_at);
  }
}

// Loads the packaged folder as program `id` (`p` itself or one of its renditions) into the home
// station, inactive until its publish time.
asio::awaitable<result<api::program_manifest>> content_manager::impl::load_into_home(
    program_entry p, program_id id, fs::path folder) {
  director::load_request lr;
  lr.director_url = home().director.listen.url();
  lr.id = id;
  lr.title = p.title;
  lr.source = folder.string();
  lr.availability = std::string(api::availability_inactive);
  lr.publish_at = format_rfc3339(p.publish_at);
  lr.progress = [this, id = p.id](size_t done, size_t total) {
    set_progress(id,
                 {"loading", static_cast<double>(done), static_cast<double>(total), "segments"});
  };
  set_progress(p.id, {"loading", 0, 0, "segments"});
  auto loader = loader_client();
  co_return co_await director::load_program(*loader, lr);
}

std::unique_ptr<net::http_client> content_manager::impl::loader_client() {
  net::client_options co;
  // Each request of a load (the manifest, a segment stored durably by an engine, the commit) puts
  // the program into a station: like a director's order of a copy, so bounded by the same key.
  co.request_timeout = grid.timing.order;
  co.bearer = [this] { return auth ? auth->token() : std::string(); };
  return std::make_unique<net::http_client>(io.get_executor(), co);
}

// Claim 11: the distribution parameters go to the registry, which pre-positions the program.
// Nothing to do in a grid without a registry.
asio::awaitable<status> content_manager::impl::distribute(program_entry p,
                                                          api::program_manifest manifest) {
  if (!grid.registry) {
    co_return status{};
  }
  api::distribution d{std::move(manifest), p.targets, p.prefetch};
  d.manifest.state.clear();
  auto r = co_await registry->send_json(  // (the manifest's id: `p` or one of its renditions)
      *client, http::verb::put, fmt::format("/v1/programs/{}", d.manifest.id.str()),
      json::serialize(api::to_json(d)));
  if (!r || r->status != 200) {
    co_return make_error(errc::unavailable, fmt::format("the registry refused the distribution: {}",
                                                        r ? fmt::format("{} {}", r->status, r->body)
                                                          : r.err().detail));
  }
  co_return status{};
}

asio::awaitable<void> content_manager::impl::fail(program_id id, std::string reason,
                                                  std::vector<program_id> loaded) {
  failures->inc();
  logger->warn("program {}: failed: {}", id.str(), reason);
  co_await remove_all_from_home(std::move(loaded));
  auto st = co_await change(id, program_state::failed, reason);
  if (!st) {
    logger->error("program {}: cannot record the failure: {}", id.str(), st.err().detail);
  }
  std::lock_guard lock(progress_mu);
  progress.erase(id);
}

asio::awaitable<void> content_manager::impl::remove_all_from_home(std::vector<program_id> ids) {
  for (auto& id : ids) {
    co_await remove_from_home(id);
  }
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

package_options content_manager::impl::scratch_packaging(const program_id& id,
                                                         const std::string& input,
                                                         const fs::path& work,
                                                         double target_seconds, std::string phase) {
  package_options po;
  po.input = input;
  po.out_dir = work / "hls";
  po.target_seconds = target_seconds;
  po.durable = false;
  po.max_segment_bytes = UINT64_MAX;
  for (auto& e : home().engines) {
    po.max_segment_bytes = std::min(po.max_segment_bytes, e.max_segment_bytes);
  }
  po.progress = [this, id, phase](double done, double total) {
    set_progress(id, {phase, done, total, "seconds"});
  };
  return po;
}

}  // namespace vodgrid::content
