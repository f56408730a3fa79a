// Waiting for a socket's next bytes without a system call, as nginx does (its `ready` flag): after
// a read drained the socket (EAGAIN, or fewer bytes than asked), the next read is skipped and
// queued on Asio's epoll reactor without the speculative read that would only return EAGAIN, and
// without the epoll_ctl that `async_wait` makes.
#pragma once

#include "net/http.h"

namespace vodgrid::net {

// Tells the socket's reactor that its last read drained it (EAGAIN, or a TCP read given fewer
// bytes than it asked for: the receive queue was empty once they were taken), so that
// the next `async_read_some` on it waits for the next edge-triggered readiness instead of reading
// first: Boost 1.81's epoll_reactor reads speculatively before queueing a read (one `recvfrom`
// that returns EAGAIN), and `async_wait(wait_read)` re-arms the descriptor with an `epoll_ctl`
// every time. The reactor's own flag (`try_speculative_`, set again by every readiness event it
// sees) is cleared; the descriptor stays registered for input, edge-triggered, as Asio keeps
// every socket, so bytes that arrive after the EAGAIN always produce an event that reads them.
//
// Call it on the thread running the socket's io_context, right after the synchronous read that
// drained it and before anything else runs on that io_context (no co_await between): the server's
// loops are each run by one thread, so no readiness event can be taken between the two. A read
// event already taken before the EAGAIN only costs one more read. Does nothing to a closed socket.
void read_drained(tcp::socket& sock);

// False while nothing can have arrived since read_drained: the reactor has seen no readiness
// event of the socket since (it may have one not yet handled: then the read waited for completes
// at once). A read that is then skipped costs nothing; nginx skips it the same way (`ready`).
bool read_ready(tcp::socket& sock);

}  // namespace vodgrid::net
