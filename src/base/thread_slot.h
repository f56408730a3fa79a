// A small number per thread, for per-thread shards of counters and caches that every event loop
// writes (issue 16): a loop writing only its own shard shares no cache line with the others.
#pragma once

#include <cstddef>

namespace vodgrid {

// This thread's number: the one set_thread_slot gave it (the net server numbers its event loops
// 0, 1, ...), else one taken from a counter at the thread's first call. Threads may share a
// number (a shard must stay thread-safe); the loops of one server do not.
size_t thread_slot();
void set_thread_slot(size_t slot);

}  // namespace vodgrid
