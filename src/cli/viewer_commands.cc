// The viewer's commands: play (the console player against a playlist URL, or the RTSP client
// against an rtsp:// URL) and login (a token from the grid's auth server).
#include <boost/asio/io_context.hpp>
#include <boost/json/serialize.hpp>

#include <iostream>

#include "auth/client.h"
#include "cli/commands.h"
#include "cli/commands_impl.h"
#include "cli/remote.h"
#include "cli/sync.h"
#include "console/rtsp_player.h"
#include "net/client.h"
#include "net/tls.h"

namespace vodgrid::cli {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

asio::awaitable<console::rtsp_report> play_rtsp_async(console::rtsp_play_options o) {
  co_return co_await console::play_rtsp(std::move(o));
}

// Prints the report; the exit code says whether it is ok (`failed`: the line when no error says).
template <class Report>
int print_report(const Report& report, bool as_json, std::string_view failed) {
  if (as_json) {
    std::cout << json::serialize(report.to_json()) << "\n";
  } else {
    std::cout << report.to_text();
  }
  if (!report.ok()) {
    return fail("play", report.errors.empty() ? failed : report.errors.front());
  }
  return 0;
}

int run_play_rtsp(const play_cli_options& o) {
  if (o.realtime) {
    return fail("play", "--realtime is for http:// URLs: an RTSP stream comes at the media's pace");
  }
  if (o.threads) {
    return fail("play", "--threads is for http:// URLs: the RTSP console runs on one thread");
  }
  if (o.model.enabled || !o.programs.empty()) {
    return fail("play", "--model and --programs are for http:// URLs");
  }
  console::rtsp_play_options po;
  po.url = o.url;
  po.token = o.token;
  po.viewers = o.viewers;
  po.seek = o.seek;
  po.scale = o.scale.value_or(1);
  po.save = o.save;
  po.verify = o.verify;
  po.read_timeout = std::chrono::milliseconds(o.silence_ms);
  if (auto why = console::invalid_options(po)) {
    return fail("play", *why);
  }
  asio::io_context io;
  return print_report(run_sync(io, play_rtsp_async(std::move(po))), o.json,
                      "datagrams were lost or segments failed their SHA-256");
}

// One GET of `url`, its transport's error if any (the status does not matter).
status reach(const std::string& url) {
  asio::io_context io;
  auto r = run_sync(io, [](std::string u) -> asio::awaitable<result<net::client_response>> {
    net::client_options co;
    co.request_timeout = std::chrono::seconds(10);
    net::http_client client(co_await asio::this_coro::executor, co);
    co_return co_await client.get(std::move(u));
  }(url));
  if (!r) {
    return r.err();
  }
  return {};
}

}  // namespace

console::play_report play_blocking(console::play_options o) {
  return console::play_on_threads(std::move(o));
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
  if (o.viewers < 1 || o.viewers > 10000) {
    return fail("play", "--viewers must be within 1..10000");
  }
  if (o.url.starts_with("rtsps://")) {
    // The console's RTSP client receives RTP over UDP only; over RTSPS the stream is interleaved
    // in the TLS connection (docs/push.md).
    return fail("play",
                "rtsps:// is not played by the console yet: use the https:// playlist of the "
                "program, or ffmpeg/ffplay for rtsps://");
  }
  if (o.url.starts_with("rtsp://")) {
    if (!o.ca.empty()) {
      return fail("play", "--ca is for http(s):// URLs");
    }
    return run_play_rtsp(o);
  }
  if (o.seek || o.scale || !o.save.empty()) {
    return fail("play", "--seek, --scale and --save are for rtsp:// URLs");
  }
  auto u = net::parse_http_url(o.url);
  if (!u) {
    return fail("play", u.err().detail);
  }
  if (!o.ca.empty()) {
    if (auto ctx = net::client_context(o.ca); !ctx) {
      return fail("play", "--ca: " + ctx.err().detail);
    }
    net::set_default_tls_ca(o.ca);  // every client of the console: playlists, 302s, segments
  }
  if (u->tls) {
    // A director whose certificate is not trusted refuses every viewer alike: one line now, not
    // a report of every viewer's attempts. A director not reached at all (refused, timed out) is
    // left to the play, which asks again as over http:// (play_options::max_attempts).
    if (auto st = reach(u->origin() + "/healthz"); !st && st.err().detail.starts_with("tls: ")) {
      return fail("play", st.err().detail);
    }
  }
  console::play_options po;
  po.url = o.url;
  po.token = o.token;
  po.viewers = o.viewers;
  po.realtime = o.realtime;
  po.verify = o.verify;
  po.read_timeout = std::chrono::milliseconds(o.silence_ms);
  po.threads = o.threads.value_or(0);
  po.buffer = o.buffer;
  po.model = o.model;
  po.programs = o.programs;
  if (auto why = console::invalid_options(po)) {
    return fail("play", *why);
  }
  return print_report(play_blocking(po), o.json, "some segments failed");
}

}  // namespace vodgrid::cli
