// The HTTP client: a small per-host pool of keep-alive Beast streams.
#include "net/client.h"

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

namespace vodgrid::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string client_response::header(std::string_view name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : std::string(it->value());
}

std::string parsed_url::origin() const {
  return fmt::format("http://{}:{}", host, port);
}

result<parsed_url> parse_http_url(std::string_view url) {
  auto u = boost::urls::parse_absolute_uri(url);
  if (!u) {
    return make_error(errc::invalid_argument, fmt::format("not a URL: {}", url));
  }
  if (u->scheme() != "http") {
    return make_error(errc::invalid_argument,
                      fmt::format("only http:// URLs are supported, got {}", url));
  }
  parsed_url p;
  p.host = std::string(u->host_address());
  if (p.host.empty()) {
    return make_error(errc::invalid_argument, fmt::format("no host in {}", url));
  }
  if (u->has_port()) {
    auto port = u->port_number();
    if (port == 0) {
      return make_error(errc::invalid_argument, fmt::format("bad port in {}", url));
    }
    p.port = port;
  }
  p.target = std::string(u->encoded_target());
  if (p.target.empty() || p.target[0] != '/') {
    p.target = "/" + p.target;
  }
  return p;
}

result<std::string> resolve_url(std::string_view base, std::string_view ref) {
  auto b = boost::urls::parse_absolute_uri(base);
  auto r = boost::urls::parse_uri_reference(ref);
  if (!b || !r) {
    return make_error(errc::invalid_argument,
                      fmt::format("cannot resolve {} against {}", ref, base));
  }
  boost::urls::url out;
  auto rv = boost::urls::resolve(*b, *r, out);
  if (!rv) {
    return make_error(errc::invalid_argument,
                      fmt::format("cannot resolve {} against {}", ref, base));
  }
  return std::string(out.buffer());
}

struct http_client::pool {
  struct idle_stream {
    std::unique_ptr<beast::tcp_stream> stream;
    std::chrono::steady_clock::time_point since;
  };
  std::map<std::string, std::vector<idle_stream>> idle;
};

namespace {
// Servers close idle keep-alive connections (vodgrid's after 60 s): reuse only younger ones.
constexpr auto max_idle_age = std::chrono::seconds(20);
}  // namespace

http_client::http_client(asio::any_io_executor ex, client_options opts)
    : ex_(ex), opts_(opts), pool_(std::make_unique<pool>()) {}

http_client::~http_client() = default;

asio::awaitable<result<client_response>> http_client::send_json(http::verb method, std::string url,
                                                                std::string json) {
  return request(method, std::move(url), std::move(json), {{"Content-Type", "application/json"}});
}

asio::awaitable<result<client_response>> http_client::request(http::verb method, std::string url,
                                                              std::string body,
                                                              header_list headers) {
  auto pu = parse_http_url(url);
  if (!pu) {
    co_return pu.err();
  }
  std::string key = pu->origin();
  http::request<http::string_body> req{method, pu->target, 11};
  req.set(http::field::host, fmt::format("{}:{}", pu->host, pu->port));
  req.set(http::field::user_agent, "vodgrid");
  for (auto& [k, v] : headers) {
    req.set(k, v);
  }
  if (opts_.bearer && req.find(http::field::authorization) == req.end()) {
    if (auto t = opts_.bearer(); !t.empty()) {
      req.set(http::field::authorization, "Bearer " + t);
    }
  }
  if (!body.empty() || method == http::verb::post || method == http::verb::put) {
    req.body() = std::move(body);
    req.prepare_payload();
  }
  req.keep_alive(true);

  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_ptr<beast::tcp_stream> stream;
    bool pooled = false;
    auto& idle = pool_->idle[key];
    std::erase_if(idle, [](const pool::idle_stream& s) {
      return std::chrono::steady_clock::now() - s.since > max_idle_age;
    });
    if (!idle.empty() && attempt == 0) {
      stream = std::move(idle.back().stream);
      idle.pop_back();
      pooled = true;
    } else {
      stream = std::make_unique<beast::tcp_stream>(ex_);
      std::vector<tcp::endpoint> eps;
      boost::system::error_code aec;
      auto literal = asio::ip::make_address(pu->host, aec);
      if (!aec) {
        eps.emplace_back(literal, pu->port);  // an address needs no resolver round trip
      } else {
        tcp::resolver resolver(ex_);
        auto [rec, found] =
            co_await resolver.async_resolve(pu->host, std::to_string(pu->port), use_tuple);
        if (rec) {
          co_return make_error(errc::unavailable,
                               fmt::format("cannot resolve {}: {}", pu->host, rec.message()));
        }
        for (auto& e : found) {
          eps.push_back(e.endpoint());
        }
      }
      stream->expires_after(opts_.connect_timeout);
      auto [cec, ep] = co_await stream->async_connect(eps, use_tuple);
      if (cec) {
        co_return make_error(cec == beast::error::timeout ? errc::timeout : errc::unavailable,
                             fmt::format("cannot connect to {}: {}", key, cec.message()));
      }
      boost::system::error_code ec;
      stream->socket().set_option(tcp::no_delay(true), ec);
    }
    stream->expires_after(opts_.request_timeout);
    auto [wec, wn] = co_await http::async_write(*stream, req, use_tuple);
    if (wec) {
      if (pooled) {
        idle.clear();  // the peer closed idle connections: its others are likely dead too
        continue;      // retry on a fresh one
      }
      co_return make_error(
          wec == beast::error::timeout ? errc::timeout : errc::unavailable,
          fmt::format("{} {}: {}", std::string(http::to_string(method)), url, wec.message()));
    }
    beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(opts_.max_body);
    parser.header_limit(64 * 1024);
    if (method == http::verb::head) {
      parser.skip(true);
    }
    auto [rec, rn] = co_await http::async_read(*stream, buf, parser, use_tuple);
    if (rec) {
      if (pooled && rn == 0 &&
          (rec == http::error::end_of_stream || rec == asio::error::connection_reset)) {
        idle.clear();
        continue;
      }
      errc code = errc::protocol_error;
      if (rec == beast::error::timeout) {
        code = errc::timeout;
      } else if (rec == http::error::body_limit) {
        code = errc::too_large;
      } else if (rec == http::error::end_of_stream || rec == http::error::partial_message ||
                 rec == asio::error::connection_reset || rec == asio::error::eof) {
        code = errc::unavailable;
      }
      co_return make_error(
          code, fmt::format("{} {}: {}", std::string(http::to_string(method)), url, rec.message()));
    }
    auto res = parser.release();
    client_response out;
    out.status = res.result_int();
    bool keep = res.keep_alive();
    out.body = std::move(res.body());
    for (auto& f : res) {
      out.headers.insert(f.name_string(), f.value());
    }
    if (keep && idle.size() < opts_.max_idle_per_host) {
      stream->expires_never();
      idle.push_back({std::move(stream), std::chrono::steady_clock::now()});
    }
    co_return out;
  }
  co_return make_error(errc::unavailable, fmt::format("{}: connection closed by peer", url));
}

}  // namespace vodgrid::net
