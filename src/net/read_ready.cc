// read_drained: reaches into Boost.Asio's epoll reactor, written by hand because Asio has no
// public way to say "this socket is drained" (see read_ready.h for what it saves).
#include "net/read_ready.h"

#include <boost/asio/detail/epoll_reactor.hpp>
#include <boost/version.hpp>

// The reactor's members named below, and its start_op skipping the speculative read and the
// epoll_ctl of a read when try_speculative_ is false, are Boost 1.81's
// (asio/detail/impl/epoll_reactor.ipp): check them again before allowing another version.
static_assert(BOOST_VERSION == 108100,
              "read_drained is written against Boost 1.81's epoll_reactor");
#if !defined(BOOST_ASIO_HAS_EPOLL) || defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT)
#error "read_drained needs Asio's epoll reactor"
#endif

namespace vodgrid::net {

namespace {

using descriptor_state = asio::detail::epoll_reactor::descriptor_state;
using reactor_mutex = asio::detail::conditionally_enabled_mutex;

// Private members named through an explicit instantiation, where access is not checked
// ([temp.spec.general]/6): the only way to them without editing Boost's headers.
template <typename Tag, typename Tag::type Member>
struct member_of {
  friend typename Tag::type member_pointer(Tag) { return Member; }
};
struct try_speculative_tag {
  using type = bool (descriptor_state::*)[asio::detail::epoll_reactor::max_ops];
  friend type member_pointer(try_speculative_tag);
};
struct mutex_tag {
  using type = reactor_mutex descriptor_state::*;
  friend type member_pointer(mutex_tag);
};
template struct member_of<try_speculative_tag, &descriptor_state::try_speculative_>;
template struct member_of<mutex_tag, &descriptor_state::mutex_>;

// The socket's implementation (protected in basic_socket; named through a derived class).
struct socket_access : tcp::socket {
  static auto& impl(tcp::socket& s) { return (s.*(&socket_access::impl_)).get_implementation(); }
};

}  // namespace

void read_drained(tcp::socket& sock) {
  descriptor_state* d = socket_access::impl(sock).reactor_data_;
  if (d == nullptr) {
    return;
  }
  reactor_mutex::scoped_lock lock(d->*member_pointer(mutex_tag{}));
  (d->*member_pointer(try_speculative_tag{}))[asio::detail::epoll_reactor::read_op] = false;
}

bool read_ready(tcp::socket& sock) {
  descriptor_state* d = socket_access::impl(sock).reactor_data_;
  if (d == nullptr) {
    return true;  // closed: the read says so
  }
  reactor_mutex::scoped_lock lock(d->*member_pointer(mutex_tag{}));
  return (d->*member_pointer(try_speculative_tag{}))[asio::detail::epoll_reactor::read_op];
}

}  // namespace vodgrid::net
