// The commands about a whole grid: up (a local grid until interrupted), demo (a local grid, the
// sample program ingested and played), status (the stations and engines a grid URL reaches).
#include <signal.h>
#include <unistd.h>

#include <fmt/format.h>
#include <boost/json/object.hpp>

#include <csignal>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <thread>

#include "base/process.h"
#include "cli/commands.h"
#include "cli/commands_impl.h"
#include "cli/grid.h"
#include "cli/local_tls.h"
#include "cli/remote.h"
#include "net/tls.h"

namespace vodgrid::cli {

namespace json = boost::json;

namespace {

result<grid_config> grid_from(const grid_options& o) {
  if (!o.config.empty()) {
    auto g = grid_config::load(o.config);
    if (g) {
      if (auto st = use_grid_ca(*g, o.config); !st) {
        return st.err();
      }
    }
    return g;
  }
  if (o.base_port < 1024 || o.base_port > 65000) {
    return make_error(errc::invalid_argument, "--base-port must be within 1024..65000");
  }
  return grid_config::embedded_default(std::filesystem::absolute(o.data), o.base_port);
}

// --exec-prefix split into words at blanks, its command found on PATH as a shell would.
result<std::vector<std::string>> exec_prefix_words(const std::string& text) {
  std::vector<std::string> words;
  std::istringstream in(text);
  for (std::string w; in >> w;) {
    words.push_back(std::move(w));
  }
  if (words.empty() || words[0].find('/') != std::string::npos) {
    return words;
  }
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/sbin:/usr/bin:/sbin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    auto candidate = std::filesystem::path(dir.empty() ? "." : dir) / words[0];
    if (::access(candidate.c_str(), X_OK) == 0) {
      words[0] = candidate.string();
      return words;
    }
  }
  return make_error(errc::not_found,
                    fmt::format("--exec-prefix: {} is not a command on PATH", words[0]));
}

volatile sig_atomic_t interrupted = 0;
void on_signal(int) {
  interrupted = 1;
}

// The sample program of the demo: 12 s of test pattern and tone, H.264/AAC with a keyframe every
// 2 s, made once with the ffmpeg command line: an MP4 file for the content manager to package, or
// (for a grid without one) an HLS folder of 2 s MPEG-TS segments for the station loader.
result<std::filesystem::path> make_sample(const std::filesystem::path& dir, bool hls) {
  auto out = dir / (hls ? "index.m3u8" : "sample.mp4");
  std::error_code ec;
  if (std::filesystem::exists(out, ec)) {
    return out;
  }
  std::filesystem::create_directories(dir, ec);
  std::string ffmpeg = "/usr/bin/ffmpeg";
  if (!std::filesystem::exists(ffmpeg, ec)) {
    return make_error(errc::not_found, "ffmpeg is not installed (make demo installs it)");
  }
  std::vector<std::string> args = {ffmpeg,
                                   "-nostdin",
                                   "-loglevel",
                                   "error",
                                   "-y",
                                   "-f",
                                   "lavfi",
                                   "-i",
                                   "testsrc2=size=640x360:rate=25",
                                   "-f",
                                   "lavfi",
                                   "-i",
                                   "sine=frequency=440:sample_rate=48000",
                                   "-t",
                                   "12",
                                   "-c:v",
                                   "libx264",
                                   "-preset",
                                   "veryfast",
                                   "-g",
                                   "50",
                                   "-keyint_min",
                                   "50",
                                   "-sc_threshold",
                                   "0",
                                   "-pix_fmt",
                                   "yuv420p",
                                   "-c:a",
                                   "aac",
                                   "-b:a",
                                   "96k"};
  if (hls) {
    for (std::string a :
         {"-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod", "-hls_segment_filename"}) {
      args.push_back(a);
    }
    args.push_back((dir / "seg%03d.ts").string());
  } else {
    for (std::string a : {"-movflags", "+faststart", "-f", "mp4"}) {
      args.push_back(a);
    }
  }
  auto tmp = dir / (hls ? "index.m3u8" : "sample.part.mp4");
  args.push_back(tmp.string());
  auto p = child_process::spawn(args, dir / "ffmpeg.log");
  if (!p) {
    return p.err();
  }
  auto st = p->wait(std::chrono::minutes(2));
  if (!st || *st != 0) {
    return make_error(errc::io_error, fmt::format("ffmpeg failed to make the sample (see {})",
                                                  (dir / "ffmpeg.log").string()));
  }
  if (!hls) {
    std::filesystem::rename(tmp, out, ec);  // whole or not at all, for the next run
    if (ec) {
      return make_error(errc::io_error, ec.message());
    }
  }
  return out;
}

}  // namespace

int run_up(const grid_options& o) {
  auto grid = grid_from(o);
  if (!grid) {
    return fail("up", grid.err().detail);
  }
  if (o.tls) {
    if (!o.config.empty()) {
      return fail("up",
                  "--tls makes certificates for the embedded grid; a --config grid names "
                  "its own (tls = { cert, key } and [tls] ca, docs/configuration.md)");
    }
    if (auto st = make_local_tls(*grid, std::filesystem::absolute(o.data) / "tls"); !st) {
      return fail("up", st.err().detail);
    }
    net::set_default_tls_ca(grid->tls.ca);  // up's own readiness checks
  }
  auto prefix = exec_prefix_words(o.exec_prefix);
  if (!prefix) {
    return fail("up", prefix.err().detail);
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  auto g = local_grid::start(*grid, o.data, std::chrono::seconds(20), std::move(*prefix));
  if (!g) {
    return fail("up", g.err().detail);
  }
  std::cout << "ready\n";
  for (auto& s : grid->stations) {
    std::cout << fmt::format("station {}: director {}  engines", s.name.str(),
                             s.director.listen.url());
    for (auto& e : s.engines) {
      std::cout << " " << e.name.str() << "=" << e.listen.url();
    }
    if (s.supervisor.port != 0) {
      std::cout << "  supervisor " << s.supervisor.url();
    }
    std::cout << "\n";
    // On a TLS port RTSP goes inside TLS: rtsps:// (docs/push.md).
    std::string rtsp =
        fmt::format("  {}://{}:{}/v1/programs/<id>", s.director.listen.tls() ? "rtsps" : "rtsp",
                    s.director.listen.host, s.director.listen.port);
    std::cout << fmt::format(
        "viewer URLs: {}/v1/programs/<id>/index.m3u8{}  browser: {}/watch/<id>\n",
        s.director.listen.url(), rtsp, s.director.listen.url());
  }
  if (grid->auth && grid->auth->demo_accounts) {
    std::cout << fmt::format(
        "auth {}: subscriber demo/demo, operator admin/admin (demo accounts, loopback and test "
        "networks only)\n"
        "token: vodgrid login --user demo --password demo --grid {}\n"
        "operator token (ingest, publish, withdraw): export VODGRID_TOKEN=$(vodgrid login --user "
        "admin --password admin --operator --grid {})\n",
        grid->auth->listen.url(), grid->auth->listen.url(), grid->auth->listen.url());
  }
  if (grid->registry) {
    std::cout << fmt::format("dashboard (operator login): {}/dashboard\n",
                             grid->registry->listen.url());
  }
  if (o.tls) {
    auto& edge = grid->stations.back().director.listen;
    // Lines a newcomer pastes into a shell as they are (tests/tls_grid_test.cc runs them).
    std::string login, token;
    if (grid->auth && grid->auth->demo_accounts) {
      login = fmt::format("  T=$(vodgrid login --user demo --password demo --grid {})\n",
                          grid->auth->listen.url());
      token = "?token=$T";
    }
    std::cout << fmt::format(
        "TLS: every daemon on HTTPS; the CA: {ca}\n"
        "  export SSL_CERT_FILE={ca}    # the vodgrid CLI trusts it\n"
        "  curl --cacert {ca} {url}/healthz\n"
        "{login}"
        "  ffplay -ca_file {ca} -tls_verify 1 \"{url}/v1/programs/<id>/index.m3u8{token}\"\n"
        "  ffplay \"rtsps://{host}:{port}/v1/programs/<id>{token}\"    # ffmpeg does not check "
        "an rtsps:// certificate (docs/push.md)\n",
        fmt::arg("ca", grid->tls.ca.string()), fmt::arg("url", edge.url()),
        fmt::arg("host", edge.host), fmt::arg("port", edge.port), fmt::arg("login", login),
        fmt::arg("token", token));
  }
  std::cout << fmt::format("logs: {}\n", g->log_dir().string()) << std::flush;
  while (!interrupted) {
    for (auto& gone : g->reap()) {
      std::cerr << "vodgrid up: " << gone << "\n";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::cerr << "vodgrid up: stopping\n";
  g->stop();
  return 0;
}

namespace {

// Puts the demo program into the grid, as an operator would: through the content manager (an MP4
// packaged, loaded into the home station, distributed, published now), or, for a grid without one,
// as packaged HLS through the station loader.
status load_demo(const grid_config& grid, const std::filesystem::path& data,
                 const std::string& director) {
  bool hls = !grid.content;
  auto sample = make_sample(std::filesystem::absolute(data) / "sample", hls);
  if (!sample) {
    return sample.err();
  }
  ingest_options in;
  in.title = "vodgrid demo";
  in.id = "demo";
  in.segment_seconds = 2;  // six segments: hand-offs between engines to watch
  in.remux = true;         // one program whose segments the demo plays and reports
  if (grid.auth) {
    // The operator's token for the content manager and the reads (the embedded grid's demo
    // account).
    auto t = login_token(grid.auth->listen.url(), "admin", "admin", true);
    if (!t) {
      return make_error(t.err().code, "login as admin: " + t.err().detail);
    }
    in.token = *t;
  }
  if (grid.content) {
    auto content = grid.content->listen.url();
    auto existing = fetch_object(content + "/v1/programs/demo", in.token);
    std::string state = existing && existing->contains("state")
                            ? std::string(existing->at("state").as_string())
                            : std::string();
    if (state == "inactive" || state == "withdrawn") {
      if (auto p = send_object("POST", content + "/v1/programs/demo/publish", "{}", in.token); !p) {
        return p.err();
      }
    } else if (state != "published") {
      in.grid = content;
      in.source = sample->string();
      auto p = content_ingest(content, in, false);
      if (!p) {
        return p.err();
      }
      std::cout << fmt::format("ingested program demo: {} segments, {:.1f} s, published\n",
                               p->at("segments").as_array().size(),
                               p->at("duration").to_number<double>());
    }
  } else {
    auto existing = fetch_object(director + "/v1/programs/demo", in.token);
    if (!existing || !existing->contains("state") || existing->at("state").as_string() != "ready") {
      // A program left 'loading' by an interrupted run is simply loaded again.
      in.grid = grid.registry ? grid.registry->listen.url() : director;
      in.source = sample->parent_path().string();
      auto m = director_ingest(in, false);
      if (!m) {
        return m.err();
      }
      std::cout << fmt::format("ingested program demo: {} segments, {:.1f} s\n", m->segments.size(),
                               m->duration());
    }
  }
  // The viewing station learns of the program (and of its publication) a moment later.
  for (int i = 0; i < 200; ++i) {
    auto p = fetch_object(director + "/v1/programs/demo", in.token);
    if (p && p->contains("state") && p->at("state").as_string() == "ready" &&
        (!p->contains("availability") || p->at("availability").as_string() == "published")) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return {};
}

}  // namespace

int run_demo(const demo_options& o) {
  auto grid = grid_from(o.grid);
  if (!grid) {
    return fail("demo", grid.err().detail);
  }
  std::cout << "starting the grid...\n" << std::flush;
  auto g = local_grid::start(*grid, o.grid.data, std::chrono::seconds(20));
  if (!g) {
    return fail("demo", g.err().detail);
  }
  std::cout << "ready\n";
  // Viewers watch at a station that is not the home: with a registry, the program reaches it by
  // distribution and by misses (claims 12-14).
  size_t viewing = 0;
  for (size_t i = 0; i < grid->stations.size(); ++i) {
    viewing = grid->stations[i].home ? viewing : i;
  }
  std::string director = g->director_url(viewing);
  if (auto st = load_demo(*grid, o.grid.data, director); !st) {
    return fail("demo", "ingest: " + st.err().detail);
  }
  std::string url = director + "/v1/programs/demo/index.m3u8";
  std::cout << fmt::format("playing {} with {} viewers{}\n", url, o.viewers,
                           o.realtime ? " in real time" : "")
            << std::flush;
  console::play_options po;
  po.url = url;
  po.viewers = o.viewers;
  po.realtime = o.realtime;
  if (grid->auth && grid->auth->demo_accounts) {
    auto t = login_token(grid->auth->listen.url(), "demo", "demo", false);
    if (!t) {
      return fail("demo", "login as demo: " + t.err().detail);
    }
    po.token = *t;
    url += "?token=" + *t;
  }
  auto report = play_blocking(po);
  std::cout << report.to_text();
  std::string again =
      fmt::format("vodgrid up --data {}{}", o.grid.data.string(),
                  o.grid.base_port == 8700 ? "" : fmt::format(" --base-port {}", o.grid.base_port));
  std::cout << fmt::format("to watch it: run `{}`, then: ffplay {}  (or vlc, mpv)\n", again, url);
  g->stop();
  return report.ok() ? 0 : 1;
}

namespace {

// The station's engines as `vodgrid status` shows them; an answer lacking a field is an error.
result<std::string> engines_text(const json::object& o, const std::string& director) {
  answer_reader answer(o, fmt::format("the director {}'s /v1/engines", director));
  std::string out = fmt::format("station {} (director {})\n", answer.text("station"), director);
  out += fmt::format("{:<16} {:<5} {:>9} {:>8} {:>12} {:>12}  {}\n", "ENGINE", "UP", "SEGMENTS",
                     "STREAMS", "BYTES/S", "FREE GB", "URL");
  for (auto& e : answer.array("engines")) {
    // Each field read in order (format's arguments have none): the first missing is named.
    auto eo =
        answer.element(e, fmt::format("an engine of the director {}'s /v1/engines", director));
    auto name = eo.text("name");
    bool up = eo.flag("up");
    auto segments = static_cast<uint64_t>(eo.number("segments"));
    auto load = eo.object("load");
    auto streams = static_cast<uint64_t>(load.number("active_streams"));
    auto max_streams = static_cast<uint64_t>(load.number("max_streams"));
    auto bytes_per_second = static_cast<uint64_t>(load.number("bytes_per_second"));
    auto free_gb = load.number("free_bytes") / 1e9;
    auto engine_url = eo.text("url");
    out += fmt::format("{:<16} {:<5} {:>9} {:>4}/{:<4} {:>12} {:>12.1f}  {}\n", name,
                       up ? "yes" : "NO", segments, streams, max_streams, bytes_per_second, free_gb,
                       engine_url);
  }
  // Placement (issue 10): segments short of their copies on engines in rotation, and the copies
  // in flight to restore them.
  if (auto* under = o.if_contains("under_replicated"); under && under->is_number()) {
    auto n = under->to_number<uint64_t>();
    auto repairing = static_cast<uint64_t>(answer.number("repairs_in_flight"));
    auto copies = static_cast<uint64_t>(answer.number("copies"));
    out += n == 0 ? fmt::format("placement: every segment has its {} copies\n", copies)
                  : fmt::format("placement: {} segments below {} copies, {} being copied\n", n,
                                copies, repairing);
  }
  if (auto st = answer.error(); !st) {
    return st.err();
  }
  return out;
}

}  // namespace

int run_status(const std::string& grid, const std::string& token) {
  auto url = grid_url(grid);
  auto role = role_of(url);
  if (!role) {
    return fail("status", role.err().detail);
  }
  if (*role != "registry") {
    auto o = fetch_object(url + "/v1/engines", token);
    if (!o) {
      return fail("status", o.err().detail);
    }
    auto text = engines_text(*o, url);
    if (!text) {
      return fail("status", text.err().detail);
    }
    std::cout << *text;
    return 0;
  }
  auto st = fetch_object(url + "/v1/stations", token);
  if (!st) {
    return fail("status", st.err().detail);
  }
  answer_reader answer(*st, "the registry's /v1/stations");
  std::string out = fmt::format("registry {}\n", url);
  out +=
      fmt::format("{:<12} {:<5} {:<5} {:>9} {:>12} {:>12} {:>6} {:>13}  {}\n", "STATION", "HOME",
                  "UP", "X,Y KM", "UPLINK MB/S", "SENDING MB/S", "LOAD", "COPY MB/S", "DIRECTOR");
  std::vector<std::pair<std::string, std::string>> directors;  // station, director URL
  for (auto& s : answer.array("stations")) {
    auto so = answer.element(s, "a station of the registry's /v1/stations");
    auto name = so.text("name");
    bool home = so.flag("home"), up = so.flag("up");
    auto x = so.number("x_km"), y = so.number("y_km");
    auto uplink = so.number("uplink_bits_per_second") / 8e6;
    auto sending = so.number("sending_bits_per_second") / 8e6;
    auto load = so.number("load");
    auto copy = so.number("copy_bits_per_second") / 8e6;
    auto director = so.text("director_url");
    out += fmt::format(
        "{:<12} {:<5} {:<5} {:>4.0f},{:<4.0f} {:>12.1f} {:>12.1f} {:>6.2f} {:>13.1f}  {}\n", name,
        home ? "yes" : "", up ? "yes" : "NO", x, y, uplink, sending, load, copy, director);
    directors.emplace_back(name, director);
  }
  if (auto ok = answer.error(); !ok) {
    return fail("status", ok.err().detail);
  }
  std::cout << out;
  for (auto& [name, director] : directors) {
    std::cout << "\n";
    auto o = fetch_object(director + "/v1/engines", token);
    auto text = o ? engines_text(*o, director) : result<std::string>(o.err());
    if (!text) {
      std::cout << fmt::format("station {}: {}\n", name, text.err().detail);
      continue;
    }
    std::cout << *text;
  }
  return 0;
}

}  // namespace vodgrid::cli
