// Session tickets that follow the console (issue 17, item 2), with real processes: a grid with an
// auth server and two stations on HTTPS, `st` (director and engines e0, e1, e2) and `other`
// (director and engine o0). A TLS session made with one engine of `st` (`openssl s_client
// -sess_out`) resumes on its other engines and its director (`-sess_in` says "Reused"), for TLS 1.3
// and 1.2, and the engines' metrics count one full handshake and the resumptions; `other`'s engine
// does not resume it. After a rotation of the keys a ticket still resumes, and once its key has
// left the ring it no longer does.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "base/fs.h"
#include "base/process.h"
#include "cli/local_tls.h"
#include "console/segment_reader.h"
#include "net/client.h"
#include "net/tls.h"
#include "support/support.h"

namespace vodgrid::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class ticket_grid {
 public:
  explicit ticket_grid(std::chrono::milliseconds ticket_key_period = 3'600'000ms) {
    add_station("st", {"e0", "e1", "e2"});
    add_station("other", {"o0"});
    grid_.auth = auth_config{
        {"127.0.0.1", free_port()}, "sqlite://" + (dir_.path() / "auth.db").string(), true};
    grid_.heartbeat_interval = 100ms;
    grid_.heartbeat_timeout = 1000ms;
    grid_.timing.ticket_key_period = ticket_key_period;
    // Every daemon on HTTPS with a certificate of a local CA, as `vodgrid up --tls` makes them.
    if (auto st = cli::make_local_tls(grid_, dir_.path() / "tls"); !st) {
      throw std::runtime_error("certificates: " + st.err().detail);
    }
    if (!write_file_durably(config_, grid_.to_toml())) {
      throw std::runtime_error("cannot write the config");
    }
    net::set_default_tls_ca(ca());  // this process's metric reads go over HTTPS
    procs_.push_back(spawn("auth", "auth"));
    if (!eventually([&] {
          auto h = http_get(grid_.auth->listen.url() + "/healthz");
          return h && h->status == 200;
        })) {
      throw std::runtime_error("auth did not start:\n" + log_of("auth"));
    }
    provision_engines(grid_, login_token(grid_.auth->listen.url(), "operator", "admin", "admin"));
    for (auto& s : grid_.stations) {
      procs_.push_back(spawn("director", s.name.str()));
      for (auto& e : s.engines) {
        procs_.push_back(spawn("engine", e.name.str()));
      }
    }
    // Up once every engine holds its station's ticket keys (its first heartbeat answered).
    for (auto& s : grid_.stations) {
      for (auto& e : s.engines) {
        if (!eventually([&] { return metric(e.listen.url(), "vodgrid_tls_ticket_keys") > 0; },
                        20s)) {
          throw std::runtime_error(fmt::format("engine {} has no ticket keys:\n{}{}", e.name.str(),
                                               log_of(e.name.str()), log_of(s.name.str())));
        }
      }
    }
  }
  ~ticket_grid() {
    for (auto it = procs_.rbegin(); it != procs_.rend(); ++it) {
      it->stop(5s);
    }
  }

  const engine_config& engine(const std::string& name) const { return *grid_.find_engine(name); }
  uint16_t port_of(const std::string& name) const {
    if (auto* s = grid_.find_station(name)) {
      return s->director.listen.port;
    }
    return engine(name).listen.port;
  }
  std::string url_of(const std::string& name) const {
    if (auto* s = grid_.find_station(name)) {
      return s->director.listen.url();
    }
    return engine(name).listen.url();
  }
  fs::path ca() const { return grid_.tls.ca; }
  fs::path file(const std::string& name) const { return dir_.path() / name; }
  std::string log_of(const std::string& name) const {
    auto t = read_file(dir_.path() / (name + ".log"));
    return t ? *t : std::string();
  }

 private:
  void add_station(const std::string& name, const std::vector<std::string>& engines) {
    station_config s;
    s.name = *station_id::parse(name);
    s.director.listen = {"127.0.0.1", free_port()};
    s.director.data_dir = dir_.path() / name;
    s.director.copies = 1;
    for (auto& n : engines) {
      engine_config e;
      e.name = *engine_id::parse(n);
      e.listen = {"127.0.0.1", free_port()};
      e.data_dirs = {dir_.path() / n / "d0"};
      s.engines.push_back(e);
    }
    grid_.stations.push_back(s);
  }
  child_process spawn(const std::string& role, const std::string& name) {
    auto p =
        child_process::spawn({vodgrid_binary(), role, "--config", config_.string(), "--name", name},
                             dir_.path() / (name + ".log"));
    if (!p) {
      throw std::runtime_error(p.err().detail);
    }
    return std::move(*p);
  }

  temp_dir dir_;
  fs::path config_ = dir_.path() / "grid.toml";
  grid_config grid_;
  std::vector<child_process> procs_;
};

// One TLS connection by `openssl s_client` (`proto`: -tls1_3 or -tls1_2) to 127.0.0.1:port, the
// certificate verified against the CA, a GET /healthz sent and read to the end (a TLS 1.3 server
// sends its tickets after the handshake). `sess`: -sess_out FILE or -sess_in FILE. Returns "New" or
// "Reused", else what went wrong.
std::string s_client(const ticket_grid& g, uint16_t port, const std::string& proto,
                     const std::string& sess, const fs::path& file) {
  auto r = run({"/bin/bash", "-c",
                fmt::format("printf 'GET /healthz HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: "
                            "close\\r\\n\\r\\n' | timeout 20 openssl s_client -connect "
                            "127.0.0.1:{} -CAfile '{}' -verify_return_error {} {} '{}' -ign_eof",
                            port, g.ca().string(), proto, sess, file.string())});
  auto verdict = r.out.find(", TLSv1.");
  if (r.status != 0 || verdict == std::string::npos || r.out.find("\"ok\"") == std::string::npos) {
    return fmt::format("failed ({}): {}{}", r.status, r.out, r.err);
  }
  auto line = r.out.rfind('\n', verdict);
  auto first = r.out.substr(line == std::string::npos ? 0 : line + 1, verdict - line - 1);
  return first;
}

// An engine's handshakes: {full, resumed}, from one read of its /metrics, which is itself one full
// handshake (this process's client keeps no session), counted in the reply.
std::pair<double, double> handshakes(const std::string& url) {
  auto r = http_get(url + "/metrics");
  if (!r) {
    return {-1, -1};
  }
  auto value = [&](const char* result) {
    std::smatch m;
    std::regex re(
        fmt::format(R"(vodgrid_tls_handshakes_total\{{result="{}"\}} ([0-9.e+]+))", result));
    return std::regex_search(r->body, m, re) ? std::stod(m[1]) : 0.0;
  };
  return {value("full"), value("resumed")};
}

TEST(TlsTickets, ASessionMadeWithOneEngineResumesOnTheOthersOfItsStationOnly) {
  ticket_grid g;
  for (std::string proto : {"-tls1_3", "-tls1_2"}) {
    SCOPED_TRACE(proto);
    auto sess = g.file("sess" + proto + ".pem");
    std::vector<std::string> engines{"e0", "e1", "e2"};
    std::vector<std::pair<double, double>> before;
    for (auto& e : engines) {
      before.push_back(handshakes(g.url_of(e)));
    }
    EXPECT_EQ(s_client(g, g.port_of("e0"), proto, "-sess_out", sess), "New");
    EXPECT_EQ(s_client(g, g.port_of("e1"), proto, "-sess_in", sess), "Reused");
    EXPECT_EQ(s_client(g, g.port_of("e2"), proto, "-sess_in", sess), "Reused");
    // The director's own port shares the keys: a console's session with it goes on at the engines.
    EXPECT_EQ(s_client(g, g.port_of("st"), proto, "-sess_in", sess), "Reused");
    // Another station's keys are its own.
    EXPECT_EQ(s_client(g, g.port_of("o0"), proto, "-sess_in", sess), "New");
    EXPECT_EQ(s_client(g, g.port_of("other"), proto, "-sess_in", sess), "New");

    // One full handshake (e0) and two resumed (e1, e2); the reads add one full each.
    double full = 0, resumed = 0;
    for (size_t i = 0; i < engines.size(); ++i) {
      auto [f, r] = handshakes(g.url_of(engines[i]));
      full += f - before[i].first - 1;
      resumed += r - before[i].second;
    }
    EXPECT_EQ(full, 1);
    EXPECT_EQ(resumed, 2);
  }
}

// The play console's reader, as a viewer the director sends from engine to engine: its first
// connection to the station (e0) is a full handshake, and e1 and e2, never met before, resume that
// session (the reader offers the last session it made to a new origin); another station's engine
// answers it with a full handshake.
TEST(TlsTickets, TheConsoleMakesOneFullHandshakeForAStationsEngines) {
  ticket_grid g;
  std::vector<std::string> engines{"e0", "e1", "e2", "o0"};
  std::vector<std::pair<double, double>> before;
  for (auto& e : engines) {
    before.push_back(handshakes(g.url_of(e)));
  }
  boost::asio::io_context io;
  std::vector<char> mem(64 * 1024);
  console::segment_reader_options ro;
  ro.tls_ca = g.ca();
  std::vector<std::string> got;
  auto play = [&]() -> boost::asio::awaitable<void> {
    console::segment_reader reader(co_await boost::asio::this_coro::executor, ro, mem);
    for (auto& e : engines) {
      auto r = co_await reader.get(
          g.url_of(e) + "/healthz", [](unsigned) { return true; }, [](std::string_view) {});
      got.push_back(r ? std::to_string(*r) : r.err().detail);
    }
  };
  auto f = boost::asio::co_spawn(io, play(), boost::asio::use_future);
  io.run();
  f.get();
  EXPECT_EQ(got, std::vector<std::string>(engines.size(), "200"));
  // Each engine's counts since `before`, less the full handshake of the metrics read itself.
  std::vector<std::pair<double, double>> made;
  for (size_t i = 0; i < engines.size(); ++i) {
    auto [f, r] = handshakes(g.url_of(engines[i]));
    made.emplace_back(f - before[i].first - 1, r - before[i].second);
  }
  using counts = std::pair<double, double>;  // {full, resumed}
  EXPECT_EQ(made, (std::vector<counts>{{1, 0}, {0, 1}, {0, 1}, {1, 0}}));
}

// A connection dropped from the reader's idle ones (here it keeps one) leaves its session good: the
// viewer sent back to e0 after e1 resumes with e0's session, and to e1 again with e1's.
TEST(TlsTickets, AConsolesSessionOutlivesItsDroppedConnection) {
  ticket_grid g;
  std::vector<std::string> engines{"e0", "e1"};
  std::vector<std::pair<double, double>> before;
  for (auto& e : engines) {
    before.push_back(handshakes(g.url_of(e)));
  }
  boost::asio::io_context io;
  std::vector<char> mem(64 * 1024);
  console::segment_reader_options ro;
  ro.tls_ca = g.ca();
  ro.max_idle_tls = 1;
  std::vector<std::string> got;
  auto play = [&]() -> boost::asio::awaitable<void> {
    console::segment_reader reader(co_await boost::asio::this_coro::executor, ro, mem);
    for (auto& e : {"e0", "e1", "e0", "e1"}) {
      auto r = co_await reader.get(
          g.url_of(e) + "/healthz", [](unsigned) { return true; }, [](std::string_view) {});
      got.push_back(r ? std::to_string(*r) : r.err().detail);
    }
  };
  auto f = boost::asio::co_spawn(io, play(), boost::asio::use_future);
  io.run();
  f.get();
  EXPECT_EQ(got, std::vector<std::string>(4, "200"));
  std::vector<std::pair<double, double>> made;
  for (size_t i = 0; i < engines.size(); ++i) {
    auto [f, r] = handshakes(g.url_of(engines[i]));
    made.emplace_back(f - before[i].first - 1, r - before[i].second);
  }
  using counts = std::pair<double, double>;  // {full, resumed}
  EXPECT_EQ(made, (std::vector<counts>{{1, 1}, {0, 2}}));
}

// A daemon's or a console's client (net::http_client) offers an origin the session it made there
// on its next connection: here every GET is a new connection (nothing kept idle), the first a full
// handshake and the next two resumed; a client of its own makes a full one again.
TEST(TlsTickets, AClientResumesItsSessionWithAnOriginOnItsNextConnection) {
  ticket_grid g;
  auto before = handshakes(g.url_of("e0"));
  boost::asio::io_context io;
  net::client_options co;
  co.tls_ca = g.ca();
  co.max_idle_per_host = 0;
  std::vector<std::string> got;
  auto gets = [&](int n) -> boost::asio::awaitable<void> {
    net::http_client client(co_await boost::asio::this_coro::executor, co);
    for (int i = 0; i < n; ++i) {
      auto r = co_await client.get(g.url_of("e0") + "/healthz");
      got.push_back(r ? std::to_string(r->status) : r.err().detail);
    }
  };
  auto f = boost::asio::co_spawn(io, gets(3), boost::asio::use_future);
  io.run();
  f.get();
  auto after = handshakes(g.url_of("e0"));
  EXPECT_EQ(got, std::vector<std::string>(3, "200"));
  // Less the full handshake of the metrics read itself.
  EXPECT_EQ(after.first - before.first - 1, 1);
  EXPECT_EQ(after.second - before.second, 2);

  io.restart();
  auto again = boost::asio::co_spawn(io, gets(1), boost::asio::use_future);
  io.run();
  again.get();
  auto last = handshakes(g.url_of("e0"));
  EXPECT_EQ(last.first - after.first - 1, 1);  // a new client knows no session
  EXPECT_EQ(last.second - after.second, 0);
}

// How many times engine `e` has changed the key it makes tickets with (its own count: an engine
// started later counts fewer).
double key_changes(const ticket_grid& g, const std::string& e) {
  return metric(g.url_of(e), "vodgrid_tls_ticket_key_changes_total");
}

TEST(TlsTickets, ATicketResumesAfterARotationUntilItsKeyLeavesTheRing) {
  // A new key every 2 s; the ring accepts the one in use and the two before it.
  ticket_grid g(2000ms);
  for (std::string proto : {"-tls1_3", "-tls1_2"}) {
    SCOPED_TRACE(proto);
    auto sess = g.file("rot" + proto + ".pem");
    // A ticket made with the key both engines use: just after both changed to it (within a few
    // heartbeats of each other), neither changing again while it is made.
    double c0 = 0, c1 = 0;
    bool made = false;
    for (int i = 0; i < 10 && !made; ++i) {
      auto a0 = key_changes(g, "e0"), a1 = key_changes(g, "e1");
      ASSERT_TRUE(
          eventually([&] { return key_changes(g, "e0") > a0 && key_changes(g, "e1") > a1; }, 10s));
      std::this_thread::sleep_for(400ms);  // four heartbeats: both hold the same key now
      c0 = key_changes(g, "e0");
      c1 = key_changes(g, "e1");
      ASSERT_EQ(s_client(g, g.port_of("e0"), proto, "-sess_out", sess), "New");
      made = key_changes(g, "e0") == c0 && key_changes(g, "e1") == c1;
    }
    ASSERT_TRUE(made);
    // One rotation later the ticket's key is no longer in use: e1 resumes the session (and
    // renews the ticket, which -sess_in does not keep).
    ASSERT_TRUE(eventually([&] { return key_changes(g, "e1") >= c1 + 1; }, 10s));
    EXPECT_EQ(s_client(g, g.port_of("e1"), proto, "-sess_in", sess), "Reused");
    // Three rotations later it has left the ring: a full handshake.
    ASSERT_TRUE(eventually(
        [&] { return key_changes(g, "e1") >= c1 + 3 && key_changes(g, "e0") >= c0 + 3; }, 15s));
    EXPECT_EQ(s_client(g, g.port_of("e1"), proto, "-sess_in", sess), "New");
    EXPECT_EQ(s_client(g, g.port_of("e0"), proto, "-sess_in", sess), "New");
  }
}

}  // namespace
}  // namespace vodgrid::test
