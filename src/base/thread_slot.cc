// thread_slot(): see thread_slot.h.
#include "base/thread_slot.h"

#include <atomic>

namespace vodgrid {
namespace {

// Threads not numbered by a server start past the first loops' numbers.
std::atomic<size_t> next_slot{64};
thread_local size_t this_slot = SIZE_MAX;

}  // namespace

size_t thread_slot() {
  if (this_slot == SIZE_MAX) {
    this_slot = next_slot.fetch_add(1, std::memory_order_relaxed);
  }
  return this_slot;
}

void set_thread_slot(size_t slot) {
  this_slot = slot;
}

}  // namespace vodgrid
