#include "support/support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "auth/client.h"
#include "auth/guard.h"
#include "base/fs.h"
#include "net/tls.h"

#ifndef VODGRID_BINARY
#define VODGRID_BINARY "vodgrid"
#endif

namespace vodgrid::test {

namespace asio = boost::asio;
namespace http_ns = boost::beast::http;

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

int connect_loopback(uint16_t port, int rcvbuf) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (rcvbuf != 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  }
  sockaddr_in a = loopback(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool port_is_free(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = loopback(port);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

bool port_is_listening(uint16_t port) {
  int fd = connect_loopback(port);
  if (fd >= 0) {
    ::close(fd);
  }
  return fd >= 0;
}

// Claims a port for this process until it exits: an flock on a file named after the port, in a
// folder every test process shares. Two tests running at once never hand out the same port, and
// one process never hands out a port twice, even before the daemon it was meant for binds it.
bool claim_port(uint16_t port) {
  static std::mutex mu;
  static std::set<uint16_t> claimed;
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / "vodgrid-test-ports";
    std::error_code ec;
    std::filesystem::create_directories(d, ec);
    std::filesystem::permissions(d, std::filesystem::perms::all, ec);
    return d;
  }();
  std::lock_guard lock(mu);
  if (claimed.contains(port)) {
    return false;
  }
  auto file = dir / fmt::format("{}", port);
  int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) {
    return false;
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return false;
  }
  claimed.insert(port);  // the descriptor stays open, and the lock held, until the process ends
  return true;
}

uint16_t free_base_port() {
  for (;;) {
    uint16_t p = free_port();
    if (p < 2000 || p > 60000) {
      continue;
    }
    auto base = static_cast<uint16_t>(p - 20);  // base+20 is the free port found
    bool all = true;
    for (int off : {0, 1, 2, 10, 11, 12, 19, 21, 22, 23, 29}) {
      auto q = static_cast<uint16_t>(base + off);
      all = all && port_is_free(q) && claim_port(q);
    }
    if (all) {
      return base;
    }
  }
}

uint16_t free_port() {
  // Ports are handed out from a random starting point so that tests running in parallel rarely
  // contend for the same lock file.
  // They come from below the kernel's ephemeral range, which outgoing connections draw from: a
  // port chosen there can be taken by any client socket before the daemon binds it.
  static std::mt19937 rng(std::random_device{}() ^ static_cast<unsigned>(::getpid()));
  static const uint32_t ephemeral_low = [] {
    std::ifstream f("/proc/sys/net/ipv4/ip_local_port_range");
    uint32_t low = 32768;
    f >> low;
    return std::max<uint32_t>(low, 12000);
  }();
  static std::mutex mu;
  std::lock_guard lock(mu);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    auto port = static_cast<uint16_t>(10000 + rng() % (ephemeral_low - 10000));
    if (port_is_free(port) && claim_port(port)) {
      return port;
    }
  }
  throw std::runtime_error("no free port");
}

temp_dir::temp_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "vodgrid-test-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) {
    throw std::runtime_error("mkdtemp failed");
  }
  path_ = tmpl;
}

temp_dir::~temp_dir() {
  if (!std::getenv("VODGRID_KEEP_TEST_DATA")) {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
}

std::string vodgrid_binary() {
  return VODGRID_BINARY;
}

run_result run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  temp_dir d;
  auto out = d.path() / "out";
  auto err = d.path() / "err";
  // child_process sends both streams to one file; wrap in sh to split them.
  std::string cmd;
  for (auto& a : argv) {
    std::string q = "'";
    for (char c : a) {
      q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    }
    cmd += q + "' ";
  }
  cmd += "</dev/null >'" + out.string() + "' 2>'" + err.string() + "'";
  auto p = child_process::spawn({"/bin/sh", "-c", cmd});
  run_result r;
  if (!p) {
    r.err = p.err().detail;
    return r;
  }
  auto st = p->wait(timeout);
  if (!st) {
    p->stop(std::chrono::seconds(1));
    r.status = -1;
  } else {
    r.status = *st;
  }
  r.out = read_file(out).has_value() ? *read_file(out) : "";
  r.err = read_file(err).has_value() ? *read_file(err) : "";
  return r;
}

int rtsp_status(const std::string& response) {
  std::smatch m;
  if (std::regex_search(response, m, std::regex("^RTSP/1\\.0 ([0-9]{3}) "))) {
    return std::stoi(m[1]);
  }
  return 0;
}

std::vector<std::string> ffmpeg_packets(const std::vector<std::string>& input_args,
                                        std::string* log) {
  std::vector<std::string> argv{"/usr/bin/ffmpeg", "-nostdin", "-v", log ? "warning" : "error"};
  argv.insert(argv.end(), input_args.begin(), input_args.end());
  for (const char* a : {"-map", "0", "-c", "copy", "-f", "framemd5", "-"}) {
    argv.emplace_back(a);
  }
  auto r = run(argv, std::chrono::seconds(90));
  if (r.status != 0) {
    throw std::runtime_error(fmt::format("ffmpeg exited {}: {}", r.status, r.err));
  }
  if (log) {
    *log = r.err;
  }
  std::vector<std::string> out;
  std::istringstream in(r.out);
  std::string line;
  std::regex row("^ *([0-9]+), *-?[0-9]+, *-?[0-9]+, *[0-9]+, *([0-9]+), *([0-9a-f]{32})");
  for (std::smatch m; std::getline(in, line);) {
    if (std::regex_search(line, m, row)) {
      out.push_back(fmt::format("{},{},{}", m[1].str(), m[2].str(), m[3].str()));
    }
  }
  return out;
}

std::string segments_of(const std::filesystem::path& playlist) {
  auto text = read_file(playlist);
  if (!text) {
    throw std::runtime_error(text.err().detail);
  }
  std::string all;
  std::istringstream lines(*text);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line[0] != '#') {
      auto seg = read_file(playlist.parent_path() / line);
      if (!seg) {
        throw std::runtime_error(seg.err().detail);
      }
      all += *seg;
    }
  }
  return all;
}

gst_play gst_play_rtsp(const std::string& url, const std::vector<std::string>& extra,
                       const std::filesystem::path& work_dir) {
  auto received = work_dir / "gst-received.ts";
  std::filesystem::remove(received);
  std::vector<std::string> argv{"/usr/bin/gst-launch-1.0", "rtspsrc", "location=" + url};
  argv.insert(argv.end(), extra.begin(), extra.end());
  for (const char* a : {"!", "rtpmp2tdepay", "!", "filesink"}) {
    argv.emplace_back(a);
  }
  argv.push_back("location=" + received.string());
  gst_play p;
  p.run = run(argv, std::chrono::seconds(60));
  p.ended = p.run.out.find("Got EOS from element \"pipeline0\"") != std::string::npos;
  static const std::regex teardown(
      "ERROR: from element /GstPipeline:pipeline0/GstRTSPSrc:rtspsrc0: Could not write to "
      "resource\\.\nAdditional debug info:\n[^\n]*gst_rtspsrc_(try_send|pause) \\(\\): "
      "[^\n]*\nCould not send message\\. \\(Received end-of-file\\)\n");
  p.unexpected = p.ended ? std::regex_replace(p.run.err, teardown, "") : p.run.err;
  if (p.run.status != 0 && p.run.err.empty()) {
    p.unexpected = fmt::format("gst-launch exited {} with nothing on stderr", p.run.status);
  }
  if (auto ts = read_file(received)) {
    p.ts = std::move(*ts);
  }
  return p;
}

::testing::AssertionResult played_whole(const gst_play& play,
                                        const std::filesystem::path& playlist) {
  if (!play.ended) {
    return ::testing::AssertionFailure() << "gst-launch saw no end of stream\n"
                                         << play.run.out << play.run.err;
  }
  if (!play.unexpected.empty()) {
    return ::testing::AssertionFailure() << "gst-launch: " << play.unexpected << play.run.out;
  }
  auto want = segments_of(playlist);
  if (play.ts != want) {
    return ::testing::AssertionFailure()
           << "the MPEG-TS received (" << play.ts.size()
           << " bytes) differs from the source's segments (" << want.size() << " bytes)";
  }
  return ::testing::AssertionSuccess();
}

std::filesystem::path make_sample(const std::filesystem::path& dir, int seconds,
                                  int segment_seconds) {
  std::filesystem::create_directories(dir);
  auto playlist = dir / "index.m3u8";
  int fps = 25;
  auto r = run({"/usr/bin/ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                fmt::format("testsrc2=size=320x180:rate={}", fps),
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                std::to_string(seconds),
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                std::to_string(fps * segment_seconds),
                "-keyint_min",
                std::to_string(fps * segment_seconds),
                "-sc_threshold",
                "0",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-b:a",
                "64k",
                "-f",
                "hls",
                "-hls_time",
                std::to_string(segment_seconds),
                "-hls_playlist_type",
                "vod",
                "-hls_segment_filename",
                (dir / "seg%03d.ts").string(),
                playlist.string()});
  if (r.status != 0) {
    throw std::runtime_error("ffmpeg failed: " + r.err);
  }
  return playlist;
}

std::string login_token(const std::string& auth_url, const std::string& kind,
                        const std::string& user, const std::string& password) {
  auto r = http(http_ns::verb::post, auth_url + "/v1/login/" + kind,
                fmt::format(R"({{"user":"{}","password":"{}"}})", user, password),
                {{"Content-Type", "application/json"}});
  if (!r || r->status != 200) {
    throw std::runtime_error("login as " + user + " failed: " + (r ? r->body : r.err().detail));
  }
  auto t = auth::decode_login_reply(r->body);
  if (!t) {
    throw std::runtime_error(t.err().detail);
  }
  return t->token;
}

void provision_engines(const grid_config& grid, const std::string& operator_token) {
  auto put = [&](const std::string& name, const std::filesystem::path& dir,
                 const std::string& station) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    auto secret = auth::read_or_create_secret(dir);
    if (!secret) {
      throw std::runtime_error(secret.err().detail);
    }
    auto r =
        http(http_ns::verb::put, grid.auth->listen.url() + "/v1/accounts/engines/" + name,
             fmt::format(R"({{"password":"{}","station":"{}"}})", *secret, station),
             {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + operator_token}});
    if (!r || r->status != 200) {
      throw std::runtime_error("provisioning " + name +
                               " failed: " + (r ? r->body : r.err().detail));
    }
  };
  auto accounts = auth::service_accounts(grid);
  if (!accounts) {
    throw std::runtime_error(accounts.err().detail);
  }
  for (auto& a : *accounts) {
    put(a.name, a.secret_dir, a.station);
  }
}

namespace {

auth_config test_auth(const std::filesystem::path& dir) {
  return auth_config{{"127.0.0.1", free_port()}, "sqlite://" + (dir / "auth.db").string(), true};
}

// Starts `vodgrid auth`, waits for it, and provisions every director and engine.
child_process start_auth(const grid_config& grid, const std::filesystem::path& config_file,
                         const std::filesystem::path& dir) {
  auto p = child_process::spawn(
      {vodgrid_binary(), "auth", "--config", config_file.string(), "--name", "auth"},
      dir / "auth.log");
  if (!p) {
    throw std::runtime_error(p.err().detail);
  }
  if (!eventually([&] {
        auto r = http_get(grid.auth->listen.url() + "/healthz");
        return r && r->status == 200;
      })) {
    auto log = read_file(dir / "auth.log");
    throw std::runtime_error("auth did not start:\n" + (log ? *log : std::string()));
  }
  provision_engines(grid, login_token(grid.auth->listen.url(), "operator", "admin", "admin"));
  return std::move(*p);
}

}  // namespace

station_fixture::station_fixture(options o) {
  station_config s;
  s.name = *station_id::parse("st");
  s.director.listen = {"127.0.0.1", free_port()};
  s.director.data_dir = dir_.path() / "director";
  s.director.copies = static_cast<uint32_t>(o.copies);
  s.director.hot_load_percent = o.hot_load_percent;
  s.director.replica_idle = std::chrono::seconds(o.replica_idle_seconds);
  s.director.threads = o.director_threads;
  for (int i = 0; i < o.engines; ++i) {
    engine_config e;
    e.name = *engine_id::parse(fmt::format("e{}", i));
    e.listen = {"127.0.0.1", free_port()};
    for (int d = 0; d < o.dirs_per_engine; ++d) {
      e.data_dirs.push_back(dir_.path() / e.name.str() / fmt::format("d{}", d));
    }
    e.max_streams = o.max_streams;
    e.max_disk_bytes = o.max_disk_bytes;
    e.max_fills = o.max_fills;
    s.engines.push_back(e);
  }
  grid_.stations.push_back(s);
  grid_.heartbeat_interval = std::chrono::milliseconds(o.heartbeat_interval_ms);
  grid_.heartbeat_timeout = std::chrono::milliseconds(o.heartbeat_timeout_ms);
  grid_.timing.rtsp_session_timeout = std::chrono::milliseconds(o.rtsp_session_timeout_ms);
  if (o.with_auth) {
    grid_.auth = test_auth(dir_.path());
  }
  config_file_ = dir_.path() / "grid.toml";
  if (!write_file_durably(config_file_, grid_.to_toml())) {
    throw std::runtime_error("cannot write the config");
  }
  if (grid_.auth) {
    auth_ = start_auth(grid_, config_file_, dir_.path());
  }
  start_director();
  engines_.resize(static_cast<size_t>(o.engines));
  for (int i = 0; o.start_engines && i < o.engines; ++i) {
    start_engine(i);
  }
  // Ready once the director sees every engine up (without engines: once it answers).
  bool ok = eventually(
      [&] {
        auto r = http_get(director_url() + "/healthz");
        return r && r->body.find(fmt::format("\"engines_up\":{}",
                                             o.start_engines ? o.engines : 0)) != std::string::npos;
      },
      std::chrono::seconds(20));
  if (!ok) {
    throw std::runtime_error("the station did not come up; director log:\n" + log_of("st"));
  }
}

void print_logs_if_failed(const std::filesystem::path& dir) {
  if (!testing::Test::HasFailure()) {
    return;
  }
  constexpr size_t lines_per_log = 60;
  std::vector<std::filesystem::path> logs;
  std::error_code ec;
  for (auto& f : std::filesystem::directory_iterator(dir, ec)) {
    if (f.path().extension() == ".log") {
      logs.push_back(f.path());
    }
  }
  std::sort(logs.begin(), logs.end());
  for (auto& log : logs) {
    auto text = read_file(log);
    if (!text) {
      continue;
    }
    size_t from = text->size();
    for (size_t n = 0; n <= lines_per_log && from > 0; ++n) {
      from = text->rfind('\n', from - 1);
      if (from == std::string::npos) {
        from = 0;
        break;
      }
    }
    std::string_view tail = std::string_view(*text).substr(from == 0 ? 0 : from + 1);
    fmt::print(stderr, "==== {} (its last {} lines; the test failed) ====\n{}",
               log.filename().string(), lines_per_log, tail);
  }
}

station_fixture::~station_fixture() {
  for (auto& e : engines_) {
    e.signal(SIGTERM);
  }
  director_.signal(SIGTERM);
  for (auto& e : engines_) {
    e.stop(std::chrono::seconds(5));
  }
  director_.stop(std::chrono::seconds(5));
  if (grid_.auth) {
    auth_.signal(SIGTERM);
    auth_.stop(std::chrono::seconds(5));
  }
  print_logs_if_failed(dir_.path());
}

std::string station_fixture::director_url() const {
  return grid_.stations[0].director.listen.url();
}
std::string station_fixture::engine_url(int i) const {
  return grid_.stations[0].engines.at(static_cast<size_t>(i)).listen.url();
}
std::string station_fixture::engine_name(int i) const {
  return grid_.stations[0].engines.at(static_cast<size_t>(i)).name.str();
}

void station_fixture::kill_engine(int i, int sig) {
  auto& p = engines_.at(static_cast<size_t>(i));
  p.signal(sig);
  p.wait(std::chrono::seconds(10));
}

void station_fixture::start_engine(int i) {
  auto name = engine_name(i);
  auto p = child_process::spawn(
      {vodgrid_binary(), "engine", "--config", config_file_.string(), "--name", name},
      dir_.path() / (name + ".log"));
  if (!p) {
    throw std::runtime_error(p.err().detail);
  }
  engines_.at(static_cast<size_t>(i)) = std::move(*p);
  if (!eventually([&] {
        auto r = http_get(engine_url(i) + "/healthz");
        return r && r->status == 200;
      })) {
    throw std::runtime_error("engine did not start:\n" + log_of(name));
  }
}

void station_fixture::kill_director(int sig) {
  director_.signal(sig);
  director_.wait(std::chrono::seconds(10));
}

void station_fixture::start_director() {
  auto p = child_process::spawn(
      {vodgrid_binary(), "director", "--config", config_file_.string(), "--name", "st"},
      dir_.path() / "st.log");
  if (!p) {
    throw std::runtime_error(p.err().detail);
  }
  director_ = std::move(*p);
  if (!eventually([&] {
        auto r = http_get(director_url() + "/healthz");
        return r && r->status == 200;
      })) {
    throw std::runtime_error("director did not start:\n" + log_of("st"));
  }
}

run_result station_fixture::ingest(const std::string& source, const std::string& id) {
  std::vector<std::string> argv{vodgrid_binary(), "ingest", source,   "--title",     "Test " + id,
                                "--id",           id,       "--grid", director_url()};
  if (grid_.auth) {
    argv.push_back("--token");
    argv.push_back(operator_token());
  }
  return run(argv);
}

std::string station_fixture::log_of(const std::string& name) const {
  auto t = read_file(dir_.path() / (name + ".log"));
  return t ? *t : std::string();
}

namespace {

// A CA and one certificate of it for 127.0.0.1 and localhost, in `dir` (keys 0600).
void make_test_certs(const std::filesystem::path& dir) {
  constexpr const char* script = R"(set -e
q() { "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; }
key="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
q openssl req -x509 $key -keyout ca.key -out ca.crt -days 3 -subj /CN=vodgrid-test-ca
q openssl req $key -keyout leaf.key -out leaf.csr -subj /CN=127.0.0.1
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > leaf.cnf
q openssl x509 -req -in leaf.csr -CA ca.crt -CAkey ca.key -set_serial 0x$(openssl rand -hex 8) \
  -days 2 -extfile leaf.cnf -out leaf.crt
chmod 600 ca.key leaf.key
)";
  std::filesystem::create_directories(dir);
  auto r = run({"/bin/bash", "-c", fmt::format("cd '{}' && {}", dir.string(), script)});
  if (r.status != 0) {
    throw std::runtime_error("test certificates: " + r.err);
  }
}

}  // namespace

grid_fixture::grid_fixture(std::vector<station_spec> stations, std::string database,
                           bool with_content, bool with_auth, replicas rep, bool tls) {
  int registries = rep.registries;
  if (tls && (registries > 1 || rep.content_managers > 1)) {
    throw std::invalid_argument("grid_fixture: tls with one registry and one content manager");
  }
  grid_.registry = registry_config{
      {"127.0.0.1", free_port()},
      database.empty() ? "sqlite://" + (dir_.path() / "registry.db").string() : database};
  if (registries > 1) {
    grid_.registry->urls.push_back(grid_.registry->listen.url());
    for (int i = 2; i <= registries; ++i) {
      grid_.registry->urls.push_back(fmt::format("http://127.0.0.1:{}", free_port()));
    }
  }
  if (with_content) {
    grid_.content = content_config{{"127.0.0.1", free_port()},
                                   "sqlite://" + (dir_.path() / "content.db").string(),
                                   dir_.path() / "content"};
    grid_.content->publish_lease = rep.publish_lease;
    for (int i = 2; i <= rep.content_managers; ++i) {
      standby_content_ports_.push_back(free_port());
    }
  }
  if (with_auth) {
    grid_.auth = test_auth(dir_.path());
  }
  grid_.heartbeat_interval = std::chrono::milliseconds(100);
  grid_.heartbeat_timeout = std::chrono::milliseconds(1000);
  for (size_t i = 0; i < stations.size(); ++i) {
    auto& spec = stations[i];
    station_config s;
    s.name = *station_id::parse(spec.name);
    s.home = i == 0;
    s.x_km = spec.x_km;
    s.y_km = spec.y_km;
    s.uplink_bits_per_second = spec.uplink_mbps * 1'000'000;
    s.director.listen = {"127.0.0.1", free_port()};
    s.director.data_dir = dir_.path() / spec.name;
    s.director.copies = static_cast<uint32_t>(std::min(spec.engines, 2));
    s.director.replica_idle = std::chrono::seconds(spec.replica_idle_seconds);
    s.director.parallel_copies = spec.parallel_copies;
    s.director.repair_grace = std::chrono::seconds(spec.repair_grace_seconds);
    for (int e = 1; e <= spec.engines; ++e) {
      engine_config ec;
      ec.name = *engine_id::parse(fmt::format("{}-{}", spec.name, e));
      ec.listen = {"127.0.0.1", free_port()};
      ec.max_streams = spec.max_streams;
      ec.max_disk_bytes = spec.max_disk_bytes;
      ec.data_dirs = {dir_.path() / ec.name.str()};
      s.engines.push_back(ec);
    }
    grid_.stations.push_back(s);
  }
  if (tls) {
    make_test_certs(dir_.path() / "tls");
    grid_.tls.ca = dir_.path() / "tls" / "ca.crt";
    auto serve_tls = [&](listen_address& a) {
      a.tls_cert = leaf_cert();
      a.tls_key = leaf_key();
    };
    serve_tls(grid_.registry->listen);
    if (grid_.content) {
      serve_tls(grid_.content->listen);
    }
    if (grid_.auth) {
      serve_tls(grid_.auth->listen);
    }
    for (auto& s : grid_.stations) {
      serve_tls(s.director.listen);
      for (auto& e : s.engines) {
        serve_tls(e.listen);
      }
    }
    net::set_default_tls_ca(grid_.tls.ca);  // this process's http() reads the daemons
  }
  config_file_ = dir_.path() / "grid.toml";
  if (!write_file_durably(config_file_, grid_.to_toml())) {
    throw std::runtime_error("cannot write the config");
  }
  if (grid_.auth) {
    procs_["auth"] = start_auth(grid_, config_file_, dir_.path());
  }
  start("registry");
  for (int i = 2; i <= registries; ++i) {
    start(fmt::format("registry-{}", i));
  }
  for (auto& s : grid_.stations) {
    start(s.name.str());
    for (auto& e : s.engines) {
      start(e.name.str());
    }
  }
  bool ok = eventually(
      [&] {
        auto r = http_get(registry_url() + "/healthz");
        return r && r->body.find(fmt::format("\"stations_up\":{}", stations.size())) !=
                        std::string::npos;
      },
      std::chrono::seconds(20));
  for (auto& s : grid_.stations) {
    ok = ok && eventually(
                   [&] {
                     auto r = http_get(s.director.listen.url() + "/healthz");
                     return r && r->body.find(fmt::format("\"engines_up\":{}", s.engines.size())) !=
                                     std::string::npos;
                   },
                   std::chrono::seconds(20));
  }
  if (!ok) {
    throw std::runtime_error("the grid did not come up; registry log:\n" + log_of("registry"));
  }
  if (grid_.content) {
    start("content");
  }
}

grid_fixture::~grid_fixture() {
  for (auto& [name, p] : procs_) {
    p.signal(SIGTERM);
  }
  for (auto& [name, p] : procs_) {
    p.stop(std::chrono::seconds(5));
  }
  print_logs_if_failed(dir_.path());
}

std::string grid_fixture::director_url(const std::string& station) const {
  return grid_.find_station(station)->director.listen.url();
}

std::string grid_fixture::engine_url(const std::string& engine) const {
  return grid_.find_engine(engine)->listen.url();
}

std::vector<std::string> grid_fixture::engines_of(const std::string& station) const {
  std::vector<std::string> out;
  for (auto& e : grid_.find_station(station)->engines) {
    out.push_back(e.name.str());
  }
  return out;
}

std::vector<std::string> grid_fixture::argv_of(const std::string& name) const {
  if (name.starts_with("registry-") || name.starts_with("content-")) {
    auto url = url_of(name);
    return {vodgrid_binary(), name.substr(0, name.find('-')), "--config", config_file_.string(),
            "--listen",       url.substr(url.find("//") + 2)};
  }
  std::string role = name == "registry" || name == "content" || name == "auth" ? name
                     : grid_.find_station(name)                                ? "director"
                                                                               : "engine";
  return {vodgrid_binary(), role, "--config", config_file_.string(), "--name", name};
}

void grid_fixture::kill(const std::string& name, int sig) {
  auto& p = procs_.at(name);
  p.signal(sig);
  p.wait(std::chrono::seconds(10));
}

void grid_fixture::signal(const std::string& name, int sig) {
  procs_.at(name).signal(sig);
}

void grid_fixture::start(const std::string& name) {
  auto p = child_process::spawn(argv_of(name), dir_.path() / (name + ".log"));
  if (!p) {
    throw std::runtime_error(p.err().detail);
  }
  procs_[name] = std::move(*p);
  std::string url = url_of(name);
  if (!eventually([&] {
        auto r = http_get(url + "/healthz");
        return r && r->status == 200;
      })) {
    throw std::runtime_error(name + " did not start:\n" + log_of(name));
  }
}

std::string grid_fixture::url_of(const std::string& name) const {
  if (name.starts_with("registry-")) {
    return registry_url(std::stoul(name.substr(9)) - 1);
  }
  if (name.starts_with("content-")) {
    return fmt::format("http://127.0.0.1:{}",
                       standby_content_ports_.at(std::stoul(name.substr(8)) - 2));
  }
  return name == "registry"         ? registry_url()
         : name == "content"        ? content_url()
         : name == "auth"           ? auth_url()
         : grid_.find_station(name) ? director_url(name)
                                    : engine_url(name);
}

run_result grid_fixture::ingest(const std::string& source, const std::string& id,
                                const std::string& stations, const std::string& prefetch) {
  // --remux: the fixture's programs are one rendition each, the segments the tests compare with
  // the source's (renditions_test ingests ladders on its own).
  std::vector<std::string> argv{vodgrid_binary(), "ingest", source,   "--title",      "Test " + id,
                                "--id",           id,       "--grid", registry_url(), "--remux"};
  if (!ca().empty()) {
    // A CLI command given only --grid trusts a private CA through OpenSSL's SSL_CERT_FILE.
    argv.insert(argv.begin(), {"/usr/bin/env", "SSL_CERT_FILE=" + ca().string()});
  }
  if (!stations.empty()) {
    argv.push_back("--stations");
    argv.push_back(stations);
  }
  if (!prefetch.empty()) {
    argv.push_back("--prefetch");
    argv.push_back(prefetch);
  }
  if (grid_.auth) {
    argv.push_back("--token");
    argv.push_back(operator_token());
  }
  return run(argv);
}

double metric(const std::string& url, const std::string& name) {
  auto r = http_get(url + "/metrics");
  if (!r) {
    return -1;
  }
  std::smatch m;
  std::regex re(name + " ([0-9.e+]+)");
  return std::regex_search(r->body, m, re) ? std::stod(m[1]) : 0;
}

std::string grid_fixture::log_of(const std::string& name) const {
  auto t = read_file(dir_.path() / (name + ".log"));
  return t ? *t : std::string();
}

namespace {
asio::awaitable<result<net::client_response>> do_http(http_ns::verb method, std::string url,
                                                      std::string body,
                                                      net::http_client::header_list headers) {
  net::http_client client(co_await asio::this_coro::executor);
  co_return co_await client.request(method, std::move(url), std::move(body), std::move(headers));
}
}  // namespace

result<net::client_response> http(http_ns::verb method, const std::string& url,
                                  const std::string& body, net::http_client::header_list headers) {
  asio::io_context io;
  auto f = asio::co_spawn(io, do_http(method, url, body, std::move(headers)), asio::use_future);
  io.run();
  return f.get();
}

std::string raw_exchange(uint16_t port, const std::string& bytes,
                         std::chrono::milliseconds timeout) {
  int fd = connect_loopback(port);
  if (fd < 0) {
    return {};
  }
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      break;
    }
    off += static_cast<size_t>(n);
  }
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[65536];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      break;
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      break;
    }
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

int status_of(const std::string& raw) {
  if (raw.rfind("HTTP/1.1 ", 0) != 0 || raw.size() < 12) {
    return 0;
  }
  return std::atoi(raw.substr(9, 3).c_str());
}

}  // namespace vodgrid::test
