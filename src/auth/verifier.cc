// The verifier: cache lookup, else parse + Ed25519 check; then the per-request checks.
#include "auth/verifier.h"

#include <array>
#include <atomic>

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
  std::lock_guard lock(mu_);
  if (m != keys_) {
    keys_ = std::move(m);
    cache_.clear();  // a retired key's tokens must not survive in the cache
    keys_version_.fetch_add(1, std::memory_order_release);  // nor in a thread's copy
  }
}

std::vector<public_key> token_verifier::keys() const {
  std::lock_guard lock(mu_);
  std::vector<public_key> out;
  for (auto& [kid, raw] : keys_) {
    out.push_back(public_key{kid, raw});
  }
  return out;
}

bool token_verifier::knows(std::string_view kid) const {
  std::lock_guard lock(mu_);
  return keys_.count(std::string(kid)) > 0;
}

size_t token_verifier::cached() const {
  std::lock_guard lock(mu_);
  return cache_.size();
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
  {
    std::lock_guard lock(mu_);
    auto it = cache_.find(token);
    if (it != cache_.end()) {
      return check_claims(it->second.body, req, now);
    }
  }
  auto t = parse_token(token);
  if (!t) {
    return verify_outcome{std::nullopt, token_error::malformed, t.err().detail};
  }
  std::string raw;
  {
    std::lock_guard lock(mu_);
    auto k = keys_.find(t->kid);
    if (k == keys_.end()) {
      return verify_outcome{std::nullopt, token_error::unknown_key, "no key " + t->kid};
    }
    raw = k->second;
  }
  if (!verify_signature(raw, t->signing_input, t->signature)) {
    return verify_outcome{std::nullopt, token_error::bad_signature, "signature does not verify"};
  }
  if (now < t->body.expires_at) {
    std::lock_guard lock(mu_);
    if (keys_.count(t->kid) > 0) {  // the keys may have changed while we checked
      if (cache_.size() >= opts_.cache_entries) {
        std::erase_if(cache_, [now](const auto& kv) { return now >= kv.second.body.expires_at; });
        if (cache_.size() >= opts_.cache_entries) {
          cache_.clear();  // all alive: forgetting them costs one signature check each
        }
      }
      if (opts_.cache_entries > 0) {
        cache_entry e{t->body, std::nullopt};
        if (!e.body.address.empty()) {
          boost::system::error_code ec;
          e.bound = boost::asio::ip::make_address(e.body.address, ec);
          if (ec) {
            e.bound = boost::asio::ip::address();  // 0.0.0.0, no peer's (parse_token checked it)
          }
        }
        cache_.emplace(std::string(token), std::move(e));
      }
    }
  }
  return check_claims(t->body, req, now);
}

// A thread's copies of the shared cache's entries (allows()), direct-mapped by the token's hash:
// a console's requests meet its token here without taking the verifier's mutex, which every loop
// of a director would otherwise take on every redirect.
struct local_cache {
  struct slot {
    uint64_t owner = 0;  // the verifier's id_; 0: empty
    uint64_t keys_version = 0;
    std::string token;
    token_verifier::cache_entry entry;
  };
  static constexpr size_t slots = 64;
  static slot& of(size_t hash) {
    thread_local std::array<slot, slots> cache;
    return cache[hash % slots];
  }
};

namespace {
std::atomic<uint64_t> next_verifier_id{1};
}  // namespace

token_verifier::token_verifier(verifier_options opts)
    : opts_(opts), id_(next_verifier_id.fetch_add(1, std::memory_order_relaxed)) {}

bool token_verifier::allows(std::string_view token, token_kind kind, const program_id* program,
                            const boost::asio::ip::address& client, int64_t now) const {
  if (token.empty()) {
    return false;
  }
  // The version is read before the shared cache: a copy is never older than the keys it is
  // tagged with (set_keys clears the cache, then bumps the version, under the mutex).
  uint64_t version = keys_version_.load(std::memory_order_acquire);
  auto& slot = local_cache::of(token_hash{}(token));
  if (slot.owner != id_ || slot.keys_version != version || slot.token != token) {
    slot.owner = 0;  // empty until whole
    {
      std::lock_guard lock(mu_);
      auto it = cache_.find(token);
      if (it == cache_.end()) {
        return false;
      }
      slot.entry = it->second;
    }
    slot.token.assign(token);
    slot.keys_version = version;
    slot.owner = id_;
  }
  const claims& c = slot.entry.body;
  if (!(now < c.expires_at && c.issued_at <= now + opts_.clock_skew && c.kind == kind &&
        (!program || c.entitled_to(*program)))) {
    return false;
  }
  if (!slot.entry.bound) {
    return true;
  }
  if (client.is_v6() && client.to_v6().is_v4_mapped()) {
    return *slot.entry.bound ==
           boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, client.to_v6());
  }
  return *slot.entry.bound == client;
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
