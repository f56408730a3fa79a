// Programs a station learns on demand (issue 10, "any published program plays at any station"): a
// console asking for a program the director has never been told of makes it ask the registry for
// the program's manifest, availability and publish time included, and keep it in the catalog; its
// segments then come through the miss path (claim 14).
#include <fmt/format.h>
#include <boost/json/serialize.hpp>

#include "base/fs.h"
#include "director/impl.h"

namespace vodgrid::director {

namespace {
// How long the registry's "no such program" is believed: consoles asking for a program that does
// not exist do not each cost a lookup.
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
  if (auto it = lookups.find(id); it != lookups.end()) {
    auto p = it->second;
    if (!p->finished) {
      co_await p->done.async_wait(use_tuple);
    }
    co_return p->outcome;
  }
  auto p = std::make_shared<pending_lookup>(io);
  lookups[id] = p;
  ++background;
  auto res = co_await client->get(fmt::format("{}/v1/programs/{}", registry_url(), id.str()));
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
  --background;
  co_return p->outcome;
}

}  // namespace vodgrid::director
