// daemon_base: listen and the two-phase stop.
#include "net/daemon.h"

#include <algorithm>

#include "base/log.h"

namespace vodgrid::net {

daemon_base::daemon_base(asio::io_context& i)
    : io(i), tasks(i.get_executor()), stop_requested(i.get_executor()) {}

daemon_base::~daemon_base() = default;

status daemon_base::listen(const std::string& host, uint16_t p) {
  auto bound = server->listen(host, p);
  if (!bound) {
    return bound.err();
  }
  port = *bound;
  return {};
}

asio::awaitable<size_t> daemon_base::stop(std::chrono::milliseconds drain) {
  auto deadline = std::chrono::steady_clock::now() + drain;
  stopping = true;
  on_stop();
  stop_requested.set();
  if (server) {
    co_await server->stop(drain);
  }
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  size_t abandoned = co_await tasks.close(std::max(left, std::chrono::milliseconds(0)));
  if (abandoned > 0) {
    log::get("net")->info("{}: {} background tasks abandoned at the drain deadline",
                          server ? server->name() : std::string("daemon"), abandoned);
  }
  co_return abandoned;
}

}  // namespace vodgrid::net
