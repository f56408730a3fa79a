// Routes: patterns of literal parts and `{}` captures, matched against a request's path; the
// built-in /healthz and /metrics; 404 and 405 for what no route takes.
#include <fmt/format.h>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <array>
#include <stdexcept>

#include "base/log.h"
#include "net/server_internal.h"

namespace vodgrid::net {

namespace json = boost::json;

namespace {

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> parts;
  size_t i = 1;  // skip the leading '/'
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) {
      j = path.size();
    }
    parts.emplace_back(path.substr(i, j - i));
    i = j + 1;
  }
  return parts;
}

// A path split at its '/'s (as split_path does), without copying; `n` > max_parts: too long for
// any route.
struct split_view {
  static constexpr size_t max_parts = 16;
  std::array<std::string_view, max_parts> part;
  size_t n = 0;
  explicit split_view(std::string_view path) {
    size_t i = 1;  // skip the leading '/'
    while (i <= path.size()) {
      size_t j = path.find('/', i);
      if (j == std::string_view::npos) {
        j = path.size();
      }
      if (n < max_parts) {
        part[n] = path.substr(i, j - i);
      }
      ++n;
      i = j + 1;
    }
  }
};

// Matches a split path against a pattern's parts, capturing into `params` if given.
template <class Part>
bool match_parts(const std::vector<Part>& parts, const split_view& path,
                 std::vector<std::string>* params) {
  if (parts.size() != path.n) {
    return false;
  }
  for (size_t k = 0; k < parts.size(); ++k) {
    std::string_view got = path.part[k];
    const Part& p = parts[k];
    if (p.capture) {
      if (got.size() <= p.text.size() || !got.ends_with(p.text)) {
        return false;
      }
      if (params) {
        params->emplace_back(got.substr(0, got.size() - p.text.size()));
      }
    } else if (got != p.text) {
      return false;
    }
  }
  return true;
}

}  // namespace

void http_server::route(http::verb method, std::string pattern, handler h, uint64_t body_limit,
                        audience who, loop_affinity where) {
  std::vector<route_part> parts;
  auto split = split_path(pattern);
  if (split.size() > split_view::max_parts) {
    throw std::invalid_argument("a route pattern has at most 16 parts: " + pattern);
  }
  for (auto& p : split) {
    if (p.rfind("{}", 0) == 0) {
      parts.push_back(route_part{p.substr(2), true});
    } else {
      parts.push_back(route_part{std::move(p), false});
    }
  }
  // Whether some path matches both patterns: part by part, two texts are equal, a text ends with
  // a capture's suffix (and is longer), or of two captures' suffixes one ends the other. Only an
  // earlier route of the same method can take a request from this one (HEAD goes to GET routes).
  auto overlap = [](const std::vector<route_part>& a, const std::vector<route_part>& b) {
    if (a.size() != b.size()) {
      return false;
    }
    for (size_t k = 0; k < a.size(); ++k) {
      const route_part &x = a[k], &y = b[k];
      bool ok;
      if (x.capture == y.capture) {
        ok = x.capture ? x.text.ends_with(y.text) || y.text.ends_with(x.text) : x.text == y.text;
      } else {
        const std::string& text = x.capture ? y.text : x.text;
        const std::string& suffix = x.capture ? x.text : y.text;
        ok = text.size() > suffix.size() && text.ends_with(suffix);
      }
      if (!ok) {
        return false;
      }
    }
    return true;
  };
  bool unshadowed = std::none_of(routes_.begin(), routes_.end(), [&](const route_entry& r) {
    return r.method == method && overlap(r.parts, parts);
  });
  // By route (its pattern), not by path: a label per program or segment would be a series each.
  auto& duration = metrics_.histogram_of(
      "vodgrid_http_request_duration_seconds",
      "Time from a request's header to the end of its reply, by route",
      fmt::format("method=\"{}\",route=\"{}\"", std::string(http::to_string(method)),
                  label_value(pattern)));
  routes_.push_back(route_entry{method, std::move(parts), std::move(h),
                                body_limit ? body_limit : opts_.default_body_limit, who, where,
                                &duration, unshadowed});
}

const http_server::route_entry* http_server::match(http::verb method, std::string_view path,
                                                   std::vector<std::string>& params,
                                                   size_t& last) const {
  split_view parts(path);
  auto accepts = [method](const route_entry& r) {
    return r.method == method || (method == http::verb::head && r.method == http::verb::get);
  };
  params.clear();
  if (last < routes_.size() && routes_[last].unshadowed && accepts(routes_[last])) {
    if (match_parts(routes_[last].parts, parts, &params)) {
      return &routes_[last];
    }
    params.clear();
  }
  for (size_t i = 0; i < routes_.size(); ++i) {
    auto& r = routes_[i];
    if (accepts(r) && match_parts(r.parts, parts, nullptr)) {
      match_parts(r.parts, parts, &params);
      last = i;
      return &r;
    }
  }
  return nullptr;
}

std::string http_server::allowed_methods(std::string_view path) const {
  std::string allow;
  split_view parts(path);
  for (auto& r : routes_) {
    if (match_parts(r.parts, parts, nullptr)) {
      auto verb = std::string(http::to_string(r.method));
      allow += (allow.empty() ? "" : ", ") + verb + (r.method == http::verb::get ? ", HEAD" : "");
    }
  }
  return allow;
}

// The built-in resources and the replies for requests no route takes.
asio::awaitable<reply> http_server::builtin(request_context& ctx, const route_entry* r) {
  auto method = ctx.req.method();
  bool get = method == http::verb::get || method == http::verb::head;
  if (get && ctx.path == "/healthz") {
    json::object o{{"status", "ok"}, {"daemon", name_}};
    if (health_) {
      for (auto& [k, v] : health_()) {
        o[k] = v;
      }
    }
    co_return json_reply(o);
  }
  if (get && ctx.path == "/metrics") {
    if (opts_.metrics_from && !any_contains(*opts_.metrics_from, ctx.remote.address())) {
      co_return error_reply(http::status::forbidden, "forbidden",
                            fmt::format("/metrics is not open to {} (the grid's [grid] "
                                        "metrics_from does not list it)",
                                        ctx.remote.address().to_string()));
    }
    reply rep;
    rep.content_type = "text/plain; version=0.0.4";
    rep.body = metrics_.render();
    co_return rep;
  }
  if (!r) {
    if (method == http::verb::options && viewer_path(ctx.path)) {
      co_return preflight(ctx);
    }
    if (auto allow = allowed_methods(ctx.path); !allow.empty()) {
      auto e = error_reply(
          http::status::method_not_allowed, "method_not_allowed",
          fmt::format("{} is not allowed on {}", std::string(ctx.req.method_string()), ctx.path));
      e.headers.emplace_back("Allow", allow);
      co_return e;
    }
    co_return error_reply(http::status::not_found, "not_found", "no such resource: " + ctx.path);
  }
  try {
    co_return co_await r->h(ctx);
  } catch (const std::exception& e) {
    log::get("net")->error("{}: handler for {} threw: {}", name_, ctx.path, e.what());
    co_return error_reply(http::status::internal_server_error, "internal", e.what());
  }
}

}  // namespace vodgrid::net
