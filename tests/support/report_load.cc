// The report load (report_load.h): writers as coroutines on one io_context, one peer_list.
#include "support/report_load.h"

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>

#include "api/api.h"
#include "net/client.h"
#include "net/peer_list.h"

namespace vodgrid::test {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using steady = std::chrono::steady_clock;

namespace {

struct shared {
  net::http_client client;
  net::peer_list peers;
  std::string registration;
  std::string station;
};

}  // namespace

report_load::report_load(options o) : opts_(std::move(o)) {
  for (int i = 0; i < opts_.writers; ++i) {
    writers_.push_back({fmt::format("{}-{}", opts_.prefix, i), 0, 0});
  }
  last_ack_ = steady::now();
  thread_ = std::thread([this] { run(); });
}

report_load::~report_load() {
  stop();
}

void report_load::stop() {
  if (!thread_.joinable()) {
    return;
  }
  auto stopped = steady::now();
  stop_ = true;
  thread_.join();
  // An outage still going on when the load stops is an outage too (up to the stop).
  std::lock_guard lock(mu_);
  longest_gap_ = std::max(longest_gap_, stopped - last_ack_);
  stopped_ = true;
}

void report_load::run() {
  asio::io_context io;
  net::client_options co;
  co.connect_timeout = std::chrono::seconds(1);
  co.read_timeout = std::chrono::seconds(3);
  co.request_timeout = std::chrono::seconds(10);
  api::station_registration reg{
      *station_id::parse(opts_.station), opts_.director_url, opts_.home, 0, 0, 1'000'000'000};
  shared sh{net::http_client(io.get_executor(), co), net::peer_list(opts_.registries, "registry"),
            boost::json::serialize(api::to_json(reg)), opts_.station};
  auto writer = [](report_load* self, shared* sh, size_t w) -> asio::awaitable<void> {
    asio::steady_timer pause(co_await asio::this_coro::executor);
    uint64_t next = 0;
    std::string program;
    {
      std::lock_guard lock(self->mu_);
      program = self->writers_[w].program;
    }
    while (!self->stop_) {
      api::station_report r;
      r.engines_up = 1;
      for (int k = 0; k < self->opts_.changes_per_report; ++k) {
        api::location_change c;
        c.key = {*program_id::parse(program), segment_index{static_cast<uint32_t>(next + k)}};
        r.changes.push_back(c);
      }
      {
        std::lock_guard lock(self->mu_);
        auto& s = self->writers_[w];
        s.sent = std::max<uint64_t>(s.sent, next + r.changes.size());
      }
      auto t0 = steady::now();
      auto res = co_await sh->peers.send_json(sh->client, http::verb::post,
                                              fmt::format("/v1/stations/{}/report", sh->station),
                                              boost::json::serialize(api::to_json(r)));
      auto t1 = steady::now();
      if (res && res->status == 200) {
        next += r.changes.size();
        std::lock_guard lock(self->mu_);
        self->writers_[w].acked = next;
        self->latencies_.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        self->longest_gap_ = std::max(self->longest_gap_, t1 - self->last_ack_);
        self->last_ack_ = t1;
        continue;
      }
      {
        std::lock_guard lock(self->mu_);
        ++self->failed_;
      }
      if (res && res->status == 409) {
        // This registry daemon has not seen the station register (the other one did).
        co_await sh->peers.send_json(sh->client, http::verb::put,
                                     fmt::format("/v1/stations/{}", sh->station), sh->registration);
        continue;
      }
      pause.expires_after(std::chrono::milliseconds(50));
      co_await pause.async_wait(asio::use_awaitable);
    }
  };
  asio::co_spawn(
      io,
      [](shared* sh) -> asio::awaitable<void> {
        co_await sh->peers.send_json(sh->client, http::verb::put,
                                     fmt::format("/v1/stations/{}", sh->station), sh->registration);
      }(&sh),
      asio::detached);
  for (size_t w = 0; w < writers_.size(); ++w) {
    asio::co_spawn(io, writer(this, &sh, w), asio::detached);
  }
  io.run();
}

std::vector<report_load::writer_state> report_load::writers() const {
  std::lock_guard lock(mu_);
  return writers_;
}

uint64_t report_load::acknowledged() const {
  std::lock_guard lock(mu_);
  return latencies_.size();
}

uint64_t report_load::failed() const {
  std::lock_guard lock(mu_);
  return failed_;
}

std::vector<double> report_load::latencies_ms() const {
  std::lock_guard lock(mu_);
  return latencies_;
}

std::chrono::milliseconds report_load::longest_gap() const {
  std::lock_guard lock(mu_);
  auto gap = stopped_ ? longest_gap_ : std::max(longest_gap_, steady::now() - last_ack_);
  return std::chrono::duration_cast<std::chrono::milliseconds>(gap);
}

}  // namespace vodgrid::test
