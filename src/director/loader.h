// The station-level loader: puts a packaged HLS VOD program (an .m3u8 with its MPEG-TS segments,
// or WebVTT ones for subtitles, from a folder, a file or an http URL) into a station. It hashes
// every segment, registers the manifest with the director, uploads each segment to the engines the
// director names, and commits. `vodgrid ingest` calls it today; the content engine will call it
// later.
#pragma once

#include <functional>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "api/api.h"
#include "base/result.h"
#include "net/client.h"

namespace vodgrid::director {

struct load_request {
  std::string director_url;  // "http://host:port"
  program_id id;
  std::string title;
  std::string source;  // a folder holding one .m3u8, an .m3u8 file, or an http:// URL of one
  // What the program is once committed (api::program_manifest::availability): the content manager
  // loads programs "inactive" until their publish time; a lone `vodgrid ingest` publishes at once.
  std::string availability = std::string(api::availability_published);
  std::string publish_at;  // RFC 3339, for the viewers' reason while inactive
  // Called after each segment is in place: (segments done, total).
  std::function<void(size_t, size_t)> progress;
};

// A program that fails after the director accepted it is deleted again (from the director and its
// engines), so that nothing partial stays in the station.
// Errors: errc::invalid_argument for a bad source (not a playlist, segments neither MPEG-TS nor
// WebVTT), errc::unavailable for an unreachable director or engine, and whatever the director
// refused with.
boost::asio::awaitable<result<api::program_manifest>> load_program(net::http_client& client,
                                                                   load_request req);

}  // namespace vodgrid::director
