// run_on: runs a blocking function (a database call, a download, packaging) on a thread pool and
// resumes the calling coroutine on its own executor with the result, so the io thread never blocks.
// The one "run off the io thread" helper of every daemon.
#pragma once

#include <exception>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "base/result.h"

namespace vodgrid::net {

// Runs `f()` on the executor `pool` and resumes on the caller's executor with its result. An
// exception from `f` never leaves the coroutine on the pool: it becomes
// `make_error(code, prefix + what())` (so `f` returns a `result<T>` or `status`); `prefix` is a
// string literal. `f` is moved into the coroutine frame: a lambda capturing the caller's locals by
// reference is safe, the caller awaiting.
template <class Executor, class F>
requires boost::asio::execution::executor<Executor> boost::asio::awaitable<std::invoke_result_t<F>>
run_on(Executor pool, F f, errc code = errc::internal, const char* prefix = "") {
  using R = std::invoke_result_t<F>;
  auto home = co_await boost::asio::this_coro::executor;
  co_await boost::asio::post(boost::asio::bind_executor(pool, boost::asio::use_awaitable));
  std::optional<R> r;
  try {
    r.emplace(f());
  } catch (const std::exception& e) {
    r.emplace(make_error(code, prefix + std::string(e.what())));
  }
  co_await boost::asio::post(boost::asio::bind_executor(home, boost::asio::use_awaitable));
  co_return std::move(*r);
}

// The same on a thread pool, which must outlive the call.
template <class F>
boost::asio::awaitable<std::invoke_result_t<F>> run_on(boost::asio::thread_pool& pool, F f,
                                                       errc code = errc::internal,
                                                       const char* prefix = "") {
  return run_on(pool.get_executor(), std::move(f), code, prefix);
}

}  // namespace vodgrid::net
