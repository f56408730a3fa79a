// The station's program catalog (kept in `data_dir/programs.json`, written durably): the loader's
// endpoints (a manifest in, its placement out; commit once every copy is in place; delete), the
// content manager's availability changes, the catalog as read by consoles, and which programs are
// ready to play (claim 11). A program the station was never told of is learned from the registry on
// a console's first request (issue 10, "any published program plays at any station"): the registry
// gives its manifest, availability and publish time included; its segments then come through the
// miss path (claim 14).
#include <fmt/format.h>
#include <boost/json/serialize.hpp>

#include "auth/guard.h"
#include "base/fs.h"
#include "director/impl.h"

namespace vodgrid::director {

status director_daemon::impl::load_catalog() {
  auto text = read_file(catalog_path(), 1ull << 30);
  if (!text) {
    return text.err().code == errc::not_found ? status{} : status{text.err()};
  }
  auto o = api::parse_object(*text);
  if (!o) {
    return make_error(errc::io_error,
                      fmt::format("{}: {}", catalog_path().string(), o.err().detail));
  }
  auto* progs = o->if_contains("programs");
  if (!progs || !progs->is_array()) {
    return make_error(errc::io_error, catalog_path().string() + ": no 'programs' array");
  }
  for (auto& p : progs->as_array()) {
    auto m =
        p.is_object()
            ? api::from_json<api::program_manifest>(p.as_object())
            : result<api::program_manifest>(make_error(errc::invalid_argument, "not an object"));
    if (!m) {
      return make_error(errc::io_error,
                        fmt::format("{}: {}", catalog_path().string(), m.err().detail));
    }
    catalog[m->id] = std::move(*m);
  }
  publish_programs();
  return {};
}

// Every change of the catalog is saved, so the ready programs are published with each save that
// succeeds (a change whose save failed is undone, and was never published). Each ready manifest is
// copied, as the save serializes each.
status director_daemon::impl::save_catalog() {
  json::array progs;
  for (auto& [id, m] : catalog) {
    progs.push_back(api::to_json(m));
  }
  auto st = write_file_durably(catalog_path(), json::serialize(json::object{{"programs", progs}}));
  if (st) {
    publish_programs();
  }
  return st;
}

void director_daemon::impl::publish_programs() {
  auto view = std::make_shared<ready_programs>();
  for (auto& [id, m] : catalog) {
    if (auto r = ready_program(id.str())) {
      view->emplace(id.str(), std::make_shared<const api::program_manifest>(**r));
    }
  }
  ready_view.store(std::move(view));
}

asio::awaitable<reply> director_daemon::impl::create_program(request_context& ctx) {
  auto m = api::decode<api::program_manifest>(ctx.req.body());
  if (!m) {
    co_return net::error_reply(m.err());
  }
  auto it = catalog.find(m->id);
  if (it != catalog.end() && it->second.state == state_ready) {
    co_return net::error_reply(
        make_error(errc::conflict, fmt::format("program {} already exists", m->id.str())));
  }
  auto now = steady::now();
  auto up = tables.up_engines(now);
  size_t copies = station->director.copies;
  if (up.size() < std::max<size_t>(copies, 2)) {
    co_return net::error_reply(
        make_error(errc::unavailable, fmt::format("{} engines up; a program needs at least {}",
                                                  up.size(), std::max<size_t>(copies, 2))));
  }
  api::placement pl;
  for (size_t i = 0; i < m->segments.size(); ++i) {
    std::vector<api::engine_ref> targets;
    for (engine_slot e : tables.spread({m->id, m->segments[i].index}, i, up, copies, now)) {
      targets.push_back({tables.engine(e).name, tables.engine(e).url});
    }
    pl.targets.push_back(std::move(targets));
  }
  m->state = std::string(state_loading);
  std::optional<api::program_manifest> before;
  if (it != catalog.end()) {
    before = it->second;
  }
  catalog[m->id] = *m;
  if (auto st = save_catalog(); !st) {
    if (before) {
      catalog[m->id] = std::move(*before);  // what the disk still holds
    } else {
      catalog.erase(m->id);
    }
    co_return net::error_reply(st.err());
  }
  logger->info("director {}: loading program {} ({} segments, {:.1f} s)", station->name.str(),
               m->id.str(), m->segments.size(), m->duration());
  co_return net::json_reply(api::to_json(pl), http::status::created);
}

std::string director_daemon::impl::missing_copies(const api::program_manifest& m,
                                                  size_t want) const {
  auto now = steady::now();
  for (auto& s : m.segments) {
    segment_key key{m.id, s.index};
    size_t have = tables.up_holders(key, now);
    if (have < want) {
      return fmt::format("segment {} has {} of {} copies", s.index.v, have, want);
    }
  }
  return {};
}

asio::awaitable<reply> director_daemon::impl::commit_program(request_context& ctx) {
  auto id = program_id::parse(ctx.params[0]);
  auto it = id ? catalog.find(*id) : catalog.end();
  if (it == catalog.end()) {
    co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
  }
  if (it->second.state == state_ready) {
    co_return net::json_reply(api::to_json(it->second));
  }
  // Engines report new segments with their next heartbeat, sent at once on a change: wait a little.
  size_t want = station->director.copies;
  std::string missing;
  asio::steady_timer t(io);
  auto deadline = steady::now() + grid.heartbeat_timeout * 4;
  for (;;) {
    it = catalog.find(*id);
    if (it == catalog.end()) {
      co_return net::error_reply(make_error(errc::not_found, "program deleted while committing"));
    }
    missing = missing_copies(it->second, want);
    if (missing.empty() || steady::now() > deadline) {
      break;
    }
    t.expires_after(std::chrono::milliseconds(20));  // a poll, not a bound: the deadline above is
    co_await t.async_wait(use_tuple);
  }
  if (!missing.empty()) {
    co_return net::error_reply(
        make_error(errc::conflict, "not every segment is in place: " + missing));
  }
  it->second.state = std::string(state_ready);
  if (auto st = save_catalog(); !st) {
    it->second.state = std::string(state_loading);
    co_return net::error_reply(st.err());
  }
  if (grid.registry && registered) {
    // The registry learns the new locations before the loader hands the program on for
    // distribution, so that the first seeking station finds its source.
    co_await report_to_registry();
  }
  logger->info("director {}: program {} ready", station->name.str(), id->str());
  it = catalog.find(*id);  // the report awaited: the program may have been deleted meanwhile
  if (it == catalog.end()) {
    co_return net::error_reply(make_error(errc::not_found, "program deleted while committing"));
  }
  co_return net::json_reply(api::to_json(it->second));
}

asio::awaitable<void> director_daemon::impl::send_delete(std::string url) {
  auto res = co_await client->request(http::verb::delete_, url);
  if (!res || (res->status != 204 && res->status != 404)) {
    logger->warn("director {}: DELETE {} failed: {}", station->name.str(), url,
                 res ? std::to_string(res->status) : res.err().detail);
  }
}

asio::awaitable<reply> director_daemon::impl::delete_program(request_context& ctx) {
  auto id = program_id::parse(ctx.params[0]);
  auto it = id ? catalog.find(*id) : catalog.end();
  if (it == catalog.end()) {
    co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
  }
  auto m = std::move(it->second);
  catalog.erase(it);
  if (auto st = save_catalog(); !st) {
    catalog[m.id] = m;
    co_return net::error_reply(st.err());
  }
  for (auto& s : m.segments) {
    segment_key key{m.id, s.index};
    for (engine_slot h : tables.holders(key)) {
      tasks.spawn(send_delete(
          fmt::format("{}/v1/segments/{}/{}.ts", tables.engine(h).url, m.id.str(), s.index.v)));
    }
  }
  logger->info("director {}: program {} deleted", station->name.str(), m.id.str());
  reply r;
  r.status = http::status::no_content;
  co_return r;
}

// A viewer's token lists only the published programs it is entitled to (docs/protocol.md, "Who may
// read what").
asio::awaitable<reply> director_daemon::impl::list_programs(request_context& ctx) {
  auto who = co_await auth::reader_of(ctx, auth.get());
  json::array a;
  for (auto& [id, m] : catalog) {
    if (!who.may_see(id, m.availability)) {
      continue;
    }
    a.push_back(json::object{{"id", id.str()},
                             {"title", m.title},
                             {"state", m.state},
                             {"availability", m.availability},
                             {"publish_at", m.publish_at},
                             {"segments", m.segments.size()},
                             {"renditions", m.renditions.size()},
                             {"duration", m.duration()}});
  }
  co_return net::json_reply(json::object{{"programs", a}});
}

asio::awaitable<reply> director_daemon::impl::get_program(request_context& ctx) {
  auto id = program_id::parse(ctx.params[0]);
  auto it = id ? catalog.find(*id) : catalog.end();
  if (it == catalog.end() && id && grid.registry) {
    // A console about to play it (it checks every segment against this): learned as for playing.
    if (auto learned = co_await learn_program(*id); !learned) {
      co_return unavailable_reply(learned.err());
    }
    it = catalog.find(*id);
  }
  // A viewer's token: only a published program it is entitled to (another is as unknown).
  auto who = co_await auth::reader_of(ctx, auth.get());
  if (it == catalog.end() || !who.may_see(it->first, it->second.availability)) {
    co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
  }
  co_return net::json_reply(api::to_json(it->second));
}

namespace {

// Why consoles may not play a program that is loaded (claim 11): the viewer's 404 reason.
std::string unavailable_reason(const api::program_manifest& m) {
  if (m.availability == api::availability_withdrawn) {
    return fmt::format("program {} has been withdrawn", m.id.str());
  }
  if (!m.publish_at.empty()) {
    return fmt::format("program {} is not published yet: it publishes at {}", m.id.str(),
                       m.publish_at);
  }
  return fmt::format("program {} is not published", m.id.str());
}
}  // namespace

// POST /v1/programs/{id}/availability (content manager → director): publish or withdraw.
asio::awaitable<reply> director_daemon::impl::set_availability(request_context& ctx) {
  auto c = api::decode<api::availability_change>(ctx.req.body());
  if (!c) {
    co_return net::error_reply(c.err());
  }
  auto id = program_id::parse(ctx.params[0]);
  auto it = id ? catalog.find(*id) : catalog.end();
  if (it == catalog.end()) {
    co_return net::error_reply(make_error(errc::not_found, "no such program: " + ctx.params[0]));
  }
  // Its renditions follow it (flow 9) in the same save: a console that reads the multivariant
  // playlist of a program just published finds every rendition it names published too, not only
  // once the content manager's push of each rendition arrives.
  std::vector<api::program_manifest*> changed;
  auto follows = [&](api::program_manifest& m) {
    if (m.availability != c->availability || m.publish_at != c->publish_at) {
      changed.push_back(&m);
    }
  };
  follows(it->second);
  for (auto& r : it->second.renditions) {
    if (auto rid = api::rendition_id(it->second.id, r.name)) {
      if (auto ri = catalog.find(*rid); ri != catalog.end()) {
        follows(ri->second);
      }
    }
  }
  if (!changed.empty()) {
    std::vector<api::program_manifest> before;
    for (auto* m : changed) {
      before.push_back(*m);
      m->availability = c->availability;
      m->publish_at = c->publish_at;
    }
    if (auto st = save_catalog(); !st) {
      for (size_t i = 0; i < changed.size(); ++i) {
        *changed[i] = std::move(before[i]);
      }
      co_return net::error_reply(st.err());
    }
    for (auto* m : changed) {
      logger->info("director {}: program {} {}", station->name.str(), m->id.str(), m->availability);
    }
  }
  co_return net::json_reply(api::to_json(it->second));
}

result<const api::program_manifest*> director_daemon::impl::ready_program(
    const std::string& raw) const {
  auto id = program_id::parse(raw);
  auto it = id ? catalog.find(*id) : catalog.end();
  if (it == catalog.end()) {
    return make_error(errc::not_found, "no such program: " + raw);
  }
  if (it->second.state != state_ready) {
    return make_error(errc::not_found,
                      fmt::format("program {} is not ready ({})", raw, it->second.state));
  }
  // A rendition follows its program (flow 9): published, withdrawn or waiting with it, whatever
  // this station was told of the rendition itself (a change reaches each separately), and the
  // viewer is told of the program. A program this station does not know leaves the rendition to
  // its own availability (the content manager sets both the same).
  const api::program_manifest* decides = &it->second;
  if (auto parent = api::parent_of(*id)) {
    if (auto p = catalog.find(*parent); p != catalog.end()) {
      decides = &p->second;
    }
  }
  if (decides->availability != api::availability_published) {
    return make_error(errc::not_found, unavailable_reason(*decides));
  }
  return &it->second;
}

namespace {
// How long the registry's "no such program" is believed: consoles asking for a program that does
// not exist do not each cost a lookup. Not a setting: it bounds no peer, and a program created
// meanwhile is found at most this late.
constexpr auto unknown_ttl = std::chrono::seconds(2);
}  // namespace

asio::awaitable<result<const api::program_manifest*>> director_daemon::impl::find_program(
    std::string raw) {
  auto id = program_id::parse(raw);
  if (id && !catalog.contains(*id) && grid.registry) {
    if (auto learned = co_await learn_program(*id); !learned) {
      co_return learned.err();
    }
  }
  co_return ready_program(raw);
}

// One lookup per program at a time: consoles asking together wait for it and share its outcome.
asio::awaitable<status> director_daemon::impl::learn_program(program_id id) {
  auto now = steady::now();
  if (auto u = unknown_until.find(id); u != unknown_until.end()) {
    if (u->second > now) {
      co_return make_error(
          errc::not_found,
          fmt::format("no such program: {} (the registry knows no such program)", id.str()));
    }
    unknown_until.erase(u);
  }
  std::shared_ptr<pending_lookup> p;
  if (auto it = lookups.find(id); it != lookups.end()) {
    p = it->second;
  } else {
    p = std::make_shared<pending_lookup>(io);
    lookups[id] = p;
    // The lookup is a task of its own, so that stop waits for it whoever asked.
    if (!tasks.spawn(look_up_program(id, p))) {
      lookups.erase(id);
      co_return make_error(errc::unavailable, "the director is stopping");
    }
  }
  if (!p->finished) {
    co_await p->done.async_wait(use_tuple);
  }
  co_return p->outcome;
}

asio::awaitable<void> director_daemon::impl::look_up_program(program_id id,
                                                             std::shared_ptr<pending_lookup> p) {
  auto now = steady::now();
  auto res = co_await registry->get(*client, fmt::format("/v1/programs/{}", id.str()));
  if (!res) {
    p->outcome = make_error(errc::unavailable,
                            fmt::format("cannot learn program {}: the registry did not answer: {}",
                                        id.str(), res.err().detail));
  } else if (res->status == 404) {
    if (unknown_until.size() > 10'000) {
      std::erase_if(unknown_until, [now](const auto& kv) { return kv.second <= now; });
    }
    unknown_until[id] = steady::now() + unknown_ttl;
    p->outcome = make_error(
        errc::not_found,
        fmt::format("no such program: {} (the registry knows no such program)", id.str()));
  } else if (res->status != 200) {
    p->outcome = make_error(errc::unavailable,
                            fmt::format("cannot learn program {}: the registry answered {}: {}",
                                        id.str(), res->status, res->body.substr(0, 200)));
  } else if (auto m = api::decode<api::program_manifest>(res->body); !m || m->id != id) {
    p->outcome =
        make_error(errc::unavailable,
                   fmt::format("cannot learn program {}: the registry's manifest is bad: {}",
                               id.str(), m ? "another program" : m.err().detail));
  } else if (!catalog.contains(id)) {  // (a distribution may have brought it meanwhile)
    m->state = std::string(state_ready);
    catalog[id] = std::move(*m);
    if (auto st = save_catalog(); !st) {
      catalog.erase(id);
      p->outcome = st.err();
    } else {
      programs_learned->inc();
      logger->info("director {}: program {} learned from the registry ({}, {} segments)",
                   station->name.str(), id.str(), catalog[id].availability,
                   catalog[id].segments.size());
    }
  }
  p->finished = true;
  p->done.cancel();
  lookups.erase(id);
}

}  // namespace vodgrid::director
