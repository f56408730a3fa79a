// Private to cli: what the command files (commands.cc, grid_commands.cc, viewer_commands.cc) share.
#pragma once

#include <filesystem>
#include <string_view>

#include "api/api.h"
#include "base/result.h"
#include "cli/commands.h"
#include "console/player.h"

namespace vodgrid::cli {

// Prints "vodgrid <cmd>: <why>" on stderr; returns the exit code 1.
int fail(std::string_view cmd, std::string_view why);

// Loads packaged HLS (o.source, a folder) into the grid's home station through its director's
// loader, then (with a registry) hands the registry its distribution to o.stations (claim 11).
// `quiet`: no progress on stderr.
result<api::program_manifest> director_ingest(const ingest_options& o, bool quiet);

// The grid's [tls] ca made the CA of every client of this process (net::set_default_tls_ca), and
// loaded now: a CA that is missing, a directory or no PEM certificate is an error naming `config`
// and the key, before the command starts anything (a daemon would otherwise only find it at its
// first https:// peer).
status use_grid_ca(const grid_config& grid, const std::filesystem::path& config);

// Runs the console player to the end (blocking, over opts.threads threads) and returns its report.
console::play_report play_blocking(console::play_options o);

}  // namespace vodgrid::cli
