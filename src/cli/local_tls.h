// `vodgrid up --tls` (issue 17, item 4): a local CA and a certificate for every daemon of a grid on
// this machine, made with OpenSSL's C API, so that the embedded grid can serve HTTPS with nothing
// else installed.
#pragma once

#include <filesystem>

#include "base/config.h"
#include "base/result.h"

namespace vodgrid::cli {

// Makes (or keeps, when they are there and valid for another day) under `dir`, a folder of mode
// 0700: ca.crt and ca.key (a P-256 CA of 10 years), and NAME.crt and NAME.key for every daemon of
// `grid` (registry, auth, content, each director under its station's name, each engine), signed
// by the CA for its listen host (an IP name for an address, also DNS:localhost) and valid 1 year.
// Keys are 0600. Then turns TLS on in `grid`: each daemon's tls files and [tls] ca.
status make_local_tls(grid_config& grid, const std::filesystem::path& dir);

}  // namespace vodgrid::cli
