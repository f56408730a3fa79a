// The watch page (DESIGN.md: http://DIRECTOR/watch/{id}): the page and its static files from the
// web root (web/ at the repository's root, hls.js installed beside it by npm), and the viewer's
// login, relayed to the auth server so that the page speaks only to its own origin.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <boost/json/parse.hpp>

#include <array>
#include <filesystem>

#include "auth/client.h"
#include "director/impl.h"

namespace vodgrid::director {

namespace fs = std::filesystem;
using net::error_reply;

namespace {

// hls.js as npm installs it under the web root; served as /web/hls.min.js.
constexpr std::string_view hls_js_name = "hls.min.js";
constexpr std::string_view hls_js_path = "node_modules/hls.js/dist/hls.min.js";

bool has_page(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / "watch.html", ec);
}

// The type of a file the web root may serve, by its extension; nullptr: not served.
const char* content_type_of(std::string_view name) {
  static constexpr std::array<std::pair<std::string_view, const char*>, 6> types{{
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
  }};
  for (auto& [ext, type] : types) {
    if (name.ends_with(ext)) {
      return type;
    }
  }
  return nullptr;
}

// A file name of the web root's own folder: letters, digits, '.', '_' and '-', not starting with a
// dot (no "..", no hidden files, no folders).
bool plain_file_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || name.front() == '.') {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

// `rel` under `root` as a reply sent with sendfile, provided its real path (symbolic links
// resolved) stays inside the root and it is a regular file.
reply file_reply(const fs::path& root, std::string_view rel, const char* type) {
  std::error_code ec;
  auto path = fs::canonical(root / rel, ec);
  auto [end, _] = std::mismatch(root.begin(), root.end(), path.begin(), path.end());
  if (ec || end != root.end()) {
    return error_reply(http::status::not_found, "not_found", fmt::format("no such file: {}", rel));
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (fd >= 0) {
      ::close(fd);
    }
    return error_reply(http::status::not_found, "not_found", fmt::format("no such file: {}", rel));
  }
  reply r;
  r.content_type = type;
  auto owner = std::shared_ptr<void>(nullptr, [fd](void*) { ::close(fd); });  // with the reply
  r.file = net::file_slice{owner, fd, 0, static_cast<uint64_t>(st.st_size)};
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  return r;
}

reply no_web_root() {
  return error_reply(http::status::service_unavailable, "unavailable",
                     "the watch page's files were not found: set [web] root "
                     "(docs/configuration.md)");
}

}  // namespace

// [web] root, else share/vodgrid/web beside an installed binary (PREFIX/bin/vodgrid), else web/ of
// the source tree this binary was built from (`vodgrid up` from the build tree). A root given but
// without the page is an error: a typo must not leave the page missing in silence.
status director_daemon::impl::open_web_root() {
  std::error_code ec;
  if (!grid.web.root.empty()) {
    if (!has_page(grid.web.root)) {
      return make_error(errc::invalid_argument,
                        fmt::format("[web] root {}: no watch.html there", grid.web.root.string()));
    }
    web_root = fs::canonical(grid.web.root, ec);
    return {};
  }
  std::vector<fs::path> candidates;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back(exe.parent_path().parent_path() / "share" / "vodgrid" / "web");
  }
  candidates.emplace_back(VODGRID_SOURCE_WEB_DIR);
  for (auto& c : candidates) {
    if (has_page(c)) {
      web_root = fs::canonical(c, ec);
      return {};
    }
  }
  logger->warn("director {}: the watch page's files are not in {} nor {}: /watch/ answers 503",
               station->name.str(), candidates.front().string(), candidates.back().string());
  return {};
}

asio::awaitable<reply> director_daemon::impl::watch_page(request_context& ctx) {
  if (!program_id::parse(ctx.params[0])) {
    co_return error_reply(http::status::bad_request, "bad_request", "not a program id");
  }
  if (web_root.empty()) {
    co_return no_web_root();
  }
  // The page is the same for every program: its script reads the id from the address.
  reply r = file_reply(web_root, "watch.html", content_type_of(".html"));
  r.headers.emplace_back("Cache-Control", "no-cache");
  // Scripts of the page's origin only; media and playlists from any (engines are elsewhere);
  // hls.js transmuxes in a worker made from a blob.
  r.headers.emplace_back("Content-Security-Policy",
                         "default-src 'self'; connect-src 'self' http: https:; "
                         "media-src 'self' blob: http: https:; worker-src 'self' blob:; "
                         "img-src 'self' data:; object-src 'none'; base-uri 'none'");
  co_return r;
}

asio::awaitable<reply> director_daemon::impl::web_file(request_context& ctx) {
  std::string_view name = ctx.params[0];
  const char* type = content_type_of(name);
  if (!plain_file_name(name) || !type) {
    co_return error_reply(http::status::not_found, "not_found", "no such file: " + ctx.path);
  }
  if (web_root.empty()) {
    co_return no_web_root();
  }
  if (name == hls_js_name) {
    std::error_code ec;
    if (!fs::is_regular_file(web_root / hls_js_path, ec)) {
      co_return error_reply(http::status::service_unavailable, "unavailable",
                            fmt::format("hls.js is not installed in {} (scripts/install-deps.sh "
                                        "runs npm ci in web/)",
                                        web_root.string()));
    }
    reply r = file_reply(web_root, hls_js_path, type);
    r.headers.emplace_back("Cache-Control", "max-age=3600");
    co_return r;
  }
  reply r = file_reply(web_root, name, type);
  r.headers.emplace_back("Cache-Control", "no-cache");
  co_return r;
}

// POST /v1/login/viewer {"user", "password"}: the auth server's login, relayed. The watch page then
// needs no CORS at the auth server, which may stay on a network browsers do not reach; a page of
// another origin cannot use the relay (a control endpoint: net::audience).
asio::awaitable<reply> director_daemon::impl::viewer_login(request_context& ctx) {
  if (!grid.auth) {
    co_return error_reply(http::status::not_found, "not_found",
                          "this grid has no auth server: its programs play without a token");
  }
  boost::system::error_code ec;
  auto v = json::parse(ctx.req.body(), ec);
  auto* o = !ec && v.is_object() ? &v.as_object() : nullptr;
  auto* user = o ? o->if_contains("user") : nullptr;
  auto* password = o ? o->if_contains("password") : nullptr;
  if (!user || !password || !user->is_string() || !password->is_string() || o->size() != 2) {
    co_return error_reply(http::status::bad_request, "invalid_argument",
                          R"(the body must be {"user": "...", "password": "..."})");
  }
  auto r = co_await auth::login(*login_client, grid.auth->listen.url(), auth::token_kind::viewer,
                                std::string(user->as_string()), std::string(password->as_string()));
  if (!r) {
    co_return error_reply(make_error(r.err().code, "auth: " + r.err().detail));
  }
  reply rep = net::json_reply(
      json::object{{"token", r->token}, {"subject", r->subject}, {"expires_at", r->expires_at}});
  rep.headers.emplace_back("Cache-Control", "no-store");
  co_return rep;
}

}  // namespace vodgrid::director
