// Token verification for every daemon: signature (Ed25519, the auth server's published keys),
// expiry, kind, entitlement and client address, with a bounded cache of verified tokens so that a
// director's hot path costs a hash lookup, not a signature check. `key_fetcher` keeps the keys
// fresh from the auth daemon's GET /v1/keys, fetching again (rate-limited) when a token names a key
// it does not know.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/steady_timer.hpp>

#include "auth/keys.h"
#include "auth/token.h"
#include "base/result.h"

namespace vodgrid::net {
class http_client;
}

namespace vodgrid::auth {

// Why a token was refused. missing → 401; every other → 403 (DESIGN.md flow 7).
enum class token_error {
  missing,      // no token where one is needed
  malformed,    // not a token (parse_token failed)
  unknown_key,  // its kid is not among the published keys (forged, or keys not yet fetched)
  bad_signature,
  expired,
  wrong_kind,
  not_entitled,   // the program is outside the token's entitlement
  wrong_address,  // bound to another client address
  // Its kid is unknown and the keys could not be fetched (the auth server is down): not a verdict
  // on the token, so errc::unavailable — ask again later.
  keys_unavailable,
};
std::string_view to_string(token_error e);
// errc::unauthorized for missing, errc::unavailable for keys_unavailable, errc::forbidden
// otherwise; detail "token <reason>: ...".
error to_error(token_error e, std::string_view detail = {});

// What a request needs of its token. An empty `program` or `address` is not checked.
struct requirement {
  token_kind kind = token_kind::viewer;
  std::optional<program_id> program;
  std::string address;  // the client's IP address as the server saw it (canonical text)
};

struct verify_outcome {
  std::optional<claims> ok;  // set when the token passed
  token_error why = token_error::malformed;
  std::string detail;
  explicit operator bool() const { return ok.has_value(); }
  error as_error() const { return to_error(why, detail); }
};

struct verifier_options {
  size_t cache_entries = 100'000;  // verified tokens remembered (each ~0.5 KiB)
  int64_t clock_skew = 30;         // seconds a token's iat may lie in our future
};

// Thread-safe; every daemon thread may share one verifier. The remembered tokens are in shards by
// the token's hash, each behind its own mutex, so that the loops of a director asking allows() on
// every redirect rarely meet at one lock (issue 16).
class token_verifier {
 public:
  explicit token_verifier(verifier_options opts = {});

  // Replaces the trusted keys. Tokens of a key no longer listed are refused from now on, even if
  // remembered.
  void set_keys(std::vector<public_key> keys);
  std::vector<public_key> keys() const;
  bool knows(std::string_view kid) const;

  // Checks `token` at unix time `now` (seconds) against `req`.
  verify_outcome verify(std::string_view token, const requirement& req, int64_t now) const;
  verify_outcome verify(std::string_view token, const requirement& req) const;

  // The hot path of a director or engine: true when `token` is remembered as verified and meets
  // the requirement (kind, `program` when not null, the address it is bound to if any) at `now`.
  // `client`: the peer's address as the socket has it (IPv4-mapped IPv6 is taken as the IPv4
  // address), compared in binary. Takes one shard's lock; allocates nothing. False
  // says nothing more: call verify() for the outcome and its reason.
  bool allows(std::string_view token, token_kind kind, const program_id* program,
              const boost::asio::ip::address& client, int64_t now) const;

  size_t cached() const;

 private:
  // Hashes a token's last 32 characters, part of its Ed25519 signature: distinct tokens that
  // verified, all the cache holds, differ there; hashing the whole text (~300 characters) would
  // cost the director's hot path several times as much.
  static size_t hash_of(std::string_view s) {
    return std::hash<std::string_view>{}(s.substr(s.size() - std::min<size_t>(s.size(), 32)));
  }
  // A token with its hash, taken once for both its shard and the shard's map (the map's lookup
  // takes the hash given instead of hashing again: C++20's heterogeneous lookup).
  struct hashed_token {
    std::string_view text;
    size_t hash;
  };
  struct token_hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return hash_of(s); }
    size_t operator()(const hashed_token& t) const { return t.hash; }
  };
  struct token_equal {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const { return a == b; }
    bool operator()(const hashed_token& a, std::string_view b) const { return a.text == b; }
    bool operator()(std::string_view a, const hashed_token& b) const { return a == b.text; }
  };
  struct cache_entry {
    claims body;
    // body.address parsed, so that allows() compares addresses without text; nullopt: not bound.
    std::optional<boost::asio::ip::address> bound;
  };
  verify_outcome check_claims(const claims& c, const requirement& req, int64_t now) const;
  using cache_map = std::unordered_map<std::string, cache_entry, token_hash, token_equal>;
  // One part of the remembered tokens, on cache lines of its own. Lock order: keys_mu_, then a
  // shard's mu (set_keys clears every shard, and verify() adds a token, holding keys_mu_, so
  // that a token of a key just retired cannot be added after the shards were cleared).
  struct alignas(64) shard {
    std::mutex mu;
    cache_map cache;  // guarded by mu
  };
  shard& shard_of(size_t hash) const;

  verifier_options opts_;
  size_t per_shard_ = 0;  // entries a shard may hold: opts_.cache_entries / shard_count_
  size_t shard_count_ = 1;
  mutable std::mutex keys_mu_;                         // guards keys_
  std::unordered_map<std::string, std::string> keys_;  // kid → raw public key
  std::unique_ptr<shard[]> shards_;
};

// Unix seconds now (system clock).
int64_t unix_now();

// Parses GET /v1/keys: {"issuer": "...", "keys": [{"kid":..,"alg":"EdDSA","x": base64url}]}.
result<std::vector<public_key>> decode_keys(std::string_view body);
std::string encode_keys(std::string_view issuer, const std::vector<public_key>& keys);

// Keeps a verifier's keys in step with the auth daemon. Lives on one executor (that of `client`);
// not thread-safe itself, but the verifier it feeds may be used from any thread.
class key_fetcher {
 public:
  // `auth_url` like "http://127.0.0.1:8701". `min_interval`: fetches on unknown kids are at
  // least this far apart (a flood of forged kids costs the auth server one request per interval).
  key_fetcher(std::shared_ptr<token_verifier> v, net::http_client& client, std::string auth_url,
              std::chrono::milliseconds min_interval = std::chrono::seconds(5));

  // Fetches the keys now. errc::unavailable / protocol_error when the auth daemon cannot say.
  boost::asio::awaitable<status> refresh();
  // Verifies; when the token's kid is unknown and the last fetch is older than min_interval,
  // fetches the keys once and verifies again. Verifications that meet an unknown kid while a fetch
  // is in flight wait for it, rather than being refused: a daemon just (re)started meets many
  // consoles at once before its keys arrive.
  boost::asio::awaitable<verify_outcome> verify(std::string token, requirement req);

  const std::shared_ptr<token_verifier>& verifier() const { return verifier_; }

 private:
  std::shared_ptr<token_verifier> verifier_;
  net::http_client& client_;
  std::string url_;
  std::chrono::milliseconds min_interval_;
  boost::asio::awaitable<status> fetch();
  std::optional<std::chrono::steady_clock::time_point> last_fetch_;
  // The fetch in flight: cancelled (waking its waiters) when it ends.
  std::shared_ptr<boost::asio::steady_timer> fetching_;
};

}  // namespace vodgrid::auth
