// The least a client can do to read segments and verify them: one keep-alive connection, blocking
// reads of a body into one buffer, each read hashed (base's sha256_hasher, as the console) while in
// cache, nothing else. bench/console_vs_wrk runs it on the client core as the ceiling of reading
// and hashing together there (docs/performance.md, "Console"). Prints one line: bytes, wall
// seconds, CPU seconds (user + system, getrusage), so that bytes per CPU second can be compared
// with the console's whatever else shares the core.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/sha256.h"

namespace {

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

[[noreturn]] void die(const std::string& why) {
  fmt::print(stderr, "read_hash_bench: {}\n", why);
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Reads segments over one connection and hashes them: the ceiling of the console"};
  uint16_t port = 0;
  std::string path_fmt;  // "/x/%d.ts": %d is the segment index
  int count = 0;
  double seconds = 5;
  size_t buffer = 256 * 1024;
  bool hash = true;
  app.add_option("--port", port, "the engine's port on 127.0.0.1")->required();
  app.add_option("--path-format", path_fmt, "segment path, %d the index")->required();
  app.add_option("--count", count, "segments")->required();
  app.add_option("--seconds", seconds, "run for at least this long");
  app.add_option("--buffer", buffer, "bytes per read");
  app.add_flag("!--no-hash", hash, "read only");
  CLI11_PARSE(app, argc, argv);
  auto at = path_fmt.find("%d");
  if (at == std::string::npos || count < 1 || buffer < 4096) {
    die("--path-format needs %d, --count >= 1, --buffer >= 4096");
  }

  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    die("cannot connect");
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  std::vector<char> buf(std::max<size_t>(buffer, 64 * 1024));
  vodgrid::sha256_hasher hasher;
  uint64_t bytes = 0;
  auto t0 = std::chrono::steady_clock::now();
  double cpu0 = cpu_seconds();
  double wall = 0;
  for (int i = 0; wall < seconds; i = (i + 1) % count) {
    std::string path = path_fmt.substr(0, at) + std::to_string(i) + path_fmt.substr(at + 2);
    std::string req =
        "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: read_hash\r\n\r\n";
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
      die("send failed");
    }
    // The head (and whatever of the body came with it).
    size_t have = 0, body0 = 0;
    uint64_t length = 0;
    for (;;) {
      ssize_t n = ::recv(fd, buf.data() + have, 64 * 1024 - have, 0);
      if (n <= 0) {
        die("the server closed the connection");
      }
      have += static_cast<size_t>(n);
      std::string_view head(buf.data(), have);
      auto end = head.find("\r\n\r\n");
      if (end == std::string_view::npos) {
        continue;
      }
      if (!head.starts_with("HTTP/1.1 200")) {
        die("not a 200: " + std::string(head.substr(0, head.find('\r'))));
      }
      std::string lower(head.substr(0, end));
      std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
      auto cl = lower.find("content-length:");
      if (cl == std::string::npos) {
        die("no Content-Length");
      }
      length = std::strtoull(lower.c_str() + cl + 15, nullptr, 10);
      body0 = end + 4;
      break;
    }
    uint64_t left = length;
    size_t lead = std::min<uint64_t>(have - body0, left);
    if (hash) {
      hasher.update(std::string_view(buf.data() + body0, lead));
    }
    left -= lead;
    while (left > 0) {
      ssize_t n = ::recv(fd, buf.data(), std::min<uint64_t>(buffer, left), 0);
      if (n <= 0) {
        die("the server closed the connection mid-body");
      }
      if (hash) {
        hasher.update(std::string_view(buf.data(), static_cast<size_t>(n)));
      }
      left -= static_cast<uint64_t>(n);
    }
    if (hash) {
      (void)hasher.finish();
    }
    bytes += length;
    wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  fmt::print("bytes {} wall {:.3f} cpu {:.3f}\n", bytes, wall, cpu_seconds() - cpu0);
  return 0;
}
