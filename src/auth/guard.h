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

// `h`, behind refusal_unless: the handler of a control endpoint. Without a session (a grid without
// an auth server) it is `h` itself. The session must outlive the server's routes.
net::handler guarded(service_session* session, std::vector<token_kind> kinds, net::handler h);

}  // namespace vodgrid::auth
