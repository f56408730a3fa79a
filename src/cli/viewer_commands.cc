// The viewer's commands: play (the console player against a playlist URL) and login (a token
// from the grid's auth server).
#include <boost/asio/io_context.hpp>
#include <boost/json/serialize.hpp>

#include <iostream>

#include "auth/client.h"
#include "cli/commands.h"
#include "cli/commands_impl.h"
#include "cli/remote.h"
#include "cli/sync.h"
#include "net/client.h"

namespace vodgrid::cli {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

asio::awaitable<console::play_report> play_async(console::play_options o) {
  co_return co_await console::play(std::move(o));
}

}  // namespace

console::play_report play_blocking(console::play_options o) {
  asio::io_context io;
  return run_sync(io, play_async(std::move(o)));
}

result<std::string> login_token(const std::string& auth_url, const std::string& user,
                                const std::string& password, bool operator_) {
  asio::io_context io;
  auto r = run_sync(io,
                    [](std::string url, std::string u, std::string p,
                       bool op) -> asio::awaitable<result<auth::login_reply>> {
                      net::http_client client(co_await asio::this_coro::executor);
                      co_return co_await auth::login(
                          client, std::move(url),
                          op ? auth::token_kind::operator_ : auth::token_kind::viewer, std::move(u),
                          std::move(p));
                    }(auth_url, user, password, operator_));
  if (!r) {
    return r.err();
  }
  return r->token;
}

int run_login(const login_cli_options& o) {
  auto url = auth_url(grid_url(o.grid));
  if (!url) {
    return fail("login", url.err().detail);
  }
  if (!*url) {
    return fail("login", "this grid has no auth server: no token is needed");
  }
  auto t = login_token(**url, o.user, o.password, o.operator_);
  if (!t) {
    return fail("login", t.err().detail);
  }
  std::cout << *t << "\n";
  return 0;
}

int run_play(const play_cli_options& o) {
  if (auto u = net::parse_http_url(o.url); !u) {
    return fail("play", u.err().detail);
  }
  if (o.viewers < 1 || o.viewers > 10000) {
    return fail("play", "--viewers must be within 1..10000");
  }
  console::play_options po;
  po.url = o.url;
  po.token = o.token;
  po.viewers = o.viewers;
  po.realtime = o.realtime;
  po.verify = o.verify;
  po.read_timeout = std::chrono::milliseconds(o.silence_ms);
  auto report = play_blocking(po);
  if (o.json) {
    std::cout << json::serialize(report.to_json()) << "\n";
  } else {
    std::cout << report.to_text();
  }
  if (!report.ok()) {
    std::cerr << "vodgrid play: "
              << (report.errors.empty() ? "some segments failed" : report.errors.front()) << "\n";
    return 1;
  }
  return 0;
}

}  // namespace vodgrid::cli
