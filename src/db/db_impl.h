// Private to db: the template behind in_transaction (db.h includes it; nothing else should).
#pragma once

#include <exception>
#include <type_traits>
#include <utility>

namespace vodgrid::db {

namespace detail {

template <class R>
struct is_result : std::false_type {};
template <class T>
struct is_result<result<T>> : std::true_type {};

// Sleeps before retry number `attempt` (1, 2, ...): a few milliseconds, doubling, with jitter so
// that two writers that collided do not collide again in step.
void backoff(int attempt);

}  // namespace detail

template <class Fn>
auto in_transaction(connection& c, Fn fn, int attempts) -> decltype(fn()) {
  using R = decltype(fn());
  static_assert(detail::is_result<R>::value, "in_transaction: fn must return status or result<T>");
  for (int attempt = 1;; ++attempt) {
    bool retry = attempt < attempts;
    if (status s = c.begin(); !s) {
      if (retry && s.err().code == errc::conflict) {
        detail::backoff(attempt);
        continue;
      }
      return R(s.err());
    }
    R r = [&]() -> R {
      try {
        return fn();
      } catch (...) {
        (void)c.rollback();
        throw;
      }
    }();
    if (!r) {
      (void)c.rollback();
      if (retry && r.err().code == errc::conflict) {
        detail::backoff(attempt);
        continue;
      }
      return r;
    }
    if (status s = c.commit(); !s) {
      (void)c.rollback();
      if (retry && s.err().code == errc::conflict) {
        detail::backoff(attempt);
        continue;
      }
      return R(s.err());
    }
    return r;
  }
}

}  // namespace vodgrid::db
