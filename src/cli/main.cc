// `vodgrid`: one binary, a subcommand per daemon and per operator or viewer command.
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include "base/log.h"
#include "cli/commands.h"

namespace {

using namespace vodgrid::cli;

// What the command line parses into: each option's value and each subcommand (the one given is
// true). CLI11 writes into these fields, so it must outlive the parse.
struct command_line {
  std::string config;
  std::string name;
  std::string listen;  // vodgrid registry --listen
  std::filesystem::path logs;
  grid_options grid;
  demo_options demo;
  std::string grid_flag;
  ingest_options ingest;
  std::string program;
  std::string op_token;
  play_cli_options play;
  bool no_verify = false;
  login_cli_options login;
  simulate_cli_options simulate;

  CLI::App* engine = nullptr;
  CLI::App* director = nullptr;
  CLI::App* station = nullptr;
  CLI::App* registry = nullptr;
  CLI::App* auth_cmd = nullptr;
  CLI::App* content_cmd = nullptr;
  CLI::App* up = nullptr;
  CLI::App* demo_cmd = nullptr;
  CLI::App* ingest_cmd = nullptr;
  CLI::App* publish_cmd = nullptr;
  CLI::App* withdraw_cmd = nullptr;
  CLI::App* programs = nullptr;
  CLI::App* status = nullptr;
  CLI::App* play_cmd = nullptr;
  CLI::App* login_cmd = nullptr;
  CLI::App* simulate_cmd = nullptr;
};

// engine, director, station, registry, auth, content.
void add_daemon_commands(CLI::App& app, command_line& c) {
  c.engine = app.add_subcommand("engine", "Run a media engine daemon");
  c.engine->add_option("--config", c.config, "The grid's TOML file")
      ->required()
      ->check(CLI::ExistingFile);
  c.engine->add_option("--name", c.name, "This engine's name in the config")->required();
  c.director = app.add_subcommand("director", "Run a station's media director daemon");
  c.director->add_option("--config", c.config, "The grid's TOML file")
      ->required()
      ->check(CLI::ExistingFile);
  c.director->add_option("--name", c.name, "The station's name in the config")->required();

  c.station = app.add_subcommand(
      "station", "Run one station: its director and engines as supervised child processes");
  c.station->add_option("--config", c.config, "The grid's TOML file")
      ->required()
      ->check(CLI::ExistingFile);
  c.station->add_option("--name", c.name, "The station's name in the config")->required();
  c.station->add_option("--logs", c.logs,
                        "Append each blade's output to DIR/NAME.log (default: a logs folder beside "
                        "the director's data_dir, created if missing)");
  c.station->footer(
      "Each blade (`vodgrid director|engine --config F --name N`) is restarted when it exits or\n"
      "stops answering /healthz for 2 s (checked every 500 ms), after a backoff of 100 ms that\n"
      "doubles up to 10 s. More than 5 restarts of one blade within 60 s: it is given up "
      "(failed),\n"
      "the others keep running. The station's `supervisor` address serves /healthz (each blade:\n"
      "role, name, pid, up, restarts) and /metrics "
      "(vodgrid_station_restarts_total{blade,reason},\n"
      "vodgrid_station_blades_up, vodgrid_station_blades_failed). SIGINT/SIGTERM stops the\n"
      "engines, then the director (SIGKILL after 5 s), and exits 0.");

  c.registry = app.add_subcommand("registry", "Run the media location registry daemon");
  c.registry->add_option("--config", c.config, "The grid's TOML file")
      ->required()
      ->check(CLI::ExistingFile);
  c.registry->add_option("--name", c.name, "Ignored: the registry's daemons are alike");
  c.registry->add_option("--listen", c.listen,
                         "host:port to listen on instead of [registry].listen: one of several "
                         "registry daemons over one database (docs/registry.md)");
  c.auth_cmd = app.add_subcommand("auth", "Run the authentication server daemon");
  c.auth_cmd->add_option("--config", c.config, "The grid's TOML file")
      ->required()
      ->check(CLI::ExistingFile);
  c.auth_cmd->add_option("--name", c.name, "Ignored: a grid has one auth server");
  c.content_cmd =
      app.add_subcommand("content", "Run the content manager daemon with its content engine");
  c.content_cmd->add_option("--config", c.config, "The grid's TOML file")
      ->required()
      ->check(CLI::ExistingFile);
  c.content_cmd->add_option("--name", c.name, "Ignored: the content managers are alike");
  c.content_cmd->add_option("--listen", c.listen,
                            "host:port to listen on instead of [content].listen: a standby "
                            "content manager over the same catalog (docs/registry.md)");
}

// up, demo.
void add_grid_commands(CLI::App& app, command_line& c) {
  auto add_grid = [&](CLI::App* cmd) {
    cmd->add_option("--config", c.grid.config, "A grid TOML file (default: the embedded grid)")
        ->check(CLI::ExistingFile);
    cmd->add_option("--data", c.grid.data, "Where the embedded grid keeps its data")
        ->capture_default_str();
    cmd->add_option("--base-port", c.grid.base_port, "Move every default port by P - 8700")
        ->capture_default_str();
  };
  c.up = app.add_subcommand("up", "Run a whole grid on this machine until Ctrl-C");
  add_grid(c.up);
  c.up->add_option("--exec-prefix", c.grid.exec_prefix,
                   "A command to start each daemon with, {name} its host's name (registry, auth, "
                   "content or its station's): scripts/netns-grid gives `ip netns exec NS-{name}`");
  c.up->add_flag("--tls", c.grid.tls,
                 "Every daemon on HTTPS: a local CA and certificates under DATA/tls (the "
                 "embedded grid only)");
  c.demo_cmd = app.add_subcommand("demo", "Run the grid, ingest a sample, play it, report, exit");
  add_grid(c.demo_cmd);
  c.demo_cmd->add_option("--viewers", c.demo.viewers, "Concurrent viewers")->capture_default_str();
  c.demo_cmd->add_flag("--realtime", c.demo.realtime, "Play at the speed of the media");
}

// ingest, publish, withdraw, programs, status.
void add_operator_commands(CLI::App& app, command_line& c) {
  c.ingest_cmd = app.add_subcommand(
      "ingest", "Ingest a program from its provider: package it, load it, distribute, publish");
  c.ingest_cmd
      ->add_option("SOURCE", c.ingest.source,
                   "A media file (MP4, MKV, MPEG-TS), an HLS VOD playlist (.m3u8 or a folder "
                   "holding one), or an http(s) URL of either")
      ->required();
  c.ingest_cmd->add_option("--title", c.ingest.title, "The program's title")->required();
  c.ingest_cmd->add_option("--id", c.ingest.id, "The program's id (default: made from the title)");
  c.ingest_cmd->add_option("--token", c.ingest.token,
                           "An operator token (default: $VODGRID_TOKEN)");
  c.ingest_cmd->add_option("--publish-at", c.ingest.publish_at,
                           "now (the default) or an RFC 3339 time, e.g. 2026-12-24T18:00:00Z");
  c.ingest_cmd
      ->add_option("--segment-seconds", c.ingest.segment_seconds,
                   "Target segment length: cut at the first keyframe after it")
      ->check(CLI::Range(0.5, 60.0))
      ->capture_default_str();
  auto* renditions = c.ingest_cmd->add_option(
      "--renditions", c.ingest.renditions,
      "The ladder of renditions the source is transcoded into: auto (the default: the source's "
      "default ladder) or a list, e.g. 720p,360p (needs a content manager)");
  c.ingest_cmd
      ->add_flag("--remux", c.ingest.remux,
                 "No transcoding: the source's own encoding as one program, without renditions")
      ->excludes(renditions);
  c.ingest_cmd->add_option("--stations", c.ingest.stations,
                           "Stations to distribute to, comma-separated (default: all)");
  c.ingest_cmd
      ->add_option(
          "--prefetch", c.ingest.prefetch,
          "Segments each station copies ahead (default: all); the rest are copied on a miss")
      ->check(CLI::Range(0u, 1'000'000u));
  c.ingest_cmd->add_option(
      "--grid", c.grid_flag,
      "The registry's URL (or a,b: its daemons, the first that answers), or a lone station's "
      "director (default: $VODGRID_GRID or the local grid)");

  c.publish_cmd = app.add_subcommand("publish", "Publish a program now");
  c.publish_cmd->add_option("ID", c.program, "The program's id")->required();
  c.publish_cmd->add_option("--grid", c.grid_flag, "The registry's or content manager's URL");
  c.publish_cmd->add_option("--token", c.op_token, "An operator token (default: $VODGRID_TOKEN)");
  c.withdraw_cmd =
      app.add_subcommand("withdraw", "Withdraw a program: consoles are refused it from now on");
  c.withdraw_cmd->add_option("ID", c.program, "The program's id")->required();
  c.withdraw_cmd->add_option("--grid", c.grid_flag, "The registry's or content manager's URL");
  c.withdraw_cmd->add_option("--token", c.op_token, "An operator token (default: $VODGRID_TOKEN)");

  c.programs = app.add_subcommand("programs", "List the programs of the grid");
  c.programs->add_option("--grid", c.grid_flag,
                         "The registry's URL (or a,b: its daemons), or a lone station's director");
  c.programs->add_option("--token", c.op_token,
                         "A token (default: $VODGRID_TOKEN); a viewer's lists what it may play");
  c.status = app.add_subcommand("status",
                                "Show the stations and their engines: health, load, cost inputs");
  c.status->add_option("--grid", c.grid_flag,
                       "The registry's URL (or a,b: its daemons), or a lone station's director");
  c.status->add_option("--token", c.op_token, "An operator token (default: $VODGRID_TOKEN)");
}

// play, login.
void add_viewer_commands(CLI::App& app, command_line& c) {
  c.play_cmd = app.add_subcommand(
      "play", "Play a program as a console: verify, report, exit non-zero on failure");
  c.play_cmd
      ->add_option("URL", c.play.url,
                   "http://DIRECTOR/v1/programs/{id}/index.m3u8 (HLS) or "
                   "rtsp://DIRECTOR/v1/programs/{id} (RTSP, RTP pushed by the engines)")
      ->required();
  c.play_cmd->add_option("--token", c.play.token, "A viewer token (default: $VODGRID_TOKEN)");
  c.play_cmd->add_option("--viewers", c.play.viewers, "Concurrent viewers")->capture_default_str();
  c.play_cmd->add_flag("--realtime", c.play.realtime,
                       "Pace as a player: keep --buffer segments ahead, count stalls");
  c.play_cmd
      ->add_option("--buffer", c.play.buffer,
                   "Real time: segments a player keeps ahead of the one playing")
      ->capture_default_str();
  c.play_cmd->add_flag("--no-verify", c.no_verify, "Do not check segments against their SHA-256");
  c.play_cmd->add_option("--ca", c.play.ca,
                         "https://: the CA (PEM) the director's and engines' certificates must "
                         "chain to (default: the system's trust store; SSL_CERT_FILE)");
  c.play_cmd->add_flag("--json", c.play.json, "Print the report as JSON");
  c.play_cmd
      ->add_option("--silence-ms", c.play.silence_ms,
                   "A reply silent this long is given up and the segment asked for again "
                   "(RTSP: no datagram this long ends the stream)")
      ->check(CLI::Range(100u, 600'000u))
      ->capture_default_str();
  c.play_cmd
      ->add_option("--threads", c.play.threads,
                   "Threads the viewers are spread over (default: one per core; not for RTSP)")
      ->check(CLI::Range(1u, vodgrid::console::max_play_threads));
  auto& m = c.play.model;
  c.play_cmd->add_flag("--model", m.enabled,
                       "Viewers that behave like people (real time): arrivals, Zipf program "
                       "choice, exponential watch time, seeks and pauses");
  c.play_cmd
      ->add_option("--programs", c.play.programs,
                   "--model: program ids by popularity, a,b,c (default: the catalog)")
      ->delimiter(',');
  c.play_cmd
      ->add_option("--arrival-rate", m.arrival_rate,
                   "--model: viewers per second (Poisson); 0: all at once")
      ->capture_default_str();
  c.play_cmd->add_option("--zipf", m.zipf_s, "--model: Zipf exponent of program popularity")
      ->capture_default_str();
  c.play_cmd
      ->add_option("--watch-mean", m.watch_mean_seconds,
                   "--model: mean watch time in seconds (exponential); 0: to the end")
      ->capture_default_str();
  c.play_cmd->add_option("--seeks", m.seeks_per_minute, "--model: seeks per minute watched")
      ->capture_default_str();
  c.play_cmd->add_option("--pauses", m.pauses_per_minute, "--model: pauses per minute watched")
      ->capture_default_str();
  c.play_cmd
      ->add_option("--pause-mean", m.pause_mean_seconds,
                   "--model: mean pause in seconds (exponential)")
      ->capture_default_str();
  c.play_cmd->add_option("--seed", m.seed, "--model: the seed that decides the whole run")
      ->capture_default_str();
  c.play_cmd->add_option("--seek", c.play.seek, "RTSP: start this many seconds into the program")
      ->check(CLI::Range(0.0, 1e9));
  c.play_cmd->add_option("--scale", c.play.scale,
                         "RTSP: trick play at this speed (2, 4, 8; negative rewinds)");
  c.play_cmd->add_option("--save", c.play.save,
                         "RTSP, one viewer: write the MPEG-TS received to this file");

  c.login_cmd = app.add_subcommand("login", "Log in at the grid's auth server and print a token");
  c.login_cmd->add_option("--user", c.login.user, "The account's name")->required();
  c.login_cmd->add_option("--password", c.login.password, "Its password")->required();
  c.login_cmd->add_flag("--operator", c.login.operator_, "An operator token (default: a viewer's)");
  c.login_cmd->add_option("--grid", c.login.grid,
                          "The registry's URL or the auth server's (default: $VODGRID_GRID or the "
                          "local grid)");
}

// simulate.
void add_simulate_command(CLI::App& app, command_line& c) {
  c.simulate_cmd = app.add_subcommand(
      "simulate",
      "Simulate a day of the grid at internet scale through its real cost, selection, placement "
      "and eviction code, against two baselines");
  auto& s = c.simulate;
  c.simulate_cmd
      ->add_option("--seed", s.seed,
                   "Seed of the world and the viewers: same seed, same "
                   "output")
      ->capture_default_str();
  c.simulate_cmd->add_option("--stations", s.stations, "Stations, the home included")
      ->check(CLI::Range(2u, 5000u))
      ->capture_default_str();
  c.simulate_cmd->add_option("--programs", s.programs, "Programs in the catalog (Zipf popularity)")
      ->check(CLI::Range(1u, 10'000'000u))
      ->capture_default_str();
  c.simulate_cmd->add_option("--sessions", s.sessions, "Viewer sessions over the simulated day")
      ->check(CLI::Range(uint64_t{1}, uint64_t{100'000'000}))
      ->capture_default_str();
  c.simulate_cmd->add_flag("--json", s.json, "Print the report as JSON");
  c.simulate_cmd->footer(
      "Runs the day three times: the grid's rules (sources ranked by the registry's cost model,\n"
      "the most popular programs pre-positioned), pull only (no pre-positioning), and\n"
      "nearest only (copies always from the nearest holder). See docs/scale.md.");
}

// Runs the subcommand that was given; returns its exit code.
int dispatch(command_line& c) {
  // A client command (login, play, ingest, ...) says its failure in its own one line; the net
  // layer's warnings (a TLS peer refused, a peer list moving on) are written for a daemon's log and
  // would say it twice. Daemons, stations, `up`, `demo` and `simulate` keep their logs.
  bool runs_daemons = *c.engine || *c.director || *c.station || *c.registry || *c.auth_cmd ||
                      *c.content_cmd || *c.up || *c.demo_cmd || *c.simulate_cmd;
  if (!runs_daemons) {
    vodgrid::log::init("error", "vodgrid");
  }
  if (*c.engine) {
    return run_engine(c.config, c.name);
  }
  if (*c.director) {
    return run_director(c.config, c.name);
  }
  if (*c.station) {
    return run_station(c.config, c.name, c.logs);
  }
  if (*c.registry) {
    return run_registry(c.config, c.listen);
  }
  if (*c.auth_cmd) {
    return run_auth(c.config);
  }
  if (*c.content_cmd) {
    return run_content(c.config, c.listen);
  }
  if (*c.publish_cmd) {
    return run_lifecycle("publish", c.program, c.grid_flag, c.op_token);
  }
  if (*c.withdraw_cmd) {
    return run_lifecycle("withdraw", c.program, c.grid_flag, c.op_token);
  }
  if (*c.up) {
    return run_up(c.grid);
  }
  if (*c.demo_cmd) {
    c.demo.grid = c.grid;
    return run_demo(c.demo);
  }
  if (*c.ingest_cmd) {
    c.ingest.grid = c.grid_flag;
    return run_ingest(c.ingest);
  }
  if (*c.programs) {
    return run_programs(c.grid_flag, c.op_token);
  }
  if (*c.status) {
    return run_status(c.grid_flag, c.op_token);
  }
  if (*c.simulate_cmd) {
    return run_simulate(c.simulate);
  }
  if (*c.login_cmd) {
    return run_login(c.login);
  }
  if (*c.play_cmd) {
    c.play.verify = !c.no_verify;
    if (c.play.token.empty()) {
      if (const char* t = std::getenv("VODGRID_TOKEN")) {
        c.play.token = t;
      }
    }
    return run_play(c.play);
  }
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vodgrid: a distributed video-on-demand delivery system"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "vodgrid 0.1.0");
  command_line c;
  add_daemon_commands(app, c);
  add_grid_commands(app, c);
  add_operator_commands(app, c);
  add_viewer_commands(app, c);
  add_simulate_command(app, c);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() != 0) {
      // One line on stderr, as for every other failure.
      std::cerr << "vodgrid: " << e.what() << " (see --help)\n";
      return 2;
    }
    return app.exit(e);
  }

  try {
    return dispatch(c);
  } catch (const std::exception& e) {
    // A daemon answered something unexpected: still one line and a non-zero exit.
    std::cerr << "vodgrid: " << e.what() << "\n";
    return 1;
  }
}
