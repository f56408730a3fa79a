#include "cli/remote.h"

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>

#include <cstdlib>

#include "api/api.h"
#include "cli/sync.h"
#include "net/client.h"

namespace vodgrid::cli {

namespace asio = boost::asio;
namespace json = boost::json;
namespace http = boost::beast::http;

namespace {

asio::awaitable<result<net::client_response>> exchange(http::verb v, std::string url,
                                                       std::string body, std::string token) {
  net::client_options co;
  co.request_timeout = std::chrono::seconds(30);
  net::http_client client(co_await asio::this_coro::executor, co);
  net::http_client::header_list headers;
  if (v != http::verb::get) {
    headers.emplace_back("Content-Type", "application/json");
  }
  if (!token.empty()) {
    headers.emplace_back("Authorization", "Bearer " + token);
  }
  co_return co_await client.request(v, std::move(url), std::move(body), std::move(headers));
}

errc errc_of(unsigned status) {
  switch (status) {
    case 400:
      return errc::invalid_argument;
    case 401:
      return errc::unauthorized;
    case 403:
      return errc::forbidden;
    case 404:
      return errc::not_found;
    case 409:
      return errc::conflict;
    case 413:
      return errc::too_large;
    default:
      return errc::unavailable;
  }
}

}  // namespace

result<json::object> fetch_object(const std::string& url, const std::string& token) {
  asio::io_context io;
  auto r = run_sync(io, exchange(http::verb::get, url, {}, token_from(token)));
  if (!r) {
    return r.err();
  }
  if (r->status == 401 || r->status == 403) {
    auto o = api::parse_object(r->body);
    auto* d = o ? o->if_contains("detail") : nullptr;
    std::string why = d && d->is_string() ? std::string(d->as_string()) : r->body;
    return make_error(errc_of(r->status),
                      fmt::format("{} refused ({}): {}: {}", url, r->status, why,
                                  r->status == 401 ? "give a token (vodgrid login; --token or "
                                                     "VODGRID_TOKEN)"
                                                   : "this needs another token (an operator's?)"));
  }
  if (r->status != 200) {
    return make_error(errc::unavailable,
                      fmt::format("{} answered {}: {}", url, r->status, r->body));
  }
  return api::parse_object(r->body);
}

std::string token_from(const std::string& flag) {
  if (!flag.empty()) {
    return flag;
  }
  const char* env = std::getenv("VODGRID_TOKEN");
  return env ? env : "";
}

result<json::object> send_object(const std::string& method, const std::string& url,
                                 const std::string& body, const std::string& token) {
  asio::io_context io;
  auto v = method == "PUT" ? http::verb::put : http::verb::post;
  auto r = run_sync(io, exchange(v, url, body, token));
  if (!r) {
    return r.err();
  }
  auto o = api::parse_object(r->body);
  if (r->status >= 300) {
    auto* d = o ? o->if_contains("detail") : nullptr;
    return make_error(errc_of(r->status), d && d->is_string()
                                              ? std::string(d->as_string())
                                              : fmt::format("{} answered {}", url, r->status));
  }
  return o;
}

result<std::string> role_of(const std::string& url) {
  auto h = fetch_object(url + "/healthz");
  if (!h) {
    return h.err();
  }
  auto* role = h->if_contains("role");
  if (!role || !role->is_string()) {
    return make_error(errc::protocol_error, url + " is not a vodgrid daemon");
  }
  return std::string(role->as_string());
}

namespace {

// The URL of a grid service ("content", "auth"): the grid URL itself if that service answers
// there, the registry's record of it if a registry does, nothing otherwise.
result<std::optional<std::string>> service_url(const std::string& grid, std::string_view service) {
  auto role = role_of(grid);
  if (!role) {
    return role.err();
  }
  if (*role == service) {
    return std::optional<std::string>(grid);
  }
  if (*role != "registry") {
    return std::optional<std::string>();
  }
  auto g = fetch_object(grid + "/v1/grid");
  if (!g) {
    return g.err();
  }
  auto* c = g->if_contains(service);
  if (!c || !c->is_string()) {
    return std::optional<std::string>();
  }
  return std::optional<std::string>(std::string(c->as_string()));
}

}  // namespace

result<std::optional<std::string>> content_url(const std::string& grid) {
  return service_url(grid, "content");
}

result<std::optional<std::string>> auth_url(const std::string& grid) {
  return service_url(grid, "auth");
}

result<std::string> home_director(const std::string& registry, const std::string& token) {
  auto o = fetch_object(registry + "/v1/stations", token);
  if (!o) {
    return o.err();
  }
  for (auto& s : o->at("stations").as_array()) {
    auto& so = s.as_object();
    if (so.at("home").as_bool()) {
      return std::string(so.at("director_url").as_string());
    }
  }
  return make_error(errc::unavailable, "the home station has not registered with the registry yet");
}

namespace {

const json::object& no_object() {
  static const json::object empty;
  return empty;
}

}  // namespace

answer_reader::answer_reader(const json::object& o, std::string what)
    : answer_reader(o, std::move(what), std::make_shared<std::string>()) {}

answer_reader::answer_reader(const json::object& o, std::string what,
                             std::shared_ptr<std::string> first)
    : o_(o), what_(std::move(what)), first_(std::move(first)) {}

const json::value* answer_reader::find(std::string_view key, std::string_view type, bool ok_type) {
  auto* v = o_.if_contains(key);
  if (v && ok_type) {
    return v;
  }
  if (first_->empty()) {
    *first_ = fmt::format("{} has {} \"{}\" ({})", what_, v ? "a bad" : "no", key, type);
  }
  return nullptr;
}

std::string answer_reader::text(std::string_view key) {
  auto* v = o_.if_contains(key);
  auto* f = find(key, "text", v && v->is_string());
  return f ? std::string(f->as_string()) : std::string();
}

double answer_reader::number(std::string_view key) {
  auto* v = o_.if_contains(key);
  auto* f = find(key, "a number", v && v->is_number());
  return f ? f->to_number<double>() : 0;
}

bool answer_reader::flag(std::string_view key) {
  auto* v = o_.if_contains(key);
  auto* f = find(key, "true or false", v && v->is_bool());
  return f && f->as_bool();
}

const json::array& answer_reader::array(std::string_view key) {
  static const json::array empty;
  auto* v = o_.if_contains(key);
  auto* f = find(key, "a list", v && v->is_array());
  return f ? f->as_array() : empty;
}

answer_reader answer_reader::object(std::string_view key) {
  auto* v = o_.if_contains(key);
  auto* f = find(key, "an object", v && v->is_object());
  return answer_reader(f ? f->as_object() : no_object(), fmt::format("{}'s \"{}\"", what_, key),
                       first_);
}

answer_reader answer_reader::element(const json::value& v, std::string what) {
  if (!v.is_object() && first_->empty()) {
    *first_ = fmt::format("{} is not an object", what);
  }
  return answer_reader(v.is_object() ? v.as_object() : no_object(), std::move(what), first_);
}

status answer_reader::error() const {
  if (first_->empty()) {
    return {};
  }
  return make_error(errc::protocol_error, *first_);
}

}  // namespace vodgrid::cli
