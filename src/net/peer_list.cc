// Failover between equivalent peers (peer_list.h).
#include "net/peer_list.h"

#include <fmt/format.h>

#include <stdexcept>

#include "base/log.h"

namespace vodgrid::net {

namespace http = boost::beast::http;

namespace {

// A failure after which the same request may go to another peer: nothing answered (connect
// refused or timed out, the connection lost, a reply cut or garbled), or the peer said it could
// not serve (5xx: its database is failing over, say). Anything else is the answer.
bool worth_another_peer(const result<client_response>& r) {
  if (!r) {
    auto c = r.err().code;
    return c == errc::unavailable || c == errc::timeout || c == errc::protocol_error;
  }
  return r->status >= 500;
}

std::string reason_of(const result<client_response>& r) {
  if (!r) {
    return fmt::format("{} ({})", to_string(r.err().code), r.err().detail);
  }
  return fmt::format("status {}", r->status);
}

}  // namespace

peer_list::peer_list(std::vector<std::string> urls, std::string what,
                     std::chrono::milliseconds fail_back)
    : urls_(std::move(urls)), what_(std::move(what)), fail_back_(fail_back) {
  if (urls_.empty()) {
    throw std::invalid_argument("peer_list: no URL");  // a broken invariant: configs check this
  }
}

boost::asio::awaitable<result<client_response>> peer_list::request(
    http_client& client, http::verb method, std::string path, std::string body,
    http_client::header_list headers) {
  auto now = std::chrono::steady_clock::now();
  // Once a fail_back away from the first URL, one request (the probe) tries it first; the others
  // keep using the peer that answers, so that a first URL that hangs costs one request a timeout,
  // not every request sent while the probe waits.
  bool probing = false;
  if (current_ != 0 && !probe_in_flight_ && now - left_first_ >= fail_back_) {
    probing = true;
    probe_in_flight_ = true;
    left_first_ = now;
  }
  struct probe_end {  // on every way out, a destroyed coroutine's too
    peer_list* self;
    bool probing;
    ~probe_end() {
      if (probing) {
        self->probe_in_flight_ = false;
      }
    }
  } end{this, probing};
  // The order tried: the probe's first URL, then the current peer, then the rest in turn.
  std::vector<size_t> order;
  if (probing) {
    order.push_back(0);
  }
  for (size_t n = 0; n < urls_.size(); ++n) {
    size_t i = (current_ + n) % urls_.size();
    if (!probing || i != 0) {
      order.push_back(i);
    }
  }
  size_t first = current_;  // the peer in use when the request began
  result<client_response> r = make_error(errc::unavailable, "no peer");
  std::string first_failure;
  for (size_t n = 0; n < order.size(); ++n) {
    size_t i = order[n];
    r = co_await client.request(method, urls_[i] + path, body, headers);
    if (!worth_another_peer(r)) {
      if (probing && i == 0) {
        log::get("net")->info("{} {} answers again; using it", what_, urls_[0]);
        current_ = 0;
      } else if (i != first && current_ == first) {
        // Requests run concurrently: only the one that moves current_ off where it started says
        // so (another may have moved it meanwhile).
        log::get("net")->warn("{} {} failed ({}); now using {}", what_, urls_[first], first_failure,
                              urls_[i]);
        current_ = i;
        left_first_ = now;
      } else if (i == current_ && i != last_answered_) {
        log::get("net")->info("{} {} answers again; using it", what_, urls_[i]);
      }
      last_answered_ = i;
      co_return r;
    }
    if (n == 0 || (probing && n == 1)) {
      first_failure = reason_of(r);
    }
    log::get("net")->debug("{} {}: {} {}", what_, urls_[i], path, reason_of(r));
  }
  co_return r;
}

boost::asio::awaitable<result<client_response>> peer_list::send_json(http_client& client,
                                                                     http::verb method,
                                                                     std::string path,
                                                                     std::string json) {
  http_client::header_list headers;
  headers.emplace_back("Content-Type", "application/json");
  co_return co_await request(client, method, std::move(path), std::move(json), std::move(headers));
}

result<std::vector<std::string>> peer_list::split(std::string_view list) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string_view::npos) {
      comma = list.size();
    }
    auto item = list.substr(pos, comma - pos);
    while (!item.empty() && item.front() == ' ') {
      item.remove_prefix(1);
    }
    while (!item.empty() && item.back() == ' ') {
      item.remove_suffix(1);
    }
    if (item.empty()) {
      return make_error(errc::invalid_argument, fmt::format("an empty URL in \"{}\"", list));
    }
    if (auto u = parse_http_url(item); !u) {
      return make_error(errc::invalid_argument,
                        fmt::format("\"{}\" is not an http:// URL: {}", item, u.err().detail));
    }
    while (!item.empty() && item.back() == '/') {
      item.remove_suffix(1);
    }
    out.emplace_back(item);
    pos = comma + 1;
  }
  return out;
}

}  // namespace vodgrid::net
