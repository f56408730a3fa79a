// Tests of net's coroutine primitives: task_group, async_mutex, async_event, run_on and the
// two-phase stop of daemon_base. Each runs an io_context on the test's thread.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "net/async_event.h"
#include "net/async_mutex.h"
#include "net/daemon.h"
#include "net/run_on.h"
#include "net/task_group.h"

namespace vodgrid::net {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

asio::awaitable<void> sleep_then(std::chrono::milliseconds d, int* done) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
  ++*done;
}

// Runs the coroutine `a` on `io` until it completes (other work may be left).
template <class T>
T run(asio::io_context& io, asio::awaitable<T> a) {
  std::optional<T> out;
  asio::co_spawn(io, std::move(a), [&](std::exception_ptr e, T v) {
    if (e) {
      std::rethrow_exception(e);
    }
    out = std::move(v);
  });
  io.restart();  // the io_context stops when it runs out of work, e.g. at the end of a prior run
  while (!out && io.run_one()) {
  }
  EXPECT_TRUE(out.has_value());
  return std::move(out).value_or(T{});
}

TEST(TaskGroup, CloseWaitsForEveryTaskAndReportsNoneAbandoned) {
  asio::io_context io;
  task_group g(io.get_executor());
  int done = 0;
  EXPECT_TRUE(g.spawn(sleep_then(30ms, &done)));
  EXPECT_TRUE(g.spawn(sleep_then(60ms, &done)));
  EXPECT_EQ(g.running(), 2u);
  auto start = steady::now();
  size_t abandoned = run(io, g.close(10s));
  EXPECT_EQ(abandoned, 0u);
  EXPECT_EQ(done, 2);
  // Woken by the last task's end, not at the deadline.
  EXPECT_LT(steady::now() - start, 2s);
}

TEST(TaskGroup, CloseWithNoTasksCompletesAtOnce) {
  asio::io_context io;
  task_group g(io.get_executor());
  auto start = steady::now();
  EXPECT_EQ(run(io, g.close(10s)), 0u);
  EXPECT_LT(steady::now() - start, 1s);
}

TEST(TaskGroup, CloseRefusesNewTasks) {
  asio::io_context io;
  task_group g(io.get_executor());
  int done = 0;
  auto closing = [&]() -> asio::awaitable<size_t> {
    auto n = co_await g.close(1s);
    co_return n;
  };
  run(io, closing());
  EXPECT_TRUE(g.closed());
  EXPECT_FALSE(g.spawn(sleep_then(1ms, &done)));
  io.run();
  EXPECT_EQ(done, 0);
}

TEST(TaskGroup, CloseReportsTasksStillRunningAtTheDeadline) {
  asio::io_context io;
  int done = 0;
  size_t abandoned = 99;
  {
    task_group g(io.get_executor());
    g.spawn(sleep_then(10ms, &done));
    g.spawn(sleep_then(300ms, &done));
    auto start = steady::now();
    asio::co_spawn(io, g.close(50ms), [&](std::exception_ptr, size_t n) {
      abandoned = n;
      EXPECT_LT(steady::now() - start, 250ms);
      EXPECT_EQ(done, 1);
    });
    io.run_for(100ms);
    EXPECT_EQ(abandoned, 1u);
  }
  // The abandoned task ends after its group is gone, harmlessly.
  io.run();
  EXPECT_EQ(done, 2);
}

TEST(TaskGroup, ATaskThatThrowsStillEndsItsCount) {
  asio::io_context io;
  task_group g(io.get_executor());
  auto thrower = []() -> asio::awaitable<void> {
    throw std::runtime_error("boom");
    co_return;
  };
  g.spawn(thrower());
  EXPECT_EQ(run(io, g.close(10s)), 0u);
  EXPECT_EQ(g.running(), 0u);
}

// Each holder of the mutex yields twice while it holds it; with the mutex, no two interleave.
asio::awaitable<void> critical(async_mutex& m, std::vector<std::string>& log, int id) {
  auto g = co_await m.lock();
  log.push_back("in " + std::to_string(id));
  asio::steady_timer t(co_await asio::this_coro::executor, 5ms);
  co_await t.async_wait(asio::use_awaitable);
  co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
  log.push_back("out " + std::to_string(id));
}

TEST(AsyncMutex, HoldersDoNotInterleaveAndComeInOrder) {
  asio::io_context io;
  async_mutex m(io.get_executor());
  std::vector<std::string> log;
  for (int i = 0; i < 3; ++i) {
    asio::co_spawn(io, critical(m, log, i), asio::detached);
  }
  io.run();
  EXPECT_EQ(log, (std::vector<std::string>{"in 0", "out 0", "in 1", "out 1", "in 2", "out 2"}));
  EXPECT_FALSE(m.locked());
}

TEST(AsyncMutex, TryLockFailsWhileHeldAndSucceedsAfterUnlock) {
  asio::io_context io;
  async_mutex m(io.get_executor());
  EXPECT_TRUE(m.try_lock());
  EXPECT_TRUE(m.locked());
  EXPECT_FALSE(m.try_lock());
  m.unlock();
  EXPECT_FALSE(m.locked());
  EXPECT_TRUE(m.try_lock());
}

TEST(AsyncMutex, GuardUnlocksWhenDestroyed) {
  asio::io_context io;
  async_mutex m(io.get_executor());
  auto take = [&]() -> asio::awaitable<bool> {
    { auto g = co_await m.lock(); }
    co_return m.locked();
  };
  EXPECT_FALSE(run(io, take()));
}

TEST(AsyncEvent, SetWakesEveryWaiterBeforeItsTimeout) {
  asio::io_context io;
  async_event ev(io.get_executor());
  int woken = 0;
  auto waiter = [&]() -> asio::awaitable<void> {
    if (co_await ev.wait_for(10s)) {
      ++woken;
    }
  };
  asio::co_spawn(io, waiter(), asio::detached);
  asio::co_spawn(io, waiter(), asio::detached);
  asio::steady_timer t(io, 20ms);
  t.async_wait([&](auto) { ev.set(); });
  auto start = steady::now();
  io.run();
  EXPECT_EQ(woken, 2);
  EXPECT_LT(steady::now() - start, 2s);
  EXPECT_TRUE(ev.is_set());
}

TEST(AsyncEvent, WaitForTimesOutUnsetAndReturnsAtOnceOnceSet) {
  asio::io_context io;
  async_event ev(io.get_executor());
  auto start = steady::now();
  EXPECT_FALSE(run(io, ev.wait_for(20ms)));
  EXPECT_GE(steady::now() - start, 20ms);
  ev.set();
  start = steady::now();
  EXPECT_TRUE(run(io, ev.wait_for(10s)));
  EXPECT_LT(steady::now() - start, 1s);
}

TEST(RunOn, RunsOnThePoolAndResumesOnTheCallersThread) {
  asio::io_context io;
  asio::thread_pool pool(1);
  auto caller = std::this_thread::get_id();
  auto job = [&]() -> asio::awaitable<bool> {
    std::thread::id ran;
    auto f = [&ran]() -> result<int> {
      ran = std::this_thread::get_id();
      return 42;
    };
    auto r = co_await run_on(pool, f);
    co_return r&&* r == 42 && ran != caller&& std::this_thread::get_id() == caller;
  };
  EXPECT_TRUE(run(io, job()));
  pool.join();
}

TEST(RunOn, AnExceptionBecomesTheGivenErrorOnTheCallersThread) {
  asio::io_context io;
  asio::thread_pool pool(1);
  auto caller = std::this_thread::get_id();
  auto job = [&]() -> asio::awaitable<bool> {
    auto f = []() -> status { throw std::runtime_error("bad row"); };
    auto r = co_await run_on(pool.get_executor(), f, errc::io_error, "database: ");
    co_return !r && r.err().code == errc::io_error && r.err().detail == "database: bad row" &&
        std::this_thread::get_id() == caller;
  };
  EXPECT_TRUE(run(io, job()));
  pool.join();
}

struct test_daemon : daemon_base {
  explicit test_daemon(asio::io_context& io) : daemon_base(io) {}
  int stops = 0;
  void on_stop() override { ++stops; }
  asio::awaitable<reply> hello(request_context&) { co_return json_reply("hi"); }
  // Sleeps on stop_requested: returns as soon as stop begins.
  asio::awaitable<void> loop(bool* ended) {
    bool stop = false;
    while (!stop) {
      stop = co_await stop_requested.wait_for(10s);
    }
    *ended = true;
  }
};

TEST(DaemonBase, StopRunsOnStopWakesLoopsAndClosesTheTaskGroup) {
  asio::io_context io;
  test_daemon d(io);
  d.server = std::make_unique<http_server>(io.get_executor(), "test");
  d.route(http::verb::get, "/hello", &test_daemon::hello);
  ASSERT_TRUE(d.listen("127.0.0.1", 0));
  EXPECT_NE(d.port, 0);
  bool ended = false;
  int done = 0;
  d.tasks.spawn(d.loop(&ended));
  d.tasks.spawn(sleep_then(10s, &done));  // outlives the drain: abandoned
  auto start = steady::now();
  size_t abandoned = run(io, d.stop(200ms));
  EXPECT_LT(steady::now() - start, 2s);
  EXPECT_EQ(d.stops, 1);
  EXPECT_TRUE(d.stopping);
  EXPECT_TRUE(ended);
  EXPECT_EQ(abandoned, 1u);
  EXPECT_FALSE(d.tasks.spawn(sleep_then(1ms, &done)));
}

}  // namespace
}  // namespace vodgrid::net
