// Client side of the auth protocol: token extraction, login, renewal, engine secrets.
#include "auth/client.h"

#include <openssl/rand.h>

#include <boost/asio/ip/address.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "base/fs.h"

namespace vodgrid::auth {

namespace json = boost::json;
namespace http = boost::beast::http;

std::string_view token_of(const net::request_context& ctx) {
  auto it = ctx.req.find(http::field::authorization);
  if (it != ctx.req.end()) {
    std::string_view v = it->value();
    if (v.size() > 7 && (v.starts_with("Bearer ") || v.starts_with("bearer "))) {
      return v.substr(7);
    }
  }
  return ctx.query_param("token");
}

std::string client_address(const net::request_context& ctx) {
  auto a = ctx.remote.address();
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6()).to_string();
  }
  return a.to_string();
}

std::string encode_login_reply(const login_reply& r) {
  json::object o{{"token", r.token},
                 {"kind", to_string(r.kind)},
                 {"subject", r.subject},
                 {"expires_at", r.expires_at}};
  if (!r.station.empty()) {
    o["station"] = r.station;
  }
  if (!r.station_key.empty()) {
    o["station_key"] = base64url_encode(r.station_key);
  }
  return json::serialize(o);
}

result<login_reply> decode_login_reply(std::string_view body) {
  auto bad = [](std::string d) { return make_error(errc::protocol_error, "login reply: " + d); };
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) {
    return bad("not a JSON object");
  }
  auto& o = v.as_object();
  login_reply r;
  auto* token = o.if_contains("token");
  auto* kind = o.if_contains("kind");
  auto* subject = o.if_contains("subject");
  auto* exp = o.if_contains("expires_at");
  if (!token || !token->is_string() || !kind || !kind->is_string() || !subject ||
      !subject->is_string() || !exp || !exp->is_int64()) {
    return bad("needs token, kind, subject and expires_at");
  }
  r.token = std::string(token->as_string());
  auto k = parse_kind(std::string_view(kind->as_string()));
  if (!k) {
    return bad("unknown kind");
  }
  r.kind = *k;
  r.subject = std::string(subject->as_string());
  r.expires_at = exp->as_int64();
  if (auto* s = o.if_contains("station"); s && s->is_string()) {
    r.station = std::string(s->as_string());
  }
  if (auto* s = o.if_contains("station_key"); s && s->is_string()) {
    auto key = base64url_decode(std::string_view(s->as_string()));
    if (!key || key->size() < 16) {
      return bad("bad station_key");
    }
    r.station_key = std::move(*key);
  }
  return r;
}

namespace {

// Maps a refusal of the auth daemon to our error, keeping its detail.
error refusal(const net::client_response& r) {
  std::string detail = "auth answered " + std::to_string(r.status);
  boost::system::error_code ec;
  auto v = json::parse(r.body, ec);
  if (!ec && v.is_object()) {
    if (auto* d = v.as_object().if_contains("detail"); d && d->is_string()) {
      detail = std::string(d->as_string());
    }
  }
  errc code = r.status == 401   ? errc::unauthorized
              : r.status == 403 ? errc::forbidden
              : r.status == 400 ? errc::invalid_argument
              : r.status == 404 ? errc::not_found
                                : errc::protocol_error;
  return make_error(code, detail);
}

}  // namespace

boost::asio::awaitable<result<login_reply>> login(net::http_client& client, std::string auth_url,
                                                  token_kind kind, std::string user,
                                                  std::string password) {
  json::object body;
  if (kind == token_kind::engine) {
    body = json::object{{"name", user}, {"secret", password}};
  } else {
    body = json::object{{"user", user}, {"password", password}};
  }
  std::string url = auth_url + "/v1/login/" + std::string(to_string(kind));
  auto r = co_await client.send_json(http::verb::post, std::move(url), json::serialize(body));
  if (!r) {
    co_return r.err();
  }
  if (r->status != 200) {
    co_return refusal(*r);
  }
  co_return decode_login_reply(r->body);
}

boost::asio::awaitable<result<login_reply>> renew(net::http_client& client, std::string auth_url,
                                                  std::string token) {
  net::http_client::header_list headers{{"Authorization", "Bearer " + token}};
  auto r = co_await client.request(http::verb::post, auth_url + "/v1/token/renew", std::string(),
                                   std::move(headers));
  if (!r) {
    co_return r.err();
  }
  if (r->status != 200) {
    co_return refusal(*r);
  }
  co_return decode_login_reply(r->body);
}

std::filesystem::path secret_file(const std::filesystem::path& dir) {
  return dir / "auth.secret";
}

result<std::string> read_or_create_secret(const std::filesystem::path& dir) {
  auto path = secret_file(dir);
  if (auto st = check_private_file(path); !st && st.err().code != errc::not_found) {
    return st.err();
  }
  auto have = read_file(path, 4096);
  if (have) {
    std::string s = *have;
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) {
      s.pop_back();
    }
    if (s.empty()) {
      return make_error(errc::invalid_argument, path.string() + " is empty");
    }
    return s;
  }
  if (have.err().code != errc::not_found) {
    return have.err();
  }
  std::string raw(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), int(raw.size())) != 1) {
    return make_error(errc::internal, "no random bytes for a secret");
  }
  std::string secret = base64url_encode(raw);
  if (auto st = write_secret_durably(path, secret + "\n"); !st) {
    return st.err();
  }
  return secret;
}

}  // namespace vodgrid::auth
