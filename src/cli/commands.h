// The subcommands of `vodgrid`, each a function that returns the process exit code. main.cc parses
// the command line (CLI11) and calls one of these; each prints one line on stderr on failure.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include <boost/json/object.hpp>

#include "base/config.h"
#include "console/player.h"

namespace vodgrid::cli {

// Daemons: run until SIGINT/SIGTERM, then stop in two phases.
int run_engine(const std::filesystem::path& config, const std::string& name);
int run_director(const std::filesystem::path& config, const std::string& name);
// `listen`, when not empty, replaces [registry].listen ("host:port"): one of several registry
// daemons of a grid (docs/registry.md).
int run_registry(const std::filesystem::path& config, const std::string& listen = {});
int run_auth(const std::filesystem::path& config);
// `listen`, when not empty, replaces [content].listen: a standby content manager over the same
// catalog (docs/registry.md).
int run_content(const std::filesystem::path& config, const std::string& listen = {});
// `vodgrid station`: supervises station `name`'s director and engines as child processes (the
// blades) until SIGINT/SIGTERM (station.h); blade logs in `logs` (empty: beside the director's
// data_dir).
int run_station(const std::filesystem::path& config, const std::string& name,
                const std::filesystem::path& logs);

struct grid_options {
  std::filesystem::path config;  // empty: the embedded default
  std::filesystem::path data = "vodgrid-data";
  uint16_t base_port = 8700;
  // `up --exec-prefix`: a command put before each daemon's, "{name}" standing for its host's name
  // (local_grid::start); empty: none.
  std::string exec_prefix;
  // `up --tls`: every daemon of the embedded grid on HTTPS, with a local CA and certificates made
  // under DATA/tls (cli/local_tls.h).
  bool tls = false;
};
int run_up(const grid_options& opts);

struct demo_options {
  grid_options grid;
  uint32_t viewers = 4;
  bool realtime = false;
};
int run_demo(const demo_options& opts);

struct ingest_options {
  std::string grid;      // the registry's URL (or, for a lone station, its director's)
  std::string stations;  // comma-separated target stations; empty: all
  uint32_t prefetch = segment_index::max;  // segments each target copies ahead; the rest on a miss
  std::string source;
  std::string title;
  std::string id;              // empty: made from the title
  std::string publish_at;      // "now" (or empty) or RFC 3339; needs a content manager
  double segment_seconds = 4;  // the packager's target segment length
  std::string token;           // an operator token (default: $VODGRID_TOKEN)
  // api::ingest_request::renditions: "auto" (or empty: the default) the source's default ladder,
  // or a list of rungs; with `remux`, the source as it comes, one program without renditions.
  std::string renditions;
  bool remux = false;
};
int run_ingest(const ingest_options& opts);
int run_programs(const std::string& grid, const std::string& token);
// `vodgrid publish ID` / `vodgrid withdraw ID` (verb "publish" or "withdraw").
int run_lifecycle(const std::string& verb, const std::string& id, const std::string& grid,
                  const std::string& token);
int run_status(const std::string& grid, const std::string& token);

struct play_cli_options {
  std::string url;
  std::string token;
  uint32_t viewers = 1;
  bool realtime = false;
  bool verify = true;
  bool json = false;
  // A segment reply silent this long is given up and asked for again through the director; for
  // RTSP, no datagram this long ends the stream.
  uint32_t silence_ms = static_cast<uint32_t>(console::play_options{}.read_timeout.count());
  std::optional<double> seek;   // rtsp:// only: PLAY's Range: npt=SEEK- (seconds)
  std::optional<double> scale;  // rtsp:// only: PLAY's Scale:
  std::string save;             // rtsp:// only: the received TS written here
  // http:// only: the threads the viewers are spread over (1..console::max_play_threads); unset:
  // one per core.
  std::optional<uint32_t> threads;
  // http:// only: real time, the segments kept ahead of the one playing.
  uint32_t buffer = console::play_options{}.buffer;
  console::model_options model;       // http:// only: --model and its knobs
  std::vector<std::string> programs;  // --model: the programs picked from
  // https:// (director or engines): the CA (PEM) their certificates must chain to; empty: the
  // system's trust store (OpenSSL's default paths, which SSL_CERT_FILE overrides).
  std::filesystem::path ca;
};
int run_play(const play_cli_options& opts);

struct login_cli_options {
  std::string grid;  // the registry's URL, or the auth server's
  std::string user;
  std::string password;
  bool operator_ = false;  // an operator token instead of a viewer token
};
// `vodgrid login`: prints the token, one line.
int run_login(const login_cli_options& opts);
// A token for `url` (viewer or operator): logs in at `auth_url` (blocking).
result<std::string> login_token(const std::string& auth_url, const std::string& user,
                                const std::string& password, bool operator_);

// `vodgrid simulate` (simulate_command.cc): the grid at internet scale through the real decisions
// (src/sim), with two baselines; a table, or JSON.
struct simulate_cli_options {
  uint64_t seed = 1;
  uint32_t stations = 1000;
  uint32_t programs = 100'000;
  uint64_t sessions = 1'000'000;
  bool json = false;
};
int run_simulate(const simulate_cli_options& opts);

// Through the content manager at `content` (content_commands.cc): the ingest of any provider
// source, waiting for it and showing its progress; the catalog.
int run_content_ingest(const std::string& content, const ingest_options& o);
int run_content_programs(const std::string& content, const std::string& token);
result<boost::json::object> content_ingest(const std::string& content, const ingest_options& o,
                                           bool quiet);

// The grid URL from --grid, else VODGRID_GRID, else the embedded grid's registry on this machine.
// A list "a,b" (a registry's daemons) gives the first that answers /healthz; when none does, or an
// entry is not an http:// URL, the command ends there with one line on stderr and exit 1.
std::string grid_url(const std::string& flag);
// A program id from a title: lowercase letters, digits and '-', at most 64.
std::string id_from_title(const std::string& title);

}  // namespace vodgrid::cli
