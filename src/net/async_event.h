// A one-shot event for coroutines of one executor: once set, every waiter resumes and later waits
// return at once. A daemon's "stop requested" is one: loops sleep on it rather than on a timer that
// stop must find and cancel.
// Threading: one executor.
#pragma once

#include <chrono>
#include <list>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

namespace vodgrid::net {

class async_event {
 public:
  explicit async_event(boost::asio::any_io_executor ex) : ex_(ex) {}
  async_event(const async_event&) = delete;
  async_event& operator=(const async_event&) = delete;

  // Sets the event and resumes every waiter.
  void set();
  bool is_set() const { return set_; }

  // Completes when the event is set or `within` has passed; returns whether it is set. Each waiter
  // has its own timer (waits of different lengths), which set() cancels.
  boost::asio::awaitable<bool> wait_for(std::chrono::steady_clock::duration within);
  boost::asio::awaitable<void> wait();

 private:
  boost::asio::any_io_executor ex_;
  bool set_ = false;
  std::list<boost::asio::steady_timer*> waiters_;
};

}  // namespace vodgrid::net
