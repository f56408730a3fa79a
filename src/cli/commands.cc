// The commands that put programs into a grid without a content manager and list them (ingest,
// programs; with a content manager they hand over to content_commands.cc), and what every command
// shares: the failure line, the grid URL, the program id made from a title.
#include "cli/commands.h"

#include <unistd.h>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>
#include <boost/json/serialize.hpp>

#include <cstdlib>
#include <iostream>

#include "api/api.h"
#include "cli/commands_impl.h"
#include "cli/remote.h"
#include "cli/sync.h"
#include "director/loader.h"
#include "net/client.h"
#include "net/peer_list.h"

namespace vodgrid::cli {

namespace asio = boost::asio;
namespace json = boost::json;

int fail(std::string_view cmd, std::string_view why) {
  std::cerr << "vodgrid " << cmd << ": " << why << "\n";
  return 1;
}

namespace {

asio::awaitable<result<net::client_response>> put_json(std::string url, std::string body,
                                                       std::string token) {
  net::client_options co;
  co.bearer = [token] { return token; };
  net::http_client client(co_await asio::this_coro::executor, co);
  co_return co_await client.send_json(boost::beast::http::verb::put, std::move(url),
                                      std::move(body));
}

asio::awaitable<result<api::program_manifest>> load(director::load_request req, std::string token) {
  net::client_options co;
  co.request_timeout = std::chrono::seconds(60);
  co.bearer = [token] { return token; };  // an operator's, for a grid with an auth server
  net::http_client client(co_await asio::this_coro::executor, co);
  co_return co_await director::load_program(client, std::move(req));
}

}  // namespace

result<api::program_manifest> director_ingest(const ingest_options& o, bool quiet) {
  auto id = program_id::parse(o.id.empty() ? id_from_title(o.title) : o.id);
  if (!id) {
    return make_error(
        errc::invalid_argument,
        fmt::format("bad program id '{}': use 1-64 characters of [A-Za-z0-9_-]", o.id));
  }
  if (id->str().find(api::rendition_separator) != std::string::npos) {
    return make_error(
        errc::invalid_argument,
        fmt::format("bad program id '{}': \"--\" is reserved for renditions", id->str()));
  }
  if (o.title.empty()) {
    return make_error(errc::invalid_argument, "--title must not be empty");
  }
  bool tty = ::isatty(2);
  std::string grid = grid_url(o.grid);
  auto role = role_of(grid);
  if (!role) {
    return role.err();
  }
  std::string director_url = grid;
  if (*role == "registry") {
    auto home = home_director(grid, token_from(o.token));
    if (!home) {
      return home.err();
    }
    director_url = *home;
  } else if (!o.stations.empty()) {
    return make_error(errc::invalid_argument, "--stations needs a grid with a registry");
  }
  director::load_request req;
  req.director_url = director_url;
  req.id = *id;
  req.title = o.title;
  req.source = o.source;
  if (!quiet) {
    req.progress = [tty](size_t done, size_t total) {
      if (tty) {
        int width = 30;
        int filled = static_cast<int>(width * done / total);
        std::cerr << fmt::format("\r[{}{}] {}/{} segments", std::string(filled, '#'),
                                 std::string(width - filled, ' '), done, total)
                  << (done == total ? "\n" : "") << std::flush;
      } else if (done == total || done % 10 == 0) {
        std::cerr << fmt::format("loaded {}/{} segments\n", done, total);
      }
    };
  }
  asio::io_context io;
  auto m = run_sync(io, load(std::move(req), token_from(o.token)));
  if (!m || *role != "registry") {
    return m;
  }
  // Claim 11: the distribution parameters go to the registry, which tells the target stations.
  api::distribution d{*m, {}, o.prefetch};
  for (size_t i = 0; i < o.stations.size();) {
    size_t j = o.stations.find(',', i);
    j = j == std::string::npos ? o.stations.size() : j;
    if (j > i) {
      d.targets.push_back(o.stations.substr(i, j - i));
    }
    i = j + 1;
  }
  d.manifest.state.clear();
  auto r = run_sync(io, put_json(fmt::format("{}/v1/programs/{}", grid, m->id.str()),
                                 json::serialize(api::to_json(d)), token_from(o.token)));
  if (!r) {
    return r.err();
  }
  if (r->status != 200) {
    return make_error(
        errc::unavailable,
        fmt::format("the registry refused the distribution ({}): {}", r->status, r->body));
  }
  return m;
}

namespace {

// The first of a list of registry URLs that answers /healthz, tried in order through the same
// net::peer_list the daemons fail over with.
asio::awaitable<result<std::string>> first_answering(std::vector<std::string> urls) {
  net::client_options co;
  co.connect_timeout = std::chrono::seconds(2);
  co.request_timeout = std::chrono::seconds(5);
  co.read_timeout = std::chrono::seconds(5);
  net::http_client client(co_await asio::this_coro::executor, co);
  net::peer_list peers(std::move(urls), "registry");
  auto r = co_await peers.get(client, "/healthz");
  if (r && r->status == 200) {
    co_return peers.current();
  }
  co_return make_error(errc::unavailable, r ? fmt::format("status {}", r->status) : r.err().detail);
}

}  // namespace

std::string grid_url(const std::string& flag) {
  std::string given = flag;
  if (given.empty()) {
    const char* env = std::getenv("VODGRID_GRID");
    given = env && *env ? env : "http://127.0.0.1:8700";
  }
  if (given.find(',') == std::string::npos) {
    return given;
  }
  // Several registry daemons (--grid a,b): the first that answers. None: one line and exit, since
  // every command would fail the same way.
  auto urls = net::peer_list::split(given);
  if (!urls) {
    std::exit(fail("--grid", urls.err().detail));
  }
  asio::io_context io;
  auto url = run_sync(io, first_answering(*urls));
  if (!url) {
    std::exit(fail("--grid", fmt::format("no registry of {} answers (the last: {})", given,
                                         url.err().detail)));
  }
  return *url;
}

std::string id_from_title(const std::string& title) {
  std::string id;
  for (char c : title) {
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      id += c;
    } else if (c >= 'A' && c <= 'Z') {
      id += static_cast<char>(c - 'A' + 'a');
    } else if (!id.empty() && id.back() != '-') {
      id += '-';
    }
    if (id.size() == 64) {
      break;
    }
  }
  while (!id.empty() && id.back() == '-') {
    id.pop_back();
  }
  return id;
}

int run_ingest(const ingest_options& o) {
  auto content = content_url(grid_url(o.grid));
  if (!content) {
    return fail("ingest", content.err().detail);
  }
  if (*content) {
    return run_content_ingest(**content, o);
  }
  // A grid without a content manager: the station-level loader takes packaged HLS only, and the
  // program is published at once.
  if (!o.publish_at.empty() && o.publish_at != "now") {
    return fail("ingest", "--publish-at needs a grid with a content manager");
  }
  if (!o.renditions.empty()) {
    return fail("ingest", "--renditions needs a grid with a content manager");
  }
  auto m = director_ingest(o, false);
  if (!m) {
    return fail("ingest", m.err().detail);
  }
  std::cout << fmt::format("program {} ready: {} segments, {:.1f} s\n", m->id.str(),
                           m->segments.size(), m->duration());
  auto stations = fetch_object(grid_url(o.grid) + "/v1/stations", token_from(o.token));
  if (stations) {
    answer_reader answer(*stations, "the registry's /v1/stations");
    std::string urls;
    for (auto& s : answer.array("stations")) {
      auto so = answer.element(s, "a station of the registry's /v1/stations");
      auto name = so.text("name");
      auto director = so.text("director_url");
      urls += fmt::format("viewer URL ({}): {}/v1/programs/{}/index.m3u8\n", name, director,
                          m->id.str());
    }
    if (auto st = answer.error(); !st) {
      return fail("ingest", st.err().detail);
    }
    std::cout << urls;
  } else {
    std::cout << fmt::format("viewer URL: {}/v1/programs/{}/index.m3u8\n", grid_url(o.grid),
                             m->id.str());
  }
  return 0;
}

int run_programs(const std::string& grid, const std::string& token) {
  auto content = content_url(grid_url(grid));
  if (!content) {
    return fail("programs", content.err().detail);
  }
  if (*content) {
    return run_content_programs(**content, token);
  }
  // No content manager: the registry's view (each program's availability, not its lifecycle).
  auto o = fetch_object(grid_url(grid) + "/v1/programs", token);
  if (!o) {
    return fail("programs", o.err().detail);
  }
  answer_reader answer(*o, "the registry's /v1/programs");
  std::string out = fmt::format("{:<24} {:<10} {:>8} {:>10}  {}\n", "ID", "AVAILABLE", "SEGMENTS",
                                "SECONDS", "TITLE");
  for (auto& p : answer.array("programs")) {
    // Read in order (not as format's arguments, whose order is unspecified): the first missing
    // field is the one named.
    auto po = answer.element(p, "a program of the registry's /v1/programs");
    auto id = po.text("id");
    auto availability = po.text("availability");
    auto segments = static_cast<uint64_t>(po.number("segments"));
    auto duration = po.number("duration");
    auto title = po.text("title");
    out += fmt::format("{:<24} {:<10} {:>8} {:>10.1f}  {}\n", id, availability, segments, duration,
                       title);
  }
  if (auto st = answer.error(); !st) {
    return fail("programs", st.err().detail);
  }
  std::cout << out;
  return 0;
}

}  // namespace vodgrid::cli
