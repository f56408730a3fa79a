// Registry URL lists (issue 18, item 3): net::peer_list against real registry daemons (one killed,
// one stopped, one answering 503), a director and the CLI failing over between two registry
// daemons over one database, a grid whose registries all stay silent, and reports committed out of
// order (on both database backends).
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <csignal>
#include <fstream>

#include "net/peer_list.h"
#include "support/postgres.h"
#include "support/support.h"

namespace vodgrid {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// One request through `peers` on a private io_context.
asio::awaitable<result<net::client_response>> ask_on(net::peer_list* peers, std::string path,
                                                     std::chrono::milliseconds read_timeout) {
  net::client_options co;
  co.connect_timeout = 1s;
  co.read_timeout = read_timeout;
  co.request_timeout = 10s;
  net::http_client client(co_await asio::this_coro::executor, co);
  co_return co_await peers->get(client, std::move(path));
}

result<net::client_response> ask(net::peer_list& peers, std::string path,
                                 std::chrono::milliseconds read_timeout = 3s) {
  asio::io_context io;
  auto f = asio::co_spawn(io, ask_on(&peers, std::move(path), read_timeout), asio::use_future);
  io.run();
  return f.get();
}

std::string dead_url() {
  return fmt::format("http://127.0.0.1:{}", test::free_port());
}

struct two_registries : ::testing::Test {
  test::grid_fixture grid{{{"home", 2}}, {}, false, false, {.registries = 2}};
};

TEST_F(two_registries, APeerListMovesToTheOtherDaemonWhenOneIsKilledAndStaysThere) {
  net::peer_list peers({grid.registry_url(0), grid.registry_url(1)}, "registry");
  auto r = ask(peers, "/healthz");
  ASSERT_TRUE(r && r->status == 200);
  EXPECT_EQ(peers.current(), grid.registry_url(0));

  grid.kill("registry");
  r = ask(peers, "/healthz");
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(peers.current(), grid.registry_url(1));

  // Back, but the last good one is asked first (within the fail-back period).
  grid.start("registry");
  r = ask(peers, "/healthz");
  ASSERT_TRUE(r && r->status == 200);
  EXPECT_EQ(peers.current(), grid.registry_url(1));
}

TEST_F(two_registries, APeerListComesBackToTheFirstDaemonAfterItsFailBackPeriod) {
  net::peer_list peers({grid.registry_url(0), grid.registry_url(1)}, "registry", 300ms);
  grid.kill("registry");
  ASSERT_TRUE(ask(peers, "/healthz"));
  ASSERT_EQ(peers.current(), grid.registry_url(1));
  // Still dead after the period: tried, left again.
  std::this_thread::sleep_for(350ms);
  ASSERT_TRUE(ask(peers, "/healthz"));
  EXPECT_EQ(peers.current(), grid.registry_url(1));
  grid.start("registry");
  std::this_thread::sleep_for(350ms);
  auto r = ask(peers, "/healthz");
  ASSERT_TRUE(r && r->status == 200);
  EXPECT_EQ(peers.current(), grid.registry_url(0));
}

TEST_F(two_registries, AHungDaemonIsLeftAfterTheReadTimeout) {
  net::peer_list peers({grid.registry_url(0), grid.registry_url(1)}, "registry");
  ASSERT_TRUE(ask(peers, "/healthz"));  // a pooled connection to the first
  grid.signal("registry", SIGSTOP);
  auto t0 = std::chrono::steady_clock::now();
  auto r = ask(peers, "/healthz", 500ms);
  auto took = std::chrono::steady_clock::now() - t0;
  grid.signal("registry", SIGCONT);
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(peers.current(), grid.registry_url(1));
  // A SIGSTOPped process's listening socket still accepts (the kernel completes the handshake):
  // the read timeout, not the connect, is what gives it up.
  EXPECT_LT(took, 3s);
}

// Requests sent at once while the first daemon hangs, past the fail-back period: one probes it and
// waits for its read timeout; the others go to the daemon in use and answer at once.
TEST_F(two_registries, OnlyOneRequestProbesAHungFirstDaemon) {
  net::peer_list peers({grid.registry_url(0), grid.registry_url(1)}, "registry", 300ms);
  grid.signal("registry", SIGSTOP);
  ASSERT_TRUE(ask(peers, "/healthz", 500ms));
  ASSERT_EQ(peers.current(), grid.registry_url(1));
  std::this_thread::sleep_for(350ms);
  constexpr int requests = 5;
  std::vector<std::chrono::steady_clock::duration> took(requests);
  std::vector<unsigned> status(requests);
  {
    asio::io_context io;
    net::client_options co;
    co.connect_timeout = 1s;
    co.read_timeout = 1500ms;
    net::http_client client(io.get_executor(), co);
    for (int i = 0; i < requests; ++i) {
      asio::co_spawn(
          io,
          [](net::peer_list* peers, net::http_client* client,
             std::chrono::steady_clock::duration* took, unsigned* status) -> asio::awaitable<void> {
            auto t0 = std::chrono::steady_clock::now();
            auto r = co_await peers->get(*client, "/healthz");
            *took = std::chrono::steady_clock::now() - t0;
            *status = r ? r->status : 0;
          }(&peers, &client, &took[i], &status[i]),
          asio::detached);
    }
    io.run();
  }
  grid.signal("registry", SIGCONT);
  int slow = 0;
  for (int i = 0; i < requests; ++i) {
    EXPECT_EQ(status[i], 200u) << i;
    slow += took[i] >= 1s ? 1 : 0;
  }
  EXPECT_EQ(slow, 1);  // the probe, which then asked the other daemon
  EXPECT_EQ(peers.current(), grid.registry_url(1));
}

TEST_F(two_registries, A503IsLeftForTheNextPeerAndA404IsAnAnswer) {
  // A server that answers 503 to everything (a registry whose database is failing over).
  test::temp_dir dir;
  auto port = test::free_port();
  auto script = dir.path() / "busy.py";
  std::ofstream(script)
      << "import http.server, sys\n"
         "class H(http.server.BaseHTTPRequestHandler):\n"
         "    def do_GET(self):\n"
         "        self.send_response(503)\n"
         "        self.send_header('Content-Length', '0')\n"
         "        self.end_headers()\n"
         "    def log_message(self, *a):\n"
         "        pass\n"
         "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n";
  auto busy = child_process::spawn({"/usr/bin/python3", script.string(), std::to_string(port)});
  ASSERT_TRUE(busy);
  ASSERT_TRUE(test::eventually([&] { return test::port_is_listening(port); }));
  std::string busy_url = fmt::format("http://127.0.0.1:{}", port);

  net::peer_list peers({busy_url, grid.registry_url(0)}, "registry");
  auto r = ask(peers, "/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(peers.current(), grid.registry_url(0));

  net::peer_list answers({grid.registry_url(0), grid.registry_url(1)}, "registry");
  r = ask(answers, "/v1/programs/no-such-program");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404u);
  EXPECT_EQ(answers.current(), grid.registry_url(0));

  // Nothing answers: the last peer's error.
  net::peer_list none({busy_url, dead_url()}, "registry");
  r = ask(none, "/healthz");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::unavailable);
}

// GET /v1/grid names every registry daemon of the grid, whichever answers.
TEST_F(two_registries, TheGridNamesEveryRegistryDaemon) {
  for (size_t i = 0; i < 2; ++i) {
    auto r = test::http_get(grid.registry_url(i) + "/v1/grid");
    ASSERT_TRUE(r && r->status == 200) << (r ? r->body : r.err().detail);
    auto o = boost::json::parse(r->body).as_object();
    EXPECT_EQ(o.at("registry"), boost::json::value(grid.registry_url(i))) << r->body;
    EXPECT_EQ(o.at("registries"), (boost::json::array{boost::json::value(grid.registry_url(0)),
                                                      boost::json::value(grid.registry_url(1))}))
        << r->body;
  }
}

TEST(PeerList, SplitsACommaListAndRefusesBadEntries) {
  auto l = net::peer_list::split("http://a:1, http://b:2/");
  ASSERT_TRUE(l);
  EXPECT_EQ(*l, (std::vector<std::string>{"http://a:1", "http://b:2"}));
  EXPECT_FALSE(net::peer_list::split("http://a:1,"));
  EXPECT_FALSE(net::peer_list::split("http://a:1,ftp://b"));
  EXPECT_FALSE(net::peer_list::split(""));
}

TEST(RegistryUrls, TheConfigKeepsTheListAndRefusesAUrlThatIsNotHttp) {
  auto g = grid_config::embedded_default("/tmp/vodgrid-unused", 8700);
  g.registry->urls = {"http://127.0.0.1:8700", "http://127.0.0.1:8800"};
  auto parsed = grid_config::parse(g.to_toml());
  ASSERT_TRUE(parsed) << parsed.err().detail;
  EXPECT_EQ(parsed->registry->client_urls(), g.registry->urls);
  g.registry->urls.clear();
  parsed = grid_config::parse(g.to_toml());
  ASSERT_TRUE(parsed) << parsed.err().detail;
  EXPECT_EQ(parsed->registry->client_urls(), std::vector<std::string>{"http://127.0.0.1:8700"});
  g.registry->urls = {"http://127.0.0.1:8700", "127.0.0.1:8800"};
  parsed = grid_config::parse(g.to_toml());
  ASSERT_FALSE(parsed);
  EXPECT_NE(parsed.err().detail.find("\"127.0.0.1:8800\" is not an http(s)://host:port URL"),
            std::string::npos)
      << parsed.err().detail;
}

// The whole chain: with the first registry daemon killed, the director registers and reports at
// the second, and a program ingested through the CLI's list lands there with every location.
TEST_F(two_registries, ADirectorAndTheCliUseTheOtherDaemonWhenOneIsKilled) {
  grid.kill("registry");
  ASSERT_TRUE(test::eventually(
      [&] {
        auto r = test::http_get(grid.registry_url(1) + "/healthz");
        return r && r->body.find("\"stations_up\":1") != std::string::npos;
      },
      10s))
      << grid.log_of("home");
  EXPECT_NE(grid.log_of("home").find("now using " + grid.registry_url(1)), std::string::npos)
      << grid.log_of("home");

  test::temp_dir src;
  auto sample = test::make_sample(src.path(), 4, 1);
  auto list = grid.registry_url(0) + "," + grid.registry_url(1);
  auto in = test::run({test::vodgrid_binary(), "ingest", sample.string(), "--title", "Film", "--id",
                       "film", "--grid", list});
  ASSERT_EQ(in.status, 0) << in.err;
  ASSERT_TRUE(test::eventually(
      [&] {
        auto r = test::http_get(grid.registry_url(1) + "/v1/stations/home/held");
        return r && r->status == 200 && r->body.find("\"film\":") != std::string::npos &&
               r->body.find("\"film\":0") == std::string::npos;
      },
      10s))
      << test::http_get(grid.registry_url(1) + "/v1/stations/home/held")->body;
}

// Bad input: every registry named is silent. The CLI says so in one line; the director serves on,
// says where it looked, and catches up when one comes back.
TEST_F(two_registries, WhenNoRegistryAnswersTheCliSaysSoAndTheDirectorServesOnAndCatchesUp) {
  auto none = dead_url() + "," + dead_url();
  auto r = test::run({test::vodgrid_binary(), "programs", "--grid", none});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("no registry of " + none + " answers"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  r = test::run({test::vodgrid_binary(), "programs", "--grid", dead_url() + ",registry:8700"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("is not an http:// URL"), std::string::npos) << r.err;

  grid.kill("registry");
  grid.kill("registry-2");
  auto urls = grid.registry_url(0) + ", " + grid.registry_url(1);
  ASSERT_TRUE(test::eventually(
      [&] {
        return grid.log_of("home").find("registry unreachable at " + urls) != std::string::npos;
      },
      10s))
      << grid.log_of("home");
  auto h = test::http_get(grid.director_url("home") + "/healthz");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200u);

  grid.start("registry-2");
  EXPECT_TRUE(test::eventually(
      [&] {
        auto s = test::http_get(grid.registry_url(1) + "/healthz");
        return s && s->body.find("\"stations_up\":1") != std::string::npos;
      },
      10s))
      << grid.log_of("home");
}

// Two registry daemons over one database, of each kind the registry runs on, and one station.
class TwoRegistriesOn : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string db = GetParam() == "postgresql" ? test::fresh_postgres_schema("seq") : "";
    grid_ = std::make_unique<test::grid_fixture>(
        std::vector<test::grid_fixture::station_spec>{{"home", 2}}, db, false, false,
        test::grid_replicas{.registries = 2});
  }

  // Segments of `program` the registry behind daemon `i` records the home station holding whole;
  // -1 if it did not answer.
  int64_t held(size_t i, const std::string& program) {
    auto r = test::http_get(grid_->registry_url(i) + "/v1/stations/home/held");
    if (!r || r->status != 200) {
      return -1;
    }
    auto v = boost::json::parse(r->body);
    auto* n = v.as_object().at("programs").as_object().if_contains(program);
    return n ? n->to_number<int64_t>() : 0;
  }

  // A report of the home station with `seq`, saying `program`'s segments [0, n) are held or not.
  result<net::client_response> report(size_t i, uint64_t seq, const std::string& program, int n,
                                      bool held) {
    boost::json::array changes;
    for (int k = 0; k < n; ++k) {
      changes.push_back(boost::json::object{{"program", program}, {"index", k}, {"held", held}});
    }
    boost::json::object body{
        {"seq", seq},      {"load", 0},          {"sending_bits_per_second", 0},
        {"engines_up", 2}, {"changes", changes}, {"copies", boost::json::array{}}};
    return test::http(boost::beast::http::verb::post,
                      grid_->registry_url(i) + "/v1/stations/home/report",
                      boost::json::serialize(body));
  }

  std::unique_ptr<test::grid_fixture> grid_;
};

INSTANTIATE_TEST_SUITE_P(Backends, TwoRegistriesOn, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

// A director's report repeated on the other daemon after a timeout may be committed late by the
// stalled one, after newer reports: it changes nothing. A report numbered above the director's
// clock (a former run whose clock was ahead) leaves a restarted director numbering above it, so
// that its reports are still applied.
TEST_P(TwoRegistriesOn, AReportOlderThanOneAppliedChangesNothingAndARestartedDirectorCatchesUp) {
  auto& g = *grid_;
  test::temp_dir src;
  auto sample = test::make_sample(src.path(), 4, 1);
  auto in = test::run({test::vodgrid_binary(), "ingest", sample.string(), "--title", "Film", "--id",
                       "film", "--grid", g.registry_url(0) + "," + g.registry_url(1)});
  ASSERT_EQ(in.status, 0) << in.err;
  ASSERT_TRUE(test::eventually([&] { return held(0, "film") == 4; }, 10s)) << held(0, "film");
  // The other daemon must know the station before it takes its reports (as after a failover).
  auto& st = g.config().stations.at(0);
  auto reg = boost::json::serialize(
      boost::json::object{{"name", "home"},
                          {"director_url", g.director_url("home")},
                          {"home", true},
                          {"x_km", st.x_km},
                          {"y_km", st.y_km},
                          {"uplink_bits_per_second", st.uplink_bits_per_second}});
  auto put =
      test::http(boost::beast::http::verb::put, g.registry_url(1) + "/v1/stations/home", reg);
  ASSERT_TRUE(put && put->status == 200) << (put ? put->body : put.err().detail);

  // Committed late by the second daemon: a report older than those the director made since.
  auto late = report(1, 1, "film", 4, false);
  ASSERT_TRUE(late) << late.err().detail;
  EXPECT_EQ(late->status, 200u) << late->body;
  auto o = boost::json::parse(late->body).as_object();
  EXPECT_EQ(o.at("recorded").to_number<int64_t>(), 0) << late->body;
  EXPECT_TRUE(o.at("stale").as_bool()) << late->body;
  EXPECT_GT(o.at("seq").to_number<uint64_t>(), 1u) << late->body;
  EXPECT_EQ(held(0, "film"), 4);
  EXPECT_EQ(held(1, "film"), 4);

  // Numbered an hour ahead of the director's clock: newer, applied.
  auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  auto ahead = static_cast<uint64_t>(now_us) + 3'600'000'000;
  auto newer = report(1, ahead, "film", 1, false);
  ASSERT_TRUE(newer && newer->status == 200) << (newer ? newer->body : newer.err().detail);
  EXPECT_EQ(boost::json::parse(newer->body).as_object().at("recorded").to_number<int64_t>(), 1)
      << newer->body;
  EXPECT_EQ(held(0, "film"), 3);

  // Restarted, the director numbers by its clock, below `ahead`: told so, it numbers above, and
  // its catch-up (it holds the film whole) is applied.
  g.kill("home");
  g.start("home");
  EXPECT_TRUE(test::eventually([&] { return held(0, "film") == 4; }, 20s))
      << held(0, "film") << "\n"
      << g.log_of("home");
  EXPECT_NE(g.log_of("home").find("numbering above it"), std::string::npos) << g.log_of("home");
  // Later changes are applied too: a report the director would make is newer than `ahead`.
  auto older_again = report(1, ahead, "film", 4, false);
  ASSERT_TRUE(older_again) << older_again.err().detail;
  EXPECT_NE(older_again->body.find("\"stale\":true"), std::string::npos) << older_again->body;
  EXPECT_EQ(held(1, "film"), 4);
}

}  // namespace
}  // namespace vodgrid
