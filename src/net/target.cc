// The request target: path and query, by hand when plain, else through Boost.URL.
#include "net/target.h"

#include <array>

#include <boost/url/parse.hpp>

#include "net/http.h"

namespace vodgrid::net {

std::string_view request_context::query_param(std::string_view k) const {
  for (auto it = query.rbegin(); it != query.rend(); ++it) {
    if (it->first == k) {
      return it->second;
    }
  }
  return {};
}

namespace {

// A table of the ASCII letters and digits and the characters of `extra`, for checking text a
// character at a time by one lookup (a chain of comparisons cost 10 instructions a character).
constexpr std::array<bool, 256> char_table(std::string_view extra) {
  std::array<bool, 256> t{};
  for (int c = 'a'; c <= 'z'; ++c) {
    t[c] = true;
  }
  for (int c = 'A'; c <= 'Z'; ++c) {
    t[c] = true;
  }
  for (int c = '0'; c <= '9'; ++c) {
    t[c] = true;
  }
  for (char c : extra) {
    t[static_cast<unsigned char>(c)] = true;
  }
  return t;
}

bool only(const std::array<bool, 256>& table, std::string_view text) {
  for (char c : text) {
    if (!table[static_cast<unsigned char>(c)]) {
      return false;
    }
  }
  return true;
}

}  // namespace

// Checked by hand because it is the common case, and boost::urls's full parse cost about 2,600
// instructions a request (callgrind); anything else still goes through boost::urls.
bool plain_path(std::string_view path) {
  static constexpr auto table = char_table("-._~!$&'()*+,;=:@/");
  return !path.empty() && path[0] == '/' && only(table, path);
}

// Nothing to percent-decode, so it is split here rather than through Boost.URL, which showed as 5%
// of the director's CPU per redirect with a token in every request (a token, a segment signature).
// The strings of `out` are assigned, not made anew: a connection's requests reuse their capacity
// (a token is some 300 bytes).
bool split_plain_query(std::string_view q, std::vector<std::pair<std::string, std::string>>& out) {
  static constexpr auto table = char_table("-._~=&");
  if (!only(table, q)) {
    return false;
  }
  size_t n = 0;
  auto put = [&](std::string_view k, std::string_view v) {
    if (n < out.size()) {
      out[n].first.assign(k);
      out[n].second.assign(v);
    } else {
      out.emplace_back(k, v);
    }
    ++n;
  };
  while (!q.empty()) {
    auto amp = q.find('&');
    std::string_view p = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    if (p.empty()) {
      continue;
    }
    auto eq = p.find('=');
    put(p.substr(0, eq), eq == std::string_view::npos ? std::string_view() : p.substr(eq + 1));
  }
  out.resize(n);
  return true;
}

bool parse_target(std::string_view t, request_context& ctx) {
  auto qmark = t.find('?');
  if (qmark == std::string_view::npos && plain_path(t)) {
    ctx.path.assign(t);
    ctx.query.clear();
  } else if (qmark != std::string_view::npos && plain_path(t.substr(0, qmark)) &&
             split_plain_query(t.substr(qmark + 1), ctx.query)) {
    ctx.path.assign(t.substr(0, qmark));
  } else {
    ctx.query.clear();
    auto target = boost::urls::parse_origin_form(t);
    if (!target) {
      return false;
    }
    ctx.path = std::string(target->encoded_path());
    for (auto p : target->params()) {
      ctx.query.emplace_back(p.key, p.value);
    }
  }
  return true;
}

}  // namespace vodgrid::net
