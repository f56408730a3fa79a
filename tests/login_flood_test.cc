// Issue 17, item 7's acceptance: 200 concurrent wrong logins for one account from one address are
// mostly answered 429 at once, while a good login of another account from another loopback
// address (127.0.0.2, the client socket bound to it) answers quickly; a name that is no account is
// answered as one that is. The auth daemon runs as a real process.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <functional>
#include <thread>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "base/fs.h"
#include "support/support.h"

namespace vodgrid::test {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

// One HTTP/1.1 exchange (Connection: close) from `source` (a 127.x address) to 127.0.0.1:port.
struct answer {
  int status = 0;
  std::string head;
  std::string body;
  std::chrono::steady_clock::duration took{};
};
answer exchange_from(const char* source, uint16_t port, const std::string& path,
                     const std::string& body, const std::string& token = {}) {
  answer a;
  auto t0 = std::chrono::steady_clock::now();
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in from{};
  from.sin_family = AF_INET;
  ::inet_pton(AF_INET, source, &from.sin_addr);
  auto to = loopback(port);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
    ::close(fd);
    return a;
  }
  std::string req = fmt::format(
      "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
      "Content-Length: {}\r\nConnection: close\r\n{}\r\n{}",
      path, body.size(), token.empty() ? "" : "Authorization: Bearer " + token + "\r\n", body);
  ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string raw;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) {
    raw.append(buf, size_t(n));
  }
  ::close(fd);
  a.took = std::chrono::steady_clock::now() - t0;
  a.status = status_of(raw);
  auto split = raw.find("\r\n\r\n");
  a.head = raw.substr(0, split);
  a.body = split == std::string::npos ? std::string() : raw.substr(split + 4);
  return a;
}

std::string login_body(const std::string& user, const std::string& password) {
  return json::serialize(json::object{{"user", user}, {"password", password}});
}

class LoginFlood : public ::testing::Test {
 protected:
  void SetUp() override {
    grid_.auth = auth_config{
        {"127.0.0.1", free_port()}, "sqlite://" + (dir_.path() / "auth.db").string(), true};
    station_config s;
    s.name = *station_id::parse("home");
    s.home = true;
    s.director.listen = {"127.0.0.1", free_port()};
    s.director.data_dir = dir_.path() / "home";
    s.director.copies = 1;
    engine_config e;
    e.name = *engine_id::parse("home-1");
    e.listen = {"127.0.0.1", free_port()};
    e.data_dirs = {dir_.path() / "home-1"};
    s.engines.push_back(e);
    grid_.stations.push_back(s);
    auto config = dir_.path() / "grid.toml";
    ASSERT_TRUE(write_file_durably(config, grid_.to_toml()));
    auto p = child_process::spawn({vodgrid_binary(), "auth", "--config", config.string()},
                                  dir_.path() / "auth.log");
    ASSERT_TRUE(p);
    proc_ = std::move(*p);
    ASSERT_TRUE(eventually([&] { return port_is_listening(port()); }, 20s));
    // A second subscriber, whose good login is timed during the flood.
    auto admin =
        exchange_from("127.0.0.1", port(), "/v1/login/operator", login_body("admin", "admin"));
    ASSERT_EQ(admin.status, 200) << admin.body;
    auto token = std::string(json::parse(admin.body).at("token").as_string());
    auto put = http(
        boost::beast::http::verb::put, grid_.auth->listen.url() + "/v1/accounts/subscribers/ann",
        R"({"password":"ann-pw","programs":"*"})", {{"Authorization", "Bearer " + token}});
    ASSERT_TRUE(put && put->status == 200);
  }
  void TearDown() override {
    if (HasFailure()) {
      auto t = read_file(dir_.path() / "auth.log");
      std::cerr << "auth log:\n" << (t ? *t : "") << "\n";
    }
  }
  uint16_t port() const { return grid_.auth->listen.port; }

  // `n` concurrent wrong logins of `user` from `source`; their answers. `midway` runs once half of
  // them are under way.
  std::vector<answer> flood(const char* source, const std::string& user, int n,
                            const std::function<void()>& midway) {
    std::vector<answer> out(n);
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([&, i] {
        out[i] = exchange_from(source, port(), "/v1/login/viewer", login_body(user, "guess"));
      });
      if (i == n / 2) {
        midway();
      }
    }
    for (auto& t : threads) {
      t.join();
    }
    return out;
  }

  temp_dir dir_;
  grid_config grid_;
  child_process proc_;
};

TEST_F(LoginFlood, WrongLoginsAreRefusedAtOnceAndAnotherAccountsGoodLoginStaysFast) {
  answer good;
  std::thread timed;
  auto t0 = std::chrono::steady_clock::now();
  auto answers = flood("127.0.0.1", "demo", 200, [&] {
    timed = std::thread([&] {
      good = exchange_from("127.0.0.2", port(), "/v1/login/viewer", login_body("ann", "ann-pw"));
    });
  });
  auto flood_took = std::chrono::steady_clock::now() - t0;
  timed.join();

  int throttled = 0, refused = 0;
  for (auto& a : answers) {
    if (a.status == 429) {
      ++throttled;
      EXPECT_NE(a.head.find("Retry-After: "), std::string::npos) << a.head;
      auto o = json::parse(a.body).as_object();
      EXPECT_EQ(o.at("error").as_string(), "too_many_requests");
      EXPECT_GE(o.at("retry_after").as_int64(), 1);
    } else {
      EXPECT_EQ(a.status, 401) << a.body;
      ++refused;
    }
  }
  std::cout << throttled << " answered 429, " << refused << " checked (401)\n";
  EXPECT_GE(throttled, 150) << refused << " checked";
  EXPECT_GE(refused, 1);
  EXPECT_EQ(good.status, 200) << good.body;
  // Measured on this 2-core machine: ~0.1 s in release and under ASan (Argon2id is libsodium's,
  // not instrumented); the bound leaves room for a loaded CI machine.
  auto took_ms = std::chrono::duration_cast<std::chrono::milliseconds>(good.took).count();
  std::cout << "good login during the flood: " << took_ms << " ms; flood answered in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(flood_took).count() << " ms\n";
  EXPECT_LT(took_ms, 500);
  EXPECT_GE(metric(grid_.auth->listen.url(), "vodgrid_auth_logins_throttled_total"), throttled);
}

TEST_F(LoginFlood, FailuresBackOffAndANameThatIsNoAccountIsAnsweredTheSame) {
  // Five free failures each, then the sixth sets a wait of 1 s: the seventh is told to wait.
  auto attempts = [&](const char* source, const std::string& user) {
    std::vector<answer> out;
    for (int i = 0; i < 7; ++i) {
      out.push_back(exchange_from(source, port(), "/v1/login/viewer", login_body(user, "x")));
    }
    return out;
  };
  auto statuses = [](const std::vector<answer>& as) {
    std::vector<int> out;
    for (auto& a : as) {
      out.push_back(a.status);
    }
    return out;
  };
  std::vector<int> expected{401, 401, 401, 401, 401, 401, 429};
  auto demo = attempts("127.0.0.3", "demo");
  EXPECT_EQ(statuses(demo), expected);
  // The account is throttled from every address, even with its right password.
  EXPECT_EQ(
      exchange_from("127.0.0.5", port(), "/v1/login/viewer", login_body("demo", "demo")).status,
      429);
  auto nobody = attempts("127.0.0.4", "nobody");
  EXPECT_EQ(statuses(nobody), expected);
  EXPECT_EQ(demo.back().body, nobody.back().body);
  EXPECT_EQ(demo[0].body, nobody[0].body);
  // Its wait over, the right password logs in.
  std::this_thread::sleep_for(1100ms);
  EXPECT_EQ(
      exchange_from("127.0.0.5", port(), "/v1/login/viewer", login_body("demo", "demo")).status,
      200);
}

}  // namespace
}  // namespace vodgrid::test
