#include "auth/guard.h"

#include "auth/client.h"
#include "auth/session.h"

namespace vodgrid::auth {

result<std::vector<service_account>> service_accounts(const grid_config& grid) {
  std::vector<service_account> out;
  for (auto& s : grid.stations) {
    out.push_back({s.name.str(), s.director.data_dir, s.name.str()});
    for (auto& e : s.engines) {
      out.push_back({e.name.str(), e.data_dirs.at(0), s.name.str()});
    }
  }
  if (grid.registry) {
    auto dir = grid.registry->secret_dir;
    std::string_view db = grid.registry->database;
    if (dir.empty() && db.starts_with("sqlite://") && db != "sqlite://:memory:") {
      dir = std::filesystem::path(std::string(db.substr(9))).parent_path();
    } else if (dir.empty() && db.starts_with("sqlite:") && db != "sqlite::memory:") {
      dir = std::filesystem::path(std::string(db.substr(7))).parent_path();
    }
    if (dir.empty()) {
      return make_error(errc::invalid_argument,
                        "[registry]: a grid with [auth] needs 'secret_dir' (where the registry's "
                        "auth.secret is) unless its database is a SQLite file");
    }
    out.push_back({"registry", dir, "registry"});
  }
  if (grid.content) {
    out.push_back({"content", grid.content->work_dir, "content"});
  }
  return out;
}

boost::asio::awaitable<std::optional<net::reply>> refusal_unless(const net::request_context& ctx,
                                                                 key_fetcher& keys,
                                                                 std::vector<token_kind> kinds) {
  auto token = auth::token_of(ctx);
  verify_outcome last;
  for (auto kind : kinds) {
    requirement req{kind, std::nullopt, {}};
    auto out = keys.verifier()->verify(token, req);
    if (!out && out.why == token_error::unknown_key) {
      out = co_await keys.verify(std::string(token), std::move(req));
    }
    if (out) {
      co_return std::nullopt;
    }
    last = std::move(out);
    if (last.why != token_error::wrong_kind) {
      break;  // missing, forged, expired: no other kind will do
    }
  }
  co_return net::error_reply(last.as_error());
}

namespace {

boost::asio::awaitable<net::reply> check_then(service_session* session,
                                              std::vector<token_kind> kinds, const net::handler& h,
                                              net::request_context& ctx) {
  auto refused = co_await refusal_unless(ctx, session->keys(), std::move(kinds));
  if (refused) {
    co_return std::move(*refused);
  }
  co_return co_await h(ctx);
}

}  // namespace

net::handler guarded(service_session* session, std::vector<token_kind> kinds, net::handler h) {
  if (!session) {
    return h;
  }
  return [session, kinds = std::move(kinds), h = std::move(h)](net::request_context& c) {
    return check_then(session, kinds, h, c);
  };
}

}  // namespace vodgrid::auth
