// TLS across a grid of real processes (issue 17, items 1 and 3): a director and two engines each
// serving HTTPS with a certificate of a test CA, verifying each other against it ([tls] ca);
// curl follows the director's redirect to an engine over HTTPS, ffmpeg reads a program through
// the director over HTTPS with exactly the source's packets; SIGHUP swaps the director's
// certificate; plain HTTP on a TLS port, an expired certificate and an engine whose certificate
// the CA did not sign are refused and logged while the grid goes on.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <boost/json/parse.hpp>

#include "base/fs.h"
#include "base/process.h"
#include "cli/local_tls.h"
#include "net/tls.h"
#include "support/support.h"

namespace vodgrid::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A CA and leaves for 127.0.0.1 (leaf1, leaf2), an expired one (old), and a leaf of another,
// unknown CA (rogue); keys 0600.
constexpr const char* make_certs = R"(set -e
q() { "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; }
key() { echo "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"; }
q openssl req -x509 $(key) -keyout ca.key -out ca.crt -days 3 -subj /CN=vodgrid-test-ca
q openssl req -x509 $(key) -keyout rogue-ca.key -out rogue-ca.crt -days 3 -subj /CN=rogue-ca
printf 'subjectAltName=IP:127.0.0.1\n' > san.cnf
leaf() {  # name, ca
  q openssl req $(key) -keyout $1.key -out $1.csr -subj /CN=$1
  q openssl x509 -req -in $1.csr -CA $2.crt -CAkey $2.key -set_serial 0x$(openssl rand -hex 8) \
    -days 2 -extfile san.cnf -out $1.crt
}
leaf leaf1 ca; leaf leaf2 ca; leaf rogue rogue-ca
printf '[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\n' > ca.cnf
printf 'default_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n' >> ca.cnf
: > index.txt; echo 01 > serial
q openssl req $(key) -keyout old.key -out old.csr -subj /CN=old
q openssl ca -batch -config ca.cnf -cert ca.crt -keyfile ca.key -in old.csr -out old.crt \
  -startdate 20200101000000Z -enddate 20200102000000Z -notext
chmod 600 *.key
)";

std::string streamhash(const std::vector<std::string>& input_args) {
  std::vector<std::string> argv{"/usr/bin/ffmpeg", "-nostdin", "-v", "error"};
  argv.insert(argv.end(), input_args.begin(), input_args.end());
  for (const char* a : {"-map", "0", "-c", "copy", "-f", "streamhash", "-"}) {
    argv.emplace_back(a);
  }
  auto r = run(argv);
  EXPECT_EQ(r.status, 0) << r.err;
  return r.out;
}

// A station of real processes, every port HTTPS: director `st` and engines e0, e1 with leaf1.
class tls_station {
 public:
  tls_station() {
    auto r = run({"/bin/bash", "-c", fmt::format("cd '{}' && {}", certs().string(), make_certs)});
    if (r.status != 0) {
      throw std::runtime_error("certificates: " + r.err);
    }
    // The director's files are its own copies: the test renews them in place.
    fs::copy_file(certs() / "leaf1.crt", certs() / "director.crt");
    fs::copy_file(certs() / "leaf1.key", certs() / "director.key");
    station_config s;
    s.name = *station_id::parse("st");
    s.director.listen = {"127.0.0.1", free_port(), certs() / "director.crt",
                         certs() / "director.key"};
    s.director.data_dir = dir_.path() / "director";
    s.director.copies = 2;
    for (int i = 0; i < 2; ++i) {
      engine_config e;
      e.name = *engine_id::parse(fmt::format("e{}", i));
      e.listen = {"127.0.0.1", free_port(), certs() / "leaf1.crt", certs() / "leaf1.key"};
      e.data_dirs = {dir_.path() / e.name.str() / "d0"};
      s.engines.push_back(e);
    }
    grid_.stations.push_back(s);
    grid_.heartbeat_interval = 100ms;
    grid_.heartbeat_timeout = 1000ms;
    grid_.tls.ca = certs() / "ca.crt";
    write_config();
    net::set_default_tls_ca(ca());  // this process's test::http_get reads the daemons too
    director_ = spawn("director", "st");
    for (int i = 0; i < 2; ++i) {
      engines_.push_back(spawn("engine", fmt::format("e{}", i)));
    }
    if (!engines_up(2, 20s)) {
      throw std::runtime_error("the station did not come up:\n" + log_of("st") + log_of("e0"));
    }
  }
  ~tls_station() {
    for (auto& e : engines_) {
      e.stop(5s);
    }
    director_.stop(5s);
  }

  bool engines_up(int n, std::chrono::milliseconds within) {
    return eventually(
        [&] {
          // curl -k: the director's certificate may be one the test makes it serve unverified.
          auto h = run({"/usr/bin/curl", "-sk", "-m", "2", director_url() + "/healthz"});
          return h.out.find(fmt::format("\"engines_up\":{}", n)) != std::string::npos;
        },
        within);
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
  void write_config() {
    if (!write_file_durably(config_, grid_.to_toml())) {
      throw std::runtime_error("cannot write the config");
    }
  }
  fs::path certs() const { return dir_.path(); }
  fs::path ca() const { return certs() / "ca.crt"; }
  std::string director_url() const { return grid_.stations[0].director.listen.url(); }
  std::string log_of(const std::string& name) const {
    auto t = read_file(dir_.path() / (name + ".log"));
    return t ? *t : std::string();
  }
  // `vodgrid ingest` over HTTPS: the CLI trusts the CA through SSL_CERT_FILE.
  run_result ingest(const std::string& source, const std::string& id) {
    return run({"/usr/bin/env", "SSL_CERT_FILE=" + ca().string(), vodgrid_binary(), "ingest",
                source, "--title", "Test " + id, "--id", id, "--grid", director_url()});
  }

  temp_dir dir_;
  fs::path config_ = dir_.path() / "grid.toml";
  grid_config grid_;
  child_process director_;
  std::vector<child_process> engines_;
};

TEST(TlsGrid, CurlAndFfmpegReadAProgramOverHttpsThroughTheDirector) {
  tls_station st;
  ASSERT_EQ(st.director_url().rfind("https://", 0), 0u);
  temp_dir src;
  auto playlist = make_sample(src.path(), 6, 1);
  auto in = st.ingest(src.path().string(), "movie");
  ASSERT_EQ(in.status, 0) << in.err << st.log_of("st");

  // The program's playlist over HTTPS, then a segment through the director's redirect, which
  // names an engine's https:// URL that curl follows trusting the CA.
  auto ca = st.ca().string();
  auto program = st.director_url() + "/v1/programs/movie/";
  auto pl = run({"/usr/bin/curl", "-sS", "--fail", "--cacert", ca, program + "index.m3u8"});
  ASSERT_EQ(pl.status, 0) << pl.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(pl.out, m, std::regex("\n([^#\n][^\n]*)"))) << pl.out;
  auto seg_url = program + m[1].str();
  auto hop = run({"/usr/bin/curl", "-sS", "--fail", "--cacert", ca, "-o", "/dev/null", "-w",
                  "%{num_redirects} %{url_effective} %{size_download}", "-L", seg_url});
  ASSERT_EQ(hop.status, 0) << hop.err;
  std::vector<std::string> engines;
  for (auto& e : st.grid_.stations[0].engines) {
    engines.push_back(e.listen.url());
  }
  EXPECT_EQ(hop.out.rfind("1 https://127.0.0.1:", 0), 0u) << hop.out;
  bool at_engine = std::any_of(engines.begin(), engines.end(), [&](const std::string& e) {
    return hop.out.find(" " + e + "/") != std::string::npos;
  });
  EXPECT_TRUE(at_engine) << hop.out;
  // Without the CA curl refuses the director.
  EXPECT_NE(run({"/usr/bin/curl", "-sS", seg_url}).status, 0);

  // ffmpeg verifying the director against the CA reads exactly the source's packets.
  auto via_grid = streamhash({"-ca_file", ca, "-tls_verify", "1", "-i", program + "index.m3u8"});
  auto from_source = streamhash({"-i", playlist.string()});
  EXPECT_FALSE(via_grid.empty());
  EXPECT_EQ(via_grid, from_source);
}

TEST(TlsGrid, SighupRenewsTheDirectorsCertificateAndBadPeersAreRefused) {
  tls_station st;
  // The director's certificate as a client sees it (not verified: the rogue one is shown too).
  auto subject = [&] {
    auto r = run(
        {"/usr/bin/curl", "-sS", "-v", "-k", "-o", "/dev/null", st.director_url() + "/healthz"});
    std::smatch m;
    return std::regex_search(r.err, m, std::regex("subject: CN ?= ?(\\w+)")) ? m[1].str()
                                                                             : "none: " + r.err;
  };
  auto renew = [&](const std::string& name) {
    fs::copy_file(st.certs() / (name + ".crt"), st.certs() / "director.crt",
                  fs::copy_options::overwrite_existing);
    fs::copy_file(st.certs() / (name + ".key"), st.certs() / "director.key",
                  fs::copy_options::overwrite_existing);
    st.director_.signal(SIGHUP);
  };
  EXPECT_EQ(subject(), "leaf1");
  renew("leaf2");
  EXPECT_TRUE(eventually([&] { return subject() == "leaf2"; }, 5s)) << st.log_of("st");

  // A renewal gone wrong (an expired certificate) keeps the one in use, said in the log.
  renew("old");
  EXPECT_TRUE(eventually(
      [&] { return st.log_of("st").find("the certificate in use stays") != std::string::npos; },
      5s))
      << st.log_of("st");
  EXPECT_EQ(subject(), "leaf2");

  // A director whose certificate the CA did not sign: an engine connecting afresh (a restart;
  // e1 keeps its connection made before, as every open connection keeps its certificate)
  // refuses it as a peer, one log line naming it and why, and is not in rotation; back to a good
  // certificate, it returns.
  renew("rogue");
  EXPECT_TRUE(eventually([&] { return subject() == "rogue"; }, 5s));
  st.engines_[0].stop(5s);
  st.engines_[0] = st.spawn("engine", "e0");
  auto refusal = fmt::format(
      "tls: peer {} refused: certificate refused: unable to get local issuer certificate",
      st.director_url());
  EXPECT_TRUE(eventually([&] { return st.log_of("e0").find(refusal) != std::string::npos; }, 10s))
      << st.log_of("e0");
  EXPECT_TRUE(st.engines_up(1, 10s));
  renew("leaf1");
  EXPECT_TRUE(st.engines_up(2, 15s)) << st.log_of("e0");

  // Plain HTTP to the TLS port: no answer, the director goes on.
  auto plain = st.director_url();
  plain.replace(0, 5, "http");
  EXPECT_NE(run({"/usr/bin/curl", "-sS", "-m", "5", plain + "/healthz"}).status, 0);
  EXPECT_TRUE(st.director_.running());
  EXPECT_TRUE(st.engines_up(2, 5s));

  // An engine with an expired certificate does not start: one line, exit != 0.
  auto& e1 = st.grid_.stations[0].engines[1];
  e1.listen.tls_cert = st.certs() / "old.crt";
  e1.listen.tls_key = st.certs() / "old.key";
  st.write_config();
  st.engines_[1].stop(5s);
  auto refused =
      run({vodgrid_binary(), "engine", "--config", st.config_.string(), "--name", "e1"}, 20s);
  EXPECT_NE(refused.status, 0);
  EXPECT_NE(refused.err.find("has expired"), std::string::npos) << refused.err;
}

// The TLS handshakes an engine has answered so far (full and resumed); -1 if it did not answer.
double handshakes(const std::string& engine_url) {
  auto r = http_get(engine_url + "/metrics");
  if (!r) {
    return -1;
  }
  double n = 0;
  std::regex re("vodgrid_tls_handshakes_total\\{result=\"(full|resumed)\"\\} ([0-9.e+]+)");
  for (std::sregex_iterator it(r->body.begin(), r->body.end(), re), end; it != end; ++it) {
    n += std::stod((*it)[2]);
  }
  return n;
}

// `vodgrid play` over HTTPS (issue 17): the playlist and the 302s from the director, each segment
// from the engine it names, every certificate verified against the CA given with --ca; a viewer
// keeps one connection per engine (no handshake per segment). With the wrong CA, or a --ca that is
// no CA: refused with one line, before any viewer plays.
TEST(TlsGrid, ThePlayConsoleReadsEverySegmentOverHttpsAndRefusesAnUntrustedGrid) {
  tls_station st;
  temp_dir src;
  make_sample(src.path(), 12, 1);
  auto in = st.ingest(src.path().string(), "movie");
  ASSERT_EQ(in.status, 0) << in.err << st.log_of("st");
  auto playlist = st.director_url() + "/v1/programs/movie/index.m3u8";
  std::vector<std::string> engines;
  double before = 0;
  for (auto& e : st.grid_.stations[0].engines) {
    engines.push_back(e.listen.url());
    before += handshakes(e.listen.url());
  }
  constexpr int viewers = 4;
  auto play =
      run({"/usr/bin/env", "-u", "SSL_CERT_FILE", vodgrid_binary(), "play", playlist, "--ca",
           st.ca().string(), "--viewers", std::to_string(viewers), "--threads", "1", "--json"});
  ASSERT_EQ(play.status, 0) << play.err << play.out;
  auto report = boost::json::parse(play.out).as_object();
  auto segments = report.at("segments").to_number<int64_t>();
  EXPECT_EQ(segments, viewers * 12) << play.out;
  EXPECT_EQ(report.at("segments_failed").to_number<int64_t>(), 0) << play.out;
  EXPECT_EQ(report.at("digest_mismatches").to_number<int64_t>(), 0) << play.out;
  EXPECT_EQ(report.at("retries").to_number<int64_t>(), 0) << play.out;
  // Every segment came from an engine over https://, which the report names.
  int64_t from_engines = 0;
  for (auto& [origin, n] : report.at("engines").as_object()) {
    EXPECT_NE(std::find(engines.begin(), engines.end(), std::string(origin)), engines.end())
        << origin;
    from_engines += n.to_number<int64_t>();
  }
  EXPECT_EQ(from_engines, segments);
  // A viewer's connection to an engine is kept for its next segments there: at most one
  // handshake per viewer and engine, rather than one per segment. Besides: the director's
  // connections for its preload orders (up to one per viewer in flight and engine), the console's
  // two reads of each engine's /metrics, and this test's own second reads.
  double after = 0;
  for (auto& e : engines) {
    after += handshakes(e);
  }
  EXPECT_GT(after - before, 0);
  EXPECT_LE(after - before, viewers * 2 + viewers * 2 + 2 * 2 + 2) << "segments: " << segments;

  // The CA of another grid: one line, no report.
  auto wrong = run({"/usr/bin/env", "-u", "SSL_CERT_FILE", vodgrid_binary(), "play", playlist,
                    "--ca", (st.certs() / "rogue-ca.crt").string(), "--viewers", "2"});
  EXPECT_NE(wrong.status, 0);
  EXPECT_EQ(wrong.err, fmt::format("vodgrid play: tls: peer {} refused: certificate refused: "
                                   "unable to get local issuer certificate\n",
                                   st.director_url()));
  EXPECT_TRUE(wrong.out.empty()) << wrong.out;
  // No CA at all (the system's trust store does not know the test CA): the same.
  auto none = run({"/usr/bin/env", "-u", "SSL_CERT_FILE", vodgrid_binary(), "play", playlist});
  EXPECT_NE(none.status, 0);
  EXPECT_EQ(std::count(none.err.begin(), none.err.end(), '\n'), 1) << none.err;
  EXPECT_NE(none.err.find("certificate refused"), std::string::npos) << none.err;
  // A --ca that is not a CA file.
  auto notca = run({vodgrid_binary(), "play", playlist, "--ca", st.certs().string()});
  EXPECT_NE(notca.status, 0);
  EXPECT_EQ(std::count(notca.err.begin(), notca.err.end(), '\n'), 1) << notca.err;
  EXPECT_EQ(notca.err.rfind("vodgrid play: --ca: ", 0), 0u) << notca.err;
  // SSL_CERT_FILE, as OpenSSL honours it, stands for --ca.
  auto env = run(
      {"/usr/bin/env", "SSL_CERT_FILE=" + st.ca().string(), vodgrid_binary(), "play", playlist});
  EXPECT_EQ(env.status, 0) << env.err << env.out;
}

// A client command against an https:// grid whose CA it was not given says so once: its own line,
// not also the net layer's warning (a daemon's log line) before it.
TEST(TlsGrid, LoginWithoutTheCaFailsWithOneLine) {
  tls_station st;
  auto login = [&](std::vector<std::string> env) {
    std::vector<std::string> argv{"/usr/bin/env", "-u", "SSL_CERT_FILE", "-u", "SSL_CERT_DIR"};
    argv.insert(argv.end(), env.begin(), env.end());
    for (auto a : {vodgrid_binary(), std::string("login"), std::string("--user"),
                   std::string("demo"), std::string("--password"), std::string("demo"),
                   std::string("--grid"), st.director_url()}) {
      argv.push_back(a);
    }
    return run(argv);
  };
  auto r = login({});
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.rfind("vodgrid login: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("certificate refused: unable to get local issuer certificate"),
            std::string::npos)
      << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  // Given the CA, the same command reaches the director (this station has no auth server).
  r = login({"SSL_CERT_FILE=" + st.ca().string()});
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(r.err, "vodgrid login: this grid has no auth server: no token is needed\n");
}

// `vodgrid up --tls` as a newcomer uses it: the commands it prints, pasted into a shell as they
// are (the operator's login, then the TLS lines: the CLI's CA, curl, the viewer's login, ffplay
// over https:// and rtsps://), each works once a program is ingested. ffplay is run as ffmpeg
// reading two seconds into nothing.
TEST(TlsGrid, TheCommandsUpTlsPrintsWorkAsPrinted) {
  temp_dir d;
  auto base = free_base_port();
  auto out = d.path() / "up.out";
  auto up = child_process::spawn(
      {"/bin/sh", "-c",
       fmt::format("exec '{}' up --tls --data '{}' --base-port {} > '{}' 2>&1", vodgrid_binary(),
                   (d.path() / "data").string(), base, out.string())});
  ASSERT_TRUE(up);
  auto printed = [&] {
    auto t = read_file(out);
    return t ? *t : std::string();
  };
  ASSERT_TRUE(eventually([&] { return printed().find("\nlogs: ") != std::string::npos; }, 90s))
      << printed();
  auto sample = make_sample(d.path() / "src", 4, 1);

  // The printed lines, with the program's id for <id> and the binary for `vodgrid`.
  std::vector<std::string> operator_login, tls_lines;
  std::istringstream lines(printed());
  bool in_tls = false;
  for (std::string line; std::getline(lines, line);) {
    line = std::regex_replace(line, std::regex(R"(\bvodgrid )"), "'" + vodgrid_binary() + "' ");
    line = std::regex_replace(line, std::regex("<id>"), "film");
    if (auto at = line.find("export VODGRID_TOKEN="); at != std::string::npos) {
      operator_login.push_back(line.substr(at));
    }
    if (line.starts_with("TLS: ")) {
      in_tls = true;
    } else if (in_tls && line.starts_with("  ")) {
      // ffplay ARGS "URL" [# comment] -> ffmpeg ARGS -i "URL" for two seconds
      tls_lines.push_back(
          std::regex_replace(line, std::regex(R"(^  ffplay (.*)("[^"]+")(.*)$)"),
                             "  ffmpeg -v error -nostdin $1-i $2 -t 2 -f null - $3"));
    } else {
      in_tls = false;
    }
  }
  ASSERT_EQ(operator_login.size(), 1u) << printed();
  ASSERT_EQ(tls_lines.size(), 5u) << printed();  // export, curl, login, ffplay https, rtsps
  std::string script = "set -e\n" + tls_lines[0] + "\n" + operator_login[0] + "\n";
  script += fmt::format(
      "'{}' ingest '{}' --title film --id film --remux --grid https://127.0.0.1:{}"
      " > /dev/null\n",
      vodgrid_binary(), sample.string(), base);
  for (size_t i = 1; i < tls_lines.size(); ++i) {
    script += tls_lines[i] + "\n";
  }
  script += "echo every-command-worked\n";
  auto r = run({"/bin/sh", "-c", script}, 180s);
  EXPECT_EQ(r.status, 0) << script << r.out << r.err;
  EXPECT_NE(r.out.find("every-command-worked"), std::string::npos) << script << r.out << r.err;
  up->signal(SIGINT);
  EXPECT_TRUE(up->wait(30s).has_value());
}

// A malformed `tls` anywhere in the grid's TOML (a daemon's table, [tls] ca) stops the daemon
// before it opens anything: one line on stderr naming the table (the daemon) and the key, exit !=
// 0, its port never listening, its data folder never made.
TEST(TlsConfig, AMalformedTlsStopsTheDaemonWithOneLineNamingTheDaemonAndTheKey) {
  temp_dir dir;
  auto cfg = dir.path() / "grid.toml";
  auto d = dir.path().string();
  ASSERT_EQ(run({"/bin/bash", "-c", fmt::format("cd '{}' && {}", d, make_certs)}).status, 0);
  auto director_port = free_port();
  auto engine_port = free_port();
  // The grid with `top` before the station, `director` in the director's table and `engine`
  // in the engine's.
  auto grid = [&](const std::string& top, const std::string& director, const std::string& engine) {
    return fmt::format(
        "{}\n[[station]]\nname = \"s\"\ndirector = {{ listen = \"127.0.0.1:{}\", "
        "data_dir = \"{}/director\", copies = 1{} }}\n[[station.engine]]\nname = \"e1\"\n"
        "listen = \"127.0.0.1:{}\"\ndata_dirs = [\"{}/e1\"]\n{}\n",
        top, director_port, d, director.empty() ? "" : ", " + director, engine_port, d, engine);
  };
  auto good = fmt::format("{{ cert = \"{0}/leaf1.crt\", key = \"{0}/leaf1.key\" }}", d);
  struct bad_case {
    std::string role, toml, want;
  } cases[] = {
      {"engine", grid("", "", "tls = \"x\""),
       "[[station.engine]] e1: 'tls' must be a table { cert = \"cert.pem\", key = \"key.pem\" }"},
      {"engine", grid("", "", fmt::format("tls = {{ cert = \"{}/leaf1.crt\" }}", d)),
       "[[station.engine]] e1: 'tls' needs 'key' (a PEM file's path)"},
      {"engine", grid("", "", "tls = { cert = \"a.crt\", key = \"a.key\", ca = \"ca.crt\" }"),
       "[[station.engine]] e1: 'tls': unknown key 'ca' (it takes cert and key)"},
      {"engine", grid("", "", "tls = { cert = 1, key = \"a.key\" }"),
       "[[station.engine]] e1: 'tls.cert' must be a non-empty string (a PEM file's path)"},
      {"engine", grid("", "", "tls = { cert = \"a.crt\", key = \"\" }"),
       "[[station.engine]] e1: 'tls.key' must be a non-empty string (a PEM file's path)"},
      {"director", grid("", "tls = { cert = \"a.crt\", kye = \"a.key\" }", ""),
       "station s director: 'tls': unknown key 'kye' (did you mean 'key'?)"},
      {"director", grid("", "tls = [\"a.crt\", \"a.key\"]", ""),
       "station s director: 'tls' must be a table { cert = \"cert.pem\", key = \"key.pem\" }"},
      {"engine", grid("tls = \"ca.crt\"", "", "tls = " + good),
       "the top level: 'tls' must be a table ([tls])"},
      {"engine", grid("[tls]\nca = 5", "", "tls = " + good), "[tls]: 'ca' must be a string"},
      {"engine", grid("[tls]\ncafile = \"ca.crt\"", "", "tls = " + good),
       "[tls]: unknown key 'cafile' (did you mean 'ca'?)"},
      {"engine", grid(fmt::format("[tls]\nca = \"{}\"", d), "", "tls = " + good),
       fmt::format("[tls] 'ca': {} is a directory, not a PEM file", d)},
      {"director", grid(fmt::format("[tls]\nca = \"{}/none.crt\"", d), "", ""),
       fmt::format("[tls] 'ca': {}/none.crt does not exist", d)},
      {"director", grid(fmt::format("[tls]\nca = \"{}/leaf1.key\"", d), "", ""),
       fmt::format("[tls] 'ca': {}/leaf1.key holds no PEM certificate", d)},
  };
  for (auto& c : cases) {
    ASSERT_TRUE(write_file_durably(cfg, c.toml));
    auto name = c.role == "engine" ? "e1" : "s";
    auto r = run({vodgrid_binary(), c.role, "--config", cfg.string(), "--name", name}, 20s);
    SCOPED_TRACE(c.toml);
    EXPECT_NE(r.status, 0);
    EXPECT_EQ(r.err, fmt::format("vodgrid {}: {}: {}\n", c.role, cfg.string(), c.want));
    EXPECT_FALSE(port_is_listening(c.role == "engine" ? engine_port : director_port));
    EXPECT_FALSE(fs::exists(dir.path() / (c.role == "engine" ? "e1" : "director")));
  }
  // A whole station (its supervisor) refuses the same way, before any blade starts.
  ASSERT_TRUE(write_file_durably(cfg, grid(fmt::format("[tls]\nca = \"{}\"", d), "", "")));
  auto r = run({vodgrid_binary(), "station", "--config", cfg.string(), "--name", "s"}, 20s);
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(r.err, fmt::format("vodgrid station: {}: [tls] 'ca': {} is a directory, not a PEM "
                               "file\n",
                               cfg.string(), d));
  EXPECT_FALSE(fs::exists(dir.path() / "e1"));
}

// `vodgrid up --tls`'s CA and certificates (item 4), made with OpenSSL's C API.
TEST(LocalCa, CertificatesForEveryDaemonThatItsServersLoadAndOpensslVerifies) {
  temp_dir data;
  auto grid = grid_config::embedded_default(data.path(), 8700);
  auto dir = data.path() / "tls";
  ASSERT_TRUE(cli::make_local_tls(grid, dir));
  EXPECT_EQ(grid.tls.ca, dir / "ca.crt");
  struct stat st {};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  std::vector<const listen_address*> all{&grid.registry->listen, &grid.auth->listen,
                                         &grid.content->listen};
  for (auto& s : grid.stations) {
    all.push_back(&s.director.listen);
    for (auto& e : s.engines) {
      all.push_back(&e.listen);
    }
  }
  ASSERT_EQ(all.size(), 3u + 2 + 2 + 3);
  std::map<fs::path, std::string> made;
  for (auto* a : all) {
    ASSERT_TRUE(a->tls()) << a->url();
    EXPECT_EQ(a->url().rfind("https://127.0.0.1:", 0), 0u);
    ASSERT_EQ(::stat(a->tls_key.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << a->tls_key;
    auto ctx = net::make_server_context({a->tls_cert, a->tls_key});
    EXPECT_TRUE(ctx) << (ctx ? "" : ctx.err().detail);
    auto v = run({"/usr/bin/openssl", "verify", "-CAfile", grid.tls.ca.string(), "-verify_ip",
                  "127.0.0.1", "-purpose", "sslserver", a->tls_cert.string()});
    EXPECT_EQ(v.status, 0) << v.out << v.err;
    made[a->tls_cert] = *read_file(a->tls_cert);
  }
  ASSERT_EQ(::stat((dir / "ca.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // The config written for the daemons names them, and reads back.
  auto back = grid_config::parse(grid.to_toml());
  ASSERT_TRUE(back) << back.err().detail;
  EXPECT_EQ(back->tls.ca, grid.tls.ca);
  EXPECT_EQ(back->stations[1].engines[2].listen.tls_key,
            grid.stations[1].engines[2].listen.tls_key);

  // A second `up --tls` keeps the CA (what trusts it still does) and the certificates.
  auto ca = *read_file(dir / "ca.crt");
  auto again = grid_config::embedded_default(data.path(), 8700);
  ASSERT_TRUE(cli::make_local_tls(again, dir));
  EXPECT_EQ(*read_file(dir / "ca.crt"), ca);
  for (auto& [path, text] : made) {
    EXPECT_EQ(*read_file(path), text) << path;
  }
}

}  // namespace
}  // namespace vodgrid::test
