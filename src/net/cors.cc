// Cross-origin rules for browsers (the Fetch standard's CORS): the headers of viewer answers, their
// OPTIONS preflight, and the refusal of control requests sent by pages of other origins.
#include <fmt/format.h>
#include <boost/beast/core/string.hpp>

#include <algorithm>

#include "net/server_internal.h"

namespace vodgrid::net {

namespace beast = boost::beast;

namespace {

constexpr std::string_view expose_line =
    "Access-Control-Expose-Headers: Content-Length, Content-Range\r\n";

std::string_view header_value(const http::request_header<>& h, http::field f) {
  auto it = h.find(f);
  return it == h.end() ? std::string_view() : std::string_view(it->value());
}

}  // namespace

// Browsers say where a request comes from: Sec-Fetch-Site (every current browser, even through a
// proxy that rewrites Host), else Origin against Host. Requests of other clients (players, daemons,
// curl) carry neither and pass.
bool http_server::from_another_origin(const http::request_header<>& h) {
  std::string_view site = header_value(h, http::field::sec_fetch_site);
  if (!site.empty()) {
    return !beast::iequals(site, "same-origin") && !beast::iequals(site, "none");
  }
  std::string_view origin = header_value(h, http::field::origin);
  if (origin.empty()) {
    return false;
  }
  for (std::string_view scheme : {"http://", "https://"}) {
    if (origin.size() > scheme.size() && beast::iequals(origin.substr(0, scheme.size()), scheme)) {
      return !beast::iequals(origin.substr(scheme.size()), header_value(h, http::field::host));
    }
  }
  return true;  // "null" and anything else not of a page we serve
}

bool http_server::origin_allowed(std::string_view origin) const {
  if (origin.empty()) {
    return false;
  }
  auto& allowed = opts_.cors.allowed_origins;
  if (std::find(allowed.begin(), allowed.end(), "*") != allowed.end()) {
    return true;
  }
  if (origin == "null") {
    return opts_.cors.allow_null;
  }
  return std::find(allowed.begin(), allowed.end(), origin) != allowed.end();
}

// With every origin allowed the lines are the same for everyone and go on every answer, asked for
// or not, so that a cache between the two keeps no copy without them. With a list they name the
// asking origin, and Vary tells caches so.
void http_server::cors_lines(const http::request_header<>& h, std::string& out) const {
  if (!cors_any_.empty()) {
    out.assign(cors_any_);
    return;
  }
  out.clear();
  std::string_view origin = header_value(h, http::field::origin);
  if (origin_allowed(origin)) {
    out += "Access-Control-Allow-Origin: ";
    out += origin;
    out += "\r\n";
    out += expose_line;
  }
  out += "Vary: Origin\r\n";
}

std::string cors_any_lines(const cors_options& o) {
  auto& allowed = o.allowed_origins;
  if (std::find(allowed.begin(), allowed.end(), "*") == allowed.end()) {
    return {};
  }
  return std::string("Access-Control-Allow-Origin: *\r\n").append(expose_line);
}

// A preflight asks for the GET (or HEAD) that follows it: the route that would take that GET.
bool http_server::viewer_path(std::string_view path) const {
  std::vector<std::string> params;
  size_t last = SIZE_MAX;
  auto* r = match(http::verb::get, path, params, last);
  return r && r->who == audience::viewer;
}

// 200 rather than 204: the server always writes Content-Length, which a 204 must not carry.
reply http_server::preflight(const request_context& ctx) const {
  std::string_view origin = header_value(ctx.req, http::field::origin);
  if (!origin_allowed(origin)) {
    return error_reply(http::status::forbidden, "forbidden",
                       origin.empty() ? std::string("a preflight needs an Origin")
                                      : fmt::format("origin {} is not allowed", origin));
  }
  reply r;
  r.content_type = "text/plain";
  r.headers = {
      {"Access-Control-Allow-Origin", cors_any_.empty() ? std::string(origin) : "*"},
      {"Access-Control-Allow-Methods", "GET, HEAD, OPTIONS"},
      // Range: hls.js asks for byte ranges; Authorization: a page may send the viewer's token as
      // a bearer rather than in the URL.
      {"Access-Control-Allow-Headers", "Range, Authorization"},
      {"Access-Control-Max-Age", std::to_string(opts_.cors.max_age.count())},
  };
  if (cors_any_.empty()) {
    r.headers.emplace_back("Vary", "Origin");
  }
  return r;
}

}  // namespace vodgrid::net
