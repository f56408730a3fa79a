// async_event: a flag and the timers of its waiters.
#include "net/async_event.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace vodgrid::net {

namespace asio = boost::asio;

void async_event::set() {
  set_ = true;
  for (auto* t : waiters_) {
    t->cancel();
  }
}

asio::awaitable<bool> async_event::wait_for(std::chrono::steady_clock::duration within) {
  if (set_) {
    co_return true;
  }
  asio::steady_timer t(ex_, within);
  auto self = waiters_.insert(waiters_.end(), &t);
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  waiters_.erase(self);
  co_return set_;
}

asio::awaitable<void> async_event::wait() {
  bool set = false;
  while (!set) {
    set = co_await wait_for(std::chrono::hours(24));
  }
}

}  // namespace vodgrid::net
