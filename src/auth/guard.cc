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

bool reader::may_see(const program_id& id, std::string_view availability) const {
  if (sees_all()) {
    return true;
  }
  if (anonymous) {
    return false;
  }
  auto parent = id;
  if (auto sep = id.str().find("--"); sep != std::string::npos) {
    parent = program_id::parse(id.str().substr(0, sep)).value_or(id);  // a rendition's program
  }
  return availability == "published" && token->entitled_to(parent);
}

namespace {

std::vector<token_kind> kinds_of(readers who) {
  if (who == readers::viewers) {
    return {token_kind::viewer, token_kind::operator_, token_kind::engine};
  }
  return {token_kind::operator_, token_kind::engine};
}

// The token's claims when it is valid and of one of `kinds`; else the outcome of the last try.
boost::asio::awaitable<verify_outcome> verify_any(const net::request_context& ctx,
                                                  key_fetcher& keys,
                                                  std::vector<token_kind> kinds) {
  auto token = auth::token_of(ctx);
  verify_outcome last;
  for (auto kind : kinds) {
    requirement req{kind, std::nullopt, client_address(ctx)};
    auto out = keys.verifier()->verify(token, req);
    if (!out && out.why == token_error::unknown_key) {
      out = co_await keys.verify(std::string(token), std::move(req));
    }
    if (out) {
      co_return out;
    }
    last = std::move(out);
    if (last.why != token_error::wrong_kind) {
      break;  // missing, forged, expired: no other kind will do
    }
  }
  co_return last;
}

}  // namespace

boost::asio::awaitable<std::optional<net::reply>> read_refusal(const net::request_context& ctx,
                                                               key_fetcher& keys, readers who) {
  if (who == readers::anyone) {
    co_return std::nullopt;
  }
  auto out = co_await verify_any(ctx, keys, kinds_of(who));
  if (out) {
    co_return std::nullopt;
  }
  if (out.why == token_error::wrong_kind) {
    out.detail = "only an operator's token or a daemon's of the grid may read " + ctx.path;
  }
  co_return net::error_reply(out.as_error());
}

boost::asio::awaitable<reader> reader_of(const net::request_context& ctx,
                                         service_session* session) {
  if (!session) {
    co_return reader{};
  }
  auto out = co_await verify_any(ctx, session->keys(), kinds_of(readers::viewers));
  if (!out) {
    co_return reader{std::nullopt, true};  // an `anyone` read without a (valid) token
  }
  co_return reader{std::move(out.ok)};
}

namespace {

boost::asio::awaitable<net::reply> read_then(service_session* session, readers who,
                                             const net::handler& h, net::request_context& ctx) {
  auto refused = co_await read_refusal(ctx, session->keys(), who);
  if (refused) {
    co_return std::move(*refused);
  }
  co_return co_await h(ctx);
}

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

net::handler guarded_read(service_session* session, readers who, net::handler h) {
  if (!session || who == readers::anyone) {
    return h;
  }
  return [session, who, h = std::move(h)](net::request_context& c) {
    return read_then(session, who, h, c);
  };
}

}  // namespace vodgrid::auth
