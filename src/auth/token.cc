// The token's text form: base64url (base/base64url.h), JSON via Boost.JSON, strict field checks.
#include "auth/token.h"

#include <boost/asio/ip/address.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

namespace vodgrid::auth {

namespace json = boost::json;

namespace {

error bad(std::string detail) {
  return make_error(errc::invalid_argument, "token: " + std::move(detail));
}

result<json::object> decode_part(std::string_view part, std::string_view what) {
  auto bytes = base64url_decode(part);
  if (!bytes) {
    return bad(std::string(what) + " is not base64url");
  }
  boost::system::error_code ec;
  json::value v = json::parse(*bytes, ec);
  if (ec || !v.is_object()) {
    return bad(std::string(what) + " is not a JSON object");
  }
  return std::move(v.as_object());
}

// Every key of `o` must be in `allowed`.
bool only_keys(const json::object& o, std::initializer_list<std::string_view> allowed) {
  for (auto& kv : o) {
    if (std::find(allowed.begin(), allowed.end(), kv.key()) == allowed.end()) {
      return false;
    }
  }
  return true;
}

result<std::string> text_field(const json::object& o, std::string_view key, size_t max_len) {
  auto it = o.find(key);
  if (it == o.end() || !it->value().is_string()) {
    return bad("'" + std::string(key) + "' must be a string");
  }
  auto& s = it->value().as_string();
  if (s.empty() || s.size() > max_len) {
    return bad("'" + std::string(key) + "' has a bad length");
  }
  return std::string(s.data(), s.size());
}

result<int64_t> time_field(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end()) {
    return bad("'" + std::string(key) + "' is missing");
  }
  auto& v = it->value();
  int64_t t = 0;
  if (v.is_int64()) {
    t = v.as_int64();
  } else if (v.is_uint64() && v.as_uint64() <= uint64_t(INT64_MAX)) {
    t = int64_t(v.as_uint64());
  } else {
    return bad("'" + std::string(key) + "' must be an integer");
  }
  // Years 2001..2286 in unix seconds: anything else is a forgery or a unit mistake.
  if (t < 1'000'000'000 || t > 9'999'999'999) {
    return bad("'" + std::string(key) + "' is out of range");
  }
  return t;
}

// "ent": "*" or a list of program ids.
status decode_entitlement(const json::object& o, claims& c) {
  auto ent = o.find("ent");
  if (ent == o.end()) {
    return bad("'ent' is missing");
  }
  if (ent->value().is_string() && ent->value().as_string() == "*") {
    c.all_programs = true;
    return {};
  }
  if (!ent->value().is_array()) {
    return bad("'ent' must be \"*\" or a list of program ids");
  }
  auto& a = ent->value().as_array();
  if (a.size() > max_entitlements) {
    return bad("'ent' lists too many programs");
  }
  for (auto& p : a) {
    std::optional<program_id> id;
    if (p.is_string()) {
      id = program_id::parse(std::string_view(p.as_string()));
    }
    if (!id) {
      return bad("'ent' holds a bad program id");
    }
    c.programs.push_back(std::move(*id));
  }
  return {};
}

// "addr" and "stn", each optional.
status decode_bindings(const json::object& o, claims& c) {
  if (o.contains("addr")) {
    VODGRID_TRY(auto a, text_field(o, "addr", 64));
    boost::system::error_code ec;
    auto ip = boost::asio::ip::make_address(a, ec);
    if (ec || ip.to_string() != a) {
      return bad("'addr' is not an IP address in canonical form");
    }
    c.address = std::move(a);
  }
  if (o.contains("stn")) {
    VODGRID_TRY(auto s, text_field(o, "stn", 64));
    if (!valid_name(s)) {
      return bad("'stn' is not a valid station name");
    }
    c.station = std::move(s);
  }
  return {};
}

result<claims> decode_claims(const json::object& o) {
  if (!only_keys(o, {"iss", "sub", "kind", "ent", "iat", "exp", "addr", "stn"})) {
    return bad("unknown field in the payload");
  }
  claims c;
  VODGRID_TRY(c.issuer, text_field(o, "iss", 256));
  VODGRID_TRY(c.subject, text_field(o, "sub", 64));
  if (!valid_name(c.subject)) {
    return bad("'sub' is not a valid name");
  }
  VODGRID_TRY(auto kind, text_field(o, "kind", 16));
  auto k = parse_kind(kind);
  if (!k) {
    return bad("'kind' must be viewer, engine or operator");
  }
  c.kind = *k;
  VODGRID_TRY(decode_entitlement(o, c));
  VODGRID_TRY(c.issued_at, time_field(o, "iat"));
  VODGRID_TRY(c.expires_at, time_field(o, "exp"));
  if (c.expires_at <= c.issued_at || c.expires_at - c.issued_at > max_token_lifetime) {
    return bad("'exp' must follow 'iat' by at most 30 days");
  }
  VODGRID_TRY(decode_bindings(o, c));
  return c;
}

json::object header_json(std::string_view kid) {
  return json::object{{"alg", "EdDSA"}, {"typ", "vodgrid"}, {"kid", kid}};
}

json::object claims_json(const claims& c) {
  json::object o{{"iss", c.issuer},
                 {"sub", c.subject},
                 {"kind", to_string(c.kind)},
                 {"iat", c.issued_at},
                 {"exp", c.expires_at}};
  if (c.all_programs) {
    o["ent"] = "*";
  } else {
    json::array a;
    for (auto& p : c.programs) {
      a.push_back(json::value(p.str()));
    }
    o["ent"] = std::move(a);
  }
  if (!c.address.empty()) {
    o["addr"] = c.address;
  }
  if (!c.station.empty()) {
    o["stn"] = c.station;
  }
  return o;
}

// The three parts of a compact token, or an error.
result<std::array<std::string_view, 3>> split(std::string_view text) {
  if (text.empty()) {
    return bad("empty");
  }
  if (text.size() > max_token_bytes) {
    return bad("longer than 4096 bytes");
  }
  auto d1 = text.find('.');
  auto d2 = d1 == std::string_view::npos ? d1 : text.find('.', d1 + 1);
  if (d2 == std::string_view::npos || text.find('.', d2 + 1) != std::string_view::npos) {
    return bad("must have three parts separated by '.'");
  }
  return std::array<std::string_view, 3>{text.substr(0, d1), text.substr(d1 + 1, d2 - d1 - 1),
                                         text.substr(d2 + 1)};
}

result<std::string> decode_header(std::string_view part) {
  auto h = decode_part(part, "header");
  if (!h) {
    return h.err();
  }
  if (!only_keys(*h, {"alg", "typ", "kid"})) {
    return bad("unknown field in the header");
  }
  auto alg = h->find("alg");
  if (alg == h->end() || !alg->value().is_string() || alg->value().as_string() != "EdDSA") {
    return bad("'alg' must be EdDSA");
  }
  auto typ = h->find("typ");
  if (typ != h->end() && (!typ->value().is_string() || typ->value().as_string() != "vodgrid")) {
    return bad("'typ' must be vodgrid");
  }
  auto kid = text_field(*h, "kid", 64);
  if (!kid) {
    return kid.err();
  }
  if (!valid_name(*kid)) {
    return bad("'kid' is not a valid key id");
  }
  return kid;
}

}  // namespace

std::string_view to_string(token_kind k) {
  switch (k) {
    case token_kind::viewer:
      return "viewer";
    case token_kind::engine:
      return "engine";
    case token_kind::operator_:
      return "operator";
  }
  return "viewer";
}

std::optional<token_kind> parse_kind(std::string_view s) {
  if (s == "viewer") {
    return token_kind::viewer;
  }
  if (s == "engine") {
    return token_kind::engine;
  }
  if (s == "operator") {
    return token_kind::operator_;
  }
  return std::nullopt;
}

bool claims::entitled_to(const program_id& p) const {
  if (all_programs) {
    return true;
  }
  for (auto& q : programs) {
    if (q == p) {
      return true;
    }
  }
  return false;
}

std::string signing_input(std::string_view kid, const claims& c) {
  return base64url_encode(json::serialize(header_json(kid))) + "." +
         base64url_encode(json::serialize(claims_json(c)));
}

result<std::string> token_kid(std::string_view text) {
  auto parts = split(text);
  if (!parts) {
    return parts.err();
  }
  return decode_header((*parts)[0]);
}

result<parsed_token> parse_token(std::string_view text) {
  auto parts = split(text);
  if (!parts) {
    return parts.err();
  }
  auto kid = decode_header((*parts)[0]);
  if (!kid) {
    return kid.err();
  }
  auto payload = decode_part((*parts)[1], "payload");
  if (!payload) {
    return payload.err();
  }
  auto c = decode_claims(*payload);
  if (!c) {
    return c.err();
  }
  auto sig = base64url_decode((*parts)[2]);
  if (!sig || sig->size() != 64) {
    return bad("the signature must be 64 bytes of base64url");
  }
  parsed_token t;
  t.kid = std::move(*kid);
  t.body = std::move(*c);
  t.signing_input = text.substr(0, (*parts)[0].size() + 1 + (*parts)[1].size());
  t.signature = std::move(*sig);
  return t;
}

}  // namespace vodgrid::auth
