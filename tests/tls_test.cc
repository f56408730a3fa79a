// TLS on net::http_server (issue 17, item 1): certificates checked at start with one line, files
// and bodies through TLS read by curl trusting a test CA, a certificate swapped by a reload while
// a connection made before keeps going, and a plain-HTTP request, garbage and a stalled handshake
// refused without harm. The server runs on two event loops, as a daemon with `threads = 2`.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iterator>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/serialize.hpp>

#include "base/process.h"
#include "net/client.h"
#include "net/http.h"
#include "net/tls.h"
#include "support/support.h"

namespace vodgrid::net {
namespace {

namespace fs = std::filesystem;
namespace ssl = asio::ssl;
using namespace std::chrono_literals;
using V = http::verb;

// A CA, two leaves it signed for 127.0.0.1 (CN leaf1, leaf2), one for elsewhere.example only and
// an expired one (CN old), made with the openssl command; keys 0600.
constexpr const char* make_certs = R"(set -e
q() { "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; }
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
  -out ca.crt -days 3 -subj /CN=vodgrid-test-ca
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > san.cnf
for n in leaf1 leaf2; do
  q openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $n.key -out $n.csr \
    -subj /CN=$n
  q openssl x509 -req -in $n.csr -CA ca.crt -CAkey ca.key -set_serial 0x$(openssl rand -hex 8) \
    -days 2 -extfile san.cnf -out $n.crt
done
printf 'subjectAltName=DNS:elsewhere.example\n' > elsewhere.cnf
q openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout elsewhere.key \
  -out elsewhere.csr -subj /CN=elsewhere
q openssl x509 -req -in elsewhere.csr -CA ca.crt -CAkey ca.key -set_serial 0x$(openssl rand -hex 8) \
  -days 2 -extfile elsewhere.cnf -out elsewhere.crt
printf '[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\n' > ca.cnf
printf 'default_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n' >> ca.cnf
: > index.txt; echo 01 > serial
q openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout old.key -out old.csr \
  -subj /CN=old
q openssl ca -batch -config ca.cnf -cert ca.crt -keyfile ca.key -in old.csr -out old.crt \
  -extfile san.cnf -startdate 20200101000000Z -enddate 20200102000000Z -notext
chmod 600 *.key
)";

class Tls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    certs_ = new test::temp_dir();
    auto r =
        test::run({"/bin/bash", "-c", fmt::format("cd '{}' && {}", dir().string(), make_certs)});
    ASSERT_EQ(r.status, 0) << r.err;
  }
  static void TearDownTestSuite() {
    delete certs_;
    certs_ = nullptr;
  }
  static const fs::path& dir() { return certs_->path(); }
  static tls_files leaf(const std::string& n) {
    return {dir() / (n + ".crt"), dir() / (n + ".key")};
  }
  static test::temp_dir* certs_;
};
test::temp_dir* Tls::certs_ = nullptr;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string pattern_bytes(size_t n) {
  std::string s(n, '\0');
  uint32_t x = 4242;
  for (char& c : s) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

// An HTTPS server on two loops: GET /file (a 3 MB file body), GET /echo (JSON), POST /upload.
class tls_harness {
 public:
  explicit tls_harness(tls_files f, server_options opts = {}) : file_(dir_.path() / "data.bin") {
    std::ofstream(file_, std::ios::binary) << pattern_bytes(3 << 20);
    extra_guard_.emplace(asio::make_work_guard(extra_));
    server_.emplace(io_.get_executor(), "tlstest", opts);
    auto file = file_;
    server_->route(V::get, "/file", [file](request_context&) -> asio::awaitable<reply> {
      int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
      reply r;
      r.content_type = "application/octet-stream";
      r.file = file_slice{std::shared_ptr<void>(nullptr, [fd](void*) { ::close(fd); }), fd, 0,
                          fs::file_size(file)};
      co_return r;
    });
    server_->route(V::get, "/echo", [](request_context& c) -> asio::awaitable<reply> {
      co_return json_reply(boost::json::object{{"path", c.path}});
    });
    server_->route(
        V::post, "/upload",
        [](request_context& c) -> asio::awaitable<reply> {
          co_return json_reply(boost::json::object{{"received", c.req.body().size()}});
        },
        4 << 20);
    auto st = server_->set_tls(std::move(f));
    if (!st) {
      throw std::runtime_error(st.err().detail);
    }
    auto port = server_->listen("127.0.0.1", 0, {extra_.get_executor()});
    if (!port) {
      throw std::runtime_error(port.err().detail);
    }
    port_ = *port;
    threads_.emplace_back([this] { io_.run(); });
    threads_.emplace_back([this] { extra_.run(); });
  }
  ~tls_harness() { stop(0ms); }
  // Stops the server (idle connections cut, those answering given `drain`) and its loops; once.
  void stop(std::chrono::milliseconds drain) {
    if (!server_) {
      return;
    }
    asio::co_spawn(io_, server_->stop(drain), asio::use_future).get();
    extra_guard_.reset();
    for (auto& t : threads_) {
      t.join();
    }
    server_.reset();
  }
  status reload() {
    return asio::co_spawn(
               io_, [this]() -> asio::awaitable<status> { co_return server_->reload_tls(); },
               asio::use_future)
        .get();
  }
  uint16_t port() const { return port_; }
  std::string url(const std::string& t) const {
    return fmt::format("https://127.0.0.1:{}{}", port_, t);
  }
  const fs::path& file() const { return file_; }
  // A metric's value read through HTTPS with the test CA (0 if absent).
  double metric(const fs::path& ca, const std::string& line_start) {
    auto r = test::run({"/usr/bin/curl", "-sS", "--cacert", ca.string(), url("/metrics")});
    std::istringstream in(r.out);
    for (std::string l; std::getline(in, l);) {
      if (l.starts_with(line_start + " ")) {
        return std::stod(l.substr(line_start.size() + 1));
      }
    }
    return 0;
  }

 private:
  test::temp_dir dir_;
  fs::path file_;
  asio::io_context io_;
  asio::io_context extra_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> extra_guard_;
  std::optional<http_server> server_;
  std::vector<std::thread> threads_;
  uint16_t port_ = 0;
};

// A blocking TLS client trusting `ca`: one connection, requests on it in turn.
class tls_client {
 public:
  tls_client(uint16_t port, const fs::path& ca) : ctx_(ssl::context::tls_client), s_(io_, ctx_) {
    ctx_.load_verify_file(ca.string());
    ctx_.set_verify_mode(ssl::verify_peer);
    s_.next_layer().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    s_.handshake(ssl::stream_base::client);
  }
  // The common name of the server's certificate.
  std::string peer_cn() {
    X509* x = SSL_get0_peer_certificate(s_.native_handle());
    char cn[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
    return cn;
  }
  // GET `target` on this connection; the whole response (head and body, Content-Length framed).
  std::string get(const std::string& target) {
    asio::write(s_, asio::buffer("GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n"));
    std::string in;
    char buf[4096];
    while (true) {
      auto end = in.find("\r\n\r\n");
      if (end != std::string::npos) {
        std::smatch m;
        std::string head = in.substr(0, end);
        if (std::regex_search(head, m, std::regex("Content-Length: (\\d+)")) &&
            in.size() >= end + 4 + std::stoul(m[1])) {
          return in;
        }
      }
      boost::system::error_code ec;
      size_t n = s_.read_some(asio::buffer(buf), ec);
      if (ec) {
        return in;
      }
      in.append(buf, n);
    }
  }

 private:
  asio::io_context io_;
  ssl::context ctx_;
  ssl::stream<tcp::socket> s_;
};

TEST_F(Tls, RefusesBadFilesAtStartWithOneLine) {
  auto one_line = [](const tls_files& f, const std::string& expect) {
    asio::io_context io;
    http_server s(io.get_executor(), "t");
    auto st = s.set_tls(f);
    ASSERT_FALSE(st) << expect;
    EXPECT_NE(st.err().detail.find(expect), std::string::npos) << st.err().detail;
    EXPECT_EQ(st.err().detail.find('\n'), std::string::npos) << st.err().detail;
    EXPECT_FALSE(s.tls());
  };
  one_line({dir() / "leaf1.crt", dir() / "missing.key"}, "missing.key does not exist");
  one_line({dir() / "missing.crt", dir() / "leaf1.key"}, "missing.crt does not exist");
  one_line({dir() / "leaf1.crt", dir() / "leaf2.key"}, "is not the certificate");
  one_line(leaf("old"), "has expired");
  one_line({dir() / "leaf1.key", dir() / "leaf1.key"}, "is not a PEM certificate");
  one_line({dir() / "leaf1.crt", dir() / "san.cnf"}, "group and others must have no access");
  fs::copy_file(dir() / "leaf1.key", dir() / "open.key", fs::copy_options::overwrite_existing);
  ::chmod((dir() / "open.key").c_str(), 0640);
  one_line({dir() / "leaf1.crt", dir() / "open.key"}, "open.key holds a secret but has mode 0640");
  ::chmod((dir() / "open.key").c_str(), 0600);
  std::ofstream(dir() / "open.key", std::ios::trunc) << "not a key\n";
  one_line({dir() / "leaf1.crt", dir() / "open.key"}, "is not a PEM private key");

  asio::io_context io;
  http_server s(io.get_executor(), "t");
  EXPECT_TRUE(s.set_tls(leaf("leaf1")));
  EXPECT_TRUE(s.tls());
}

TEST_F(Tls, CurlTrustingTheCaReadsFilesJsonAndUploads) {
  tls_harness h(leaf("leaf1"));
  auto ca = (dir() / "ca.crt").string();
  auto out = h.file().parent_path() / "got.bin";
  // Two requests on one connection (curl reuses it): the file, then JSON.
  auto r = test::run({"/usr/bin/curl", "-sS", "--fail", "--cacert", ca, "-o", out.string(),
                      h.url("/file"), "-o", (out.string() + ".json"), h.url("/echo")});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(pattern_bytes(3 << 20) == read_file(out)) << "the file differs";
  EXPECT_EQ(read_file(out.string() + ".json"), "{\"path\":\"/echo\"}\n");
  EXPECT_EQ(h.metric(dir() / "ca.crt", "vodgrid_tls_handshakes_total{result=\"full\"}"), 2);

  // A body read through TLS, with the 100 Continue curl asks for.
  std::ofstream(out, std::ios::binary | std::ios::trunc) << pattern_bytes(1536 * 1024);
  r = test::run({"/usr/bin/curl", "-sS", "--fail", "--cacert", ca, "-H", "Expect: 100-continue",
                 "--data-binary", "@" + out.string(), h.url("/upload")});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "{\"received\":1572864}\n");

  // A client that does not trust the CA refuses the server; one for another name too.
  r = test::run({"/usr/bin/curl", "-sS", h.url("/echo")});
  EXPECT_NE(r.status, 0);
  r = test::run({"/usr/bin/curl", "-sS", "--cacert", ca, "--resolve",
                 fmt::format("other.example:{}:127.0.0.1", h.port()),
                 fmt::format("https://other.example:{}/echo", h.port())});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("other.example"), std::string::npos) << r.err;
}

TEST_F(Tls, OnlyTls12And13) {
  tls_harness h(leaf("leaf1"));
  auto ca = (dir() / "ca.crt").string();
  auto r = test::run(
      {"/usr/bin/curl", "-sS", "--cacert", ca, "--tlsv1.1", "--tls-max", "1.1", h.url("/echo")});
  EXPECT_NE(r.status, 0) << "TLS 1.1 must be refused";
  for (const char* v : {"1.2", "1.3"}) {
    r = test::run({"/usr/bin/curl", "-sS", "--fail", "--cacert", ca, std::string("--tlsv") + v,
                   "--tls-max", v, h.url("/echo")});
    EXPECT_EQ(r.status, 0) << v << ": " << r.err;
  }
}

TEST_F(Tls, ReloadServesTheNewCertificateWhileAConnectionMadeBeforeGoesOn) {
  // The files the server reads, replaced in place as an operator renewing would.
  test::temp_dir live;
  tls_files f{live.path() / "server.crt", live.path() / "server.key"};
  fs::copy_file(dir() / "leaf1.crt", f.cert);
  fs::copy_file(dir() / "leaf1.key", f.key);
  tls_harness h(f);
  auto ca = dir() / "ca.crt";
  tls_client before(h.port(), ca);
  EXPECT_EQ(before.peer_cn(), "leaf1");
  EXPECT_EQ(test::status_of(before.get("/echo")), 200);

  // A broken renewal changes nothing: the reload fails with its reason, leaf1 stays.
  fs::copy_file(dir() / "leaf2.crt", f.cert, fs::copy_options::overwrite_existing);
  auto st = h.reload();
  ASSERT_FALSE(st);
  EXPECT_NE(st.err().detail.find("is not the certificate"), std::string::npos);
  EXPECT_EQ(tls_client(h.port(), ca).peer_cn(), "leaf1");

  fs::copy_file(dir() / "leaf2.key", f.key, fs::copy_options::overwrite_existing);
  ASSERT_TRUE(h.reload());
  for (int i = 0; i < 4; ++i) {  // on either loop
    EXPECT_EQ(tls_client(h.port(), ca).peer_cn(), "leaf2");
  }
  auto again = before.get("/file");
  EXPECT_EQ(test::status_of(again), 200);
  EXPECT_EQ(again.size() - again.find("\r\n\r\n") - 4, 3u << 20);
  EXPECT_EQ(before.peer_cn(), "leaf1");
}

// How a TLS connection ended, as a plain OpenSSL client sees it (issue 17, close_notify): what
// was read, and SSL_get_error of the read that ended it: SSL_ERROR_ZERO_RETURN when the server
// sent close_notify, SSL_ERROR_SSL (unexpected EOF) when it only closed the socket.
struct tls_ending {
  std::string read;
  int end = -1;                        // SSL_get_error of the last SSL_read
  bool resumed = false;                // the handshake resumed the session offered
  std::chrono::milliseconds after{0};  // from the request sent to the end
  SSL_SESSION* session = nullptr;      // the connection's session (owned by the caller)
};

// One connection by OpenSSL's blocking API to 127.0.0.1:port, trusting `ca`, offering `offer`:
// `request` sent (if any), then read until the server ends the connection (10 s at most);
// `once_answered` is called when the answer's head has come.
tls_ending end_of_connection(uint16_t port, const fs::path& ca, const std::string& request,
                             SSL_SESSION* offer = nullptr,
                             const std::function<void()>& once_answered = {}) {
  tls_ending e;
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  SSL* ssl = nullptr;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (offer) {
      SSL_set_session(ssl, offer);
    }
    if (SSL_connect(ssl) == 1) {
      e.resumed = SSL_session_reused(ssl) == 1;
      auto t0 = std::chrono::steady_clock::now();
      if (request.empty() || SSL_write(ssl, request.data(), static_cast<int>(request.size())) > 0) {
        char buf[4096];
        bool called = false;
        while (true) {
          int n = SSL_read(ssl, buf, sizeof buf);
          if (n <= 0) {
            e.end = SSL_get_error(ssl, n);
            break;
          }
          e.read.append(buf, static_cast<size_t>(n));
          if (once_answered && !called && e.read.find("\r\n\r\n") != std::string::npos) {
            called = true;
            once_answered();
          }
        }
      }
      e.after = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - t0);
      e.session = SSL_get1_session(ssl);
    }
  }
  if (ssl) {
    if (e.end == SSL_ERROR_ZERO_RETURN) {
      SSL_shutdown(ssl);  // ours in return: a clean close on both sides keeps the session
    }
    SSL_free(ssl);
  }
  ::close(fd);
  SSL_CTX_free(ctx);
  return e;
}

TEST_F(Tls, ServerSendsCloseNotifyAfterConnectionCloseSoTheSessionResumes) {
  tls_harness h(leaf("leaf1"));
  auto ca = dir() / "ca.crt";
  for (const char* proto : {"-tls1_3", "-tls1_2"}) {
    // openssl s_client, the session saved after an answer with Connection: close, then offered.
    test::temp_dir t;
    auto sess = t.path() / "sess.pem";
    auto s_client = [&](const char* inout) {
      auto r = test::run(
          {"/bin/bash", "-c",
           fmt::format(
               "printf 'GET /echo HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' "
               "| timeout 20 openssl s_client -connect 127.0.0.1:{} -CAfile '{}' "
               "-verify_return_error {} {} '{}' -ign_eof",
               h.port(), ca.string(), proto, inout, sess.string())});
      EXPECT_NE(r.out.find("{\"path\":\"/echo\"}"), std::string::npos) << r.out << r.err;
      auto verdict = r.out.find(", TLSv1.");
      auto line = r.out.rfind('\n', verdict);
      return verdict == std::string::npos ? r.out + r.err
                                          : r.out.substr(line + 1, verdict - line - 1);
    };
    EXPECT_EQ(s_client("-sess_out"), "New") << proto;
    EXPECT_EQ(s_client("-sess_in"), "Reused") << proto;
  }
  // OpenSSL's own API: the answer ends in close_notify (not an unexpected EOF), and the session
  // resumes on the next connection.
  auto first =
      end_of_connection(h.port(), ca, "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(first.end, SSL_ERROR_ZERO_RETURN) << first.read;
  EXPECT_NE(first.read.find("{\"path\":\"/echo\"}"), std::string::npos) << first.read;
  ASSERT_NE(first.session, nullptr);
  EXPECT_TRUE(SSL_SESSION_is_resumable(first.session));
  auto second = end_of_connection(
      h.port(), ca, "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", first.session);
  EXPECT_TRUE(second.resumed);
  EXPECT_EQ(second.end, SSL_ERROR_ZERO_RETURN);
  // A body longer than the socket's buffers to a client that pauses before reading it: the
  // reply's end fills the buffer, and the close_notify must wait for room rather than be dropped.
  auto paused =
      end_of_connection(h.port(), ca, "GET /file HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                        second.session, [] { std::this_thread::sleep_for(300ms); });
  EXPECT_EQ(paused.end, SSL_ERROR_ZERO_RETURN);
  EXPECT_EQ(paused.read.size() - paused.read.find("\r\n\r\n") - 4, 3u << 20);
  EXPECT_TRUE(paused.resumed);
  for (auto* s : {first.session, second.session, paused.session}) {
    SSL_SESSION_free(s);
  }
}

TEST_F(Tls, ServerSendsCloseNotifyAtTheIdleTimeoutADeadlineAndStop) {
  server_options o;
  o.idle_timeout = 300ms;
  o.header_timeout = 300ms;
  tls_harness h(leaf("leaf1"), o);
  auto ca = dir() / "ca.crt";
  // Idle after an answer kept alive: the idle timeout ends it with close_notify.
  auto idle = end_of_connection(h.port(), ca, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(idle.end, SSL_ERROR_ZERO_RETURN) << idle.read;
  EXPECT_NE(idle.read.find("{\"path\":\"/echo\"}"), std::string::npos) << idle.read;
  EXPECT_LT(idle.after, 3s);
  // A request's head not finished in time: cut at its deadline, with close_notify too.
  auto slow = end_of_connection(h.port(), ca, "GET /echo HTTP/1.1\r\nHost: x\r\n");
  EXPECT_EQ(slow.end, SSL_ERROR_ZERO_RETURN) << slow.read;
  EXPECT_EQ(slow.read, "");
  EXPECT_LT(slow.after, 3s);
  // A connection idle when the server stops (with time to drain: a stop without cuts at once).
  auto stopped = end_of_connection(h.port(), ca, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", nullptr,
                                   [&] { h.stop(2s); });
  EXPECT_EQ(stopped.end, SSL_ERROR_ZERO_RETURN) << stopped.read;
  EXPECT_LT(stopped.after, 3s);
  for (auto* s : {idle.session, slow.session, stopped.session}) {
    SSL_SESSION_free(s);
  }
}

// Whether the server closed a connection that sent `bytes` within `within`, without answering
// anything that looks like HTTP.
void expect_refused(uint16_t port, const std::string& bytes, std::chrono::milliseconds within) {
  auto t0 = std::chrono::steady_clock::now();
  auto got = test::raw_exchange(port, bytes, within + 3s);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, within + 2s) << "not closed by the server";
  EXPECT_EQ(got.find("HTTP/1.1 200"), std::string::npos) << got;
}

TEST_F(Tls, PlainHttpGarbageAndAStalledHandshakeAreRefusedAndTheServerGoesOn) {
  server_options o;
  o.header_timeout = 500ms;
  tls_harness h(leaf("leaf1"), o);
  auto ca = (dir() / "ca.crt").string();
  expect_refused(h.port(), "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", 1s);
  expect_refused(h.port(), pattern_bytes(3000), 1s);
  // A TLS record header announcing a ClientHello that never comes: the deadline ends it.
  expect_refused(h.port(), std::string("\x16\x03\x01\x02\x00\x01", 6), 1s);
  expect_refused(h.port(), "", 1s);  // connects, says nothing
  EXPECT_EQ(h.metric(dir() / "ca.crt", "vodgrid_tls_handshakes_total{result=\"failed\"}"), 4);
  auto r = test::run({"/usr/bin/curl", "-sS", "--fail", "--cacert", ca, h.url("/echo")});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "{\"path\":\"/echo\"}\n");
}

// The client (issue 17, item 3). One exchange, or several in turn, on a client of its own loop.
template <class Fn>
auto on_client(client_options o, Fn fn) {
  asio::io_context io;
  http_client c(io.get_executor(), o);
  auto f = asio::co_spawn(io, fn(c), asio::use_future);
  io.run();
  return f.get();
}

client_options trusting(const fs::path& ca) {
  client_options o;
  o.tls_ca = ca;
  o.connect_timeout = 3s;
  return o;
}

TEST_F(Tls, ClientTrustingTheCaExchangesOverOneConnection) {
  tls_harness h(leaf("leaf1"));
  struct got {
    result<client_response> echo, upload, into, pieces;
    std::string body;
    uint64_t piece_bytes = 0;
  };
  auto g = on_client(trusting(dir() / "ca.crt"), [&](http_client& c) -> asio::awaitable<got> {
    got out;
    out.echo = co_await c.get(h.url("/echo"));
    out.upload = co_await c.request(V::post, h.url("/upload"), pattern_bytes(100'000));
    out.body.resize(3 << 20);
    out.into = co_await c.get_into(
        h.url("/file"), {},
        {[&](const client_response&) -> result<std::span<char>> { return std::span(out.body); },
         [](size_t) {}});
    out.pieces = co_await c.get_pieces(h.url("/file"), {},
                                       {[](const client_response&) { return true; },
                                        [&](std::string_view p) { out.piece_bytes += p.size(); }});
    co_return out;
  });
  ASSERT_TRUE(g.echo) << g.echo.err().detail;
  EXPECT_EQ(g.echo->status, 200u);
  EXPECT_EQ(g.echo->body, "{\"path\":\"/echo\"}\n");
  ASSERT_TRUE(g.upload) << g.upload.err().detail;
  EXPECT_EQ(g.upload->body, "{\"received\":100000}\n");
  ASSERT_TRUE(g.into) << g.into.err().detail;
  EXPECT_TRUE(g.body == pattern_bytes(3 << 20)) << "the file differs";
  ASSERT_TRUE(g.pieces) << g.pieces.err().detail;
  EXPECT_EQ(g.piece_bytes, 3u << 20);
  // One handshake for the four exchanges (kept alive), and curl's for reading the metric.
  EXPECT_EQ(h.metric(dir() / "ca.crt", "vodgrid_tls_handshakes_total{result=\"full\"}"), 2);
}

// The refusal of `url` by a client with `o`: its one-line reason.
std::string refusal(client_options o, const std::string& url) {
  auto r =
      on_client(std::move(o), [url](http_client& c) -> asio::awaitable<result<client_response>> {
        co_return co_await c.get(url);
      });
  EXPECT_FALSE(r) << url << " answered " << (r ? r->status : 0);
  std::string why = r ? std::string() : r.err().detail;
  EXPECT_EQ(why.find('\n'), std::string::npos) << why;
  return why;
}

TEST_F(Tls, ClientRefusesAPeerItCannotVerifyWithTheReason) {
  tls_harness h(leaf("leaf1"));
  auto url = h.url("/echo");
  // Without the CA (the system's trust store): an unknown issuer, named with the peer.
  auto why = refusal(client_options{}, url);
  EXPECT_NE(why.find(fmt::format("tls: peer https://127.0.0.1:{} refused", h.port())),
            std::string::npos)
      << why;
  EXPECT_NE(why.find("unable to get local issuer certificate"), std::string::npos) << why;
  // A CA file that is not there: said so, no connection made.
  why = refusal(trusting(dir() / "missing-ca.pem"), url);
  EXPECT_NE(why.find("missing-ca.pem does not exist"), std::string::npos) << why;
  why = refusal(trusting(dir() / "san.cnf"), url);
  EXPECT_NE(why.find("holds no PEM certificate"), std::string::npos) << why;

  // A certificate of the CA for another name: refused by address and by name.
  tls_harness other(leaf("elsewhere"));
  why = refusal(trusting(dir() / "ca.crt"), other.url("/echo"));
  EXPECT_NE(why.find("IP address mismatch"), std::string::npos) << why;
  why = refusal(trusting(dir() / "ca.crt"), fmt::format("https://localhost:{}/echo", other.port()));
  EXPECT_NE(why.find("hostname mismatch"), std::string::npos) << why;

  // The server is unharmed, and the client with the CA still gets through.
  auto ok = on_client(trusting(dir() / "ca.crt"),
                      [url](http_client& c) -> asio::awaitable<result<client_response>> {
                        co_return co_await c.get(url);
                      });
  ASSERT_TRUE(ok) << ok.err().detail;
  EXPECT_EQ(ok->status, 200u);
}

TEST_F(Tls, ClientRefusesAPeerWithAnExpiredCertificate) {
  // vodgrid's server refuses to start with it: openssl's test server plays the peer.
  uint16_t port = test::free_port();
  auto p = child_process::spawn({"/usr/bin/openssl", "s_server", "-quiet", "-www", "-accept",
                                 std::to_string(port), "-cert", (dir() / "old.crt").string(),
                                 "-key", (dir() / "old.key").string()});
  ASSERT_TRUE(p) << p.err().detail;
  ASSERT_TRUE(test::eventually([&] { return test::port_is_listening(port); }));
  auto why = refusal(trusting(dir() / "ca.crt"), fmt::format("https://127.0.0.1:{}/", port));
  EXPECT_NE(why.find("certificate has expired"), std::string::npos) << why;
  p->stop(1s);
}

TEST(ClientUrls, HttpsUrlsParse) {
  auto u = parse_http_url("https://example.com/a?b=1");
  ASSERT_TRUE(u);
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->port, 443);
  EXPECT_EQ(u->origin(), "https://example.com:443");
  u = parse_http_url("http://127.0.0.1:81/");
  ASSERT_TRUE(u);
  EXPECT_FALSE(u->tls);
  EXPECT_EQ(u->origin(), "http://127.0.0.1:81");
  EXPECT_FALSE(parse_http_url("ftp://example.com/"));
}

}  // namespace
}  // namespace vodgrid::net
