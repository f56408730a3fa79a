// The watch page (DESIGN.md: http://DIRECTOR/watch/{id}): the page and its static files from the
// web root (web/ at the repository's root, hls.js installed beside it by npm), and the viewer's
// login, relayed to the auth server so that the page speaks only to its own origin.
#include <fmt/format.h>
#include <boost/json/parse.hpp>

#include <filesystem>

#include "auth/client.h"
#include "director/impl.h"
#include "net/web_files.h"

namespace vodgrid::director {

namespace fs = std::filesystem;
using net::error_reply;

namespace {

// hls.js as npm installs it under the web root; served as /web/hls.min.js.
constexpr std::string_view hls_js_name = "hls.min.js";
constexpr std::string_view hls_js_path = "node_modules/hls.js/dist/hls.min.js";

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
  auto candidates = net::default_web_roots(VODGRID_SOURCE_WEB_DIR);
  auto root = net::find_web_root(grid.web.root, "watch.html", candidates);
  if (!root) {
    return root.err();
  }
  web_root = std::move(*root);
  if (web_root.empty()) {
    logger->warn("director {}: the watch page's files are not in {} nor {}: /watch/ answers 503",
                 station->name.str(), candidates.front().string(), candidates.back().string());
  }
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
  reply r = net::web_file_reply(web_root, "watch.html", net::web_content_type(".html"));
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
  const char* type = net::web_content_type(name);
  if (!net::plain_file_name(name) || !type) {
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
    reply r = net::web_file_reply(web_root, hls_js_path, type);
    r.headers.emplace_back("Cache-Control", "max-age=3600");
    co_return r;
  }
  reply r = net::web_file_reply(web_root, name, type);
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
