#include "console/limits.h"

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "net/client.h"

namespace vodgrid::console {

namespace asio = boost::asio;
namespace json = boost::json;
using steady = std::chrono::steady_clock;

namespace {

// A share of a core or of the console's threads this high is taken for saturated.
constexpr double saturated_share = 0.85;

std::string host_port(const net::parsed_url& u) {
  return fmt::format("{}:{}", u.host, u.port);
}

double cpu_seconds(const rusage& r) {
  auto s = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return s(r.ru_utime) + s(r.ru_stime);
}

// process_cpu_seconds_total from a Prometheus text exposition, if it is there.
std::optional<double> process_cpu(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  constexpr std::string_view name = "process_cpu_seconds_total ";
  while (std::getline(in, line)) {
    if (line.starts_with(name)) {
      try {
        return std::stod(line.substr(name.size()));
      } catch (const std::exception&) {
        return std::nullopt;
      }
    }
  }
  return std::nullopt;
}

// /proc/stat's first line: every core's jiffies; busy is all but idle and iowait.
std::optional<std::pair<double, double>> machine_jiffies() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  in >> cpu;
  if (cpu != "cpu") {
    return std::nullopt;
  }
  double total = 0, idle = 0, v = 0;
  for (int i = 0; i < 10 && (in >> v); ++i) {
    total += v;
    if (i == 3 || i == 4) {  // idle, iowait
      idle += v;
    }
  }
  return std::pair{total - idle, total};
}

}  // namespace

struct limits_probe::fetcher {
  fetcher() {
    opts.connect_timeout = std::chrono::seconds(2);
    opts.request_timeout = std::chrono::seconds(2);
    opts.read_timeout = std::chrono::seconds(2);
  }
  asio::io_context io;
  net::client_options opts;
  net::http_client client{io.get_executor(), opts};
};

std::optional<std::string> limits_probe::get_body(const std::string& url) {
  auto f = asio::co_spawn(
      fetch_->io,
      [](net::http_client& client, std::string u) -> asio::awaitable<std::optional<std::string>> {
        auto r = co_await client.get(std::move(u));
        if (!r || r->status != 200) {
          co_return std::nullopt;
        }
        co_return std::move(r->body);
      }(fetch_->client, url),
      asio::use_future);
  fetch_->io.restart();
  fetch_->io.run();
  return f.get();
}

limits_probe::limits_probe(const std::string& director_url) : fetch_(std::make_unique<fetcher>()) {
  auto u = net::parse_http_url(director_url);
  if (u) {
    director_ = host_port(*u);
    if (auto body = get_body(u->origin() + "/metrics")) {
      if (auto c = process_cpu(*body)) {
        before_[director_] = sample{*c, steady::now()};
      }
    }
    origins_[director_] = u->origin();
    // Its station's name (an operator's grid, or one without tokens: a viewer is refused).
    if (auto body = get_body(u->origin() + "/v1/engines")) {
      try {
        auto o = json::parse(*body).as_object();
        if (auto s = o.if_contains("station"); s && s->is_string()) {
          station_ = std::string(s->as_string());
        }
      } catch (const std::exception&) {
        // Not a director we can read: the station keeps the director's address for a name.
      }
    }
  }
  if (auto m = machine_jiffies()) {
    machine_before_ = cpu_counters{m->first, m->second};
  }
  getrusage(RUSAGE_SELF, &self_before_);
  t0_ = steady::now();
  sampler_ = std::thread([this] { sample_engines(); });
}

limits_probe::~limits_probe() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (sampler_.joinable()) {
    sampler_.join();
  }
}

void limits_probe::saw_engine(const std::string& origin) {
  auto u = net::parse_http_url(origin);
  if (!u) {
    return;
  }
  std::string hp = host_port(*u);
  {
    std::lock_guard lock(mu_);
    if (stopping_ || !origins_.emplace(hp, u->origin()).second) {
      return;
    }
    pending_.push_back(hp);
  }
  wake_.notify_one();
}

void limits_probe::sample_engines() {
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
    if (pending_.empty()) {
      return;  // stopping, and every engine seen has been sampled
    }
    std::string hp = std::move(pending_.front());
    pending_.pop_front();
    std::string origin = origins_[hp];
    lock.unlock();
    auto body = get_body(origin + "/metrics");
    auto c = body ? process_cpu(*body) : std::nullopt;
    lock.lock();
    if (c) {
      before_[hp] = sample{*c, steady::now()};
    }
  }
}

void limits_probe::finish(play_report& report, uint32_t threads) {
  double wall = std::chrono::duration<double>(steady::now() - t0_).count();
  rusage self_after{};
  getrusage(RUSAGE_SELF, &self_after);
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  sampler_.join();  // after the engines met last have been sampled
  auto& s = report.limits;
  // The console's threads can be busy at most on as many cores as there are.
  double usable = std::min<double>(threads, std::max(1u, std::thread::hardware_concurrency()));
  if (wall > 0) {
    s.console_cpu = (cpu_seconds(self_after) - cpu_seconds(self_before_)) / (wall * usable);
  }
  if (auto m = machine_jiffies(); m && machine_before_ && m->second > machine_before_->total) {
    s.machine_cpu = (m->first - machine_before_->busy) / (m->second - machine_before_->total);
  }
  for (auto& [hp, before] : before_) {
    auto body = get_body(origins_[hp] + "/metrics");
    auto after = body ? process_cpu(*body) : std::nullopt;
    double seconds = std::chrono::duration<double>(steady::now() - before.at).count();
    if (!after || seconds <= 0) {
      continue;
    }
    double cores = (*after - before.cpu_seconds) / seconds;
    if (hp == director_) {
      s.director_cpu = cores;
    } else {
      s.engine_cpu[hp] = cores;
    }
  }
  if (!station_.empty()) {
    if (auto it = report.stations.find(director_); it != report.stations.end()) {
      auto n = it->second;
      report.stations.erase(it);
      report.stations[station_] += n;
    }
  }
  s.verdict = saturation_verdict(report, s);
}

std::string saturation_verdict(const play_report& r, const saturation& s) {
  if (r.stalls == 0 && r.segments_failed == 0 && r.errors.empty()) {
    return "none (no stall, no failure)";
  }
  if (s.console_cpu >= saturated_share) {
    return fmt::format("console CPU ({:.0f} % of its threads' time)", s.console_cpu * 100);
  }
  auto hottest = std::max_element(s.engine_cpu.begin(), s.engine_cpu.end(),
                                  [](auto& a, auto& b) { return a.second < b.second; });
  if (hottest != s.engine_cpu.end() && hottest->second >= saturated_share) {
    return fmt::format("engine CPU ({} at {:.0f} % of a core)", hottest->first,
                       hottest->second * 100);
  }
  if (s.director_cpu >= saturated_share) {
    return fmt::format("director CPU ({:.0f} % of a core)", s.director_cpu * 100);
  }
  if (s.machine_cpu >= 0.9) {
    return fmt::format(
        "the machine's CPU ({:.0f} % of {} cores busy, shared by the console, the station and "
        "anything else on it)",
        s.machine_cpu * 100, std::thread::hardware_concurrency());
  }
  if (r.needed_rate() > 0 && r.achieved_rate() < 0.95 * r.needed_rate()) {
    return fmt::format("bandwidth ({:.1f} MB/s achieved of {:.1f} MB/s needed, no CPU saturated)",
                       r.achieved_rate() / 1e6, r.needed_rate() / 1e6);
  }
  return "none measured (no CPU saturated and the bytes needed arrived: see the errors)";
}

}  // namespace vodgrid::console
