// Tests of the server's cross-origin rules (net/cors.cc) in-process: the CORS headers on every
// answer of a viewer route, its OPTIONS preflight, a list of origins, and control routes that
// refuse what a browser sends from a page of another origin (and run no handler for it).
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "net/http.h"
#include "support/support.h"

namespace vodgrid::net {
namespace {

using namespace std::chrono_literals;
using V = http::verb;

// A server on its own thread: a viewer GET on /v/{}.ts answering the status its query asks for
// (?as=206|302|404|401), a control PUT on the same pattern, a control POST /ctl and GET /info.
class cors_harness {
 public:
  explicit cors_harness(cors_options cors = {}) {
    server_options o;
    o.cors = std::move(cors);
    server_.emplace(io_.get_executor(), "test", o);
    auto calls = calls_;
    server_->route(
        V::get, "/v/{}.ts",
        [calls](request_context& c) -> asio::awaitable<reply> {
          ++*calls;
          auto as = c.query_param("as");
          reply r;
          r.content_type = "video/mp2t";
          r.body = "0123456789";
          if (as == "206") {
            r.status = http::status::partial_content;
            r.body = "23";
            r.headers.emplace_back("Content-Range", "bytes 2-3/10");
          } else if (as == "302") {
            r = reply{};
            r.status = http::status::found;
            r.headers.emplace_back("Location", "http://127.0.0.1:1/x.ts");
          } else if (as == "404") {
            r = error_reply(http::status::not_found, "not_found", "no such segment");
          } else if (as == "401") {
            r = error_reply(http::status::unauthorized, "unauthorized", "a token is needed");
          }
          co_return r;
        },
        0, audience::viewer);
    auto control = [calls](request_context&) -> asio::awaitable<reply> {
      ++*calls;
      co_return json_reply(boost::json::object{{"done", true}});
    };
    server_->route(V::put, "/v/{}.ts", control);
    server_->route(V::post, "/ctl", control);
    server_->route(V::get, "/info", control);
    port_ = *server_->listen("127.0.0.1", 0);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~cors_harness() {
    asio::co_spawn(io_, server_->stop(0ms), asio::use_future).wait();
    thread_.join();
  }

  // One request; `headers` are whole lines ("Name: value\r\n"). The reply's head, lowercased.
  std::string head(const std::string& method, const std::string& target,
                   const std::string& headers = {}) {
    auto raw = test::raw_exchange(port_, method + " " + target + " HTTP/1.1\r\nHost: " + host() +
                                             "\r\n" + headers + "Connection: close\r\n\r\n");
    std::string h = raw.substr(0, raw.find("\r\n\r\n"));
    for (char& c : h) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return h;
  }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  uint16_t port() const { return port_; }
  int calls() const { return *calls_; }

 private:
  asio::io_context io_;
  std::optional<http_server> server_;
  std::shared_ptr<std::atomic<int>> calls_ = std::make_shared<std::atomic<int>>(0);
  std::thread thread_;
  uint16_t port_ = 0;
};

bool has(const std::string& head, const std::string& line) {
  return head.find("\r\n" + line + "\r\n") != std::string::npos || head.ends_with("\r\n" + line);
}

const std::string page_origin = "Origin: http://page.example\r\n";

TEST(Cors, EveryViewerAnswerCarriesTheHeadersForAnyOrigin) {
  cors_harness h;
  for (std::string as : {"200", "206", "302", "404", "401"}) {
    auto head = h.head("GET", "/v/7.ts?as=" + as, page_origin);
    EXPECT_TRUE(head.starts_with("http/1.1 " + as)) << head;
    EXPECT_TRUE(has(head, "access-control-allow-origin: *")) << as << ": " << head;
    EXPECT_TRUE(has(head, "access-control-expose-headers: content-length, content-range")) << head;
    EXPECT_EQ(head.find("vary:"), std::string::npos) << "the same answer for every origin";
  }
  // HEAD, and a request without Origin (a player; a cache in between keeps one copy for all).
  EXPECT_TRUE(has(h.head("HEAD", "/v/7.ts", page_origin), "access-control-allow-origin: *"));
  EXPECT_TRUE(has(h.head("GET", "/v/7.ts"), "access-control-allow-origin: *"));
}

TEST(Cors, ControlAnswersCarryNoCorsHeaders) {
  cors_harness h;
  auto head = h.head("GET", "/info");
  EXPECT_TRUE(head.starts_with("http/1.1 200")) << head;
  EXPECT_EQ(head.find("access-control"), std::string::npos) << head;
}

TEST(Cors, APreflightOfAViewerPathIsAnsweredWithoutRunningTheHandler) {
  cors_harness h;
  auto head = h.head("OPTIONS", "/v/7.ts",
                     page_origin +
                         "Access-Control-Request-Method: GET\r\n"
                         "Access-Control-Request-Headers: range\r\n");
  EXPECT_TRUE(head.starts_with("http/1.1 200")) << head;
  EXPECT_TRUE(has(head, "access-control-allow-origin: *")) << head;
  EXPECT_TRUE(has(head, "access-control-allow-methods: get, head, options")) << head;
  EXPECT_TRUE(has(head, "access-control-allow-headers: range, authorization")) << head;
  EXPECT_TRUE(has(head, "access-control-max-age: 600")) << head;
  EXPECT_EQ(h.calls(), 0);
}

TEST(Cors, APreflightOfAControlPathIsRefusedWithoutCorsHeaders) {
  cors_harness h;
  for (std::string path : {"/ctl", "/info"}) {
    auto head = h.head("OPTIONS", path, page_origin + "Access-Control-Request-Method: POST\r\n");
    EXPECT_TRUE(head.starts_with("http/1.1 405")) << head;
    EXPECT_EQ(head.find("access-control"), std::string::npos) << head;
  }
  EXPECT_TRUE(h.head("OPTIONS", "/nothing/here", page_origin).starts_with("http/1.1 404"));
  EXPECT_EQ(h.calls(), 0);
}

TEST(Cors, AControlRouteRefusesRequestsFromPagesOfOtherOrigins) {
  cors_harness h;
  // What browsers send from elsewhere: an Origin of another host or port, "null", or a
  // Sec-Fetch-Site other than same-origin (a form's POST, an <img>'s GET).
  for (std::string headers :
       {page_origin, std::string("Origin: http://127.0.0.1:1\r\n"), std::string("Origin: null\r\n"),
        std::string("Sec-Fetch-Site: cross-site\r\n"), std::string("Sec-Fetch-Site: same-site\r\n"),
        "Sec-Fetch-Site: cross-site\r\nOrigin: http://" + h.host() + "\r\n"}) {
    for (auto [method, path] : {std::pair{"POST", "/ctl"}, {"GET", "/info"}, {"PUT", "/v/7.ts"}}) {
      auto head = h.head(method, path, headers + "Content-Length: 0\r\n");
      EXPECT_TRUE(head.starts_with("http/1.1 403")) << method << " " << path << " " << headers;
      EXPECT_EQ(head.find("access-control"), std::string::npos) << head;
    }
  }
  EXPECT_EQ(h.calls(), 0) << "no refused request reached its handler";
}

TEST(Cors, AControlRouteServesItsOwnOriginAndClientsThatAreNotBrowsers) {
  cors_harness h;
  for (std::string headers :
       {std::string(), "Origin: http://" + h.host() + "\r\n",
        std::string("Sec-Fetch-Site: same-origin\r\nOrigin: http://proxied.example\r\n"),
        std::string("Sec-Fetch-Site: none\r\n")}) {
    auto head = h.head("POST", "/ctl", headers + "Content-Length: 0\r\n");
    EXPECT_TRUE(head.starts_with("http/1.1 200")) << headers << head;
  }
  EXPECT_EQ(h.calls(), 4);
}

TEST(Cors, AListOfOriginsNamesTheAskingOriginAndVariesOnIt) {
  cors_options o;
  o.allowed_origins = {"http://page.example", "https://tv.example"};
  cors_harness h(o);
  auto head = h.head("GET", "/v/7.ts?as=206", page_origin);
  EXPECT_TRUE(has(head, "access-control-allow-origin: http://page.example")) << head;
  EXPECT_TRUE(has(head, "access-control-expose-headers: content-length, content-range")) << head;
  EXPECT_TRUE(has(head, "vary: origin")) << head;
  for (std::string other : {"Origin: http://evil.example\r\n", "Origin: null\r\n", ""}) {
    auto refused = h.head("GET", "/v/7.ts", other);
    EXPECT_TRUE(refused.starts_with("http/1.1 200"))
        << "served; the browser keeps it from the page";
    EXPECT_EQ(refused.find("access-control"), std::string::npos) << other << refused;
    EXPECT_TRUE(has(refused, "vary: origin")) << refused;
  }
  auto pre = h.head("OPTIONS", "/v/7.ts", "Origin: http://evil.example\r\n");
  EXPECT_TRUE(pre.starts_with("http/1.1 403")) << pre;
  EXPECT_EQ(pre.find("access-control"), std::string::npos) << pre;
  pre = h.head("OPTIONS", "/v/7.ts", "Origin: https://tv.example\r\n");
  EXPECT_TRUE(has(pre, "access-control-allow-origin: https://tv.example")) << pre;
  EXPECT_TRUE(has(pre, "vary: origin")) << pre;
}

TEST(Cors, AnEngineAllowsTheNullOriginOfARedirectedRequest) {
  cors_options o;
  o.allowed_origins = {"http://page.example"};
  o.allow_null = true;
  cors_harness h(o);
  EXPECT_TRUE(
      has(h.head("GET", "/v/7.ts", "Origin: null\r\n"), "access-control-allow-origin: null"));
}

TEST(Cors, AnEmptyListAllowsNoOrigin) {
  cors_options o;
  o.allowed_origins = {};
  cors_harness h(o);
  EXPECT_EQ(h.head("GET", "/v/7.ts", page_origin).find("access-control"), std::string::npos);
  EXPECT_TRUE(h.head("OPTIONS", "/v/7.ts", page_origin).starts_with("http/1.1 403"));
}

// The lines belong to one reply: the next reply on the connection (a control route) has none.
TEST(Cors, TheHeadersOfOneReplyDoNotLeakIntoTheNextOnTheConnection) {
  cors_harness h;
  std::string host = "Host: " + h.host() + "\r\n";
  auto raw = test::raw_exchange(h.port(), "GET /v/7.ts HTTP/1.1\r\n" + host + page_origin +
                                              "\r\nGET /info HTTP/1.1\r\n" + host +
                                              "Connection: close\r\n\r\n");
  auto second = raw.find("HTTP/1.1", 10);
  ASSERT_NE(second, std::string::npos) << raw;
  EXPECT_NE(raw.substr(0, second).find("Access-Control-Allow-Origin: *"), std::string::npos);
  EXPECT_EQ(raw.substr(second).find("Access-Control"), std::string::npos) << raw;
}

}  // namespace
}  // namespace vodgrid::net
