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

// The error kinds every module shares; each maps onto an HTTP status at the edge (net/json.h).
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
