// A task group: coroutines spawned through it are counted, and close() waits for them, so nothing a
// daemon starts outlives its stop unnoticed (Seastar's `gate` is the model; it replaces the
// hand-kept `background` counters that stops polled).
// Threading: a group and its tasks belong to one executor (the daemon's io thread).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

namespace vodgrid::net {

class task_group {
 public:
  explicit task_group(boost::asio::any_io_executor ex);
  task_group(const task_group&) = delete;
  task_group& operator=(const task_group&) = delete;

  // Starts `task` on the group's executor, counted until it completes (an exception it throws is
  // logged and ends it). False, and the task is dropped unstarted, once close() has begun.
  bool spawn(boost::asio::awaitable<void> task);

  // Refuses new tasks, then completes when every task has finished or `within` has passed. Returns
  // how many tasks were still running (abandoned: they go on, but nobody waits for them). Woken by
  // the last task's end, not by a polling timer. Called at most once.
  boost::asio::awaitable<size_t> close(std::chrono::milliseconds within);

  size_t running() const { return state_->running; }
  bool closed() const { return state_->closed; }

 private:
  // Shared with the tasks' completion handlers: an abandoned task may end after the group is gone.
  struct state {
    explicit state(boost::asio::any_io_executor ex) : wake(ex) {}
    size_t running = 0;
    bool closed = false;
    boost::asio::steady_timer wake;  // close() waits on it; the last task's end cancels it
  };
  boost::asio::any_io_executor ex_;
  std::shared_ptr<state> state_;
};

}  // namespace vodgrid::net
