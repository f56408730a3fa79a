// A service reached at any of several equivalent URLs (the registry's daemons, stateless over one
// highly available database): each request goes to the peer that last answered, and on a failure
// that says nothing was done there, or that is safe to repeat, to the next one.
// Threading: like http_client, one peer_list belongs to one executor.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/verb.hpp>

#include "base/result.h"
#include "net/client.h"

namespace vodgrid::net {

class peer_list {
 public:
  // `urls`: base URLs ("http://host:port"), at least one, in the order of preference; `what` names
  // the service in log lines ("registry").
  peer_list(std::vector<std::string> urls, std::string what,
            std::chrono::milliseconds fail_back = std::chrono::seconds(30));

  // One exchange of `path` (with its query) at the peers, the last good one first. A peer that
  // cannot be reached, times out, breaks the connection or answers 5xx is left for the next; the
  // first other answer (2xx, 3xx, 4xx) is returned and its peer becomes the one tried first.
  // Once every `fail_back` away from the first URL, one request (the probe) tries the first URL
  // first again, while the others keep to the peer that answers; the probe answered there, every
  // request goes there. So all clients come back to one peer after it returns (the registry's
  // daemons keep the stations' load in memory: clients spread over two daemons would each see
  // half the grid up), and a first URL that hangs costs one request its timeout per fail_back.
  // Every peer failing: the last peer's result. Callers send only requests that may be repeated
  // (every request to the registry is: a report states what is held, not what changed).
  boost::asio::awaitable<result<client_response>> request(http_client& client,
                                                          boost::beast::http::verb method,
                                                          std::string path, std::string body = {},
                                                          http_client::header_list headers = {});
  boost::asio::awaitable<result<client_response>> get(http_client& client, std::string path) {
    return request(client, boost::beast::http::verb::get, std::move(path));
  }
  // POST/PUT a JSON body (Content-Type application/json).
  boost::asio::awaitable<result<client_response>> send_json(http_client& client,
                                                            boost::beast::http::verb method,
                                                            std::string path, std::string json);

  // The peer tried first: the last that answered (the first URL until one has).
  const std::string& current() const { return urls_[current_]; }
  const std::vector<std::string>& urls() const { return urls_; }

  // Splits "a,b,c" (the CLI's --grid) into URLs, spaces around each trimmed; errc::invalid_argument
  // on an empty list or an empty or non-http:// entry.
  static result<std::vector<std::string>> split(std::string_view list);

 private:
  std::vector<std::string> urls_;
  std::string what_;
  std::chrono::milliseconds fail_back_;
  size_t current_ = 0;
  size_t last_answered_ = 0;
  bool probe_in_flight_ = false;  // a request is trying the first URL again (see request)
  std::chrono::steady_clock::time_point left_first_{};  // when current_ last moved off, or back
};

}  // namespace vodgrid::net
