// Tests of a server on several event loops: a route runs on the home loop unless marked
// loop_affinity::any, which runs on the loop of its connection without waiting for the home loop.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_future.hpp>

#include "net/daemon.h"
#include "net/http.h"
#include "support/support.h"

namespace vodgrid::net {
namespace {

using namespace std::chrono_literals;
using V = http::verb;

// Where each handler ran, seen from the test thread.
struct seen {
  std::atomic<int> home_calls{0};
  std::atomic<int> home_calls_off_home{0};  // a home route's handler not on the home thread
  std::atomic<int> any_calls{0};
  std::atomic<int> any_calls_on_home{0};
  std::thread::id home_thread;
};

asio::awaitable<reply> record(std::shared_ptr<seen> s, bool any) {
  bool on_home = std::this_thread::get_id() == s->home_thread;
  if (any) {
    ++s->any_calls;
    s->any_calls_on_home += on_home ? 1 : 0;
  } else {
    ++s->home_calls;
    s->home_calls_off_home += on_home ? 0 : 1;
  }
  co_return json_reply(boost::json::object{{"home", on_home}});
}

// A server on a home loop and one more, each on its own thread.
class two_loops {
 public:
  two_loops() {
    server_.emplace(home_.get_executor(), "loops");
    auto s = seen_;
    server_->route(V::get, "/home", [s](request_context&) { return record(s, false); });
    server_->route(
        V::get, "/any", [s](request_context&) { return record(s, true); }, 0, audience::control,
        loop_affinity::any);
    auto port = server_->listen("127.0.0.1", 0, {other_.get_executor()});
    if (!port) {
      throw std::runtime_error(port.err().detail);
    }
    port_ = *port;
    home_thread_ = std::thread([this] { home_.run(); });
    seen_->home_thread = home_thread_.get_id();
    other_thread_ = std::thread([this] { other_.run(); });
  }
  ~two_loops() {
    release_home();
    asio::co_spawn(home_, server_->stop(0ms), asio::use_future).wait();
    home_thread_.join();
    guard_.reset();
    other_.stop();
    other_thread_.join();
    server_.reset();
  }
  // Blocks the home loop's thread until release_home (or 10 s).
  void block_home() {
    auto released = released_.get_future().share();
    std::promise<void> blocked;
    auto is_blocked = blocked.get_future();
    asio::post(home_, [released, &blocked] {
      blocked.set_value();
      released.wait_for(10s);
    });
    is_blocked.wait();
  }
  void release_home() {
    if (!released_set_) {
      released_set_ = true;
      released_.set_value();
    }
  }
  uint16_t port() const { return port_; }
  seen& where() { return *seen_; }

 private:
  asio::io_context home_{1};
  asio::io_context other_{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard_ = asio::make_work_guard(other_);
  std::optional<http_server> server_;
  std::shared_ptr<seen> seen_ = std::make_shared<seen>();
  std::promise<void> released_;
  bool released_set_ = false;
  std::thread home_thread_, other_thread_;
  uint16_t port_ = 0;
};

TEST(Loops, AnAnyRouteIsAnsweredOffTheHomeLoopWhileTheHomeLoopIsBlocked) {
  two_loops s;
  s.block_home();
  // The home loop cannot accept nor answer now: only the other loop can, with no hop home.
  for (int i = 0; i < 10; ++i) {
    auto raw = test::raw_exchange(s.port(),
                                  "GET /any HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 3s);
    ASSERT_EQ(test::status_of(raw), 200) << raw;
    EXPECT_NE(raw.find("\"home\":false"), std::string::npos) << raw;
  }
  EXPECT_EQ(s.where().any_calls, 10);
  EXPECT_EQ(s.where().any_calls_on_home, 0);
}

TEST(Loops, AHomeRouteAcceptedByAnotherLoopWaitsForTheHomeLoopAndRunsThere) {
  two_loops s;
  s.block_home();
  auto answer = std::async(std::launch::async, [&] {
    return test::raw_exchange(s.port(),
                              "GET /home HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 8s);
  });
  // Accepted and read by the other loop, but its handler is the home loop's: no answer yet.
  EXPECT_EQ(answer.wait_for(300ms), std::future_status::timeout);
  EXPECT_EQ(s.where().home_calls, 0);
  s.release_home();
  auto raw = answer.get();
  ASSERT_EQ(test::status_of(raw), 200) << raw;
  EXPECT_NE(raw.find("\"home\":true"), std::string::npos) << raw;
  EXPECT_EQ(s.where().home_calls, 1);
  EXPECT_EQ(s.where().home_calls_off_home, 0);
}

TEST(Loops, EveryHomeRouteCallRunsOnTheHomeLoopWhicheverLoopAccepted) {
  two_loops s;
  std::vector<std::future<std::string>> answers;
  for (int i = 0; i < 40; ++i) {
    answers.push_back(std::async(std::launch::async, [&] {
      return test::raw_exchange(s.port(),
                                "GET /home HTTP/1.1\r\nHost: x\r\n\r\nGET /any HTTP/1.1\r\nHost: "
                                "x\r\nConnection: close\r\n\r\n",
                                5s);
    }));
  }
  for (auto& a : answers) {
    auto raw = a.get();
    EXPECT_EQ(test::status_of(raw), 200) << raw;
  }
  EXPECT_EQ(s.where().home_calls, 40);
  EXPECT_EQ(s.where().home_calls_off_home, 0);
  EXPECT_EQ(s.where().any_calls, 40);
}

uint32_t count_or_zero(uint32_t configured) {
  auto n = loop_count(configured);
  return n ? *n : 0;
}

TEST(Loops, VodgridThreadsOverridesTheConfiguredCountAndRefusesNonsense) {
  const char* was = std::getenv("VODGRID_THREADS");
  std::string saved = was ? was : "";
  ::setenv("VODGRID_THREADS", "3", 1);
  EXPECT_EQ(count_or_zero(1), 3u);
  ::setenv("VODGRID_THREADS", "auto", 1);
  EXPECT_EQ(count_or_zero(1), std::max(1u, std::thread::hardware_concurrency()));
  ::setenv("VODGRID_THREADS", "two", 1);
  auto bad = loop_count(1);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.err().detail.find("VODGRID_THREADS"), std::string::npos);
  ::setenv("VODGRID_THREADS", "0", 1);
  EXPECT_FALSE(loop_count(1));
  ::unsetenv("VODGRID_THREADS");
  EXPECT_EQ(count_or_zero(4), 4u);
  EXPECT_EQ(count_or_zero(0), std::max(1u, std::thread::hardware_concurrency()));
  if (was) {
    ::setenv("VODGRID_THREADS", saved.c_str(), 1);
  }
}

}  // namespace
}  // namespace vodgrid::net
