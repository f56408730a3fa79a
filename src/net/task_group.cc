// task_group: a count of tasks and one timer that close() waits on until the count reaches zero.
#include "net/task_group.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>

#include "base/log.h"

namespace vodgrid::net {

namespace asio = boost::asio;

task_group::task_group(asio::any_io_executor ex) : ex_(ex), state_(std::make_shared<state>(ex)) {}

bool task_group::spawn(asio::awaitable<void> task) {
  if (state_->closed) {
    return false;
  }
  ++state_->running;
  asio::co_spawn(ex_, std::move(task), [s = state_](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log::get("net")->error("a background task threw: {}", ex.what());
      } catch (...) {
        log::get("net")->error("a background task threw");
      }
    }
    if (--s->running == 0 && s->closed) {
      s->wake.cancel();
    }
  });
  return true;
}

asio::awaitable<size_t> task_group::close(std::chrono::milliseconds within) {
  auto s = state_;
  s->closed = true;
  if (s->running > 0) {
    s->wake.expires_after(within);
    co_await s->wake.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  co_return s->running;
}

}  // namespace vodgrid::net
