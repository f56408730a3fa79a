// The per-thread cache behind snapshot::read: see snapshot.h.
#include "base/snapshot.h"

#include <array>

namespace vodgrid::detail {

uint64_t next_snapshot_id() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

snapshot_slot& snapshot_slot_of(uint64_t id) {
  // Ids are never reused, so a slot of a snapshot destroyed since is merely a miss; what it holds
  // is released when overwritten or when the thread ends.
  thread_local std::array<snapshot_slot, snapshot_slots> slots;
  return slots[id % snapshot_slots];
}

}  // namespace vodgrid::detail
