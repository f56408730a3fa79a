// Tests of a server on several event loops: a route runs on the home loop unless marked
// loop_affinity::any, which runs on the loop of its connection without waiting for the home loop.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>

#include <fmt/format.h>

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

// A foreign protocol's handler (a director's RTSP): answers with the loop it runs on, then ends.
asio::awaitable<void> answer_foreign(foreign_connection& c, http_server* server) {
  std::string answer = fmt::format("RTSP/1.0 200 OK\r\nX-Home: {}\r\n\r\n", server->on_home_loop());
  co_await c.stream.write(asio::buffer(answer));
}

// Blocks a loop's thread until released (or 10 s).
class blocker {
 public:
  void block(asio::io_context& io) {
    auto released = released_.get_future().share();
    std::promise<void> blocked;
    auto is_blocked = blocked.get_future();
    asio::post(io, [released, &blocked] {
      blocked.set_value();
      released.wait_for(10s);
    });
    is_blocked.wait();
  }
  void release() {
    if (!set_) {
      set_ = true;
      released_.set_value();
    }
  }

 private:
  std::promise<void> released_;
  bool set_ = false;
};

// A server on a home loop and one more, each on its own thread; with `foreign`, RTSP/1.0
// connections go to answer_foreign.
class two_loops {
 public:
  explicit two_loops(bool foreign = false) {
    server_.emplace(home_.get_executor(), "loops");
    auto s = seen_;
    server_->route(V::get, "/home", [s](request_context&) { return record(s, false); });
    server_->route(
        V::get, "/any", [s](request_context&) { return record(s, true); }, 0, audience::control,
        loop_affinity::any);
    if (foreign) {
      server_->set_foreign_protocol(
          "RTSP/1.0", [srv = &*server_](foreign_connection& c) { return answer_foreign(c, srv); });
    }
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
    release_other();
    if (!stopped_.valid()) {
      stop();
    }
    stopped_.wait();
    home_thread_.join();
    guard_.reset();
    other_.stop();
    other_thread_.join();
    server_.reset();
  }
  // Blocks the home loop's thread until release_home (or 10 s).
  void block_home() { home_block_.block(home_); }
  void release_home() { home_block_.release(); }
  // The same for the other loop.
  void block_other() { other_block_.block(other_); }
  void release_other() { other_block_.release(); }
  // Starts the server's stop on the home loop; the destructor waits for it.
  void stop() { stopped_ = asio::co_spawn(home_, server_->stop(0ms), asio::use_future); }
  std::future_status wait_stopped(std::chrono::milliseconds d) { return stopped_.wait_for(d); }
  uint16_t port() const { return port_; }
  seen& where() { return *seen_; }
  http_server& server() { return *server_; }

 private:
  asio::io_context home_{1};
  asio::io_context other_{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard_ = asio::make_work_guard(other_);
  std::optional<http_server> server_;
  std::shared_ptr<seen> seen_ = std::make_shared<seen>();
  blocker home_block_, other_block_;
  std::future<void> stopped_;
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

TEST(Loops, ConnectionsAcceptedTogetherAreSpreadOverTheLoops) {
  two_loops s;
  // The home loop cannot accept now: the other loop accepts all twenty, and used to serve them
  // all (it takes every connection pending when it wakes); each now goes to the loop with fewer.
  s.block_home();
  asio::io_context io;
  std::vector<asio::ip::tcp::socket> conns;
  for (int i = 0; i < 20; ++i) {
    conns.emplace_back(io);
    conns.back().connect({asio::ip::make_address("127.0.0.1"), s.port()});
  }
  ASSERT_TRUE(test::eventually([&] { return s.server().connections() == 20; }, 3s));
  s.release_home();
  int on_home = 0;
  for (auto& c : conns) {
    asio::write(c, asio::buffer(std::string_view("GET /any HTTP/1.1\r\nHost: x\r\n\r\n")));
    std::string raw;
    asio::read_until(c, asio::dynamic_buffer(raw), "}");
    ASSERT_EQ(test::status_of(raw), 200) << raw;
    on_home += raw.find("\"home\":true") != std::string::npos ? 1 : 0;
  }
  EXPECT_GE(on_home, 8);
  EXPECT_LE(on_home, 12);
  EXPECT_EQ(s.where().any_calls, 20);
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

TEST(Loops, AConnectionMovedToTheHomeLoopStaysCountedOnItsWay) {
  two_loops s(true);
  s.block_home();
  // The home loop cannot accept now: the other loop takes the connection, sees RTSP and moves it
  // to the home loop, whose handler runs once the home loop is released.
  auto answer = std::async(std::launch::async, [&] {
    return test::raw_exchange(s.port(), "OPTIONS rtsp://x/ RTSP/1.0\r\nCSeq: 1\r\n\r\n", 8s);
  });
  ASSERT_TRUE(test::eventually([&] { return s.server().connections() == 1; }, 3s));
  // Moved (or about to be) while the home loop is blocked: never uncounted on its way, or a stop
  // could end while it waits to run on the home loop of a server already destroyed.
  bool dropped = false;
  for (auto until = std::chrono::steady_clock::now() + 300ms;
       std::chrono::steady_clock::now() < until;) {
    dropped = dropped || s.server().connections() != 1;
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_FALSE(dropped);
  s.release_home();
  auto raw = answer.get();
  EXPECT_NE(raw.find("RTSP/1.0 200 OK"), std::string::npos) << raw;
  EXPECT_NE(raw.find("X-Home: true"), std::string::npos) << raw;
  EXPECT_TRUE(test::eventually([&] { return s.server().connections() == 0; }, 3s));
}

// The inode of the socket listening on 127.0.0.1:port, from /proc/net/tcp; 0 if none.
uint64_t listening_inode(uint16_t port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // the heading
  auto local = fmt::format("0100007F:{:04X}", port);
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string slot, loc, rem, st, queues, timer, retr, uid, timeout;
    uint64_t inode = 0;
    f >> slot >> loc >> rem >> st >> queues >> timer >> retr >> uid >> timeout >> inode;
    if (loc == local && st == "0A") {
      return inode;
    }
  }
  return 0;
}

std::string link_of(const std::filesystem::path& p) {
  std::error_code ec;
  auto t = std::filesystem::read_symlink(p, ec);
  return ec ? std::string() : t.string();
}

// The descriptors of this process open on socket `inode`.
std::set<int> descriptors_of(uint64_t inode) {
  std::set<int> out;
  auto want = fmt::format("socket:[{}]", inode);
  for (auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    if (link_of(e.path()) == want) {
      out.insert(std::stoi(e.path().filename().string()));
    }
  }
  return out;
}

// The entries of this process's epoll sets watching socket `inode` (/proc/self/fdinfo: "tfd: N
// ... ino:HEX"), as the descriptor number each was added for.
std::vector<int> epoll_entries_of(uint64_t inode) {
  std::vector<int> out;
  for (auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    if (link_of(e.path()) != "anon_inode:[eventpoll]") {
      continue;
    }
    std::ifstream in(std::filesystem::path("/proc/self/fdinfo") / e.path().filename());
    std::string line;
    while (std::getline(in, line)) {
      if (!line.starts_with("tfd:")) {
        continue;
      }
      auto ino = line.find("ino:");
      if (ino != std::string::npos && std::stoull(line.substr(ino + 4), nullptr, 16) == inode) {
        out.push_back(std::stoi(line.substr(4)));
      }
    }
  }
  return out;
}

TEST(Loops, AClosedAcceptorLeavesNoEpollEntryBehindWhileAnotherLoopStillListens) {
  two_loops s;
  uint64_t inode = listening_inode(s.port());
  ASSERT_NE(inode, 0u);
  EXPECT_EQ(descriptors_of(inode).size(), 2u);  // one per loop
  EXPECT_EQ(epoll_entries_of(inode).size(), 2u);
  // The other loop closes its acceptor only once released: the home loop's is closed first.
  s.block_other();
  s.stop();
  ASSERT_TRUE(test::eventually([&] { return descriptors_of(inode).size() == 1; }, 3s));
  // An entry left for the closed descriptor would still report connections to the home loop, for
  // a descriptor it no longer has (or one reused for something else).
  auto open = descriptors_of(inode);
  for (int tfd : epoll_entries_of(inode)) {
    EXPECT_TRUE(open.count(tfd)) << "a stale epoll entry for descriptor " << tfd;
  }
  EXPECT_EQ(epoll_entries_of(inode).size(), 1u);
  EXPECT_EQ(s.wait_stopped(200ms), std::future_status::timeout);  // it waits for the other loop
  s.release_other();
  EXPECT_EQ(s.wait_stopped(3s), std::future_status::ready);
}

// A daemon whose `any` route takes 300 ms on another loop and then reads the daemon's own state.
struct slow_daemon : daemon_base {
  struct watch {
    std::promise<void> entered;
    std::atomic<bool> state_destroyed{false};
    std::atomic<bool> touched_after_destruction{false};
  };
  struct state {  // the derived daemon's state: destroyed before daemon_base's
    std::shared_ptr<watch> w;
    ~state() { w->state_destroyed = true; }
  };
  slow_daemon(asio::io_context& i, std::shared_ptr<watch> w) : daemon_base(i), st{std::move(w)} {}
  state st;

  asio::awaitable<reply> get_slow(request_context&) {
    st.w->entered.set_value();
    std::this_thread::sleep_for(300ms);
    if (st.w->state_destroyed) {
      st.w->touched_after_destruction = true;
    }
    co_return json_reply(boost::json::object{{"ok", true}});
  }
};

TEST(Loops, ADaemonDestroyedWithoutStopEndsItsLoopsBeforeItsStateGoes) {
  const char* was = std::getenv("VODGRID_THREADS");
  std::string saved = was ? was : "";
  ::unsetenv("VODGRID_THREADS");
  asio::io_context home(1);  // never run: the other loop serves
  auto w = std::make_shared<slow_daemon::watch>();
  auto entered = w->entered.get_future();
  auto d = std::make_unique<slow_daemon>(home, w);
  d->server = std::make_unique<http_server>(home.get_executor(), "slow");
  d->route(V::get, "/slow", &slow_daemon::get_slow, 0, audience::control, loop_affinity::any);
  d->threads = 2;
  ASSERT_TRUE(d->listen("127.0.0.1", 0));
  auto port = d->port;
  auto answer = std::async(std::launch::async, [port] {
    return test::raw_exchange(port, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", 5s);
  });
  ASSERT_EQ(entered.wait_for(5s), std::future_status::ready);
  d->end_loops();  // as a daemon's destructor does, without stop(): the handler is running
  d.reset();
  EXPECT_FALSE(w->touched_after_destruction);
  answer.get();
  if (was) {
    ::setenv("VODGRID_THREADS", saved.c_str(), 1);
  }
}

TEST(Loops, AnInvalidVodgridThreadsStopsEveryDaemonWithOneLineAndChangesNothing) {
  test::temp_dir dir;
  auto data = dir.path() / "data";
  auto grid = grid_config::embedded_default(data, 8700);
  auto config = dir.path() / "grid.toml";
  std::ofstream(config) << grid.to_toml();
  std::vector<std::pair<std::string, std::string>> daemons = {
      {"registry", "registry"}, {"auth", "auth"},     {"content", "content"},
      {"director", "home"},     {"engine", "home-1"},
  };
  for (auto& [role, name] : daemons) {
    auto r = test::run({"/usr/bin/env", "VODGRID_THREADS=two", test::vodgrid_binary(), role,
                        "--config", config.string(), "--name", name},
                       20s);
    EXPECT_NE(r.status, 0) << role;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << role << ": " << r.err;
    EXPECT_NE(r.err.find("VODGRID_THREADS must be 1..256 or \"auto\", got \"two\""),
              std::string::npos)
        << role << ": " << r.err;
    EXPECT_FALSE(std::filesystem::exists(data)) << role << " made its data folder";
  }
}

}  // namespace
}  // namespace vodgrid::net
