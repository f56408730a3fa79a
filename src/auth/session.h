// A daemon's standing with the auth server (claims 23-25): the published keys for verifying the
// tokens it is shown, its own engine token (logged in with its provisioned secret, renewed at
// half-life, logged in again when renewal fails) and its station's URL-signing key. Directors and
// engines keep one each; none of it blocks start: until the auth server answers, `signer()` and
// `token()` are empty and the daemon refuses what needs them.
// Threading: lives on one executor (a daemon's io_context); not thread-safe, but for verifier()
// (thread-safe itself) and shared_signer(), which any thread may call.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include <boost/asio/any_io_executor.hpp>

#include "auth/url_signer.h"
#include "auth/verifier.h"
#include "base/snapshot.h"

namespace vodgrid::auth {

class service_session {
 public:
  // `name`: the account (an engine's name, a director's station); `secret_dir`: where its
  // auth.secret is (read_or_create_secret). `who`: the daemon, for the log.
  service_session(boost::asio::any_io_executor ex, std::string auth_url, std::string name,
                  std::filesystem::path secret_dir, std::string who);
  ~service_session();
  service_session(const service_session&) = delete;
  service_session& operator=(const service_session&) = delete;

  // Reads (or makes) the secret and starts fetching keys and logging in, in the background.
  status start();
  // Stops the background loop (it ends at its next wake-up; nothing waits for it).
  void stop();

  token_verifier& verifier() const;
  key_fetcher& keys() const;
  // The station's URL signer; null until the first login. On the session's executor: a renewal
  // replaces it.
  const url_signer* signer() const;
  // The same from any thread (a director's redirect on another loop, issue 16): kept alive by the
  // caller while it signs, whatever a renewal does meanwhile.
  std::shared_ptr<const url_signer> shared_signer() const;
  // The same from any thread without touching a shared cache line (base/snapshot.h): valid while
  // `pin` lives.
  const url_signer* signer(snapshot_pin& pin) const;
  // The current engine token; empty until the first login.
  const std::string& token() const;

  struct state;  // session.cc; shared with the background loop, which may outlive the session

 private:
  std::shared_ptr<state> st_;
};

}  // namespace vodgrid::auth
