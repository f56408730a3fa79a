// Expected failures as values: an error code from the module's errc plus a human-readable detail.
// Written by hand because std::expected is C++23 and Boost.Outcome's error_code-only errors cannot
// carry the detail string that every HTTP reply and CLI message needs.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace vodgrid {

// The error kinds every module shares; each maps onto an HTTP status at the edge (net::status_of).
enum class errc {
  ok = 0,
  invalid_argument,       // malformed input: 400
  not_found,              // 404
  conflict,               // 409: already exists, or state forbids
  unauthorized,           // 401
  forbidden,              // 403
  too_large,              // 413
  range_not_satisfiable,  // 416
  unavailable,            // 503: no holder up, dependency down
  timeout,                // 504 / deadline exceeded
  digest_mismatch,        // bytes do not match their SHA-256: 422
  io_error,               // local disk failure: 500
  no_space,               // disk full: 507
  protocol_error,         // a peer spoke badly: 502
  internal,               // broken invariant: 500
};

std::string_view to_string(errc e);

struct error {
  errc code = errc::internal;
  std::string detail;
};

inline error make_error(errc code, std::string detail) {
  return error{code, std::move(detail)};
}

template <class T>
class [[nodiscard]] result {
 public:
  // An unset result holds an internal error (Asio's futures need a default constructor).
  result() : v_(error{errc::internal, "no result"}) {}
  result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  result(error e) : v_(std::move(e)) {}      // NOLINT
  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }
  T& value() & {
    assert(has_value());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(has_value());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(has_value());
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const error& err() const {
    assert(!has_value());
    return std::get<1>(v_);
  }

 private:
  std::variant<T, error> v_;
};

template <>
class [[nodiscard]] result<void> {
 public:
  result() = default;
  result(error e) : e_(std::move(e)), ok_(false) {}  // NOLINT
  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const error& err() const {
    assert(!ok_);
    return e_;
  }

 private:
  error e_;
  bool ok_ = true;
};

using status = result<void>;

}  // namespace vodgrid

// Error plumbing, as Boost.Outcome's BOOST_OUTCOME_TRY:
//   VODGRID_TRY(auto m, parse(text));  // m is the value, or the function returns the error
//   VODGRID_TRY(check(m));             // a status: returns its error if it failed
// VODGRID_CO_TRY is the same in a coroutine (co_return). The expression is evaluated once; wrap
// it in parentheses if it has a comma outside parentheses (a template argument list).
//
// A declaration rather than a GNU statement expression (`auto m = TRY(parse(text));`): GCC 12 and
// clang 14 accept one even with co_return inside, but the build is ISO C++ (CMAKE_CXX_EXTENSIONS
// OFF), nothing else in the code leans on a GNU extension, and -Wpedantic rejects it.
#define VODGRID_TRY(...) \
  VODGRID_TRY_PICK_(__VA_ARGS__, VODGRID_TRY_VALUE_, VODGRID_TRY_STATUS_, )(return, __VA_ARGS__)
#define VODGRID_CO_TRY(...) \
  VODGRID_TRY_PICK_(__VA_ARGS__, VODGRID_TRY_VALUE_, VODGRID_TRY_STATUS_, )(co_return, __VA_ARGS__)

#define VODGRID_TRY_PICK_(one, two, name, ...) name
#define VODGRID_TRY_CAT2_(a, b) a##b
#define VODGRID_TRY_CAT_(a, b) VODGRID_TRY_CAT2_(a, b)
#define VODGRID_TRY_TMP_ VODGRID_TRY_CAT_(vodgrid_try_, __LINE__)
#define VODGRID_TRY_STATUS_(ret, expr)                     \
  if (auto VODGRID_TRY_TMP_ = (expr); !VODGRID_TRY_TMP_) { \
    ret VODGRID_TRY_TMP_.err();                            \
  }                                                        \
  static_assert(true)
#define VODGRID_TRY_VALUE_(ret, decl, expr) \
  auto VODGRID_TRY_TMP_ = (expr);           \
  if (!VODGRID_TRY_TMP_) {                  \
    ret VODGRID_TRY_TMP_.err();             \
  }                                         \
  decl = std::move(VODGRID_TRY_TMP_).value()
