// Room under the engine's disk budget (docs/hot-segments.md): how far the store is over it, the
// least recently used segments offered to the director, and the removal of those it allows. Run
// before a copy or a PUT needs room, and after every heartbeat so that most of it happens in the
// quiet. The decisions themselves (bytes_over_budget, eviction_offer) are pure, in decisions.h.
#include <boost/json/serialize.hpp>

#include <algorithm>

#include "engine/decisions.h"
#include "engine/impl.h"

namespace vodgrid::engine {

uint64_t bytes_over_budget(const disk_space& space, uint64_t want, uint64_t max_disk_bytes) {
  uint64_t over = 0;
  if (max_disk_bytes > 0 && space.used_bytes + want > max_disk_bytes) {
    over = space.used_bytes + want - max_disk_bytes;
  }
  uint64_t reserve = space.total_bytes / 50;  // keep 2% of the filesystems free
  if (space.free_bytes < want + reserve) {
    over = std::max(over, want + reserve - space.free_bytes);
  }
  return over;
}

std::vector<segment_key> eviction_offer(std::vector<eviction_candidate> held, uint64_t over) {
  std::sort(held.begin(), held.end(), [](auto& a, auto& b) { return a.last_used < b.last_used; });
  std::vector<segment_key> offer;
  uint64_t offered_bytes = 0;
  for (auto& c : held) {
    if (offered_bytes >= over * 2 + (16u << 20)) {
      break;  // offer twice what is needed: the director may keep some
    }
    if (!c.streaming) {
      offer.push_back(c.key);
      offered_bytes += c.size;
    }
  }
  return offer;
}

// Makes room for `bytes` more under the engine's disk budget (or in a nearly full filesystem) by
// evicting the least recently used segments the director allows: never one being streamed or
// arriving, never the last copy in the grid (the director checks its station and the registry).
// errc::no_space when not enough can go.
asio::awaitable<status> engine_daemon::impl::make_room(uint64_t bytes) {
  uint64_t over = bytes_over(bytes);
  if (over == 0) {
    co_return status{};
  }
  if (evicting) {
    co_return make_error(errc::no_space, "the engine is evicting to make room; try again");
  }
  evicting = true;
  auto allowed = co_await evictions_allowed(over);
  bool any_allowed = !allowed.empty();
  co_await evict(std::move(allowed), over);
  evicting = false;
  if (any_allowed) {
    // The director counted every allowed copy gone; the next heartbeat tells it which are not.
    need_full = true;
  }
  over = bytes_over(bytes);
  if (over > 0) {
    co_return make_error(errc::no_space,
                         fmt::format("engine {} has no room for {} more bytes: {} bytes over its "
                                     "budget and nothing more may be evicted",
                                     self->name.str(), bytes, over));
  }
  co_return status{};
}

// How far the store would be over its budget with `bytes` more and the copies in progress.
uint64_t engine_daemon::impl::bytes_over(uint64_t bytes) const {
  uint64_t want = bytes;
  for (auto& [key, f] : fills) {
    if (!store->find(key)) {
      want += f->size;  // room for copies in progress, until the store counts them
    }
  }
  auto t = store::totals(store->stats());  // a statvfs per directory
  return bytes_over_budget({t.used_bytes, t.free_bytes, t.total_bytes}, want, self->max_disk_bytes);
}

// Offers the director the segments that could go to free `over` bytes; the ones it allows.
asio::awaitable<std::vector<segment_key>> engine_daemon::impl::evictions_allowed(uint64_t over) {
  auto held = usage->candidates(store->list());
  api::eviction_request offer{over, eviction_offer(std::move(held), over)};
  auto res = co_await client->send_json(
      http::verb::post,
      fmt::format("{}/v1/engines/{}/evictions", station->director.listen.url(), self->name.str()),
      json::serialize(api::to_json(offer)));
  std::vector<segment_key> allowed;
  if (res && res->status == 200) {
    if (auto a = api::decode<api::eviction_request>(res->body)) {
      allowed = std::move(a->segments);
    }
  } else {
    logger->warn("{}: the director did not answer an eviction request: {}", self->name.str(),
                 res ? res->body : res.err().detail);
  }
  co_return allowed;
}

// Removes allowed segments until `over` bytes are freed.
asio::awaitable<void> engine_daemon::impl::evict(std::vector<segment_key> allowed, uint64_t over) {
  uint64_t freed = 0;
  for (auto& key : allowed) {
    if (freed >= over) {
      break;
    }
    auto info = store->find(key);
    // Streams hold the file open: an unlinked file still serves them, but the rule is to leave a
    // segment being streamed alone, and the director does not know every stream.
    if (!info || usage->streaming(key)) {
      continue;
    }
    if (auto st = co_await store->remove(key); st) {
      freed += info->size;
      usage->forget(key);
      evictions->inc();
      logger->info("{}: evicted {} ({} bytes)", self->name.str(), key.str(), info->size);
    }
  }
}

}  // namespace vodgrid::engine
