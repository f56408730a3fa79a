// A connection on a thread of its own, for daemons that run on one io_context: `co_await
// w.run(f)` runs f(connection&) on the database thread and resumes on the caller's executor, so a
// slow statement never stalls the event loop and the connection is used by one thread at a time.
#pragma once

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

#include "db/db.h"

namespace vodgrid::db {

class worker {
 public:
  explicit worker(std::unique_ptr<connection> c) : conn_(std::move(c)) {}
  ~worker() { pool_.join(); }
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  connection& conn() { return *conn_; }

  // f: connection& -> status or result<T>. An exception thrown by f (a malformed row) comes back
  // as errc::io_error, never on the database thread's stack.
  template <class F>
  boost::asio::awaitable<std::invoke_result_t<F, connection&>> run(F f) {
    namespace asio = boost::asio;
    using R = std::invoke_result_t<F, connection&>;
    auto home = co_await asio::this_coro::executor;
    co_await asio::post(asio::bind_executor(pool_.get_executor(), asio::use_awaitable));
    std::optional<R> r;
    try {
      r.emplace(f(*conn_));
    } catch (const std::exception& e) {
      r.emplace(make_error(errc::io_error, std::string("database: ") + e.what()));
    }
    co_await asio::post(asio::bind_executor(home, asio::use_awaitable));
    co_return std::move(*r);
  }

 private:
  std::unique_ptr<connection> conn_;
  boost::asio::thread_pool pool_{1};
};

}  // namespace vodgrid::db
