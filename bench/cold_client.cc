// A load client for bench/engine_cold_cache: asks for every request of a list exactly once, over
// CONNS keep-alive connections at once (one request in flight on each), and stops when the last
// answer is in; the bodies are read and thrown away. One thread, epoll, no per-request allocation:
// it costs the client core far less per request than curl --parallel, so that a pass measures the
// server. Built by the script (c++ -O2), not by CMake.
//
//   cold_client HOST PORT CONNS LIST
//
// LIST has one request a line: "PATH" (a whole object) or "PATH FIRST-LAST" (a Range). Prints one
// line: "COLD_RESULT requests=N bytes=B seconds=S errors=E p50_us=P p99_us=Q" (bytes: of bodies;
// latency: from a request's send to the end of its answer). Exits 1 on any error it cannot count.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

struct conn {
  int fd = -1;
  size_t item = 0;
  bool busy = false;
  bool in_body = false;
  std::string head;
  uint64_t left = 0;
  int status = 0;
  clock_type::time_point sent;
};

[[noreturn]] void fail(const std::string& why) {
  std::fprintf(stderr, "cold_client: %s\n", why.c_str());
  std::exit(1);
}

int connect_to(const sockaddr_in& addr) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    fail(std::string("connect: ") + std::strerror(errno));
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// The value of header `name` (lower case) in `head`, or -1.
long long header_number(const std::string& head, const char* name) {
  std::string lower(head.size(), '\0');
  std::transform(head.begin(), head.end(), lower.begin(), [](char c) { return std::tolower(c); });
  auto at = lower.find(std::string("\r\n") + name + ":");
  if (at == std::string::npos) {
    return -1;
  }
  return std::strtoll(lower.c_str() + at + 3 + std::strlen(name), nullptr, 10);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    fail("usage: cold_client HOST PORT CONNS LIST");
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[2])));
  if (::inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
    fail(std::string("not an IPv4 address: ") + argv[1]);
  }
  int conns = std::atoi(argv[3]);
  if (conns < 1) {
    fail("CONNS must be at least 1");
  }
  std::vector<std::string> reqs;
  {
    std::ifstream in(argv[4]);
    if (!in) {
      fail(std::string("cannot read ") + argv[4]);
    }
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) {
        continue;
      }
      auto sp = line.find(' ');
      std::string r = "GET " + line.substr(0, sp) + " HTTP/1.1\r\nHost: " + argv[1] + "\r\n";
      if (sp != std::string::npos) {
        r += "Range: bytes=" + line.substr(sp + 1) + "\r\n";
      }
      reqs.push_back(r + "\r\n");
    }
  }
  std::vector<uint32_t> lat_us;
  lat_us.reserve(reqs.size());
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  std::vector<conn> cs(
      static_cast<size_t>(std::min<size_t>(conns, std::max<size_t>(reqs.size(), 1))));
  size_t next = 0, done = 0;
  uint64_t bytes = 0, errors = 0;
  std::vector<char> buf(1 << 20);

  auto send_next = [&](conn& c) {
    if (next >= reqs.size()) {
      c.busy = false;
      return;
    }
    c.item = next++;
    c.busy = true;
    c.in_body = false;
    c.head.clear();
    c.sent = clock_type::now();
    const auto& r = reqs[c.item];
    if (::send(c.fd, r.data(), r.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(r.size())) {
      fail(std::string("send: ") + std::strerror(errno));
    }
  };
  auto finish = [&](conn& c) {
    if (c.status != 200 && c.status != 206) {
      ++errors;
    }
    lat_us.push_back(static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - c.sent).count()));
    ++done;
    send_next(c);
  };

  auto t0 = clock_type::now();
  for (size_t i = 0; i < cs.size(); ++i) {
    cs[i].fd = connect_to(addr);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
    send_next(cs[i]);
  }
  std::vector<epoll_event> evs(cs.size());
  while (done < reqs.size()) {
    int n = ::epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), 30000);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      fail("no answer for 30 s");
    }
    for (int k = 0; k < n; ++k) {
      conn& c = cs[evs[k].data.u64];
      ssize_t got = ::recv(c.fd, buf.data(), buf.size(), MSG_DONTWAIT);
      if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
        continue;
      }
      if (got <= 0) {
        fail(c.busy ? "the server closed a connection during an answer"
                    : "the server closed an idle connection");
      }
      if (!c.busy) {
        fail("bytes from the server with no request in flight");
      }
      size_t used = 0;
      if (!c.in_body) {
        size_t old = c.head.size();
        c.head.append(buf.data(), static_cast<size_t>(got));
        auto end = c.head.find("\r\n\r\n");
        if (end == std::string::npos) {
          continue;
        }
        used = end + 4 - old;
        c.status = std::atoi(c.head.c_str() + 9);
        long long len = header_number(c.head.substr(0, end + 2), "content-length");
        if (len < 0) {
          fail("an answer without Content-Length: " + c.head.substr(0, end));
        }
        c.left = static_cast<uint64_t>(len);
        c.in_body = true;
      }
      uint64_t body = static_cast<uint64_t>(got) - used;
      if (body > c.left) {
        fail("more bytes than the answer's Content-Length");
      }
      c.left -= body;
      bytes += body;
      if (c.left == 0) {
        finish(c);
      }
    }
  }
  double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
  std::sort(lat_us.begin(), lat_us.end());
  auto pct = [&](double p) {
    return lat_us.empty()
               ? 0u
               : lat_us[std::min(lat_us.size() - 1, static_cast<size_t>(p * lat_us.size()))];
  };
  std::printf("COLD_RESULT requests=%zu bytes=%llu seconds=%.6f errors=%llu p50_us=%u p99_us=%u\n",
              done, static_cast<unsigned long long>(bytes), secs,
              static_cast<unsigned long long>(errors), pct(0.50), pct(0.99));
  for (auto& c : cs) {
    ::close(c.fd);
  }
  return 0;
}
