// An async mutex for coroutines of one executor: a coroutine that must not interleave with another
// across its co_awaits (the director's report to the registry) holds it through them.
// Asio has no coroutine mutex; a channel of capacity one is one: lock() sends into it (waiting
// while it is full, in FIFO order), unlock() takes the message out (letting the next sender in).
// Using Asio's channel rather than hand-written queueing keeps the waiting, ordering and
// cancellation Asio's own. Threading: one executor; not for threads.
#pragma once

#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/channel.hpp>

namespace vodgrid::net {

class async_mutex {
 public:
  // Unlocks when destroyed (or by unlock()).
  class guard {
   public:
    guard() = default;
    explicit guard(async_mutex* m) : m_(m) {}
    guard(guard&& o) noexcept : m_(std::exchange(o.m_, nullptr)) {}
    guard& operator=(guard&& o) noexcept {
      if (this != &o) {
        unlock();
        m_ = std::exchange(o.m_, nullptr);
      }
      return *this;
    }
    ~guard() { unlock(); }
    void unlock() {
      if (m_) {
        std::exchange(m_, nullptr)->unlock();
      }
    }
    bool owns() const { return m_ != nullptr; }

   private:
    async_mutex* m_ = nullptr;
  };

  explicit async_mutex(boost::asio::any_io_executor ex) : ch_(ex, 1) {}

  // Completes once the mutex is ours; waiters get it in the order they asked.
  boost::asio::awaitable<guard> lock();
  bool try_lock();
  void unlock();
  bool locked() const { return ch_.ready(); }  // the channel holds the owner's message

 private:
  boost::asio::experimental::channel<void(boost::system::error_code)> ch_;
};

}  // namespace vodgrid::net
