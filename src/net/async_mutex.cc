// async_mutex over an Asio channel of capacity one.
#include "net/async_mutex.h"

#include <boost/asio/use_awaitable.hpp>

namespace vodgrid::net {

boost::asio::awaitable<async_mutex::guard> async_mutex::lock() {
  // Waits while the channel is full; a cancelled wait (the executor going away) throws, so a
  // guard is only ever returned holding the mutex.
  co_await ch_.async_send(boost::system::error_code{}, boost::asio::use_awaitable);
  co_return guard(this);
}

bool async_mutex::try_lock() {
  return ch_.try_send(boost::system::error_code{});
}

void async_mutex::unlock() {
  // Taking the owner's message moves the first waiting sender's message in and completes it.
  ch_.try_receive([](boost::system::error_code) {});
}

}  // namespace vodgrid::net
