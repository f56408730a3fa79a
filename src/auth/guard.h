// What every daemon of a grid with an auth server shares about its service identity and its
// control endpoints (claims 5, 24, 25; DESIGN.md flow 7): the accounts the operator provisions
// for the daemons, and the check that a control request carries a token of the right kind.
#pragma once

#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "auth/token.h"
#include "auth/verifier.h"
#include "base/config.h"
#include "net/http.h"

namespace vodgrid::auth {

// A daemon's engine-kind account: its name, the folder of its auth.secret, and the "station" the
// auth server files it under (its URL-signing key is that station's).
struct service_account {
  std::string name;
  std::filesystem::path secret_dir;
  std::string station;
};

// Every daemon that logs in: each director (under its station's name) and engine of its station,
// the registry ("registry", its secret in [registry].secret_dir or the SQLite database's folder)
// and the content manager ("content", in its work_dir); each of the last two under a station of
// its own name, so that it holds no station's signing key. errc::invalid_argument when the
// registry's folder cannot be known (a PostgreSQL registry without secret_dir).
result<std::vector<service_account>> service_accounts(const grid_config& grid);

// Checks a control request's token: nullopt when it is valid and of one of `kinds` (keys fetched
// again when it names one we do not know); otherwise the 401/403 reply to send.
boost::asio::awaitable<std::optional<net::reply>> refusal_unless(const net::request_context& ctx,
                                                                 key_fetcher& keys,
                                                                 std::vector<token_kind> kinds);

class service_session;

// Who may call a read endpoint (docs/protocol.md, "Who may read what"). Reads of a grid with an
// auth server need a token; a grid without one has no tokens and every read is open.
enum class readers {
  anyone,     // no token: /healthz, the watch page, the dashboard's files, the public keys
  viewers,    // any valid token; a viewer's sees only published programs it is entitled to
  operators,  // an operator's token, or a daemon's (engine kind: the grid's own peers)
};

// The caller of a read, once its token passed (or in a grid without tokens): what it may see.
struct reader {
  std::optional<claims> token;  // none: a grid without an auth server, or `anonymous`
  bool anonymous = false;       // an `anyone` read without a valid token: sees nothing private
  // An operator, a daemon of the grid, or anyone where there are no tokens: everything.
  bool sees_all() const { return !anonymous && (!token || token->kind != token_kind::viewer); }
  // Whether a listing shows program `id` (its entitlement is its parent's for a rendition),
  // whose availability is `availability` ("published", ...): always for sees_all(); for a viewer,
  // only a published program it is entitled to.
  bool may_see(const program_id& id, std::string_view availability) const;
};

// The reply refusing a read to a caller not among `who`, or nullopt when it may read: 401 without
// a token, 403 for a bad token or one of a kind not among `who`, each with the JSON reason
// ("token missing: ...", "token wrong_kind: ..."). The one check every daemon's reads go through.
boost::asio::awaitable<std::optional<net::reply>> read_refusal(const net::request_context& ctx,
                                                               key_fetcher& keys, readers who);

// The caller of a read that `guarded_read` let through (its token verified again: a cache hit).
// Without a session: a reader that sees all.
boost::asio::awaitable<reader> reader_of(const net::request_context& ctx, service_session* session);

// `h`, behind read_refusal: the handler of a read endpoint. Without a session (a grid without an
// auth server) or for `anyone`, it is `h` itself. The session must outlive the server's routes.
net::handler guarded_read(service_session* session, readers who, net::handler h);

// `h`, behind refusal_unless: the handler of a control endpoint. Without a session (a grid without
// an auth server) it is `h` itself. The session must outlive the server's routes.
net::handler guarded(service_session* session, std::vector<token_kind> kinds, net::handler h);

}  // namespace vodgrid::auth
