// HTTP request handling (src/net/http.h): each input is sent as raw bytes over a loopback TCP
// connection to a real http_server with routes shaped like the director's and the engine's; the
// server parses, limits, routes and answers, then the client half-closes and reads to the end.
// Exercises the Beast parser with the server's limits, framing checks, target parsing, query
// decoding, route matching and the JSON error replies.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "api/api.h"
#include "base/log.h"
#include "net/http.h"

namespace asio = boost::asio;
namespace net = vodgrid::net;
using net::reply;
using net::request_context;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {

struct harness {
  asio::io_context io{1};
  std::unique_ptr<net::http_server> server;
  uint16_t port = 0;

  harness() {
    vodgrid::log::init("off", "fuzz");
    net::server_options o;
    o.header_timeout = std::chrono::milliseconds(500);
    o.body_timeout = std::chrono::milliseconds(500);
    o.idle_timeout = std::chrono::milliseconds(500);
    o.write_timeout = std::chrono::milliseconds(500);
    // A list rather than "*", so that the origin each request names is matched (net/cors.cc).
    o.cors.allowed_origins = {"http://a.example", "https://b.example:8443"};
    o.cors.allow_null = true;
    server = std::make_unique<net::http_server>(io.get_executor(), "fuzz", o);
    using V = net::http::verb;
    server->route(
        V::get, "/v1/programs/{}/index.m3u8",
        [](request_context& c) -> asio::awaitable<reply> {
          reply r;
          r.content_type = "application/vnd.apple.mpegurl";
          r.body = "#EXTM3U\n" + c.params[0] + std::string(c.query_param("token"));
          co_return r;
        },
        0, net::audience::viewer);
    server->route(
        V::get, "/v1/programs/{}/segments/{}.ts",
        [](request_context& c) -> asio::awaitable<reply> {
          reply r;
          r.status = net::http::status::found;
          r.headers.emplace_back("Location", "http://127.0.0.1:1/" + c.params[1]);
          co_return r;
        },
        0, net::audience::viewer);
    server->route(
        V::post, "/v1/engines/{}/heartbeat",
        [](request_context& c) -> asio::awaitable<reply> {
          auto hb = vodgrid::api::decode<vodgrid::api::heartbeat>(c.req.body());
          if (!hb) {
            co_return net::error_reply(hb.err());
          }
          co_return net::json_reply(vodgrid::api::to_json(vodgrid::api::heartbeat_reply{}));
        },
        64 * 1024);
    server->route(V::put, "/v1/segments/{}/{}", [](request_context& c) -> asio::awaitable<reply> {
      co_return net::json_reply(boost::json::object{{"bytes", c.req.body().size()}});
    });
    auto p = server->listen("127.0.0.1", 0);
    if (!p) {
      std::abort();
    }
    port = *p;
  }
};

asio::awaitable<void> exchange(uint16_t port, std::string bytes, bool* done) {
  auto ex = co_await asio::this_coro::executor;
  tcp::socket s(ex);
  auto [ec] =
      co_await s.async_connect(tcp::endpoint(asio::ip::address_v4::loopback(), port), use_tuple);
  if (!ec) {
    co_await asio::async_write(s, asio::buffer(bytes), use_tuple);
    s.shutdown(tcp::socket::shutdown_send, ec);
    std::string got;
    auto buf = asio::dynamic_buffer(got, 1 << 20);
    co_await asio::async_read(s, buf, use_tuple);
  }
  *done = true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static harness* h = new harness();
  bool done = false;
  asio::co_spawn(h->io,
                 exchange(h->port, std::string(reinterpret_cast<const char*>(data), size), &done),
                 asio::detached);
  while (!done) {
    h->io.run_one();
  }
  // Let the server's session finish with this connection before the next input.
  for (int i = 0; i < 64 && h->server->connections() > 0; ++i) {
    h->io.run_one_for(std::chrono::milliseconds(10));
  }
  return 0;
}
