// The engine's link to its director: the heartbeat loop, each beat (inventory changes or the full
// inventory, load, copies in progress and done), and the store listener that records changes and
// wakes the loop so that the director hears of a new copy at once. After each beat the loop makes
// room under the disk budget (eviction.cc), so that eviction mostly happens in the quiet.
#include <boost/asio/post.hpp>
#include <boost/json/serialize.hpp>

#include "engine/impl.h"

namespace vodgrid::engine {

void engine_daemon::impl::on_store_change(const store::segment_info& s, bool was_added) {
  {
    std::lock_guard lock(changes_mu);
    if (was_added) {
      changes[s.key] = api::segment_ref{s.key, s.size, s.sha256};
    } else {
      changes[s.key] = std::nullopt;
    }
  }
  // Tell the director soon rather than at the next tick: a loader is waiting on it.
  asio::post(io, [this] { heartbeat_timer.cancel(); });
}

asio::awaitable<bool> engine_daemon::impl::beat() {
  api::heartbeat hb;
  hb.engine = self->name;
  hb.url = url();
  hb.epoch = epoch;
  hb.seq = ++seq;
  hb.full = need_full;
  std::map<segment_key, std::optional<api::segment_ref>> changed;
  {
    std::lock_guard lock(changes_mu);
    changed.swap(changes);
  }
  if (hb.full) {
    for (auto& s : store->list()) {
      hb.added.push_back({s.key, s.size, s.sha256});
    }
  } else {
    for (auto& [key, ref] : changed) {
      if (ref) {
        hb.added.push_back(*ref);
      } else {
        hb.removed.push_back(key);
      }
    }
  }
  auto now = steady::now();
  double secs = std::chrono::duration<double>(now - last_beat).count();
  last_beat = now;
  hb.load.consoles = usage->consoles.load();  // before `active`: segment_usage::consoles
  hb.load.active_streams = usage->active;
  double bytes_now = bytes_sent->get();
  hb.load.bytes_per_second =
      secs > 0 ? static_cast<uint64_t>((bytes_now - last_bytes_sent) / secs) : 0;
  last_bytes_sent = bytes_now;
  auto space = store::totals(store->stats());
  hb.load.free_bytes = space.free_bytes;
  hb.load.total_bytes = space.total_bytes;
  hb.load.max_streams = self->max_streams;
  hb.load.max_bytes_per_second = self->max_bytes_per_second;
  hb.load.used_bytes = space.used_bytes;
  hb.load.max_disk_bytes = self->max_disk_bytes;
  for (auto& [key, f] : fills) {
    hb.filling.push_back(key);
  }
  hb.copies.swap(copies_done);

  auto url =
      fmt::format("{}/v1/engines/{}/heartbeat", station->director.listen.url(), self->name.str());
  auto res = co_await client->send_json(http::verb::post, url, json::serialize(api::to_json(hb)));
  bool ok = res && res->status == 200;
  if (ok) {
    auto rep = api::decode<api::heartbeat_reply>(res->body);
    need_full = !rep || rep->resync;
    if (rep && tickets) {
      take_ticket_keys(*rep);
    }
  } else {
    // Whether the director applied it is unknown: the next heartbeat carries everything.
    need_full = true;
    // Copy results are kept for the next one (the list is bounded by the copies ordered).
    copies_done.insert(copies_done.begin(), hb.copies.begin(), hb.copies.end());
  }
  co_return ok;
}

// The station's session-ticket keys, from a reply that came over TLS (the director's URL is https
// when keys are shared) from the director verified against the grid's CA. A reply without keys
// (the director stopped sharing them) leaves none: full handshakes rather than stale keys.
void engine_daemon::impl::take_ticket_keys(const api::heartbeat_reply& rep) {
  std::vector<net::ticket_key> keys;
  for (auto& b : rep.ticket_keys) {
    keys.push_back(*net::ticket_key::from_bytes(b));  // 80 bytes: the decoder checked
  }
  tickets->set(std::move(keys), rep.ticket_key_in_use);
}

asio::awaitable<void> engine_daemon::impl::heartbeat_loop() {
  bool was_ok = true;
  while (!stopping) {
    bool ok = co_await beat();
    if (ok != was_ok) {
      if (ok) {
        logger->info("{}: director {} reached", self->name.str(), station->director.listen.url());
      } else {
        logger->warn("{}: director {} unreachable; retrying", self->name.str(),
                     station->director.listen.url());
      }
      was_ok = ok;
    }
    if (!evicting && !stopping) {
      // Near the budget or a full filesystem: evict in the quiet, not when a copy needs room.
      co_await make_room(0);
    }
    // Stop cancels the timer only if it is being waited on: a stop that came during this beat is
    // seen here.
    if (stopping) {
      break;
    }
    heartbeat_timer.expires_after(grid.heartbeat_interval);
    co_await heartbeat_timer.async_wait(use_tuple);
  }
}

}  // namespace vodgrid::engine
