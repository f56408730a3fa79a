#include "director/loader.h"

#include <fmt/format.h>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <filesystem>

#include "api/hls.h"
#include "base/fs.h"
#include "base/log.h"
#include "push/ts.h"

namespace vodgrid::director {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t max_segment = 256ull << 20;

bool is_url(std::string_view s) {
  return s.rfind("http://", 0) == 0 || s.rfind("https://", 0) == 0;
}

// Where the playlist and its segments are read from.
struct source {
  std::string playlist_location;  // URL or file path
  bool remote = false;
};

result<source> locate(const std::string& s) {
  if (is_url(s)) {
    return source{s, true};
  }
  std::error_code ec;
  if (fs::is_directory(s, ec)) {
    std::vector<fs::path> found;
    for (auto& e : fs::directory_iterator(s, ec)) {
      if (e.path().extension() == ".m3u8") {
        found.push_back(e.path());
      }
    }
    if (found.size() == 1) {
      return source{found[0].string(), false};
    }
    auto idx = fs::path(s) / "index.m3u8";
    if (fs::exists(idx, ec)) {
      return source{idx.string(), false};
    }
    return make_error(
        errc::invalid_argument,
        fmt::format("{}: expected one .m3u8 playlist in the folder, found {}", s, found.size()));
  }
  if (!fs::is_regular_file(s, ec)) {
    return make_error(errc::invalid_argument, fmt::format("{}: no such file or folder", s));
  }
  return source{s, false};
}

asio::awaitable<result<std::string>> read_location(net::http_client& client, const source& src,
                                                   const std::string& where) {
  if (src.remote) {
    auto res = co_await client.get(where);
    if (!res) {
      co_return res.err();
    }
    if (res->status != 200) {
      co_return make_error(errc::unavailable, fmt::format("{} answered {}", where, res->status));
    }
    co_return std::move(res->body);
  }
  co_return read_file(where, max_segment);
}

result<std::string> segment_location(const source& src, const std::string& uri) {
  if (src.remote) {
    return net::resolve_url(src.playlist_location, uri);
  }
  if (is_url(uri)) {
    return make_error(errc::invalid_argument, "a local playlist names a remote segment: " + uri);
  }
  fs::path p(uri);
  if (p.is_absolute()) {
    return p.string();
  }
  return (fs::path(src.playlist_location).parent_path() / p).string();
}

// What a segment is: MPEG-TS (188-byte packets, each starting with the sync byte 0x47), or WebVTT
// (a subtitles rendition: "WEBVTT" after an optional byte order mark, then a blank or a line end).
result<api::segment_format> format_of(std::string_view data, const std::string& where) {
  std::string_view text = data.starts_with("\xEF\xBB\xBF") ? data.substr(3) : data;
  if (text.starts_with("WEBVTT") && (text.size() == 6 || text[6] == '\n' || text[6] == '\r' ||
                                     text[6] == ' ' || text[6] == '\t')) {
    return api::segment_format::webvtt;
  }
  bool ok = !data.empty() && data.size() % 188 == 0;
  for (size_t off = 0; ok && off < data.size(); off += 188) {
    ok = data[off] == 0x47;
  }
  if (!ok) {
    return make_error(errc::invalid_argument,
                      fmt::format("{}: not an MPEG-TS or WebVTT segment", where));
  }
  return api::segment_format::mpegts;
}

// The segment's key frames, for I-frame playlists (claim 21's HLS side). A segment without a
// video stream, or one the index cannot read, is loaded without them.
void index_key_frames(std::string_view data, api::segment_entry& seg) {
  auto ix = push::index_ts(data);
  if (!ix || ix->keyframes.empty()) {
    return;
  }
  seg.psi_bytes = ix->psi_bytes;
  for (auto& k : ix->keyframes) {
    seg.key_frames.push_back({k.offset, k.length, std::max(0.0, k.seconds)});
  }
}

// Pass 2 of load_program: uploads each segment to its engines and commits.
asio::awaitable<result<api::program_manifest>> place_and_commit(
    net::http_client& client, const load_request& req, const api::program_manifest& m,
    const source& src_ref, const std::vector<std::string>& where,
    const api::placement& placement_ref) {
  auto* src = &src_ref;
  auto* placement = &placement_ref;
  // Pass 2: upload each segment to its engines.
  for (size_t i = 0; i < m.segments.size(); ++i) {
    auto data = co_await read_location(client, *src, where[i]);
    if (!data) {
      co_return data.err();
    }
    if (sha256(*data) != m.segments[i].sha256) {
      co_return make_error(errc::digest_mismatch,
                           fmt::format("{} changed while loading", where[i]));
    }
    for (auto& e : placement->targets[i]) {
      auto url = fmt::format("{}/v1/segments/{}/{}.ts", e.url, m.id.str(), i);
      net::http_client::header_list headers;
      headers.emplace_back(api::sha256_header, to_hex(m.segments[i].sha256));
      headers.emplace_back("Content-Type", api::segment_content_type(m.format));
      auto put = co_await client.request(http::verb::put, url, *data, std::move(headers));
      if (!put) {
        co_return make_error(put.err().code,
                             fmt::format("engine {}: {}", e.name.str(), put.err().detail));
      }
      if (put->status != 201 && put->status != 200) {
        co_return make_error(errc::unavailable,
                             fmt::format("engine {} refused segment {} ({}): {}", e.name.str(), i,
                                         put->status, put->body));
      }
    }
    if (req.progress) {
      req.progress(i + 1, m.segments.size());
    }
  }

  auto commit = co_await client.request(
      http::verb::post, fmt::format("{}/v1/programs/{}/commit", req.director_url, m.id.str()));
  if (!commit) {
    co_return commit.err();
  }
  if (commit->status != 200) {
    co_return make_error(
        errc::unavailable,
        fmt::format("director did not commit the program ({}): {}", commit->status, commit->body));
  }
  auto done = api::decode<api::program_manifest>(commit->body);
  if (!done) {
    co_return done.err();
  }
  co_return std::move(*done);
}

}  // namespace

asio::awaitable<result<api::program_manifest>> load_program(net::http_client& client,
                                                            load_request req) {
  auto src = locate(req.source);
  if (!src) {
    co_return src.err();
  }
  auto text = co_await read_location(client, *src, src->playlist_location);
  if (!text) {
    co_return text.err();
  }
  auto pl = api::parse_media_playlist(*text);
  if (!pl) {
    co_return make_error(errc::invalid_argument,
                         fmt::format("{}: {}", src->playlist_location, pl.err().detail));
  }
  if (!pl->endlist) {
    co_return make_error(
        errc::invalid_argument,
        fmt::format("{}: not a VOD playlist (no #EXT-X-ENDLIST)", src->playlist_location));
  }

  // Pass 1: hash every segment (one in memory at a time).
  api::program_manifest m;
  m.id = req.id;
  m.title = req.title;
  m.availability = req.availability;
  m.publish_at = req.publish_at;
  std::vector<std::string> where;
  for (size_t i = 0; i < pl->segments.size(); ++i) {
    auto loc = segment_location(*src, pl->segments[i].uri);
    if (!loc) {
      co_return loc.err();
    }
    auto data = co_await read_location(client, *src, *loc);
    if (!data) {
      co_return data.err();
    }
    auto format = format_of(*data, *loc);
    if (!format) {
      co_return format.err();
    }
    if (i == 0) {
      m.format = *format;
    } else if (*format != m.format) {
      co_return make_error(
          errc::invalid_argument,
          fmt::format("{}: a {} segment among {} ones", *loc,
                      *format == api::segment_format::webvtt ? "WebVTT" : "MPEG-TS",
                      m.format == api::segment_format::webvtt ? "WebVTT" : "MPEG-TS"));
    }
    auto& seg = m.segments.emplace_back();
    seg = {segment_index{static_cast<uint32_t>(i)}, pl->segments[i].duration, data->size(),
           sha256(*data)};
    if (m.format == api::segment_format::mpegts) {
      index_key_frames(*data, seg);
    }
    where.push_back(*loc);
  }

  // The director answers with the engines each segment must go to.
  auto created = co_await client.send_json(http::verb::post, req.director_url + "/v1/programs",
                                           json::serialize(api::to_json(m)));
  if (!created) {
    co_return created.err();
  }
  if (created->status != 201) {
    co_return make_error(errc::unavailable, fmt::format("director refused the program ({}): {}",
                                                        created->status, created->body));
  }
  auto placement = api::decode<api::placement>(created->body);
  if (!placement) {
    co_return placement.err();
  }
  if (placement->targets.size() != m.segments.size()) {
    co_return make_error(errc::protocol_error,
                         "the director's placement does not match the program");
  }

  auto placed = co_await place_and_commit(client, req, m, *src, where, *placement);
  if (!placed) {
    // Nothing partial stays behind: the director forgets the program and deletes its copies.
    auto del = co_await client.request(
        http::verb::delete_, fmt::format("{}/v1/programs/{}", req.director_url, m.id.str()));
    if (!del || (del->status != 204 && del->status != 404)) {
      log::get("loader")->warn("program {}: could not be removed after a failed load: {}",
                               m.id.str(), del ? std::to_string(del->status) : del.err().detail);
    }
  }
  co_return placed;
}

}  // namespace vodgrid::director
