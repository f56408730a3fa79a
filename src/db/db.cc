// The backend-neutral part of db: open() by URL, row accessors, the retry backoff of
// in_transaction and the rewriter of the portable SQL dialect.
#include "db/db.h"

#include <fmt/format.h>
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <random>
#include <stdexcept>
#include <thread>

#include "db/backend.h"

namespace vodgrid::db {

namespace {

std::string_view type_name(const value& v) {
  switch (v.index()) {
    case 0:
      return "NULL";
    case 1:
      return "an integer";
    case 2:
      return "a double";
    case 3:
      return "text";
    default:
      return "a blob";
  }
}

template <class T>
const T& column_as(const std::vector<value>& cols, size_t i, std::string_view wanted) {
  const value& v = cols.at(i);
  if (const T* p = std::get_if<T>(&v)) {
    return *p;
  }
  throw std::logic_error(fmt::format("column {} is {}, not {}", i, type_name(v), wanted));
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) {
    return false;
  }
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) {
      return false;
    }
  }
  return true;
}

}  // namespace

int64_t row::i64(size_t i) const {
  return column_as<int64_t>(cols, i, "an integer");
}

double row::f64(size_t i) const {
  if (const auto* p = std::get_if<int64_t>(&cols.at(i))) {
    return static_cast<double>(*p);
  }
  return column_as<double>(cols, i, "a double");
}

const std::string& row::text(size_t i) const {
  return column_as<std::string>(cols, i, "text");
}

const std::string& row::bytes(size_t i) const {
  return column_as<blob>(cols, i, "a blob").bytes;
}

result<std::unique_ptr<connection>> open(std::string_view url) {
  if (starts_with_nocase(url, "sqlite:")) {
    std::string_view path = url.substr(7);
    if (path.starts_with("//")) {
      path.remove_prefix(2);
      if (!path.starts_with("/")) {
        return make_error(errc::invalid_argument,
                          "sqlite URL: want sqlite:///absolute/path or sqlite:relative/path");
      }
    }
    if (path.empty()) {
      return make_error(errc::invalid_argument, "sqlite URL without a path");
    }
    return detail::open_sqlite(std::string(path));
  }
  if (starts_with_nocase(url, "postgresql://") || starts_with_nocase(url, "postgres://")) {
    return detail::open_postgresql(std::string(url));
  }
  // Only the scheme is echoed: the rest may hold a password.
  auto colon = url.find(':');
  return make_error(errc::invalid_argument,
                    fmt::format("unknown database URL scheme '{}' (want sqlite: or postgresql://)",
                                colon == std::string_view::npos ? url : url.substr(0, colon)));
}

namespace detail {

void backoff(int attempt) {
  thread_local std::minstd_rand rng(std::random_device{}());
  int ceiling_ms = 2 << std::min(attempt, 6);  // 4, 8, ... 128 ms
  std::uniform_int_distribution<int> pick(ceiling_ms / 4, ceiling_ms);
  std::this_thread::sleep_for(std::chrono::milliseconds(pick(rng)));
}

namespace {

bool ident_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}

bool ident_char(char c) {
  return ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && starts_with_nocase(a, b);
}

// The end of a quoted span opening at `i` with `q` (doubled quotes escape; with `backslash`, so
// does a backslash).
size_t end_of_quoted(std::string_view s, size_t i, char q, bool backslash) {
  size_t j = i + 1;
  while (j < s.size()) {
    if (backslash && s[j] == '\\') {
      j += 2;
      continue;
    }
    if (s[j] == q) {
      if (j + 1 < s.size() && s[j + 1] == q) {
        j += 2;
        continue;
      }
      return j + 1;
    }
    ++j;
  }
  return s.size();
}

// The end of a dollar-quoted string `$tag$...$tag$` opening at `i`, or npos if `i` opens none.
size_t end_of_dollar_quoted(std::string_view s, size_t i) {
  size_t j = i + 1;
  if (j < s.size() && ident_start(s[j])) {
    while (j < s.size() && ident_char(s[j]) && s[j] != '$') {
      ++j;
    }
  }
  if (j >= s.size() || s[j] != '$') {
    return std::string_view::npos;
  }
  std::string_view tag = s.substr(i, j + 1 - i);
  size_t close = s.find(tag, j + 1);
  return close == std::string_view::npos ? s.size() : close + tag.size();
}

// The end of a comment (`-- ...` to the line's end, or `/* ... */`, nested as PostgreSQL allows)
// opening at `i`, or `i` if none opens there.
size_t end_of_comment(std::string_view s, size_t i) {
  if (s.compare(i, 2, "--") == 0) {
    size_t end = s.find('\n', i);
    return end == std::string_view::npos ? s.size() : end;
  }
  if (s.compare(i, 2, "/*") != 0) {
    return i;
  }
  int depth = 0;
  size_t end = i;
  while (end < s.size()) {
    if (s.compare(end, 2, "/*") == 0) {
      ++depth;
      end += 2;
    } else if (s.compare(end, 2, "*/") == 0) {
      end += 2;
      if (--depth == 0) {
        break;
      }
    } else {
      ++end;
    }
  }
  return end;
}

}  // namespace

rewritten rewrite_sql(std::string_view s, const rewrite_options& how) {
  rewritten r;
  r.sql.reserve(s.size() + 8);
  // The last two tokens of code, for the trailing FOR UPDATE.
  struct token {
    size_t out = 0;
    std::string_view word;  // empty for anything but a word
  };
  token last[2];
  auto push = [&](size_t out, std::string_view word) {
    last[0] = last[1];
    last[1] = token{out, word};
  };
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    bool after_ident = i > 0 && ident_char(s[i - 1]);
    size_t end = i + 1;
    if (c == '\'') {
      bool escape_string =
          i > 0 && (s[i - 1] == 'E' || s[i - 1] == 'e') && (i < 2 || !ident_char(s[i - 2]));
      end = end_of_quoted(s, i, '\'', escape_string);
    } else if (c == '"') {
      end = end_of_quoted(s, i, '"', false);
    } else if (size_t comment = end_of_comment(s, i); comment != i) {
      r.sql.append(s.substr(i, comment - i));
      i = comment;
      continue;  // a comment is no token
    } else if (c == '$' && !after_ident && i + 1 < s.size() && is_digit(s[i + 1])) {
      end = i + 1;
      int n = 0;
      while (end < s.size() && is_digit(s[end])) {
        n = std::min(n * 10 + (s[end] - '0'), 1 << 20);
        ++end;
      }
      r.params = std::max(r.params, n);
      push(r.sql.size(), {});
      r.sql += how.placeholder;
      r.sql.append(s.substr(i + 1, end - i - 1));
      i = end;
      continue;
    } else if (c == '$' && !after_ident) {
      size_t e = end_of_dollar_quoted(s, i);
      end = e == std::string_view::npos ? i + 1 : e;
    } else if (ident_start(c)) {
      while (end < s.size() && ident_char(s[end])) {
        ++end;
      }
      std::string_view word = s.substr(i, end - i);
      push(r.sql.size(), word);
      r.sql.append(how.blob_to_bytea && iequals(word, "blob") ? "BYTEA" : word);
      i = end;
      continue;
    } else if (is_digit(c)) {
      while (end < s.size() && (ident_char(s[end]) || s[end] == '.')) {
        ++end;
      }
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ';') {
      r.sql += c;
      ++i;
      continue;  // no token either
    }
    push(r.sql.size(), {});
    r.sql.append(s.substr(i, end - i));
    i = end;
  }
  if (how.strip_for_update && iequals(last[0].word, "for") && iequals(last[1].word, "update")) {
    r.sql.resize(last[0].out);
    while (!r.sql.empty() && (r.sql.back() == ' ' || r.sql.back() == '\t' || r.sql.back() == '\n' ||
                              r.sql.back() == '\r')) {
      r.sql.pop_back();
    }
  }
  return r;
}

status check_params(int wanted, const std::vector<value>& params) {
  if (params.size() != static_cast<size_t>(wanted)) {
    return make_error(
        errc::invalid_argument,
        fmt::format("the statement takes {} parameters, {} given", wanted, params.size()));
  }
  for (size_t i = 0; i < params.size(); ++i) {
    if (const auto* t = std::get_if<std::string>(&params[i])) {
      if (std::memchr(t->data(), '\0', t->size()) != nullptr) {
        return make_error(errc::invalid_argument,
                          fmt::format("text parameter ${} holds a NUL byte (use a blob)", i + 1));
      }
    }
  }
  return {};
}

}  // namespace detail

}  // namespace vodgrid::db
