// Reading and writing one TOML table of the grid configuration: the machinery under config.cc's
// field lists. Internal to base; only config.cc includes it.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <toml++/toml.h>

#include "base/config.h"
#include "base/result.h"

namespace vodgrid::config_detail {

inline error bad(std::string_view origin, std::string msg) {
  return make_error(errc::invalid_argument, fmt::format("{}: {}", origin, msg));
}

// The known key nearest to `key` by edit distance (at most two edits, or one being the start of the
// other), if it is near enough to be a typo; empty if none is.
std::string_view nearest_key(std::string_view key, const std::vector<std::string_view>& known);

// Reads one TOML table into a config struct. A key absent keeps the struct's default (written once,
// in config.h); a key present is checked against its bounds; the first error wins; and a key that
// no field asked for is an error naming the nearest known key (a typo must not keep a default in
// silence). config.cc's field lists drive both this and table_writer, so a key is named once.
class table_reader {
 public:
  table_reader(const toml::table& t, std::string_view origin, std::string what)
      : t_(t), origin_(origin), what_(std::move(what)) {}

  template <class T>
  requires std::is_integral_v<T>
  void number(std::string_view key, T& field, T min = 0, T max = std::numeric_limits<T>::max()) {
    constexpr auto top = std::numeric_limits<int64_t>::max();
    auto hi = std::cmp_less(top, max) ? top : static_cast<int64_t>(max);
    if (auto v = integer(key, static_cast<int64_t>(min), hi)) {
      field = static_cast<T>(*v);
    }
  }
  template <class Rep, class Period>
  void duration(std::string_view key, std::chrono::duration<Rep, Period>& field, Rep min = 0) {
    if (auto v = integer(key, min, std::numeric_limits<int32_t>::max())) {
      field = std::chrono::duration<Rep, Period>(*v);
    }
  }
  // A rate written in Mbit/s, kept in bit/s.
  void megabits(std::string_view key, uint64_t& bits_per_second, uint64_t min) {
    if (auto v = integer(key, static_cast<int64_t>(min), int64_t{1} << 40)) {
      bits_per_second = static_cast<uint64_t>(*v) * 1'000'000;
    }
  }
  void flag(std::string_view key, bool& field) { typed(key, field, "true or false"); }
  void real(std::string_view key, double& field) {
    if (auto n = node(key); n && n.is_integer()) {
      field = static_cast<double>(*n.value<int64_t>());
      return;
    }
    typed(key, field, "a number");
  }
  // A string; `required`: the table is wrong without it, and `hint` says what goes there.
  void text(std::string_view key, std::string& field, bool required = false,
            std::string_view hint = {}) {
    typed(key, field, "a string");
    if (required && field.empty()) {
      fail(fmt::format("needs '{}'{}", key, hint.empty() ? "" : fmt::format(" ({})", hint)));
    }
  }
  void path(std::string_view key, std::filesystem::path& field, bool required = false) {
    std::string s = field.string();
    text(key, s, required);
    field = s;
  }
  // An array of strings.
  void strings(std::string_view key, std::vector<std::string>& field) {
    auto n = node(key);
    if (!n) {
      return;
    }
    auto* a = n.as_array();
    std::vector<std::string> out;
    for (size_t i = 0; a && i < a->size(); ++i) {
      auto v = (*a)[i].value_exact<std::string>();
      if (!v) {
        a = nullptr;
        break;
      }
      out.push_back(std::move(*v));
    }
    if (!a) {
      fail(fmt::format("'{}' must be an array of strings", key));
      return;
    }
    field = std::move(out);
  }
  // "host:port"; an optional one left out keeps port 0.
  void listen(std::string_view key, listen_address& field, bool required = true) {
    auto n = node(key);
    if (!n && !required) {
      return;
    }
    if (auto a = parse_listen(n, key)) {
      field = *a;
    }
  }
  // A daemon's `tls = { cert = "...", key = "..." }`, both needed, into its listen address. The
  // files are read (and checked) by the daemon at start, not here: the CLI parses configs whose
  // files live on other hosts. Each fault is named: not a table, a key missing, empty or not a
  // string, a key of another name.
  void tls(std::string_view key, listen_address& field) {
    auto n = node(key);
    if (!n) {
      return;
    }
    auto* t = n.as_table();
    if (!t) {
      fail(fmt::format("'{}' must be a table {{ cert = \"cert.pem\", key = \"key.pem\" }}", key));
      return;
    }
    for (auto& [k, v] : *t) {
      if (k.str() != "cert" && k.str() != "key") {
        auto near = nearest_key(k.str(), {"cert", "key"});
        fail(fmt::format("'{}': unknown key '{}'{}", key, k.str(),
                         near.empty() ? std::string(" (it takes cert and key)")
                                      : fmt::format(" (did you mean '{}'?)", near)));
        return;
      }
    }
    std::string files[2];
    const char* names[2] = {"cert", "key"};
    for (int i = 0; i < 2; ++i) {
      auto v = (*t)[names[i]];
      auto s = v.value_exact<std::string>();
      if (!v) {
        fail(fmt::format("'{}' needs '{}' (a PEM file's path)", key, names[i]));
      } else if (!s || s->empty()) {
        fail(fmt::format("'{}.{}' must be a non-empty string (a PEM file's path)", key, names[i]));
      } else {
        files[i] = *s;
        continue;
      }
      return;
    }
    field.tls_cert = files[0];
    field.tls_key = files[1];
  }
  // A count of event loops: an integer 1..256, or "auto" (kept as 0: one per core).
  void threads(std::string_view key, uint32_t& field) {
    auto n = node(key);
    if (!n) {
      return;
    }
    if (auto s = n.value_exact<std::string>(); s && *s == "auto") {
      field = 0;
      return;
    }
    auto v = n.is_integer() ? n.value<int64_t>() : std::nullopt;
    if (!v || *v < 1 || *v > 256) {
      fail(fmt::format("'{}' must be an integer within 1..256 or \"auto\"", key));
      return;
    }
    field = static_cast<uint32_t>(*v);
  }
  void names(std::string_view key) { known_.push_back(key); }  // read by the caller itself
  // A check across fields, or of a value no method above reads.
  void fail(std::string msg) {
    if (!err_) {
      err_ = bad(origin_, fmt::format("{}: {}", what_, msg));
    }
  }
  bool ok() const { return !err_; }
  const std::string& what() const { return what_; }

  // The first error, else a key no field asked for.
  status finish() {
    if (err_) {
      return *err_;
    }
    for (auto& [key, value] : t_) {
      std::string_view k = key.str();
      if (std::find(known_.begin(), known_.end(), k) != known_.end()) {
        continue;
      }
      auto near = nearest_key(k, known_);
      return bad(origin_, fmt::format("{}: unknown key '{}'{}", what_, k,
                                      near.empty() ? std::string()
                                                   : fmt::format(" (did you mean '{}'?)", near)));
    }
    return {};
  }

 private:
  toml::node_view<const toml::node> node(std::string_view key) {
    known_.push_back(key);
    return t_[key];
  }
  template <class T>
  void typed(std::string_view key, T& field, std::string_view kind) {
    auto n = node(key);
    if (!n) {
      return;
    }
    if (auto v = n.template value_exact<T>()) {
      field = *v;
    } else {
      fail(fmt::format("'{}' must be {}", key, kind));
    }
  }
  std::optional<int64_t> integer(std::string_view key, int64_t min, int64_t max) {
    auto n = node(key);
    if (!n) {
      return std::nullopt;
    }
    auto v = n.is_integer() ? n.value<int64_t>() : std::nullopt;
    if (!v || *v < min || *v > max) {
      fail(max >= std::numeric_limits<int32_t>::max()
               ? fmt::format("'{}' must be an integer of at least {}", key, min)
               : fmt::format("'{}' must be an integer within {}..{}", key, min, max));
      return std::nullopt;
    }
    return v;
  }
  std::optional<listen_address> parse_listen(toml::node_view<const toml::node> n,
                                             std::string_view key) {
    auto s = n.value<std::string>();
    auto colon = s ? s->rfind(':') : std::string::npos;
    if (colon == std::string::npos || colon == 0) {
      fail(s ? fmt::format("'{}' must be \"host:port\", got \"{}\"", key, *s)
             : fmt::format("'{}' must be \"host:port\"", key));
      return std::nullopt;
    }
    listen_address a;
    a.host = s->substr(0, colon);
    auto digits = std::string_view(*s).substr(colon + 1);
    unsigned port = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (ec != std::errc() || end != digits.data() + digits.size() || port == 0 || port > 65535) {
      fail(fmt::format("'{}': bad port in \"{}\"", key, *s));
      return std::nullopt;
    }
    a.port = static_cast<uint16_t>(port);
    return a;
  }

  const toml::table& t_;
  std::string origin_, what_;
  std::vector<std::string_view> known_;
  std::optional<error> err_;
};

// Writes what table_reader reads, from the same field lists (bounds and hints are the reader's).
class table_writer {
 public:
  template <class T, class... Ignored>
  requires std::is_integral_v<T>
  void number(std::string_view key, const T& v, Ignored...) {
    t_.insert(key, static_cast<int64_t>(v));
  }
  template <class Rep, class Period, class... Ignored>
  void duration(std::string_view key, const std::chrono::duration<Rep, Period>& v, Ignored...) {
    t_.insert(key, static_cast<int64_t>(v.count()));
  }
  void megabits(std::string_view key, const uint64_t& bits_per_second, uint64_t) {
    t_.insert(key, static_cast<int64_t>(bits_per_second / 1'000'000));
  }
  void flag(std::string_view key, const bool& v) { t_.insert(key, v); }
  void real(std::string_view key, const double& v) { t_.insert(key, v); }
  template <class... Ignored>
  void text(std::string_view key, const std::string& v, Ignored...) {
    t_.insert(key, v);
  }
  template <class... Ignored>
  void path(std::string_view key, const std::filesystem::path& v, Ignored...) {
    t_.insert(key, v.string());
  }
  void strings(std::string_view key, const std::vector<std::string>& v) {
    toml::array a;
    for (auto& s : v) {
      a.push_back(s);
    }
    t_.insert(key, std::move(a));
  }
  void listen(std::string_view key, const listen_address& a, bool required = true) {
    if (required || a.port != 0) {
      t_.insert(key, fmt::format("{}:{}", a.host, a.port));
    }
  }
  void tls(std::string_view key, const listen_address& a) {
    if (a.tls()) {
      toml::table t;
      t.insert("cert", a.tls_cert.string());
      t.insert("key", a.tls_key.string());
      t.is_inline(true);
      t_.insert(key, std::move(t));
    }
  }
  void threads(std::string_view key, const uint32_t& v) {
    if (v == 0) {
      t_.insert(key, "auto");
    } else {
      t_.insert(key, static_cast<int64_t>(v));
    }
  }
  void names(std::string_view) {}
  toml::table take() { return std::move(t_); }

 private:
  toml::table t_;
};

}  // namespace vodgrid::config_detail
