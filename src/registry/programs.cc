// Programs: their distribution parameters put by the content manager or an operator, availability,
// and the notifications that tell each target station what it must hold (retried while it is away).
#include <fmt/format.h>
#include <boost/json/serialize.hpp>

#include <algorithm>

#include "auth/guard.h"
#include "registry/impl.h"

namespace vodgrid::registry {

namespace {
// Telling a station to hold a program is retried, the wait doubling from the first to the last.
constexpr auto notify_first_wait = std::chrono::milliseconds(200);
constexpr auto notify_max_wait = std::chrono::seconds(5);
}  // namespace

std::vector<std::string> registry_daemon::impl::targets_of(const api::distribution& d) const {
  if (!d.targets.empty()) {
    return d.targets;
  }
  std::vector<std::string> all;
  for (auto& s : grid.stations) {
    if (!s.home) {
      all.push_back(s.name.str());
    }
  }
  return all;
}

// Tells a target station what it must hold, until it answers 2xx. Retries go on, the wait
// doubling up to notify_max_wait, as long as the registry runs and neither the station registered
// again nor the program was put again since (each starts notifications of its own). While the
// station is down (silent), nothing is sent: it is told once it reports again.
asio::awaitable<void> registry_daemon::impl::notify(std::string director_url, std::string station,
                                                    api::distribution d) {
  std::string program = d.manifest.id.str();
  std::string body = json::serialize(api::to_json(d));
  std::string url = fmt::format("{}/v1/programs/{}/distribute", director_url, program);
  uint64_t registration = registrations[station];
  uint64_t distribution = distributions[program];
  auto current = [&] {
    return !stopping && registrations[station] == registration &&
           distributions[program] == distribution;
  };
  std::chrono::milliseconds wait = notify_first_wait;
  bool told = false;
  for (int failures = 0; current();) {
    if (is_up(station)) {
      auto r = co_await client->send_json(http::verb::post, url, body);
      if (r && r->status < 300) {
        told = true;
        logger->info("registry: station {} told to hold program {}", station, program);
        break;
      }
      // The first failure and then every tenth: a station down for long must not flood the log.
      if (failures++ % 10 == 0) {
        logger->warn("registry: telling station {} about {} failed ({}); retrying", station,
                     program, r ? std::to_string(r->status) : r.err().detail);
      }
    }
    co_await stop_requested.wait_for(wait);
    wait = std::min<std::chrono::milliseconds>(wait * 2, notify_max_wait);
  }
  if (!told) {
    logger->info("registry: station {} not told about {} by this notification ({})", station,
                 program,
                 stopping ? "the registry stops; it is told when it registers again"
                          : "superseded by a newer registration or distribution");
  }
}

asio::awaitable<result<json::array>> registry_daemon::impl::store_and_notify(api::distribution d) {
  d.manifest.state.clear();
  program_record rec{d.manifest.id, json::serialize(api::to_json(d.manifest)), d.targets,
                     d.prefetch};
  auto segments = static_cast<uint32_t>(d.manifest.segments.size());
  auto st = co_await on_db([&]() -> status {
    auto put = db->put_program(rec);
    if (put) {
      segment_counts[rec.id] = segments;
    }
    return put;
  });
  if (!st) {
    co_return st.err();
  }
  // The program as now stored is the one to tell: notifications of an earlier put end.
  ++distributions[d.manifest.id.str()];
  auto recs = co_await on_db([&] { return db->stations(); });
  json::array told;
  for (auto& t : targets_of(d)) {
    std::string url;
    if (recs) {
      for (auto& s : *recs) {
        url = s.name.str() == t ? s.director_url : url;
      }
    }
    if (url.empty()) {
      continue;  // told when it registers
    }
    told.push_back(json::value(t));
    tasks.spawn(notify(url, t, d));
  }
  logger->info("registry: program {} ({} segments, {} renditions) to be distributed",
               d.manifest.id.str(), d.manifest.segments.size(), d.manifest.renditions.size());
  co_return told;
}

// A program of several renditions is distributed as its renditions (flow 9): each must be stored
// already (the content manager puts them first); each whose targets or prefetch differ from the
// program's is distributed again with the program's.
asio::awaitable<result<std::vector<api::distribution>>>
registry_daemon::impl::renditions_to_distribute(const api::distribution& d) {
  std::vector<api::distribution> out;
  for (auto& r : d.manifest.renditions) {
    auto id = api::rendition_id(d.manifest.id, r.name);  // valid: the decoder checked
    auto p = co_await stored_program(id->str());
    if (!p) {
      co_return make_error(p.err().code == errc::not_found ? errc::conflict : p.err().code,
                           fmt::format("rendition {} of program {} is not registered: put it first",
                                       id->str(), d.manifest.id.str()));
    }
    if (p->targets == d.targets && p->prefetch == d.prefetch) {
      continue;
    }
    auto m = api::decode<api::program_manifest>(p->manifest_json);
    if (!m) {
      co_return m.err();
    }
    out.push_back({std::move(*m), d.targets, d.prefetch});
  }
  co_return out;
}

asio::awaitable<reply> registry_daemon::impl::put_program(request_context& ctx) {
  auto d = api::decode<api::distribution>(ctx.req.body());
  if (!d) {
    co_return net::error_reply(d.err());
  }
  if (d->manifest.id.str() != ctx.params[0]) {
    co_return net::error_reply(
        make_error(errc::invalid_argument, "the program in the body is not the one in the path"));
  }
  for (auto& t : d->targets) {
    auto* s = grid.find_station(t);
    if (!s) {
      co_return net::error_reply(make_error(errc::not_found, "no station " + t + " in the grid"));
    }
  }
  auto renditions = co_await renditions_to_distribute(*d);
  if (!renditions) {
    co_return net::error_reply(renditions.err());
  }
  for (auto& r : *renditions) {
    if (auto told = co_await store_and_notify(std::move(r)); !told) {
      co_return net::error_reply(told.err());
    }
  }
  auto told = co_await store_and_notify(*d);
  if (!told) {
    co_return net::error_reply(told.err());
  }
  co_return net::json_reply(json::object{{"program", d->manifest.id.str()}, {"targets", *told}});
}

// A viewer's token lists only the published programs it is entitled to, without their targets
// (docs/protocol.md, "Who may read what").
asio::awaitable<reply> registry_daemon::impl::list_programs(request_context& ctx) {
  auto who = co_await auth::reader_of(ctx, auth.get());
  auto progs = co_await on_db([&] { return db->programs(); });
  if (!progs) {
    co_return net::error_reply(progs.err());
  }
  json::array a;
  for (auto& p : *progs) {
    auto m = api::decode<api::program_manifest>(p.manifest_json);
    if (!m || !who.may_see(p.id, m->availability)) {
      continue;
    }
    json::array targets;
    for (auto& t : p.targets) {
      targets.push_back(json::value(t));
    }
    json::object o{{"id", p.id.str()},
                   {"title", m->title},
                   {"availability", m->availability},
                   {"publish_at", m->publish_at},
                   {"segments", m->segments.size()},
                   {"renditions", m->renditions.size()},
                   {"duration", m->duration()}};
    if (who.sees_all()) {
      o["targets"] = std::move(targets);
    }
    a.push_back(std::move(o));
  }
  co_return net::json_reply(json::object{{"programs", a}});
}

// The program named `id` as the database holds it; not_found when there is none.
asio::awaitable<result<program_record>> registry_daemon::impl::stored_program(
    const std::string& id) {
  auto parsed = program_id::parse(id);
  if (!parsed) {
    co_return make_error(errc::not_found, "no such program: " + id);
  }
  auto p = co_await on_db([&] { return db->program(*parsed); });
  if (!p) {
    co_return p.err();
  }
  if (!*p) {
    co_return make_error(errc::not_found, "no such program: " + id);
  }
  co_return std::move(**p);
}

// A viewer's token: the manifest of a published program it is entitled to (404 for another, as
// for one that does not exist), without where it is held.
asio::awaitable<reply> registry_daemon::impl::get_program(request_context& ctx) {
  auto who = co_await auth::reader_of(ctx, auth.get());
  auto p = co_await stored_program(ctx.params[0]);
  if (!p) {
    co_return net::error_reply(p.err());
  }
  auto m = api::parse_object(p->manifest_json);
  if (!m) {
    co_return net::error_reply(m.err());
  }
  if (!who.sees_all()) {
    auto* a = m->if_contains("availability");
    if (!a || !a->is_string() || !who.may_see(p->id, a->as_string())) {
      co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
    }
    co_return net::json_reply(*m);
  }
  auto counts = co_await on_db([&] { return db->counts(p->id); });
  json::object held;
  if (counts) {
    for (auto& [station, n] : *counts) {
      held[station] = n;
    }
  }
  (*m)["held"] = held;
  co_return net::json_reply(*m);
}

// POST /v1/programs/{id}/availability (content manager → registry): the stored manifest follows, so
// that a station told about the program later (at its registration, say) learns it as it is now.
// The content manager tells the directors itself.
asio::awaitable<reply> registry_daemon::impl::set_availability(request_context& ctx) {
  auto c = api::decode<api::availability_change>(ctx.req.body());
  if (!c) {
    co_return net::error_reply(c.err());
  }
  auto p = co_await stored_program(ctx.params[0]);
  if (!p) {
    co_return net::error_reply(p.err());
  }
  auto m = api::decode<api::program_manifest>(p->manifest_json);
  if (!m) {
    co_return net::error_reply(m.err());
  }
  m->availability = c->availability;
  m->publish_at = c->publish_at;
  auto rec = *p;
  rec.manifest_json = json::serialize(api::to_json(*m));
  auto st = co_await on_db([&] { return db->put_program(rec); });
  if (!st) {
    co_return net::error_reply(st.err());
  }
  logger->info("registry: program {} {}", p->id.str(), m->availability);
  co_return net::json_reply(api::to_json(*c));
}

}  // namespace vodgrid::registry
