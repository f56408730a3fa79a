// Publishing (claim 11): one timer per inactive program that publishes it at its time, and the
// pushes of each publish or withdrawal to the registry and every director, round after round until
// each has acknowledged (or, not being a station of the program, answered that it does not know
// it). Which stations to tell and how often are pure decisions, change_for and push_retry_delay.
#include <algorithm>

#include "content/impl.h"

namespace vodgrid::content {

pending_change change_for(const program_entry& p, const grid_config& grid) {
  pending_change c;
  c.change.availability = p.state == program_state::published   ? api::availability_published
                          : p.state == program_state::withdrawn ? api::availability_withdrawn
                                                                : api::availability_inactive;
  c.change.publish_at = format_rfc3339(p.publish_at);
  for (auto& s : grid.stations) {
    c.stations.insert(s.name.str());
    // No targets: every station (api::distribution); without a registry, the home alone.
    bool target = grid.registry &&
                  (p.targets.empty() ||
                   std::find(p.targets.begin(), p.targets.end(), s.name.str()) != p.targets.end());
    if (s.home || target) {
      c.holders.insert(s.name.str());
    }
  }
  c.registry = grid.registry.has_value();
  return c;
}

std::chrono::milliseconds push_retry_delay(int max_attempts) {
  return std::chrono::milliseconds(std::min(5000, 100 << std::min(max_attempts, 6)));
}

void content_manager::impl::schedule_publish(const program_id& id, wall_clock::time_point at) {
  if (!leads()) {
    return;  // the lease holder arms it (arm_schedule) within a third of the lease
  }
  auto t = std::make_unique<asio::system_timer>(io, at);
  schedule[id] = std::move(t);
  tasks.spawn(publish_at_time(id));
}

asio::awaitable<void> content_manager::impl::publish_at_time(program_id id) {
  auto it = schedule.find(id);
  if (it == schedule.end()) {
    co_return;
  }
  auto* timer = it->second.get();
  auto [ec] = co_await timer->async_wait(use_tuple);
  if (ec || stopping) {
    co_return;
  }
  if (auto cur = schedule.find(id); cur == schedule.end() || cur->second.get() != timer) {
    co_return;  // rescheduled or cancelled meanwhile
  }
  schedule.erase(id);
  if (!leads()) {
    co_return;  // the lease lapsed meanwhile: its new holder publishes
  }
  // Only a program still waiting for its time: one withdrawn meanwhile (through another content
  // manager, which cannot cancel this timer) stays withdrawn.
  auto now = wall_clock::now();
  auto st = co_await on_db([&] {
    return cat->change_state(id, program_state::published, now, "at its publish time",
                             program_state::inactive);
  });
  if (!st) {
    logger->warn("program {}: not published at its time: {}", id.str(), st.err().detail);
    co_return;
  }
  auto p = co_await on_db([&] { return cat->get(id); });
  if (p && *p) {
    publishes->inc();
    logger->info("program {}: published", id.str());
    announce(**p);
  }
}

void content_manager::impl::announce(const program_entry& p) {
  pending[p.id] = change_for(p, grid);
  // Its renditions follow it (flow 9): the directors and the registry hear the same change for
  // each, so that a station that knows a rendition but not yet the program is right as well.
  for (auto& r : p.renditions) {
    if (auto id = api::rendition_id(p.id, r.name)) {
      pending[*id] = pending[p.id];
    }
  }
  if (!pushing) {
    pushing = true;
    if (!tasks.spawn(push_loop())) {
      pushing = false;  // stopping: nothing more is pushed
    }
  } else {
    push_wake.cancel();
  }
}

// One attempt to tell the registry and every director still missing a program's change; what
// fails stays pending for the next round. Returns the stations still to tell.
asio::awaitable<std::set<std::string>> content_manager::impl::push_round(program_id id) {
  if (pending.find(id) == pending.end()) {
    co_return std::set<std::string>{};
  }
  co_await refresh_change(id);
  auto found = pending.find(id);
  if (found == pending.end()) {
    co_return std::set<std::string>{};
  }
  auto c = found->second;  // changes may arrive while this round awaits
  std::string body = json::serialize(api::to_json(c.change));
  if (c.registry) {
    auto r = co_await registry->send_json(
        *client, http::verb::post, fmt::format("/v1/programs/{}/availability", id.str()), body);
    if (r && (r->status == 200 || r->status == 404)) {
      c.registry = false;
    }
  }
  for (auto it = c.stations.begin(); it != c.stations.end();) {
    auto* s = grid.find_station(*it);
    auto r = co_await client->send_json(
        http::verb::post,
        fmt::format("{}/v1/programs/{}/availability", s->director.listen.url(), id.str()), body);
    // A station that holds it, or will once the registry's distribution reaches it, is told
    // until it answers; any other one only if it happens to know the program.
    bool expected = c.holders.contains(*it);
    if (r && r->status == 200) {
      it = c.stations.erase(it);
    } else if (r && r->status == 404 && (!expected || c.attempts >= 600)) {
      // Not a station of this program: it learns the change from the registry's copy if the
      // program is distributed there later.
      it = c.stations.erase(it);
    } else {
      ++it;
    }
  }
  ++c.attempts;
  // Changed in the catalog meanwhile (by another content manager too): the stations just told
  // the old state are told the new one in the next round.
  co_await refresh_change(id);
  auto cur = pending.find(id);
  if (cur != pending.end() && cur->second.change.availability == c.change.availability &&
      cur->second.change.publish_at == c.change.publish_at) {
    if (c.stations.empty() && !c.registry) {
      pending.erase(cur);
    } else {
      cur->second = c;
    }
  }
  co_return c.stations;
}

asio::awaitable<void> content_manager::impl::refresh_change(program_id id) {
  auto program = api::parent_of(id).value_or(id);  // a rendition follows its program
  auto p = co_await on_db([&] { return cat->find(program); });
  if (!p || !*p) {
    co_return;  // unreadable now: pushed as it was; gone: nothing newer to say
  }
  auto fresh = change_for(**p, grid);
  auto cur = pending.find(id);
  if (cur != pending.end() && (cur->second.change.availability != fresh.change.availability ||
                               cur->second.change.publish_at != fresh.change.publish_at)) {
    logger->info("program {}: now {} in the catalog; pushing that instead", id.str(),
                 fresh.change.availability);
    cur->second = std::move(fresh);
  }
}

asio::awaitable<void> content_manager::impl::push_loop() {
  while (!pending.empty() && !stopping) {
    std::vector<program_id> ids;
    int max_attempts = 0;
    for (auto& [id, c] : pending) {
      ids.push_back(id);
    }
    for (auto& id : ids) {
      co_await push_round(id);
      if (auto it = pending.find(id); it != pending.end()) {
        max_attempts = std::max(max_attempts, it->second.attempts);
      }
    }
    if (pending.empty() || stopping) {
      break;
    }
    // Someone is still missing it: try again, less often the longer it takes.
    push_wake.expires_after(push_retry_delay(max_attempts));
    co_await push_wake.async_wait(use_tuple);
  }
  pushing = false;
}

}  // namespace vodgrid::content
