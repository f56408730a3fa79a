// The authentication server (claims 5, 23-25): subscribers, engines and operators kept through
// src/db; logins answered with Ed25519-signed tokens; its public keys published for every daemon's
// verifier; key rotation. Endpoints: docs/protocol.md, "Auth".
// Threading: handlers run on the io_context; the database, the keyring and password hashing run on
// one thread of their own.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "auth/password.h"
#include "auth/throttle.h"
#include "base/config.h"
#include "base/result.h"

namespace vodgrid::auth {

struct auth_options {
  int64_t viewer_ttl = 12 * 3600;    // seconds a viewer token lives
  int64_t engine_ttl = 3600;         // seconds an engine token lives (engines renew at half)
  int64_t operator_ttl = 3600;       // seconds an operator token lives
  int64_t rotate_every = 7 * 86400;  // seconds between automatic key rotations
  std::chrono::milliseconds housekeeping{60'000};  // how often rotation and retirement are checked
  password_cost cost;                              // Argon2id cost of new password hashes
  throttle_options throttle;                       // failed logins' back-off (issue 17)
  // Password checks waiting for the hashing thread beyond which a login is refused at once (503,
  // Retry-After) rather than answered late.
  uint32_t max_pending_checks = 16;
};

class auth_daemon {
 public:
  auth_daemon(boost::asio::io_context& io, grid_config grid, auth_options opts = {});
  ~auth_daemon();

  // Opens the database, loads or makes the signing key, creates the demo accounts when the config
  // asks, and listens. Errors: the database's, or a bound port.
  status start();
  boost::asio::awaitable<void> stop(std::chrono::milliseconds drain);
  uint16_t port() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace vodgrid::auth
