// The request target: path and query, by hand when plain, else through Boost.URL.
#include "net/target.h"

#include <array>
#include <cstdint>
#include <cstring>

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

void request_context::add_query(std::string_view k, std::string_view v) {
  auto& key = decoded.emplace_back(k);
  auto& value = decoded.emplace_back(v);
  query.emplace_back(key, value);
}

namespace {

// A table of the ASCII letters and digits and the characters of `extra`: the definition of a
// character set, and its check a character at a time (the tail of a text shorter than a block).
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

// The same sets checked 16 characters at a time, by GCC's portable vector extensions (SSE2 on
// x86-64): a token's ~330-character query cost ~1 cycle a character through the table. Each
// returns a lane of all ones for a character of the set; tests check them against the tables.
using byte_block = unsigned char __attribute__((vector_size(16)));

inline auto in_range(byte_block v, unsigned char lo, unsigned char hi) {
  return (v - lo) <= static_cast<unsigned char>(hi - lo);  // one unsigned compare a range
}

// Letters, digits and "-._~=&".
inline auto query_chars(byte_block v) {
  return in_range(v, '0', '9') | in_range(v, 'A', 'Z') | in_range(v, 'a', 'z') |
         in_range(v, '-', '.') | (v == '_') | (v == '~') | (v == '=') | (v == '&');
}

// Letters, digits and "-._~!$&'()*+,;=:@/": '&' to ';' is &'()*+,-./0-9:; and '@' to 'Z' is @A-Z.
inline auto path_chars(byte_block v) {
  return in_range(v, '&', ';') | in_range(v, '@', 'Z') | in_range(v, 'a', 'z') | (v == '!') |
         (v == '$') | (v == '=') | (v == '_') | (v == '~');
}

template <typename Lanes>
bool all_lanes(Lanes m) {
  static_assert(sizeof m == 16);
  uint64_t a = 0;
  uint64_t b = 0;
  std::memcpy(&a, &m, 8);
  std::memcpy(&b, reinterpret_cast<const char*>(&m) + 8, 8);
  return (a & b) == ~uint64_t{0};
}

template <typename Block>
bool only(const std::array<bool, 256>& table, Block block, std::string_view text) {
  size_t i = 0;
  for (; i + 16 <= text.size(); i += 16) {
    byte_block v;
    std::memcpy(&v, text.data() + i, 16);
    if (!all_lanes(block(v))) {
      return false;
    }
  }
  for (; i < text.size(); ++i) {
    if (!table[static_cast<unsigned char>(text[i])]) {
      return false;
    }
  }
  return true;
}

constexpr auto path_table = char_table("-._~!$&'()*+,;=:@/");
constexpr auto query_table = char_table("-._~=&");

}  // namespace

// Checked by hand because it is the common case, and boost::urls's full parse cost about 2,600
// instructions a request (callgrind); anything else still goes through boost::urls.
bool plain_path(std::string_view path) {
  return !path.empty() && path[0] == '/' &&
         only(
             path_table, [](byte_block v) { return path_chars(v); }, path);
}

// Nothing to percent-decode, so it is split here rather than through Boost.URL, which showed as 5%
// of the director's CPU per redirect with a token in every request (a token, a segment signature).
// The parameters are views into `q`: nothing is copied (a token is some 300 bytes).
bool split_plain_query(std::string_view q,
                       std::vector<std::pair<std::string_view, std::string_view>>& out) {
  if (!only(
          query_table, [](byte_block v) { return query_chars(v); }, q)) {
    return false;
  }
  out.clear();
  while (!q.empty()) {
    auto amp = q.find('&');
    std::string_view p = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    if (p.empty()) {
      continue;
    }
    auto eq = p.find('=');
    out.emplace_back(p.substr(0, eq),
                     eq == std::string_view::npos ? std::string_view() : p.substr(eq + 1));
  }
  return true;
}

bool parse_target(std::string_view t, request_context& ctx) {
  auto qmark = t.find('?');
  if (qmark == std::string_view::npos && plain_path(t)) {
    ctx.path.assign(t);
    ctx.query.clear();
    ctx.decoded.clear();
  } else if (qmark != std::string_view::npos && plain_path(t.substr(0, qmark)) &&
             split_plain_query(t.substr(qmark + 1), ctx.query)) {
    ctx.path.assign(t.substr(0, qmark));
    ctx.decoded.clear();
  } else {
    ctx.query.clear();
    ctx.decoded.clear();
    auto target = boost::urls::parse_origin_form(t);
    if (!target) {
      return false;
    }
    ctx.path = std::string(target->encoded_path());
    for (auto p : target->params()) {
      ctx.add_query(p.key, p.value);
    }
  }
  return true;
}

}  // namespace vodgrid::net
