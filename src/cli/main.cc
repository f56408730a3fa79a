// `vodgrid`: one binary, a subcommand per daemon and per operator or viewer command.
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <iostream>

#include "cli/commands.h"

int main(int argc, char** argv) {
  using namespace vodgrid::cli;
  CLI::App app{"vodgrid: a distributed video-on-demand delivery system"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "vodgrid 0.1.0");

  std::string config, name;
  auto* engine = app.add_subcommand("engine", "Run a media engine daemon");
  engine->add_option("--config", config, "The grid's TOML file")
      ->required()
      ->check(CLI::ExistingFile);
  engine->add_option("--name", name, "This engine's name in the config")->required();
  auto* director = app.add_subcommand("director", "Run a station's media director daemon");
  director->add_option("--config", config, "The grid's TOML file")
      ->required()
      ->check(CLI::ExistingFile);
  director->add_option("--name", name, "The station's name in the config")->required();

  std::filesystem::path logs;
  auto* station = app.add_subcommand(
      "station", "Run one station: its director and engines as supervised child processes");
  station->add_option("--config", config, "The grid's TOML file")
      ->required()
      ->check(CLI::ExistingFile);
  station->add_option("--name", name, "The station's name in the config")->required();
  station->add_option("--logs", logs,
                      "Append each blade's output to DIR/NAME.log (default: a logs folder beside "
                      "the director's data_dir, created if missing)");
  station->footer(
      "Each blade (`vodgrid director|engine --config F --name N`) is restarted when it exits or\n"
      "stops answering /healthz for 2 s (checked every 500 ms), after a backoff of 100 ms that\n"
      "doubles up to 10 s. More than 5 restarts of one blade within 60 s: it is given up "
      "(failed),\n"
      "the others keep running. The station's `supervisor` address serves /healthz (each blade:\n"
      "role, name, pid, up, restarts) and /metrics (vodgrid_station_restarts_total{blade,reason},\n"
      "vodgrid_station_blades_up, vodgrid_station_blades_failed). SIGINT/SIGTERM stops the\n"
      "engines, then the director (SIGKILL after 5 s), and exits 0.");

  auto* registry = app.add_subcommand("registry", "Run the media location registry daemon");
  registry->add_option("--config", config, "The grid's TOML file")
      ->required()
      ->check(CLI::ExistingFile);
  registry->add_option("--name", name, "Ignored: a grid has one registry");
  auto* auth_cmd = app.add_subcommand("auth", "Run the authentication server daemon");
  auth_cmd->add_option("--config", config, "The grid's TOML file")
      ->required()
      ->check(CLI::ExistingFile);
  auth_cmd->add_option("--name", name, "Ignored: a grid has one auth server");
  auto* content_cmd =
      app.add_subcommand("content", "Run the content manager daemon with its content engine");
  content_cmd->add_option("--config", config, "The grid's TOML file")
      ->required()
      ->check(CLI::ExistingFile);
  content_cmd->add_option("--name", name, "Ignored: a grid has one content manager");

  grid_options grid;
  auto add_grid = [&](CLI::App* c) {
    c->add_option("--config", grid.config, "A grid TOML file (default: the embedded grid)")
        ->check(CLI::ExistingFile);
    c->add_option("--data", grid.data, "Where the embedded grid keeps its data")
        ->capture_default_str();
    c->add_option("--base-port", grid.base_port, "Move every default port by P - 8700")
        ->capture_default_str();
  };
  auto* up = app.add_subcommand("up", "Run a whole grid on this machine until Ctrl-C");
  add_grid(up);
  demo_options demo;
  auto* demo_cmd =
      app.add_subcommand("demo", "Run the grid, ingest a sample, play it, report, exit");
  add_grid(demo_cmd);
  demo_cmd->add_option("--viewers", demo.viewers, "Concurrent viewers")->capture_default_str();
  demo_cmd->add_flag("--realtime", demo.realtime, "Play at the speed of the media");

  std::string grid_flag;
  ingest_options ingest;
  auto* ingest_cmd = app.add_subcommand(
      "ingest", "Ingest a program from its provider: package it, load it, distribute, publish");
  ingest_cmd
      ->add_option("SOURCE", ingest.source,
                   "A media file (MP4, MKV, MPEG-TS), an HLS VOD playlist (.m3u8 or a folder "
                   "holding one), or an http(s) URL of either")
      ->required();
  ingest_cmd->add_option("--title", ingest.title, "The program's title")->required();
  ingest_cmd->add_option("--id", ingest.id, "The program's id (default: made from the title)");
  ingest_cmd->add_option("--token", ingest.token, "An operator token (default: $VODGRID_TOKEN)");
  ingest_cmd->add_option("--publish-at", ingest.publish_at,
                         "now (the default) or an RFC 3339 time, e.g. 2026-12-24T18:00:00Z");
  ingest_cmd
      ->add_option("--segment-seconds", ingest.segment_seconds,
                   "Target segment length: cut at the first keyframe after it")
      ->check(CLI::Range(0.5, 60.0))
      ->capture_default_str();
  ingest_cmd->add_option("--stations", ingest.stations,
                         "Stations to distribute to, comma-separated (default: all)");
  ingest_cmd
      ->add_option(
          "--prefetch", ingest.prefetch,
          "Segments each station copies ahead (default: all); the rest are copied on a miss")
      ->check(CLI::Range(0u, 1'000'000u));
  ingest_cmd->add_option("--grid", grid_flag,
                         "The registry's URL, or a lone station's director (default: $VODGRID_GRID "
                         "or the local grid)");

  std::string program;
  auto* publish_cmd = app.add_subcommand("publish", "Publish a program now");
  publish_cmd->add_option("ID", program, "The program's id")->required();
  publish_cmd->add_option("--grid", grid_flag, "The registry's or content manager's URL");
  std::string op_token;
  publish_cmd->add_option("--token", op_token, "An operator token (default: $VODGRID_TOKEN)");
  auto* withdraw_cmd =
      app.add_subcommand("withdraw", "Withdraw a program: consoles are refused it from now on");
  withdraw_cmd->add_option("ID", program, "The program's id")->required();
  withdraw_cmd->add_option("--grid", grid_flag, "The registry's or content manager's URL");
  withdraw_cmd->add_option("--token", op_token, "An operator token (default: $VODGRID_TOKEN)");

  auto* programs = app.add_subcommand("programs", "List the programs of the grid");
  programs->add_option("--grid", grid_flag, "The registry's URL, or a lone station's director");
  auto* status = app.add_subcommand(
      "status", "Show the stations and their engines: health, load, cost inputs");
  status->add_option("--grid", grid_flag, "The registry's URL, or a lone station's director");

  play_cli_options play;
  bool no_verify = false;
  auto* play_cmd = app.add_subcommand(
      "play", "Play a program as a console: verify, report, exit non-zero on failure");
  play_cmd->add_option("URL", play.url, "http://DIRECTOR/v1/programs/{id}/index.m3u8")->required();
  play_cmd->add_option("--token", play.token, "A viewer token (default: $VODGRID_TOKEN)");
  play_cmd->add_option("--viewers", play.viewers, "Concurrent viewers")->capture_default_str();
  play_cmd->add_flag("--realtime", play.realtime,
                     "Fetch each segment when the previous one starts playing");
  play_cmd->add_flag("--no-verify", no_verify, "Do not check segments against their SHA-256");
  play_cmd->add_flag("--json", play.json, "Print the report as JSON");

  login_cli_options login;
  auto* login_cmd =
      app.add_subcommand("login", "Log in at the grid's auth server and print a token");
  login_cmd->add_option("--user", login.user, "The account's name")->required();
  login_cmd->add_option("--password", login.password, "Its password")->required();
  login_cmd->add_flag("--operator", login.operator_, "An operator token (default: a viewer's)");
  login_cmd->add_option("--grid", login.grid,
                        "The registry's URL or the auth server's (default: $VODGRID_GRID or the "
                        "local grid)");

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

  auto dispatch = [&]() -> int {
    if (*engine) {
      return run_engine(config, name);
    }
    if (*director) {
      return run_director(config, name);
    }
    if (*station) {
      return run_station(config, name, logs);
    }
    if (*registry) {
      return run_registry(config);
    }
    if (*auth_cmd) {
      return run_auth(config);
    }
    if (*content_cmd) {
      return run_content(config);
    }
    if (*publish_cmd) {
      return run_lifecycle("publish", program, grid_flag, op_token);
    }
    if (*withdraw_cmd) {
      return run_lifecycle("withdraw", program, grid_flag, op_token);
    }
    if (*up) {
      return run_up(grid);
    }
    if (*demo_cmd) {
      demo.grid = grid;
      return run_demo(demo);
    }
    if (*ingest_cmd) {
      ingest.grid = grid_flag;
      return run_ingest(ingest);
    }
    if (*programs) {
      return run_programs(grid_flag);
    }
    if (*status) {
      return run_status(grid_flag);
    }
    if (*login_cmd) {
      return run_login(login);
    }
    if (*play_cmd) {
      play.verify = !no_verify;
      if (play.token.empty()) {
        if (const char* t = std::getenv("VODGRID_TOKEN")) {
          play.token = t;
        }
      }
      return run_play(play);
    }
    return 2;
  };
  try {
    return dispatch();
  } catch (const std::exception& e) {
    // A daemon answered something unexpected: still one line and a non-zero exit.
    std::cerr << "vodgrid: " << e.what() << "\n";
    return 1;
  }
}
