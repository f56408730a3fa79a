// The verifier: cache lookup, else parse + Ed25519 check; then the per-request checks.
#include "auth/verifier.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "net/client.h"

namespace vodgrid::auth {

namespace json = boost::json;

std::string_view to_string(token_error e) {
  switch (e) {
    case token_error::missing:
      return "missing";
    case token_error::malformed:
      return "malformed";
    case token_error::unknown_key:
      return "unknown_key";
    case token_error::bad_signature:
      return "bad_signature";
    case token_error::expired:
      return "expired";
    case token_error::wrong_kind:
      return "wrong_kind";
    case token_error::not_entitled:
      return "not_entitled";
    case token_error::wrong_address:
      return "wrong_address";
    case token_error::keys_unavailable:
      return "keys_unavailable";
  }
  return "malformed";
}

error to_error(token_error e, std::string_view detail) {
  std::string d = "token " + std::string(to_string(e));
  if (!detail.empty()) {
    d += ": " + std::string(detail);
  }
  return make_error(e == token_error::missing            ? errc::unauthorized
                    : e == token_error::keys_unavailable ? errc::unavailable
                                                         : errc::forbidden,
                    d);
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void token_verifier::set_keys(std::vector<public_key> keys) {
  std::unordered_map<std::string, std::string> m;
  for (auto& k : keys) {
    m[k.kid] = k.raw;
  }
  std::lock_guard lock(keys_mu_);
  if (m != keys_) {
    keys_ = std::move(m);
    // A retired key's tokens must not survive in the cache: every shard is cleared before the
    // keys' lock is released, so no verify() may add one of them meanwhile.
    for (size_t i = 0; i < shard_count_; ++i) {
      std::lock_guard shard_lock(shards_[i].mu);
      shards_[i].cache.clear();
    }
  }
}

std::vector<public_key> token_verifier::keys() const {
  std::lock_guard lock(keys_mu_);
  std::vector<public_key> out;
  for (auto& [kid, raw] : keys_) {
    out.push_back(public_key{kid, raw});
  }
  return out;
}

bool token_verifier::knows(std::string_view kid) const {
  std::lock_guard lock(keys_mu_);
  return keys_.count(std::string(kid)) > 0;
}

size_t token_verifier::cached() const {
  size_t n = 0;
  for (size_t i = 0; i < shard_count_; ++i) {
    std::lock_guard lock(shards_[i].mu);
    n += shards_[i].cache.size();
  }
  return n;
}

verify_outcome token_verifier::check_claims(const claims& c, const requirement& req,
                                            int64_t now) const {
  verify_outcome out;
  if (now >= c.expires_at) {
    out.why = token_error::expired;
    out.detail = "expired " + std::to_string(now - c.expires_at) + " s ago";
    return out;
  }
  if (c.issued_at > now + opts_.clock_skew) {
    out.why = token_error::expired;
    out.detail = "issued in the future";
    return out;
  }
  if (c.kind != req.kind) {
    out.why = token_error::wrong_kind;
    out.detail = "a " + std::string(to_string(c.kind)) + " token where " +
                 std::string(to_string(req.kind)) + " is needed";
    return out;
  }
  if (req.program && !c.entitled_to(*req.program)) {
    out.why = token_error::not_entitled;
    out.detail = "not entitled to program " + req.program->str();
    return out;
  }
  if (!c.address.empty() && !req.address.empty() && c.address != req.address) {
    // Compare as addresses: an IPv4-mapped IPv6 peer is the same client.
    boost::system::error_code ec;
    auto a = boost::asio::ip::make_address(req.address, ec);
    bool same = false;
    if (!ec && a.is_v6() && a.to_v6().is_v4_mapped()) {
      same = boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6()).to_string() ==
             c.address;
    }
    if (!same) {
      out.why = token_error::wrong_address;
      out.detail = "bound to another client address";
      return out;
    }
  }
  out.ok = c;
  return out;
}

verify_outcome token_verifier::verify(std::string_view token, const requirement& req) const {
  return verify(token, req, unix_now());
}

verify_outcome token_verifier::verify(std::string_view token, const requirement& req,
                                      int64_t now) const {
  if (token.empty()) {
    return verify_outcome{std::nullopt, token_error::missing, "no token given"};
  }
  hashed_token key{token, hash_of(token)};
  shard& sh = shard_of(key.hash);
  {
    std::lock_guard lock(sh.mu);
    auto it = sh.cache.find(key);
    if (it != sh.cache.end()) {
      return check_claims(it->second.body, req, now);
    }
  }
  auto t = parse_token(token);
  if (!t) {
    return verify_outcome{std::nullopt, token_error::malformed, t.err().detail};
  }
  std::string raw;
  {
    std::lock_guard lock(keys_mu_);
    auto k = keys_.find(t->kid);
    if (k == keys_.end()) {
      return verify_outcome{std::nullopt, token_error::unknown_key, "no key " + t->kid};
    }
    raw = k->second;
  }
  if (!verify_signature(raw, t->signing_input, t->signature)) {
    return verify_outcome{std::nullopt, token_error::bad_signature, "signature does not verify"};
  }
  if (now < t->body.expires_at && per_shard_ > 0) {
    std::lock_guard keys_lock(keys_mu_);
    // The keys may have changed while we checked (a retired kid, or the same kid with another key).
    if (auto k = keys_.find(t->kid); k != keys_.end() && k->second == raw) {
      std::lock_guard lock(sh.mu);
      if (sh.cache.size() >= per_shard_) {
        std::erase_if(sh.cache, [now](const auto& kv) { return now >= kv.second.body.expires_at; });
        if (sh.cache.size() >= per_shard_) {
          sh.cache.clear();  // all alive: forgetting them costs one signature check each
        }
      }
      cache_entry e{t->body, std::nullopt};
      if (!e.body.address.empty()) {
        boost::system::error_code ec;
        e.bound = boost::asio::ip::make_address(e.body.address, ec);
        if (ec) {
          e.bound = boost::asio::ip::address();  // 0.0.0.0, no peer's (parse_token checked it)
        }
      }
      sh.cache.emplace(std::string(token), std::move(e));
    }
  }
  return check_claims(t->body, req, now);
}

namespace {
// Shards of the remembered tokens: enough that the loops of a director (a few, up to the cores)
// seldom take the same lock at once; fewer when the cache is smaller, so that the bound holds.
constexpr size_t max_shards = 32;
}  // namespace

token_verifier::token_verifier(verifier_options opts)
    : opts_(opts),
      shard_count_(std::clamp<size_t>(opts.cache_entries, 1, max_shards)),
      shards_(std::make_unique<shard[]>(shard_count_)) {
  per_shard_ = opts_.cache_entries / shard_count_;
}

token_verifier::shard& token_verifier::shard_of(size_t hash) const {
  // The hash's high bits (mixed), so that a shard's map, which buckets by the same hash modulo a
  // prime, does not see only the tokens of a few residues.
  uint64_t h = static_cast<uint64_t>(hash) * 0x9E3779B97F4A7C15ull;
  return shards_[(h >> 32) % shard_count_];
}

bool token_verifier::allows(std::string_view token, token_kind kind, const program_id* program,
                            const boost::asio::ip::address& client, int64_t now) const {
  if (token.empty()) {
    return false;
  }
  hashed_token key{token, hash_of(token)};
  shard& sh = shard_of(key.hash);
  std::lock_guard lock(sh.mu);
  auto it = sh.cache.find(key);
  if (it == sh.cache.end()) {
    return false;
  }
  const cache_entry& e = it->second;
  const claims& c = e.body;
  if (!(now < c.expires_at && c.issued_at <= now + opts_.clock_skew && c.kind == kind &&
        (!program || c.entitled_to(*program)))) {
    return false;
  }
  if (!e.bound) {
    return true;
  }
  if (client.is_v6() && client.to_v6().is_v4_mapped()) {
    return *e.bound == boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, client.to_v6());
  }
  return *e.bound == client;
}

result<std::vector<public_key>> decode_keys(std::string_view body) {
  auto bad = [](std::string d) { return make_error(errc::protocol_error, "keys: " + d); };
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) {
    return bad("not a JSON object");
  }
  auto* keys = v.as_object().if_contains("keys");
  if (!keys || !keys->is_array() || keys->as_array().size() > 64) {
    return bad("'keys' must be a list of at most 64 keys");
  }
  std::vector<public_key> out;
  for (auto& k : keys->as_array()) {
    auto* o = k.if_object();
    if (!o) {
      return bad("a key must be an object");
    }
    auto* kid = o->if_contains("kid");
    auto* alg = o->if_contains("alg");
    auto* x = o->if_contains("x");
    if (!kid || !kid->is_string() || !valid_name(std::string_view(kid->as_string())) || !alg ||
        !alg->is_string() || alg->as_string() != "EdDSA" || !x || !x->is_string()) {
      return bad("a key needs 'kid', 'alg' EdDSA and 'x'");
    }
    auto raw = base64url_decode(std::string_view(x->as_string()));
    if (!raw || raw->size() != 32) {
      return bad("'x' must be 32 bytes of base64url");
    }
    out.push_back(public_key{std::string(kid->as_string()), std::move(*raw)});
  }
  return out;
}

std::string encode_keys(std::string_view issuer, const std::vector<public_key>& keys) {
  json::array a;
  for (auto& k : keys) {
    a.push_back(json::object{
        {"kid", k.kid}, {"alg", "EdDSA"}, {"crv", "Ed25519"}, {"x", base64url_encode(k.raw)}});
  }
  return json::serialize(json::object{{"issuer", issuer}, {"keys", std::move(a)}});
}

key_fetcher::key_fetcher(std::shared_ptr<token_verifier> v, net::http_client& client,
                         std::string auth_url, std::chrono::milliseconds min_interval)
    : verifier_(std::move(v)),
      client_(client),
      url_(std::move(auth_url)),
      min_interval_(min_interval) {}

boost::asio::awaitable<status> key_fetcher::refresh() {
  last_fetch_ = std::chrono::steady_clock::now();
  auto fetching = std::make_shared<boost::asio::steady_timer>(
      co_await boost::asio::this_coro::executor, std::chrono::steady_clock::time_point::max());
  fetching_ = fetching;
  auto st = co_await fetch();
  if (fetching_ == fetching) {
    fetching_.reset();
  }
  fetching->cancel();
  co_return st;
}

boost::asio::awaitable<status> key_fetcher::fetch() {
  auto r = co_await client_.get(url_ + "/v1/keys");
  if (!r) {
    co_return r.err();
  }
  if (r->status != 200) {
    co_return make_error(errc::protocol_error,
                         "keys: the auth server answered " + std::to_string(r->status));
  }
  auto keys = decode_keys(r->body);
  if (!keys) {
    co_return keys.err();
  }
  verifier_->set_keys(std::move(*keys));
  co_return status{};
}

boost::asio::awaitable<verify_outcome> key_fetcher::verify(std::string token, requirement req) {
  auto out = verifier_->verify(token, req);
  if (out || out.why != token_error::unknown_key) {
    co_return out;
  }
  if (auto in_flight = fetching_) {
    co_await in_flight->async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    co_return verifier_->verify(token, req);
  }
  auto now = std::chrono::steady_clock::now();
  if (last_fetch_ && now - *last_fetch_ < min_interval_) {
    co_return out;
  }
  auto st = co_await refresh();
  if (!st) {
    out.why = token_error::keys_unavailable;
    out.detail += " (and the keys could not be fetched: " + st.err().detail + ")";
    co_return out;
  }
  co_return verifier_->verify(token, req);
}

}  // namespace vodgrid::auth
