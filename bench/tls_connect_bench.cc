// New TLS connections per second with session resumption across servers (issue 17's benchmark,
// bench/tls_resume_vs_nginx): each of --clients threads makes one new connection per request,
// alternating between the --port servers on 127.0.0.1, offering the session (ticket) it got last,
// sends one small GET with `Connection: close` and reads the answer to its end, which must be the
// server's close_notify (a connection without it is counted as failed). Blocking sockets
// and OpenSSL's own API: the least a client does per connection, so that the servers set the pace.
// Prints one line: connections, resumed, failed, wall seconds, CPU seconds of this process, p50/p99
// of a connection (connect to the answer's end, microseconds).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

[[noreturn]] void die(const std::string& why) {
  fmt::print(stderr, "tls_connect_bench: {}\n", why);
  std::exit(1);
}

struct tally {
  uint64_t connections = 0;  // answered in full (status line read)
  uint64_t resumed = 0;      // of those, on a resumed session
  uint64_t failed = 0;  // refused, handshake failed, no "HTTP/1.1 2xx" answer or no close_notify
  std::vector<uint32_t> micros;
};

struct settings {
  std::vector<uint16_t> ports;
  std::string request;
  SSL_CTX* ctx = nullptr;
  clock_type::time_point until;
};

// One connection: TCP, the handshake offering `*session`, the request, the answer to EOF. Keeps
// the session the server gave (a TLS 1.3 ticket arrives after the handshake, so it is taken once
// the answer is read) for the next connection.
void one(const settings& s, uint16_t port, SSL_SESSION** session, tally& t) {
  auto t0 = clock_type::now();
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    die("socket failed");
  }
  int one_flag = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one_flag, sizeof one_flag);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = false;
  SSL* ssl = nullptr;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    ssl = SSL_new(s.ctx);
    SSL_set_fd(ssl, fd);
    SSL_set1_host(ssl, "127.0.0.1");
    if (*session) {
      SSL_set_session(ssl, *session);
    }
    if (SSL_connect(ssl) == 1 &&
        SSL_write(ssl, s.request.data(), static_cast<int>(s.request.size())) ==
            static_cast<int>(s.request.size())) {
      std::string head;
      char buf[16384];
      int n;
      while ((n = SSL_read(ssl, buf, sizeof buf)) > 0) {
        if (head.size() < 12) {
          head.append(buf, static_cast<size_t>(std::min(n, 12)));
        }
      }
      // The answer ends with the server's close_notify (SSL_ERROR_ZERO_RETURN): both servers send
      // it, and a server that closed without it would be counted as failed (no
      // SSL_OP_IGNORE_UNEXPECTED_EOF here: that would hide it).
      bool clean_end = SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN;
      ok = clean_end && head.size() >= 10 && head.compare(0, 10, "HTTP/1.1 2") == 0;
      if (ok) {
        ++t.connections;
        t.resumed += SSL_session_reused(ssl) ? 1 : 0;
        if (SSL_SESSION* got = SSL_get1_session(ssl)) {
          if (*session) {
            SSL_SESSION_free(*session);
          }
          *session = got;
        }
      }
    }
  }
  if (ssl) {
    // The server closed first (Connection: close). Taken as a clean close: OpenSSL would otherwise
    // mark the session not resumable when the SSL is freed (ssl_clear_bad_session).
    SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(ssl);
  }
  ::close(fd);
  ERR_clear_error();
  if (!ok) {
    ++t.failed;
    return;
  }
  t.micros.push_back(static_cast<uint32_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - t0).count()));
}

void client(const settings& s, size_t first, tally& t) {
  SSL_SESSION* session = nullptr;
  for (size_t i = first; clock_type::now() < s.until; ++i) {
    one(s, s.ports[i % s.ports.size()], &session, t);
  }
  if (session) {
    SSL_SESSION_free(session);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"New TLS connections per second, alternating servers, resuming the last session"};
  std::vector<uint16_t> ports;
  std::string ca, path = "/healthz", tls_max = "1.3";
  double seconds = 10;
  int clients = 8;
  bool no_resume = false;
  app.add_option("--port", ports, "a server's port on 127.0.0.1 (give two or more)")->required();
  app.add_option("--ca", ca, "the CA the servers' certificates are verified against")->required();
  app.add_option("--path", path, "what each connection GETs");
  app.add_option("--seconds", seconds, "how long");
  app.add_option("--clients", clients, "connections at once (a thread each)");
  app.add_option("--tls-max", tls_max, "the highest version offered: 1.2 or 1.3");
  app.add_flag("--no-resume", no_resume, "offer no session: a full handshake every time");
  CLI11_PARSE(app, argc, argv);
  if (clients < 1 || seconds <= 0 || (tls_max != "1.2" && tls_max != "1.3")) {
    die("--clients >= 1, --seconds > 0, --tls-max 1.2 or 1.3");
  }

  std::signal(SIGPIPE, SIG_IGN);  // a write to a server that closed is counted as failed
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, tls_max == "1.2" ? TLS1_2_VERSION : TLS1_3_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr) != 1) {
    die("cannot load the CA " + ca);
  }
  // Sessions are kept by each client thread itself (SSL_get1_session), not in a cache.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (no_resume) {
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  }

  settings s;
  s.ports = ports;
  s.ctx = ctx;
  s.request = fmt::format("GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
  auto start = clock_type::now();
  double cpu0 = cpu_seconds();
  s.until = start + std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6));
  std::vector<tally> tallies(static_cast<size_t>(clients));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < tallies.size(); ++i) {
    threads.emplace_back([&s, &tallies, i] { client(s, i, tallies[i]); });
  }
  for (auto& t : threads) {
    t.join();
  }
  double wall = std::chrono::duration<double>(clock_type::now() - start).count();
  double cpu = cpu_seconds() - cpu0;
  tally all;
  for (auto& t : tallies) {
    all.connections += t.connections;
    all.resumed += t.resumed;
    all.failed += t.failed;
    all.micros.insert(all.micros.end(), t.micros.begin(), t.micros.end());
  }
  std::sort(all.micros.begin(), all.micros.end());
  auto pct = [&](double p) -> uint32_t {
    if (all.micros.empty()) {
      return 0;
    }
    return all.micros[std::min(all.micros.size() - 1,
                               static_cast<size_t>(p * static_cast<double>(all.micros.size())))];
  };
  fmt::print(
      "TLS_RESULT connections={} resumed={} failed={} wall_s={:.3f} cpu_s={:.3f} p50_us={} "
      "p99_us={}\n",
      all.connections, all.resumed, all.failed, wall, cpu, pct(0.5), pct(0.99));
  SSL_CTX_free(ctx);
  return 0;
}
