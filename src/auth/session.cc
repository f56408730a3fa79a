// The background loop of a service session: keys, login, renewal.
#include "auth/session.h"

#include <atomic>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "auth/client.h"
#include "base/log.h"
#include "net/client.h"

namespace vodgrid::auth {

namespace asio = boost::asio;

struct service_session::state {
  state(asio::any_io_executor ex, std::string url, std::string n, std::filesystem::path dir,
        std::string w)
      : client(ex),
        verifier(std::make_shared<token_verifier>()),
        fetcher(verifier, client, url),
        timer(ex),
        auth_url(std::move(url)),
        name(std::move(n)),
        secret_dir(std::move(dir)),
        who(std::move(w)) {}
  net::http_client client;
  std::shared_ptr<token_verifier> verifier;
  key_fetcher fetcher;
  asio::steady_timer timer;
  std::string auth_url;
  std::string name;
  std::filesystem::path secret_dir;
  std::string who;
  std::string secret;
  std::string token;
  int64_t renew_at = 0;  // unix seconds
  int64_t expires_at = 0;
  snapshot<url_signer> signer;  // read from any thread
  bool stopping = false;
  std::shared_ptr<spdlog::logger> logger = log::get("auth");
};

namespace {

asio::awaitable<bool> step(std::shared_ptr<service_session::state> st);

}  // namespace

service_session::service_session(asio::any_io_executor ex, std::string auth_url, std::string name,
                                 std::filesystem::path secret_dir, std::string who)
    : st_(std::make_shared<state>(ex, std::move(auth_url), std::move(name), std::move(secret_dir),
                                  std::move(who))) {}

service_session::~service_session() {
  stop();
}

token_verifier& service_session::verifier() const {
  return *st_->verifier;
}
key_fetcher& service_session::keys() const {
  return st_->fetcher;
}
const url_signer* service_session::signer() const {
  return st_->signer.load().get();  // kept alive by the state until a renewal on this executor
}
std::shared_ptr<const url_signer> service_session::shared_signer() const {
  return st_->signer.load();
}
const url_signer* service_session::signer(snapshot_pin& pin) const {
  return st_->signer.read(pin);
}
const std::string& service_session::token() const {
  return st_->token;
}

void service_session::stop() {
  st_->stopping = true;
  st_->timer.cancel();
}

namespace {

// One round: keys if we have none, a login or renewal when due. False when something failed.
asio::awaitable<bool> step(std::shared_ptr<service_session::state> st) {
  bool ok = true;
  if (st->verifier->keys().empty()) {
    auto r = co_await st->fetcher.refresh();
    ok = r.has_value();
  }
  int64_t now = unix_now();
  if (st->token.empty() || now >= st->renew_at) {
    std::optional<login_reply> got;
    if (!st->token.empty() && now < st->expires_at) {
      auto r = co_await renew(st->client, st->auth_url, st->token);
      if (r) {
        got = std::move(*r);
      }
    }
    if (!got) {
      auto r = co_await login(st->client, st->auth_url, token_kind::engine, st->name, st->secret);
      if (r) {
        got = std::move(*r);
      } else {
        ok = false;
        st->logger->debug("{}: login at {} failed: {}", st->who, st->auth_url, r.err().detail);
      }
    }
    if (got) {
      bool first = st->token.empty();
      st->token = std::move(got->token);
      st->expires_at = got->expires_at;
      st->renew_at = now + std::max<int64_t>((got->expires_at - now) / 2, 1);
      if (!got->station_key.empty()) {
        st->signer.store(std::make_shared<const url_signer>(std::move(got->station_key)));
      }
      if (first) {
        st->logger->info("{}: logged in at {} as {} (station {})", st->who, st->auth_url, st->name,
                         got->station);
      }
    }
  }
  co_return ok;
}

asio::awaitable<void> run(std::shared_ptr<service_session::state> st) {
  bool was_ok = true;
  while (!st->stopping) {
    bool ok = co_await step(st);
    if (!ok && was_ok) {
      st->logger->warn("{}: the auth server {} cannot log us in yet; retrying", st->who,
                       st->auth_url);
    }
    was_ok = ok;
    if (st->stopping) {
      break;
    }
    auto wait = std::chrono::milliseconds(300);
    if (ok) {
      int64_t left = st->renew_at - unix_now();
      wait = std::chrono::seconds(std::clamp<int64_t>(left, 1, 60));
    }
    st->timer.expires_after(wait);
    co_await st->timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

}  // namespace

status service_session::start() {
  auto s = read_or_create_secret(st_->secret_dir);
  if (!s) {
    return s.err();
  }
  st_->secret = std::move(*s);
  asio::co_spawn(st_->timer.get_executor(), run(st_), asio::detached);
  return {};
}

}  // namespace vodgrid::auth
