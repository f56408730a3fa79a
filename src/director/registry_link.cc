// The link to the registry: registration, the periodic report of load, location changes and copy
// samples (acknowledged a prefix at a time), and the one reconciliation after a start. While the
// registry is down the station serves on and keeps its changes.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <boost/json/serialize.hpp>

#include "base/time.h"
#include "director/impl.h"

namespace vodgrid::director {

asio::awaitable<bool> director_daemon::impl::report_to_registry() {
  auto g = co_await report_mu.lock();
  co_return co_await send_report();
}

asio::awaitable<bool> director_daemon::impl::send_report() {
  auto now = steady::now();
  api::station_report r;
  double streams = 0, capacity = 0;
  for (engine_slot i : tables.up_engines(now)) {
    auto& e = tables.engine(i);
    streams += e.load.active_streams;
    capacity += e.load.max_streams;
    r.sending_bits_per_second += e.load.bytes_per_second * 8;
  }
  r.engines_up = static_cast<uint32_t>(tables.up_engines(now).size());
  r.load = capacity > 0 ? streams / capacity : 1;
  for (auto& c : tables.drain_changes()) {
    unreported.push_back(c);
  }
  r.changes = unreported;
  r.copies = copy_samples;
  // Rising across restarts: the wall clock in microseconds, or one more than the last.
  auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(wall_clock::now().time_since_epoch())
          .count();
  report_seq = std::max(report_seq + 1, static_cast<uint64_t>(std::max<int64_t>(us, 0)));
  r.seq = report_seq;
  // Repeated on another registry daemon if this one is lost mid-report: a report states what is
  // held (not what changed), so receiving it twice changes nothing, and its seq keeps the stalled
  // daemon from committing it late over a newer one.
  auto path = fmt::format("/v1/stations/{}/report", station->name.str());
  auto res = co_await registry->send_json(*client, http::verb::post, path,
                                          json::serialize(api::to_json(r)));
  if (res && res->status == 200) {
    // Stale: this very report was applied already (a repeat after a lost answer), or one numbered
    // above it was: then this director's clock went back across a restart, and the report is sent
    // again above the registry's last, once (the next one goes above it anyway).
    auto o = api::parse_object(res->body);
    auto* stale = o ? o->if_contains("seq") : nullptr;
    boost::system::error_code ec;
    uint64_t last = stale && o->if_contains("stale") ? stale->to_number<uint64_t>(ec) : 0;
    if (!ec && last > r.seq) {
      logger->warn(
          "director {}: the registry has applied report {}, above this one ({}); "
          "numbering above it",
          station->name.str(), last, r.seq);
      report_seq = last + 1;
      r.seq = report_seq;
      res = co_await registry->send_json(*client, http::verb::post, path,
                                         json::serialize(api::to_json(r)));
    }
  }
  if (res && res->status == 200) {
    // Only what was sent is acknowledged; changes drained meanwhile stay for the next report.
    unreported.erase(unreported.begin(),
                     unreported.begin() + static_cast<std::ptrdiff_t>(r.changes.size()));
    copy_samples.erase(copy_samples.begin(),
                       copy_samples.begin() + static_cast<std::ptrdiff_t>(r.copies.size()));
    co_return true;
  }
  if (res && res->status == 409) {
    registered = false;  // the registry does not know us (it restarted): register again
  }
  if (res && res->status == 400) {
    // Refused as a whole and it would be refused again (a program the registry holds shorter than
    // we do, say): drop it rather than let it hold back every later report.
    logger->error("director {}: the registry refused a report of {} changes: {}",
                  station->name.str(), r.changes.size(), res->body);
    unreported.erase(unreported.begin(),
                     unreported.begin() + static_cast<std::ptrdiff_t>(r.changes.size()));
    copy_samples.erase(copy_samples.begin(),
                       copy_samples.begin() + static_cast<std::ptrdiff_t>(r.copies.size()));
  }
  co_return false;
}

// After a start, what the registry holds for this station may be stale: copies lost while the
// director was down were never reported. For each program whose count at the registry differs
// from what the engines hold, every segment's station-level state is reported again.
asio::awaitable<void> director_daemon::impl::reconcile_with_registry() {
  auto res =
      co_await registry->get(*client, fmt::format("/v1/stations/{}/held", station->name.str()));
  if (!res || res->status != 200) {
    co_return;  // tried again after the next report
  }
  auto o = api::parse_object(res->body);
  auto* programs = o ? o->if_contains("programs") : nullptr;
  if (!programs || !programs->is_object()) {
    co_return;
  }
  size_t programs_fixed = 0;
  for (auto& [id, m] : catalog) {
    uint64_t ours = 0;
    for (auto& s : m.segments) {
      ours += tables.holders({id, s.index}).empty() ? 0 : 1;
    }
    uint64_t theirs = 0;
    if (auto* v = programs->as_object().if_contains(id.str()); v && v->is_number()) {
      theirs = v->to_number<uint64_t>();
    }
    if (ours == theirs) {
      continue;
    }
    ++programs_fixed;
    for (auto& s : m.segments) {
      segment_key key{id, s.index};
      unreported.push_back({key, !tables.holders(key).empty()});
    }
  }
  reconciled = true;
  if (programs_fixed > 0) {
    logger->info(
        "director {}: the registry's view of {} programs here was stale; reporting them "
        "again",
        station->name.str(), programs_fixed);
  }
}

// Registers the station, then reports load and location changes every few hundred milliseconds.
// While the registry is down the station goes on serving what it holds; changes wait and are
// reported when it comes back.
asio::awaitable<void> director_daemon::impl::registry_loop() {
  bool was_ok = false;  // the registry may start after us: only a lost registry is worth a warning
  bool ever_ok = false;
  bool warned_never = false;
  while (true) {  // not `while (!co_await ...)`: GCC 12 miscompiles it
    bool ok = true;
    if (!registered) {
      api::station_registration reg{station->name, station->director.listen.url(),
                                    station->home, station->x_km,
                                    station->y_km, station->uplink_bits_per_second};
      auto res = co_await registry->send_json(*client, http::verb::put,
                                              fmt::format("/v1/stations/{}", station->name.str()),
                                              json::serialize(api::to_json(reg)));
      registered = res && res->status == 200;
      ok = registered;
    }
    if (registered) {
      ok = co_await report_to_registry();
    }
    if (ok && !reconciled && steady::now() - started > grid.heartbeat_timeout * 2) {
      // By now every engine that is up has sent its whole inventory.
      co_await reconcile_with_registry();
    }
    if (ok != was_ok && (ok || ever_ok)) {
      if (ok) {
        ever_ok = true;
        logger->info("director {}: registry {} reached", station->name.str(), registry->current());
      } else {
        logger->warn("director {}: registry unreachable at {}; serving on, changes kept",
                     station->name.str(), fmt::join(registry->urls(), ", "));
      }
    }
    if (!ever_ok && !warned_never && steady::now() - started > std::chrono::seconds(10)) {
      // A registry that starts after us is normal; one never heard of is a config to look at.
      warned_never = true;
      logger->warn(
          "director {}: no registry answers at {} after 10 s; serving what this station "
          "holds, changes kept",
          station->name.str(), fmt::join(registry->urls(), ", "));
    }
    was_ok = ok;
    // Not a setting: a few hundred ms keeps the registry's view of our load and copies fresh for
    // its choice of sources, well within its station_silence; a lost registry is asked half as
    // often.
    if (co_await stop_requested.wait_for(std::chrono::milliseconds(ok ? 250 : 500))) {
      break;
    }
  }
}

}  // namespace vodgrid::director
