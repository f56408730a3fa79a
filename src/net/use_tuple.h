// How the project's coroutines await an Asio operation whose failure they handle: the result as a
// tuple, error code first, instead of an exception.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace vodgrid::net {

inline constexpr auto use_tuple = boost::asio::as_tuple(boost::asio::use_awaitable);

}  // namespace vodgrid::net
