// An immutable value published by one thread and read by any (issue 16, docs/architecture.md
// "Every core"): std::atomic<std::shared_ptr> for the owner, plus a per-thread copy for the hot
// path, so that a reader touches no shared cache line for writing unless something new was stored.
#pragma once

#include <atomic>
#include <cassert>
#include <cstdint>
#include <memory>
#include <vector>

namespace vodgrid {

namespace detail {
uint64_t next_snapshot_id();
// This thread's cache of snapshots: direct-mapped by snapshot id.
struct snapshot_slot {
  uint64_t id = 0;  // 0: empty
  uint64_t version = 0;
  std::shared_ptr<const void> value;
};
// Enough for the few snapshots a daemon reads per request (a director's three); ids are
// consecutive, so these rarely collide. Not for thousands of snapshots read at random: they would
// evict one another on every read (station_tables' 16384 shards are plain atomics for that).
constexpr size_t snapshot_slots = 1024;
snapshot_slot& snapshot_slot_of(uint64_t id);
// The snapshot_pins alive on this thread: at most one (see snapshot_pin).
inline thread_local int live_pins = 0;
}  // namespace detail

// What a thread's reads through snapshot::read keep alive: a value evicted from the thread's cache
// while a pin lives is released when the pin ends, not before. A pointer read() returns on a cache
// hit is owned by the thread's cache, not by the pin, so the rule is:
// - one pin per thread at a time (no nested pin: a read under it would move the value out of the
//   cache into the inner pin, which frees it when it ends);
// - a pin and the pointers read through it never cross a co_await (another request on this thread
//   may pin and evict meanwhile) nor go to another thread;
// - hence a pin lives on the stack of a plain function, not of a coroutine.
// The first is asserted (Debug and ASan builds); the others are on the caller. Code that needs a
// value beyond that takes an owning copy with snapshot::load().
class snapshot_pin {
 public:
  snapshot_pin() {
    assert(detail::live_pins == 0 && "a snapshot_pin is alive on this thread already");
    ++detail::live_pins;
  }
  ~snapshot_pin() { --detail::live_pins; }
  snapshot_pin(const snapshot_pin&) = delete;
  snapshot_pin& operator=(const snapshot_pin&) = delete;
  // Takes `v` (left empty), or leaves it as it was if that throws.
  void keep(std::shared_ptr<const void>& v) {
    assert(owner_ == &detail::live_pins && "a snapshot_pin used on another thread");
    if (v) {
      kept_.push_back(std::move(v));
    }
  }

 private:
  std::vector<std::shared_ptr<const void>> kept_;
  const int* owner_ = &detail::live_pins;  // the thread's, for the assertion in keep()
};

// Why not a plain std::atomic<std::shared_ptr> load per read: in libstdc++ 12 that load takes a
// spin lock in the atomic's word and increments the value's reference count, four atomic
// read-modify-writes on two cache lines that every loop shares; with a redirect loading five of
// them, measurable at two loops (docs/performance.md). read() instead loads only the version (a
// line written only by store()) and, when this thread already holds that version, returns it.
template <class T>
class snapshot {
 public:
  snapshot() = default;
  explicit snapshot(std::shared_ptr<const T> v) : value_(std::move(v)) {}
  snapshot(const snapshot&) = delete;
  snapshot& operator=(const snapshot&) = delete;

  // Publishes `v`: readers see it from their next read.
  void store(std::shared_ptr<const T> v) {
    value_.store(std::move(v));
    version_.fetch_add(1, std::memory_order_release);
  }
  // An owning copy (the plain atomic load): for a reader that keeps it beyond the current request.
  std::shared_ptr<const T> load() const { return value_.load(); }

  // The value as this thread last saw it, if nothing was stored since; else the current value,
  // then cached. Valid while `pin` lives, within snapshot_pin's rules (a later read of another
  // snapshot may evict it from the cache; the pin keeps it). Null when null was stored.
  const T* read(snapshot_pin& pin) const {
    uint64_t v = version_.load(std::memory_order_acquire);
    auto& slot = detail::snapshot_slot_of(id_);
    if (slot.id != id_ || slot.version != v) {
      // The version is read before the value: the value cached is at least as new as `v`'s.
      // Empty first: should keep() throw (bad_alloc), the slot must not match with its value gone.
      slot.id = 0;
      pin.keep(slot.value);
      slot.value = value_.load();
      slot.id = id_;
      slot.version = v;
    }
    return static_cast<const T*>(slot.value.get());
  }

 private:
  const uint64_t id_ = detail::next_snapshot_id();
  // Each on a line of its own: every read() reads version_, and libstdc++ 12's
  // atomic<shared_ptr>::load (a miss) does a read-modify-write on value_'s line (its spin lock).
  alignas(64) std::atomic<uint64_t> version_{0};
  alignas(64) std::atomic<std::shared_ptr<const T>> value_;
};

}  // namespace vodgrid
