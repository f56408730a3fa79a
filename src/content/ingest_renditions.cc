// The ingest of a program of several renditions (DESIGN.md flow 9): a multivariant HLS source is
// kept as its variants, each downloaded and packaged (a remux) into its own folder, measured, and
// loaded into the home station as the ordinary program "{id}--{name}"; then the program itself,
// carrying only their list, is registered with the home director and distributed. What the
// transcoder makes (package_ladder, a ladder_result) is loaded the same way, by ingest_ladder.
#include <algorithm>

#include "api/hls.h"
#include "content/fetch.h"
#include "content/impl.h"
#include "director/loader.h"

namespace vodgrid::content {

void measure(rendition_info& r) {
  uint64_t bytes = 0, peak = 0;
  for (auto& s : r.media.segments) {
    bytes += s.size;
    if (s.duration > 0) {
      peak = std::max(peak, static_cast<uint64_t>(static_cast<double>(s.size) * 8 / s.duration));
    }
  }
  r.bandwidth = std::max<uint64_t>(peak, 1);
  r.average_bandwidth =
      r.media.duration > 0
          ? static_cast<uint64_t>(static_cast<double>(bytes) * 8 / r.media.duration)
          : 0;
}

rendition_info variant_rendition(const api::variant_stream& v, size_t index, package_result media,
                                 const std::vector<rendition_info>& taken) {
  rendition_info r;
  r.kind = rendition_kind::video;
  r.width = media.width > 0 ? media.width : v.width;
  r.height = media.height > 0 ? media.height : v.height;
  std::string base = r.height > 0 ? fmt::format("{}p", r.height) : fmt::format("v{}", index);
  r.name = base;
  for (int n = 2; std::any_of(taken.begin(), taken.end(),
                              [&](const rendition_info& t) { return t.name == r.name; });
       ++n) {
    r.name = fmt::format("{}-{}", base, n);
  }
  r.codecs = v.codecs;
  r.frame_rate = v.frame_rate;
  if (r.frame_rate <= 0 && media.duration > 0) {
    r.frame_rate =
        std::round(static_cast<double>(media.video_frames) / media.duration * 1000) / 1000;
  }
  r.media = std::move(media);
  measure(r);
  return r;
}

api::rendition wire_rendition(const rendition_info& r) {
  api::rendition w;
  w.name = r.name;
  w.kind = r.kind == rendition_kind::audio       ? api::rendition_kind::audio
           : r.kind == rendition_kind::subtitles ? api::rendition_kind::subtitles
                                                 : api::rendition_kind::video;
  w.bandwidth = r.bandwidth;
  w.average_bandwidth = r.average_bandwidth;
  w.codecs = r.codecs;
  w.width = r.width;
  w.height = r.height;
  w.frame_rate = r.frame_rate;
  w.language = r.language;
  w.title = r.title;
  w.is_default = r.is_default;
  return w;
}

asio::awaitable<result<std::optional<api::multivariant_playlist>>>
content_manager::impl::multivariant_source(program_entry p, fs::path work) {
  auto playlist = source_playlist(p.source);
  if (!playlist) {
    co_return playlist.err();
  }
  if (!*playlist) {
    co_return std::optional<api::multivariant_playlist>();
  }
  download_options o;
  o.progress = [this](uint64_t, uint64_t) { return !cancel.load(); };
  auto where = **playlist;
  co_return co_await net::run_on(
      jobs, [&] { return read_multivariant(where, work / "master.m3u8.part", o); });
}

// Each variant downloaded (its segments joined) and packaged into work/hls/{name}; the source's
// alternative renditions (audio, subtitles in playlists of their own) are named as dropped.
asio::awaitable<result<ladder_result>> content_manager::impl::package_variants(
    program_entry p, fs::path work, double target_seconds, api::multivariant_playlist source) {
  ladder_result out;
  uint64_t smallest = UINT64_MAX;
  for (auto& e : home().engines) {
    smallest = std::min(smallest, e.max_segment_bytes);
  }
  auto id = p.id;
  for (size_t i = 0; i < source.variants.size(); ++i) {
    auto& v = source.variants[i];
    auto what = [&](const error& e) {
      return make_error(e.code, fmt::format("variant {} of the source ({}): {}", i + 1,
                                            v.width > 0 ? fmt::format("{}x{}", v.width, v.height)
                                                        : fmt::format("{} bits/s", v.bandwidth),
                                            e.detail));
    };
    download_options o;
    o.progress = [this, id](uint64_t done, uint64_t total) {
      set_progress(
          id, {"downloading", static_cast<double>(done), static_cast<double>(total), "segments"});
      return !cancel.load();
    };
    auto joined = work / fmt::format("variant{}.ts", i);
    auto got = co_await net::run_on(jobs, [&] { return fetch_hls(v.uri, joined, o); });
    if (!got) {
      co_return what(got.err());
    }
    package_options po;
    po.input = joined.string();
    po.out_dir = work / "hls" / fmt::format("variant{}", i);
    po.target_seconds = target_seconds;
    po.durable = false;  // a scratch folder: the engines keep the segments durably
    po.max_segment_bytes = smallest;
    po.progress = [this, id](double done, double total) {
      set_progress(id, {"packaging", done, total, "seconds"});
    };
    set_progress(id, {"packaging", 0, 0, "seconds"});
    auto packaged = co_await net::run_on(jobs, [&] { return package(po); });
    std::error_code ec;
    fs::remove(joined, ec);
    if (!packaged) {
      co_return what(packaged.err());
    }
    auto r = variant_rendition(v, i + 1, std::move(*packaged), out.renditions);
    // Each rendition's folder is its name, as package_ladder writes them.
    fs::rename(po.out_dir, work / "hls" / r.name, ec);
    if (ec) {
      co_return make_error(errc::io_error,
                           fmt::format("renaming {}: {}", po.out_dir.string(), ec.message()));
    }
    r.media.playlist = work / "hls" / r.name / "index.m3u8";
    out.renditions.push_back(std::move(r));
  }
  for (auto& m : source.media) {
    if (!m.uri.empty()) {
      out.dropped.push_back(fmt::format(
          "{} rendition '{}'{} of the source: alternative renditions of a multivariant source "
          "are not kept (each variant keeps the audio muxed into it)",
          m.type, m.name, m.language.empty() ? "" : " (" + m.language + ")"));
    }
  }
  std::stable_sort(
      out.renditions.begin(), out.renditions.end(),
      [](const rendition_info& a, const rendition_info& b) { return a.bandwidth > b.bandwidth; });
  co_return out;
}

// A source transcoded into a ladder of renditions (content/transcode.h), then loaded as they are.
asio::awaitable<void> content_manager::impl::transcode(program_entry p, fs::path work,
                                                       double target_seconds,
                                                       ladder_options ladder) {
  auto input = co_await fetch_source(p, work);
  if (!input) {
    co_await fail(p.id, input.err().detail, std::vector<program_id>());
    co_return;
  }
  auto id = p.id;
  auto po = scratch_packaging(id, *input, work, target_seconds, "transcoding");
  ladder.cancelled = [this] { return cancel.load(); };
  set_progress(id, {"transcoding", 0, 0, "seconds"});
  auto made = co_await net::run_on(jobs, [&] { return package_ladder(po, ladder); });
  if (!made) {
    co_await fail(p.id, made.err().detail, std::vector<program_id>());
    co_return;
  }
  co_await ingest_ladder(std::move(p), std::move(*made));
}

asio::awaitable<void> content_manager::impl::ingest_variants(program_entry p, fs::path work,
                                                             double target_seconds,
                                                             api::multivariant_playlist source) {
  auto ladder = co_await package_variants(p, work, target_seconds, std::move(source));
  if (!ladder) {
    co_await fail(p.id, ladder.err().detail, std::vector<program_id>());
    co_return;
  }
  co_await ingest_ladder(std::move(p), std::move(*ladder));
}

asio::awaitable<void> content_manager::impl::ingest_ladder(program_entry p, ladder_result ladder) {
  if (ladder.renditions.empty() || ladder.renditions.front().kind != rendition_kind::video) {
    co_await fail(p.id, "the source gave no video rendition", std::vector<program_id>());
    co_return;
  }
  // The program as the catalog shows it: its top rendition's figures and every rendition's list.
  auto& top = ladder.renditions.front().media;
  p.duration = top.duration;
  p.video_codec = top.video_codec;
  p.audio_codec = top.audio_codec;
  p.width = top.width;
  p.height = top.height;
  p.bitrate = top.bitrate;
  p.video_frames = top.video_frames;
  p.segments.clear();
  p.renditions.clear();
  for (auto& r : ladder.renditions) {
    if (r.bandwidth == 0) {
      measure(r);  // a rendition's BANDWIDTH is required on the wire
    }
    p.renditions.push_back(wire_rendition(r));
  }
  p.dropped = ladder.dropped;
  for (auto& d : p.dropped) {
    logger->warn("program {}: not kept: {}", p.id.str(), d);
  }
  if (auto recorded = co_await on_db([&] { return cat->set_packaged(p); }); !recorded) {
    co_await fail(p.id, recorded.err().detail, std::vector<program_id>());
    co_return;
  }
  auto manifests = co_await load_ladder(p, std::move(ladder));
  if (!manifests) {
    co_await fail(p.id, "loading into the home station: " + manifests.err().detail,
                  std::vector<program_id>());
    co_return;
  }
  std::vector<program_id> loaded;
  for (auto& m : *manifests) {
    loaded.push_back(m.id);
  }
  // The registry takes the renditions first: the program's distribution names them.
  for (auto& m : *manifests) {
    if (auto distributed = co_await distribute(p, m); !distributed) {
      co_await fail(p.id, distributed.err().detail, loaded);
      co_return;
    }
  }
  co_await finish_ingest(std::move(p));
}

// Every rendition, then the program with their list, into the home station; on a failure, what
// was loaded is removed again. The manifests: the renditions', the program's last.
asio::awaitable<result<std::vector<api::program_manifest>>> content_manager::impl::load_ladder(
    program_entry p, ladder_result ladder) {
  std::vector<api::program_manifest> loaded;
  std::vector<program_id> ids;  // of `loaded`: what a failure removes
  for (auto& r : ladder.renditions) {
    auto id = api::rendition_id(p.id, r.name);
    if (!id) {
      co_await remove_all_from_home(ids);
      co_return make_error(errc::invalid_argument,
                           fmt::format("rendition name {} makes no program id", r.name));
    }
    auto m = co_await load_into_home(p, *id, r.media.playlist.parent_path());
    if (!m) {
      co_await remove_all_from_home(ids);
      co_return make_error(m.err().code, fmt::format("rendition {}: {}", r.name, m.err().detail));
    }
    ids.push_back(*id);
    loaded.push_back(std::move(*m));
  }
  api::program_manifest parent;
  parent.id = p.id;
  parent.title = p.title;
  parent.availability = std::string(api::availability_inactive);
  parent.publish_at = format_rfc3339(p.publish_at);
  parent.renditions = p.renditions;
  // Each video rendition's I-frame playlist, from the key frames the loader indexed: its rates go
  // into the multivariant playlist's EXT-X-I-FRAME-STREAM-INF.
  for (size_t i = 0; i < parent.renditions.size() && i < loaded.size(); ++i) {
    if (parent.renditions[i].kind == api::rendition_kind::video) {
      auto rates = api::iframe_rates_of(loaded[i]);
      parent.renditions[i].iframe_bandwidth = rates.bandwidth;
      parent.renditions[i].iframe_average_bandwidth = rates.average_bandwidth;
    }
  }
  auto registered = co_await register_parent(parent);
  if (!registered) {
    co_await remove_all_from_home(ids);
    co_return registered.err();
  }
  loaded.push_back(std::move(*registered));
  co_return loaded;
}

// The program itself at the home director: a manifest of renditions (no segments, so nothing to
// place) and its commit.
asio::awaitable<result<api::program_manifest>> content_manager::impl::register_parent(
    api::program_manifest parent) {
  auto loader = loader_client();
  auto url = home().director.listen.url();
  auto created = co_await loader->send_json(http::verb::post, url + "/v1/programs",
                                            json::serialize(api::to_json(parent)));
  if (!created || created->status != 201) {
    co_return make_error(errc::unavailable,
                         fmt::format("the home director refused program {}: {}", parent.id.str(),
                                     created ? fmt::format("{} {}", created->status, created->body)
                                             : created.err().detail));
  }
  auto commit = co_await loader->request(
      http::verb::post, fmt::format("{}/v1/programs/{}/commit", url, parent.id.str()));
  if (!commit || commit->status != 200) {
    co_await remove_from_home(parent.id);
    co_return make_error(
        errc::unavailable,
        fmt::format(
            "the home director did not commit program {}: {}", parent.id.str(),
            commit ? fmt::format("{} {}", commit->status, commit->body) : commit.err().detail));
  }
  parent.state = "ready";
  co_return parent;
}

}  // namespace vodgrid::content
